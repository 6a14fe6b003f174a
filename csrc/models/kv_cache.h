// One sequence's keys and values for a decoder: its own memory and position, so that many
// sequences share one decoder's read-only weights (batched decoding: LlamaDecoder::forward_batch).
#pragma once
#include <cstdint>
#include <vector>

#include "pyrt/formats.h"

namespace pyrt::models {

struct KvCacheShape {
  int64_t n_layers = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t capacity = 0;  // tokens
  bool f32 = false;      // FP32 storage instead of FP16

  bool same_layout(const KvCacheShape& o) const {
    return n_layers == o.n_layers && n_kv_heads == o.n_kv_heads && head_dim == o.head_dim && f32 == o.f32;
  }
};

// Keys: [layer][kv_head][pos][head_dim] (a key row per position, read as the weight of the scores
// product). Values transposed: [layer][kv_head][head_dim][pos], so P @ V reads them as a
// [head_dim, pos] weight without a copy. Not synchronized itself: the decoder that uses it
// serializes every access (its forward and its cache methods hold the decoder's lock).
class KvCache {
 public:
  KvCache() = default;  // empty, capacity 0
  // Throws Range when the byte size overflows, Shape for a non-positive size.
  explicit KvCache(const KvCacheShape& shape);

  const KvCacheShape& shape() const { return shape_; }
  int64_t capacity() const { return shape_.capacity; }
  Format format() const { return shape_.f32 ? Format::f32 : Format::f16; }
  int64_t elem_bytes() const { return shape_.f32 ? 4 : 2; }
  // Tokens held; the next token goes to this position.
  int64_t position() const { return position_; }
  void reset() { position_ = 0; }
  // Keeps the first `pos` tokens (Range unless 0 <= pos <= position()).
  void truncate(int64_t pos);
  // After a completed forward step of n tokens.
  void advance(int64_t n) { position_ += n; }

  uint8_t* k_head(int64_t layer, int64_t g) { return k_.data() + head_offset(layer, g); }
  uint8_t* v_head(int64_t layer, int64_t g) { return v_.data() + head_offset(layer, g); }

 private:
  int64_t head_offset(int64_t layer, int64_t g) const {
    return (layer * shape_.n_kv_heads + g) * shape_.capacity * shape_.head_dim * elem_bytes();
  }

  KvCacheShape shape_;
  std::vector<uint8_t> k_, v_;  // zeroed: kernels may read a block past the last position
  int64_t position_ = 0;
};

// Bytes of one of the two (key or value) tensors of a cache of `shape`; throws Range on overflow.
uint64_t kv_cache_bytes(const KvCacheShape& shape);

}  // namespace pyrt::models
