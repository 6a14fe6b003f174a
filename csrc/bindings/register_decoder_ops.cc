// Private test hooks for the decoder families' ops (pyrt/ops_decoder.h): each takes float32 numpy
// arrays, runs the checked op (or the _rows form where only that exists) and returns a new array.
#include <vector>

#include "bindings/bindings.h"
#include "pyrt/ops_decoder.h"

namespace pyrt::bindings {
namespace {

// A float32 copy of `a` (C-contiguous) to compute into; its element count is checked.
py::array_t<float> float_copy(const py::array& a, const char* name, int64_t n) {
  require_array(a, name, 'f', 4);
  PYRT_CHECK(a.size() == n, Shape, name, " has ", a.size(), " elements, expected ", n);
  py::array_t<float> out(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
  std::copy_n(static_cast<const float*>(a.data()), n, out.mutable_data());
  return out;
}

const float* floats(const py::array& a, const char* name, int64_t n) {
  require_array(a, name, 'f', 4);
  PYRT_CHECK(a.size() == n, Shape, name, " has ", a.size(), " elements, expected ", n);
  return static_cast<const float*>(a.data());
}

// A 2-D f32 (float32 array) or f16 (uint16 array of the halves' bits) matrix as a WeightView.
WeightView matrix_view(const py::array& a, const char* name) {
  PYRT_CHECK(a.ndim() == 2, Shape, name, " must be 2-D");
  const bool f16 = a.dtype().kind() == 'u';
  require_array(a, name, f16 ? 'u' : 'f', f16 ? 2 : 4);
  WeightView w;
  w.format = f16 ? Format::f16 : Format::f32;
  w.rows = a.shape(0);
  w.cols = a.shape(1);
  w.data = static_cast<const uint8_t*>(a.data());
  w.row_stride = w.cols * (f16 ? 2 : 4);
  return w;
}

}  // namespace

void register_decoder_ops(py::module_& m) {
  m.def("_rms_norm_offset", [](const py::array& x, const py::array& weight, float offset, float eps) {
    PYRT_CHECK(x.ndim() == 2, Shape, "x must be [rows, n]");
    const int64_t rows = x.shape(0), n = x.shape(1);
    py::array_t<float> y = float_copy(x, "x", rows * n);
    const float* w = floats(weight, "weight", n);
    py::gil_scoped_release release;
    rms_norm_offset(y.data(), w, offset, rows, n, eps, y.mutable_data());
    return y;
  });
  m.def("_gelu_tanh_gated", [](const py::array& gate, const py::array& up) {
    py::array_t<float> y = float_copy(gate, "gate", gate.size());
    const float* u = floats(up, "up", gate.size());
    py::gil_scoped_release release;
    gelu_tanh_gated(y.data(), u, y.mutable_data(), y.size());
    return y;
  });
  m.def("_rope_neox", [](const py::array& x, int64_t n_heads, const py::array& cos_t, const py::array& sin_t) {
    PYRT_CHECK(x.ndim() == 2 && n_heads > 0 && x.shape(1) % n_heads == 0, Shape, "x must be [rows, n_heads * head_dim]");
    const int64_t rows = x.shape(0), head_dim = x.shape(1) / n_heads;
    py::array_t<float> y = float_copy(x, "x", x.size());
    const float* c = floats(cos_t, "cos", rows * (head_dim / 2));
    const float* s = floats(sin_t, "sin", rows * (head_dim / 2));
    py::gil_scoped_release release;
    rope_neox(y.mutable_data(), rows, n_heads, head_dim, c, s);
    return y;
  });
  m.def("_bias_add", [](const py::array& x, const py::array& bias) {
    PYRT_CHECK(x.ndim() == 2, Shape, "x must be [rows, n]");
    py::array_t<float> y = float_copy(x, "x", x.size());
    const float* b = floats(bias, "bias", x.shape(1));
    py::gil_scoped_release release;
    bias_add(y.mutable_data(), b, x.shape(0), x.shape(1));
    return y;
  });
  m.def("_softcap", [](const py::array& x, float cap) {
    py::array_t<float> y = float_copy(x, "x", x.size());
    py::gil_scoped_release release;
    softcap(y.mutable_data(), y.size(), cap);
    return y;
  });
  // keys [capacity, head_dim] and values_t [head_dim, capacity] as the KV cache stores them (f32,
  // or f16 bits as uint16); the first `end` positions are valid.
  m.def("_windowed_head_attention", [](const py::array& q, const py::array& keys, const py::array& values_t,
                                       int64_t end, int64_t first_valid, float scale, int64_t window,
                                       float softcap) {
    PYRT_CHECK(q.ndim() == 2, Shape, "q must be [rows, head_dim]");
    const int64_t rows = q.shape(0), hd = q.shape(1);
    CachedHeadAttention a;
    a.keys = matrix_view(keys, "keys");
    a.values_t = matrix_view(values_t, "values_t");
    PYRT_CHECK(a.keys.cols == hd && a.values_t.rows == hd && a.keys.format == a.values_t.format &&
                   a.values_t.cols == a.keys.rows && end >= 1 && end <= a.keys.rows && first_valid >= 1 &&
                   first_valid + rows - 1 == end && window >= 0 && softcap >= 0,
               Shape, "q, keys, values_t, end, first_valid do not describe one head's chunk");
    a.keys.rows = end;
    a.values_t.cols = end;
    a.q = floats(q, "q", rows * hd);
    a.q_stride = hd;
    a.rows = rows;
    a.first_valid = first_valid;
    a.scale = scale;
    py::array_t<float> out({rows, hd});
    a.out = out.mutable_data();
    a.out_stride = hd;
    std::vector<float> scratch(size_t(cached_head_attention_scratch(rows, hd, end)));
    py::gil_scoped_release release;
    windowed_head_attention_rows(a, window, softcap, scratch.data());
    return out;
  });
}

}  // namespace pyrt::bindings
