// Element-wise activations on the active ISA's vector math. GELU over a whole FFN activation is
// large enough to split across threads; the others run on the calling thread.
#include <algorithm>

#include "cpu/ops_cpu.h"
#include "cpu/parallel_cpu.h"
#include "cpu/vector_math.h"

namespace pyrt::cpu {

void exponential(const float* x, float* y, int64_t n) { vector_math().exp(x, y, n); }

void gelu_erf(const float* x, float* y, int64_t n) {
  const VectorMath& vm = vector_math();
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
    vm.gelu_erf(x + begin, y + begin, end - begin);
  }
}

void silu(const float* x, float* y, int64_t n) { vector_math().silu(x, y, n); }

void swiglu_rows(const float* gate, const float* up, float* y, int64_t n) noexcept {
  vector_math().silu_mul(gate, up, y, n);
}

}  // namespace pyrt::cpu
