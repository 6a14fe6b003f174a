// Transformer encoder forward pass for sentence embeddings, one implementation for every encoder
// family (BERT: all-MiniLM-L6-v2 and other BertModel checkpoints; MPNet: all-mpnet-base-v2):
// embeddings, post-LayerNorm transformer layers with exact GELU, pooling and L2 normalisation, one
// call per batch. A family is an EncoderConfig: its tensor names, where position ids start, whether
// it has token types, and whether its attention adds a relative position bias. Weights stay in
// their stored pyrt format (zero-copy); activations are FP32 throughout.
//
// Padding is never computed: the batch is packed into the tokens its attention mask keeps, each
// sequence attends only to its own kept tokens (the exact effect of an additive -inf mask). All
// matmuls go through pyrt::matmul, with exact FP32 activations unless the encoder was built with
// ActivationPrecision::int8 (docs/int8.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/weights.h"
#include "pyrt/formats.h"
#include "pyrt/matmul.h"

namespace pyrt::models {

// The families and what tells them apart besides sizes: tensor names and position handling.
enum class EncoderFamily { bert, mpnet };
EncoderFamily encoder_family_from_name(const std::string& name);  // "bert", "mpnet"; Unsupported otherwise
const char* encoder_family_name(EncoderFamily family);

struct EncoderConfig {
  EncoderFamily family = EncoderFamily::bert;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t intermediate_size = 0;
  int64_t max_positions = 0;
  int64_t type_vocab_size = 0;  // 0: no token type embeddings (MPNet); type ids are then ignored
  float layer_norm_eps = 1e-12f;
  // Position id of a kept token: position_offset + its index in the padded row (BERT), or
  // position_offset + its rank among the row's kept tokens when positions_skip_padding (MPNet,
  // whose ids start after its padding id: offset = padding_idx + 1). Equal for right padding.
  int64_t position_offset = 0;
  bool positions_skip_padding = false;
  // T5-style bucketed relative position bias, one [buckets, heads] table shared by all layers
  // (MPNet: 32 buckets, max distance 128, bidirectional); 0 buckets: none (BERT).
  int64_t relative_attention_buckets = 0;
  int64_t relative_attention_max_distance = 128;
};

enum class Pooling { mean, cls, max };
Pooling pooling_from_name(const std::string& name);  // "mean", "cls", "max"; Unsupported otherwise

// Token ids of a padded batch, row-major [batch, seq_len]. type_ids may be null (all 0); mask may
// be null (all tokens kept) and otherwise holds 0 or 1; every sequence must keep at least one token.
struct EncoderInput {
  const int32_t* ids = nullptr;
  const int32_t* type_ids = nullptr;
  const int32_t* mask = nullptr;
  int64_t batch = 0;
  int64_t seq_len = 0;
};

class Encoder {
 public:
  // weights: keyed by the Hugging Face names of the family's base model without any prefix (BERT
  // "embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight", ...;
  // MPNet "encoder.layer.0.attention.attn.q.weight", "encoder.relative_attention_bias.weight",
  // ...); extra entries (a pooler) are ignored. Checks every tensor's presence, shape and format
  // against the config (the errors of models/weights.h). The encoder keeps the table (and the
  // bytes it points to must outlive the encoder).
  // activations: the precision of every matmul's activations (int8 affects q-format weights only).
  Encoder(const EncoderConfig& config, WeightTable weights,
          ActivationPrecision activations = ActivationPrecision::exact);

  // out[batch, hidden_size]: the pooled (and, if asked, L2-normalised) sentence embeddings.
  // Thread-safe: all scratch memory belongs to the call. Throws Range for out-of-vocabulary ids,
  // Shape for sequences longer than max_positions or without any kept token.
  void encode(const EncoderInput& input, Pooling pooling, bool normalize, float* out) const;

  const EncoderConfig& config() const { return config_; }
  const WeightTable& weights() const { return weights_; }
  ActivationPrecision activations() const { return activations_; }

 private:
  struct Layer {
    WeightView query, key, value, attn_out, ffn_in, ffn_out;
    const float *query_bias, *key_bias, *value_bias, *attn_out_bias, *ffn_in_bias, *ffn_out_bias;
    const float *attn_norm_weight, *attn_norm_bias, *ffn_norm_weight, *ffn_norm_bias;
  };

  EncoderConfig config_;
  WeightTable weights_;
  ActivationPrecision activations_ = ActivationPrecision::exact;
  WeightView word_embeddings_, position_embeddings_, type_embeddings_;
  const float *embed_norm_weight_ = nullptr, *embed_norm_bias_ = nullptr;
  std::vector<float> relative_bias_table_;  // [buckets, heads] FP32; empty without a relative bias
  std::vector<Layer> layers_;
};

}  // namespace pyrt::models
