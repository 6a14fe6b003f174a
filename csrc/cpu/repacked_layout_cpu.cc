// Builds the repacked copy of pyrt/repack.h from the file's layout: plain byte copies, once per
// model load (about as fast as reading the weights once).
#include <cstring>

#include "cpu/cpu_isa.h"
#include "pyrt/errors.h"
#include "pyrt/repack.h"

namespace pyrt {
namespace {

bool is_nibble_format(Format f) { return f == Format::q4 || f == Format::q4a || f == Format::q4n; }

}  // namespace

int64_t repacked_bytes(const WeightView& w) {
  // Only the AVX-512 M=1 kernel reads the copy; the other ISAs keep the file's layout only.
  if (cpu::active_isa() != cpu::Isa::avx512 || w.device != Device::cpu || !is_nibble_format(w.format) || w.block != 32)
    return 0;
  const int64_t quads = w.rows / kRepackRows, groups = w.cols / kRepackGroupWeights;
  if (quads == 0 || groups == 0) return 0;
  const int64_t tail_bytes = w.row_stride - groups * (kRepackGroupWeights / 32) * bytes_per_block(w.format, 32);
  return quads * kRepackRows * (groups * (kRepackNibbleBytes + repacked_scale_bytes(w.format)) + tail_bytes);
}

void repack_weights(const WeightView& w, uint8_t* dst) {
  PYRT_CHECK(repacked_bytes(w) > 0 && dst != nullptr, Internal, "repack_weights: no repacked layout for this matrix");
  const BlockLayout L = block_layout(w.format, w.block);
  constexpr int kBlocks = kRepackGroupWeights / 32;  // per group
  const int64_t quads = w.rows / kRepackRows, groups = w.cols / kRepackGroupWeights;
  for (int64_t q = 0; q < quads; ++q)
    for (int64_t g = 0; g < groups; ++g) {
      uint8_t* nib = dst + repacked_nibbles_at(q, g, groups);
      uint8_t* sc = dst + repacked_scales_at(w.format, q, g, quads, groups);
      for (int r = 0; r < kRepackRows; ++r) {
        const uint8_t* grp = w.row(q * kRepackRows + r) + g * kBlocks * L.bytes;
        uint8_t* rs = sc + r * repacked_scale_bytes(w.format);
        for (int b = 0; b < kBlocks; ++b) {
          const uint8_t* blk = grp + b * L.bytes;
          std::memcpy(nib + r * kRepackNibbleBytes + b * L.quants_bytes, blk + L.quants_offset, size_t(L.quants_bytes));
          std::memcpy(rs + 2 * b, blk + L.scale_offset, 2);
          if (L.min_offset >= 0) std::memcpy(rs + 2 * kBlocks + 2 * b, blk + L.min_offset, 2);
        }
      }
    }
  const int64_t whole = groups * kBlocks * L.bytes, tail_bytes = w.row_stride - whole;
  for (int64_t q = 0; q < quads; ++q)
    for (int r = 0; r < kRepackRows; ++r)
      std::memcpy(dst + repacked_tail_at(w.format, q, r, quads, groups, tail_bytes), w.row(q * kRepackRows + r) + whole,
                  size_t(tail_bytes));
}

}  // namespace pyrt
