// Shared by the CUDA sources: every runtime call goes through CUDA_CHECK, so a failure becomes
// pyrt::Error(Device, "<call> failed: <reason>") and reaches Python as pyrt.DeviceError.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "pyrt/errors.h"

#define CUDA_CHECK(call)                                                                     \
  do {                                                                                       \
    const cudaError_t pyrt_cuda_status_ = (call);                                            \
    if (pyrt_cuda_status_ != cudaSuccess) {                                                  \
      PYRT_THROW(Device, #call, " failed: ", cudaGetErrorString(pyrt_cuda_status_), " (",   \
                 cudaGetErrorName(pyrt_cuda_status_), ")");                                  \
    }                                                                                        \
  } while (0)

namespace pyrt::gpu {

// Throws Error(Device) unless `ptr` is memory that `device` can read (device or managed memory).
void require_device_pointer(const void* ptr, int device, const char* name);

// Makes `device` current for a scope and restores the caller's device afterwards, so pyrt never
// changes the device that cupy or the application has selected.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) CUDA_CHECK(cudaSetDevice(device));
    switched_ = previous_ != device;
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);  // a destructor must not throw; nothing to report to
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

// __cuda_array_interface__ stream values 1 and 2 name the legacy and per-thread default streams.
inline cudaStream_t stream_from_handle(uintptr_t handle) {
  if (handle == 1) return cudaStreamLegacy;
  if (handle == 2) return cudaStreamPerThread;
  return reinterpret_cast<cudaStream_t>(handle);
}

// A 16-byte read-only load; callers check 16-byte alignment first (misaligned loads fault).
__device__ __forceinline__ uint4 load_16_bytes(const void* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

// Byte i (0..15) of a 16-byte load, by shifts: indexing the uint4 through a pointer would force it
// into local memory (ptxas reported a stack frame for that form).
__device__ __forceinline__ uint32_t byte_of(const uint4& v, int i) {
  const uint32_t w = i < 4 ? v.x : i < 8 ? v.y : i < 12 ? v.z : v.w;
  return (w >> (8 * (i % 4))) & 0xffu;
}

__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

}  // namespace pyrt::gpu
