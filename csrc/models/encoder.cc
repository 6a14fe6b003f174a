#include "models/encoder.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "models/encoder_limits.h"
#include "pyrt/errors.h"
#include "pyrt/ops.h"
#include "pyrt/runtime.h"

#ifdef PYRT_WITH_OPENMP
#include <omp.h>
#endif

namespace pyrt::models {
namespace {

void linear(const float* x, int64_t M, const WeightView& w, const float* bias, float* y,
            ActivationPrecision activations) {
  MatmulParams p;
  p.activations = activations;
  p.x = x;
  p.M = M;
  p.w = w;
  p.bias = bias;
  p.y = y;
  matmul(p);
}

std::unique_ptr<float[]> uninitialized(int64_t n) { return std::unique_ptr<float[]>(new float[size_t(n)]); }

std::string layer_name(int64_t i, const std::string& rest) { return "encoder.layer." + std::to_string(i) + "." + rest; }

// Where a family keeps each layer's attention tensors (the feed-forward names are shared).
struct AttentionNames {
  const char *query, *key, *value, *attn_out, *attn_norm;
};

AttentionNames attention_names(EncoderFamily family) {
  if (family == EncoderFamily::mpnet)
    return {"attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o", "attention.LayerNorm"};
  return {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
          "attention.output.LayerNorm"};
}

// The batch without its padding: kept tokens in sequence order, and where each sequence starts.
struct PackedBatch {
  std::vector<int32_t> ids, type_ids, positions;
  std::vector<int64_t> offsets;  // num_sequences + 1
  int64_t tokens() const { return int64_t(ids.size()); }
};

PackedBatch pack(const EncoderInput& in, const EncoderConfig& c) {
  PackedBatch p;
  p.offsets.reserve(size_t(in.batch + 1));
  p.offsets.push_back(0);
  for (int64_t b = 0; b < in.batch; ++b) {
    for (int64_t s = 0; s < in.seq_len; ++s) {
      const int64_t i = b * in.seq_len + s;
      const int32_t keep = in.mask ? in.mask[i] : 1;
      PYRT_CHECK(keep == 0 || keep == 1, Range, "attention mask[", b, ", ", s, "] is ", keep, ", expected 0 or 1");
      if (!keep) continue;
      const int32_t id = in.ids[i];
      // Without token type embeddings the type ids mean nothing (the model never reads them).
      const int32_t type = in.type_ids && c.type_vocab_size > 0 ? in.type_ids[i] : 0;
      PYRT_CHECK(id >= 0 && id < c.vocab_size, Range, "token id ", id, " at [", b, ", ", s,
                 "] is outside the vocabulary of ", c.vocab_size);
      PYRT_CHECK(type >= 0 && type < std::max<int64_t>(c.type_vocab_size, 1), Range, "token type id ", type,
                 " at [", b, ", ", s,
                 "] is outside [0, ", c.type_vocab_size, ")");
      const int64_t kept_before = p.tokens() - p.offsets.back();
      const int64_t position = c.position_offset + (c.positions_skip_padding ? kept_before : s);
      PYRT_CHECK(position < c.max_positions, Shape, "sequence ", b, " has a token at position ", position,
                 ", the model takes at most ", c.max_positions, " positions");
      p.ids.push_back(id);
      p.type_ids.push_back(type);
      p.positions.push_back(int32_t(position));
    }
    PYRT_CHECK(p.tokens() > p.offsets.back(), Shape, "sequence ", b, " has no token under its attention mask");
    p.offsets.push_back(p.tokens());
  }
  return p;
}

}  // namespace

Pooling pooling_from_name(const std::string& name) {
  if (name == "mean") return Pooling::mean;
  if (name == "cls") return Pooling::cls;
  if (name == "max") return Pooling::max;
  PYRT_THROW(Unsupported, "pooling '", name, "' is not supported (mean, cls, max)");
}

EncoderFamily encoder_family_from_name(const std::string& name) {
  if (name == "bert") return EncoderFamily::bert;
  if (name == "mpnet") return EncoderFamily::mpnet;
  PYRT_THROW(Unsupported, "encoder family '", name, "' is not supported (bert, mpnet)");
}

const char* encoder_family_name(EncoderFamily family) { return family == EncoderFamily::mpnet ? "MPNet" : "BERT"; }

Encoder::Encoder(const EncoderConfig& config, WeightTable weights, ActivationPrecision activations)
    : config_(config), weights_(std::move(weights)), activations_(activations) {
  const EncoderConfig& c = config_;
  check_encoder_sizes(c);  // every size below fits (models/encoder_limits.h)
  PYRT_CHECK(c.hidden_size % c.num_heads == 0, Shape, "hidden_size ", c.hidden_size,
             " is not a multiple of num_attention_heads ", c.num_heads);
  PYRT_CHECK(std::isfinite(c.layer_norm_eps) && c.layer_norm_eps > 0, Range, "layer_norm_eps must be positive");
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  weights_.set_model(encoder_family_name(c.family));

  word_embeddings_ = weights_.matrix("embeddings.word_embeddings.weight", c.vocab_size, H);
  position_embeddings_ = weights_.matrix("embeddings.position_embeddings.weight", c.max_positions, H);
  if (c.type_vocab_size > 0)
    type_embeddings_ = weights_.matrix("embeddings.token_type_embeddings.weight", c.type_vocab_size, H);
  embed_norm_weight_ = weights_.vector("embeddings.LayerNorm.weight", H);
  embed_norm_bias_ = weights_.vector("embeddings.LayerNorm.bias", H);
  if (c.relative_attention_buckets > 0) {
    // Tiny ([buckets, heads]) and read once per call: kept as FP32 whatever its stored format.
    const WeightView table = weights_.matrix("encoder.relative_attention_bias.weight", c.relative_attention_buckets,
                                             c.num_heads);
    relative_bias_table_.resize(size_t(c.relative_attention_buckets * c.num_heads));
    const auto row = format_traits(table.format).dequantize_row;
    for (int64_t b = 0; b < c.relative_attention_buckets; ++b)
      row(table.row(b), relative_bias_table_.data() + b * c.num_heads, c.num_heads, table.block);
  }

  const AttentionNames names = attention_names(c.family);
  auto w = [&](const std::string& n) { return n + ".weight"; };
  auto b = [&](const std::string& n) { return n + ".bias"; };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    Layer L;
    L.query = weights_.matrix(layer_name(i, w(names.query)), H, H);
    L.key = weights_.matrix(layer_name(i, w(names.key)), H, H);
    L.value = weights_.matrix(layer_name(i, w(names.value)), H, H);
    L.attn_out = weights_.matrix(layer_name(i, w(names.attn_out)), H, H);
    L.ffn_in = weights_.matrix(layer_name(i, "intermediate.dense.weight"), I, H);
    L.ffn_out = weights_.matrix(layer_name(i, "output.dense.weight"), H, I);
    L.query_bias = weights_.vector(layer_name(i, b(names.query)), H);
    L.key_bias = weights_.vector(layer_name(i, b(names.key)), H);
    L.value_bias = weights_.vector(layer_name(i, b(names.value)), H);
    L.attn_out_bias = weights_.vector(layer_name(i, b(names.attn_out)), H);
    L.ffn_in_bias = weights_.vector(layer_name(i, "intermediate.dense.bias"), I);
    L.ffn_out_bias = weights_.vector(layer_name(i, "output.dense.bias"), H);
    L.attn_norm_weight = weights_.vector(layer_name(i, w(names.attn_norm)), H);
    L.attn_norm_bias = weights_.vector(layer_name(i, b(names.attn_norm)), H);
    L.ffn_norm_weight = weights_.vector(layer_name(i, "output.LayerNorm.weight"), H);
    L.ffn_norm_bias = weights_.vector(layer_name(i, "output.LayerNorm.bias"), H);
    layers_.push_back(L);
  }
}

