// AVX-512 VNNI int8-activation kernels (int8_gemv_avx512.cc, int8_gemm_avx512.cc) and the weight
// decoding they share: 64 weights of a q8/q4/q4a row -> 64 unsigned byte codes in one zmm, in the
// natural element order, plus the per-lane block scales. Include only from *_avx512.cc files.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/decode_avx512.h"
#include "cpu/kernels.h"

namespace pyrt::cpu::avx512 {

// Small M: weights streamed once, decoded in registers.
void int8_gemv(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end);
// Large M: weight panels unpacked once into a VNNI layout and reused by every activation row.
void int8_gemm(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end);

// Where chunk c (elements [64c, 64c + 64)) starts in a row, roughly: for prefetching only.
template <Format F, int B>
constexpr int64_t chunk_byte_offset(int64_t c) {
  return c * 64 * BlockOf<F, B>::bytes / B;
}

// 16 lanes: the first 8 hold s0, the last 8 s1 (the lanes a B = 32 block pair's products land in).
inline __m512 pair_lanes(float s0, float s1) {
  return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

// 16 lanes in the split order of decode_chunk<..., kSplit>: lanes 0-3 and 8-11 hold s0, 4-7 and
// 12-15 s1.
inline __m512 split_lanes(float s0, float s1) {
  const __m512 both = pair_lanes(s0, s1);  // s0 in lanes 0-7, s1 in 8-15
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 8, 8, 8, 8, 0, 0, 0, 0, 8, 8, 8, 8), both);
}

// Element j of a 64-element chunk sits at byte split_chunk_position(j) of the chunk in the split
// order: block 0's first 16, block 1's first 16, block 0's last 16, block 1's last 16.
constexpr int split_chunk_position(int j) {
  const int block = j / 32, half = (j % 32) / 16;
  return half * 32 + block * 16 + j % 16;
}

// q4n's codes are its levels + 128 (unsigned, like q8's): nibbles -> codes by one in-lane byte
// shuffle through the table; the other 4-bit formats' codes are the nibbles.
template <Format F>
inline __m512i nibble_codes(__m512i nibbles) {
  if constexpr (F == Format::q4n) {
    const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kQ4nLevels));
    const __m512i table = _mm512_broadcast_i32x4(_mm_xor_si128(levels, _mm_set1_epi8(char(0x80))));
    return _mm512_shuffle_epi8(table, nibbles);
  } else {
    return nibbles;
  }
}

// Codes of chunk c of a weight row (q8: q_w + 128; q4/q4a: the nibble; q4n: level + 128), the per-lane d_w in *dw and
// (q4a) the per-lane m in *mw. With B = 32 and an odd number of blocks, the last chunk's second
// half is zero codes / zero scales (never read past the row); kWhole promises the chunk is whole
// (64 elements), which keeps the branch out of the hot loop.
// kSplit (4-bit formats, B = 32 only): skip the cross-lane shuffle that restores the natural order
// and return the codes as [block 0 elements 0-15, block 1 elements 0-15, block 0 elements 16-31,
// block 1 elements 16-31], with *dw / *mw in the same lane order; the caller supplies activations
// permuted to match (split_chunk_order). A block's dot product does not depend on the order of its
// elements, so this saves one operation per 64 weights where the activations are reused (GEMV).
// q5's chunk: the codes 0..31 in the natural order (the nibbles as q4's, then + 16 in the bytes
// whose high bit is set: the high-bit bytes are the byte-lane mask), d_w per lane.
template <int B, bool kWhole>
inline __m512i decode_q5_chunk(const uint8_t* row, int64_t c, int64_t K, __m512* dw) {
  using L = BlockOf<Format::q5, B>;
  constexpr int64_t bb = L::bytes;
  constexpr int hb = kQ5HighBytes<B>;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512i codes;
  __mmask64 high;
  if constexpr (B == 32) {
    const uint8_t* b0 = row + 2 * c * bb;
    const uint8_t* b1 = b0 + bb;
    const bool two = kWhole || (2 * c + 1) * 32 < K;
    *dw = pair_lanes(load_fp16(b0 + L::scale_offset), two ? load_fp16(b1 + L::scale_offset) : 0.0f);
    const uint8_t* q0 = b0 + L::quants_offset;
    const uint8_t* q1 = b1 + L::quants_offset;
    const __m128i n0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q0 + hb));
    const __m128i n1 = two ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(q1 + hb)) : _mm_setzero_si128();
    const __m256i nn = _mm256_set_m128i(n1, n0);
    const __m512i z = _mm512_inserti64x4(_mm512_zextsi256_si512(nn), _mm256_srli_epi16(nn, 4), 1);
    codes = _mm512_and_si512(_mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0)), low4);
    uint32_t h0, h1 = 0;
    std::memcpy(&h0, q0, 4);
    if (two) std::memcpy(&h1, q1, 4);
    high = __mmask64(h0) | (__mmask64(h1) << 32);
  } else {
    const uint8_t* q = row + (c * 64 / B) * bb + L::quants_offset;
    *dw = _mm512_set1_ps(load_fp16(q - L::quants_offset + L::scale_offset));
    uint64_t h;
    if constexpr (B == 64) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + hb));
      codes = _mm512_and_si512(_mm512_inserti64x4(_mm512_zextsi256_si512(v), _mm256_srli_epi16(v, 4), 1), low4);
      std::memcpy(&h, q, 8);
    } else {  // B = 128: chunk 0 is the low nibbles (elements 0-63), chunk 1 the high ones
      const __m512i v = _mm512_loadu_si512(q + hb);
      codes = _mm512_and_si512((c & 1) ? _mm512_srli_epi16(v, 4) : v, low4);
      std::memcpy(&h, q + 8 * (c & 1), 8);
    }
    high = __mmask64(h);
  }
  return _mm512_mask_add_epi8(codes, high, codes, _mm512_set1_epi8(16));
}

