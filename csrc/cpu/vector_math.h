// Element-wise and row-wise FP32 math of the non-matmul parts of a forward pass (activations,
// softmax, normalization, small dot products), one implementation per ISA (vector_math_scalar.cc,
// vector_math_avx2.cc, vector_math_avx512.cc) behind one table of function pointers.
//
// exp and GELU use our own polynomials (vector_math_coefficients.h, fitted by
// tools/fit_vector_math.py): exp relative error < 5e-7 wherever the result is a normal float
// (subnormal results are rounded once, 0 below about -103.9, inf above 88.72), GELU absolute error
// < 2e-7 * max(1, |x|). NaN inputs give NaN.
// The functions never allocate and never throw, so they are safe inside OpenMP regions.
#pragma once
#include <cstdint>

#include "cpu/cpu_isa.h"

namespace pyrt::cpu {

struct VectorMath {
  // y[i] = exp(x[i]). y may alias x.
  void (*exp)(const float* x, float* y, int64_t n);
  // y[i] = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact GELU (not the tanh form). y may alias x.
  void (*gelu_erf)(const float* x, float* y, int64_t n);
  // y[i] = x / (1 + exp(-x)). y may alias x.
  void (*silu)(const float* x, float* y, int64_t n);
  // y[i] = silu(gate[i]) * up[i] (SwiGLU). y may alias gate or up.
  void (*silu_mul)(const float* gate, const float* up, float* y, int64_t n);
  // In place: x[0:valid] = softmax(scale * x[0:valid]) (max-subtracted), x[valid:n] = 0.
  void (*softmax)(float* x, int64_t n, int64_t valid, float scale);
  // In place: (x - mean) / sqrt(var + eps) * gamma + beta, statistics in FP32, variance from a
  // second pass over x - mean (no E[x^2] - E[x]^2 cancellation).
  void (*layer_norm)(float* x, int64_t n, const float* gamma, const float* beta, float eps);
  // y = x / sqrt(mean(x^2) + eps) * weight, the mean of squares accumulated in FP64. y may alias x.
  void (*rms_norm)(const float* x, const float* weight, int64_t n, float eps, float* y);
  // sum(a[i] * b[i]) in FP32 with several accumulators.
  float (*dot)(const float* a, const float* b, int64_t n);
  // y[i] += a * x[i]
  void (*axpy)(float a, const float* x, float* y, int64_t n);
};

namespace scalar { extern const VectorMath kVectorMath; }
namespace avx2 { extern const VectorMath kVectorMath; }
namespace avx512 { extern const VectorMath kVectorMath; }

// The table of `isa` (scalar when this build has no kernels for it), and of active_isa().
const VectorMath& vector_math(Isa isa);
const VectorMath& vector_math();

}  // namespace pyrt::cpu
