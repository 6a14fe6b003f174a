// Model forward passes exposed to Python. pyrt/encoder.py builds the arguments; this file only
// converts them and keeps the weight buffers alive for the native encoder's lifetime.
#include <memory>

#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "bindings/weight_table.h"
#include "models/bert_encoder.h"

namespace pyrt::bindings {
namespace {

int64_t config_int(const py::dict& config, const char* key) {
  PYRT_CHECK(config.contains(key), Format, "BERT config has no '", key, "'");
  return config[key].cast<int64_t>();
}

const int32_t* optional_tokens(const py::object& obj, const char* name, const py::array& ids) {
  if (obj.is_none()) return nullptr;
  py::array a = obj.cast<py::array>();
  require_array(a, name, 'i', 4);
  PYRT_CHECK(a.ndim() == 2 && a.shape(0) == ids.shape(0) && a.shape(1) == ids.shape(1), Shape, name,
             " must have the shape of input_ids");
  return static_cast<const int32_t*>(a.data());
}

// Holds the native encoder and a reference to every array whose bytes it reads (numpy arrays or
// views of a memory-mapped model file), so the weights outlive any Python-side dict they came from.
class BertEncoderHandle {
 public:
  // config: the BertConfig fields by name; tensors: name -> (uint8 bytes, format, block, shape).
  // activations: "exact" or "int8" (docs/int8.md).
  BertEncoderHandle(const py::dict& config, const py::dict& tensors, const std::string& activations) {
    const ActivationPrecision precision = activation_precision_from_name(activations);
    models::BertConfig c;
    c.vocab_size = config_int(config, "vocab_size");
    c.hidden_size = config_int(config, "hidden_size");
    c.num_layers = config_int(config, "num_layers");
    c.num_heads = config_int(config, "num_heads");
    c.intermediate_size = config_int(config, "intermediate_size");
    c.max_positions = config_int(config, "max_positions");
    c.type_vocab_size = config_int(config, "type_vocab_size");
    PYRT_CHECK(config.contains("layer_norm_eps"), Format, "BERT config has no 'layer_norm_eps'");
    c.layer_norm_eps = config["layer_norm_eps"].cast<float>();

    encoder_ = std::make_unique<models::BertEncoder>(c, weight_table(tensors, &keep_alive_), precision);
  }

  // ids, type_ids, mask: int32 [batch, seq]; returns float32 [batch, hidden].
  py::array_t<float> encode(const py::array& ids, const py::object& type_ids, const py::object& mask,
                            const std::string& pooling, bool normalize) const {
    require_array(ids, "input_ids", 'i', 4);
    PYRT_CHECK(ids.ndim() == 2, Shape, "input_ids must be 2-D [batch, seq], got ", ids.ndim(), " dimensions");
    models::EncoderInput in;
    in.ids = static_cast<const int32_t*>(ids.data());
    in.type_ids = optional_tokens(type_ids, "token_type_ids", ids);
    in.mask = optional_tokens(mask, "attention_mask", ids);
    in.batch = ids.shape(0);
    in.seq_len = ids.shape(1);
    const models::Pooling pool = models::pooling_from_name(pooling);
    py::array_t<float> out({in.batch, encoder_->config().hidden_size});
    float* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      encoder_->encode(in, pool, normalize, dst);
    }
    return out;
  }

  int64_t hidden_size() const { return encoder_->config().hidden_size; }
  int64_t max_positions() const { return encoder_->config().max_positions; }
  std::string activations() const { return activation_precision_name(encoder_->activations()); }

 private:
  std::vector<py::object> keep_alive_;
  std::unique_ptr<models::BertEncoder> encoder_;
};

}  // namespace

void register_models(py::module_& m) {
  py::class_<BertEncoderHandle>(m, "BertEncoder")
      .def(py::init<const py::dict&, const py::dict&, const std::string&>(), py::arg("config"), py::arg("weights"),
           py::arg("activations") = "exact")
      .def("encode", &BertEncoderHandle::encode, py::arg("input_ids"), py::arg("token_type_ids"),
           py::arg("attention_mask"), py::arg("pooling"), py::arg("normalize"))
      .def_property_readonly("hidden_size", &BertEncoderHandle::hidden_size)
      .def_property_readonly("max_positions", &BertEncoderHandle::max_positions)
      .def_property_readonly("activations", &BertEncoderHandle::activations);
}

}  // namespace pyrt::bindings
