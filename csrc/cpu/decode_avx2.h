// AVX2/F16C decoders that turn stored weights into FP32 vectors in registers. Include only from
// *_avx2.cc files (they are the only ones compiled with -mavx2 -mfma -mf16c).
//
// Every format is walked in "groups": a q-block for q8/q4/q4a, 16 consecutive weights for the
// plain formats. A group is decoded as pairs of 8-wide vectors; `off0(p)`/`off1(p)` give the K
// offsets (inside the group) of pair p. For q4/q4a the pair is the low and high nibbles of the
// same 8 bytes (elements j and j + B/2), so one zero-extension yields 16 weights.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "pyrt/formats.h"
#include "pyrt/half.h"

namespace pyrt::cpu::avx2 {

inline float load_fp16_scalar(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

struct DecodeF32 {
  static constexpr int kGroup = 16;
  static constexpr int kPairs = 1;
  struct Group { const float* p; };
  static Group group(const uint8_t* row, int64_t g) {
    return {reinterpret_cast<const float*>(row) + g * kGroup};
  }
  static constexpr int off0(int) { return 0; }
  static constexpr int off1(int) { return 8; }
  static void pair(const Group& s, int, __m256& w0, __m256& w1) {
    w0 = _mm256_loadu_ps(s.p);
    w1 = _mm256_loadu_ps(s.p + 8);
  }
};

struct DecodeF16 {
  static constexpr int kGroup = 16;
  static constexpr int kPairs = 1;
  struct Group { const uint16_t* p; };
  static Group group(const uint8_t* row, int64_t g) {
    return {reinterpret_cast<const uint16_t*>(row) + g * kGroup};
  }
  static constexpr int off0(int) { return 0; }
  static constexpr int off1(int) { return 8; }
  static void pair(const Group& s, int, __m256& w0, __m256& w1) {
    w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.p)));
    w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.p + 8)));
  }
};

struct DecodeBF16 {
  static constexpr int kGroup = 16;
  static constexpr int kPairs = 1;
  struct Group { const uint16_t* p; };
  static Group group(const uint8_t* row, int64_t g) {
    return {reinterpret_cast<const uint16_t*>(row) + g * kGroup};
  }
  static constexpr int off0(int) { return 0; }
  static constexpr int off1(int) { return 8; }
  // bf16 is the top half of an fp32: widen and shift left by 16.
  static __m256 widen(const uint16_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static void pair(const Group& s, int, __m256& w0, __m256& w1) {
    w0 = widen(s.p);
    w1 = widen(s.p + 8);
  }
};

template <int B>
struct DecodeQ8 {
  static constexpr int kGroup = B;
  static constexpr int kPairs = B / 16;
  static constexpr int kBlockBytes = 2 + B;
  struct Group { const int8_t* q; __m256 d; };
  static Group group(const uint8_t* row, int64_t g) {
    const uint8_t* blk = row + g * kBlockBytes;
    return {reinterpret_cast<const int8_t*>(blk + 2), _mm256_set1_ps(load_fp16_scalar(blk))};
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
};

// q4 (x = (nib - 8) * d) and q4a (x = nib * d + m) share the nibble walk: x = nib * d + offset,
// with offset = -8d for q4 (exact: a power-of-two multiple of d) and m for q4a.
template <int B, bool kAffine>
struct DecodeNibbles {
  static constexpr int kGroup = B;
  static constexpr int kPairs = B / 16;
  static constexpr int kHeader = kAffine ? 4 : 2;
  static constexpr int kBlockBytes = kHeader + B / 2;
  struct Group { const uint8_t* q; __m256 d; __m256 offset; };
  static Group group(const uint8_t* row, int64_t g) {
    const uint8_t* blk = row + g * kBlockBytes;
    const float d = load_fp16_scalar(blk);
    const float offset = kAffine ? load_fp16_scalar(blk + 2) : -8.0f * d;
    return {blk + kHeader, _mm256_set1_ps(d), _mm256_set1_ps(offset)};
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
};

template <int B> using DecodeQ4 = DecodeNibbles<B, false>;
template <int B> using DecodeQ4A = DecodeNibbles<B, true>;

// One weight of a plain-format row, for the K % 16 tail (q-formats never have a tail).
inline float plain_weight(Format f, const uint8_t* row, int64_t k) {
  uint16_t h;
  switch (f) {
    case Format::f16:
      std::memcpy(&h, row + 2 * k, 2);
      return fp16_to_fp32(h);
    case Format::bf16:
      std::memcpy(&h, row + 2 * k, 2);
      return bf16_to_fp32(h);
    default: {
      float v;
      std::memcpy(&v, row + 4 * k, 4);
      return v;
    }
  }
}

// Calls visitor(Decoder{}) with the decoder type for (format, block); block is already validated.
template <class Visitor>
void visit_decoder(Format f, int block, Visitor&& visitor) {
  switch (f) {
    case Format::f32: return visitor(DecodeF32{});
    case Format::f16: return visitor(DecodeF16{});
    case Format::bf16: return visitor(DecodeBF16{});
    case Format::q8:
      if (block == 32) return visitor(DecodeQ8<32>{});
      if (block == 64) return visitor(DecodeQ8<64>{});
      return visitor(DecodeQ8<128>{});
    case Format::q4:
      if (block == 32) return visitor(DecodeQ4<32>{});
      if (block == 64) return visitor(DecodeQ4<64>{});
      return visitor(DecodeQ4<128>{});
    case Format::q4a:
      if (block == 32) return visitor(DecodeQ4A<32>{});
      if (block == 64) return visitor(DecodeQ4A<64>{});
      return visitor(DecodeQ4A<128>{});
  }
}

}  // namespace pyrt::cpu::avx2