void Encoder::encode(const EncoderInput& in, Pooling pooling, bool normalize, float* out) const {
  const EncoderConfig& c = config_;
  PYRT_CHECK(in.batch >= 0 && in.seq_len >= 0, Shape, "negative batch or sequence length");
  if (in.batch == 0) return;
  PYRT_CHECK(in.ids != nullptr && out != nullptr, Internal, "null pointer");
  PYRT_CHECK(in.seq_len > 0, Shape, "a batch of ", in.batch, " empty sequences has nothing to encode");
  const PackedBatch packed = pack(in, c);
  const int64_t T = packed.tokens(), H = c.hidden_size, I = c.intermediate_size;
  const int64_t head_dim = H / c.num_heads;

  auto hidden = uninitialized(T * H);
  auto q = uninitialized(T * H), k = uninitialized(T * H), v = uninitialized(T * H);
  auto ctx = uninitialized(T * H);
  auto ffn = uninitialized(T * I);
  auto pos_type_scratch = uninitialized(2 * H * std::max(1, num_threads()));

  // Embeddings: word + position (+ token type), each row dequantized from its stored format.
  {
    const auto word_row = format_traits(word_embeddings_.format).dequantize_row;
    const auto pos_row = format_traits(position_embeddings_.format).dequantize_row;
    const bool has_types = c.type_vocab_size > 0;
    const auto type_row = has_types ? format_traits(type_embeddings_.format).dequantize_row : nullptr;
    const int threads = T * H < (int64_t(1) << 15) ? 1 : std::max(1, num_threads());
    (void)threads;
#ifdef PYRT_WITH_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
#ifdef PYRT_WITH_OPENMP
      float* pos = pos_type_scratch.get() + 2 * H * omp_get_thread_num();
#else
      float* pos = pos_type_scratch.get();
#endif
      float* type = pos + H;
#ifdef PYRT_WITH_OPENMP
#pragma omp for schedule(static)
#endif
      for (int64_t t = 0; t < T; ++t) {
        float* h = hidden.get() + t * H;
        word_row(word_embeddings_.row(packed.ids[size_t(t)]), h, H, word_embeddings_.block);
        pos_row(position_embeddings_.row(packed.positions[size_t(t)]), pos, H, position_embeddings_.block);
        if (has_types) {
          type_row(type_embeddings_.row(packed.type_ids[size_t(t)]), type, H, type_embeddings_.block);
          for (int64_t d = 0; d < H; ++d) h[d] += pos[d] + type[d];
        } else {
          for (int64_t d = 0; d < H; ++d) h[d] += pos[d];
        }
      }
    }
  }
  layer_norm(hidden.get(), T, H, embed_norm_weight_, embed_norm_bias_, c.layer_norm_eps);

  // The relative position bias depends only on positions: one [heads, P, P] table per call, shared
  // by every layer, P the longest packed sequence.
  std::unique_ptr<float[]> position_bias;
  int64_t bias_len = 0;
  if (!relative_bias_table_.empty()) {
    for (int64_t b = 0; b < in.batch; ++b)
      bias_len = std::max(bias_len, packed.offsets[size_t(b) + 1] - packed.offsets[size_t(b)]);
    position_bias = uninitialized(c.num_heads * bias_len * bias_len);
    relative_position_bias(relative_bias_table_.data(), c.relative_attention_buckets, c.num_heads,
                           c.relative_attention_max_distance, true, bias_len, position_bias.get());
  }

  for (const Layer& L : layers_) {
    linear(hidden.get(), T, L.query, L.query_bias, q.get(), activations_);
    linear(hidden.get(), T, L.key, L.key_bias, k.get(), activations_);
    linear(hidden.get(), T, L.value, L.value_bias, v.get(), activations_);
    packed_self_attention(q.get(), k.get(), v.get(), packed.offsets.data(), in.batch, c.num_heads, head_dim,
                          position_bias.get(), bias_len, ctx.get());
    // Post-LayerNorm residual blocks: hidden = LN(hidden + sublayer(hidden)). q is free again.
    linear(ctx.get(), T, L.attn_out, L.attn_out_bias, q.get(), activations_);
    add(q.get(), hidden.get(), T * H);
    layer_norm(hidden.get(), T, H, L.attn_norm_weight, L.attn_norm_bias, c.layer_norm_eps);
    linear(hidden.get(), T, L.ffn_in, L.ffn_in_bias, ffn.get(), activations_);
    gelu_erf(ffn.get(), ffn.get(), T * I);
    linear(ffn.get(), T, L.ffn_out, L.ffn_out_bias, q.get(), activations_);
    add(q.get(), hidden.get(), T * H);
    layer_norm(hidden.get(), T, H, L.ffn_norm_weight, L.ffn_norm_bias, c.layer_norm_eps);
  }

  for (int64_t b = 0; b < in.batch; ++b) {
    const int64_t first = packed.offsets[size_t(b)], count = packed.offsets[size_t(b) + 1] - first;
    float* o = out + b * H;
    const float* rows = hidden.get() + first * H;
    switch (pooling) {
      case Pooling::cls:
        std::copy(rows, rows + H, o);
        break;
      case Pooling::max:
        std::copy(rows, rows + H, o);
        for (int64_t t = 1; t < count; ++t)
          for (int64_t d = 0; d < H; ++d) o[d] = std::max(o[d], rows[t * H + d]);
        break;
      case Pooling::mean:
        std::fill(o, o + H, 0.0f);
        for (int64_t t = 0; t < count; ++t) add(rows + t * H, o, H);
        for (int64_t d = 0; d < H; ++d) o[d] /= float(count);
        break;
    }
    if (normalize) l2_normalize(o, 1, H);
  }
}

}  // namespace pyrt::models
