// The one Python shape of a model's weights: {name: (uint8 array, format, block, shape)}, as
// pyrt/encoder.py and pyrt/llm.py build it, turned into the models' WeightTable.
#pragma once
#include <vector>

#include "bindings/bindings.h"
#include "models/weights.h"

namespace pyrt::bindings {

// Appends every array whose bytes the table points to to *keep_alive, so the weights outlive the
// Python dict they came from. Dtype errors for a malformed entry. repack: WeightTable::set_repack.
models::WeightTable weight_table(const py::dict& tensors, std::vector<py::object>* keep_alive, bool repack = false);

}  // namespace pyrt::bindings
