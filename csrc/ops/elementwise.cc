// add, axpy, dot: validate, then the CPU backend (cpu/elementwise_cpu.cc).
#include "cpu/ops_cpu.h"
#include "ops/dispatch.h"

namespace pyrt {

void add(const float* x, float* y, int64_t n, Device device) {
  axpy(1.0f, x, y, n, device);  // fma(1, x, y) rounds exactly like x + y
}

void axpy(float a, const float* x, float* y, int64_t n, Device device) {
  ops::require_cpu(device, "axpy");
  ops::require_sizes("axpy", 1, n);
  if (n == 0) return;
  ops::require_pointers("axpy", x && y);
  cpu::axpy(a, x, y, n);
}

float dot(const float* a, const float* b, int64_t n, Device device) {
  ops::require_cpu(device, "dot");
  ops::require_sizes("dot", 1, n);
  if (n == 0) return 0.0f;
  ops::require_pointers("dot", a && b);
  return cpu::dot(a, b, n);
}

}  // namespace pyrt
