// causal_softmax: validate, then the CPU backend (cpu/softmax_cpu.cc).
#include "cpu/ops_cpu.h"
#include "ops/dispatch.h"

namespace pyrt {

void causal_softmax(float* x, int64_t rows, int64_t cols, int64_t first_valid, float scale, Device device) {
  ops::require_cpu(device, "causal_softmax");
  ops::require_sizes("causal_softmax", rows, cols);
  PYRT_CHECK(first_valid >= 0 && first_valid <= cols, Range, "causal_softmax: valid=", first_valid,
             " is outside [0, ", cols, "]");
  if (rows == 0 || cols == 0) return;
  ops::require_pointers("causal_softmax", x != nullptr);
  cpu::causal_softmax_rows(x, rows, cols, first_valid, scale);
}

void causal_softmax_rows(float* x, int64_t rows, int64_t cols, int64_t first_valid, float scale) noexcept {
  cpu::causal_softmax_rows(x, rows, cols, first_valid, scale);
}

}  // namespace pyrt
