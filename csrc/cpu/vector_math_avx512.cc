// AVX-512 vector math (see vector_math.h): 16 lanes, tails through masked loads and stores.
#include "cpu/avx512_intrinsics.h"

#include <cmath>

#include "cpu/vector_math.h"
#include "cpu/vector_math_coefficients.h"

namespace pyrt::cpu::avx512 {
namespace {

using namespace pyrt::cpu::coeff;

__mmask16 tail_mask(int64_t left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u); }

__m512 exp_ps(__m512 x) {
  // Past these bounds the result is already 0 or inf; clamping keeps n small. max(lo, x) returns
  // x when x is NaN, so NaN goes through (and stays NaN).
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpPoly[4]);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[3]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[2]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[1]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[0]));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);  // y * 2^n, overflowing to inf and underflowing to 0 correctly
}

__m512 gelu_ps(__m512 x) {
  const __m512 a = _mm512_abs_ps(x);
  const __m512 x2 = _mm512_mul_ps(x, x);
  // Phi(x) = 1/2 + x S(x^2) near 0 (odd, so the sign takes care of itself).
  __m512 s = _mm512_set1_ps(kGeluSmall[7]);
  for (int k = 6; k >= 0; --k) s = _mm512_fmadd_ps(s, x2, _mm512_set1_ps(kGeluSmall[k]));
  __m512 phi = _mm512_fmadd_ps(x, s, _mm512_set1_ps(0.5f));
  // Tails: Phi(-|x|) = exp(-x^2/2) R(|x|), computed directly (1 - Phi would lose its digits).
  const __mmask16 tail = _mm512_cmp_ps_mask(a, _mm512_set1_ps(kGeluSplit), _CMP_NLT_UQ);
  if (tail) {
    const __m512 t = _mm512_min_ps(a, _mm512_set1_ps(kGeluTailTop));
    __m512 r = _mm512_set1_ps(kGeluTail[6]);
    for (int k = 5; k >= 0; --k) r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(kGeluTail[k]));
    const __m512 q = _mm512_mul_ps(exp_ps(_mm512_mul_ps(x2, _mm512_set1_ps(-0.5f))), r);
    const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 tail_phi = _mm512_mask_blend_ps(negative, _mm512_sub_ps(_mm512_set1_ps(1.0f), q), q);
    phi = _mm512_mask_blend_ps(tail, phi, tail_phi);
  }
  return _mm512_mul_ps(x, phi);
}

__m512 silu_ps(__m512 x) {
  // x / (1 + exp(-x)): exp(-x) = inf for very negative x gives -0, not NaN.
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

void exp_rows(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, exp_ps(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void gelu_erf(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, gelu_ps(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void silu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, silu_ps(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void silu_mul(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 g = silu_ps(_mm512_maskz_loadu_ps(m, gate + i));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, up + i)));
  }
}

void softmax(float* x, int64_t n, int64_t valid, float scale) {
  const __m512 vscale = _mm512_set1_ps(scale);
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t i = 0; i < valid; i += 16) {
    const __mmask16 m = tail_mask(valid - i);
    vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vscale));
  }
  const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < valid; i += 16) {
    const __mmask16 m = tail_mask(valid - i);
    const __m512 e = exp_ps(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, x + i), vscale, mx));
    _mm512_mask_storeu_ps(x + i, m, e);
    sum = _mm512_mask_add_ps(sum, m, sum, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
  for (int64_t i = 0; i < valid; i += 16) {
    const __mmask16 m = tail_mask(valid - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
  }
  for (int64_t i = valid; i < n; i += 16) _mm512_mask_storeu_ps(x + i, tail_mask(n - i), _mm512_setzero_ps());
}

void layer_norm(float* x, int64_t n, const float* gamma, const float* beta, float eps) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i < n; i += 16) s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
  const float mean = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / float(n);
  const __m512 vmean = _mm512_set1_ps(mean);
  __m512 q0 = _mm512_setzero_ps(), q1 = _mm512_setzero_ps();
  for (i = 0; i + 32 <= n; i += 32) {
    const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vmean);
    const __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vmean);
    q0 = _mm512_fmadd_ps(d0, d0, q0);
    q1 = _mm512_fmadd_ps(d1, d1, q1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vmean);
    q0 = _mm512_fmadd_ps(d, d, q0);
  }
  const float var = _mm512_reduce_add_ps(_mm512_add_ps(q0, q1)) / float(n);
  const __m512 inv_std = _mm512_set1_ps(1.0f / std::sqrt(var + eps));
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmean), inv_std);
    const __m512 y = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, gamma + i), _mm512_maskz_loadu_ps(m, beta + i));
    _mm512_mask_storeu_ps(x + i, m, y);
  }
}

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* y) {
  // FP64 sum of squares (8 + 8 lanes): the float64 reference tests of the LLM see this reduction.
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    s0 = _mm512_fmadd_pd(lo, lo, s0);
    s1 = _mm512_fmadd_pd(hi, hi, s1);
  }
  const double sum_sq = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  const __m512 inv = _mm512_set1_ps(float(1.0 / std::sqrt(sum_sq / double(n) + double(eps))));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, weight + i)));
  }
}

float dot(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void axpy(float a, const float* x, float* y, int64_t n) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    _mm512_storeu_ps(y + i + 16, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16)));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
    _mm512_mask_storeu_ps(y + i, m, v);
  }
}

}  // namespace

extern const VectorMath kVectorMath = {exp_rows, gelu_erf, silu, silu_mul, softmax, layer_norm, rms_norm, dot, axpy};

}  // namespace pyrt::cpu::avx512
