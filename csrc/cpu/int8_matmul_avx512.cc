// AVX-512 VNNI int8-activation entry point: register-decoded GEMV for small M, packed GEMM above.
#include "cpu/int8_avx512.h"

namespace pyrt::cpu::avx512 {

// From this many activation rows on, unpacking a weight panel once beats decoding every 64 weights
// again for each group of 4 rows. Measured on Zen 4, 1 thread, block 32 (ms, GEMV / GEMM):
//   q4 11008x4096  M=2 2.30/3.57  M=3 2.83/4.13  M=4 3.47/4.29  M=6 5.57/4.81  M=8 6.84/5.10
//   q8 1536x384    M=2 .037/.038  M=3 .048/.042  M=4 .061/.047  M=6 .093/.056  M=8 .118/.065
constexpr int64_t kInt8GemmMinRows = 5;

void int8_matmul(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.M < kInt8GemmMinRows)
    int8_gemv(a, n_begin, n_end);
  else
    int8_gemm(a, n_begin, n_end);
}

}  // namespace pyrt::cpu::avx512
