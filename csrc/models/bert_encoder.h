// BERT encoder forward pass (all-MiniLM-L6-v2 and other BertModel checkpoints): embeddings,
// post-LayerNorm transformer layers with exact GELU, pooling and L2 normalisation, one call per
// batch. Weights stay in their stored pyrt format (zero-copy); activations are FP32 throughout.
//
// Padding is never computed: the batch is packed into the tokens its attention mask keeps, each
// sequence attends only to its own kept tokens (the exact effect of BERT's additive -inf mask) and
// keeps its original position ids. All matmuls go through pyrt::matmul, with exact FP32 activations
// unless the encoder was built with ActivationPrecision::int8 (docs/int8.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/weights.h"
#include "pyrt/formats.h"
#include "pyrt/matmul.h"

namespace pyrt::models {

struct BertConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t intermediate_size = 0;
  int64_t max_positions = 0;
  int64_t type_vocab_size = 0;
  float layer_norm_eps = 1e-12f;
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

class BertEncoder {
 public:
  // weights: keyed by the Hugging Face BertModel names without any prefix
  // ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight", ...);
  // extra entries (a pooler) are ignored. Checks every tensor's presence, shape and format against
  // the config (the errors of models/weights.h). The encoder keeps the table (and the bytes it
  // points to must outlive the encoder).
  // activations: the precision of every matmul's activations (int8 affects q-format weights only).
  BertEncoder(const BertConfig& config, WeightTable weights,
              ActivationPrecision activations = ActivationPrecision::exact);

  // out[batch, hidden_size]: the pooled (and, if asked, L2-normalised) sentence embeddings.
  // Thread-safe: all scratch memory belongs to the call. Throws Range for out-of-vocabulary ids,
  // Shape for sequences longer than max_positions or without any kept token.
  void encode(const EncoderInput& input, Pooling pooling, bool normalize, float* out) const;

  const BertConfig& config() const { return config_; }
  ActivationPrecision activations() const { return activations_; }

 private:
  struct Layer {
    WeightView query, key, value, attn_out, ffn_in, ffn_out;
    const float *query_bias, *key_bias, *value_bias, *attn_out_bias, *ffn_in_bias, *ffn_out_bias;
    const float *attn_norm_weight, *attn_norm_bias, *ffn_norm_weight, *ffn_norm_bias;
  };

  BertConfig config_;
  WeightTable weights_;
  ActivationPrecision activations_ = ActivationPrecision::exact;
  WeightView word_embeddings_, position_embeddings_, type_embeddings_;
  const float *embed_norm_weight_ = nullptr, *embed_norm_bias_ = nullptr;
  std::vector<Layer> layers_;
};

}  // namespace pyrt::models
