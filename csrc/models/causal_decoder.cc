#include "models/causal_decoder.h"

#include <algorithm>
#include <cmath>

#include "models/decoder_limits.h"
#include "pyrt/adaptive_threads.h"
#include "pyrt/errors.h"
#include "pyrt/ops.h"
#include "pyrt/ops_decoder.h"
#include "pyrt/runtime.h"

namespace pyrt::models {
namespace {

// Queries per attention chunk: bounds the scores buffer to (group * chunk) x max_context floats
// however long the prompt is.
constexpr int64_t kQueryChunk = 128;

MatmulParams product(const float* x, int64_t M, const WeightView& w, float* y) {
  MatmulParams p;
  p.x = x;
  p.M = M;
  p.w = w;
  p.y = y;
  return p;
}

}  // namespace

Decoder::Decoder(const DecoderConfig& c, WeightTable weights) : config_(c), weights_(std::move(weights)) {
  check_decoder_sizes(c);  // every buffer size below fits (models/decoder_limits.h)
  PYRT_CHECK(c.n_layers > 0 && c.d_model > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.d_ffn > 0 &&
                 c.vocab > 0 && c.max_context > 0,
             Shape, "decoder config has a non-positive size");
  PYRT_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, Shape, "head_dim ", c.head_dim, " must be positive and even");
  PYRT_CHECK(c.n_heads % c.n_kv_heads == 0, Shape, "head_count ", c.n_heads, " is not a multiple of head_count_kv ",
             c.n_kv_heads);
  PYRT_CHECK(std::isfinite(c.rms_eps) && c.rms_eps > 0 && std::isfinite(c.rope_theta) && c.rope_theta > 0, Range,
             "rms_eps and rope_theta must be positive");
  PYRT_CHECK(std::isfinite(c.norm_offset) && std::isfinite(c.embedding_scale) && c.embedding_scale > 0 &&
                 std::isfinite(c.attention_scale) && c.attention_scale >= 0 && std::isfinite(c.rope_theta_local) &&
                 c.rope_theta_local >= 0 && std::isfinite(c.attn_softcap) && c.attn_softcap >= 0 &&
                 std::isfinite(c.final_softcap) && c.final_softcap >= 0,
             Range, "decoder config: norm_offset, embedding_scale, attention_scale, rope_theta_local and the "
             "softcaps must be finite (scales positive, the others >= 0)");
  PYRT_CHECK(c.sliding_window >= 0, Range, "sliding_window ", c.sliding_window, " must be >= 0");
  PYRT_CHECK(c.local_layers.empty() || int64_t(c.local_layers.size()) == c.n_layers, Shape, "local_layers has ",
             c.local_layers.size(), " entries for ", c.n_layers, " layers");
  const int64_t d = c.d_model, q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  WeightTable& w = weights_;
  w.set_model(c.family);

  token_embd_ = w.matrix("token_embd.weight", c.vocab, d);
  output_ = w.contains("output.weight") ? w.matrix("output.weight", c.vocab, d) : token_embd_;
  output_norm_ = w.f32_vector("output_norm.weight", d);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    Layer l;
    l.attn_norm = w.f32_vector(p + "attn_norm.weight", d);
    l.wq = w.matrix(p + "attn_q.weight", q_dim, d);
    l.wk = w.matrix(p + "attn_k.weight", kv_dim, d);
    l.wv = w.matrix(p + "attn_v.weight", kv_dim, d);
    l.wo = w.matrix(p + "attn_output.weight", d, q_dim);
    l.ffn_norm = w.f32_vector(p + "ffn_norm.weight", d);
    l.w_gate = w.matrix(p + "ffn_gate.weight", c.d_ffn, d);
    l.w_up = w.matrix(p + "ffn_up.weight", c.d_ffn, d);
    l.w_down = w.matrix(p + "ffn_down.weight", d, c.d_ffn);
    if (c.qkv_bias) {
      l.q_bias = w.f32_vector(p + "attn_q.bias", q_dim);
      l.k_bias = w.f32_vector(p + "attn_k.bias", kv_dim);
      l.v_bias = w.f32_vector(p + "attn_v.bias", kv_dim);
    }
    if (c.qk_norm) {
      l.q_norm = w.f32_vector(p + "attn_q_norm.weight", c.head_dim);
      l.k_norm = w.f32_vector(p + "attn_k_norm.weight", c.head_dim);
    }
    if (c.post_norms) {
      l.post_attn_norm = w.f32_vector(p + "post_attention_norm.weight", d);
      l.post_ffn_norm = w.f32_vector(p + "post_ffw_norm.weight", d);
    }
    l.local = c.is_local(i);
    layers_.push_back(l);
  }
  PYRT_CHECK(c.activations != ActivationPrecision::int16, Unsupported,
             "the decoder supports exact and int8 activations, not int16");
  if (c.activations == ActivationPrecision::int8) {
    std::vector<const WeightView*> all = {&output_};
    for (const Layer& l : layers_)
      for (const WeightView* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) all.push_back(w);
    for (const WeightView* w : all) {
      if (!format_traits(w->format).blocked) continue;
      PYRT_CHECK(int8_block_ == 0 || int8_block_ == w->block, Unsupported,
                 "int8 activations need one block size across the q-format weights, found ", int8_block_, " and ",
                 w->block);
      int8_block_ = w->block;
    }
    int8_ = int8_block_ != 0;  // all-float weights: the mode changes nothing
  }
  local_rope_ = c.rope_theta_local > 0 && c.rope_theta_local != c.rope_theta;
  cache_ = KvCache(cache_shape(c.max_context));
}

