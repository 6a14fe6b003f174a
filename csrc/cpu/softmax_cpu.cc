// Row softmax with a causal (or no) mask on the active ISA's vector math.
#include <algorithm>

#include "cpu/ops_cpu.h"
#include "cpu/vector_math.h"

namespace pyrt::cpu {

void causal_softmax_rows(float* x, int64_t rows, int64_t cols, int64_t first_valid, float scale) noexcept {
  const VectorMath& vm = vector_math();
  for (int64_t r = 0; r < rows; ++r)
    vm.softmax(x + r * cols, cols, std::max<int64_t>(0, std::min(cols, first_valid + r)), scale);
}

}  // namespace pyrt::cpu
