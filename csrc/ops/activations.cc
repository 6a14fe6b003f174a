// exponential, gelu_erf, silu, swiglu: validate, then the CPU backend (cpu/activations_cpu.cc).
#include "cpu/ops_cpu.h"
#include "ops/dispatch.h"

namespace pyrt {
namespace {

// true when there is work: n >= 0 and, for n > 0, every pointer set.
bool check_unary(const char* op, const float* x, const float* y, int64_t n, Device device) {
  ops::require_cpu(device, op);
  ops::require_sizes(op, 1, n);
  if (n == 0) return false;
  ops::require_pointers(op, x && y);
  return true;
}

}  // namespace

void exponential(const float* x, float* y, int64_t n, Device device) {
  if (check_unary("exponential", x, y, n, device)) cpu::exponential(x, y, n);
}

void gelu_erf(const float* x, float* y, int64_t n, Device device) {
  if (check_unary("gelu_erf", x, y, n, device)) cpu::gelu_erf(x, y, n);
}

void silu(const float* x, float* y, int64_t n, Device device) {
  if (check_unary("silu", x, y, n, device)) cpu::silu(x, y, n);
}

void swiglu(const float* gate, const float* up, float* y, int64_t n, Device device) {
  if (!check_unary("swiglu", gate, y, n, device)) return;
  ops::require_pointers("swiglu", up != nullptr);
  cpu::swiglu_rows(gate, up, y, n);
}

void swiglu_rows(const float* gate, const float* up, float* y, int64_t n) noexcept { cpu::swiglu_rows(gate, up, y, n); }

}  // namespace pyrt
