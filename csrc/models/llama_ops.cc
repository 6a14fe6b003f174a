#include "models/llama_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace pyrt::models {

void rms_norm_rows(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    // Double accumulation: the mean of squares of 576 values is the one reduction here whose
    // rounding would otherwise show up in the float64 comparison.
    double sum_sq = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum_sq += double(xr[i]) * double(xr[i]);
    const float inv = float(1.0 / std::sqrt(sum_sq / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * weight[i];
  }
}

void rope_interleaved_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, int64_t first_pos,
                           float theta) {
  const int64_t half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv_freq[size_t(i)] = std::pow(double(theta), -2.0 * double(i) / double(head_dim));
  std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
  for (int64_t r = 0; r < rows; ++r) {
    // Angles in double: pos * freq reaches thousands of radians, where float loses the phase.
    const double pos = double(first_pos + r);
    for (int64_t i = 0; i < half; ++i) {
      const double a = pos * inv_freq[size_t(i)];
      cos_t[size_t(i)] = float(std::cos(a));
      sin_t[size_t(i)] = float(std::sin(a));
    }
    float* row = x + r * n_heads * head_dim;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = row + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cos_t[size_t(i)] - b * sin_t[size_t(i)];
        v[2 * i + 1] = a * sin_t[size_t(i)] + b * cos_t[size_t(i)];
      }
    }
  }
}

void swiglu_inplace(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void causal_softmax_rows(float* scores, int64_t rows, int64_t cols, int64_t first_valid, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* s = scores + r * cols;
    const int64_t valid = std::min(cols, first_valid + r);
    float mx = -INFINITY;
    for (int64_t j = 0; j < valid; ++j) mx = std::max(mx, s[j] * scale);
    double sum = 0.0;
    for (int64_t j = 0; j < valid; ++j) {
      s[j] = std::exp(s[j] * scale - mx);
      sum += s[j];
    }
    const float inv = float(1.0 / sum);
    for (int64_t j = 0; j < valid; ++j) s[j] *= inv;
    for (int64_t j = valid; j < cols; ++j) s[j] = 0.0f;
  }
}

}  // namespace pyrt::models
