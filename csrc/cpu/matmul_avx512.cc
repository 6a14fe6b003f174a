// AVX-512 matmul entry point: GEMV-style streaming for small M (memory-bound), packed GEMM above.
#include "cpu/gemv_avx512.h"

namespace pyrt::cpu::avx512 {

// Below this many x rows the weights are decoded in registers per row group (the decode is
// re-done for every 4 x rows); from here on the GEMM's one-time FP32 panel wins.
constexpr int64_t kGemmMinRows = 8;

void matmul(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.M < kGemmMinRows)
    gemv(a, n_begin, n_end);
  else
    gemm(a, n_begin, n_end);
}

}  // namespace pyrt::cpu::avx512
