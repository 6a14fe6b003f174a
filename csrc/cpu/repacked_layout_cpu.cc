// Builds the repacked copy of pyrt/repack.h from the file's layout: plain byte copies, once per
// model load (about as fast as reading the weights once).
#include <cstring>

#include "cpu/cpu_isa.h"
#include "pyrt/errors.h"
#include "pyrt/repack.h"

namespace pyrt {
namespace {

bool is_nibble_format(Format f) { return f == Format::q4 || f == Format::q4a || f == Format::q4n; }
// The formats and blocks an AVX-512 M=1 kernel reads from a copy (repacked_gemv_avx512.cc).
bool has_repacked_kernel(Format f, int block) { return is_nibble_format(f) ? block == 32 : f == Format::q8; }

}  // namespace

int64_t repacked_bytes(const WeightView& w) {
  // Only the AVX-512 M=1 kernels read the copy; the other ISAs keep the file's layout only.
  if (cpu::active_isa() != cpu::Isa::avx512 || w.device != Device::cpu || !has_repacked_kernel(w.format, w.block))
    return 0;
  const int64_t quads = w.rows / kRepackRows, groups = w.cols / kRepackGroupWeights;
  if (quads == 0 || groups == 0) return 0;
  const int64_t tail_bytes = w.row_stride - groups * (kRepackGroupWeights / w.block) * bytes_per_block(w.format, w.block);
  return quads * kRepackRows *
         (groups * (repacked_quant_bytes(w.format) + repacked_scale_bytes(w.format, w.block)) + tail_bytes);
}

void repack_weights(const WeightView& w, uint8_t* dst) {
  PYRT_CHECK(repacked_bytes(w) > 0 && dst != nullptr, Internal, "repack_weights: no repacked layout for this matrix");
  const BlockLayout L = block_layout(w.format, w.block);
  const Format f = w.format;
  const int B = w.block, kBlocks = kRepackGroupWeights / B;  // blocks per group
  const int qb = repacked_quant_bytes(f), sb = repacked_scale_bytes(f, B);
  const int64_t quads = w.rows / kRepackRows, groups = w.cols / kRepackGroupWeights;
  for (int64_t q = 0; q < quads; ++q)
    for (int64_t g = 0; g < groups; ++g) {
      uint8_t* quants = dst + repacked_quants_at(f, q, g, groups);
      uint8_t* sc = dst + repacked_scales_at(f, B, q, g, quads, groups);
      for (int r = 0; r < kRepackRows; ++r) {
        const uint8_t* grp = w.row(q * kRepackRows + r) + g * kBlocks * L.bytes;
        uint8_t* rs = sc + r * sb;
        for (int b = 0; b < kBlocks; ++b) {
          const uint8_t* blk = grp + b * L.bytes;
          std::memcpy(quants + r * qb + b * L.quants_bytes, blk + L.quants_offset, size_t(L.quants_bytes));
          std::memcpy(rs + 2 * b, blk + L.scale_offset, 2);
          if (L.min_offset >= 0) std::memcpy(rs + 2 * kBlocks + 2 * b, blk + L.min_offset, 2);
        }
      }
    }
  const int64_t whole = groups * kBlocks * L.bytes, tail_bytes = w.row_stride - whole;
  for (int64_t q = 0; q < quads; ++q)
    for (int r = 0; r < kRepackRows; ++r)
      std::memcpy(dst + repacked_tail_at(f, B, q, r, quads, groups, tail_bytes), w.row(q * kRepackRows + r) + whole,
                  size_t(tail_bytes));
}

}  // namespace pyrt
