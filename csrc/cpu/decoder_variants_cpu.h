// The CPU backend of pyrt/ops_decoder.h: decoder_variants_cpu.cc, rope_neox_rows in rotary_cpu.cc,
// windowed_head_attention_rows in attention_cpu.cc; AVX-512 kernels in
// decoder_variants_avx512.cc. Called only from csrc/ops/ after validation.
#pragma once
#include <cstdint>

#include "pyrt/ops_decoder.h"

namespace pyrt::cpu {

void rms_norm_offset_rows(const float* x, const float* weight, float offset, int64_t rows, int64_t n, float eps,
                          float* y) noexcept;
void gelu_tanh_gated_rows(const float* gate, const float* up, float* y, int64_t n) noexcept;
void rope_neox_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                    const float* sin_t) noexcept;
void bias_add_rows(float* y, const float* bias, int64_t rows, int64_t n) noexcept;
void softcap_rows(float* x, int64_t n, float cap) noexcept;
void windowed_head_attention_rows(const CachedHeadAttention& a, int64_t window, float softcap,
                                  float* scratch) noexcept;
void kv_append_rows(const float* k, const float* v, int64_t stride, int64_t rows, int64_t head_dim, bool f32,
                    uint8_t* keys, uint8_t* values_t, int64_t pos, int64_t capacity) noexcept;

// The AVX-512 kernels (decoder_variants_avx512.cc), picked by the functions above.
namespace avx512 {
void gelu_tanh_gated_rows(const float* gate, const float* up, float* y, int64_t n) noexcept;
void kv_append_f16_rows(const float* k, const float* v, int64_t stride, int64_t rows, int64_t head_dim,
                        uint16_t* keys, uint16_t* values_t, int64_t pos, int64_t capacity) noexcept;
}  // namespace avx512

}  // namespace pyrt::cpu
