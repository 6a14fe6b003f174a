// matmul: the device-independent checks, then the weight's device picks the backend.
#include "cpu/ops_cpu.h"
#include "cuda/backend.h"
#include "pyrt/activation_stats.h"
#include "pyrt/errors.h"
#include "pyrt/matmul.h"

namespace pyrt {

void check_matmul(const MatmulParams& p) {
  const WeightView& w = p.w;
  PYRT_CHECK(p.M >= 0 && w.rows >= 0 && w.cols >= 0, Shape, "negative dimension");
  PYRT_CHECK(w.block == effective_block(w.format, w.block), Dtype, "invalid block ", w.block);
  // The CUDA plane layout has its own strides: the backend checks them.
  if (w.device == Device::cpu) {
    PYRT_CHECK(w.row_stride >= row_bytes(w.format, w.block, w.cols), Shape, "weight row stride ", w.row_stride,
               " is shorter than a row");
  }
  PYRT_CHECK(p.y != nullptr && (p.x != nullptr || p.M == 0 || w.cols == 0), Internal, "null pointer");
}

void matmul(const MatmulParams& p) {
  check_matmul(p);
  PYRT_CHECK(p.activations == ActivationPrecision::exact || p.activations == ActivationPrecision::int8 ||
                 p.activations == ActivationPrecision::int16,
             Dtype, "invalid activation precision");
  if (activation_stats_active()) record_activations(p);
  switch (p.w.device) {
    case Device::cpu: return cpu::matmul(p);
    case Device::cuda: return gpu::matmul(p);
  }
  PYRT_THROW(Device, "weight has an unknown device ", int(p.w.device));
}

// A product split over threads is recorded once, by the share that starts at row 0.
void matmul_rows(const MatmulParams& p, int64_t n_begin, int64_t n_end) noexcept {
  if (n_begin == 0 && n_end > 0 && activation_stats_active()) record_activations(p);
  cpu::matmul_rows(p, n_begin, n_end);
}

void matmul_rows(const MatmulParams& p, const QuantizedActivations& xq, int64_t n_begin, int64_t n_end) noexcept {
  if (n_begin == 0 && n_end > 0 && activation_stats_active()) record_activations(p);
  cpu::matmul_rows(p, xq, n_begin, n_end);
}

void stacked_matmul_rows(const ThreadTeam& team, const MatmulParams* products, int count,
                         const QuantizedActivations* xq) noexcept {
  if (team.id == 0 && activation_stats_active())
    for (int i = 0; i < count; ++i) record_activations(products[i]);
  cpu::stacked_matmul_rows(team, products, count, xq);
}

}  // namespace pyrt
