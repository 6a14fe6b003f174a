#include "models/llama_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/vector_math.h"

namespace pyrt::models {

void rms_norm_rows(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* y) {
  // The kernel sums the squares in FP64: the mean of squares of 576 values is the one reduction
  // here whose rounding would otherwise show up in the float64 comparison.
  const cpu::VectorMath& vm = cpu::vector_math();
  for (int64_t r = 0; r < rows; ++r) vm.rms_norm(x + r * dim, weight, dim, eps, y + r * dim);
}

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
                           const float* sin_t) {
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

void swiglu_inplace(float* gate, const float* up, int64_t n) { cpu::vector_math().silu_mul(gate, up, gate, n); }

void causal_softmax_rows(float* scores, int64_t rows, int64_t cols, int64_t first_valid, float scale) {
  const cpu::VectorMath& vm = cpu::vector_math();
  for (int64_t r = 0; r < rows; ++r) vm.softmax(scores + r * cols, cols, std::max<int64_t>(0, std::min(cols, first_valid + r)), scale);
}

}  // namespace pyrt::models
