// The CUDA weight layout on the host: plane sizes, split and join. Pure layout code from
// block_layout(), in core so that every build (and the tests) has it without a GPU; the upload
// and download through DeviceBuffer are the backend's (csrc/cuda/device_weights.cc).
#include "pyrt/weight_planes.h"

#include <cstring>
#include <vector>

#include "pyrt/errors.h"

namespace pyrt::gpu {

void require_cuda_format(Format f) {
  const bool has_kernels = f == Format::f16 || f == Format::q8 || f == Format::q4 || f == Format::q4a ||
                           f == Format::q4n;
  PYRT_CHECK(has_kernels, Unsupported, format_traits(f).name,
             " weights are not supported by the CUDA backend; store them as one of f16, q8, q4, q4a, q4n "
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

}  // namespace pyrt::gpu
