// AVX-512 weight decoding shared by the GEMV and GEMM paths: 16 weights of any format to one
// __m512 of FP32. Include only from *_avx512.cc files (needs -mavx512f/bw/vl/dq, -mf16c).
//
// The 4-bit formats decode through a 16-entry float table and one vpermps per 16 weights: vpermps
// reads only the low 4 bits of each index, so the low nibble needs no mask, and folding the block
// scale (and q4a's min) into the table once per block makes the weights come out dequantized.
#pragma once
#include "cpu/avx512_intrinsics.h"

#include <cstdint>
#include <cstring>

#include "pyrt/formats.h"

namespace pyrt::cpu::avx512 {

inline float load_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Table entries i - 8 (q4), i (q4a) and kQ4nLevels[i] (q4n).
inline __m512 q4_level_table() {
  return _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
}
inline __m512 q4a_level_table() {
  return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
inline __m512 q4n_level_table() {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kQ4nLevels))));
}
template <Format F>
inline __m512 level_table() {
  if constexpr (F == Format::q4) return q4_level_table();
  else if constexpr (F == Format::q4a) return q4a_level_table();
  else return q4n_level_table();
}

// 16 bytes of packed nibbles -> the 16 dword indices (low nibble in bits 0-3, high in bits 4-7).
inline __m512i load_nibble_pairs(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m512 low_nibbles(__m512i idx, __m512 table) { return _mm512_permutexvar_ps(idx, table); }
inline __m512 high_nibbles(__m512i idx, __m512 table) {
  return _mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), table);
}

inline __m512 load_q8x16(const uint8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// Plain formats: 16 weights starting at element k of a row, or the first `mask` bits of them.
template <Format F>
inline __m512 load_plain16(const uint8_t* row, int64_t k) {
  if constexpr (F == Format::f32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else if constexpr (F == Format::f16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
  } else {  // bf16: the 16 bits are the top half of an FP32
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
  }
}
template <Format F>
inline __m512 load_plain16_masked(const uint8_t* row, int64_t k, __mmask16 mask) {
  if constexpr (F == Format::f32) {
    return _mm512_maskz_loadu_ps(mask, reinterpret_cast<const float*>(row) + k);
  } else if constexpr (F == Format::f16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, row + 2 * k));
  } else {
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, row + 2 * k));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
  }
}

inline __mmask16 tail_mask(int64_t n) { return __mmask16((1u << n) - 1u); }

// The 16 values a q4 / q4a / q4n block's nibbles stand for (levels times d, plus m for q4a), so one
// permute per 16 weights decodes them; *nibbles is set to the block's packed nibbles.
template <Format F, int B>
inline __m512 nibble_value_table(const uint8_t* blk, const uint8_t** nibbles) {
  using L = BlockOf<F, B>;
  *nibbles = blk + L::quants_offset;
  if constexpr (F == Format::q4 || F == Format::q4n)
    return _mm512_mul_ps(level_table<F>(), _mm512_set1_ps(load_fp16(blk + L::scale_offset)));
  else
    return _mm512_fmadd_ps(q4a_level_table(), _mm512_set1_ps(load_fp16(blk + L::scale_offset)),
                           _mm512_set1_ps(load_fp16(blk + L::min_offset)));
}

// q5 (x = (code - 16) * d): the low four bits through q4's table times d (levels -16..-1 here),
// then + 16 d in the lanes whose high bit is set (the high-bit bytes are the lane masks).
template <int B>
struct Q5Values {
  __m512 table, step;
  const uint8_t* bits;
  const uint8_t* nib;
  explicit Q5Values(const uint8_t* blk) {
    using L = BlockOf<Format::q5, B>;
    const float d = load_fp16(blk + L::scale_offset);
    table = _mm512_mul_ps(_mm512_sub_ps(q4_level_table(), _mm512_set1_ps(8.0f)), _mm512_set1_ps(d));
    step = _mm512_set1_ps(16.0f * d);
    bits = blk + L::quants_offset;
    nib = bits + kQ5HighBytes<B>;
  }
  static __mmask16 mask_at(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return __mmask16(h);
  }
  // Elements [c, c + 16) and [B/2 + c, B/2 + c + 16), c a multiple of 16 below B/2.
  void pair(int c, __m512* lo, __m512* hi) const {
    const __m512i idx = load_nibble_pairs(nib + c);
    const __m512 l = low_nibbles(idx, table), h = high_nibbles(idx, table);
    *lo = _mm512_mask_add_ps(l, mask_at(bits + c / 8), l, step);
    *hi = _mm512_mask_add_ps(h, mask_at(bits + (B / 2 + c) / 8), h, step);
  }
};

// Dequantizes elements [k0, k0 + len) of one weight row into dst (FP32). For q-formats k0 and len
// are multiples of the block B (the GEMM's K blocks are multiples of 128).
template <Format F, int B>
inline void dequantize_segment(const uint8_t* row, int64_t k0, int64_t len, float* dst) {
  if constexpr (!kBlocked<F>) {
    int64_t k = 0;
    for (; k + 16 <= len; k += 16) _mm512_storeu_ps(dst + k, load_plain16<F>(row, k0 + k));
    if (k < len) {
      const __mmask16 m = tail_mask(len - k);
      _mm512_mask_storeu_ps(dst + k, m, load_plain16_masked<F>(row, k0 + k, m));
    }
  } else {
    using L = BlockOf<F, B>;
    const uint8_t* blk = row + (k0 / B) * L::bytes;
    for (int64_t k = 0; k < len; k += B, blk += L::bytes, dst += B) {
      if constexpr (F == Format::q8) {
        const __m512 d = _mm512_set1_ps(load_fp16(blk + L::scale_offset));
        for (int c = 0; c < B; c += 16)
          _mm512_storeu_ps(dst + c, _mm512_mul_ps(load_q8x16(blk + L::quants_offset + c), d));
      } else if constexpr (F == Format::q5) {
        const Q5Values<B> v(blk);
        for (int c = 0; c < B / 2; c += 16) {
          __m512 lo, hi;
          v.pair(c, &lo, &hi);
          _mm512_storeu_ps(dst + c, lo);
          _mm512_storeu_ps(dst + B / 2 + c, hi);
        }
      } else {
        const uint8_t* q;
        const __m512 table = nibble_value_table<F, B>(blk, &q);
        for (int c = 0; c < B / 2; c += 16) {
          const __m512i idx = load_nibble_pairs(q + c);
          _mm512_storeu_ps(dst + c, low_nibbles(idx, table));
          _mm512_storeu_ps(dst + B / 2 + c, high_nibbles(idx, table));
        }
      }
    }
  }
}

}  // namespace pyrt::cpu::avx512