KvCacheShape Decoder::cache_shape(int64_t capacity) const {
  PYRT_CHECK(capacity > 0 && capacity <= config_.max_context, Range, "a KV cache of ", capacity,
             " tokens: the decoder's context holds 1 to ", config_.max_context);
  KvCacheShape s;
  s.n_layers = config_.n_layers;
  s.n_kv_heads = config_.n_kv_heads;
  s.head_dim = config_.head_dim;
  s.capacity = capacity;
  s.f32 = config_.kv_f32;
  return s;
}

void Decoder::reset() { reset(cache_); }

void Decoder::truncate(int64_t pos) { truncate(cache_, pos); }

void Decoder::reset(KvCache& cache) {
  std::lock_guard<std::mutex> lock(mutex_);
  cache.reset();
}

void Decoder::truncate(KvCache& cache, int64_t pos) {
  std::lock_guard<std::mutex> lock(mutex_);
  cache.truncate(pos);
}

void Decoder::resize_scratch(int64_t n, int threads) {
  const DecoderConfig& c = config_;
  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  x_.resize(size_t(n * c.d_model));
  xn_.resize(size_t(n * c.d_model));
  q_.resize(size_t(n * q_dim));
  k_.resize(size_t(n * kv_dim));
  v_.resize(size_t(n * kv_dim));
  attn_.resize(size_t(n * q_dim));
  proj_.resize(size_t(n * c.d_model));
  gate_.resize(size_t(n * c.d_ffn));
  up_.resize(size_t(n * c.d_ffn));
  rope_cos_.resize(size_t(n * (c.head_dim / 2)));
  rope_sin_.resize(size_t(n * (c.head_dim / 2)));
  rope_cos_local_.resize(local_rope_ ? size_t(n * (c.head_dim / 2)) : 0);
  rope_sin_local_.resize(local_rope_ ? size_t(n * (c.head_dim / 2)) : 0);
  attn_scratch_per_thread_ = 0;
  for (const Sequence& s : seqs_) {
    const int64_t need = cached_head_attention_scratch(std::min(s.rows, kQueryChunk), c.head_dim,
                                                       s.cache->position() + s.rows);
    attn_scratch_per_thread_ = std::max(attn_scratch_per_thread_, need);
  }
  attn_scratch_.resize(size_t(attn_scratch_per_thread_ * threads));
}

void Decoder::embed(const int32_t* tokens, int64_t n, float* x) const {
  const auto dequantize_row = format_traits(token_embd_.format).dequantize_row;
  const int64_t d = config_.d_model;
  for (int64_t i = 0; i < n; ++i) {
    dequantize_row(token_embd_.row(tokens[i]), x + i * d, d, token_embd_.block);
    if (config_.embedding_scale != 1.0f)
      for (int64_t e = 0; e < d; ++e) x[i * d + e] *= config_.embedding_scale;
  }
}

