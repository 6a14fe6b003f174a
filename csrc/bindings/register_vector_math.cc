// Private test hook over cpu/vector_math.h: runs one function of the active ISA's table on arrays.
#include <string>

#include "bindings/bindings.h"
#include "cpu/vector_math.h"

namespace pyrt::bindings {
namespace {

const float* float_data(const py::object& a, const char* name, int64_t n) {
  PYRT_CHECK(!a.is_none(), Shape, name, " is required by this function");
  py::array arr = a.cast<py::array>();
  require_array(arr, name, 'f', 4);
  PYRT_CHECK(arr.size() == n, Shape, name, " has ", arr.size(), " elements, expected ", n);
  return static_cast<const float*>(arr.data());
}

// out is written by the kernel: dot writes out[0]; the in-place functions (softmax, layer_norm,
// axpy) first copy x (axpy: y) into out and then work on out.
void vector_math(const std::string& name, const py::array& x, py::array& out, const py::object& y,
                 const py::object& weight, const py::object& bias, double scalar, int64_t valid) {
  require_array(x, "x", 'f', 4);
  require_array(out, "out", 'f', 4);
  PYRT_CHECK(out.writeable(), Shape, "out must be writable");
  const int64_t n = x.size();
  const float* xp = static_cast<const float*>(x.data());
  float* op = static_cast<float*>(out.mutable_data());
  const cpu::VectorMath& vm = cpu::vector_math();
  PYRT_CHECK(out.size() == (name == "dot" ? 1 : n), Shape, "out has ", out.size(), " elements");
  const float s = float(scalar);
  if (name == "exp" || name == "gelu_erf" || name == "silu") {
    auto fn = name == "exp" ? vm.exp : name == "silu" ? vm.silu : vm.gelu_erf;
    py::gil_scoped_release release;
    fn(xp, op, n);
  } else if (name == "silu_mul" || name == "dot" || name == "axpy") {
    const float* yp = float_data(y, "y", n);
    py::gil_scoped_release release;
    if (name == "silu_mul") vm.silu_mul(xp, yp, op, n);
    if (name == "dot") op[0] = vm.dot(xp, yp, n);
    if (name == "axpy") {
      for (int64_t i = 0; i < n; ++i) op[i] = yp[i];
      vm.axpy(s, xp, op, n);
    }
  } else if (name == "softmax") {
    PYRT_CHECK(valid >= 0 && valid <= n, Range, "valid=", valid, " is outside [0, ", n, "]");
    py::gil_scoped_release release;
    for (int64_t i = 0; i < n; ++i) op[i] = xp[i];
    vm.softmax(op, n, valid, s);
  } else if (name == "layer_norm") {
    const float* g = float_data(weight, "weight", n);
    const float* b = float_data(bias, "bias", n);
    py::gil_scoped_release release;
    for (int64_t i = 0; i < n; ++i) op[i] = xp[i];
    vm.layer_norm(op, n, g, b, s);
  } else if (name == "rms_norm") {
    const float* w = float_data(weight, "weight", n);
    py::gil_scoped_release release;
    vm.rms_norm(xp, w, n, s, op);
  } else {
    PYRT_CHECK(false, Unsupported, "unknown vector math function '", name, "'");
  }
}

}  // namespace

void register_vector_math(py::module_& m) {
  m.def("_vector_math", &vector_math, py::arg("name"), py::arg("x"), py::arg("out"), py::arg("y") = py::none(),
        py::arg("weight") = py::none(), py::arg("bias") = py::none(), py::arg("scalar") = 1.0,
        py::arg("valid") = 0);
}

}  // namespace pyrt::bindings
