// pyrt._core.Decoder (alias LlamaDecoder): the config dict into a DecoderConfig, array conversion
// and GIL release around the C++ decoder, nothing else.
#include <pybind11/stl.h>

#include <memory>

#include "bindings/bindings.h"
#include "bindings/weight_table.h"
#include "models/causal_decoder.h"
#include "pyrt/matmul.h"

namespace pyrt::bindings {

void register_decoder_ops(py::module_& m);  // register_decoder_ops.cc: the op test hooks

namespace {

// Holds the Python arrays whose bytes the decoder's WeightViews point into.
struct PyDecoder {
  std::vector<py::object> keep_alive;
  std::unique_ptr<models::Decoder> decoder;
};

template <typename T>
T optional(const py::dict& config, const char* key, T fallback) {
  return config.contains(key) ? config[key].cast<T>() : fallback;
}

// config: the keys of pyrt/model_config.py decoder_config (the family keys are optional, their
// defaults are Llama's); weights: {name: (uint8 array, format, block, shape)}
std::unique_ptr<PyDecoder> make_decoder(const py::dict& config, const py::dict& weights) {
  auto self = std::make_unique<PyDecoder>();
  models::DecoderConfig c;
  c.n_layers = config["n_layers"].cast<int64_t>();
  c.d_model = config["d_model"].cast<int64_t>();
  c.n_heads = config["n_heads"].cast<int64_t>();
  c.n_kv_heads = config["n_kv_heads"].cast<int64_t>();
  c.head_dim = config["head_dim"].cast<int64_t>();
  c.d_ffn = config["d_ffn"].cast<int64_t>();
  c.vocab = config["vocab"].cast<int64_t>();
  c.max_context = config["max_context"].cast<int64_t>();
  c.rms_eps = config["rms_eps"].cast<float>();
  c.rope_theta = config["rope_theta"].cast<float>();
  c.kv_f32 = optional(config, "kv_f32", false);
  c.family = optional<std::string>(config, "family", c.family);
  c.norm_offset = optional(config, "norm_offset", c.norm_offset);
  c.rope_theta_local = optional(config, "rope_theta_local", c.rope_theta_local);
  const std::string layout = optional<std::string>(config, "rope_layout", "norm");
  PYRT_CHECK(layout == "norm" || layout == "neox", Unsupported, "rope_layout '", layout, "': 'norm' or 'neox'");
  c.rope_layout = layout == "neox" ? models::RopeLayout::neox : models::RopeLayout::norm;
  const std::string ffn = optional<std::string>(config, "ffn", "swiglu");
  PYRT_CHECK(ffn == "swiglu" || ffn == "gelu_tanh", Unsupported, "ffn '", ffn, "': 'swiglu' or 'gelu_tanh'");
  c.ffn = ffn == "gelu_tanh" ? models::FfnActivation::gelu_tanh : models::FfnActivation::swiglu;
  c.qkv_bias = optional(config, "qkv_bias", false);
  c.qk_norm = optional(config, "qk_norm", false);
  c.post_norms = optional(config, "post_norms", false);
  c.sliding_window = optional<int64_t>(config, "sliding_window", 0);
  for (bool local : optional(config, "local_layers", std::vector<bool>{})) c.local_layers.push_back(local ? 1 : 0);
  c.embedding_scale = optional(config, "embedding_scale", c.embedding_scale);
  c.attention_scale = optional(config, "attention_scale", c.attention_scale);
  c.attn_softcap = optional(config, "attn_softcap", c.attn_softcap);
  c.final_softcap = optional(config, "final_softcap", c.final_softcap);
  if (config.contains("activations")) c.activations = activation_precision_from_name(config["activations"].cast<std::string>());
  self->decoder = std::make_unique<models::Decoder>(c, weight_table(weights, &self->keep_alive, optional(config, "repack", false)));
  return self;
}

py::array_t<float> forward(PyDecoder& self, const py::array& tokens, bool all_logits) {
  require_array(tokens, "tokens", 'i', 4);
  const int64_t n = tokens.size();
  const int64_t vocab = self.decoder->config().vocab;
  py::array_t<float> logits = all_logits ? py::array_t<float>({n, vocab}) : py::array_t<float>({vocab});
  const int32_t* ids = static_cast<const int32_t*>(tokens.data());
  float* out = logits.mutable_data();
  {
    py::gil_scoped_release release;
    self.decoder->forward(ids, n, all_logits, out);
  }
  return logits;
}

// tokens: int32, the sequences' new tokens concatenated; counts: int64 [seqs]; caches: one per
// sequence. Returns the last token's logits of each sequence, [seqs, vocab].
py::array_t<float> forward_batch(PyDecoder& self, const py::array& tokens, const py::array& counts,
                                 const std::vector<models::KvCache*>& caches) {
  require_array(tokens, "tokens", 'i', 4);
  require_array(counts, "counts", 'i', 8);
  const int64_t seqs = counts.size();
  PYRT_CHECK(int64_t(caches.size()) == seqs, Shape, "forward_batch got ", caches.size(), " caches for ", seqs,
             " sequences");
  const int64_t* n = static_cast<const int64_t*>(counts.data());
  int64_t total = 0;
  for (int64_t s = 0; s < seqs; ++s) {
    PYRT_CHECK(n[s] > 0 && n[s] <= tokens.size(), Shape, "count ", n[s], " of sequence ", s, " is not in [1, ",
               tokens.size(), "]");
    total += n[s];  // each term <= tokens.size(): no overflow
  }
  PYRT_CHECK(total == tokens.size(), Shape, "counts add up to ", total, " tokens, tokens holds ", tokens.size());
  py::array_t<float> logits({seqs, self.decoder->config().vocab});
  const int32_t* ids = static_cast<const int32_t*>(tokens.data());
  float* out = logits.mutable_data();
  {
    py::gil_scoped_release release;
    self.decoder->forward_batch(ids, n, caches.data(), seqs, out);
  }
  return logits;
}

}  // namespace

void register_llama(py::module_& m) {
  // One sequence's KV cache (Decoder.new_cache); its methods run under the decoder's lock.
  py::class_<models::KvCache>(m, "KvCache")
      .def_property_readonly("position", &models::KvCache::position)
      .def_property_readonly("capacity", &models::KvCache::capacity);

  py::class_<PyDecoder>(m, "Decoder")
      .def(py::init(&make_decoder), py::arg("config"), py::arg("weights"))
      .def("forward", &forward, py::arg("tokens"), py::arg("all_logits") = false)
      .def("reset", [](PyDecoder& s) { s.decoder->reset(); })
      .def("truncate", [](PyDecoder& s, int64_t pos) { s.decoder->truncate(pos); }, py::arg("pos"))
      .def_property_readonly("position", [](const PyDecoder& s) { return s.decoder->position(); })
      .def(
          "new_cache",
          [](PyDecoder& s, int64_t capacity) {
            const models::KvCacheShape shape = s.decoder->cache_shape(capacity);
            py::gil_scoped_release release;  // zeroing a long cache takes a while
            return std::make_unique<models::KvCache>(shape);
          },
          py::arg("capacity"))
      .def("forward_batch", &forward_batch, py::arg("tokens"), py::arg("counts"), py::arg("caches"))
      .def("reset_cache", [](PyDecoder& s, models::KvCache& c) { s.decoder->reset(c); }, py::arg("cache"))
      .def(
          "truncate_cache", [](PyDecoder& s, models::KvCache& c, int64_t pos) { s.decoder->truncate(c, pos); },
          py::arg("cache"), py::arg("pos"))
      .def_property_readonly("max_context", [](const PyDecoder& s) { return s.decoder->config().max_context; })
      .def_property_readonly("repacked_bytes", [](const PyDecoder& s) { return s.decoder->weights().repacked_bytes(); });
  m.attr("LlamaDecoder") = m.attr("Decoder");  // the name before the families shared one decoder
  register_decoder_ops(m);
}

}  // namespace pyrt::bindings
