// The one place where C++ errors become Python exceptions (classes defined in pyrt/errors.py).
#include "bindings/bindings.h"

namespace pyrt::bindings {
namespace {

const char* python_class(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Shape: return "ShapeError";
    case ErrorKind::Dtype: return "DtypeError";
    case ErrorKind::Range: return "RangeError";
    case ErrorKind::Format: return "FileFormatError";
    case ErrorKind::Truncated: return "TruncatedFileError";
    case ErrorKind::Checksum: return "ChecksumError";
    case ErrorKind::Version: return "VersionError";
    case ErrorKind::Io: return "FileIOError";
    case ErrorKind::Device: return "DeviceError";
    case ErrorKind::Unsupported: return "UnsupportedError";
    case ErrorKind::Internal: break;
  }
  return "InternalError";
}

}  // namespace

void register_errors(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      py::object cls;
      try {
        cls = py::module_::import("pyrt.errors").attr(python_class(e.kind()));
      } catch (py::error_already_set&) {
        PyErr_Clear();
        PyErr_SetString(PyExc_RuntimeError, e.what());
        return;
      }
      PyErr_SetString(cls.ptr(), e.what());
    }
  });
}

}  // namespace pyrt::bindings
