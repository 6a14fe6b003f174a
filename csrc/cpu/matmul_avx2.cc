// AVX2 + FMA + F16C matmul kernel: picks the small-M (GEMV) or the large-M (packed GEMM) path.
#include "cpu/matmul_avx2.h"

namespace pyrt::cpu::avx2 {
namespace {

// From this many rows of x on, dequantizing a panel once and reusing it beats decoding every
// weight in registers again for each pair of x rows (threshold measured, see the commit log).
constexpr int64_t kGemmMinRows = 4;

}  // namespace

void matmul(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.M >= kGemmMinRows && gemm_packed(a, n_begin, n_end)) return;
  gemv_small_m(a, n_begin, n_end);
}

}  // namespace pyrt::cpu::avx2
