// The matmul kernels' shared arguments and launchers (csrc/cuda/matmul_*.cu). Private to the
// CUDA backend: csrc/cuda/matmul_cuda.cu validates and picks a kernel, these only launch.
#pragma once
#include "cuda/common.cuh"
#include "pyrt/formats.h"

namespace pyrt::gpu {

// Formats the CUDA kernels read (f32 and bf16 weights are rejected before a launch).
enum class WeightKind { f16, q8, q4, q4a, q4n };

// q4n's level of nibble i (kQ4nLevels, pyrt/formats.h) from registers: the 16 int8 levels packed
// in four words, one byte picked by __byte_perm (a table in memory would serialize a warp's
// different indices).
constexpr uint32_t kQ4nLevelWords[4] = {0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u};
constexpr bool q4n_words_match() {
  for (int i = 0; i < 16; ++i)
    if (uint8_t(kQ4nLevelWords[i / 4] >> (8 * (i % 4))) != uint8_t(kQ4nLevels[i])) return false;
  return true;
}
static_assert(q4n_words_match(), "kQ4nLevelWords must pack pyrt/formats.h's kQ4nLevels");
__device__ __forceinline__ float q4n_level(uint32_t i) {
  constexpr uint32_t kWords[4] = {kQ4nLevelWords[0], kQ4nLevelWords[1], kQ4nLevelWords[2], kQ4nLevelWords[3]};
  const uint32_t word = (i & 8) ? ((i & 4) ? kWords[3] : kWords[2]) : ((i & 4) ? kWords[1] : kWords[0]);
  return float(int8_t(uint8_t(__byte_perm(word, 0, i & 3))));
}

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
