// AVX-512 matmul entry point: GEMV-style streaming for small M (memory-bound), packed GEMM above.
#include "cpu/gemv_avx512.h"

namespace pyrt::cpu::avx512 {

// Below this many x rows the weights are decoded in registers per row group (the decode is
// re-done for every 4 x rows, from L1); from here on the GEMM's one-time FP32 panel wins.
// Measured single-thread, 2048x4096, interleaved A/B (GFLOP/s, gemv vs gemm): M=16 q4 82 vs 36,
// M=24 q4 46 vs 41, f16 95 vs 59; M=32 q4 52 vs 55, q8 51 vs 53; M=64 q4 44 vs 56.
constexpr int64_t kGemmMinRows = 32;

void matmul(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.M < kGemmMinRows)
    gemv(a, n_begin, n_end);
  else
    gemm(a, n_begin, n_end);
}

}  // namespace pyrt::cpu::avx512
