// AVX-512 entry points, FP32 and int8 activations alike: GEMV-style streaming for small M
// (memory-bound, weights decoded in registers), a packed GEMM from the row count on which
// unpacking a weight panel once pays off.
#include "cpu/gemv_avx512.h"
#include "cpu/int8_avx512.h"

namespace pyrt::cpu::avx512 {

// Below this many x rows the weights are decoded in registers per row group (the decode is
// re-done for every 4 x rows, from L1); from here on the GEMM's one-time FP32 panel wins.
// Measured single-thread, 2048x4096, interleaved A/B (GFLOP/s, gemv vs gemm): M=16 q4 82 vs 36,
// M=24 q4 46 vs 41, f16 95 vs 59; M=32 q4 52 vs 55, q8 51 vs 53; M=64 q4 44 vs 56.
constexpr int64_t kGemmMinRows = 32;

// From this many activation rows on, unpacking a weight panel once beats decoding every 64 weights
// again for each group of 4 rows. Measured on Zen 4, 1 thread, block 32 (ms, GEMV / GEMM):
//   q4 11008x4096  M=2 2.30/3.57  M=3 2.83/4.13  M=4 3.47/4.29  M=6 5.57/4.81  M=8 6.84/5.10
//   q8 1536x384    M=2 .037/.038  M=3 .048/.042  M=4 .061/.047  M=6 .093/.056  M=8 .118/.065
constexpr int64_t kInt8GemmMinRows = 5;

void matmul(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  a.M < kGemmMinRows ? gemv(a, n_begin, n_end) : gemm(a, n_begin, n_end);
}

void int8_matmul(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  a.M < kInt8GemmMinRows ? int8_gemv(a, n_begin, n_end) : int8_gemm(a, n_begin, n_end);
}

}  // namespace pyrt::cpu::avx512
