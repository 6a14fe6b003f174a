// The decoder of every Llama-like family (Llama/SmolLM2, Qwen2, Gemma 3, Gemma 2): one forward pass
// whose family differences are configuration, each difference an op of the op layer
// (pyrt/ops.h, pyrt/ops_decoder.h): RMSNorm with an optional weight offset, rotary embeddings in
// the NORM (GGUF-permuted Llama) or NEOX layout with a per-layer base, grouped-query attention
// over an FP16 KV cache with optional Q/K/V biases, QK-norm, sliding-window layers and score
// softcapping, post-attention/post-FFN norms, a SwiGLU or gated GELU-tanh FFN, a scaled embedding,
// a tied or separate output head with optional final softcapping. Weights are pyrt WeightViews in
// any format (norms and biases f32); every product runs through pyrt::matmul, so the model gets
// whatever kernel the active CPU ISA offers.
// The decoder holds the shared read-only weights; each sequence's state is a KvCache, so many
// sequences decode together through one forward_batch (the weights are read once per step).
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "models/kv_cache.h"
#include "models/weights.h"
#include "pyrt/formats.h"
#include "pyrt/matmul.h"
#include "pyrt/thread_team.h"

namespace pyrt::models {

// Which elements a rotation pairs: NORM (2i, 2i+1), llama.cpp's Llama layout (its converter
// permutes Llama's Q/K rows to it); NEOX (i, i + head_dim/2), Hugging Face's rotate_half as the
// checkpoints of Qwen2 and Gemma store it.
enum class RopeLayout : int { norm = 0, neox = 1 };
// The gated FFN: down(act(gate(x)) * up(x)) with act = SiLU (SwiGLU: Llama, Qwen2) or the tanh
// GELU (Gemma).
enum class FfnActivation : int { swiglu = 0, gelu_tanh = 1 };

// The family table of pyrt/decoder_families.py fills this from a GGUF file's keys.
struct DecoderConfig {
  std::string family = "Llama";  // names the model in errors ("Qwen2 model has no tensor ...")
  int64_t n_layers = 0;     // <arch>.block_count
  int64_t d_model = 0;      // <arch>.embedding_length
  int64_t n_heads = 0;      // <arch>.attention.head_count
  int64_t n_kv_heads = 0;   // <arch>.attention.head_count_kv
  int64_t head_dim = 0;     // <arch>.attention.key_length (Gemma 3: 256, not d_model / n_heads)
  int64_t d_ffn = 0;        // <arch>.feed_forward_length
  int64_t vocab = 0;        // rows of token_embd.weight
  int64_t max_context = 0;  // KV cache capacity in tokens (<= <arch>.context_length)
  float rms_eps = 1e-5f;    // <arch>.attention.layer_norm_rms_epsilon
  // Every RMSNorm multiplies by (weight + norm_offset): 1 for Hugging Face Gemma weights, 0 for
  // GGUF (llama.cpp's converter adds the 1) and every other family.
  float norm_offset = 0.0f;
  float rope_theta = 10000.0f;      // <arch>.rope.freq_base (global layers)
  float rope_theta_local = 0.0f;    // sliding-window layers' base; 0: rope_theta (Gemma 3: 1e4)
  RopeLayout rope_layout = RopeLayout::norm;
  FfnActivation ffn = FfnActivation::swiglu;
  bool qkv_bias = false;    // blk.N.attn_{q,k,v}.bias (Qwen2)
  bool qk_norm = false;     // blk.N.attn_{q,k}_norm.weight [head_dim], per head before rotation (Gemma 3)
  bool post_norms = false;  // blk.N.post_attention_norm / post_ffw_norm on each block's output (Gemma 2/3)
  // Sliding-window attention: layers with local_layers[l] != 0 see the last `sliding_window`
  // positions only (empty: no such layer).
  int64_t sliding_window = 0;
  std::vector<uint8_t> local_layers;
  float embedding_scale = 1.0f;   // the embedding rows are multiplied by it (Gemma: sqrt(d_model))
  float attention_scale = 0.0f;   // scores = q.k * attention_scale; 0: 1 / sqrt(head_dim)
  float attn_softcap = 0.0f;      // > 0: scores = cap * tanh(scores / cap) (Gemma 2)
  float final_softcap = 0.0f;     // > 0: logits = cap * tanh(logits / cap) (Gemma 2)
  bool kv_f32 = false;      // FP32 KV cache instead of FP16: exactness tests, twice the memory
  // int8: the weight products quantize their activations (docs/int8.md; opt-in, measured cost).
  ActivationPrecision activations = ActivationPrecision::exact;

