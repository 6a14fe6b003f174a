// The decoder families' op variants on the CPU (pyrt/ops_decoder.h): element-wise and row-wise
// loops on the active ISA's vector math where it has the function (exp, softmax, axpy, rms_norm),
// plain loops the compiler vectorizes otherwise.
#include "cpu/decoder_variants_cpu.h"

#include <algorithm>
#include <cmath>

#include "cpu/cpu_isa.h"
#include "cpu/ops_cpu.h"
#include "cpu/vector_math.h"
#include "pyrt/half.h"

namespace pyrt::cpu {

void rms_norm_offset_rows(const float* x, const float* weight, float offset, int64_t rows, int64_t n, float eps,
                          float* y) noexcept {
  if (offset == 0.0f) {
    cpu::rms_norm_rows(x, weight, rows, n, eps, y);  // the Llama kernel, bit for bit
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double sq = 0.0;  // FP64, as the Llama kernel: the reduction the float64 tests would notice
    for (int64_t i = 0; i < n; ++i) sq += double(xr[i]) * double(xr[i]);
    const float inv = float(1.0 / std::sqrt(sq / double(n) + double(eps)));
    for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * inv * (weight[i] + offset);
  }
}

void gelu_tanh_gated_rows(const float* gate, const float* up, float* y, int64_t n) noexcept {
#ifdef PYRT_HAVE_AVX512_KERNELS
  if (active_isa() == Isa::avx512) return avx512::gelu_tanh_gated_rows(gate, up, y, n);
#endif
  // 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)): one vector exp per chunk, on the stack.
  constexpr float kTwoSqrtTwoOverPi = 1.5957691216057308f;  // 2 sqrt(2 / pi)
  constexpr int64_t kChunk = 256;
  const VectorMath& vm = vector_math();
  float t[kChunk];
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t m = std::min(kChunk, n - b);
    for (int64_t i = 0; i < m; ++i) {
      const float g = gate[b + i];
      t[i] = -kTwoSqrtTwoOverPi * (g + 0.044715f * g * g * g);
    }
    vm.exp(t, t, m);
    for (int64_t i = 0; i < m; ++i) y[b + i] = gate[b + i] / (1.0f + t[i]) * up[b + i];
  }
}

void bias_add_rows(float* y, const float* bias, int64_t rows, int64_t n) noexcept {
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * n;
    for (int64_t i = 0; i < n; ++i) yr[i] += bias[i];
  }
}

void softcap_rows(float* x, int64_t n, float cap) noexcept {
  const float inv = 1.0f / cap;
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] * inv);
}

void kv_append_rows(const float* k, const float* v, int64_t stride, int64_t rows, int64_t head_dim, bool f32,
                    uint8_t* keys, uint8_t* values_t, int64_t pos, int64_t capacity) noexcept {
  if (f32) {
    float* k_dst = reinterpret_cast<float*>(keys) + pos * head_dim;
    float* v_dst = reinterpret_cast<float*>(values_t) + pos;
    for (int64_t i = 0; i < rows; ++i) std::copy_n(k + i * stride, head_dim, k_dst + i * head_dim);
    for (int64_t e = 0; e < head_dim; ++e)  // element-major: each value row is written in order
      for (int64_t i = 0; i < rows; ++i) v_dst[e * capacity + i] = v[i * stride + e];
    return;
  }
  uint16_t* k_dst = reinterpret_cast<uint16_t*>(keys);
  uint16_t* v_dst = reinterpret_cast<uint16_t*>(values_t);
#ifdef PYRT_HAVE_AVX512_KERNELS
  if (active_isa() == Isa::avx512) return avx512::kv_append_f16_rows(k, v, stride, rows, head_dim, k_dst, v_dst, pos, capacity);
#endif
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t e = 0; e < head_dim; ++e) k_dst[(pos + i) * head_dim + e] = fp32_to_fp16(k[i * stride + e]);
  for (int64_t e = 0; e < head_dim; ++e)
    for (int64_t i = 0; i < rows; ++i) v_dst[e * capacity + pos + i] = fp32_to_fp16(v[i * stride + e]);
}

}  // namespace pyrt::cpu
