// 4-bit GEMV at M = 1 (q4, q4a with B = 32), 128 weights per step: the group loader (used by the
// exact kernel here and the int8-activation one in int8_gemv_avx512.cc) and the exact kernel.
// Include only from *_avx512.cc files.
//
// Per block, decoding costs a scale broadcast, a table multiply and a byte-to-dword expansion on
// top of the shift, permutes and FMAs (docs/benchmarks.md, "Where that limit comes from"). A
// "nibble group" amortizes that over 128 weights: two loads and one two-source word permute gather
// the group's 64 nibble bytes into one register (every block's nibbles start at an even byte
// offset), so dword j holds 8 nibbles of one block. Nibble n of every dword is then (shift by 4n) +
// vpermps on the unscaled level table; n = 1..3 instead by an OR into a float's mantissa, which
// keeps them off the shuffle pipes that shifts and permutes share. One word permute and one
// conversion give every lane its block's scale (and q4a's min), applied once per group. x is
// permuted once per call to the matching order.
// Measured on Zen 4, one thread, 256x4096 q4/32 in L2: 20.3 -> 23.5 weights/ns
// (bench/experiments/q4_decode_variants.cc, v0 -> v8); 11008x4096 at M = 1, 2 threads: q4 1.16 -> 0.99 ms,
// q4a 1.33 -> 1.08-1.12 ms. Blocks of 64 and 128 already spread their scale over more weights,
// and the group's gather and per-lane scale made them 4-7 % slower: their file layout keeps the
// per-block kernel. Their repacked copy (pyrt/repack.h) has no gather to pay for and uses groups.
#pragma once
#include "cpu/decode_avx512.h"

namespace pyrt::cpu::avx512 {

constexpr int kGroupWeights = 128;
constexpr int kGroupBlock = 32;  // the block of the file-layout path (NibbleGroupLoader)

// The element (0..127 within its group) that nibble n (bits 4n..4n+3) of dword j stands for when
// the group's 64 register bytes are its B/2-byte blocks' nibble bytes back to back (the file's
// bytes; B = 64, 128 only from the repacked copy): dword j holds bytes 4(j%(B/8)).. of block
// j/(B/8), and byte c of a block holds its elements c (low half) and c + B/2 (high half).
template <int B = kGroupBlock>
constexpr int group_element(int n, int j) {
  return (j / (B / 8)) * B + 4 * (j % (B / 8)) + n / 2 + (B / 2) * (n % 2);
}

// Gathers one group's nibbles and block scales from the row (shared by the exact kernel below and
// the int8-activation one, int8_gemv_avx512.cc).
template <Format F>
struct NibbleGroupLoader {
  using L = BlockOf<F, kGroupBlock>;
  static constexpr int64_t kBytes = (kGroupWeights / kGroupBlock) * L::bytes;  // 72 or 80
  static_assert(L::bytes % 2 == 0 && L::quants_offset % 2 == 0 && L::scale_offset % 2 == 0 &&
                    (L::min_offset < 0 || L::min_offset % 2 == 0),
                "the word permutes need every block, its nibbles, scale and minimum at even byte offsets");

  __m512i nibble_words;  // vpermt2w index: the group's 64 nibble bytes out of the two loads
  __m512i scale_words;   // vpermw index: lane j's block d (words 0..15), q4a's m (words 16..31)

  NibbleGroupLoader() {
    alignas(64) int16_t nib[32], sc[32];
    for (int w = 0; w < 32; ++w) {
      const int byte = 2 * w;  // of the group's nibbles: block byte / 16, at an even offset
      nib[w] = int16_t(((byte / 16) * L::bytes + L::quants_offset + byte % 16) / 2);
      // Words 16..31 of q4 (no minimum) are never read.
      const int field = w >= 16 && F == Format::q4a ? L::min_offset : L::scale_offset;
      sc[w] = int16_t((((w % 16) / 4) * L::bytes + field) / 2);
    }
    nibble_words = _mm512_load_si512(nib);
    scale_words = _mm512_load_si512(sc);
  }

  // The group's 64 nibble bytes (dword j: bytes 4(j%4).. of block j/4); *scales gets the FP16 d of
  // lane j's block in word j and (q4a) its m in word 16 + j.
  inline __m512i load(const uint8_t* grp, __m512i* scales) const {
    const __m512i first = _mm512_loadu_si512(grp);
    // Only the group's own bytes past the first 64 (8 or 16): never reads past the matrix.
    constexpr __mmask16 kTail = __mmask16((1u << (kBytes - 64)) - 1u);
    const __m512i rest = _mm512_zextsi128_si512(_mm_maskz_loadu_epi8(kTail, grp + 64));
    *scales = _mm512_permutexvar_epi16(scale_words, first);
    return _mm512_permutex2var_epi16(first, nibble_words, rest);
  }
};

// B: the block whose nibble order the group's registers hold (group_element<B>); the file-layout
// gather (loader, accumulate) is for B = 32 only, B = 64/128 groups come from the repacked copy.
template <Format F, int B = kGroupBlock>
struct NibbleGroup {
  static constexpr int64_t kBytes = NibbleGroupLoader<F>::kBytes;

  NibbleGroupLoader<F> loader;
  __m512i x_index[8];    // x element feeding nibble n of every dword (a gather index)
  __m512 levels;         // q4: -8..7, q4a: 0..15, q4n: kQ4nLevels

  NibbleGroup() {
    alignas(64) int32_t xi[8][16];
    for (int n = 0; n < 8; ++n)
      for (int j = 0; j < 16; ++j) xi[n][j] = group_element<B>(n, j);
    for (int n = 0; n < 8; ++n) x_index[n] = _mm512_load_si512(xi[n]);
    levels = level_table<F>();
  }