  bool is_local(int64_t layer) const {
    return sliding_window > 0 && size_t(layer) < local_layers.size() && local_layers[size_t(layer)] != 0;
  }
};

class Decoder {
 public:
  // weights: tensors by GGUF name: token_embd.weight, output_norm.weight, [output.weight],
  // blk.{i}.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,ffn_gate,ffn_up,ffn_down}.weight
  // and, as the config asks, blk.{i}.attn_{q,k,v}.bias, blk.{i}.attn_{q,k}_norm.weight,
  // blk.{i}.{post_attention_norm,post_ffw_norm}.weight; norms and biases f32. Validates the config
  // and every tensor (the errors of models/weights.h) and allocates the KV cache for
  // config.max_context tokens. The bytes must outlive the decoder.
  Decoder(const DecoderConfig& config, WeightTable weights);

  const DecoderConfig& config() const { return config_; }
  const WeightTable& weights() const { return weights_; }
  // The decoder's own sequence (the single-sequence API below). Tokens already in its KV cache;
  // the next token goes to this position.
  int64_t position() const { return cache_.position(); }
  // Forget the cache (cheap: the memory is reused) or keep only its first `pos` tokens.
  void reset();
  void truncate(int64_t pos);

  // Runs `n` tokens at positions position() .. position()+n-1 in one pass (prefill when n > 1),
  // appends their keys/values to the cache and writes float32 logits: [n, vocab] when all_logits,
  // else only the last token's [vocab]. Throws Range for ids outside the vocabulary or a full cache.
  // Thread-safe (one call at a time per decoder); never touches Python.
  void forward(const int32_t* tokens, int64_t n, bool all_logits, float* logits);

  // The shape of a cache for one more sequence of `capacity` tokens (Range unless 1..max_context).
  KvCacheShape cache_shape(int64_t capacity) const;
  // Sequences s = 0..seqs-1, each with counts[s] >= 1 new tokens (concatenated in `tokens`) and its
  // own cache (distinct, made by cache_shape of this decoder): one pass whose weight products run
  // once over all the rows, attention per sequence over its own cache. Writes the last token's
  // logits of every sequence, [seqs, vocab]. Nothing changes when it throws (Range: full cache or
  // bad id; Shape: bad counts or a foreign/duplicate cache). Same locking as forward.
  void forward_batch(const int32_t* tokens, const int64_t* counts, KvCache* const* caches, int64_t seqs,
                     float* logits);
  // reset/truncate of any cache used with this decoder, under the decoder's lock.
  void reset(KvCache& cache);
  void truncate(KvCache& cache, int64_t pos);

 private:
  struct Layer {
    const float* attn_norm;
    WeightView wq, wk, wv, wo;
    const float* ffn_norm;
    WeightView w_gate, w_up, w_down;
    const float* q_bias = nullptr;  // qkv_bias
    const float* k_bias = nullptr;
    const float* v_bias = nullptr;
    const float* q_norm = nullptr;  // qk_norm, [head_dim]
    const float* k_norm = nullptr;
    const float* post_attn_norm = nullptr;  // post_norms
    const float* post_ffn_norm = nullptr;
    bool local = false;  // sliding-window layer: its window and rotary base
  };

