// Small row-wise building blocks of the Llama decoder (normalization, rotary embedding, activation,
// softmax). Everything matrix-shaped goes through pyrt::matmul instead.
#pragma once
#include <cstdint>

namespace pyrt::models {

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for `rows` rows of `dim`. y may alias x.
void rms_norm_rows(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* y);

// Rotary position embedding in GGUF's layout ("interleaved pairs", llama.cpp rope type NORM):
// element pairs (2i, 2i+1) of each head are rotated by pos * theta^(-2i/head_dim). llama.cpp's
// converter permutes the Q/K rows of HF checkpoints so that this equals HF's rotate_half there.
// The angles depend only on the position, so a step computes them once for all layers, Q and K:
// rope_tables fills cos/sin [rows, head_dim / 2] for positions first_pos.. (angles in FP64: pos *
// freq reaches thousands of radians, where FP32 loses the phase), and rope_interleaved_rows
// rotates x [rows, n_heads * head_dim] in place with the table rows that match x's rows.
void rope_tables(int64_t head_dim, float theta, int64_t first_pos, int64_t rows, float* cos_t, float* sin_t);
void rope_interleaved_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                           const float* sin_t);

// gate[i] = silu(gate[i]) * up[i] (SwiGLU), in place on gate.
void swiglu_inplace(float* gate, const float* up, int64_t n);

// Softmax of row r over its first valid[r] entries; entries at and past valid[r] become 0.
// valid(r) = min(cols, first_valid + r): the causal mask of query r.
void causal_softmax_rows(float* scores, int64_t rows, int64_t cols, int64_t first_valid, float scale);

}  // namespace pyrt::models
