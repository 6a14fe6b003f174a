// The two AVX2 matmul paths behind pyrt::cpu::avx2::matmul (matmul_avx2.cc picks one by M).
// Same contract as MatmulKernel (cpu/kernels.h): compute y[:, n_begin:n_end], never throw.
#pragma once
#include <cstdint>

#include "cpu/kernels.h"

namespace pyrt::cpu::avx2 {

// Small M: streams each weight row once, decoding in registers; every decoded vector is reused
// for up to two rows of x. Memory-bound: the weights are read exactly once per 2 rows of x.
void gemv_small_m(const KernelArgs& a, int64_t n_begin, int64_t n_end);

// Large M: dequantizes panels of weight rows into a thread-local FP32 buffer once, then runs a
// register-blocked micro-kernel over all rows of x. Returns false (having written nothing) when
// the scratch buffer cannot be allocated, so the caller can fall back to gemv_small_m.
bool gemm_packed(const KernelArgs& a, int64_t n_begin, int64_t n_end);

}  // namespace pyrt::cpu::avx2
