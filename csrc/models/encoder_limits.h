// Size limits of the encoder: the products its constructor and encode() derive from the
// configuration, checked once before anything is built (docs/hostile-input.md).
#pragma once

#include "models/encoder.h"

namespace pyrt::models {

// Throws Shape for a non-positive size and Range when a weight or a full-length sequence's
// activations would overflow int64 or exceed the process's address space.
void check_encoder_sizes(const EncoderConfig& config);

}  // namespace pyrt::models
