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
  PYRT_THROW(Dtype, "activations='", name, "' is not one of 'exact', 'int8'");
}

const char* activation_precision_name(ActivationPrecision a) {
  return a == ActivationPrecision::int8 ? "int8" : "exact";
}

void quantize_activations(const float* x, int64_t M, int64_t K, int block, QuantizedActivations* out) {
  PYRT_CHECK(is_valid_block(block), Dtype, "invalid activation block ", block, " (expected 32, 64 or 128)");
  PYRT_CHECK(M >= 0 && K >= 0 && K % block == 0, Shape, "K=", K, " is not a multiple of the block ", block);
  PYRT_CHECK(out != nullptr && (x != nullptr || M * K == 0), Internal, "null pointer");
  const int64_t nb = K / block;
  out->M = M;
  out->K = K;
  out->block = block;
  out->q.resize(size_t(M * K));
  out->scale.resize(size_t(M * nb));
  out->sum.resize(size_t(M * nb));
  const bool finite = M * K == 0 || cpu::quantize_activations_kernel(cpu::active_isa())(
                                         x, M, K, block, out->q.data(), out->scale.data(), out->sum.data());
  PYRT_CHECK(finite, Range, "activations contain NaN or Inf (int8 mode cannot quantize them)");
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
