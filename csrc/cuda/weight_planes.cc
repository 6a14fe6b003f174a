// Host side of the CUDA weight layout: split/join of the planes, and the upload/download of
// DeviceWeights through DeviceBuffer (which, in a CPU-only build, raises DeviceError).
#include "pyrt/weight_planes.h"

#include <cstring>
#include <vector>

#include "pyrt/device.h"
#include "pyrt/errors.h"

namespace pyrt::gpu {

void require_cuda_format(Format f) {
  const bool has_kernels = f == Format::f16 || f == Format::q8 || f == Format::q4 || f == Format::q4a;
  PYRT_CHECK(has_kernels, Unsupported, format_traits(f).name,
             " weights are not supported by the CUDA backend; store them as one of f16, q8, q4, q4a "
             "(e.g. pyrt.quantize(w, 'f16'))");
}

PlaneBytes plane_bytes(Format f, int block, int64_t rows, int64_t cols) {
  require_cuda_format(f);
  PYRT_CHECK(rows >= 0 && cols >= 0, Shape, "invalid weight shape [", rows, ", ", cols, "]");
  const BlockLayout L = block_layout(f, block);
  PYRT_CHECK(cols % L.block == 0, Shape, "the last dimension (", cols, ") must be a multiple of the block size ",
             L.block);
  const int64_t blocks = rows * (cols / L.block);
  PlaneBytes b;
  b.code_row = (cols / L.block) * L.quants_bytes;
  b.codes = rows * b.code_row;
  b.scales = L.scale_offset >= 0 ? blocks * 2 : 0;
  b.mins = L.min_offset >= 0 ? blocks * 2 : 0;
  return b;
}

void split_planes(const WeightView& host, uint8_t* codes, uint16_t* scales, uint16_t* mins) {
  const BlockLayout L = block_layout(host.format, host.block);
  const int64_t per_row = host.cols / L.block;
  for (int64_t r = 0; r < host.rows; ++r) {
    const uint8_t* block = host.row(r);
    for (int64_t b = 0; b < per_row; ++b, block += L.bytes) {
      std::memcpy(codes, block + L.quants_offset, size_t(L.quants_bytes));
      codes += L.quants_bytes;
      if (L.scale_offset >= 0) std::memcpy(scales++, block + L.scale_offset, 2);
      if (L.min_offset >= 0) std::memcpy(mins++, block + L.min_offset, 2);
    }
  }
}

void join_planes(const uint8_t* codes, const uint16_t* scales, const uint16_t* mins, Format f, int block,
                 int64_t rows, int64_t cols, uint8_t* dst) {
  const BlockLayout L = block_layout(f, block);
  const int64_t blocks = rows * (cols / L.block);
  for (int64_t b = 0; b < blocks; ++b, dst += L.bytes) {
    std::memcpy(dst + L.quants_offset, codes, size_t(L.quants_bytes));
    codes += L.quants_bytes;
    if (L.scale_offset >= 0) std::memcpy(dst + L.scale_offset, scales++, 2);
    if (L.min_offset >= 0) std::memcpy(dst + L.min_offset, mins++, 2);
  }
}

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
