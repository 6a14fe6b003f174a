// Portable vector math (see vector_math.h): the reference the SIMD versions are tested beside, and
// the fallback on CPUs (and architectures) without them. Same polynomials, one element at a time.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/vector_math.h"
#include "cpu/vector_math_coefficients.h"

namespace pyrt::cpu::scalar {
namespace {

using namespace pyrt::cpu::coeff;

float pow2(int n) {  // 2^n for -126 <= n <= 127
  const uint32_t bits = uint32_t(n + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float exp1(float x) {
  if (std::isnan(x)) return x;
  // Past these bounds the result is already 0 or inf; clamping keeps n small.
  x = std::min(89.0f, std::max(-104.0f, x));
  const float n = std::nearbyint(x * kLog2e);
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = kExpPoly[4];
  for (int k = 3; k >= 0; --k) p = p * r + kExpPoly[k];
  const float y = (p * (r * r) + r) + 1.0f;
  // 2^n in two halves: n runs from -150 to 128, past what one exponent field holds.
  const int ni = int(n), n1 = ni / 2;
  return y * pow2(n1) * pow2(ni - n1);
}

float gelu1(float x) {
  const float a = std::fabs(x), x2 = x * x;
  if (!(a >= kGeluSplit)) {  // NaN stays here and propagates
    float s = kGeluSmall[7];
    for (int k = 6; k >= 0; --k) s = s * x2 + kGeluSmall[k];
    return x * (x * s + 0.5f);
  }
  // Tails: Phi(-|x|) = exp(-x^2/2) R(|x|), computed directly (1 - Phi would lose its digits).
  const float t = std::min(a, kGeluTailTop);
  float r = kGeluTail[6];
  for (int k = 5; k >= 0; --k) r = r * t + kGeluTail[k];
  const float q = exp1(-0.5f * x2) * r;
  return x * (x < 0.0f ? q : 1.0f - q);
}

float silu1(float x) { return x / (1.0f + exp1(-x)); }

void exp_rows(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp1(x[i]);
}

void gelu_erf(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu1(x[i]);
}

void silu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = silu1(x[i]);
}

void silu_mul(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = silu1(gate[i]) * up[i];
}

void softmax(float* x, int64_t n, int64_t valid, float scale) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < valid; ++i) mx = std::max(mx, x[i] * scale);
  float sum = 0.0f;
  for (int64_t i = 0; i < valid; ++i) {
    x[i] = exp1(x[i] * scale - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < valid; ++i) x[i] *= inv;
  for (int64_t i = valid; i < n; ++i) x[i] = 0.0f;
}

void layer_norm(float* x, int64_t n, const float* gamma, const float* beta, float eps) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const float mean = sum / float(n);
  float sq = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float d = x[i] - mean;
    sq += d * d;
  }
  const float inv_std = 1.0f / std::sqrt(sq / float(n) + eps);
  for (int64_t i = 0; i < n; ++i) x[i] = (x[i] - mean) * inv_std * gamma[i] + beta[i];
}

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* y) {
  // FP64 sum of squares: the float64 reference tests of the LLM see this reduction.
  double sum_sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_sq += double(x[i]) * double(x[i]);
  const float inv = float(1.0 / std::sqrt(sum_sq / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv * weight[i];
}

float dot(const float* a, const float* b, int64_t n) {
  // Four partial sums: the compiler may vectorize them without reassociating anything itself.
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) s[k] += a[i + k] * b[i + k];
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

extern const VectorMath kVectorMath = {exp_rows, gelu_erf, silu, silu_mul, softmax, layer_norm, rms_norm, dot, axpy};

}  // namespace pyrt::cpu::scalar
