// CPU-only twins of pyrt/device.h: a build without the CUDA backend still links and every entry
// point that would need a GPU raises pyrt.DeviceError with a way out. A CUDA build compiles
// csrc/cuda/ instead and this file is empty.
#ifndef PYRT_WITH_CUDA
#include "cuda/backend.h"
#include "pyrt/device.h"
#include "pyrt/errors.h"

namespace pyrt::gpu {
namespace {

constexpr const char* kNoCuda =
    "pyrt was built without the CUDA backend (PYRT_CUDA=OFF or nvcc was not found); "
    "rebuild with PYRT_CUDA=ON on a machine with the CUDA toolkit";

[[noreturn]] void throw_no_cuda() { PYRT_THROW(Device, kNoCuda); }

}  // namespace

bool compiled_with_cuda() noexcept { return false; }
int device_count() noexcept { return 0; }
std::string unavailable_reason() { return kNoCuda; }
void require_device(int) { throw_no_cuda(); }

DeviceBuffer::DeviceBuffer(int, int64_t) { throw_no_cuda(); }
DeviceBuffer::~DeviceBuffer() = default;
DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(other.data_), nbytes_(other.nbytes_), device_(other.device_) {
  other.data_ = nullptr;
  other.nbytes_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  data_ = other.data_;
  nbytes_ = other.nbytes_;
  device_ = other.device_;
  other.data_ = nullptr;
  other.nbytes_ = 0;
  return *this;
}
void DeviceBuffer::release() noexcept {}
void DeviceBuffer::upload(const void*) { throw_no_cuda(); }
void DeviceBuffer::download(void*) const { throw_no_cuda(); }

void matmul(const DeviceMatmulParams&) { throw_no_cuda(); }
void matmul(const MatmulParams&) { throw_no_cuda(); }
void require_device_pointer(const void*, int, const char*) { throw_no_cuda(); }

}  // namespace pyrt::gpu
#endif  // PYRT_WITH_CUDA