void Decoder::norm_rows(const float* x, const float* weight, int64_t r0, int64_t r1, int64_t n, float* y) const {
  rms_norm_offset_rows(x + r0 * n, weight, config_.norm_offset, r1 - r0, n, config_.rms_eps, y + r0 * n);
}

void Decoder::add_residual(const float* post_norm, int64_t r0, int64_t r1) {
  const int64_t d = config_.d_model;
  if (post_norm != nullptr) norm_rows(proj_.data(), post_norm, r0, r1, d, proj_.data());
  for (int64_t i = r0 * d; i < r1 * d; ++i) x_[size_t(i)] += proj_[size_t(i)];
}

void Decoder::store_kv(int64_t layer_index, int64_t row_begin, int64_t row_end) {
  const DecoderConfig& c = config_;
  const int64_t hd = c.head_dim, kv_dim = c.n_kv_heads * hd;
  for (int64_t i = row_begin; i < row_end;) {
    // A run of rows of one sequence holds consecutive positions: one append per KV head.
    const int32_t s = row_seq_[size_t(i)];
    int64_t j = i + 1;
    while (j < row_end && row_seq_[size_t(j)] == s) ++j;
    KvCache& cache = *seqs_[size_t(s)].cache;
    for (int64_t g = 0; g < c.n_kv_heads; ++g) {
      kv_append_rows(k_.data() + i * kv_dim + g * hd, v_.data() + i * kv_dim + g * hd, kv_dim, j - i, hd, c.kv_f32,
                     cache.k_head(layer_index, g), cache.v_head(layer_index, g), row_pos_[size_t(i)],
                     cache.capacity());
    }
    i = j;
  }
}

void Decoder::quantize_for_products(const ThreadTeam& team, const float* x, int64_t n, int64_t K) {
  if (!int8_) return;
  // A decode step (a few rows) is quantized by one thread: splitting it would cost a second barrier
  // per phase, more than the work. A prefill splits the rows across the team.
  constexpr int64_t kSplitRows = 16;
  const bool split = n >= kSplitRows && team.size > 1;
  if (team.id == 0 && !failed_) {
    try {
      if (split)
        prepare_quantized_activations(n, K, int8_block_, &xq_);
      else
        quantize_activations(x, n, K, int8_block_, &xq_);
    } catch (...) {
      error_ = std::current_exception();
      failed_ = true;
    }
  }
  ThreadTeam::barrier();
  if (!split) return;
  if (!failed_) {
    const int64_t m0 = n * team.id / team.size, m1 = n * (team.id + 1) / team.size;
    if (!quantize_activation_rows(x + m0 * K, m1 - m0, &xq_, m0)) nonfinite_.store(true, std::memory_order_relaxed);
  }
  ThreadTeam::barrier();
}

bool Decoder::stopped() const { return failed_ || nonfinite_.load(std::memory_order_relaxed); }

void Decoder::products(const ThreadTeam& team, const MatmulParams* ps, int count) {
  if (!stopped()) stacked_matmul_rows(team, ps, count, int8_ ? &xq_ : nullptr);
}

void Decoder::product_rows(const MatmulParams& p, int64_t n_begin, int64_t n_end) {
  if (stopped()) return;
  if (int8_)
    matmul_rows(p, xq_, n_begin, n_end);
  else
    matmul_rows(p, n_begin, n_end);
}

