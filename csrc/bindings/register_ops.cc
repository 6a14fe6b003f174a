#include <memory>
#include <vector>

#include "bindings/bindings.h"
#include "pyrt/device.h"
#include "pyrt/matmul.h"
#include "pyrt/repack.h"

namespace pyrt::bindings {
namespace {

// _core.Weights: a WeightView on either device plus the owner of its bytes. pyrt.Tensor makes one
// on first use of host bytes (the uint8 array, possibly a read-only memory map, is referenced,
// never copied) and one per Tensor.to("cuda") (the planes that gpu::upload_weights built).
class Weights {
 public:
  Weights(const py::array& data, const std::string& format, int block, int64_t rows, int64_t cols) {
    require_array(data, "weight data", 'u', 1);
    view_.format = format_from_name(format);
    view_.block = effective_block(view_.format, block);
    PYRT_CHECK(rows >= 0 && cols >= 0, Shape, "invalid weight shape [", rows, ", ", cols, "]");
    view_.rows = rows;
    view_.cols = cols;
    view_.row_stride = row_bytes(view_.format, view_.block, cols);
    PYRT_CHECK(data.nbytes() == rows * view_.row_stride, Shape, "weight buffer has ", data.nbytes(), " bytes, [",
               rows, ", ", cols, "] ", format, " needs ", rows * view_.row_stride);
    view_.data = static_cast<const uint8_t*>(data.data());
    host_ = data;
  }

  const WeightView& view() const { return view_; }

