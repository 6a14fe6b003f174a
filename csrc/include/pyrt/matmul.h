// y[M, N] = x[M, K] @ W[N, K]^T (+ bias[N]), FP32 accumulation, activations never quantized.
#pragma once
#include <cstdint>

#include "pyrt/formats.h"

namespace pyrt {

enum class ActivationType { f32, f16 };

struct MatmulParams {
  const void* x = nullptr;        // [M, K] row-major
  ActivationType x_type = ActivationType::f32;
  int64_t M = 0;
  WeightView w;                   // [N, K]
  const float* bias = nullptr;    // [N] or null
  float* y = nullptr;             // [M, N] row-major, fully written
};

// Validates, picks the kernel for the active CPU ISA, runs on the configured threads.
// Never touches Python: callers release the GIL around it.
void matmul(const MatmulParams& p);

// The two halves of matmul() for callers that run their own parallel region (a model's forward
// pass, where one region per step replaces a fork/join per product):
// check_matmul throws the errors matmul() would; matmul_rows computes y[:, n_begin:n_end] on the
// calling thread with the active ISA's kernel, for a p that passed check_matmul with f32
// activations. It never throws, allocates nothing and is safe to call concurrently on disjoint
// row ranges.
void check_matmul(const MatmulParams& p);
void matmul_rows(const MatmulParams& p, int64_t n_begin, int64_t n_end) noexcept;

// Rows of a weight-row range handed to each thread are multiples of this, so SIMD kernels see whole
// row groups.
constexpr int64_t kMatmulRowAlign = 16;

}  // namespace pyrt
