// The decoder families' op variants on the CPU (pyrt/ops_decoder.h): element-wise and row-wise
// loops on the active ISA's vector math where it has the function (exp, softmax, axpy, rms_norm),
// plain loops the compiler vectorizes otherwise.
#include "cpu/decoder_variants_cpu.h"

#include <algorithm>
#include <cmath>

#include "cpu/ops_cpu.h"
#include "cpu/vector_math.h"

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

void rope_neox_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                    const float* sin_t) noexcept {
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = cos_t + r * half;
    const float* s = sin_t + r * half;
    float* row = x + r * n_heads * head_dim;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* lo = row + h * head_dim;
      float* hi = lo + half;
      for (int64_t i = 0; i < half; ++i) {
        const float a = lo[i], b = hi[i];
        lo[i] = a * c[i] - b * s[i];
        hi[i] = a * s[i] + b * c[i];
      }
    }
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

void windowed_head_attention_rows(const CachedHeadAttention& a, int64_t window, float softcap,
                                  float* scratch) noexcept {
  if (window <= 0 && softcap <= 0) {
    cpu::cached_head_attention_rows(a, scratch);
    return;
  }
  const int64_t hd = a.keys.cols, rows = a.rows;
  // Query i sits at position first_valid - 1 + i. Keys before `first` are outside every query's
  // window: the products skip them by starting the views there.
  const int64_t first = window > 0 ? std::max<int64_t>(0, a.first_valid - window) : 0;
  const int64_t span = a.keys.rows - first;
  WeightView keys = a.keys;
  keys.data += first * keys.row_stride;
  keys.rows = span;
  WeightView values_t = a.values_t;
  values_t.data += first * (format_traits(values_t.format).bits_per_element / 8);  // f16 or f32 cache
  values_t.cols = span;
  float* q_chunk = scratch;
  float* out_chunk = q_chunk + rows * hd;
  float* scores = out_chunk + rows * hd;
  for (int64_t i = 0; i < rows; ++i) std::copy_n(a.q + i * a.q_stride, hd, q_chunk + i * hd);
  MatmulParams p;
  p.x = q_chunk;
  p.M = rows;
  p.w = keys;
  p.y = scores;
  cpu::matmul_rows(p, 0, span);
  const VectorMath& vm = vector_math();
  for (int64_t i = 0; i < rows; ++i) {
    float* row = scores + i * span;
    const int64_t end = std::min(span, a.first_valid + i - first);  // keys up to the query's own position
    const int64_t begin = window > 0 ? std::min(end, std::max<int64_t>(0, a.first_valid + i - window) - first) : 0;
    float scale = a.scale;
    if (softcap > 0) {
      const float inv = a.scale / softcap;
      for (int64_t j = begin; j < end; ++j) row[j] = softcap * std::tanh(row[j] * inv);
      scale = 1.0f;
    }
    std::fill(row, row + begin, 0.0f);
    vm.softmax(row + begin, span - begin, end - begin, scale);
  }
  p.x = scores;
  p.w = values_t;
  p.y = out_chunk;
  cpu::matmul_rows(p, 0, hd);
  for (int64_t i = 0; i < rows; ++i) std::copy_n(out_chunk + i * hd, hd, a.out + i * a.out_stride);
}

}  // namespace pyrt::cpu
