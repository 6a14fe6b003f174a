// The matmul kernels' shared arguments and launchers (csrc/cuda/matmul_*.cu). Private to the
// CUDA backend: csrc/cuda/matmul_cuda.cu validates and picks a kernel, these only launch.
#pragma once
#include "cuda/common.cuh"

namespace pyrt::gpu {

// Formats the CUDA kernels read (f32 and bf16 weights are rejected before a launch).
enum class WeightKind { f16, q8, q4, q4a };

struct KernelArgs {
  const __half* x = nullptr;       // [M, K]
  int64_t M = 0, N = 0, K = 0;
  int block_shift = 0;             // log2(block) for q-formats
  const uint8_t* quants = nullptr; // the code plane (pyrt/weight_planes.h)
  const __half* scales = nullptr;  // [N, K / block]
  const __half* mins = nullptr;    // [N, K / block] (q4a)
  const float* bias = nullptr;     // [N] or null
  float* y = nullptr;              // [M, N]
  bool x_vector_loads = false;     // x 16-byte aligned and K % 8 == 0
  bool w_vector_loads = false;     // f16 weights 16-byte aligned and K % 8 == 0 (always true for q)
};

// GEMV-style kernel for M <= kGemvMaxM: one warp per weight row, 128-bit loads, FP32 dot
// products, warp-shuffle reduction. Needs x_vector_loads (and w_vector_loads for f16).
constexpr int kGemvMaxM = 16;
void launch_gemv(WeightKind kind, const KernelArgs& a, cudaStream_t stream);

// Tensor-core kernel for any M (WMMA 16x16x16, FP16 in, FP32 accumulate): quantized weights are
// dequantized to FP16 tiles in shared memory first. Handles any alignment and any K.
void launch_tensor_core(WeightKind kind, const KernelArgs& a, cudaStream_t stream);

}  // namespace pyrt::gpu
