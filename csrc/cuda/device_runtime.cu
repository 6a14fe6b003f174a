// Device discovery, RAII device memory (pyrt/device.h) and pointer checks (common.cuh), CUDA build.
#include <string>

#include "cuda/common.cuh"
#include "pyrt/device.h"

namespace pyrt::gpu {
namespace {

// cudaGetDeviceCount fails without a driver (cudaErrorInsufficientDriver / NoDevice): that is
// "no GPU", not a bug, so it is reported as a reason rather than thrown from a query.
struct DeviceQuery {
  int count = 0;
  std::string reason;
};

// Queried once: the CUDA runtime fixes the visible devices at initialization, and matmul checks
// the device on every call, where a fresh driver query would cost microseconds.
const DeviceQuery& query_devices() {
  static const DeviceQuery cached = [] {
    DeviceQuery q;
    const cudaError_t status = cudaGetDeviceCount(&q.count);
    if (status != cudaSuccess) {
      cudaGetLastError();  // reset the last-error state so the next, unrelated call is not blamed
      q.count = 0;
      q.reason = std::string("no usable CUDA device: cudaGetDeviceCount failed: ") + cudaGetErrorString(status) +
                 " (" + cudaGetErrorName(status) + ")";
    } else if (q.count == 0) {
      q.reason = "no usable CUDA device: cudaGetDeviceCount returned 0";
    }
    return q;
  }();
  return cached;
}

}  // namespace

bool compiled_with_cuda() noexcept { return true; }

int device_count() noexcept {
  try {
    return query_devices().count;
  } catch (...) {
    return 0;
  }
}

std::string unavailable_reason() { return query_devices().reason; }

void require_device(int device) {
  const DeviceQuery& q = query_devices();
  PYRT_CHECK(q.count > 0, Device, q.reason);
  PYRT_CHECK(device >= 0 && device < q.count, Device, "CUDA device ", device, " does not exist (",
             q.count, " device(s) visible)");
}

DeviceBuffer::DeviceBuffer(int device, int64_t nbytes) : nbytes_(nbytes), device_(device) {
  PYRT_CHECK(nbytes >= 0, Range, "cannot allocate ", nbytes, " bytes");
  require_device(device);
  DeviceGuard guard(device);
  // cudaMalloc(0) may return null; one byte keeps data() a valid, distinct device pointer.
  CUDA_CHECK(cudaMalloc(&data_, nbytes > 0 ? size_t(nbytes) : 1));
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(other.data_), nbytes_(other.nbytes_), device_(other.device_) {
  other.data_ = nullptr;
  other.nbytes_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = other.data_;
    nbytes_ = other.nbytes_;
    device_ = other.device_;
    other.data_ = nullptr;
    other.nbytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::release() noexcept {
  if (data_ == nullptr) return;
  // cudaFree synchronizes the device, so no queued kernel can still be reading this memory.
  int previous = 0;
  if (cudaGetDevice(&previous) == cudaSuccess && previous != device_) cudaSetDevice(device_);
  cudaFree(data_);
  if (previous != device_) cudaSetDevice(previous);
  data_ = nullptr;
}

void DeviceBuffer::upload(const void* host) {
  if (nbytes_ == 0) return;
  DeviceGuard guard(device_);
  CUDA_CHECK(cudaMemcpy(data_, host, size_t(nbytes_), cudaMemcpyHostToDevice));
}

void DeviceBuffer::download(void* host) const {
  if (nbytes_ == 0) return;
  DeviceGuard guard(device_);
  CUDA_CHECK(cudaMemcpy(host, data_, size_t(nbytes_), cudaMemcpyDeviceToHost));
}

void require_device_pointer(const void* ptr, int device, const char* name) {
  PYRT_CHECK(ptr != nullptr, Device, name, " is a null device pointer");
  cudaPointerAttributes attr{};
  CUDA_CHECK(cudaPointerGetAttributes(&attr, ptr));
  const bool on_device = attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
  PYRT_CHECK(on_device, Device, name, " is not CUDA device memory (memory type ", int(attr.type), ")");
  PYRT_CHECK(attr.type == cudaMemoryTypeManaged || attr.device == device, Device, name,
             " lives on CUDA device ", attr.device, " but the weights are on device ", device);
}

}  // namespace pyrt::gpu