// Causal attention of each sequence's new queries over its own cached positions, one task per
// (sequence, query head, chunk of queries): scores = Q_chunk @ K^T, softmax, out = P @ V, both
// products reading the cache in place (keys as an [end, head_dim] weight, values stored transposed
// as [head_dim, end]). Tasks rather than KV-head groups are split over the team, so a single
// decoded token (9 heads, 3 KV heads in SmolLM2) still keeps both threads busy.
void Decoder::attend(const ThreadTeam& team, int64_t layer_index, bool local) {
  const DecoderConfig& c = config_;
  const int64_t hd = c.head_dim, group = c.n_heads / c.n_kv_heads, q_dim = c.n_heads * hd;
  const float scale = c.attention_scale > 0 ? c.attention_scale : float(1.0 / std::sqrt(double(hd)));
  const int64_t window = local ? c.sliding_window : 0;
  float* scratch = attn_scratch_.data() + team.id * attn_scratch_per_thread_;  // as sized by resize_scratch
  int64_t t0, t1;
  team.share(attention_tasks_, &t0, &t1);
  size_t si = 0;
  for (int64_t task = t0; task < t1; ++task) {
    while (si + 1 < seqs_.size() && seqs_[si + 1].tasks_before <= task) ++si;
    const Sequence& s = seqs_[si];
    KvCache& cache = *s.cache;
    const int64_t chunks = (s.rows + kQueryChunk - 1) / kQueryChunk, local = task - s.tasks_before;
    const int64_t head = local / chunks, i0 = (local % chunks) * kQueryChunk, g = head / group;
    const int64_t start = cache.position(), end = start + s.rows, eb = cache.elem_bytes();
    const int64_t row = s.first_row + i0;
    CachedHeadAttention a;
    a.q = q_.data() + row * q_dim + head * hd;
    a.q_stride = q_dim;
    a.rows = std::min(kQueryChunk, s.rows - i0);
    a.keys = WeightView{cache.format(), 1, end, hd, cache.k_head(layer_index, g), hd * eb};
    a.values_t = WeightView{cache.format(), 1, hd, end, cache.v_head(layer_index, g), cache.capacity() * eb};
    // Query i0+i sits at position start+i0+i and sees keys 0 .. that position.
    a.first_valid = start + i0 + 1;
    a.scale = scale;
    a.out = attn_.data() + row * q_dim + head * hd;
    a.out_stride = q_dim;
    windowed_head_attention_rows(a, window, c.attn_softcap, scratch);
  }
  ThreadTeam::barrier();
}

// Expects xn_ = attn_norm(x_) for every row; leaves x_ += [post_norm](attention(xn_)) and
// xn_ = ffn_norm(x_).
void Decoder::attention_block(const ThreadTeam& team, const Layer& layer, int64_t layer_index, int64_t n) {
  const DecoderConfig& c = config_;
  const MatmulParams qkv[3] = {product(xn_.data(), n, layer.wq, q_.data()), product(xn_.data(), n, layer.wk, k_.data()),
                               product(xn_.data(), n, layer.wv, v_.data())};
  quantize_for_products(team, xn_.data(), n, c.d_model);
  products(team, qkv, 3);
  ThreadTeam::barrier();
  int64_t r0, r1;
  team.share(n, &r0, &r1);
  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  float* q = q_.data() + r0 * q_dim;
  float* k = k_.data() + r0 * kv_dim;
  if (layer.q_bias != nullptr) {
    bias_add_rows(q, layer.q_bias, r1 - r0, q_dim);
    bias_add_rows(k, layer.k_bias, r1 - r0, kv_dim);
    bias_add_rows(v_.data() + r0 * kv_dim, layer.v_bias, r1 - r0, kv_dim);
  }
  if (layer.q_norm != nullptr) {  // each head's vector is one row of head_dim
    rms_norm_offset_rows(q, layer.q_norm, c.norm_offset, (r1 - r0) * c.n_heads, c.head_dim, c.rms_eps, q);
    rms_norm_offset_rows(k, layer.k_norm, c.norm_offset, (r1 - r0) * c.n_kv_heads, c.head_dim, c.rms_eps, k);
  }
  const bool own_base = layer.local && local_rope_;
  const float* rope_cos = (own_base ? rope_cos_local_ : rope_cos_).data() + r0 * (c.head_dim / 2);
  const float* rope_sin = (own_base ? rope_sin_local_ : rope_sin_).data() + r0 * (c.head_dim / 2);
  const auto rope = c.rope_layout == RopeLayout::neox ? rope_neox_rows : rope_interleaved_rows;
  rope(q, r1 - r0, c.n_heads, c.head_dim, rope_cos, rope_sin);
  rope(k, r1 - r0, c.n_kv_heads, c.head_dim, rope_cos, rope_sin);
  store_kv(layer_index, r0, r1);
  ThreadTeam::barrier();
  attend(team, layer_index, layer.local);
  const MatmulParams out = product(attn_.data(), n, layer.wo, proj_.data());
  quantize_for_products(team, attn_.data(), n, layer.wo.cols);
  products(team, &out, 1);
  ThreadTeam::barrier();
  add_residual(layer.post_attn_norm, r0, r1);
  norm_rows(x_.data(), layer.ffn_norm, r0, r1, c.d_model, xn_.data());
  ThreadTeam::barrier();
}

