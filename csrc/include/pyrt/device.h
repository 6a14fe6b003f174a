// Device memory and device queries, declared without CUDA types so every build sees the same API.
// A CUDA build implements the GPU side in csrc/cuda/*.cu; a CPU-only build links
// csrc/cuda/cuda_disabled.cc, whose twins raise pyrt::Error(Device) so callers get a typed error,
// never a missing symbol or a crash. Kernels are reached through pyrt::matmul (pyrt/matmul.h).
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
  DeviceBuffer() = default;                  // empty: no memory, data() == nullptr
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

// A weight matrix copied to a GPU in the device plane layout (pyrt/formats.h, WeightView, cuda),
// owning its planes. view() is what pyrt::matmul reads.
class DeviceWeights {
 public:
  const WeightView& view() const { return view_; }
  int64_t nbytes() const { return codes_.nbytes() + scales_.nbytes() + mins_.nbytes(); }

 private:
  friend DeviceWeights upload_weights(const WeightView& host, int device);
  friend void download_weights(const DeviceWeights& weights, uint8_t* host);
  WeightView view_;
  DeviceBuffer codes_, scales_, mins_;
};

// Copies host weights (pyrt's interleaved blocks) to `device`, split into planes by block_layout().
// Throws Unsupported for formats without CUDA kernels (only f16, q8, q4, q4a, q4n have them), Device
// without a usable device.
DeviceWeights upload_weights(const WeightView& host, int device);
// The inverse: writes rows * row_bytes(format, block, cols) bytes of pyrt's layout to `host`.
void download_weights(const DeviceWeights& weights, uint8_t* host);

}  // namespace pyrt::gpu
