#include "bindings/bindings.h"
#include "pyrt/matmul.h"

namespace pyrt::bindings {
namespace {

// out[M, N] = x[M, K] @ W[N, K]^T + bias. Shapes were checked in pyrt/ops.py; the byte sizes are
// checked again here so a wrong call can never read or write out of bounds.
void matmul(const py::array& x, const py::array& w_data, const std::string& format, int block,
            int64_t N, int64_t K, const py::object& bias, py::array& out,
            const std::string& activations) {
  MatmulParams p;
  p.activations = activation_precision_from_name(activations);
  if (x.dtype().kind() == 'f' && x.itemsize() == 2) {
    p.x_type = ActivationType::f16;
  } else {
    require_array(x, "x", 'f', 4);
  }
  PYRT_CHECK(is_c_contiguous(x), Dtype, "x must be C-contiguous (use np.ascontiguousarray)");
  require_array(w_data, "weight data", 'u', 1);
  require_array(out, "out", 'f', 4);
  PYRT_CHECK(K > 0 && N >= 0 && x.size() % K == 0, Shape, "x has ", x.size(), " elements, not a multiple of K=", K);
  p.M = x.size() / K;
  p.x = x.data();
  p.w.format = format_from_name(format);
  p.w.block = effective_block(p.w.format, block);
  p.w.rows = N;
  p.w.cols = K;
  p.w.row_stride = row_bytes(p.w.format, p.w.block, K);
  PYRT_CHECK(w_data.nbytes() == N * p.w.row_stride, Shape, "weight buffer has ", w_data.nbytes(),
             " bytes, [", N, ", ", K, "] ", format, " needs ", N * p.w.row_stride);
  p.w.data = static_cast<const uint8_t*>(w_data.data());
  PYRT_CHECK(out.size() == p.M * N && out.writeable(), Shape, "out must be a writable float32 array of ",
             p.M * N, " elements");
  p.y = static_cast<float*>(out.mutable_data());
  if (!bias.is_none()) {
    py::array b = bias.cast<py::array>();
    require_array(b, "bias", 'f', 4);
    PYRT_CHECK(b.size() == N, Shape, "bias has ", b.size(), " elements, expected N=", N);
    p.bias = static_cast<const float*>(b.data());
  }
  py::gil_scoped_release release;
  pyrt::matmul(p);
}

}  // namespace

void register_ops(py::module_& m) {
  m.def("matmul", &matmul, py::arg("x"), py::arg("w_data"), py::arg("format"), py::arg("block"),
        py::arg("N"), py::arg("K"), py::arg("bias"), py::arg("out"),
        py::arg("activations") = "exact");
}

}  // namespace pyrt::bindings
