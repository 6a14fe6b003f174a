// DeviceWeights: the planes of pyrt/weight_planes.h uploaded into DeviceBuffers, and back. Host
// code compiled in every build; in a CPU-only build DeviceBuffer raises DeviceError.
#include <cstring>
#include <vector>

#include "pyrt/device.h"
#include "pyrt/errors.h"
#include "pyrt/weight_planes.h"

namespace pyrt::gpu {

namespace {

DeviceBuffer upload_plane(int device, int64_t nbytes, const void* host) {
  if (nbytes == 0) return DeviceBuffer();
  DeviceBuffer buffer(device, nbytes);
  buffer.upload(host);
  return buffer;
}

}  // namespace

DeviceWeights upload_weights(const WeightView& host, int device) {
  PYRT_CHECK(host.device == Device::cpu, Device, "upload_weights copies host weights, got ",
             device_name(host.device), " weights");
  const PlaneBytes bytes = plane_bytes(host.format, host.block, host.rows, host.cols);
  PYRT_CHECK(host.rows == 0 || host.row_stride >= row_bytes(host.format, host.block, host.cols), Shape,
             "weight row stride ", host.row_stride, " is shorter than a row");
  require_device(device);
  DeviceWeights w;
  // f16 is one plane already: contiguous rows upload without a host copy.
  const bool as_stored = !format_traits(host.format).blocked && host.row_stride == bytes.code_row;
  std::vector<uint8_t> codes(as_stored ? 0 : size_t(bytes.codes));
  std::vector<uint16_t> scales(size_t(bytes.scales / 2)), mins(size_t(bytes.mins / 2));
  if (!as_stored) split_planes(host, codes.data(), scales.data(), mins.data());
  w.codes_ = DeviceBuffer(device, bytes.codes);  // always allocated: data() is the view's pointer
  w.codes_.upload(as_stored ? host.data : codes.data());
  w.scales_ = upload_plane(device, bytes.scales, scales.data());
  w.mins_ = upload_plane(device, bytes.mins, mins.data());

  WeightView& v = w.view_;
  v.format = host.format;
  v.block = host.block;
  v.rows = host.rows;
  v.cols = host.cols;
  v.data = static_cast<const uint8_t*>(w.codes_.data());
  v.row_stride = bytes.code_row;
  v.device = Device::cuda;
  v.device_index = device;
  v.scales = static_cast<const uint16_t*>(w.scales_.data());
  v.mins = static_cast<const uint16_t*>(w.mins_.data());
  return w;
}

void download_weights(const DeviceWeights& weights, uint8_t* host) {
  const WeightView& v = weights.view_;
  if (!format_traits(v.format).blocked) {
    weights.codes_.download(host);  // f16: the code plane is pyrt's layout
    return;
  }
  std::vector<uint8_t> codes(size_t(weights.codes_.nbytes()));
  std::vector<uint16_t> scales(size_t(weights.scales_.nbytes() / 2)), mins(size_t(weights.mins_.nbytes() / 2));
  weights.codes_.download(codes.data());
  weights.scales_.download(scales.data());
  weights.mins_.download(mins.data());
  join_planes(codes.data(), scales.data(), mins.data(), v.format, v.block, v.rows, v.cols, host);
}

}  // namespace pyrt::gpu
