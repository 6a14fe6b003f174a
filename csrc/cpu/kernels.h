// The interface every per-ISA matmul kernel implements (matmul_scalar.cc, matmul_avx2.cc, ...).
// csrc/ops/matmul.cc validates inputs; csrc/cpu/matmul_cpu.cc converts activations to FP32 and
// splits the N dimension across threads; a kernel only computes.
#pragma once
#include <cstdint>

#include "pyrt/formats.h"

namespace pyrt::cpu {

struct KernelArgs {
  const float* x;       // [M, K] row-major FP32 activations (exact, never quantized)
  int64_t M;
  int64_t K;
  WeightView w;         // [N, K]
  const float* bias;    // [N] or null
  float* y;             // [M, N] row-major
  int64_t N;
};

// Computes y[:, n_begin:n_end] (every row m) and nothing else. Called concurrently by several
// threads with disjoint ranges; must not throw (inputs are already validated) and must write every
// output element of its range. Any per-thread scratch is the kernel's own (thread_local).
using MatmulKernel = void (*)(const KernelArgs& a, int64_t n_begin, int64_t n_end);

namespace scalar { void matmul(const KernelArgs& a, int64_t n_begin, int64_t n_end); }
namespace avx2 { void matmul(const KernelArgs& a, int64_t n_begin, int64_t n_end); }
namespace avx512 { void matmul(const KernelArgs& a, int64_t n_begin, int64_t n_end); }

// int8-activation products (docs/int8.md): activations already quantized per row and per weight
// block; only q8/q4/q4a weights. Same contract as MatmulKernel.
struct Int8KernelArgs {
  const int8_t* q;      // [M, K] activation codes
  const float* scale;   // [M, K / B] d_x
  const float* sum;     // [M, K / B] d_x * sum of the block's codes
  int64_t M;
  int64_t K;
  WeightView w;         // [N, K], q8 / q4 / q4a, block B
  const float* bias;
  float* y;
  int64_t N;
  // int16 mode (two digits per activation): rows 2j and 2j+1 of q are the two digits of activation
  // row j (M even), and y has M / 2 rows: y[j] = both rows' products + bias. Every int8 kernel
  // visits row 2j before 2j+1 with the same n: it stores the first and adds the second.
  bool digit_pairs = false;
};
using Int8MatmulKernel = void (*)(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end);

namespace scalar { void int8_matmul(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end); }
namespace avx2 { void int8_matmul(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end); }
namespace avx512 { void int8_matmul(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end); }

// Quantizes x[M, K] per row and block for int8 mode into q[M, K], scale and sum [M, K / block]
// (docs/int8.md); returns false when x holds NaN or Inf. Every ISA writes identical bytes.
using QuantizeActivationsKernel = bool (*)(const float* x, int64_t M, int64_t K, int block, int8_t* q,
                                           float* scale, float* sum);
namespace scalar {
bool quantize_activations(const float* x, int64_t M, int64_t K, int block, int8_t* q, float* scale, float* sum);
}
namespace avx512 {
bool quantize_activations(const float* x, int64_t M, int64_t K, int block, int8_t* q, float* scale, float* sum);
}

// Converts FP16 activations to FP32 with the best ISA available (scalar reference otherwise).
void fp16_to_fp32_array(const uint16_t* src, float* dst, int64_t n);

}  // namespace pyrt::cpu
