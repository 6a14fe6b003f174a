// Attention on the CPU: the encoder's packed self-attention (optionally with an additive bias), (sequence, head) pairs scheduled over
// threads with the active ISA's head kernel (cpu/attention_head.h), and one decoder head over its
// KV cache (with the decoder families' sliding window and softcap), built from matmul_rows and the
// row softmax.
#include <algorithm>
#include <cmath>
#include <memory>

#include "cpu/attention_head.h"
#include "cpu/decoder_variants_cpu.h"
#include "cpu/ops_cpu.h"
#include "cpu/vector_math.h"
#include "pyrt/runtime.h"

#ifdef PYRT_WITH_OPENMP
#include <omp.h>
#endif

namespace pyrt::cpu {

void packed_self_attention(const float* q, const float* k, const float* v, const int64_t* offsets,
                           int64_t num_sequences, int64_t num_heads, int64_t head_dim, const float* bias,
                           int64_t bias_len, float* ctx) {
  const int64_t hidden = num_heads * head_dim;
  const int64_t tasks = num_sequences * num_heads;
  if (tasks == 0) return;
  int64_t max_len = 0, pairs = 0;
  for (int64_t s = 0; s < num_sequences; ++s) {
    const int64_t L = offsets[s + 1] - offsets[s];
    max_len = std::max(max_len, L);
    pairs += L * L;
  }
  // Short sentences: waking a second thread costs more than the whole attention.
  constexpr int64_t kMinParallelMacs = int64_t(1) << 18;
  const bool parallel = 2 * pairs * hidden >= kMinParallelMacs;  // q.k and p.v
  const int threads = parallel ? int(std::max<int64_t>(1, std::min<int64_t>(num_threads(), tasks))) : 1;
  // Whole cache lines per thread, so two threads never write the same line.
  const int64_t scratch_per_thread = (attention_head_scratch_floats(max_len, head_dim) + 15) / 16 * 16;
  // Allocated here, outside the parallel region, so nothing inside it can throw.
  std::unique_ptr<float[]> scratch(new float[size_t(scratch_per_thread * threads)]);
  const AttentionHeadKernel attend_head = attention_head_kernel();
  const float scale = 1.0f / std::sqrt(float(head_dim));

#ifdef PYRT_WITH_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
  {
#ifdef PYRT_WITH_OPENMP
    float* mine = scratch.get() + int64_t(omp_get_thread_num()) * scratch_per_thread;
#pragma omp for schedule(dynamic, 1)
#else
    float* mine = scratch.get();
#endif
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t s = task / num_heads, h = task % num_heads;
      const int64_t first = offsets[s] * hidden + h * head_dim;
      const int64_t L = offsets[s + 1] - offsets[s];
      if (L == 0) continue;
      AttentionHead head{q + first, k + first, v + first, ctx + first, L, hidden, head_dim, scale};
      if (bias != nullptr) {
        head.bias = bias + h * bias_len * bias_len;
        head.bias_stride = bias_len;
      }
      attend_head(head, mine);
    }
  }
}

void cached_head_attention_rows(const CachedHeadAttention& a, float* scratch) noexcept {
  cpu::windowed_head_attention_rows(a, 0, 0.0f, scratch);  // all keys, no cap: the plain causal head
}

void windowed_head_attention_rows(const CachedHeadAttention& a, int64_t window, float softcap,
                                  float* scratch) noexcept {
  const int64_t hd = a.keys.cols, rows = a.rows;
  // Query i sits at position first_valid - 1 + i. Keys before `first` are outside every query's
  // window: the products skip them by starting the views there.
  const int64_t first = window > 0 ? std::max<int64_t>(0, a.first_valid - window) : 0;
  // The last query sees keys up to first_valid - 1 + rows - 1: the keys after it (the rest of a
  // prefill) are masked for every query of the chunk, so the products stop there.
  const int64_t last = std::min(a.keys.rows, a.first_valid + rows - 1);
  const int64_t span = last - first;
  WeightView keys = a.keys;
  keys.data += first * keys.row_stride;
  keys.rows = span;
  WeightView values_t = a.values_t;
  values_t.data += first * (format_traits(values_t.format).bits_per_element / 8);  // f16 or f32 cache
  values_t.cols = span;
  // The products want contiguous rows: the head's queries are gathered first, its output scattered
  // after.
  float* q_chunk = scratch;
  float* out_chunk = q_chunk + rows * hd;
  float* scores = out_chunk + rows * hd;
  for (int64_t i = 0; i < rows; ++i) std::copy_n(a.q + i * a.q_stride, hd, q_chunk + i * hd);
  MatmulParams p;
  p.x = q_chunk;
  p.M = rows;
  p.w = keys;
  p.y = scores;
  cpu::matmul_rows(p, 0, span);
  const VectorMath& vm = vector_math();
  for (int64_t i = 0; i < rows; ++i) {
    float* row = scores + i * span;
    const int64_t end = std::min(span, a.first_valid + i - first);  // keys up to the query's own position
    const int64_t begin = window > 0 ? std::min(end, std::max<int64_t>(0, a.first_valid + i - window) - first) : 0;
    float scale = a.scale;
    if (softcap > 0) {
      const float inv = a.scale / softcap;
      for (int64_t j = begin; j < end; ++j) row[j] = softcap * std::tanh(row[j] * inv);
      scale = 1.0f;
    }
    std::fill(row, row + begin, 0.0f);
    vm.softmax(row + begin, span - begin, end - begin, scale);
  }
  p.x = scores;
  p.w = values_t;
  p.y = out_chunk;
  cpu::matmul_rows(p, 0, hd);
  for (int64_t i = 0; i < rows; ++i) std::copy_n(out_chunk + i * hd, hd, a.out + i * a.out_stride);
}

}  // namespace pyrt::cpu
