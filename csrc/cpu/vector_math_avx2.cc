// AVX2 + FMA vector math (see vector_math.h): 8 lanes, tails through masked loads and stores.
#include <immintrin.h>

#include <cmath>

#include "cpu/vector_math.h"
#include "cpu/vector_math_coefficients.h"

namespace pyrt::cpu::avx2 {
namespace {

using namespace pyrt::cpu::coeff;

// All-ones in the first min(left, 8) lanes: maskload reads zeros and maskstore skips the rest.
__m256i tail_mask(int64_t left) {
  const int k = left >= 8 ? 8 : int(left);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
__m256 load(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }
void store(float* p, __m256i m, __m256 v) { _mm256_maskstore_ps(p, m, v); }

float reduce_add(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
float reduce_max(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
double reduce_add(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

__m256 pow2(__m256i n) {  // 2^n for -126 <= n <= 127
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}

__m256 exp_ps(__m256 x) {
  // Past these bounds the result is already 0 or inf; clamping keeps n small. max(lo, x) returns
  // x when x is NaN, so NaN goes through (and stays NaN).
  x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpPoly[4]);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[3]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[2]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[1]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[0]));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  // 2^n in two halves: n runs from -150 to 128, past what one exponent field holds, and the
  // second multiplication overflows to inf or rounds into the subnormals exactly once.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  return _mm256_mul_ps(_mm256_mul_ps(y, pow2(n1)), pow2(_mm256_sub_epi32(ni, n1)));
}

__m256 gelu_ps(__m256 x) {
  const __m256 a = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  const __m256 x2 = _mm256_mul_ps(x, x);
  // Phi(x) = 1/2 + x S(x^2) near 0 (odd, so the sign takes care of itself).
  __m256 s = _mm256_set1_ps(kGeluSmall[7]);
  for (int k = 6; k >= 0; --k) s = _mm256_fmadd_ps(s, x2, _mm256_set1_ps(kGeluSmall[k]));
  __m256 phi = _mm256_fmadd_ps(x, s, _mm256_set1_ps(0.5f));
  // Tails: Phi(-|x|) = exp(-x^2/2) R(|x|), computed directly (1 - Phi would lose its digits).
  const __m256 tail = _mm256_cmp_ps(a, _mm256_set1_ps(kGeluSplit), _CMP_NLT_UQ);
  if (_mm256_movemask_ps(tail)) {
    const __m256 t = _mm256_min_ps(a, _mm256_set1_ps(kGeluTailTop));
    __m256 r = _mm256_set1_ps(kGeluTail[6]);
    for (int k = 5; k >= 0; --k) r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(kGeluTail[k]));
    const __m256 q = _mm256_mul_ps(exp_ps(_mm256_mul_ps(x2, _mm256_set1_ps(-0.5f))), r);
    const __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 tail_phi = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), q), q, negative);
    phi = _mm256_blendv_ps(phi, tail_phi, tail);
  }
  return _mm256_mul_ps(x, phi);
}

__m256 silu_ps(__m256 x) {
  // x / (1 + exp(-x)): exp(-x) = inf for very negative x gives -0, not NaN.
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

void exp_rows(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = tail_mask(n - i);
    store(y + i, m, exp_ps(load(x + i, m)));
  }
}

void gelu_erf(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = tail_mask(n - i);
    store(y + i, m, gelu_ps(load(x + i, m)));
  }
}

void silu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = tail_mask(n - i);
    store(y + i, m, silu_ps(load(x + i, m)));
  }
}

void silu_mul(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = tail_mask(n - i);
    store(y + i, m, _mm256_mul_ps(silu_ps(load(gate + i, m)), load(up + i, m)));
  }
}

