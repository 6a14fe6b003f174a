#include "models/encoder_limits.h"

#include "pyrt/checked_math.h"
#include "pyrt/errors.h"

namespace pyrt::models {

void check_encoder_sizes(const EncoderConfig& c) {
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"vocab_size", c.vocab_size},   {"hidden_size", c.hidden_size}, {"num_hidden_layers", c.num_layers},
               {"num_attention_heads", c.num_heads}, {"intermediate_size", c.intermediate_size},
               {"max_position_embeddings", c.max_positions}};
  const char* family = encoder_family_name(c.family);
  for (const auto& s : sizes) PYRT_CHECK(s.value > 0, Shape, family, " config: ", s.name, " is ", s.value, ", must be > 0");
  // BERT always has token types; a family without them (MPNet) says 0.
  const int64_t min_types = c.family == EncoderFamily::bert ? 1 : 0;
  PYRT_CHECK(c.type_vocab_size >= min_types, Shape, family, " config: type_vocab_size is ", c.type_vocab_size,
             ", must be >= ", min_types);
  PYRT_CHECK(c.position_offset >= 0 && c.position_offset < c.max_positions, Range, family, " config: position offset ",
             c.position_offset, " is outside [0, ", c.max_positions, ")");
  PYRT_CHECK(c.relative_attention_buckets >= 0 && c.relative_attention_buckets <= 1 << 16 &&
                 c.relative_attention_max_distance > 0 && c.relative_attention_max_distance <= INT32_MAX,
             Range, family, " config: relative attention buckets ", c.relative_attention_buckets,
             " must be in [0, 65536] and max distance ", c.relative_attention_max_distance, " in [1, 2^31)");
  // encode() packs token ids as int32 positions: a position must fit.
  PYRT_CHECK(c.max_positions <= INT32_MAX, Range, "max_position_embeddings ", c.max_positions, " exceeds int32");
  const int64_t bound = kAddressSpaceBytes;
  checked_product("the word embeddings", {c.vocab_size, c.hidden_size, 4}, bound);
  checked_product("the position embeddings", {c.max_positions, c.hidden_size, 4}, bound);
  checked_product("the token type embeddings", {c.type_vocab_size, c.hidden_size, 4}, bound);
  checked_product("a feed-forward matrix", {c.intermediate_size, c.hidden_size, 4}, bound);
  // One full-length sequence's activations: hidden, q, k, v, context (H each) and the FFN (I);
  // with a relative position bias also its [heads, P, P] table.
  const int64_t row = checked_sum("one token's activations", {5 * c.hidden_size, c.intermediate_size});
  checked_product("the activations of a full-length sequence", {c.max_positions, row, 4}, bound);
  if (c.relative_attention_buckets > 0)
    checked_product("the relative position bias of a full-length sequence",
                    {c.num_heads, c.max_positions, c.max_positions, 4}, bound);
}

}  // namespace pyrt::models
