// AVX-512 int8-activation quantizer: the same bytes as the scalar reference
// (quantize_activations_scalar.cc), 16 activations per instruction. vcvtps2dq rounds to nearest
// even under the default MXCSR, which is what the scalar magic-number rounding does; max|x| is an
// unsigned max over the IEEE bits, exact in any order, and flags Inf/NaN (bits >= 0x7F800000).
#include "cpu/avx512_intrinsics.h"

#include "cpu/kernels.h"
#include "pyrt/format_dispatch.h"

namespace pyrt::cpu::avx512 {
namespace {

template <int B>
bool quantize_rows(const float* x, int64_t M, int64_t K, int8_t* q, float* scale, float* sum) {
  constexpr int V = B / 16;
  const int64_t nb = K / B;
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  bool finite = true;
  for (int64_t i = 0; i < M * nb; ++i) {
    // Blocks are contiguous within and across rows (row stride K = nb * B): no division needed.
    const float* src = x + i * B;
    int8_t* dst = q + i * B;
    __m512 v[V];
    __m512i bits = _mm512_setzero_si512();
    for (int j = 0; j < V; ++j) {
      v[j] = _mm512_loadu_ps(src + 16 * j);
      bits = _mm512_max_epu32(bits, _mm512_and_si512(_mm512_castps_si512(v[j]), abs_mask));
    }
    const uint32_t amax_bits = _mm512_reduce_max_epu32(bits);
    if (amax_bits >= 0x7F800000u) {
      finite = false;
      continue;
    }
    const float amax = _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(int(amax_bits))));
    const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    __m512i total = _mm512_setzero_si512();
    for (int j = 0; j < V; ++j) {
      __m512i c = _mm512_cvtps_epi32(_mm512_mul_ps(v[j], inv));
      c = _mm512_min_epi32(_mm512_max_epi32(c, lo), hi);
      total = _mm512_add_epi32(total, c);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16 * j), _mm512_cvtepi32_epi8(c));
    }
    const float d = amax / 127.0f;
    scale[i] = d;
    sum[i] = d * static_cast<float>(_mm512_reduce_add_epi32(total));
  }
  return finite;
}

}  // namespace

bool quantize_activations(const float* x, int64_t M, int64_t K, int block, int8_t* q, float* scale, float* sum) {
  return visit_block(block, [&](auto b) { return quantize_rows<b.value>(x, M, K, q, scale, sum); });
}

}  // namespace pyrt::cpu::avx512
