#include "cpu/int8_avx512.h"
namespace pyrt::cpu::avx512 {
void int8_gemm(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) { int8_gemv(a, n_begin, n_end); }
}  // namespace pyrt::cpu::avx512
