#include "models/kv_cache.h"

#include "pyrt/errors.h"

namespace pyrt::models {

uint64_t kv_cache_bytes(const KvCacheShape& s) {
  PYRT_CHECK(s.n_layers > 0 && s.n_kv_heads > 0 && s.head_dim > 0 && s.capacity > 0, Shape,
             "KV cache sizes must be positive: ", s.n_layers, " layers, ", s.n_kv_heads, " KV heads, head_dim ",
             s.head_dim, ", ", s.capacity, " tokens");
  uint64_t bytes = s.f32 ? 4 : 2;
  for (int64_t factor : {s.n_layers, s.n_kv_heads, s.head_dim, s.capacity}) {
    PYRT_CHECK(!__builtin_mul_overflow(bytes, uint64_t(factor), &bytes), Range, "KV cache of ", s.capacity,
               " tokens x ", s.n_layers, " layers x ", s.n_kv_heads, " heads x ", s.head_dim,
               " overflows 64-bit byte arithmetic");
  }
  // Offsets into the cache are int64_t and the vector's size_t: both must hold the byte size.
  PYRT_CHECK(bytes <= uint64_t(INT64_MAX) && bytes <= uint64_t(SIZE_MAX), Range, "KV cache of ", bytes,
             " bytes is too large to address");
  return bytes;
}

KvCache::KvCache(const KvCacheShape& shape) : shape_(shape) {
  const size_t bytes = size_t(kv_cache_bytes(shape));
  k_.assign(bytes, 0);
  v_.assign(bytes, 0);
}

void KvCache::truncate(int64_t pos) {
  PYRT_CHECK(pos >= 0 && pos <= position_, Range, "cannot truncate the KV cache to ", pos, " tokens: it holds ",
             position_);
  position_ = pos;
}

}  // namespace pyrt::models
