// int8 activations (docs/int8.md): the per-row, per-block symmetric quantizer and the checks that
// tie a QuantizedActivations buffer to a product. Portable code: its cost is O(M*K), small next to
// the O(M*N*K) product it feeds.
#include <cmath>

#include "pyrt/errors.h"
#include "pyrt/matmul.h"

namespace pyrt {
namespace {

// Round to nearest, ties to even, for |v| <= 127.5: adding 1.5 * 2^23 leaves no fraction bits, so
// the FPU's default rounding does the work (std::nearbyint is a libm call per element without
// SSE4.1). Bit-identical to numpy's np.rint on float32.
inline float round_half_even(float v) {
  const float magic = 12582912.0f;
  volatile float t = v + magic;  // volatile: keep the compiler from folding (v + magic) - magic to v
  return t - magic;
}

}  // namespace

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
  bool finite = true;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* src = x + m * K + b * block;
      int8_t* dst = out->q.data() + m * K + b * block;
      float amax = 0.0f;
      for (int j = 0; j < block; ++j) amax = std::fmax(amax, std::fabs(src[j]));
      finite = finite && std::isfinite(amax);
      // inv is computed as 127 / amax (one rounding) and applied by multiplication, exactly as the
      // numpy emulation in tests/test_int8_activations.py does.
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      int32_t isum = 0;
      for (int j = 0; j < block; ++j) {
        float r = round_half_even(src[j] * inv);
        r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
        dst[j] = static_cast<int8_t>(r);
        isum += dst[j];
      }
      const float d = amax / 127.0f;
      out->scale[size_t(m * nb + b)] = d;
      out->sum[size_t(m * nb + b)] = d * static_cast<float>(isum);
    }
  }
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
