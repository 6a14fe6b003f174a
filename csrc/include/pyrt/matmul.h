// y[M, N] = x[M, K] @ W[N, K]^T (+ bias[N]), FP32 accumulation. Activations are exact FP32 unless
// the caller opts into int8 activations (docs/int8.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pyrt/formats.h"
#include "pyrt/thread_team.h"

namespace pyrt {

enum class ActivationType { f32, f16 };

// exact: FP32 activations (the default). int8: for q8/q4/q4a weights the activations are quantized
// per row and per weight block (symmetric, d_x = max|x| / 127, round to nearest even) and each
// block's dot product runs in int32; f32/f16/bf16 weights ignore it and stay exact.
// int16: two int8 digits per activation: x is quantized as in int8, then its rounding residual
// x - d_x q_x is quantized the same way (d_r <= d_x / 254), and the product is the sum of the two
// int8 products: about 16 bits per block (error <= max|x| / 64516 per element) at twice the int8
// cost.
enum class ActivationPrecision { exact, int8, int16 };
ActivationPrecision activation_precision_from_name(const std::string& name);  // Dtype error if unknown
const char* activation_precision_name(ActivationPrecision a);

// The device is the weight's (w.device): x, bias and y must live there too. On cuda, x is FP16,
// activations exact, and the call is asynchronous on `stream`.
struct MatmulParams {
  const void* x = nullptr;        // [M, K] row-major
  ActivationType x_type = ActivationType::f32;
  int64_t M = 0;
  WeightView w;                   // [N, K]
  const float* bias = nullptr;    // [N] or null
  float* y = nullptr;             // [M, N] row-major, fully written
  ActivationPrecision activations = ActivationPrecision::exact;
  uintptr_t stream = 0;           // cuda: a cudaStream_t as an integer (0: the legacy default stream)
};

// Validates, then runs on the weight's device (csrc/ops/matmul.cc): on the CPU with the kernel for
// the active ISA and the configured threads (csrc/cpu/matmul_cpu.cc), on CUDA with the GEMV or
// tensor-core kernels (csrc/cuda/). Never touches Python: callers release the GIL around it.
void matmul(const MatmulParams& p);

// The two halves of matmul() for callers that run their own parallel region (a model's forward
// pass, where one region per step replaces a fork/join per product):
// check_matmul throws the device-independent errors matmul() would (and, for cpu weights, the
// row-stride check; the CUDA backend validates its plane layout itself); matmul_rows computes y[:, n_begin:n_end] on the
// calling thread with the active ISA's kernel, for a p that passed check_matmul with f32
// activations. It never throws, allocates nothing and is safe to call concurrently on disjoint
// row ranges.
void check_matmul(const MatmulParams& p);
void matmul_rows(const MatmulParams& p, int64_t n_begin, int64_t n_end) noexcept;

// Activations quantized once for int8 mode, for callers that run matmul_rows in their own parallel
// region: quantize before the region (or in a single thread of it), then every matmul_rows call of
// a weight with the same block reuses them. Buffers grow and are reused across calls.
// The vectors hold at least (not exactly) these sizes: they only grow.
struct QuantizedActivations {
  int64_t M = 0, K = 0;
  int block = 0;
  std::vector<int8_t> q;      // [M, K] int8 codes, x ~ q * scale
  std::vector<float> scale;   // [M, K / block] d_x of each block
  std::vector<float> sum;     // [M, K / block] d_x * (sum of the block's codes): the quantized block sum
};
// Quantizes FP32 x[M, K] per row and per `block` (32, 64 or 128; K a multiple of it) into *out.
// Throws Shape / Dtype for a bad K or block, Range for NaN/Inf.
void quantize_activations(const float* x, int64_t M, int64_t K, int block, QuantizedActivations* out);
// The same work split by rows, for callers that quantize inside their own parallel region.
// prepare sizes *out for M rows of K (the errors of quantize_activations for a bad block or K; the
// buffers only grow, so alternating shapes do not re-zero them). quantize_activation_rows fills
// rows [out_row, out_row + rows) of *out from `rows` rows of src (row stride K) and returns false
// if they hold NaN/Inf. activation_residual_row writes x_row - d_x q_x, with the codes and scales
// of row q_row of xq (quantized from x_row), into residual[K]: the second digit of int16 mode.
// Both never throw and are safe to call concurrently on disjoint rows.
void prepare_quantized_activations(int64_t M, int64_t K, int block, QuantizedActivations* out);
bool quantize_activation_rows(const float* src, int64_t rows, QuantizedActivations* out, int64_t out_row) noexcept;
void activation_residual_row(const float* x_row, const QuantizedActivations& xq, int64_t q_row,
                             float* residual) noexcept;
// Throws what check_matmul(p) throws, and Shape when xq does not match p (M, K, the weight's block).
void check_matmul(const MatmulParams& p, const QuantizedActivations& xq);
// matmul_rows with int8 activations: q-format weights use xq; plain-format weights ignore it and
// run the exact kernel on p.x (so p.x must still point at the FP32 activations).
void matmul_rows(const MatmulParams& p, const QuantizedActivations& xq, int64_t n_begin, int64_t n_end) noexcept;

// Rows of a weight-row range handed to each thread are multiples of this, so SIMD kernels see whole
// row groups.
constexpr int64_t kMatmulRowAlign = 16;

// This thread's share of `count` products that read the same activations, split as if their
// weight rows were stacked into one matrix: e.g. Q, K and V projections cost one split and one
// barrier instead of three. Rows are handed out in kMatmulRowAlign groups. Every p must have
// passed check_matmul (cpu weights). With xq (int8 activations, quantized once) q-format weights
// use it. Never throws, allocates nothing.
void stacked_matmul_rows(const ThreadTeam& team, const MatmulParams* products, int count,
                         const QuantizedActivations* xq = nullptr) noexcept;

}  // namespace pyrt
