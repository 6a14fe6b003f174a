// packed_self_attention (with or without an additive bias), cached_head_attention_rows: validate, then the CPU backend
// (cpu/attention_cpu.cc).
#include "cpu/ops_cpu.h"
#include "ops/dispatch.h"

namespace pyrt {

void packed_self_attention(const float* q, const float* k, const float* v, const int64_t* offsets,
                           int64_t num_sequences, int64_t num_heads, int64_t head_dim, float* ctx, Device device) {
  packed_self_attention(q, k, v, offsets, num_sequences, num_heads, head_dim, nullptr, 0, ctx, device);
}

void packed_self_attention(const float* q, const float* k, const float* v, const int64_t* offsets,
                           int64_t num_sequences, int64_t num_heads, int64_t head_dim, const float* bias,
                           int64_t bias_len, float* ctx, Device device) {
  ops::require_cpu(device, "packed_self_attention");
  PYRT_CHECK(num_sequences >= 0 && num_heads > 0 && head_dim > 0, Shape, "packed_self_attention: ",
             num_sequences, " sequences of ", num_heads, " heads of ", head_dim);
  ops::require_pointers("packed_self_attention", offsets != nullptr);
  PYRT_CHECK(offsets[0] == 0, Shape, "offsets must run from 0 to T");
  PYRT_CHECK(bias_len >= 0 && (bias == nullptr) == (bias_len == 0), Shape,
             "packed_self_attention: a bias needs its length (", bias_len, ") and a length its bias");
  for (int64_t s = 0; s < num_sequences; ++s) {
    PYRT_CHECK(offsets[s + 1] >= offsets[s], Shape, "offsets must not decrease");
    PYRT_CHECK(bias == nullptr || offsets[s + 1] - offsets[s] <= bias_len, Shape, "packed_self_attention: sequence ",
               s, " has ", offsets[s + 1] - offsets[s], " tokens, the bias covers ", bias_len);
  }
  if (offsets[num_sequences] == 0) return;
  ops::require_pointers("packed_self_attention", q && k && v && ctx);
  cpu::packed_self_attention(q, k, v, offsets, num_sequences, num_heads, head_dim, bias, bias_len, ctx);
}

int64_t cached_head_attention_scratch(int64_t rows, int64_t head_dim, int64_t end) {
  return rows * (2 * head_dim + end);  // the gathered queries, their outputs, their scores
}

void cached_head_attention_rows(const CachedHeadAttention& a, float* scratch) noexcept {
  cpu::cached_head_attention_rows(a, scratch);
}

}  // namespace pyrt