  // The same weights plus a repacked copy for the M=1 kernels (pyrt/repack.h) where the active
  // ISA has a kernel that reads one; otherwise the same weights. The copy lives as long as the
  // returned object and the ones copied from it.
  Weights repacked() const {
    Weights out = *this;
    const int64_t bytes = repacked_bytes(view_);
    if (bytes == 0) return out;
    out.repacked_ = std::make_shared<std::vector<uint8_t>>(size_t(bytes + 63));
    uint8_t* base = out.repacked_->data();
    uint8_t* aligned = base + (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;
    repack_weights(view_, aligned);
    out.view_.repacked = aligned;
    return out;
  }
  int64_t repacked_nbytes() const { return view_.repacked ? int64_t(repacked_->size()) - 63 : 0; }
  std::string device() const { return device_name(view_.device); }
  int64_t nbytes() const { return device_ ? device_->nbytes() : view_.rows * view_.row_stride; }

  Weights to_device(int index) const {
    PYRT_CHECK(view_.device == Device::cpu, Device, "to_device copies host weights; these are on ", device(), ":",
               view_.device_index);
    auto uploaded = [&] {
      py::gil_scoped_release release;
      return std::make_shared<const gpu::DeviceWeights>(gpu::upload_weights(view_, index));
    }();
    return Weights(std::move(uploaded));
  }

  // The bytes in pyrt's layout: the referenced array on the host, a fresh download from a GPU.
  py::array host_bytes() const {
    if (!device_) return host_;
    py::array_t<uint8_t> host(view_.rows * row_bytes(view_.format, view_.block, view_.cols));
    uint8_t* dst = host.mutable_data();
    {
      py::gil_scoped_release release;
      gpu::download_weights(*device_, dst);
    }
    return std::move(host);
  }

 private:
  explicit Weights(std::shared_ptr<const gpu::DeviceWeights> device)
      : view_(device->view()), device_(std::move(device)) {}

  WeightView view_;
  py::array host_;                                   // Device::cpu
  std::shared_ptr<const gpu::DeviceWeights> device_;  // Device::cuda
  std::shared_ptr<std::vector<uint8_t>> repacked_;   // what view_.repacked points into, or null
};

// Host operands: numpy arrays. Shapes were checked in pyrt/ops.py; the byte sizes are checked
// again here so a wrong call can never read or write out of bounds.
void host_operands(MatmulParams& p, const py::object& x_obj, const py::object& bias, const py::object& out_obj) {
  PYRT_CHECK(py::isinstance<py::array>(x_obj) && py::isinstance<py::array>(out_obj), Device,
             "host weights need numpy x and out");
  const auto x = py::reinterpret_borrow<py::array>(x_obj);
  auto out = py::reinterpret_borrow<py::array>(out_obj);
  const int64_t N = p.w.rows, K = p.w.cols;
  if (x.dtype().kind() == 'f' && x.itemsize() == 2) {
    p.x_type = ActivationType::f16;
  } else {
    require_array(x, "x", 'f', 4);
  }
  PYRT_CHECK(is_c_contiguous(x), Dtype, "x must be C-contiguous (use np.ascontiguousarray)");
  require_array(out, "out", 'f', 4);
  PYRT_CHECK(K > 0 && x.size() % K == 0, Shape, "x has ", x.size(), " elements, not a multiple of K=", K);
  p.M = x.size() / K;
  p.x = x.data();
  PYRT_CHECK(out.size() == p.M * N && out.writeable(), Shape, "out must be a writable float32 array of ",
             p.M * N, " elements");
  p.y = static_cast<float*>(out.mutable_data());
  if (!bias.is_none()) {
    py::array b = bias.cast<py::array>();
    require_array(b, "bias", 'f', 4);
    PYRT_CHECK(b.size() == N, Shape, "bias has ", b.size(), " elements, expected N=", N);
    p.bias = static_cast<const float*>(b.data());
  }
}

// Device operands: pointers (integers) from __cuda_array_interface__, parsed and shape-checked in
// pyrt/device.py; the CUDA backend checks that each is memory of the weights' device.
void device_operands(MatmulParams& p, const py::object& x, int64_t M, const py::object& bias, const py::object& out,
                     uintptr_t stream) {
  PYRT_CHECK(M >= 0, Shape, "device matmul needs the row count M of x, got ", M);
  p.x = reinterpret_cast<const void*>(x.cast<uintptr_t>());
  p.x_type = ActivationType::f16;
  p.M = M;
  p.bias = bias.is_none() ? nullptr : reinterpret_cast<const float*>(bias.cast<uintptr_t>());
  p.y = reinterpret_cast<float*>(out.cast<uintptr_t>());
  p.stream = stream;
}

// out[M, N] = x[M, K] @ W[N, K]^T + bias on the weights' device. One entry point: the operands are
// numpy arrays for host weights, device pointers (with M and a stream) for CUDA weights.
void matmul(const py::object& x, const Weights& w, const py::object& bias, const py::object& out,
            const std::string& activations, int64_t M, uintptr_t stream) {
  MatmulParams p;
  p.w = w.view();
  p.activations = activation_precision_from_name(activations);
  if (p.w.device == Device::cpu) {
    host_operands(p, x, bias, out);
  } else {
    device_operands(p, x, M, bias, out, stream);
  }
  py::gil_scoped_release release;
  pyrt::matmul(p);
}

}  // namespace

void register_ops(py::module_& m) {
  py::class_<Weights>(m, "Weights")
      .def(py::init<const py::array&, const std::string&, int, int64_t, int64_t>(), py::arg("data"),
           py::arg("format"), py::arg("block"), py::arg("rows"), py::arg("cols"))
      .def_property_readonly("format", [](const Weights& w) { return std::string(format_traits(w.view().format).name); })
      .def_property_readonly("block", [](const Weights& w) { return w.view().block; })
      .def_property_readonly("rows", [](const Weights& w) { return w.view().rows; })
      .def_property_readonly("cols", [](const Weights& w) { return w.view().cols; })
      .def_property_readonly("device", &Weights::device)
      .def_property_readonly("device_index", [](const Weights& w) { return w.view().device_index; })
      .def_property_readonly("nbytes", &Weights::nbytes)
      .def("to_device", &Weights::to_device, py::arg("device"))
      .def("host_bytes", &Weights::host_bytes)
      .def("repacked", &Weights::repacked)
      .def_property_readonly("repacked_nbytes", &Weights::repacked_nbytes)
      // The repacked copy's bytes in place (for tests and inspection; writing them changes what
      // the M=1 kernel reads), or an empty array.
      .def("repacked_view", [](const py::object& self) {
        const Weights& w = self.cast<const Weights&>();
        const int64_t n = w.repacked_nbytes();
        return py::array_t<uint8_t>({n}, {int64_t(1)}, n ? w.view().repacked : nullptr, self);
      });
  m.def("matmul", &matmul, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("out"),
        py::arg("activations") = "exact", py::arg("M") = -1, py::arg("stream") = 0);
}

}  // namespace pyrt::bindings