  // One sequence of the current step: rows [first_row, first_row + rows) of the activations.
  struct Sequence {
    KvCache* cache;
    int64_t first_row;
    int64_t rows;
    int64_t tasks_before;  // attention tasks of the sequences before it
  };

  // Validates a batch and runs it (the lock is held by the caller).
  void check_batch(const int32_t* tokens, const int64_t* counts, KvCache* const* caches, int64_t seqs) const;
  void run(const int32_t* tokens, const int64_t* counts, KvCache* const* caches, int64_t seqs, bool all_logits,
           float* logits);
  void embed(const int32_t* tokens, int64_t n, float* x) const;
  // One step runs inside a single parallel region: every thread calls these with its place in the
  // team and does its share; they end on a barrier, so the next phase sees complete results.
  void attention_block(const ThreadTeam& team, const Layer& layer, int64_t layer_index, int64_t n);
  void ffn_block(const ThreadTeam& team, const Layer& layer, int64_t n);
  void output_head(const ThreadTeam& team, float* logits);
  void store_kv(int64_t layer_index, int64_t row_begin, int64_t row_end);
  void attend(const ThreadTeam& team, int64_t layer_index, bool local);
  // The config's RMSNorm (its offset) on rows [r0, r1) of x[., n] into y.
  void norm_rows(const float* x, const float* weight, int64_t r0, int64_t r1, int64_t n, float* y) const;
  // x += block output for rows [r0, r1), through the post-norm when the family has one.
  void add_residual(const float* post_norm, int64_t r0, int64_t r1);
  void resize_scratch(int64_t n, int threads);  // after seqs_ is set
  // int8 mode: quantizes x[n, K] for the products that follow (thread 0 for a few rows, the whole
  // team split by rows for a prefill); barriers publish it.
  void quantize_for_products(const ThreadTeam& team, const float* x, int64_t n, int64_t K);
  // A failed quantization (an exception, or NaN/Inf rows) stops the remaining products.
  bool stopped() const;
  // This thread's share of products that read the same activations (exact, or int8 from xq_).
  void products(const ThreadTeam& team, const MatmulParams* ps, int count);
  void product_rows(const MatmulParams& p, int64_t n_begin, int64_t n_end);

  DecoderConfig config_;
  WeightTable weights_;
  WeightView token_embd_;
  WeightView output_;
  const float* output_norm_ = nullptr;
  std::vector<Layer> layers_;

  // The single-sequence API's KV cache (FP16, FP32 with config.kv_f32), max_context tokens.
  KvCache cache_;

  // The sequences of the current call, the sequence and position of every row, and the rows whose
  // logits are wanted.
  std::vector<Sequence> seqs_;
  std::vector<int32_t> row_seq_;
  std::vector<int64_t> row_pos_;
  std::vector<int64_t> out_rows_;
  int64_t attention_tasks_ = 0;

  // Activations of the current call, sized for n tokens.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, proj_, gate_, up_;
  // Rotary cos/sin of the call's positions [n, head_dim / 2]: computed once per call, shared by
  // every layer's Q and K; the _local pair for sliding-window layers with their own base.
  std::vector<float> rope_cos_, rope_sin_, rope_cos_local_, rope_sin_local_;
  bool local_rope_ = false;  // rope_theta_local differs from rope_theta
  // Per-thread attention scratch: one head's query chunk, its scores and its output.
  std::vector<float> attn_scratch_;
  int64_t attn_scratch_per_thread_ = 0;

  // int8 activations: on when configured and the model has q-format weights (one block size).
  bool int8_ = false;
  int int8_block_ = 0;
  QuantizedActivations xq_;
  // A quantization that failed (NaN/Inf activations) inside the parallel region: the remaining
  // products are skipped and forward() rethrows it after the region.
  bool failed_ = false;
  std::exception_ptr error_;
  // Set by any thread whose rows of a split (prefill) quantization hold NaN/Inf; forward() throws
  // Range after the region.
  std::atomic<bool> nonfinite_{false};
  std::mutex mutex_;
};

}  // namespace pyrt::models
