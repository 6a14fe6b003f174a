// AVX-512 versions of two decoder steps that the portable loops run a few floats at a time
// (cpu/decoder_variants_cpu.cc picks them): the gated tanh GELU of Gemma's FFN and the append of a
// prefill's keys/values to an FP16 KV cache. The append gives the portable bytes exactly (the
// hardware conversion rounds to nearest even like pyrt::fp32_to_fp16); the GELU is the portable
// formula in the same order (the compiler may fuse a multiply-add).
#include "cpu/avx512_intrinsics.h"

#include <algorithm>

#include "cpu/decoder_variants_cpu.h"
#include "cpu/transpose_avx512.h"
#include "cpu/vector_math.h"

namespace pyrt::cpu::avx512 {
namespace {

constexpr int kToHalf = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

__mmask16 tail_mask(int64_t left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u); }

}  // namespace

void gelu_tanh_gated_rows(const float* gate, const float* up, float* y, int64_t n) noexcept {
  // As the portable loop: t = -2 sqrt(2/pi) (g + 0.044715 g^3), exp over the chunk, g / (1 + t) * u.
  constexpr int64_t kChunk = 256;
  alignas(64) float t[kChunk];
  const __m512 c3 = _mm512_set1_ps(0.044715f), scale = _mm512_set1_ps(-1.5957691216057308f);
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t m = std::min(kChunk, n - b);
    for (int64_t i = 0; i < m; i += 16) {
      const __mmask16 k = tail_mask(m - i);
      const __m512 g = _mm512_maskz_loadu_ps(k, gate + b + i);
      const __m512 cube = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(c3, g), g), g);
      _mm512_store_ps(t + i, _mm512_mul_ps(scale, _mm512_add_ps(g, cube)));
    }
    kVectorMath.exp(t, t, m);
    for (int64_t i = 0; i < m; i += 16) {
      const __mmask16 k = tail_mask(m - i);
      const __m512 g = _mm512_maskz_loadu_ps(k, gate + b + i), u = _mm512_maskz_loadu_ps(k, up + b + i);
      const __m512 r = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, _mm512_load_ps(t + i))), u);
      _mm512_mask_storeu_ps(y + b + i, k, r);
    }
  }
}

void kv_append_f16_rows(const float* k, const float* v, int64_t stride, int64_t rows, int64_t head_dim,
                        uint16_t* keys, uint16_t* values_t, int64_t pos, int64_t capacity) noexcept {
  for (int64_t i = 0; i < rows; ++i) {
    const float* src = k + i * stride;
    uint16_t* dst = keys + (pos + i) * head_dim;
    for (int64_t e = 0; e < head_dim; e += 16) {
      const __mmask16 m = tail_mask(head_dim - e);
      _mm256_mask_storeu_epi16(dst + e, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + e), kToHalf));
    }
  }
  // Values go transposed: 16 rows x 16 elements at a time through a register transpose, so each
  // store writes 16 consecutive positions of one element's row instead of 16 scattered halves.
  int64_t i = 0;
  for (; i + 16 <= rows; i += 16) {
    for (int64_t e = 0; e < head_dim; e += 16) {
      const __mmask16 m = tail_mask(head_dim - e);
      __m512 r[16];
      for (int j = 0; j < 16; ++j) r[j] = _mm512_maskz_loadu_ps(m, v + (i + j) * stride + e);
      transpose16x16(r);
      const int64_t valid = std::min<int64_t>(16, head_dim - e);
      for (int64_t j = 0; j < valid; ++j)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(values_t + (e + j) * capacity + pos + i),
                            _mm512_cvtps_ph(r[j], kToHalf));
    }
  }
  for (; i < rows; ++i) {  // the last rows one at a time
    const float* src = v + i * stride;
    for (int64_t e = 0; e < head_dim; e += 16) {
      alignas(32) uint16_t h[16];
      const __mmask16 m = tail_mask(head_dim - e);
      _mm256_store_si256(reinterpret_cast<__m256i*>(h), _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + e), kToHalf));
      const int64_t valid = std::min<int64_t>(16, head_dim - e);
      for (int64_t j = 0; j < valid; ++j) values_t[(e + j) * capacity + pos + i] = h[j];
    }
  }
}

}  // namespace pyrt::cpu::avx512
