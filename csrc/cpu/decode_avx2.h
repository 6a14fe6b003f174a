// AVX2/F16C decoders that turn stored weights into FP32 vectors in registers. Include only from
// *_avx2.cc files (they are the only ones compiled with -mavx2 -mfma -mf16c).
//
// Every format is walked in "groups": a q-block for q8/q4/q4a, 16 consecutive weights for the
// plain formats. A group is decoded as pairs of 8-wide vectors; `off0(p)`/`off1(p)` give the K
// offsets (inside the group) of pair p. For q4/q4a the pair is the low and high nibbles of the
// same 8 bytes (elements j and j + B/2), so one zero-extension yields 16 weights.
// Blocked formats also expose raw_pair (the stored integers as floats) and apply_block, so a dot
// product can multiply by the scale once per block instead of once per weight.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "pyrt/formats.h"

namespace pyrt::cpu::avx2 {

// FP32 value of every FP16 bit pattern (256 KiB, built once). A block scale then costs a scalar
// load and a broadcast from memory instead of three vector uops on the ports the decode needs:
// +17% on the decode-bound q4 GEMV (microbenchmark, 1 core, 16.9 -> 19.8 weights/ns).
struct Fp16Table {
  float value[65536];
  Fp16Table() {
    for (int h = 0; h < 65536; ++h) value[h] = _cvtsh_ss(uint16_t(h));
  }
};

inline const float* fp16_table() {
  static const Fp16Table table;
  return table.value;
}

inline __m256 broadcast_fp16(const float* table, const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm256_broadcast_ss(table + h);
}

// f32 / f16 / bf16: 16 consecutive elements per group.
template <Format F>
struct DecodePlain {
  static constexpr int kGroup = 16;
  static constexpr int kGroupBytes = kGroup * BlockOf<F, 1>::bytes;
  static constexpr int kPairs = 1;
  static constexpr bool kScaledBlocks = false;
  struct Group { const uint8_t* p; };
  static Group group(const uint8_t* row, int64_t g, const float*) { return {row + g * kGroupBytes}; }
  static constexpr int off0(int) { return 0; }
  static constexpr int off1(int) { return 8; }
  // Eight elements as FP32 (bf16 is the top half of an fp32: widen and shift left by 16).
  static __m256 load8(const uint8_t* p) {
    if constexpr (F == Format::f32) {
      return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    } else if constexpr (F == Format::f16) {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    } else {
      const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
  }
  static void pair(const Group& s, int, __m256& w0, __m256& w1) {
    w0 = load8(s.p);
    w1 = load8(s.p + kGroupBytes / 2);
  }
};

template <int B>
struct DecodeQ8 {
  using L = BlockOf<Format::q8, B>;
  static constexpr int kGroup = B;
  static constexpr int kPairs = B / 16;
  // Blocks with a scale: GEMV factors d (and the offset) out of each block's dot product.
  static constexpr bool kScaledBlocks = true;
  static constexpr int kGroupBytes = L::bytes;
  struct Group { const int8_t* q; __m256 d; };
  static Group group(const uint8_t* row, int64_t g, const float* table) {
    const uint8_t* blk = row + g * kGroupBytes;
    return {reinterpret_cast<const int8_t*>(blk + L::quants_offset), broadcast_fp16(table, blk + L::scale_offset)};
  }
  static constexpr int off0(int p) { return 16 * p; }
  static constexpr int off1(int p) { return 16 * p + 8; }
  static __m256 widen(const int8_t* q, __m256 d) {
    const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(v), d);
  }
  static void pair(const Group& s, int p, __m256& w0, __m256& w1) {
    w0 = widen(s.q + off0(p), s.d);
    w1 = widen(s.q + off1(p), s.d);
  }
  static __m256 raw(const int8_t* q) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q))));
  }
  // The stored integers q as floats; the block's dot product is d * sum(x * q).
  static void raw_pair(const Group& s, int p, __m256& q0, __m256& q1) {
    q0 = raw(s.q + off0(p));
    q1 = raw(s.q + off1(p));
  }
  // The block's dot product is d * sum(x * q): the chain starts at 0, acc += d * chain.
  static constexpr bool kUsesXsum = false;
  static __m256 dot_seed(__m256) { return _mm256_setzero_ps(); }
  static __m256 apply_block(const Group& s, __m256 dot, __m256, __m256 acc) {
    return _mm256_fmadd_ps(dot, s.d, acc);
  }
};

