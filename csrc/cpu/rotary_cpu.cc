// Rotary position embedding, GGUF's interleaved-pairs layout (pyrt/ops.h). llama.cpp's converter
// permutes the Q/K rows of HF checkpoints so that this equals HF's rotate_half there.
#include <cmath>
#include <vector>

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

void rope_interleaved_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                           const float* sin_t) noexcept {
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = cos_t + r * half;
    const float* s = sin_t + r * half;
    float* row = x + r * n_heads * head_dim;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = row + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * c[i] - b * s[i];
        v[2 * i + 1] = a * s[i] + b * c[i];
      }
    }
  }
}

}  // namespace pyrt::cpu
