// The op layer: one signature per op. csrc/ops/<op>.cc validates the arguments and dispatches on
// the device (and, on the CPU, the active ISA) to csrc/cpu/<op>_cpu.cc or csrc/cuda/. Models and
// bindings call these and never a backend directly.
//
// Two forms per op:
//   op(...)      checked: throws pyrt::Error (Shape, Range, Device, ...) for bad arguments, may
//                split its work across pyrt::num_threads() threads. `device` names where the
//                pointers live; only matmul has a CUDA backend so far, the others throw Device.
//   op_rows(...) the calling thread's share, for callers that run their own parallel region (a
//                ThreadTeam step): CPU memory, arguments already validated, never throws, never
//                allocates.
// All activations are FP32, row-major and contiguous; statistics are kept in FP32 unless noted.
#pragma once
#include <cstdint>

#include "pyrt/formats.h"
#include "pyrt/matmul.h"  // matmul, matmul_rows, stacked_matmul_rows, QuantizedActivations

namespace pyrt {

// ---- normalization (ops/normalization.cc) -------------------------------------------------------

// x[rows, n] in place, per row: (x - mean) / sqrt(var + eps) * gamma + beta (BERT's LayerNorm).
// The variance comes from a second pass over x - mean (no E[x^2] - E[x]^2 cancellation).
void layer_norm(float* x, int64_t rows, int64_t n, const float* gamma, const float* beta, float eps,
                Device device = Device::cpu);

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight (Llama's RMSNorm), the mean of squares in FP64.
// y may alias x.
void rms_norm(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y,
              Device device = Device::cpu);
void rms_norm_rows(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y) noexcept;

// x[rows, n] in place, per row: x / max(||x||_2, 1e-12), as torch.nn.functional.normalize.
void l2_normalize(float* x, int64_t rows, int64_t n, Device device = Device::cpu);

// ---- softmax (ops/softmax.cc) -------------------------------------------------------------------

// Row r of x[rows, cols] in place: softmax(scale * x[r, 0:valid_r]) (max-subtracted), zeros after,
// with valid_r = min(cols, first_valid + r): the causal mask of query r when the first query sees
// first_valid keys. first_valid == cols gives the plain softmax of every row.
void causal_softmax(float* x, int64_t rows, int64_t cols, int64_t first_valid, float scale,
                    Device device = Device::cpu);
void causal_softmax_rows(float* x, int64_t rows, int64_t cols, int64_t first_valid, float scale) noexcept;

// ---- activations (ops/activations.cc) -----------------------------------------------------------
// exp and GELU use fitted polynomials (csrc/cpu/vector_math.h gives their error bounds). y may
// alias the inputs.

void exponential(const float* x, float* y, int64_t n, Device device = Device::cpu);
// x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)): the exact GELU of BERT, not the tanh form.
void gelu_erf(const float* x, float* y, int64_t n, Device device = Device::cpu);
// x / (1 + exp(-x))
void silu(const float* x, float* y, int64_t n, Device device = Device::cpu);
// y = silu(gate) * up (SwiGLU)
void swiglu(const float* gate, const float* up, float* y, int64_t n, Device device = Device::cpu);
void swiglu_rows(const float* gate, const float* up, float* y, int64_t n) noexcept;

// ---- element-wise (ops/elementwise.cc) ----------------------------------------------------------

// y += x (rounds exactly like x + y).
void add(const float* x, float* y, int64_t n, Device device = Device::cpu);
// y += a * x
void axpy(float a, const float* x, float* y, int64_t n, Device device = Device::cpu);
// sum(a[i] * b[i]) in FP32 with several accumulators.
float dot(const float* a, const float* b, int64_t n, Device device = Device::cpu);

// ---- rotary position embedding (ops/rotary.cc) --------------------------------------------------
// GGUF's layout ("interleaved pairs", llama.cpp rope type NORM): element pairs (2i, 2i+1) of each
// head are rotated by pos * theta^(-2i/head_dim). The angles depend only on the position, so a
// step computes the tables once for all layers, Q and K.

// cos_t / sin_t [rows, head_dim / 2] for positions first_pos.. (host memory). Angles in FP64:
// pos * freq reaches thousands of radians, where FP32 loses the phase.
void rope_tables(int64_t head_dim, float theta, int64_t first_pos, int64_t rows, float* cos_t, float* sin_t);
// Rotates x[rows, n_heads * head_dim] in place with the table rows that match x's rows.
void rope_interleaved(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                      const float* sin_t, Device device = Device::cpu);
void rope_interleaved_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                           const float* sin_t) noexcept;

// ---- attention (ops/attention.cc) ---------------------------------------------------------------

// Multi-head self-attention over sequences packed back to back (BERT without padding rows): q, k,
// v, ctx are [T, num_heads * head_dim]; sequence s covers rows [offsets[s], offsets[s + 1]) and
// attends only to itself (the exact effect of an additive -inf padding mask).
// ctx = softmax(q_h k_h^T / sqrt(head_dim)) v_h per sequence and head; (sequence, head) pairs run
// in parallel.
void packed_self_attention(const float* q, const float* k, const float* v, const int64_t* offsets,
                           int64_t num_sequences, int64_t num_heads, int64_t head_dim, float* ctx,
                           Device device = Device::cpu);
// The same with an additive bias on the scaled scores, before the softmax (MPNet's relative
// position bias): bias is [num_heads, bias_len, bias_len] and query i, key j of a sequence (counted
// from its first token) add bias[h, i, j]; every sequence must be at most bias_len tokens long.
// bias == nullptr (bias_len 0) is the unbiased op.
void packed_self_attention(const float* q, const float* k, const float* v, const int64_t* offsets,
                           int64_t num_sequences, int64_t num_heads, int64_t head_dim, const float* bias,
                           int64_t bias_len, float* ctx, Device device = Device::cpu);

// ---- relative position bias (ops/position_bias.cc) ----------------------------------------------
// T5's bucketed relative positions, as MPNet uses them. For query i and key j, n = i - j; when
// bidirectional, half the buckets are for keys after the query (n < 0) and n becomes |n|, else
// n = max(n, 0). Of the (remaining) B buckets the first B / 2 hold the exact distances 0 .. B/2 - 1;
// larger distances share the other half on a log scale up to max_distance, and farther ones the last:
// B/2 + floor(log(n / (B/2)) / log(max_distance / (B/2)) * (B - B/2)), at most B - 1.

// The bucket of key j for query i, given relative = j - i.
int64_t relative_position_bucket(int64_t relative, int64_t num_buckets, int64_t max_distance, bool bidirectional);
// out[h, i, j] = table[bucket(j - i), h] for i, j < length: the additive attention bias
// [num_heads, length, length] of every sequence up to `length` tokens (host memory). table is the
// model's [num_buckets, num_heads] embedding of buckets, FP32.
void relative_position_bias(const float* table, int64_t num_buckets, int64_t num_heads, int64_t max_distance,
                            bool bidirectional, int64_t length, float* out, Device device = Device::cpu);

// One query head of a decoder over its KV cache, for a chunk of `rows` consecutive queries:
// scores = q k^T * scale, causal softmax, out = P v. Both products read the cache in place, keys as
// an [end, head_dim] weight and values stored transposed as a [head_dim, end] weight.
struct CachedHeadAttention {
  const float* q = nullptr;  // query row i at q + i * q_stride, head_dim floats
  int64_t q_stride = 0;
  int64_t rows = 0;
  WeightView keys;           // [end, head_dim], f16 or f32
  WeightView values_t;       // [head_dim, end], f16 or f32
  int64_t first_valid = 0;   // keys seen by query 0 (query i sees first_valid + i)
  float scale = 1.0f;
  float* out = nullptr;      // output row i at out + i * out_stride
  int64_t out_stride = 0;
};
// Floats of scratch cached_head_attention_rows needs for a chunk of `rows` queries over `end` keys.
int64_t cached_head_attention_scratch(int64_t rows, int64_t head_dim, int64_t end);
void cached_head_attention_rows(const CachedHeadAttention& a, float* scratch) noexcept;

}  // namespace pyrt
