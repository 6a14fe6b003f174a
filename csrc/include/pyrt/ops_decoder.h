// The op layer's decoder-family variants (Qwen2, Gemma 2/3 beside Llama): the numerical pieces a
// family adds to the ops of pyrt/ops.h. Same two forms: op(...) checks its arguments and throws
// pyrt::Error; op_rows(...) is the calling thread's share inside a ThreadTeam step (CPU memory,
// validated arguments, never throws, never allocates). csrc/ops/decoder_variants.cc validates and
// csrc/cpu/decoder_variants_cpu.cc computes (the rotary beside its NORM sibling in ops/rotary.cc and
// cpu/rotary_cpu.cc, the attention beside the plain one in cpu/attention_cpu.cc).
#pragma once
#include <cstdint>

#include "pyrt/formats.h"
#include "pyrt/ops.h"

namespace pyrt {

// y = x / sqrt(mean(x^2) + eps) * (weight + offset) per row of x[rows, n], the mean of squares in
// FP64. offset 1 is Gemma's RMSNorm as Hugging Face stores it (llama.cpp's converter folds the 1
// into the GGUF weights, so GGUF Gemma uses offset 0). Offset 0 is exactly rms_norm. y may alias x.
void rms_norm_offset(const float* x, const float* weight, float offset, int64_t rows, int64_t n, float eps, float* y,
                     Device device = Device::cpu);
void rms_norm_offset_rows(const float* x, const float* weight, float offset, int64_t rows, int64_t n, float eps,
                          float* y) noexcept;

// y = gelu_tanh(gate) * up, gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the
// gated GELU of Gemma's FFN ("gelu_pytorch_tanh"). y may alias gate or up.
void gelu_tanh_gated(const float* gate, const float* up, float* y, int64_t n, Device device = Device::cpu);
void gelu_tanh_gated_rows(const float* gate, const float* up, float* y, int64_t n) noexcept;

// Rotary embedding in the NEOX layout (llama.cpp rope type NEOX, Hugging Face's rotate_half on
// unpermuted weights): elements (i, i + head_dim/2) of each head are rotated by the angle of pair
// i. Tables from rope_tables (pyrt/ops.h), one row per row of x[rows, n_heads * head_dim].
void rope_neox(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t, const float* sin_t,
               Device device = Device::cpu);
void rope_neox_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                    const float* sin_t) noexcept;

// y[r] += bias for every row of y[rows, n] (Qwen2's Q/K/V biases).
void bias_add(float* y, const float* bias, int64_t rows, int64_t n, Device device = Device::cpu);
void bias_add_rows(float* y, const float* bias, int64_t rows, int64_t n) noexcept;

// x = cap * tanh(x / cap) in place (Gemma 2's attention and final-logit softcapping); cap > 0.
void softcap(float* x, int64_t n, float cap, Device device = Device::cpu);
void softcap_rows(float* x, int64_t n, float cap) noexcept;

// cached_head_attention_rows (pyrt/ops.h) with the variants of the decoder families:
// window > 0: sliding-window attention, query at position p sees only keys p - window + 1 .. p
// (llama.cpp's standard SWA, Hugging Face's sliding_window); the keys before the chunk's first
// window are not read at all. softcap > 0: scores = softcap * tanh(scale * q.k / softcap) before
// the softmax. window 0 and softcap 0 give exactly cached_head_attention_rows. Scratch as sized by
// cached_head_attention_scratch for the same rows, head_dim and end.
void windowed_head_attention_rows(const CachedHeadAttention& a, int64_t window, float softcap,
                                  float* scratch) noexcept;

// Appends `rows` consecutive positions of one KV head to a decoder's KV cache (models/kv_cache.h):
// key row i (at k + i * stride, head_dim floats) to keys + (pos + i) * head_dim elements, element e
// of value row i to values_t[e * capacity + pos + i]; FP16 (round to nearest even) unless f32.
// The decoder's own step (no validating form): pointers and sizes come from its cache.
void kv_append_rows(const float* k, const float* v, int64_t stride, int64_t rows, int64_t head_dim, bool f32,
                    uint8_t* keys, uint8_t* values_t, int64_t pos, int64_t capacity) noexcept;

}  // namespace pyrt
