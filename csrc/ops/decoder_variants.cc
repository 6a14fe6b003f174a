// The decoder families' op variants (pyrt/ops_decoder.h): validate, then the CPU backend
// (cpu/decoder_variants_cpu.cc).
#include <cmath>

#include "cpu/decoder_variants_cpu.h"
#include "ops/dispatch.h"

namespace pyrt {

void rms_norm_offset(const float* x, const float* weight, float offset, int64_t rows, int64_t n, float eps, float* y,
                     Device device) {
  ops::require_cpu(device, "rms_norm_offset");
  ops::require_sizes("rms_norm_offset", rows, n);
  PYRT_CHECK(std::isfinite(offset) && std::isfinite(eps) && eps >= 0, Range,
             "rms_norm_offset: offset and eps must be finite, eps >= 0");
  if (rows == 0 || n == 0) return;
  ops::require_pointers("rms_norm_offset", x && weight && y);
  cpu::rms_norm_offset_rows(x, weight, offset, rows, n, eps, y);
}

void rms_norm_offset_rows(const float* x, const float* weight, float offset, int64_t rows, int64_t n, float eps,
                          float* y) noexcept {
  cpu::rms_norm_offset_rows(x, weight, offset, rows, n, eps, y);
}

void gelu_tanh_gated(const float* gate, const float* up, float* y, int64_t n, Device device) {
  ops::require_cpu(device, "gelu_tanh_gated");
  ops::require_sizes("gelu_tanh_gated", 1, n);
  if (n == 0) return;
  ops::require_pointers("gelu_tanh_gated", gate && up && y);
  cpu::gelu_tanh_gated_rows(gate, up, y, n);
}

void gelu_tanh_gated_rows(const float* gate, const float* up, float* y, int64_t n) noexcept {
  cpu::gelu_tanh_gated_rows(gate, up, y, n);
}

void bias_add(float* y, const float* bias, int64_t rows, int64_t n, Device device) {
  ops::require_cpu(device, "bias_add");
  ops::require_sizes("bias_add", rows, n);
  if (rows == 0 || n == 0) return;
  ops::require_pointers("bias_add", y && bias);
  cpu::bias_add_rows(y, bias, rows, n);
}

void bias_add_rows(float* y, const float* bias, int64_t rows, int64_t n) noexcept {
  cpu::bias_add_rows(y, bias, rows, n);
}

void softcap(float* x, int64_t n, float cap, Device device) {
  ops::require_cpu(device, "softcap");
  ops::require_sizes("softcap", 1, n);
  PYRT_CHECK(std::isfinite(cap) && cap > 0, Range, "softcap: cap must be finite and positive, got ", cap);
  if (n == 0) return;
  ops::require_pointers("softcap", x != nullptr);
  cpu::softcap_rows(x, n, cap);
}

void softcap_rows(float* x, int64_t n, float cap) noexcept { cpu::softcap_rows(x, n, cap); }

void windowed_head_attention_rows(const CachedHeadAttention& a, int64_t window, float softcap,
                                  float* scratch) noexcept {
  cpu::windowed_head_attention_rows(a, window, softcap, scratch);
}

void kv_append_rows(const float* k, const float* v, int64_t stride, int64_t rows, int64_t head_dim, bool f32,
                    uint8_t* keys, uint8_t* values_t, int64_t pos, int64_t capacity) noexcept {
  cpu::kv_append_rows(k, v, stride, rows, head_dim, f32, keys, values_t, pos, capacity);
}

}  // namespace pyrt
