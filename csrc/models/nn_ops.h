// Row-wise building blocks of transformer forward passes (LayerNorm, GELU, softmax, L2 norm).
// The row math runs on the active ISA's cpu/vector_math.h kernels; all statistics are kept in FP32.
// Each function works on caller-owned memory and never allocates, so it is safe inside OpenMP
// regions.
#pragma once
#include <cstdint>

namespace pyrt::nn {

// x[rows, n] in place: (x - mean) / sqrt(var + eps) * gamma + beta, per row. The variance is
// computed in a second pass over (x - mean), which avoids the cancellation of E[x^2] - E[x]^2.
// Rows are split across threads when there are enough of them.
void layer_norm_rows(float* x, int64_t rows, int64_t n, const float* gamma, const float* beta, float eps);

// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);

// x = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))): the exact GELU of BERT (hidden_act "gelu"),
// not the tanh approximation. Split across threads.
void gelu_erf_inplace(float* x, int64_t n);

// x[0:n] = softmax(x[0:n]), max-subtracted so that large scores cannot overflow. n >= 1.
void softmax_inplace(float* x, int64_t n);

// x /= max(||x||_2, 1e-12), as torch.nn.functional.normalize (sentence-transformers' Normalize).
void l2_normalize_inplace(float* x, int64_t n);

}  // namespace pyrt::nn
