#include "models/packed_attention.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "models/nn_ops.h"
#include "pyrt/runtime.h"

#ifdef PYRT_WITH_OPENMP
#include <omp.h>
#endif

namespace pyrt::nn {
namespace {

// One (sequence, head) pair. The head's keys are copied transposed into a [head_dim, L] tile and
// its values into a [L, head_dim] tile, so both inner loops run over contiguous memory without a
// reduction: the compiler vectorizes them (a dot-product loop it may not, without reassociating
// the FP32 sum). scratch holds 2 * L * head_dim + L + head_dim floats.
void attend_one_head(const float* q, const float* k, const float* v, int64_t row0, int64_t L,
                     int64_t hidden, int64_t head_offset, int64_t head_dim, float scale,
                     float* scratch, float* ctx) {
  float* keys_t = scratch;
  float* values = keys_t + L * head_dim;
  float* scores = values + L * head_dim;
  float* acc = scores + L;
  for (int64_t j = 0; j < L; ++j) {
    const int64_t src = (row0 + j) * hidden + head_offset;
    for (int64_t d = 0; d < head_dim; ++d) keys_t[d * L + j] = k[src + d];
    std::copy(v + src, v + src + head_dim, values + j * head_dim);
  }
  for (int64_t i = 0; i < L; ++i) {
    const float* qi = q + (row0 + i) * hidden + head_offset;
    std::fill(scores, scores + L, 0.0f);
    for (int64_t d = 0; d < head_dim; ++d) {
      const float qd = qi[d];
      const float* kd = keys_t + d * L;
      for (int64_t j = 0; j < L; ++j) scores[j] += qd * kd[j];
    }
    for (int64_t j = 0; j < L; ++j) scores[j] *= scale;
    softmax_inplace(scores, L);
    std::fill(acc, acc + head_dim, 0.0f);
    for (int64_t j = 0; j < L; ++j) {
      const float p = scores[j];
      const float* vj = values + j * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) acc[d] += p * vj[d];
    }
    std::copy(acc, acc + head_dim, ctx + (row0 + i) * hidden + head_offset);
  }
}

}  // namespace

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
  const int64_t scratch_per_thread = 2 * max_len * head_dim + max_len + head_dim;
  // Allocated here, outside the parallel region, so nothing inside it can throw.
  std::unique_ptr<float[]> scratch(new float[size_t(scratch_per_thread * threads)]);
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
      attend_one_head(q, k, v, offsets[s], offsets[s + 1] - offsets[s], hidden, h * head_dim, head_dim,
                      scale, mine, ctx);
    }
  }
}

}  // namespace pyrt::nn
