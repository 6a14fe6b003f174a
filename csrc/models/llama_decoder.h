// Llama-architecture decoder (SmolLM2, Llama 2/3 style): RMSNorm, rotary embeddings in GGUF's
// interleaved layout, grouped-query attention over an FP16 KV cache, SwiGLU FFN, tied or separate
// output head. Weights are pyrt WeightViews in any format (norms f32); every product runs through
// pyrt::matmul, so the model gets whatever kernel the active CPU ISA offers.
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

struct LlamaConfig {
  int64_t n_layers = 0;     // llama.block_count
  int64_t d_model = 0;      // llama.embedding_length
  int64_t n_heads = 0;      // llama.attention.head_count
  int64_t n_kv_heads = 0;   // llama.attention.head_count_kv
  int64_t head_dim = 0;     // llama.rope.dimension_count (= d_model / n_heads for Llama)
  int64_t d_ffn = 0;        // llama.feed_forward_length
  int64_t vocab = 0;        // rows of token_embd.weight
  int64_t max_context = 0;  // KV cache capacity in tokens (<= llama.context_length)
  float rms_eps = 1e-5f;    // llama.attention.layer_norm_rms_epsilon
  float rope_theta = 10000.0f;  // llama.rope.freq_base
  bool kv_f32 = false;      // FP32 KV cache instead of FP16: exactness tests, twice the memory
  // int8: the weight products quantize their activations (docs/int8.md; opt-in, measured cost).
  ActivationPrecision activations = ActivationPrecision::exact;
};

class LlamaDecoder {
 public:
  // weights: tensors by GGUF name: token_embd.weight, output_norm.weight, [output.weight],
  // blk.{i}.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,ffn_gate,ffn_up,ffn_down}.weight;
  // norms [d_model] f32. Validates every tensor (the errors of models/weights.h) and allocates the
  // FP16 KV cache for config.max_context tokens. The bytes must outlive the decoder.
  LlamaDecoder(const LlamaConfig& config, WeightTable weights);

  const LlamaConfig& config() const { return config_; }
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
  void attend(const ThreadTeam& team, int64_t layer_index);
  void resize_scratch(int64_t n, int threads);  // after seqs_ is set
  // int8 mode: quantizes x[n, K] for the products that follow (thread 0 for a few rows, the whole
  // team split by rows for a prefill); barriers publish it.
  void quantize_for_products(const ThreadTeam& team, const float* x, int64_t n, int64_t K);
  // A failed quantization (an exception, or NaN/Inf rows) stops the remaining products.
  bool stopped() const;
  // This thread's share of products that read the same activations (exact, or int8 from xq_).
  void products(const ThreadTeam& team, const MatmulParams* ps, int count);
  void product_rows(const MatmulParams& p, int64_t n_begin, int64_t n_end);

  LlamaConfig config_;
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
  // every layer's Q and K.
  std::vector<float> rope_cos_, rope_sin_;
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
