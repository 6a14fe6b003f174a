// Load-time repacking of 4-bit weights into the layout the AVX-512 M=1 (decode) kernels read
// fastest (csrc/cpu/repacked_gemv_avx512.cc). The file's layout stays the portable one; the
// repacked copy is made in memory next to it, by whoever owns the weights (models::WeightTable),
// and handed to the kernels through WeightView::repacked.
//
// Formats q4, q4a, q4n at blocks 32 and 64, q4 and q4a at 128, matrices [N >= 4, K >= 128]. Rows go in quads (the 4
// rows the kernel has in flight), K in groups of 128 weights (128 / B blocks), and the copy is three
// regions:
//   nibbles: [quad][group][row of the quad][64 bytes], the group's blocks' nibble bytes (B / 2
//            each) back to back: at B = 32 the order the file-layout kernel gathers with two loads
//            and a word permute, here one load; the 4 rows of a quad interleaved group by group,
//            so the kernel reads one stream.
//   scales : after all nibbles, [quad][group][row of the quad][repacked_scale_bytes]: the group's
//            128 / B blocks' FP16 d, then (q4a) their FP16 m; the same bytes as the file's.
//   tail   : after the scales, [quad][row of the quad][(K / B) % (128 / B) blocks], the blocks
//            after the last whole group as the file stores them (B = 32, K = 576: 2 per row;
//            B = 64, K = 4160: 1), read per block.
// Rows after the last whole quad are not copied: the kernels read those from the file's layout.
// The copy holds the file's bytes of the rows it covers, rearranged, and nothing more.
// B = 64, 128: the file-layout M=1 kernel decodes block by block; the copy's kernel is B = 32's
// nibble-group one with x permuted to B's nibble order (group_element<B>), so it sums in another
// order than the file kernel (equal up to FP32 rounding, not bit for bit). File time / copy time,
// median of 6 rounds, 11008x4096 M = 1 from DRAM and 256x4096 in L2, 2 threads (Xeon, 2026-12-03
// 08:20 UTC, idle machine, each format in a fresh bench/bench_repack.py process): q4/64 1.16x,
// 1.17x; q4a/64 1.26x, 1.39x; q4n/64 1.16x, 1.23x; q4/128 1.03x, 1.03x; q4a/128 1.08x, 1.12x.
// Not for q4n at 128 (0.76x from DRAM in every run, 1.05x in L2: not understood) nor q8: a q8
// copy (the quad's codes in 128-byte groups, scales apart; commit bd159c6) measured 0.70-0.89x the
// file layout from DRAM and 0.99-1.07x in L2 (docs/benchmarks.md, "Load-time repacking").
#pragma once
#include <cstdint>

#include "pyrt/formats.h"

namespace pyrt {

constexpr int kRepackRows = 4;          // rows per quad
constexpr int kRepackGroupWeights = 128;
constexpr int kRepackNibbleBytes = kRepackGroupWeights / 2;

// The formats and blocks that get a copy (the one place that decides; repacked_bytes adds the ISA
// and the shape): q4, q4a, q4n at 32, 64, 128, except q4n at 128, measured slower than its file layout.
constexpr bool has_repacked_layout(Format f, int block) {
  return (f == Format::q4 || f == Format::q4a || f == Format::q4n) && (block == 32 || block == 64 || block == 128) &&
         !(f == Format::q4n && block == 128);
}

// Scale bytes of one group and row at block `block`: 2 per block (d), 4 for q4a (d, m).
constexpr int repacked_scale_bytes(Format f, int block) {
  return (kRepackGroupWeights / block) * (f == Format::q4a ? 4 : 2);
}
// Byte offsets inside the copy, for `quads` = N / 4 and `groups` = K / 128.
constexpr int64_t repacked_nibbles_at(int64_t quad, int64_t group, int64_t groups) {
  return (quad * groups + group) * kRepackRows * kRepackNibbleBytes;
}
constexpr int64_t repacked_scales_at(Format f, int block, int64_t quad, int64_t group, int64_t quads, int64_t groups) {
  return quads * groups * kRepackRows * kRepackNibbleBytes +
         (quad * groups + group) * kRepackRows * repacked_scale_bytes(f, block);
}
// The tail blocks of row `row` of quad `quad`; tail_bytes: the file's bytes of one row's tail.
constexpr int64_t repacked_tail_at(Format f, int block, int64_t quad, int row, int64_t quads, int64_t groups,
                                   int64_t tail_bytes) {
  return repacked_scales_at(f, block, quads, 0, quads, groups) + (quad * kRepackRows + row) * tail_bytes;
}

// Bytes of w's repacked copy, or 0 when no kernel of the active ISA reads one for w (then models
// keep the file's layout only). Depends on the ISA chosen when it is called.
int64_t repacked_bytes(const WeightView& w);
// Writes w's repacked copy (repacked_bytes(w) > 0) into dst, 64-byte aligned; on Linux first
// asks for dst's whole 2 MiB pages to be huge pages (a hint; the copy is streamed at decode).
void repack_weights(const WeightView& w, uint8_t* dst);

}  // namespace pyrt
