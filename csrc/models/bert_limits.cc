#include "models/bert_limits.h"

#include "pyrt/checked_math.h"
#include "pyrt/errors.h"

namespace pyrt::models {

void check_bert_sizes(const BertConfig& c) {
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"vocab_size", c.vocab_size},   {"hidden_size", c.hidden_size}, {"num_hidden_layers", c.num_layers},
               {"num_attention_heads", c.num_heads}, {"intermediate_size", c.intermediate_size},
               {"max_position_embeddings", c.max_positions}, {"type_vocab_size", c.type_vocab_size}};
  for (const auto& s : sizes) PYRT_CHECK(s.value > 0, Shape, "BERT config: ", s.name, " is ", s.value, ", must be > 0");
  // encode() packs token ids as int32 positions: a position must fit.
  PYRT_CHECK(c.max_positions <= INT32_MAX, Range, "max_position_embeddings ", c.max_positions, " exceeds int32");
  const int64_t bound = kAddressSpaceBytes;
  checked_product("the word embeddings", {c.vocab_size, c.hidden_size, 4}, bound);
  checked_product("the position embeddings", {c.max_positions, c.hidden_size, 4}, bound);
  checked_product("the token type embeddings", {c.type_vocab_size, c.hidden_size, 4}, bound);
  checked_product("a feed-forward matrix", {c.intermediate_size, c.hidden_size, 4}, bound);
  // One full-length sequence's activations: hidden, q, k, v, context (H each) and the FFN (I).
  const int64_t row = checked_sum("one token's activations", {5 * c.hidden_size, c.intermediate_size});
  checked_product("the activations of a full-length sequence", {c.max_positions, row, 4}, bound);
}

}  // namespace pyrt::models