template <Format F, int B, bool kWhole = false, bool kSplit = false>
inline __m512i decode_chunk(const uint8_t* row, int64_t c, int64_t K, __m512* dw, __m512* mw) {
  static_assert(!kSplit || (B == 32 && F != Format::q8 && F != Format::q5), "the split order exists for 4-bit B = 32 only");
  if constexpr (F == Format::q5) return decode_q5_chunk<B, kWhole>(row, c, K, dw);
  using L = BlockOf<F, B>;
  constexpr int64_t bb = L::bytes;
  constexpr int hdr = L::quants_offset, d_at = L::scale_offset, m_at = L::min_offset;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i sign = _mm512_set1_epi8(char(0x80));
  if constexpr (B == 32) {
    const uint8_t* b0 = row + 2 * c * bb;
    const uint8_t* b1 = b0 + bb;
    const bool two = kWhole || (2 * c + 1) * 32 < K;
    if constexpr (kWhole) {
      // Both blocks' 4-byte headers in one xmm, one conversion, one permute: cheaper than two
      // scalar conversions and broadcasts (this runs per 64 weights and row at M = 1).
      static_assert(d_at == 0 && (m_at == 2 || m_at == -1), "the lanes below read d at 0 and m at 2");
      int32_t h0, h1;
      std::memcpy(&h0, b0, 4);
      std::memcpy(&h1, b1, 4);
      const __m512 heads = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128(h0), h1, 1)));
      // lanes of heads: 0 = d0, 1 = m0 (q4a), 2 = d1, 3 = m1
      const __m512i d_lanes = kSplit ? _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2)
                                     : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
      *dw = _mm512_permutexvar_ps(d_lanes, heads);
      if constexpr (F == Format::q4a) *mw = _mm512_permutexvar_ps(_mm512_add_epi32(d_lanes, _mm512_set1_epi32(1)), heads);
    } else if constexpr (kSplit) {
      *dw = split_lanes(load_fp16(b0 + d_at), two ? load_fp16(b1 + d_at) : 0.0f);
      if constexpr (F == Format::q4a) *mw = split_lanes(load_fp16(b0 + m_at), two ? load_fp16(b1 + m_at) : 0.0f);
    } else {
      *dw = pair_lanes(load_fp16(b0 + d_at), two ? load_fp16(b1 + d_at) : 0.0f);
      if constexpr (F == Format::q4a) *mw = pair_lanes(load_fp16(b0 + m_at), two ? load_fp16(b1 + m_at) : 0.0f);
    }
    if constexpr (F == Format::q8) {
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + hdr));
      const __m256i hi = two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + hdr)) : _mm256_setzero_si256();
      return _mm512_xor_si512(_mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1), sign);
    } else {
      const __m128i n0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + hdr));
      const __m128i n1 = two ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + hdr)) : _mm_setzero_si128();
      const __m256i nn = _mm256_set_m128i(n1, n0);
      // [n0, n1, n0 >> 4, n1 >> 4] -> [n0, n0 >> 4, n1, n1 >> 4]: block 0's 32 codes, then block 1's.
      const __m512i z = _mm512_inserti64x4(_mm512_zextsi256_si512(nn), _mm256_srli_epi16(nn, 4), 1);
      if constexpr (kSplit) return nibble_codes<F>(_mm512_and_si512(z, low4));
      return nibble_codes<F>(_mm512_and_si512(_mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0)), low4));
    }
  } else {
    const uint8_t* blk = row + (c * 64 / B) * bb;
    *dw = _mm512_set1_ps(load_fp16(blk + d_at));
    if constexpr (F == Format::q4a) *mw = _mm512_set1_ps(load_fp16(blk + m_at));
    if constexpr (F == Format::q8) {
      const int64_t half = B == 128 ? (c & 1) * 64 : 0;
      return _mm512_xor_si512(_mm512_loadu_si512(blk + hdr + half), sign);
    } else if constexpr (B == 64) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + hdr));
      return nibble_codes<F>(_mm512_and_si512(_mm512_inserti64x4(_mm512_zextsi256_si512(v), _mm256_srli_epi16(v, 4), 1), low4));
    } else {  // B = 128: byte j holds elements j and j + 64, so chunk 0 is the low nibbles, 1 the high
      const __m512i v = _mm512_loadu_si512(blk + hdr);
      return nibble_codes<F>(_mm512_and_si512((c & 1) ? _mm512_srli_epi16(v, 4) : v, low4));
    }
  }
}

// The coefficient of the activation block sum S in each format's block formula (docs/int8.md),
// for q8, q4, q4n and q5 relative to d_w: q8 and q4n -128 d_w, q4 -8 d_w, q5 -16 d_w (codes 0..31),
// q4a m (here 1: m is applied separately).
template <Format F>
constexpr float kSumCoefficient = F == Format::q8 || F == Format::q4n
                                      ? -128.0f
                                      : (F == Format::q4 ? -8.0f : (F == Format::q5 ? -16.0f : 1.0f));

}  // namespace pyrt::cpu::avx512
