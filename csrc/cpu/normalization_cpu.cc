// LayerNorm, RMSNorm and L2 normalization on the active ISA's vector math (cpu/vector_math.h).
#include <algorithm>
#include <cmath>

#include "cpu/ops_cpu.h"
#include "cpu/parallel_cpu.h"
#include "cpu/vector_math.h"

namespace pyrt::cpu {

void layer_norm(float* x, int64_t rows, int64_t n, const float* gamma, const float* beta, float eps) {
  const VectorMath& vm = vector_math();
  const int threads = threads_for(rows * n);
  (void)threads;
#ifdef PYRT_WITH_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
  for (int64_t r = 0; r < rows; ++r) vm.layer_norm(x + r * n, n, gamma, beta, eps);
}

void rms_norm_rows(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y) noexcept {
  // The kernel sums the squares in FP64: the mean of squares of 576 values is the one reduction
  // of the Llama step whose rounding would otherwise show up in the float64 comparison.
  const VectorMath& vm = vector_math();
  for (int64_t r = 0; r < rows; ++r) vm.rms_norm(x + r * n, weight, n, eps, y + r * n);
}

void l2_normalize(float* x, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * n;
    float sq = 0.0f;
    for (int64_t i = 0; i < n; ++i) sq += row[i] * row[i];
    const float inv = 1.0f / std::max(std::sqrt(sq), 1e-12f);
    for (int64_t i = 0; i < n; ++i) row[i] *= inv;
  }
}

}  // namespace pyrt::cpu
