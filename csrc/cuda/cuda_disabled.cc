// CPU-only twins of the CUDA backend (pyrt/device.h, cuda/backend.h): a build without it still
// links, and every entry point that would need a GPU raises pyrt.DeviceError with a way out.
// cmake/cuda.cmake compiles this file only when the CUDA backend is off.
#include "cuda/backend.h"
#include "pyrt/device.h"
#include "pyrt/errors.h"

namespace pyrt::gpu {
namespace {

constexpr const char* kNoCuda =
    "pyrt was built without the CUDA backend (PYRT_CUDA=OFF or nvcc was not found); "
    "rebuild with PYRT_CUDA=ON on a machine with the CUDA toolkit";

[[noreturn]] void throw_no_cuda(const char* what) { PYRT_THROW(Device, what, ": ", kNoCuda); }

}  // namespace

bool compiled_with_cuda() noexcept { return false; }
int device_count() noexcept { return 0; }
std::string unavailable_reason() { return kNoCuda; }
void require_device(int device) { throw_no_cuda(device >= 0 ? "cannot use a CUDA device" : "invalid CUDA device"); }

// No DeviceBuffer can hold memory here: the constructor throws, so the others only see empty ones.
DeviceBuffer::DeviceBuffer(int, int64_t) { throw_no_cuda("cannot allocate CUDA device memory"); }
DeviceBuffer::~DeviceBuffer() = default;
DeviceBuffer::DeviceBuffer(DeviceBuffer&&) noexcept {}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&&) noexcept { return *this; }
void DeviceBuffer::release() noexcept {}
void DeviceBuffer::upload(const void*) { throw_no_cuda("cannot copy to CUDA device memory"); }
void DeviceBuffer::download(void*) const { throw_no_cuda("cannot copy from CUDA device memory"); }

void matmul(const MatmulParams&) { throw_no_cuda("cannot run a matmul with CUDA weights"); }

}  // namespace pyrt::gpu
