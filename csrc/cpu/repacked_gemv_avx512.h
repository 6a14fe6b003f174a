// M = 1, 4-bit weights at B = 32, 64, 128, from the repacked copy (pyrt/repack.h): the nibble-group kernel
// of gemv_avx512.cc with each group's nibbles in one 64-byte load and 4 streams of quads (4 rows each)
// in flight. Include only from *_avx512.cc files.
#pragma once
#include <cstdint>

#include "cpu/kernels.h"
#include "cpu/nibble_group_avx512.h"
#include "pyrt/repack.h"

namespace pyrt::cpu::avx512 {

// y[q0, q1) with q0, q1 multiples of 4 and q1 <= N / 4 * 4; a.w.repacked is set. xp, sums: x as
// group.permute_x leaves it. At B = 32 sums in the file-layout kernel's order: the same bits per
// row (B = 64/128: that kernel sums per block, so the bits differ within FP32 rounding).
template <Format F, int B>
void gemv_repacked_quads(const KernelArgs& a, const NibbleGroup<F, B>& group, const float* xp, const float* sums,
                         int64_t q0, int64_t q1);

}  // namespace pyrt::cpu::avx512