  // x[0, groups * 128) -> xp in the group order (xp[g*128 + n*16 + j]); for q4a also the per-lane
  // sums of xp (sums[g*16 + j]), which carry the block minimum.
  void permute_x(const float* x, int64_t groups, float* xp, float* sums) const {
    for (int64_t g = 0; g < groups; ++g) {
      const float* src = x + g * kGroupWeights;
      float* dst = xp + g * kGroupWeights;
      __m512 s = _mm512_setzero_ps();
      for (int n = 0; n < 8; ++n) {
        const __m512 v = _mm512_i32gather_ps(x_index[n], src, 4);
        _mm512_storeu_ps(dst + 16 * n, v);
        s = _mm512_add_ps(s, v);
      }
      if constexpr (F == Format::q4a) _mm512_storeu_ps(sums + 16 * g, s);
    }
  }

  // Nibble n (bits 4n..4n+3, n = 1..3) of every dword as its level (q4: q - 8, q4a: q; q4n's
  // levels are not linear in q: a shift and the table permute).
  template <int n>
  __m512 mantissa_level(__m512i nib) const {
    if constexpr (F == Format::q4n) return _mm512_permutexvar_ps(_mm512_srli_epi32(nib, 4 * n), levels);
    constexpr float kMagic = float(1 << (23 - 4 * n));
    constexpr float kBias = kMagic + (F == Format::q4 ? 8.0f : 0.0f);
    const __m512i bits = _mm512_ternarylogic_epi32(nib, _mm512_set1_epi32(0xF << (4 * n)),
                                                   _mm512_castps_si512(_mm512_set1_ps(kMagic)), 0xEA);  // a & b | c
    return _mm512_sub_ps(_mm512_castsi512_ps(bits), _mm512_set1_ps(kBias));
  }

  // acc + the group's 128 products, per lane (the caller sums the lanes). grp: the group's first
  // block; xg: its 128 permuted activations; sum: its 16 lane sums (q4a only).
  inline __m512 accumulate(const uint8_t* grp, const float* xg, const float* sum, __m512 acc) const {
    static_assert(B == kGroupBlock, "the file-layout gather reads B = 32 blocks");
    __m512i scales;
    const __m512i nib = loader.load(grp, &scales);
    return accumulate_loaded(nib, scales, xg, sum, acc);
  }

  // The same from a group already in registers (nib, scales as NibbleGroupLoader::load returns
  // them): the repacked layout's kernel (repacked_gemv_avx512.cc) loads them without the gather.
  inline __m512 accumulate_loaded(__m512i nib, __m512i scales, const float* xg, const float* sum, __m512 acc) const {
    // Two chains of four products, each weight exactly its level before the per-lane scale.
    // Nibbles 1..3 skip the shuffle pipes (shift + vpermps): ORed into the float 2^(23-4n), whose
    // mantissa ulp is then 1, nibble n gives 2^(23-4n) + q exactly, and a subtract leaves the level.
    __m512 p0 = _mm512_mul_ps(_mm512_loadu_ps(xg), _mm512_permutexvar_ps(nib, levels));
    __m512 p1 = _mm512_mul_ps(_mm512_loadu_ps(xg + 16), mantissa_level<1>(nib));
    p0 = _mm512_fmadd_ps(_mm512_loadu_ps(xg + 32), mantissa_level<2>(nib), p0);
    p1 = _mm512_fmadd_ps(_mm512_loadu_ps(xg + 48), mantissa_level<3>(nib), p1);
    p0 = _mm512_fmadd_ps(_mm512_loadu_ps(xg + 64), _mm512_permutexvar_ps(_mm512_srli_epi32(nib, 16), levels), p0);
    p1 = _mm512_fmadd_ps(_mm512_loadu_ps(xg + 80), _mm512_permutexvar_ps(_mm512_srli_epi32(nib, 20), levels), p1);
    p0 = _mm512_fmadd_ps(_mm512_loadu_ps(xg + 96), _mm512_permutexvar_ps(_mm512_srli_epi32(nib, 24), levels), p0);
    p1 = _mm512_fmadd_ps(_mm512_loadu_ps(xg + 112), _mm512_permutexvar_ps(_mm512_srli_epi32(nib, 28), levels), p1);
    acc = _mm512_fmadd_ps(_mm512_add_ps(p0, p1), _mm512_cvtph_ps(_mm512_castsi512_si256(scales)), acc);
    if constexpr (F == Format::q4a)
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(sum), _mm512_cvtph_ps(_mm512_extracti64x4_epi64(scales, 1)), acc);
    return acc;
  }
};

// acc + the products of `count` consecutive file-layout blocks (per block: the path for the
// blocks after K's whole groups of 128). x: their activations in their own order.
template <Format F, int B = kGroupBlock>
inline __m512 accumulate_blocks(const uint8_t* blocks, const float* x, int64_t count, __m512 acc) {
  constexpr int64_t bb = BlockOf<F, B>::bytes;
  for (int64_t b = 0; b < count; ++b) {
    const uint8_t* q;
    const __m512 table = nibble_value_table<F, B>(blocks + b * bb, &q);
    for (int c = 0; c < B / 2; c += 16) {
      const __m512i idx = load_nibble_pairs(q + c);
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + b * B + c), low_nibbles(idx, table), acc);
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + b * B + B / 2 + c), high_nibbles(idx, table), acc);
    }
  }
  return acc;
}

}  // namespace pyrt::cpu::avx512
