// One error type for the whole core; the kind selects the Python exception class
// (mapped once, in csrc/bindings/register_errors.cc).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace pyrt {

enum class ErrorKind {
  Internal,     // a bug in pyrt: message carries file:line
  Shape,        // pyrt.ShapeError (ValueError)
  Dtype,        // pyrt.DtypeError (ValueError)
  Range,        // pyrt.RangeError (ValueError): NaN/Inf, FP16 overflow
  Format,       // pyrt.FileFormatError (ValueError): corrupt or unreadable model file
  Truncated,    // pyrt.TruncatedFileError
  Checksum,     // pyrt.ChecksumError
  Version,      // pyrt.VersionError
  Io,           // pyrt.FileIOError (OSError)
  Device,       // pyrt.DeviceError
  Unsupported,  // pyrt.UnsupportedError
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace pyrt

// PYRT_CHECK(cond, Shape, "x has ", k, " columns, expected ", K);
#define PYRT_CHECK(cond, kind, ...)                                                    \
  do {                                                                                 \
    if (!(cond)) throw ::pyrt::Error(::pyrt::ErrorKind::kind, ::pyrt::detail::concat(__VA_ARGS__)); \
  } while (0)

#define PYRT_THROW(kind, ...) throw ::pyrt::Error(::pyrt::ErrorKind::kind, ::pyrt::detail::concat(__VA_ARGS__))

#define PYRT_INTERNAL_CHECK(cond)                                                          \
  do {                                                                                     \
    if (!(cond))                                                                           \
      throw ::pyrt::Error(::pyrt::ErrorKind::Internal,                                     \
                          ::pyrt::detail::concat("internal check failed: ", #cond, " at ", \
                                                 __FILE__, ":", __LINE__));               \
  } while (0)
