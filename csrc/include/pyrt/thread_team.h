// Work splitting for forward passes that run a whole step inside one parallel region: each thread
// of the team takes its share of every phase, and phases are separated by barriers. A 135 M-
// parameter decoder step is ~200 products of a few hundred KiB each, where a fork/join per product
// (and the idle partner thread during the small serial ops) cost more than the barriers.
// current() and barrier() live in csrc/core/thread_team.cc, so this header does not change with
// the OpenMP build flag.
#pragma once
#include <cstdint>

namespace pyrt {

struct ThreadTeam {
  int id = 0;
  int size = 1;

  // The calling thread inside the current parallel region (or a team of one outside any). Inside a
  // region of several threads this is a collective: every thread of the team calls it once, at the
  // same point (the start of the region), because it hands the team its barrier.
  static ThreadTeam current();

  // This thread's contiguous share [*begin, *end) of `items` work items.
  void share(int64_t items, int64_t* begin, int64_t* end) const {
    *begin = items * id / size;
    *end = items * (id + 1) / size;
  }

  // Every thread of the team waits here until all have arrived (a no-op for a team of one). A
  // thread that arrives early spins for at most wait_spin_microseconds(), then sleeps until the
  // last one arrives, so a thread whose partner lost its core to another process gives its own
  // core back instead of burning it (docs/environment.md).
  static void barrier();
};

// How long a thread spins at a barrier before it sleeps: PYRT_WAIT_SPIN_US at start (default 50);
// 0 sleeps at once (best when other processes share the cores), a large value spins like
// OMP_WAIT_POLICY=ACTIVE. Negative restores the default.
int wait_spin_microseconds();
void set_wait_spin_microseconds(int microseconds);

}  // namespace pyrt
