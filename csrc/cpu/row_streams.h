// How the M = 1 kernels walk a thread's weight rows: R streams a 1/R share of the rows apart, so
// that short rows (an LLM's output head) do not make R adjacent rows one sequential stream.
// Each row is summed as it would be alone; only the order of the rows changes.
#pragma once
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

}  // namespace pyrt::cpu
