#include "models/nn_ops.h"

#include <algorithm>
#include <cmath>

#include "cpu/vector_math.h"
#include "pyrt/runtime.h"

namespace pyrt::nn {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kMinParallelElements = int64_t(1) << 15;

int threads_for(int64_t elements) {
  return elements < kMinParallelElements ? 1 : std::max(1, num_threads());
}

}  // namespace

void layer_norm_rows(float* x, int64_t rows, int64_t n, const float* gamma, const float* beta, float eps) {
  const cpu::VectorMath& vm = cpu::vector_math();
  const int threads = threads_for(rows * n);
  (void)threads;
#ifdef PYRT_WITH_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
  for (int64_t r = 0; r < rows; ++r) vm.layer_norm(x + r * n, n, gamma, beta, eps);
}

void add_inplace(float* y, const float* x, int64_t n) {
  cpu::vector_math().axpy(1.0f, x, y, n);  // fma(1, x, y) rounds exactly like x + y
}

void gelu_erf_inplace(float* x, int64_t n) {
  const cpu::VectorMath& vm = cpu::vector_math();
  // Chunks of rows-worth of work keep each thread on a contiguous range.
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const int threads = threads_for(n);
  (void)threads;
#ifdef PYRT_WITH_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
    vm.gelu_erf(x + begin, x + begin, end - begin);
  }
}

void softmax_inplace(float* x, int64_t n) { cpu::vector_math().softmax(x, n, n, 1.0f); }

void l2_normalize_inplace(float* x, int64_t n) {
  float sq = 0.0f;
  for (int64_t i = 0; i < n; ++i) sq += x[i] * x[i];
  const float inv = 1.0f / std::max(std::sqrt(sq), 1e-12f);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace pyrt::nn
