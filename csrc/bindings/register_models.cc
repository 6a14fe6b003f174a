// Model forward passes exposed to Python. pyrt/encoder.py builds the arguments; this file only
// converts them and keeps the weight buffers alive for the native encoder's lifetime.
#include <memory>

#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "bindings/weight_table.h"
#include "models/encoder.h"

namespace pyrt::bindings {
namespace {

int64_t config_int(const py::dict& config, const char* key) {
  PYRT_CHECK(config.contains(key), Format, "encoder config has no '", key, "'");
  return config[key].cast<int64_t>();
}

// The fields a family may leave out: their defaults are BERT's.
int64_t config_int_or(const py::dict& config, const char* key, int64_t fallback) {
  return config.contains(key) ? config[key].cast<int64_t>() : fallback;
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
class EncoderHandle {
 public:
  // config: the EncoderConfig fields by name ("family": "bert" or "mpnet", BERT's defaults for the
  // position and relative-bias fields); tensors: name -> (uint8 bytes, format, block, shape).
  // activations: "exact" or "int8" (docs/int8.md).
  EncoderHandle(const py::dict& config, const py::dict& tensors, const std::string& activations) {
    const ActivationPrecision precision = activation_precision_from_name(activations);
    models::EncoderConfig c;
    c.family = models::encoder_family_from_name(config.contains("family") ? config["family"].cast<std::string>()
                                                                          : std::string("bert"));
    c.vocab_size = config_int(config, "vocab_size");
    c.hidden_size = config_int(config, "hidden_size");
    c.num_layers = config_int(config, "num_layers");
    c.num_heads = config_int(config, "num_heads");
    c.intermediate_size = config_int(config, "intermediate_size");
    c.max_positions = config_int(config, "max_positions");
    c.type_vocab_size = config_int(config, "type_vocab_size");
    PYRT_CHECK(config.contains("layer_norm_eps"), Format, "encoder config has no 'layer_norm_eps'");
    c.layer_norm_eps = config["layer_norm_eps"].cast<float>();
    c.position_offset = config_int_or(config, "position_offset", 0);
    c.positions_skip_padding = config.contains("positions_skip_padding") && config["positions_skip_padding"].cast<bool>();
    c.relative_attention_buckets = config_int_or(config, "relative_attention_buckets", 0);
    c.relative_attention_max_distance = config_int_or(config, "relative_attention_max_distance", 128);

    encoder_ = std::make_unique<models::Encoder>(c, weight_table(tensors, &keep_alive_, config.contains("repack") && config["repack"].cast<bool>()), precision);
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
  int64_t repacked_bytes() const { return encoder_->weights().repacked_bytes(); }
  std::string activations() const { return activation_precision_name(encoder_->activations()); }

 private:
  std::vector<py::object> keep_alive_;
  std::unique_ptr<models::Encoder> encoder_;
};

}  // namespace

void register_models(py::module_& m) {
  py::class_<EncoderHandle>(m, "Encoder")
      .def(py::init<const py::dict&, const py::dict&, const std::string&>(), py::arg("config"), py::arg("weights"),
           py::arg("activations") = "exact")
      .def("encode", &EncoderHandle::encode, py::arg("input_ids"), py::arg("token_type_ids"),
           py::arg("attention_mask"), py::arg("pooling"), py::arg("normalize"))
      .def_property_readonly("hidden_size", &EncoderHandle::hidden_size)
      .def_property_readonly("max_positions", &EncoderHandle::max_positions)
      .def_property_readonly("activations", &EncoderHandle::activations)
      .def_property_readonly("repacked_bytes", &EncoderHandle::repacked_bytes);
  m.attr("BertEncoder") = m.attr("Encoder");  // its name before MPNet shared it
}

}  // namespace pyrt::bindings
