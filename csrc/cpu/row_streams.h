// How the M = 1 kernels walk a thread's weight rows: R streams a 1/R share of the rows apart, so
// that short rows (an LLM's output head) do not make R adjacent rows one sequential stream.
// Each row is summed as it would be alone; only the order of the rows changes.
#pragma once
#include <algorithm>
#include <cstdint>

namespace pyrt::cpu {

// tile(n, step) computes rows n + r * step for r < R; single(n) one leftover row.
template <int R, class Tile, class Single>
inline void for_row_streams(int64_t begin, int64_t end, Tile&& tile, Single&& single) {
  const int64_t step = (end - begin) / R;
  for (int64_t n = begin; n < begin + step; ++n) tile(n, step);
  for (int64_t n = begin + R * step; n < end; ++n) single(n);
}

// The row that stream r reads after row n0 + r * step (step 1: adjacent rows, the next tile's).
constexpr int64_t next_stream_row(int64_t n0, int r, int64_t step, int R) {
  return n0 + r * step + (step == 1 ? R : 1);
}

// The R weight rows of a tile (n0 + r * step) and the row each stream reads after its own, which
// the quantized M = 1 kernels prefetch meanwhile. Quantized rows are short (2.3 KB for q4 at
// K=4096): the hardware prefetcher relearns the R streams at every row group. Measured on Zen 4,
// 4096x4096 from DRAM, 2 threads: q4 0.63 -> 0.47 ms, q8 0.78 -> 0.53 ms. Args: any kernel
// argument struct with w.row(n) and N.
template <int R>
struct TileRows {
  const uint8_t* w[R];
  const uint8_t* next[R];  // clamped to the matrix
  template <class Args>
  TileRows(const Args& a, int64_t n0, int64_t step) {
    for (int r = 0; r < R; ++r) {
      w[r] = a.w.row(n0 + r * step);
      next[r] = a.w.row(std::min<int64_t>(next_stream_row(n0, r, step, R), a.N - 1));
    }
  }
  // Prefetches (into L1, as prefetcht0) the lines that start in bytes [begin, end) of every next row.
  void prefetch_next(int64_t begin, int64_t end) const {
    for (int64_t off = (begin + 63) & ~int64_t(63); off < end; off += 64)
      for (int r = 0; r < R; ++r) __builtin_prefetch(next[r] + off, 0, 3);
  }
};

}  // namespace pyrt::cpu
