// The CUDA backend's weight layout: pyrt's interleaved blocks split into planes, so that every row
// of codes starts 16-byte aligned on the device (docs/cuda.md, "Device layout"). The offsets come
// from block_layout() (the block structs in pyrt/formats.h), never from hand-written constants.
// Host code, compiled in every build, so the layout is tested without a GPU.
#pragma once
#include <cstdint>

#include "pyrt/formats.h"

namespace pyrt::gpu {

// Throws Unsupported unless the CUDA kernels read `f` (f16, q8, q4, q4a, q4n).
void require_cuda_format(Format f);

// Bytes of each plane of a [rows, cols] matrix; 0 for a plane the format lacks. Validates the
// format (require_cuda_format), the block and cols (a multiple of the block).
struct PlaneBytes {
  int64_t codes = 0;
  int64_t scales = 0;
  int64_t mins = 0;
  int64_t code_row = 0;  // bytes of one row of codes
};
PlaneBytes plane_bytes(Format f, int block, int64_t rows, int64_t cols);

// host (cpu layout) -> planes. `scales` / `mins` may be null where the format has none.
void split_planes(const WeightView& host, uint8_t* codes, uint16_t* scales, uint16_t* mins);

// planes -> pyrt's interleaved layout of a [rows, cols] `f` matrix (rows * row_bytes bytes).
void join_planes(const uint8_t* codes, const uint16_t* scales, const uint16_t* mins, Format f, int block,
                 int64_t rows, int64_t cols, uint8_t* dst);

}  // namespace pyrt::gpu
