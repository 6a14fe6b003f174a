// Builds the repacked copy of pyrt/repack.h from the file's layout: plain byte copies, once per
// model load (about as fast as reading the weights once).
#include <cstdint>
#include <cstring>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "cpu/cpu_isa.h"
#include "pyrt/errors.h"
#include "pyrt/repack.h"

namespace pyrt {
namespace {

// The copy on 2 MiB pages where Linux allows: the M=1 kernels stream it, and on 4 KiB pages the
// q4/32 11008x4096 GEMV from DRAM gained 1.04x over the file layout (a numpy array, which numpy
// puts on huge pages) against 1.17x with the copy on huge pages too (docs/benchmarks.md,
// "Load-time repacking"). Only the 2 MiB-aligned interior; a hint, so failures are ignored.
// MADV_HUGEPAGE covers pages faulted from now on (THP "madvise" mode), MADV_COLLAPSE (Linux 6.1)
// the ones the caller's zero-fill already touched.
void advise_huge_pages(uint8_t* p, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + uintptr_t(bytes)) & ~(kHuge - 1);
  if (hi <= lo) return;
  madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#if defined(MADV_COLLAPSE)
  madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_COLLAPSE);
#else
  madvise(reinterpret_cast<void*>(lo), hi - lo, 25);  // MADV_COLLAPSE, older headers; EINVAL before 6.1
#endif
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace

int64_t repacked_bytes(const WeightView& w) {
  // Only the AVX-512 M=1 kernel reads the copy; the other ISAs keep the file's layout only.
  if (cpu::active_isa() != cpu::Isa::avx512 || w.device != Device::cpu || !has_repacked_layout(w.format, w.block))
    return 0;
  const int64_t quads = w.rows / kRepackRows, groups = w.cols / kRepackGroupWeights;
  if (quads == 0 || groups == 0) return 0;
  const int64_t tail_bytes =
      w.row_stride - groups * (kRepackGroupWeights / w.block) * bytes_per_block(w.format, w.block);
  return quads * kRepackRows * (groups * (kRepackNibbleBytes + repacked_scale_bytes(w.format, w.block)) + tail_bytes);
}

void repack_weights(const WeightView& w, uint8_t* dst) {
  const int64_t bytes = repacked_bytes(w);
  PYRT_CHECK(bytes > 0 && dst != nullptr, Internal, "repack_weights: no repacked layout for this matrix");
  advise_huge_pages(dst, bytes);
  const BlockLayout L = block_layout(w.format, w.block);
  const int kBlocks = kRepackGroupWeights / w.block;  // per group
  const int sb = repacked_scale_bytes(w.format, w.block);
  const int64_t quads = w.rows / kRepackRows, groups = w.cols / kRepackGroupWeights;
  for (int64_t q = 0; q < quads; ++q)
    for (int64_t g = 0; g < groups; ++g) {
      uint8_t* nib = dst + repacked_nibbles_at(q, g, groups);
      uint8_t* sc = dst + repacked_scales_at(w.format, w.block, q, g, quads, groups);
      for (int r = 0; r < kRepackRows; ++r) {
        const uint8_t* grp = w.row(q * kRepackRows + r) + g * kBlocks * L.bytes;
        uint8_t* rs = sc + r * sb;
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
      std::memcpy(dst + repacked_tail_at(w.format, w.block, q, r, quads, groups, tail_bytes), w.row(q * kRepackRows + r) + whole,
                  size_t(tail_bytes));
}

}  // namespace pyrt
