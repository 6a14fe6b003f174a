#include "bindings/bindings.h"
#include "pyrt/weight_planes.h"
#include "pyrt/device.h"

namespace pyrt::bindings {
namespace {

using gpu::DeviceBuffer;

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

// A plane as a numpy array, None where the format has none.
py::object plane_or_none(int64_t nbytes) {
  return nbytes > 0 ? py::object(py::array_t<uint8_t>(nbytes)) : py::object(py::none());
}

uint8_t* bytes_of(const py::object& plane) {
  return plane.is_none() ? nullptr : static_cast<uint8_t*>(plane.cast<py::array>().mutable_data());
}

const uint8_t* checked_plane(const py::object& plane, int64_t nbytes, const char* name) {
  if (nbytes == 0) {
    PYRT_CHECK(plane.is_none(), Shape, "this format has no ", name, " plane: pass None");
    return nullptr;
  }
  PYRT_CHECK(!plane.is_none(), Shape, "the ", name, " plane is missing");
  const py::array a = plane.cast<py::array>();
  require_array(a, name, 'u', 1);
  PYRT_CHECK(a.nbytes() == nbytes, Shape, "the ", name, " plane has ", a.nbytes(), " bytes, expected ", nbytes);
  return static_cast<const uint8_t*>(a.data());
}

// Test hooks for the device plane layout (pyrt/weight_planes.h), usable without a GPU.
py::tuple split_planes(const py::array& data, const std::string& format, int block, int64_t rows, int64_t cols) {
  require_array(data, "weight data", 'u', 1);
  WeightView host;
  host.format = format_from_name(format);
  host.block = effective_block(host.format, block);
  host.rows = rows;
  host.cols = cols;
  const gpu::PlaneBytes bytes = gpu::plane_bytes(host.format, host.block, rows, cols);
  host.row_stride = row_bytes(host.format, host.block, cols);
  PYRT_CHECK(data.nbytes() == rows * host.row_stride, Shape, data.nbytes(), " bytes do not hold a [", rows, ", ",
             cols, "] ", format, " matrix (block ", host.block, ")");
  host.data = static_cast<const uint8_t*>(data.data());
  py::object codes = plane_or_none(bytes.codes), scales = plane_or_none(bytes.scales),
             mins = plane_or_none(bytes.mins);
  gpu::split_planes(host, bytes_of(codes), reinterpret_cast<uint16_t*>(bytes_of(scales)),
                    reinterpret_cast<uint16_t*>(bytes_of(mins)));
  return py::make_tuple(codes, scales, mins);
}

py::array_t<uint8_t> join_planes(const py::object& codes, const py::object& scales, const py::object& mins,
                                 const std::string& format, int block, int64_t rows, int64_t cols) {
  const Format f = format_from_name(format);
  const int b = effective_block(f, block);
  const gpu::PlaneBytes bytes = gpu::plane_bytes(f, b, rows, cols);
  const uint8_t* c = checked_plane(codes, bytes.codes, "codes");
  const uint8_t* s = checked_plane(scales, bytes.scales, "scales");
  const uint8_t* m = checked_plane(mins, bytes.mins, "mins");
  py::array_t<uint8_t> out(rows * row_bytes(f, b, cols));
  gpu::join_planes(c, reinterpret_cast<const uint16_t*>(s), reinterpret_cast<const uint16_t*>(m), f, b, rows, cols,
                   out.mutable_data());
  return out;
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
  m.def("cuda_split_planes", &split_planes, py::arg("data"), py::arg("format"), py::arg("block"), py::arg("rows"),
        py::arg("cols"));
  m.def("cuda_join_planes", &join_planes, py::arg("codes"), py::arg("scales"), py::arg("mins"), py::arg("format"),
        py::arg("block"), py::arg("rows"), py::arg("cols"));
}

}  // namespace pyrt::bindings