// q4 (x = (nib - 8) * d) and q4a (x = nib * d + m) share the nibble walk: x = nib * d + offset,
// with offset = -8d for q4 (exact: a power-of-two multiple of d) and m for q4a.
template <Format F, int B>
struct DecodeNibbles {
  using L = BlockOf<F, B>;
  static constexpr bool kAffine = F == Format::q4a;
  static constexpr int kGroup = B;
  static constexpr int kPairs = B / 16;
  // Blocks with a scale: GEMV factors d (and the offset) out of each block's dot product.
  static constexpr bool kScaledBlocks = true;
  static constexpr int kGroupBytes = L::bytes;
  struct Group { const uint8_t* q; __m256 d; __m256 offset; };
  static Group group(const uint8_t* row, int64_t g, const float* table) {
    const uint8_t* blk = row + g * kGroupBytes;
    const __m256 d = broadcast_fp16(table, blk + L::scale_offset);
    __m256 offset;
    if constexpr (kAffine)
      offset = broadcast_fp16(table, blk + L::min_offset);
    else
      offset = _mm256_mul_ps(d, _mm256_set1_ps(-8.0f));
    return {blk + L::quants_offset, d, offset};
  }
  static constexpr int off0(int p) { return 8 * p; }
  static constexpr int off1(int p) { return B / 2 + 8 * p; }
  static void pair(const Group& s, int p, __m256& w0, __m256& w1) {
    const __m256i bytes =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s.q + 8 * p)));
    const __m256i lo = _mm256_and_si256(bytes, _mm256_set1_epi32(0x0f));
    const __m256i hi = _mm256_srli_epi32(bytes, 4);
    w0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), s.d, s.offset);
    w1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), s.d, s.offset);
  }
  // The nibbles as floats; the block's dot product is d * sum(x * nib) + offset * sum(x).
  static void raw_pair(const Group& s, int p, __m256& n0, __m256& n1) {
    const __m256i bytes =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s.q + 8 * p)));
    n0 = _mm256_cvtepi32_ps(_mm256_and_si256(bytes, _mm256_set1_epi32(0x0f)));
    n1 = _mm256_cvtepi32_ps(_mm256_srli_epi32(bytes, 4));
  }
  // q4: d * (sum(x * nib) - 8 sum(x)), the chain seeded with -8 * xsum (xsum's lanes sum to the
  // block's sum of x). q4a: d * sum(x * nib) + m * sum(x).
  static constexpr bool kUsesXsum = true;
  static __m256 dot_seed(__m256 xsum) {
    return kAffine ? _mm256_setzero_ps() : _mm256_mul_ps(xsum, _mm256_set1_ps(-8.0f));
  }
  static __m256 apply_block(const Group& s, __m256 dot, __m256 xsum, __m256 acc) {
    acc = _mm256_fmadd_ps(dot, s.d, acc);
    return kAffine ? _mm256_fmadd_ps(xsum, s.offset, acc) : acc;
  }
};

// q4n (x = kQ4nLevels[nib] * d): group() looks the block's nibbles up in the int8 level table
// (pshufb, 32 levels per shuffle pair) into a small buffer in element order; from there the levels
// are q8 codes (vpmovsxbd with a memory operand: no extra shuffle for the upper 8 bytes), so the
// rest is q8's: the group size, the widening, the scale once per block, no x sums.
template <int B>
struct DecodeQ4N : DecodeQ8<B> {
  using Q8 = DecodeQ8<B>;
  using L = BlockOf<Format::q4n, B>;
  static constexpr int kGroupBytes = L::bytes;
  struct Group { alignas(16) int8_t levels[B]; __m256 d; };
  static Group group(const uint8_t* row, int64_t g, const float* table) {
    const uint8_t* blk = row + g * kGroupBytes;
    Group s;
    s.d = broadcast_fp16(table, blk + L::scale_offset);
    const __m128i lut = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kQ4nLevels));
    const __m128i low4 = _mm_set1_epi8(0x0f);
    for (int c = 0; c < B / 2; c += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + L::quants_offset + c));
      _mm_store_si128(reinterpret_cast<__m128i*>(s.levels + c), _mm_shuffle_epi8(lut, _mm_and_si128(v, low4)));
      _mm_store_si128(reinterpret_cast<__m128i*>(s.levels + B / 2 + c),
                      _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(v, 4), low4)));
    }
    return s;
  }
  static void raw_pair(const Group& s, int p, __m256& l0, __m256& l1) {
    l0 = Q8::raw(s.levels + Q8::off0(p));
    l1 = Q8::raw(s.levels + Q8::off1(p));
  }
  static void pair(const Group& s, int p, __m256& w0, __m256& w1) {
    w0 = Q8::widen(s.levels + Q8::off0(p), s.d);
    w1 = Q8::widen(s.levels + Q8::off1(p), s.d);
  }
  static __m256 apply_block(const Group& s, __m256 dot, __m256, __m256 acc) { return _mm256_fmadd_ps(dot, s.d, acc); }
};

