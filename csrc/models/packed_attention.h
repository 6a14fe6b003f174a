// Multi-head self-attention over sequences packed back to back (no padding rows): each sequence
// attends only to its own tokens, which is exactly what an additive -inf padding mask does.
#pragma once
#include <cstdint>

namespace pyrt::nn {

// q, k, v, ctx: [T, num_heads * head_dim] row-major; sequence s covers rows
// [offsets[s], offsets[s + 1]). ctx = softmax(q_h k_h^T / sqrt(head_dim)) v_h per sequence and head.
// (sequence, head) pairs run in parallel on pyrt::num_threads() threads. Never throws once its
// scratch memory is allocated (before the parallel region).
void packed_self_attention(const float* q, const float* k, const float* v, const int64_t* offsets,
                           int64_t num_sequences, int64_t num_heads, int64_t head_dim, float* ctx);

}  // namespace pyrt::nn
