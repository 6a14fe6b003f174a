// AVX-512 VNNI int8-activation entry point: register-decoded GEMV for small M, packed GEMM above.
#include "cpu/int8_avx512.h"

namespace pyrt::cpu::avx512 {

// From this many activation rows on, unpacking a weight panel once beats decoding every 64 weights
// again for each group of 4 rows.
constexpr int64_t kInt8GemmMinRows = 16;

void int8_matmul(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.M < kInt8GemmMinRows)
    int8_gemv(a, n_begin, n_end);
  else
    int8_gemm(a, n_begin, n_end);
}

}  // namespace pyrt::cpu::avx512
