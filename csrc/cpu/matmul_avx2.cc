// AVX2 + FMA + F16C matmul kernel: picks the small-M (GEMV) or the large-M (packed GEMM) path.
#include "cpu/matmul_avx2.h"

namespace pyrt::cpu::avx2 {
namespace {

// From this many rows of x on, dequantizing a panel once (and transposing it for the 6x16
// micro-kernel) beats decoding every weight in registers again for each pair of x rows.
// Measured on Zen 4, 1 thread, 2048x4096 weights (ms, GEMV / GEMM):
//   q4  M=8 2.50/2.74  M=12 3.76/3.00  M=16 5.26/3.67     q8  M=12 3.47/4.00  M=16 5.05/4.71
//   f16 M=8 1.81/3.39  M=12 2.64/3.74  M=16 3.25/4.67     f32 M=12 4.37/4.95  M=16 5.79/5.58
// Plain formats decode so cheaply that GEMV stays ahead longer.
int64_t gemm_min_rows(Format f) {
  switch (f) {
    case Format::q4:
    case Format::q4a:
    case Format::q4n: return 10;
    case Format::q8:
    case Format::q5: return 14;  // q5 decodes through q8's walk
    default: return 17;
  }
}

}  // namespace

void matmul(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.M >= gemm_min_rows(a.w.format) && gemm_packed(a, n_begin, n_end)) return;
  gemv_small_m(a, n_begin, n_end);
}

}  // namespace pyrt::cpu::avx2
