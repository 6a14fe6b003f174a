#include "bindings/weight_table.h"

#include <pybind11/stl.h>

#include <string>

namespace pyrt::bindings {

models::WeightTable weight_table(const py::dict& tensors, std::vector<py::object>* keep_alive, bool repack) {
  models::WeightTable table;
  table.set_repack(repack);
  for (const auto& item : tensors) {
    const std::string name = item.first.cast<std::string>();
    const py::tuple entry = item.second.cast<py::tuple>();
    PYRT_CHECK(entry.size() == 4, Dtype, "tensor '", name, "' must be (bytes, format, block, shape)");
    py::array data = entry[0].cast<py::array>();
    require_array(data, name.c_str(), 'u', 1);
    models::TensorRef ref;
    ref.format = format_from_name(entry[1].cast<std::string>());
    ref.block = entry[2].cast<int>();
    ref.shape = entry[3].cast<std::vector<int64_t>>();
    ref.data = static_cast<const uint8_t*>(data.data());
    ref.nbytes = data.nbytes();
    table.add(name, ref);
    keep_alive->push_back(data);
  }
  return table;
}

}  // namespace pyrt::bindings
