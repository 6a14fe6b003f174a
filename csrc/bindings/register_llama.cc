// pyrt._core.LlamaDecoder: array conversion and GIL release around the C++ decoder, nothing else.
#include <pybind11/stl.h>

#include <memory>

#include "bindings/bindings.h"
#include "bindings/weight_table.h"
#include "models/llama_decoder.h"
#include "pyrt/matmul.h"

namespace pyrt::bindings {
namespace {

// Holds the Python arrays whose bytes the decoder's WeightViews point into.
struct PyLlamaDecoder {
  std::vector<py::object> keep_alive;
  std::unique_ptr<models::LlamaDecoder> decoder;
};

// weights: {name: (uint8 array, format, block, shape)}
std::unique_ptr<PyLlamaDecoder> make_decoder(const py::dict& config, const py::dict& weights) {
  auto self = std::make_unique<PyLlamaDecoder>();
  models::LlamaConfig c;
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
  c.kv_f32 = config.contains("kv_f32") && config["kv_f32"].cast<bool>();
  if (config.contains("activations")) c.activations = activation_precision_from_name(config["activations"].cast<std::string>());
  self->decoder = std::make_unique<models::LlamaDecoder>(c, weight_table(weights, &self->keep_alive));
  return self;
}

py::array_t<float> forward(PyLlamaDecoder& self, const py::array& tokens, bool all_logits) {
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
py::array_t<float> forward_batch(PyLlamaDecoder& self, const py::array& tokens, const py::array& counts,
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
  // One sequence's KV cache (LlamaDecoder.new_cache); its methods run under the decoder's lock.
  py::class_<models::KvCache>(m, "KvCache")
      .def_property_readonly("position", &models::KvCache::position)
      .def_property_readonly("capacity", &models::KvCache::capacity);

  py::class_<PyLlamaDecoder>(m, "LlamaDecoder")
      .def(py::init(&make_decoder), py::arg("config"), py::arg("weights"))
      .def("forward", &forward, py::arg("tokens"), py::arg("all_logits") = false)
      .def("reset", [](PyLlamaDecoder& s) { s.decoder->reset(); })
      .def("truncate", [](PyLlamaDecoder& s, int64_t pos) { s.decoder->truncate(pos); }, py::arg("pos"))
      .def_property_readonly("position", [](const PyLlamaDecoder& s) { return s.decoder->position(); })
      .def(
          "new_cache",
          [](PyLlamaDecoder& s, int64_t capacity) {
            const models::KvCacheShape shape = s.decoder->cache_shape(capacity);
            py::gil_scoped_release release;  // zeroing a long cache takes a while
            return std::make_unique<models::KvCache>(shape);
          },
          py::arg("capacity"))
      .def("forward_batch", &forward_batch, py::arg("tokens"), py::arg("counts"), py::arg("caches"))
      .def("reset_cache", [](PyLlamaDecoder& s, models::KvCache& c) { s.decoder->reset(c); }, py::arg("cache"))
      .def(
          "truncate_cache", [](PyLlamaDecoder& s, models::KvCache& c, int64_t pos) { s.decoder->truncate(c, pos); },
          py::arg("cache"), py::arg("pos"))
      .def_property_readonly("max_context", [](const PyLlamaDecoder& s) { return s.decoder->config().max_context; });
}

}  // namespace pyrt::bindings
