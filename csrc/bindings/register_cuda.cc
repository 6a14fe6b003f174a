#include "bindings/bindings.h"
#include "pyrt/device.h"

namespace pyrt::bindings {
namespace {

using gpu::DeviceBuffer;

// None (a null pointer from pybind11) stands for "no such plane".
int64_t plane_bytes(const DeviceBuffer* b) { return b != nullptr ? b->nbytes() : -1; }

// Device pointers arrive as integers from __cuda_array_interface__ (parsed in pyrt/cuda.py); the
// core checks them with cudaPointerGetAttributes. The weight planes are pyrt-owned buffers whose
// sizes are checked here, so a mismatched plane can never be read out of bounds.
void cuda_matmul(uintptr_t x, int64_t M, DeviceBuffer& quants, const DeviceBuffer* scales,
                 const DeviceBuffer* mins, const std::string& format, int block,
                 int64_t N, int64_t K, uintptr_t bias, uintptr_t y, uintptr_t stream) {
  gpu::DeviceMatmulParams p;
  p.w.format = format_from_name(format);
  p.w.block = effective_block(p.w.format, block);
  p.w.rows = N;
  p.w.cols = K;
  PYRT_CHECK(N >= 0 && K > 0 && M >= 0, Shape, "invalid matmul shape: M=", M, " N=", N, " K=", K);
  const bool quantized = format_traits(p.w.format).blocked;
  const int64_t bits = format_traits(p.w.format).bits_per_element;
  PYRT_CHECK(!quantized || K % p.w.block == 0, Shape, "K=", K, " is not a multiple of the block ", p.w.block);
  PYRT_CHECK(quants.nbytes() == N * K * bits / 8, Shape, "weight plane has ", quants.nbytes(), " bytes, [", N,
             ", ", K, "] ", format, " needs ", N * K * bits / 8);
  const int64_t scale_bytes = quantized ? N * (K / p.w.block) * 2 : -1;
  PYRT_CHECK(plane_bytes(scales) == scale_bytes, Shape, "scale plane has ", plane_bytes(scales),
             " bytes, expected ", scale_bytes);
  const int64_t min_bytes = p.w.format == Format::q4a ? scale_bytes : -1;
  PYRT_CHECK(plane_bytes(mins) == min_bytes, Shape, "min plane has ", plane_bytes(mins),
             " bytes, expected ", min_bytes);
  PYRT_CHECK((!scales || scales->device() == quants.device()) && (!mins || mins->device() == quants.device()),
             Device, "weight planes live on different devices");
  p.w.quants = quants.data();
  p.w.scales = scales ? static_cast<const uint16_t*>(scales->data()) : nullptr;
  p.w.mins = mins ? static_cast<const uint16_t*>(mins->data()) : nullptr;
  p.x = reinterpret_cast<const uint16_t*>(x);
  p.M = M;
  p.bias = reinterpret_cast<const float*>(bias);
  p.y = reinterpret_cast<float*>(y);
  p.device = quants.device();
  p.stream = stream;
  py::gil_scoped_release release;
  gpu::matmul(p);
}

void upload(DeviceBuffer& buffer, const py::array& host) {
  require_array(host, "host data", 'u', 1);
  PYRT_CHECK(host.nbytes() == buffer.nbytes(), Shape, "host data has ", host.nbytes(), " bytes, the device buffer ",
             buffer.nbytes());
  const void* src = host.data();
  py::gil_scoped_release release;
  buffer.upload(src);
}

py::array_t<uint8_t> download(const DeviceBuffer& buffer) {
  py::array_t<uint8_t> host(buffer.nbytes());
  void* dst = host.mutable_data();
  {
    py::gil_scoped_release release;
    buffer.download(dst);
  }
  return host;
}

}  // namespace

void register_cuda(py::module_& m) {
  m.def("cuda_device_count", &gpu::device_count);
  m.def("cuda_unavailable_reason", &gpu::unavailable_reason);
  py::class_<DeviceBuffer>(m, "DeviceBuffer")
      .def(py::init<int, int64_t>(), py::arg("device"), py::arg("nbytes"))
      .def_property_readonly("nbytes", &DeviceBuffer::nbytes)
      .def_property_readonly("device", &DeviceBuffer::device)
      .def_property_readonly("ptr", [](const DeviceBuffer& b) { return reinterpret_cast<uintptr_t>(b.data()); })
      .def("upload", &upload, py::arg("host"))
      .def("download", &download);
  m.def("cuda_matmul", &cuda_matmul, py::arg("x"), py::arg("M"), py::arg("quants"), py::arg("scales"),
        py::arg("mins"), py::arg("format"), py::arg("block"), py::arg("N"), py::arg("K"), py::arg("bias"),
        py::arg("out"), py::arg("stream"));
}

}  // namespace pyrt::bindings
