// int8 activations (docs/int8.md): validation and dispatch of the per-row, per-block symmetric
// quantizer (cpu/quantize_activations_*.cc), and the checks that tie a QuantizedActivations buffer
// to a product.
#include "cpu/cpu_isa.h"
#include "pyrt/errors.h"
#include "pyrt/matmul.h"

namespace pyrt {

ActivationPrecision activation_precision_from_name(const std::string& name) {
  if (name == "exact") return ActivationPrecision::exact;
  if (name == "int8") return ActivationPrecision::int8;
  if (name == "int16") return ActivationPrecision::int16;
  PYRT_THROW(Dtype, "activations='", name, "' is not one of 'exact', 'int8', 'int16'");
}

const char* activation_precision_name(ActivationPrecision a) {
  switch (a) {
    case ActivationPrecision::int8: return "int8";
    case ActivationPrecision::int16: return "int16";
    default: return "exact";
  }
}

void prepare_quantized_activations(int64_t M, int64_t K, int block, QuantizedActivations* out) {
  PYRT_CHECK(is_valid_block(block), Dtype, "invalid activation block ", block, " (expected 32, 64 or 128)");
  PYRT_CHECK(M >= 0 && K >= 0 && K % block == 0, Shape, "K=", K, " is not a multiple of the block ", block);
  PYRT_CHECK(out != nullptr, Internal, "null pointer");
  const int64_t nb = K / block;
  out->M = M;
  out->K = K;
  out->block = block;
  // Grow only: a model alternates K between products, and resize() would zero the regrown tail.
  if (out->q.size() < size_t(M * K)) out->q.resize(size_t(M * K));
  if (out->scale.size() < size_t(M * nb)) {
    out->scale.resize(size_t(M * nb));
    out->sum.resize(size_t(M * nb));
  }
}

bool quantize_activation_rows(const float* src, int64_t rows, QuantizedActivations* out, int64_t out_row) noexcept {
  const int64_t K = out->K, nb = out->block ? K / out->block : 0;
  if (rows <= 0 || K == 0) return true;
  return cpu::quantize_activations_kernel(cpu::active_isa())(src, rows, K, out->block, out->q.data() + out_row * K,
                                                             out->scale.data() + out_row * nb,
                                                             out->sum.data() + out_row * nb);
}

void activation_residual_row(const float* x_row, const QuantizedActivations& xq, int64_t q_row,
                             float* residual) noexcept {
  const int64_t K = xq.K, block = xq.block, nb = block ? K / block : 0;
  const int8_t* q = xq.q.data() + q_row * K;
  const float* scale = xq.scale.data() + q_row * nb;
  for (int64_t b = 0; b < nb; ++b) {
    const float d = scale[b];
    // Exact in FP32: d q is the value the first digit encodes, |x - d q| <= d / 2.
    for (int64_t j = b * block; j < (b + 1) * block; ++j) residual[j] = x_row[j] - d * float(q[j]);
  }
}

void quantize_activations(const float* x, int64_t M, int64_t K, int block, QuantizedActivations* out) {
  prepare_quantized_activations(M, K, block, out);
  PYRT_CHECK(x != nullptr || M * K == 0, Internal, "null pointer");
  PYRT_CHECK(quantize_activation_rows(x, M, out, 0), Range,
             "activations contain NaN or Inf (int8 mode cannot quantize them)");
}

void check_matmul(const MatmulParams& p, const QuantizedActivations& xq) {
  check_matmul(p);
  const WeightView& w = p.w;
  if (!format_traits(w.format).blocked) return;
  PYRT_CHECK(xq.M == p.M && xq.K == w.cols && xq.block == w.block, Shape, "quantized activations [",
             xq.M, ", ", xq.K, "] block ", xq.block, " do not fit a product with M=", p.M, ", K=", w.cols,
             " and weight block ", w.block);
}

}  // namespace pyrt