// 16 q5 levels (code - 16, int8) from 16 low nibbles (one per byte) and the 16 high bits at `bits`
// (two bytes, little-endian): the bits spread to bytes by a shuffle, an AND and a compare.
inline __m128i q5_levels16(__m128i low4, const uint8_t* bits) {
  uint16_t h;
  std::memcpy(&h, bits, 2);
  const __m128i spread = _mm_shuffle_epi8(_mm_set1_epi16(short(h)), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
  const __m128i bit = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  const __m128i high = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(spread, bit), bit), _mm_set1_epi8(16));
  return _mm_sub_epi8(_mm_or_si128(low4, high), _mm_set1_epi8(16));
}

// The B levels (code - 16, int8, element order) of one q5 block from its code bytes q.
template <int B>
inline void q5_block_levels(const uint8_t* q, int8_t* out) {
  const uint8_t* nib = q + kQ5HighBytes<B>;
  const __m128i low4 = _mm_set1_epi8(0x0f);
  for (int c = 0; c < B / 2; c += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(nib + c));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), q5_levels16(_mm_and_si128(v, low4), q + c / 8));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + B / 2 + c),
                     q5_levels16(_mm_and_si128(_mm_srli_epi16(v, 4), low4), q + (B / 2 + c) / 8));
  }
}

// q5 (x = (code - 16) * d): as q4n, group() writes the block's levels (-16..15) as int8 in element
// order into q4n's Group, and the rest is q4n's (that is, q8's) walk.
template <int B>
struct DecodeQ5 : DecodeQ4N<B> {
  using L = BlockOf<Format::q5, B>;
  using Group = typename DecodeQ4N<B>::Group;
  static constexpr int kGroupBytes = L::bytes;
  static Group group(const uint8_t* row, int64_t g, const float* table) {
    const uint8_t* blk = row + g * kGroupBytes;
    Group s;
    s.d = broadcast_fp16(table, blk + L::scale_offset);
    q5_block_levels<B>(blk + L::quants_offset, s.levels);
    return s;
  }
};

// The decoder of each format, for the kernels' <Format, block> visit (pyrt/format_dispatch.h).
template <Format F, int B>
struct DecoderOf { using type = DecodePlain<F>; };
template <int B>
struct DecoderOf<Format::q8, B> { using type = DecodeQ8<B>; };
template <int B>
struct DecoderOf<Format::q4, B> { using type = DecodeNibbles<Format::q4, B>; };
template <int B>
struct DecoderOf<Format::q4a, B> { using type = DecodeNibbles<Format::q4a, B>; };
template <int B>
struct DecoderOf<Format::q4n, B> { using type = DecodeQ4N<B>; };
template <int B>
struct DecoderOf<Format::q5, B> { using type = DecodeQ5<B>; };
template <Format F, int B>
using Decoder = typename DecoderOf<F, B>::type;

// One weight of a plain-format row, for the K % 16 tail (q-formats never have a tail). Written
// without pyrt/half.h: an inline function from a shared header compiled here with AVX2 flags
// could be the copy the linker keeps for the scalar kernel too.
inline float plain_weight(Format f, const uint8_t* row, int64_t k) {
  uint16_t h;
  float v;
  switch (f) {
    case Format::f16:
      std::memcpy(&h, row + 2 * k, 2);
      return _cvtsh_ss(h);
    case Format::bf16: {
      std::memcpy(&h, row + 2 * k, 2);
      const uint32_t bits = uint32_t(h) << 16;
      std::memcpy(&v, &bits, 4);
      return v;
    }
    default:
      std::memcpy(&v, row + 4 * k, 4);
      return v;
  }
}

// Asks for row[k0, k0 + len) (group-aligned) to be brought into the caches ahead of use.
template <class D>
inline void prefetch_span(const uint8_t* row, int64_t k0, int64_t len) {
  const uint8_t* begin = row + k0 / D::kGroup * D::kGroupBytes;
  const uint8_t* end = row + (k0 + len) / D::kGroup * D::kGroupBytes;
  for (const uint8_t* p = begin; p < end; p += 64) _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
}

}  // namespace pyrt::cpu::avx2
