// Portable reference kernel: dequantize one weight row with the format's own dequantizer, then
// FP32 dot products. Every SIMD kernel is tested against this and against float64 numpy.
#include <vector>

#include "cpu/kernels.h"
#include "pyrt/half.h"

namespace pyrt::cpu {

namespace scalar {
void matmul(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  thread_local std::vector<float> wrow;
  wrow.resize(size_t(a.K));
  const auto dequantize = format_traits(a.w.format).dequantize_row;
  for (int64_t n = n_begin; n < n_end; ++n) {
    dequantize(a.w.row(n), wrow.data(), a.K, a.w.block);
    const float b = a.bias ? a.bias[n] : 0.0f;
    for (int64_t m = 0; m < a.M; ++m) {
      const float* x = a.x + m * a.K;
      float acc = 0.0f;
      for (int64_t k = 0; k < a.K; ++k) acc += x[k] * wrow[size_t(k)];
      a.y[m * a.N + n] = acc + b;
    }
  }
}
}  // namespace scalar

void fp16_to_fp32_array(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

}  // namespace pyrt::cpu