// Expects xn_ = ffn_norm(x_); leaves x_ += [post_norm](ffn(xn_)) for this thread's rows (no closing barrier:
// the caller normalizes those same rows for the next layer first).
void Decoder::ffn_block(const ThreadTeam& team, const Layer& layer, int64_t n) {
  const DecoderConfig& c = config_;
  // Gate and up rows are split alike, so each thread applies the gated activation to exactly the
  // columns it computed, with no barrier between the products and the activation.
  const auto gated = c.ffn == FfnActivation::gelu_tanh ? gelu_tanh_gated_rows : swiglu_rows;
  quantize_for_products(team, xn_.data(), n, c.d_model);
  int64_t g0, g1;
  team.share((c.d_ffn + kMatmulRowAlign - 1) / kMatmulRowAlign, &g0, &g1);
  const int64_t c0 = g0 * kMatmulRowAlign, c1 = std::min(c.d_ffn, g1 * kMatmulRowAlign);
  if (c0 < c1) {
    product_rows(product(xn_.data(), n, layer.w_gate, gate_.data()), c0, c1);
    product_rows(product(xn_.data(), n, layer.w_up, up_.data()), c0, c1);
    for (int64_t i = 0; i < n; ++i)
      gated(gate_.data() + i * c.d_ffn + c0, up_.data() + i * c.d_ffn + c0, gate_.data() + i * c.d_ffn + c0, c1 - c0);
  }
  ThreadTeam::barrier();
  const MatmulParams down = product(gate_.data(), n, layer.w_down, proj_.data());
  quantize_for_products(team, gate_.data(), n, c.d_ffn);
  products(team, &down, 1);
  ThreadTeam::barrier();
  int64_t r0, r1;
  team.share(n, &r0, &r1);
  add_residual(layer.post_ffn_norm, r0, r1);
}

// Only the rows whose logits are wanted (out_rows_) go through the (vocab x d_model) output head.
void Decoder::output_head(const ThreadTeam& team, float* logits) {
  const DecoderConfig& c = config_;
  const int64_t rows = int64_t(out_rows_.size());
  int64_t r0, r1;
  team.share(rows, &r0, &r1);
  for (int64_t i = r0; i < r1; ++i) {
    rms_norm_offset_rows(x_.data() + out_rows_[size_t(i)] * c.d_model, output_norm_, c.norm_offset, 1, c.d_model,
                         c.rms_eps, xn_.data() + i * c.d_model);
  }
  ThreadTeam::barrier();
  const MatmulParams head = product(xn_.data(), rows, output_, logits);
  quantize_for_products(team, xn_.data(), rows, c.d_model);
  products(team, &head, 1);
}

void Decoder::forward(const int32_t* tokens, int64_t n, bool all_logits, float* logits) {
  std::lock_guard<std::mutex> lock(mutex_);
  PYRT_CHECK(n > 0, Shape, "forward needs at least one token");
  PYRT_CHECK(tokens != nullptr && logits != nullptr, Internal, "null pointer");
  KvCache* cache = &cache_;
  check_batch(tokens, &n, &cache, 1);
  run(tokens, &n, &cache, 1, all_logits, logits);
}

void Decoder::forward_batch(const int32_t* tokens, const int64_t* counts, KvCache* const* caches, int64_t seqs,
                                 float* logits) {
  std::lock_guard<std::mutex> lock(mutex_);
  PYRT_CHECK(seqs > 0, Shape, "forward_batch needs at least one sequence");
  PYRT_CHECK(tokens != nullptr && counts != nullptr && caches != nullptr && logits != nullptr, Internal,
             "null pointer");
  check_batch(tokens, counts, caches, seqs);
  run(tokens, counts, caches, seqs, false, logits);
}

