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

}  // namespace pyrt
