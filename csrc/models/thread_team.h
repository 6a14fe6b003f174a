// Work splitting for forward passes that run a whole step inside one OpenMP parallel region: each
// thread of the team takes its share of every phase, and phases are separated by barriers. A
// 135 M-parameter decoder step is ~200 products of a few hundred KiB each, where a fork/join per
// product (and the idle partner thread during the small serial ops) cost more than the barriers.
#pragma once
#include <algorithm>
#include <cstdint>

#include "pyrt/matmul.h"

#ifdef PYRT_WITH_OPENMP
#include <omp.h>
#endif

namespace pyrt::models {

struct ThreadTeam {
  int id = 0;
  int size = 1;

  // The calling thread inside the current parallel region (or a team of one outside any).
  static ThreadTeam current() {
#ifdef PYRT_WITH_OPENMP
    return ThreadTeam{omp_get_thread_num(), omp_get_num_threads()};
#else
    return ThreadTeam{};
#endif
  }

  // This thread's contiguous share [*begin, *end) of `items` work items.
  void share(int64_t items, int64_t* begin, int64_t* end) const {
    *begin = items * id / size;
    *end = items * (id + 1) / size;
  }

  // Every thread of the team waits here until all have arrived (a no-op for a team of one).
  static void barrier() {
#ifdef PYRT_WITH_OPENMP
#pragma omp barrier
#endif
  }
};

// This thread's share of `count` products that read the same activations, split as if their
// weight rows were stacked into one matrix: e.g. Q, K and V projections cost one split and one
// barrier instead of three. Rows are handed out in kMatmulRowAlign groups. Every p must have
// passed check_matmul. With xq (int8 activations, quantized once) q-format weights use it.
inline void stacked_matmul_rows(const ThreadTeam& team, const MatmulParams* products, int count,
                                const QuantizedActivations* xq = nullptr) {
  int64_t groups = 0;
  for (int i = 0; i < count; ++i) groups += (products[i].w.rows + kMatmulRowAlign - 1) / kMatmulRowAlign;
  int64_t mine_begin, mine_end;
  team.share(groups, &mine_begin, &mine_end);
  int64_t first = 0;  // first stacked group of product i
  for (int i = 0; i < count && first < mine_end; ++i) {
    const int64_t rows = products[i].w.rows, own = (rows + kMatmulRowAlign - 1) / kMatmulRowAlign;
    const int64_t g0 = std::max(mine_begin, first) - first, g1 = std::min(mine_end, first + own) - first;
    if (g0 < g1) {
      const int64_t n0 = g0 * kMatmulRowAlign, n1 = std::min(rows, g1 * kMatmulRowAlign);
      if (xq)
        matmul_rows(products[i], *xq, n0, n1);
      else
        matmul_rows(products[i], n0, n1);
    }
    first += own;
  }
}

}  // namespace pyrt::models
