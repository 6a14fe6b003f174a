// The CUDA backend, declared without CUDA types so every build sees the same API. A CUDA build
// implements it in csrc/cuda/; a CPU-only build links csrc/core/device_cpu_only.cc, whose twins
// raise pyrt::Error(Device) so callers get a typed error, never a missing symbol or a crash.
#pragma once
#include <cstdint>
#include <string>

#include "pyrt/formats.h"

namespace pyrt::gpu {

// True when this library was compiled with the CUDA backend (PYRT_WITH_CUDA).
bool compiled_with_cuda() noexcept;

// CUDA devices usable now: 0 in a CPU-only build, without a driver, or without a GPU.
int device_count() noexcept;

// Why device_count() is 0 ("" when a device exists): the message DeviceError carries.
std::string unavailable_reason();

// Throws Error(Device) unless `device` names a usable CUDA device.
void require_device(int device);

// Device memory with one owner: cudaMalloc in the constructor, cudaFree in the destructor.
class DeviceBuffer {
 public:
  DeviceBuffer(int device, int64_t nbytes);  // throws Error(Device) (no device, out of memory)
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  int64_t nbytes() const { return nbytes_; }
  int device() const { return device_; }

  // Synchronous copies of exactly nbytes() bytes.
  void upload(const void* host);
  void download(void* host) const;

 private:
  void release() noexcept;
  void* data_ = nullptr;
  int64_t nbytes_ = 0;
  int device_ = 0;
};

// A weight matrix [rows, cols] on the device, in pyrt's blocks split into planes so that every
// row of quants starts 16-byte aligned (see docs/cuda.md, "Device layout"):
//   f16     : quants = fp16 [rows, cols]                                  scales = mins = null
//   q8      : quants = int8 [rows, cols]            scales = fp16 [rows, cols/block]
//   q4, q4a : quants = uint8 [rows, cols/2], each block's B/2 bytes in pyrt's nibble order
//             (low nibble = element j, high = j + B/2); scales, and for q4a mins, fp16 [rows, cols/block]
struct DeviceWeights {
  Format format = Format::f16;
  int block = 1;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* quants = nullptr;
  const uint16_t* scales = nullptr;
  const uint16_t* mins = nullptr;
};

// y[M, N] = x[M, K] @ W[N, K]^T (+ bias[N]) on `device`, FP32 accumulation, activations FP16.
// All pointers are device memory, row-major and contiguous. `stream` is a cudaStream_t as an
// integer (0: the legacy default stream); the call is asynchronous on that stream.
struct DeviceMatmulParams {
  const uint16_t* x = nullptr;  // fp16 bits [M, K]
  int64_t M = 0;
  DeviceWeights w;              // N = w.rows, K = w.cols
  const float* bias = nullptr;  // [N] or null
  float* y = nullptr;           // [M, N], fully written
  int device = 0;
  uintptr_t stream = 0;
};

void matmul(const DeviceMatmulParams& p);

// Throws Error(Device) unless `ptr` is memory that `device` can read (device or managed memory).
void require_device_pointer(const void* ptr, int device, const char* name);

}  // namespace pyrt::gpu
