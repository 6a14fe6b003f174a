// Private test hooks: the row-wise ops of pyrt/ops.h (which run the active ISA's vector math) on
// arrays, and the packed self-attention of the encoder.
#include <string>

#include "bindings/bindings.h"
#include "pyrt/ops.h"

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
  PYRT_CHECK(out.size() == (name == "dot" ? 1 : n), Shape, "out has ", out.size(), " elements");
  const float s = float(scalar);
  if (name == "exp" || name == "gelu_erf" || name == "silu") {
    auto fn = name == "exp" ? exponential : name == "silu" ? silu : gelu_erf;
    py::gil_scoped_release release;
    fn(xp, op, n, Device::cpu);
  } else if (name == "silu_mul" || name == "dot" || name == "axpy") {
    const float* yp = float_data(y, "y", n);
    py::gil_scoped_release release;
    if (name == "silu_mul") swiglu(xp, yp, op, n);
    if (name == "dot") op[0] = dot(xp, yp, n);
    if (name == "axpy") {
      for (int64_t i = 0; i < n; ++i) op[i] = yp[i];
      axpy(s, xp, op, n);
    }
  } else if (name == "softmax") {
    py::gil_scoped_release release;
    for (int64_t i = 0; i < n; ++i) op[i] = xp[i];
    causal_softmax(op, 1, n, valid, s);  // one row: its first `valid` entries
  } else if (name == "layer_norm") {
    const float* g = float_data(weight, "weight", n);
    const float* b = float_data(bias, "bias", n);
    py::gil_scoped_release release;
    for (int64_t i = 0; i < n; ++i) op[i] = xp[i];
    layer_norm(op, 1, n, g, b, s);
  } else if (name == "rms_norm") {
    const float* w = float_data(weight, "weight", n);
    py::gil_scoped_release release;
    rms_norm(xp, w, 1, n, s, op);
  } else {
    PYRT_CHECK(false, Unsupported, "unknown vector math function '", name, "'");
  }
}

// ctx = packed_self_attention(q, k, v) for sequences at rows offsets[s]..offsets[s + 1].
void packed_attention(const py::array& q, const py::array& k, const py::array& v, const py::array& offsets,
                      int64_t num_heads, py::array& ctx, const py::object& bias) {
  require_array(q, "q", 'f', 4);
  require_array(k, "k", 'f', 4);
  require_array(v, "v", 'f', 4);
  require_array(ctx, "ctx", 'f', 4);
  require_array(offsets, "offsets", 'i', 8);
  PYRT_CHECK(q.ndim() == 2 && k.size() == q.size() && v.size() == q.size() && ctx.size() == q.size() &&
                 num_heads > 0 && q.shape(1) % num_heads == 0,
             Shape, "q, k, v and ctx must be [T, num_heads * head_dim] arrays of one shape");
  const int64_t sequences = offsets.size() - 1;
  const int64_t* off = static_cast<const int64_t*>(offsets.data());
  PYRT_CHECK(sequences >= 0 && off[sequences] == q.shape(0), Shape, "offsets must run from 0 to T");
  const float* bias_data = nullptr;
  int64_t bias_len = 0;
  if (!bias.is_none()) {
    py::array b = bias.cast<py::array>();
    require_array(b, "bias", 'f', 4);
    PYRT_CHECK(b.ndim() == 3 && b.shape(0) == num_heads && b.shape(1) == b.shape(2), Shape,
               "bias must be [num_heads, P, P]");
    bias_data = static_cast<const float*>(b.data());
    bias_len = b.shape(1);
  }
  py::gil_scoped_release release;
  packed_self_attention(static_cast<const float*>(q.data()), static_cast<const float*>(k.data()),
                        static_cast<const float*>(v.data()), off, sequences, num_heads, q.shape(1) / num_heads,
                        bias_data, bias_len, static_cast<float*>(ctx.mutable_data()));
}

// table: float32 [num_buckets, num_heads]; out: float32 [num_heads, length, length].
void relative_bias(const py::array& table, int64_t max_distance, bool bidirectional, py::array& out) {
  require_array(table, "table", 'f', 4);
  require_array(out, "out", 'f', 4);
  PYRT_CHECK(table.ndim() == 2 && out.ndim() == 3 && out.shape(0) == table.shape(1) && out.shape(1) == out.shape(2),
             Shape, "table must be [buckets, heads] and out [heads, P, P]");
  py::gil_scoped_release release;
  relative_position_bias(static_cast<const float*>(table.data()), table.shape(0), table.shape(1), max_distance,
                         bidirectional, out.shape(1), static_cast<float*>(out.mutable_data()));
}

}  // namespace

void register_vector_math(py::module_& m) {
  m.def("_vector_math", &vector_math, py::arg("name"), py::arg("x"), py::arg("out"), py::arg("y") = py::none(),
        py::arg("weight") = py::none(), py::arg("bias") = py::none(), py::arg("scalar") = 1.0,
        py::arg("valid") = 0);
  m.def("_packed_attention", &packed_attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("offsets"),
        py::arg("num_heads"), py::arg("ctx"), py::arg("bias") = py::none());
  m.def("_relative_position_bias", &relative_bias, py::arg("table"), py::arg("max_distance"),
        py::arg("bidirectional"), py::arg("out"));
  m.def("_relative_position_bucket", &relative_position_bucket, py::arg("relative"), py::arg("num_buckets"),
        py::arg("max_distance"), py::arg("bidirectional"));
}

}  // namespace pyrt::bindings
