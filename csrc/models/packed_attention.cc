#include "models/packed_attention.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "cpu/attention_head.h"
#include "pyrt/runtime.h"

#ifdef PYRT_WITH_OPENMP
#include <omp.h>
#endif

namespace pyrt::nn {

void packed_self_attention(const float* q, const float* k, const float* v, const int64_t* offsets,
                           int64_t num_sequences, int64_t num_heads, int64_t head_dim, float* ctx) {
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
  const int64_t scratch_per_thread = (cpu::attention_head_scratch_floats(max_len, head_dim) + 15) / 16 * 16;
  // Allocated here, outside the parallel region, so nothing inside it can throw.
  std::unique_ptr<float[]> scratch(new float[size_t(scratch_per_thread * threads)]);
  const cpu::AttentionHeadKernel attend_head = cpu::attention_head_kernel();
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
      attend_head({q + first, k + first, v + first, ctx + first, L, hidden, head_dim, scale}, mine);
    }
  }
}

}  // namespace pyrt::nn
