// softmax(q k^T * scale) v for one attention head of one sequence, one implementation per ISA
// (attention_head_scalar.cc, attention_head_avx2.cc, attention_head_avx512.cc). The caller
// (cpu/attention_cpu.cc) schedules (sequence, head) pairs over threads and owns the scratch.
#pragma once
#include <cstdint>

#include "cpu/cpu_isa.h"

namespace pyrt::cpu {

struct AttentionHead {
  const float* q;  // row i of the head at q + i * stride, head_dim floats; same for k, v and ctx
  const float* k;
  const float* v;
  float* ctx;
  int64_t L;       // tokens of the sequence (>= 1)
  int64_t stride;  // floats between consecutive rows (num_heads * head_dim when packed)
  int64_t head_dim;
  float scale;     // usually 1 / sqrt(head_dim)
  // Optional additive bias on the scaled scores: row i at bias + i * bias_stride, L floats.
  const float* bias = nullptr;
  int64_t bias_stride = 0;
};

// Before the softmax of query row i: with a bias, scores = scores * scale + bias row, and the
// softmax then scales by 1 (the returned factor); without one the softmax applies the scale.
// static: each ISA's file compiles its own copy with its own instruction set.
static inline float add_score_bias(const AttentionHead& a, int64_t i, float* scores) {
  if (a.bias == nullptr) return a.scale;
  const float* row = a.bias + i * a.bias_stride;
  for (int64_t j = 0; j < a.L; ++j) scores[j] = scores[j] * a.scale + row[j];
  return 1.0f;
}

// Writes every ctx row of the head; never throws. scratch holds attention_head_scratch_floats(L,
// head_dim) floats, 64-byte aligned.
using AttentionHeadKernel = void (*)(const AttentionHead& a, float* scratch);

namespace scalar { void attend_head(const AttentionHead& a, float* scratch); }
namespace avx2 { void attend_head(const AttentionHead& a, float* scratch); }
namespace avx512 { void attend_head(const AttentionHead& a, float* scratch); }

// Scratch size for every ISA's kernel: K transposed and padded to 16 columns, and the score rows
// of a block of queries.
int64_t attention_head_scratch_floats(int64_t L, int64_t head_dim);
AttentionHeadKernel attention_head_kernel(Isa isa);
AttentionHeadKernel attention_head_kernel();  // of active_isa()

}  // namespace pyrt::cpu
