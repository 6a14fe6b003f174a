#include "models/llama_decoder.h"

#include <algorithm>
#include <cmath>

#include "models/llama_ops.h"
#include "pyrt/errors.h"
#include "pyrt/half.h"
#include "pyrt/matmul.h"

namespace pyrt::models {
namespace {

// Queries per attention chunk: bounds the scores buffer to (group * chunk) x max_context floats
// however long the prompt is.
constexpr int64_t kQueryChunk = 128;

const WeightView& find_weight(const NamedWeights& weights, const std::string& name) {
  auto it = weights.find(name);
  PYRT_CHECK(it != weights.end(), Shape, "model tensor '", name, "' is missing");
  return it->second;
}

WeightView matrix(const NamedWeights& weights, const std::string& name, int64_t rows, int64_t cols) {
  const WeightView& w = find_weight(weights, name);
  PYRT_CHECK(w.rows == rows && w.cols == cols, Shape, "model tensor '", name, "' has shape [", w.rows, ", ",
             w.cols, "], expected [", rows, ", ", cols, "]");
  PYRT_CHECK(w.data != nullptr, Internal, "model tensor '", name, "' has no data");
  return w;
}

const float* norm_vector(const NamedWeights& weights, const std::string& name, int64_t dim) {
  const WeightView& w = find_weight(weights, name);
  PYRT_CHECK(w.format == Format::f32, Dtype, "norm tensor '", name, "' must be f32, got ",
             format_traits(w.format).name);
  PYRT_CHECK(w.rows * w.cols == dim, Shape, "norm tensor '", name, "' has ", w.rows * w.cols,
             " elements, expected ", dim);
  return reinterpret_cast<const float*>(w.data);
}

void linear(const float* x, int64_t M, const WeightView& w, float* y) {
  MatmulParams p;
  p.x = x;
  p.M = M;
  p.w = w;
  p.y = y;
  matmul(p);
}

}  // namespace

LlamaDecoder::LlamaDecoder(const LlamaConfig& c, const NamedWeights& weights) : config_(c) {
  PYRT_CHECK(c.n_layers > 0 && c.d_model > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.d_ffn > 0 &&
                 c.vocab > 0 && c.max_context > 0,
             Shape, "Llama config has a non-positive size");
  PYRT_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, Shape, "head_dim ", c.head_dim, " must be positive and even");
  PYRT_CHECK(c.n_heads % c.n_kv_heads == 0, Shape, "head_count ", c.n_heads, " is not a multiple of head_count_kv ",
             c.n_kv_heads);
  PYRT_CHECK(std::isfinite(c.rms_eps) && c.rms_eps > 0 && std::isfinite(c.rope_theta) && c.rope_theta > 0, Range,
             "rms_eps and rope_theta must be positive");
  const int64_t d = c.d_model, q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;

  token_embd_ = matrix(weights, "token_embd.weight", c.vocab, d);
  output_ = weights.count("output.weight") ? matrix(weights, "output.weight", c.vocab, d) : token_embd_;
  output_norm_ = norm_vector(weights, "output_norm.weight", d);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    Layer l;
    l.attn_norm = norm_vector(weights, p + "attn_norm.weight", d);
    l.wq = matrix(weights, p + "attn_q.weight", q_dim, d);
    l.wk = matrix(weights, p + "attn_k.weight", kv_dim, d);
    l.wv = matrix(weights, p + "attn_v.weight", kv_dim, d);
    l.wo = matrix(weights, p + "attn_output.weight", d, q_dim);
    l.ffn_norm = norm_vector(weights, p + "ffn_norm.weight", d);
    l.w_gate = matrix(weights, p + "ffn_gate.weight", c.d_ffn, d);
    l.w_up = matrix(weights, p + "ffn_up.weight", c.d_ffn, d);
    l.w_down = matrix(weights, p + "ffn_down.weight", d, c.d_ffn);
    layers_.push_back(l);
  }
  kv_format_ = c.kv_f32 ? Format::f32 : Format::f16;
  kv_elem_bytes_ = c.kv_f32 ? 4 : 2;
  const size_t cache = size_t(c.n_layers * kv_dim * c.max_context * kv_elem_bytes_);
  k_cache_.assign(cache, 0);
  v_cache_.assign(cache, 0);
}

