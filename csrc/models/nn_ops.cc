#include "models/nn_ops.h"

#include <algorithm>
#include <cmath>

#include "pyrt/runtime.h"

namespace pyrt::nn {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kMinParallelElements = int64_t(1) << 15;

int threads_for(int64_t elements) {
  return elements < kMinParallelElements ? 1 : std::max(1, num_threads());
}

void layer_norm_row(float* x, int64_t n, const float* gamma, const float* beta, float eps) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const float mean = sum / float(n);
  float sq = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float d = x[i] - mean;
    sq += d * d;
  }
  const float inv_std = 1.0f / std::sqrt(sq / float(n) + eps);
  for (int64_t i = 0; i < n; ++i) x[i] = (x[i] - mean) * inv_std * gamma[i] + beta[i];
}

}  // namespace

void layer_norm_rows(float* x, int64_t rows, int64_t n, const float* gamma, const float* beta, float eps) {
  const int threads = threads_for(rows * n);
  (void)threads;
#ifdef PYRT_WITH_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
  for (int64_t r = 0; r < rows; ++r) layer_norm_row(x + r * n, n, gamma, beta, eps);
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void gelu_erf_inplace(float* x, int64_t n) {
  constexpr float kInvSqrt2 = 0.70710678118654752440f;
  // Chunks of rows-worth of work keep each thread on a contiguous range.
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const int threads = threads_for(n);
  (void)threads;
#ifdef PYRT_WITH_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
  }
}

void softmax_inplace(float* x, int64_t n) {
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void l2_normalize_inplace(float* x, int64_t n) {
  float sq = 0.0f;
  for (int64_t i = 0; i < n; ++i) sq += x[i] * x[i];
  const float inv = 1.0f / std::max(std::sqrt(sq), 1e-12f);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace pyrt::nn
