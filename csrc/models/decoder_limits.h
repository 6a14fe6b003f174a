// Size limits of the decoder (models/causal_decoder.h): every buffer the decoder sizes from its configuration (KV cache,
// head offsets, per-call activations, rotary tables, attention scratch, logits) is computed once
// here with checked arithmetic before anything is allocated (docs/hostile-input.md).
#pragma once
#include <cstdint>

#include "models/causal_decoder.h"

namespace pyrt::models {

// The largest KV cache capacity accepted, in tokens: 2^20 = 1,048,576, the longest context of any
// released Llama-architecture model; a larger request is a mistake or an attack, never a model.
constexpr int64_t kMaxContextTokens = int64_t(1) << 20;

// Throws Shape for a non-positive size and Range when max_context exceeds kMaxContextTokens or any
// buffer of the decoder would overflow int64 or exceed the process's address space.
void check_decoder_sizes(const DecoderConfig& config);

}  // namespace pyrt::models