void LlamaDecoder::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  position_ = 0;
}

void LlamaDecoder::truncate(int64_t pos) {
  std::lock_guard<std::mutex> lock(mutex_);
  PYRT_CHECK(pos >= 0 && pos <= position_, Range, "cannot truncate the KV cache to ", pos, " tokens: it holds ",
             position_);
  position_ = pos;
}

void LlamaDecoder::resize_scratch(int64_t n) {
  const LlamaConfig& c = config_;
  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  const int64_t group = c.n_heads / c.n_kv_heads, chunk = std::min(n, kQueryChunk);
  x_.resize(size_t(n * c.d_model));
  xn_.resize(size_t(n * c.d_model));
  q_.resize(size_t(n * q_dim));
  k_.resize(size_t(n * kv_dim));
  v_.resize(size_t(n * kv_dim));
  attn_.resize(size_t(n * q_dim));
  proj_.resize(size_t(n * c.d_model));
  gate_.resize(size_t(n * c.d_ffn));
  up_.resize(size_t(n * c.d_ffn));
  q_group_.resize(size_t(group * chunk * c.head_dim));
  scores_.resize(size_t(group * chunk * (position_ + n)));
  out_group_.resize(size_t(group * chunk * c.head_dim));
}

void LlamaDecoder::embed(const int32_t* tokens, int64_t n, float* x) const {
  const auto dequantize_row = format_traits(token_embd_.format).dequantize_row;
  for (int64_t i = 0; i < n; ++i) {
    dequantize_row(token_embd_.row(tokens[i]), x + i * config_.d_model, config_.d_model, token_embd_.block);
  }
}

void LlamaDecoder::store_kv(int64_t layer_index, int64_t n) {
  const LlamaConfig& c = config_;
  const int64_t hd = c.head_dim, ctx = c.max_context, kv_dim = c.n_kv_heads * hd;
  for (int64_t g = 0; g < c.n_kv_heads; ++g) {
    uint8_t* keys = k_head(layer_index, g);
    uint8_t* values = v_head(layer_index, g);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = position_ + i;
      const float* k_src = k_.data() + i * kv_dim + g * hd;
      const float* v_src = v_.data() + i * kv_dim + g * hd;
      if (kv_format_ == Format::f32) {
        float* k_dst = reinterpret_cast<float*>(keys) + pos * hd;
        float* v_dst = reinterpret_cast<float*>(values);
        for (int64_t e = 0; e < hd; ++e) {
          k_dst[e] = k_src[e];
          v_dst[e * ctx + pos] = v_src[e];
        }
      } else {
        uint16_t* k_dst = reinterpret_cast<uint16_t*>(keys) + pos * hd;
        uint16_t* v_dst = reinterpret_cast<uint16_t*>(values);
        for (int64_t e = 0; e < hd; ++e) {
          k_dst[e] = fp32_to_fp16(k_src[e]);
          v_dst[e * ctx + pos] = fp32_to_fp16(v_src[e]);
        }
      }
    }
  }
}

// Grouped-query attention of the n new queries over all cached positions. The query heads that
// share a KV head are stacked into one matrix, so each KV head costs two matmuls per chunk:
// scores = Q_group @ K^T, then out = softmax(scores) @ V, both reading the cache in place.
void LlamaDecoder::attend(int64_t layer_index, int64_t n) {
  const LlamaConfig& c = config_;
  const int64_t hd = c.head_dim, ctx = c.max_context, group = c.n_heads / c.n_kv_heads;
  const int64_t q_dim = c.n_heads * hd, end = position_ + n;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  for (int64_t g = 0; g < c.n_kv_heads; ++g) {
    const WeightView keys{kv_format_, 1, end, hd, k_head(layer_index, g), hd * kv_elem_bytes_};
    const WeightView values_t{kv_format_, 1, hd, end, v_head(layer_index, g), ctx * kv_elem_bytes_};
    for (int64_t i0 = 0; i0 < n; i0 += kQueryChunk) {
      const int64_t rows = std::min(kQueryChunk, n - i0);
      for (int64_t h = 0; h < group; ++h) {
        const int64_t head = g * group + h;
        for (int64_t i = 0; i < rows; ++i) {
          std::copy_n(q_.data() + (i0 + i) * q_dim + head * hd, hd, q_group_.data() + (h * rows + i) * hd);
        }
      }
      linear(q_group_.data(), group * rows, keys, scores_.data());
      for (int64_t h = 0; h < group; ++h) {
        // Query i0+i sits at position position_+i0+i and sees keys 0 .. that position.
        causal_softmax_rows(scores_.data() + h * rows * end, rows, end, position_ + i0 + 1, scale);
      }
      linear(scores_.data(), group * rows, values_t, out_group_.data());
      for (int64_t h = 0; h < group; ++h) {
        const int64_t head = g * group + h;
        for (int64_t i = 0; i < rows; ++i) {
          std::copy_n(out_group_.data() + (h * rows + i) * hd, hd, attn_.data() + (i0 + i) * q_dim + head * hd);
        }
      }
    }
  }
}