void softmax(float* x, int64_t n, int64_t valid, float scale) {
  const __m256 vscale = _mm256_set1_ps(scale);
  const __m256 minus_inf = _mm256_set1_ps(-INFINITY);
  __m256 vmax = minus_inf;
  for (int64_t i = 0; i < valid; i += 8) {
    const __m256i m = tail_mask(valid - i);
    const __m256 v = _mm256_blendv_ps(minus_inf, _mm256_mul_ps(load(x + i, m), vscale), _mm256_castsi256_ps(m));
    vmax = _mm256_max_ps(vmax, v);
  }
  const __m256 mx = _mm256_set1_ps(reduce_max(vmax));
  __m256 sum = _mm256_setzero_ps();
  for (int64_t i = 0; i < valid; i += 8) {
    const __m256i m = tail_mask(valid - i);
    const __m256 e = _mm256_and_ps(exp_ps(_mm256_fmsub_ps(load(x + i, m), vscale, mx)), _mm256_castsi256_ps(m));
    store(x + i, m, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m256 inv = _mm256_set1_ps(1.0f / reduce_add(sum));
  for (int64_t i = 0; i < valid; i += 8) {
    const __m256i m = tail_mask(valid - i);
    store(x + i, m, _mm256_mul_ps(load(x + i, m), inv));
  }
  for (int64_t i = valid; i < n; i += 8) store(x + i, tail_mask(n - i), _mm256_setzero_ps());
}

void layer_norm(float* x, int64_t n, const float* gamma, const float* beta, float eps) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
  }
  for (; i < n; i += 8) s0 = _mm256_add_ps(s0, load(x + i, tail_mask(n - i)));
  const float mean = reduce_add(_mm256_add_ps(s0, s1)) / float(n);
  const __m256 vmean = _mm256_set1_ps(mean);
  __m256 q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vmean);
    const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vmean);
    q0 = _mm256_fmadd_ps(d0, d0, q0);
    q1 = _mm256_fmadd_ps(d1, d1, q1);
  }
  for (; i < n; i += 8) {
    const __m256i m = tail_mask(n - i);
    const __m256 d = _mm256_and_ps(_mm256_sub_ps(load(x + i, m), vmean), _mm256_castsi256_ps(m));
    q0 = _mm256_fmadd_ps(d, d, q0);
  }
  const float var = reduce_add(_mm256_add_ps(q0, q1)) / float(n);
  const __m256 inv_std = _mm256_set1_ps(1.0f / std::sqrt(var + eps));
  for (i = 0; i < n; i += 8) {
    const __m256i m = tail_mask(n - i);
    const __m256 d = _mm256_mul_ps(_mm256_sub_ps(load(x + i, m), vmean), inv_std);
    store(x + i, m, _mm256_fmadd_ps(d, load(gamma + i, m), load(beta + i, m)));
  }
}

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* y) {
  // FP64 sum of squares: the float64 reference tests of the LLM see this reduction.
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  for (int64_t i = 0; i < n; i += 8) {
    const __m256 v = load(x + i, tail_mask(n - i));
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    s0 = _mm256_fmadd_pd(lo, lo, s0);
    s1 = _mm256_fmadd_pd(hi, hi, s1);
  }
  const double sum_sq = reduce_add(_mm256_add_pd(s0, s1));
  const __m256 inv = _mm256_set1_ps(float(1.0 / std::sqrt(sum_sq / double(n) + double(eps))));
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = tail_mask(n - i);
    store(y + i, m, _mm256_mul_ps(_mm256_mul_ps(load(x + i, m), inv), load(weight + i, m)));
  }
}

float dot(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i < n; i += 8) {
    const __m256i m = tail_mask(n - i);
    s0 = _mm256_fmadd_ps(load(a + i, m), load(b + i, m), s0);
  }
  return reduce_add(_mm256_add_ps(s0, s1));
}

void axpy(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    _mm256_storeu_ps(y + i + 8, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8)));
  }
  for (; i < n; i += 8) {
    const __m256i m = tail_mask(n - i);
    store(y + i, m, _mm256_fmadd_ps(va, load(x + i, m), load(y + i, m)));
  }
}

}  // namespace

extern const VectorMath kVectorMath = {exp_rows, gelu_erf, silu, silu_mul, softmax, layer_norm, rms_norm, dot, axpy};

}  // namespace pyrt::cpu::avx2
