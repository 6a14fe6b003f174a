// Load-time repacking of quantized weights into the layout the AVX-512 M=1 (decode) kernels read
// fastest (csrc/cpu/repacked_gemv_avx512.cc). The file's layout stays the portable one; the
// repacked copy is made in memory next to it, by whoever owns the weights (models::WeightTable),
// and handed to the kernels through WeightView::repacked.
//
// Formats q4, q4a, q4n at block 32 and q8 at blocks 32, 64, 128, matrices [N >= 4, K >= 128].
// Rows go in quads (the 4 rows the kernel has in flight), K in groups of 128 weights, and the
// copy is three regions:
//   quants : [quad][group][row of the quad][repacked_quant_bytes], the 4 rows of a quad
//            interleaved group by group, so the kernel reads one 64-byte aligned stream.
//            4-bit: 64 bytes, block b's 16 nibble bytes at 16b: the order the file-layout kernel
//            gathers with two loads and a word permute, here one load.
//            q8: 128 bytes, the group's int8 codes in order (no scale between blocks, every
//            16-byte load inside one cache line).
//   scales : after all quants, [quad][group][row of the quad][repacked_scale_bytes]: the group's
//            128 / B FP16 d, then (q4a) their FP16 m; the same bytes as the file's.
//   tail   : after the scales, [quad][row of the quad][the blocks after the last whole group]
//            as the file stores them (q4 at K = 576: 2 per row), read per block.
// Rows after the last whole quad are not copied: the kernels read those from the file's layout.
// The copy holds the file's bytes of the rows it covers, rearranged, and nothing more.
#pragma once
#include <cstdint>

#include "pyrt/formats.h"

namespace pyrt {

constexpr int kRepackRows = 4;          // rows per quad
constexpr int kRepackGroupWeights = 128;
constexpr int kRepackNibbleBytes = kRepackGroupWeights / 2;

constexpr int repacked_quant_bytes(Format f) { return f == Format::q8 ? kRepackGroupWeights : kRepackNibbleBytes; }
constexpr int repacked_scale_bytes(Format f, int block = 32) {
  return (f == Format::q4a ? 4 : 2) * (kRepackGroupWeights / block);
}
// Byte offsets inside the copy, for `quads` = N / 4 and `groups` = K / 128.
constexpr int64_t repacked_quants_at(Format f, int64_t quad, int64_t group, int64_t groups) {
  return (quad * groups + group) * kRepackRows * repacked_quant_bytes(f);
}
constexpr int64_t repacked_nibbles_at(int64_t quad, int64_t group, int64_t groups) {
  return repacked_quants_at(Format::q4, quad, group, groups);
}
constexpr int64_t repacked_scales_at(Format f, int block, int64_t quad, int64_t group, int64_t quads, int64_t groups) {
  return quads * groups * kRepackRows * repacked_quant_bytes(f) +
         (quad * groups + group) * kRepackRows * repacked_scale_bytes(f, block);
}
constexpr int64_t repacked_scales_at(Format f, int64_t quad, int64_t group, int64_t quads, int64_t groups) {
  return repacked_scales_at(f, 32, quad, group, quads, groups);
}
// The tail blocks of row `row` of quad `quad`; tail_bytes: the file's bytes of one row's tail.
constexpr int64_t repacked_tail_at(Format f, int block, int64_t quad, int row, int64_t quads, int64_t groups,
                                   int64_t tail_bytes) {
  return repacked_scales_at(f, block, quads, 0, quads, groups) + (quad * kRepackRows + row) * tail_bytes;
}
constexpr int64_t repacked_tail_at(Format f, int64_t quad, int row, int64_t quads, int64_t groups, int64_t tail_bytes) {
  return repacked_tail_at(f, 32, quad, row, quads, groups, tail_bytes);
}

// Bytes of w's repacked copy, or 0 when no kernel of the active ISA reads one for w (then models
// keep the file's layout only). Depends on the ISA chosen when it is called.
int64_t repacked_bytes(const WeightView& w);
// Writes w's repacked copy (repacked_bytes(w) > 0) into dst, 64-byte aligned.
void repack_weights(const WeightView& w, uint8_t* dst);

}  // namespace pyrt
