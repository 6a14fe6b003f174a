// The CPU backend of the op layer (pyrt/ops.h): one implementation per op, in csrc/cpu/<op>_cpu.cc,
// each running the active ISA's kernels (cpu/vector_math.h, cpu/attention_head.h, cpu/kernels.h).
// Called only from csrc/ops/, after validation: nothing here checks its arguments again.
#pragma once
#include <cstdint>

#include "pyrt/ops.h"

namespace pyrt::cpu {

// matmul_cpu.cc: FP16 activation conversion, int8/int16 quantization, the split of N over threads.
void matmul(const MatmulParams& p);
void matmul_rows(const MatmulParams& p, int64_t n_begin, int64_t n_end) noexcept;
void matmul_rows(const MatmulParams& p, const QuantizedActivations& xq, int64_t n_begin, int64_t n_end) noexcept;
void stacked_matmul_rows(const ThreadTeam& team, const MatmulParams* products, int count,
                         const QuantizedActivations* xq) noexcept;

// normalization_cpu.cc
void layer_norm(float* x, int64_t rows, int64_t n, const float* gamma, const float* beta, float eps);
void rms_norm_rows(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y) noexcept;
void l2_normalize(float* x, int64_t rows, int64_t n);

// softmax_cpu.cc
void causal_softmax_rows(float* x, int64_t rows, int64_t cols, int64_t first_valid, float scale) noexcept;

// activations_cpu.cc
void exponential(const float* x, float* y, int64_t n);
void gelu_erf(const float* x, float* y, int64_t n);
void silu(const float* x, float* y, int64_t n);
void swiglu_rows(const float* gate, const float* up, float* y, int64_t n) noexcept;

// elementwise_cpu.cc
void axpy(float a, const float* x, float* y, int64_t n);
float dot(const float* a, const float* b, int64_t n);

// rotary_cpu.cc
void rope_tables(int64_t head_dim, float theta, int64_t first_pos, int64_t rows, float* cos_t, float* sin_t);
void rope_interleaved_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                           const float* sin_t) noexcept;

// attention_cpu.cc
// bias: [num_heads, bias_len, bias_len] or null (ops.h)
void packed_self_attention(const float* q, const float* k, const float* v, const int64_t* offsets,
                           int64_t num_sequences, int64_t num_heads, int64_t head_dim, const float* bias,
                           int64_t bias_len, float* ctx);

// position_bias_cpu.cc
int64_t relative_position_bucket(int64_t relative, int64_t num_buckets, int64_t max_distance, bool bidirectional);
void relative_position_bias(const float* table, int64_t num_buckets, int64_t num_heads, int64_t max_distance,
                            bool bidirectional, int64_t length, float* out);
void cached_head_attention_rows(const CachedHeadAttention& a, float* scratch) noexcept;

}  // namespace pyrt::cpu
