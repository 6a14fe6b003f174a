// The OpenMP side of pyrt/thread_team.h. The barrier is an orphaned `omp barrier`: it binds to
// whichever parallel region the caller runs in.
#include "pyrt/thread_team.h"

#ifdef PYRT_WITH_OPENMP
#include <omp.h>
#endif

namespace pyrt {

ThreadTeam ThreadTeam::current() {
#ifdef PYRT_WITH_OPENMP
  return ThreadTeam{omp_get_thread_num(), omp_get_num_threads()};
#else
  return ThreadTeam{};
#endif
}

void ThreadTeam::barrier() {
#ifdef PYRT_WITH_OPENMP
#pragma omp barrier
#endif
}

}  // namespace pyrt