void LlamaDecoder::attention_block(const Layer& layer, int64_t layer_index, int64_t n) {
  const LlamaConfig& c = config_;
  rms_norm_rows(x_.data(), layer.attn_norm, n, c.d_model, c.rms_eps, xn_.data());
  linear(xn_.data(), n, layer.wq, q_.data());
  linear(xn_.data(), n, layer.wk, k_.data());
  linear(xn_.data(), n, layer.wv, v_.data());
  rope_interleaved_rows(q_.data(), n, c.n_heads, c.head_dim, position_, c.rope_theta);
  rope_interleaved_rows(k_.data(), n, c.n_kv_heads, c.head_dim, position_, c.rope_theta);
  store_kv(layer_index, n);
  attend(layer_index, n);
  linear(attn_.data(), n, layer.wo, proj_.data());
  for (int64_t i = 0; i < n * c.d_model; ++i) x_[size_t(i)] += proj_[size_t(i)];
}

void LlamaDecoder::ffn_block(const Layer& layer, int64_t n) {
  const LlamaConfig& c = config_;
  rms_norm_rows(x_.data(), layer.ffn_norm, n, c.d_model, c.rms_eps, xn_.data());
  linear(xn_.data(), n, layer.w_gate, gate_.data());
  linear(xn_.data(), n, layer.w_up, up_.data());
  swiglu_inplace(gate_.data(), up_.data(), n * c.d_ffn);
  linear(gate_.data(), n, layer.w_down, proj_.data());
  for (int64_t i = 0; i < n * c.d_model; ++i) x_[size_t(i)] += proj_[size_t(i)];
}

void LlamaDecoder::forward(const int32_t* tokens, int64_t n, bool all_logits, float* logits) {
  std::lock_guard<std::mutex> lock(mutex_);
  const LlamaConfig& c = config_;
  PYRT_CHECK(n > 0, Shape, "forward needs at least one token");
  PYRT_CHECK(tokens != nullptr && logits != nullptr, Internal, "null pointer");
  PYRT_CHECK(position_ + n <= c.max_context, Range, "context is full: ", position_, " cached + ", n,
             " new tokens exceed the KV cache capacity of ", c.max_context, " (reset() or a larger context)");
  for (int64_t i = 0; i < n; ++i) {
    PYRT_CHECK(tokens[i] >= 0 && tokens[i] < c.vocab, Range, "token id ", tokens[i], " at index ", i,
               " is outside the vocabulary [0, ", c.vocab, ")");
  }
  resize_scratch(n);
  embed(tokens, n, x_.data());
  for (int64_t l = 0; l < c.n_layers; ++l) {
    attention_block(layers_[size_t(l)], l, n);
    ffn_block(layers_[size_t(l)], n);
  }
  // Only the rows whose logits are wanted go through the (vocab x d_model) output head.
  const int64_t first = all_logits ? 0 : n - 1, rows = n - first;
  rms_norm_rows(x_.data() + first * c.d_model, output_norm_, rows, c.d_model, c.rms_eps, xn_.data());
  linear(xn_.data(), rows, output_, logits);
  position_ += n;
}

}  // namespace pyrt::models
