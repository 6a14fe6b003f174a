// The two AVX-512 matmul paths; csrc/cpu/matmul_avx512.cc picks one by M. Same contract as
// pyrt::cpu::avx512::matmul (kernels.h): compute y[:, n_begin:n_end], never throw.
#pragma once
#include <cstdint>

#include "cpu/kernels.h"

namespace pyrt::cpu::avx512 {

// Small M: weights streamed once, decoded in registers (gemv_avx512.cc).
void gemv(const KernelArgs& a, int64_t n_begin, int64_t n_end);
// Large M: weight panels dequantized once into FP32 and reused by every x row (gemm_avx512.cc).
void gemm(const KernelArgs& a, int64_t n_begin, int64_t n_end);

}  // namespace pyrt::cpu::avx512
