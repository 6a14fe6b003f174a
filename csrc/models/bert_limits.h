// Size limits of the BERT encoder: the products its constructor and encode() derive from the
// configuration, checked once before anything is built (docs/hostile-input.md).
#pragma once

#include "models/bert_encoder.h"

namespace pyrt::models {

// Throws Shape for a non-positive size and Range when a weight or a full-length sequence's
// activations would overflow int64 or exceed the process's address space.
void check_bert_sizes(const BertConfig& config);

}  // namespace pyrt::models
