#include "bindings/bindings.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "pyrt native core (private: use the pyrt package)";
  pyrt::bindings::register_errors(m);
  pyrt::bindings::register_runtime(m);
  pyrt::bindings::register_formats(m);
  pyrt::bindings::register_ops(m);
  pyrt::bindings::register_file(m);
  pyrt::bindings::register_cuda(m);
  pyrt::bindings::register_models(m);
  pyrt::bindings::register_llama(m);
  pyrt::bindings::register_vector_math(m);
  pyrt::bindings::register_calibration(m);
}
