// Rotary position embedding: GGUF's interleaved-pairs layout for Llama (pyrt/ops.h; llama.cpp's
// converter permutes the Q/K rows of HF Llama checkpoints so that it equals HF's rotate_half there)
// and the NEOX layout of the other families (pyrt/ops_decoder.h).
#include <cmath>
#include <vector>

#include "cpu/decoder_variants_cpu.h"
#include "cpu/ops_cpu.h"

namespace pyrt::cpu {

void rope_tables(int64_t head_dim, float theta, int64_t first_pos, int64_t rows, float* cos_t, float* sin_t) {
  const int64_t half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv_freq[size_t(i)] = std::pow(double(theta), -2.0 * double(i) / double(head_dim));
  for (int64_t r = 0; r < rows; ++r) {
    const double pos = double(first_pos + r);
    for (int64_t i = 0; i < half; ++i) {
      const double a = pos * inv_freq[size_t(i)];
      cos_t[r * half + i] = float(std::cos(a));
      sin_t[r * half + i] = float(std::sin(a));
    }
  }
}

namespace {

// Rotates every head of every row: element lo[i] with hi[i] of head h, where the layout picks where
// pair i sits (interleaved: 2i and 2i + 1; NEOX: i and i + head_dim / 2).
template <int64_t kLoStride, bool kNeox>
void rotate_heads(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                  const float* sin_t) noexcept {
  const int64_t half = head_dim / 2;
  const int64_t hi_offset = kNeox ? half : 1;
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = cos_t + r * half;
    const float* s = sin_t + r * half;
    float* row = x + r * n_heads * head_dim;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = row + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        float& lo = v[kLoStride * i];
        float& hi = v[kLoStride * i + hi_offset];
        const float a = lo, b = hi;
        lo = a * c[i] - b * s[i];
        hi = a * s[i] + b * c[i];
      }
    }
  }
}

}  // namespace

void rope_interleaved_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                           const float* sin_t) noexcept {
  rotate_heads<2, false>(x, rows, n_heads, head_dim, cos_t, sin_t);
}

void rope_neox_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                    const float* sin_t) noexcept {
  rotate_heads<1, true>(x, rows, n_heads, head_dim, cos_t, sin_t);
}

}  // namespace pyrt::cpu
