#include "models/decoder_limits.h"

#include <algorithm>

#include "pyrt/checked_math.h"
#include "pyrt/errors.h"

namespace pyrt::models {

void check_decoder_sizes(const DecoderConfig& c) {
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"block_count", c.n_layers}, {"embedding_length", c.d_model},   {"head_count", c.n_heads},
               {"head_count_kv", c.n_kv_heads}, {"head_dim", c.head_dim},      {"feed_forward_length", c.d_ffn},
               {"vocab", c.vocab},           {"max_context", c.max_context}};
  for (const auto& s : sizes) PYRT_CHECK(s.value > 0, Shape, c.family, " config: ", s.name, " is ", s.value, ", must be > 0");
  PYRT_CHECK(c.max_context <= kMaxContextTokens, Range, "context length ", c.max_context,
             " exceeds the largest KV cache pyrt allocates (", kMaxContextTokens, " tokens)");

  const int64_t bound = kAddressSpaceBytes;
  checked_product("the token embedding", {c.vocab, c.d_model, 4}, bound);
  checked_product("a feed-forward matrix", {c.d_ffn, c.d_model, 4}, bound);
  const int64_t kv_bytes = c.kv_f32 ? 4 : 2;
  const int64_t q_dim = checked_product("head_count * head_dim", {c.n_heads, c.head_dim}, bound);
  const int64_t kv_dim = checked_product("head_count_kv * head_dim", {c.n_kv_heads, c.head_dim}, bound);
  // One cache (keys or values); head_offset() reaches its last head with the same product.
  const int64_t cache = checked_product("the KV cache", {c.n_layers, kv_dim, c.max_context, kv_bytes}, bound);
  // Activations of one call of up to max_context tokens (floats), and the rotary tables (global and
  // local bases).
  const int64_t row =
      checked_sum("one token's activations", {3 * c.d_model, 2 * q_dim, 2 * kv_dim, 2 * c.d_ffn, 2 * c.head_dim});
  const int64_t activations = checked_product("the activations of a full-context call", {c.max_context, row, 4}, bound);
  // Attention scratch per thread: a query chunk of every head of a group, scores over the context.
  const int64_t group = c.n_heads / std::max<int64_t>(1, c.n_kv_heads);
  const int64_t scratch = checked_product(
      "the attention scratch", {std::min<int64_t>(c.max_context, 128), std::max<int64_t>(1, group),
                                checked_sum("a score row", {c.max_context, 2 * c.head_dim}), 4 * 1024},
      bound);  // 1024: a generous thread count
  const int64_t logits = checked_product("the logits of a full-context call", {c.max_context, c.vocab, 4}, bound);
  checked_product("an attention matrix", {std::max(q_dim, kv_dim), c.d_model}, bound);
  checked_sum("the decoder's buffers", {cache, cache, activations, scratch, logits}, bound);
}

}  // namespace pyrt::models
