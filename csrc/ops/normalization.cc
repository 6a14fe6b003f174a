// layer_norm, rms_norm, l2_normalize: validate, then the CPU backend (cpu/normalization_cpu.cc).
#include "cpu/ops_cpu.h"
#include "ops/dispatch.h"

namespace pyrt {

void layer_norm(float* x, int64_t rows, int64_t n, const float* gamma, const float* beta, float eps, Device device) {
  ops::require_cpu(device, "layer_norm");
  ops::require_sizes("layer_norm", rows, n);
  if (rows == 0 || n == 0) return;
  ops::require_pointers("layer_norm", x && gamma && beta);
  cpu::layer_norm(x, rows, n, gamma, beta, eps);
}

void rms_norm(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y, Device device) {
  ops::require_cpu(device, "rms_norm");
  ops::require_sizes("rms_norm", rows, n);
  if (rows == 0 || n == 0) return;
  ops::require_pointers("rms_norm", x && weight && y);
  cpu::rms_norm_rows(x, weight, rows, n, eps, y);
}

void rms_norm_rows(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y) noexcept {
  cpu::rms_norm_rows(x, weight, rows, n, eps, y);
}

void l2_normalize(float* x, int64_t rows, int64_t n, Device device) {
  ops::require_cpu(device, "l2_normalize");
  ops::require_sizes("l2_normalize", rows, n);
  if (rows == 0 || n == 0) return;
  ops::require_pointers("l2_normalize", x != nullptr);
  cpu::l2_normalize(x, rows, n);
}

}  // namespace pyrt