void Decoder::check_batch(const int32_t* tokens, const int64_t* counts, KvCache* const* caches,
                               int64_t seqs) const {
  const DecoderConfig& c = config_;
  const KvCacheShape layout = cache_shape(c.max_context);
  int64_t first = 0;
  for (int64_t s = 0; s < seqs; ++s) {
    KvCache* cache = caches[s];
    const int64_t n = counts[s];
    PYRT_CHECK(n > 0, Shape, "sequence ", s, " of the batch has ", n, " tokens; each needs at least one");
    PYRT_CHECK(cache != nullptr && cache->capacity() > 0 && cache->shape().same_layout(layout), Shape, "sequence ",
               s, " has a KV cache that was not made for this decoder");
    for (int64_t t = 0; t < s; ++t)
      PYRT_CHECK(caches[t] != cache, Shape, "sequences ", t, " and ", s, " of the batch share one KV cache");
    PYRT_CHECK(n <= cache->capacity() - cache->position(), Range, "context is full: ", cache->position(),
               " cached + ", n, " new tokens exceed the KV cache capacity of ", cache->capacity(),
               " (reset() or a larger context)");
    for (int64_t i = 0; i < n; ++i) {
      const int32_t id = tokens[first + i];
      PYRT_CHECK(id >= 0 && id < c.vocab, Range, "token id ", id, " at index ", first + i,
                 " is outside the vocabulary [0, ", c.vocab, ")");
    }
    first += n;  // bounded by the capacities checked above
  }
}

void Decoder::run(const int32_t* tokens, const int64_t* counts, KvCache* const* caches, int64_t seqs,
                       bool all_logits, float* logits) {
  const DecoderConfig& c = config_;
  const int64_t half = c.head_dim / 2;
  seqs_.clear();
  out_rows_.clear();
  int64_t n = 0;
  attention_tasks_ = 0;
  for (int64_t s = 0; s < seqs; ++s) {
    seqs_.push_back(Sequence{caches[s], n, counts[s], attention_tasks_});
    attention_tasks_ += c.n_heads * ((counts[s] + kQueryChunk - 1) / kQueryChunk);
    n += counts[s];
  }
  row_seq_.resize(size_t(n));
  row_pos_.resize(size_t(n));
  for (size_t s = 0; s < seqs_.size(); ++s) {
    const Sequence& q = seqs_[s];
    for (int64_t i = 0; i < q.rows; ++i) {
      row_seq_[size_t(q.first_row + i)] = int32_t(s);
      row_pos_[size_t(q.first_row + i)] = q.cache->position() + i;
      if (all_logits || i + 1 == q.rows) out_rows_.push_back(q.first_row + i);
    }
  }
  const int threads = team_threads();  // num_threads(), fewer while other processes take the cores
  resize_scratch(n, threads);
  failed_ = false;
  nonfinite_.store(false);
  error_ = nullptr;
  embed(tokens, n, x_.data());
  for (const Sequence& q : seqs_) {
    rope_tables(c.head_dim, c.rope_theta, q.cache->position(), q.rows, rope_cos_.data() + q.first_row * half,
                rope_sin_.data() + q.first_row * half);
    if (local_rope_) {
      rope_tables(c.head_dim, c.rope_theta_local, q.cache->position(), q.rows,
                  rope_cos_local_.data() + q.first_row * half, rope_sin_local_.data() + q.first_row * half);
    }
  }
  // Everything below is validated (the weights in the constructor, sizes above) and cannot throw:
  // one parallel region for the whole step, phases separated by barriers.
#ifdef PYRT_WITH_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
  {
    const ThreadTeam team = ThreadTeam::current();
    int64_t r0, r1;
    team.share(n, &r0, &r1);
    norm_rows(x_.data(), layers_[0].attn_norm, r0, r1, c.d_model, xn_.data());
    ThreadTeam::barrier();
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const Layer& layer = layers_[size_t(l)];
      attention_block(team, layer, l, n);
      ffn_block(team, layer, n);
      if (l + 1 < c.n_layers) {
        // The rows this thread just updated in ffn_block: no barrier needed before normalizing them.
        norm_rows(x_.data(), layers_[size_t(l + 1)].attn_norm, r0, r1, c.d_model, xn_.data());
      }
      ThreadTeam::barrier();
    }
    output_head(team, logits);
  }
  if (error_) std::rethrow_exception(error_);  // the cache positions stay: the step did not happen
  PYRT_CHECK(!nonfinite_.load(), Range, "activations contain NaN or Inf (int8 mode cannot quantize them)");
  if (c.final_softcap > 0) softcap_rows(logits, int64_t(out_rows_.size()) * c.vocab, c.final_softcap);
  for (const Sequence& q : seqs_) q.cache->advance(q.rows);
}

}  // namespace pyrt::models
