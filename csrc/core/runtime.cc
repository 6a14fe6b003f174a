// Thread count: PYRT_NUM_THREADS at start, else every core this process may use (and then adapted to
// the load, csrc/core/adaptive_threads.cc).
#include "pyrt/runtime.h"

#include <atomic>
#include <cstdlib>
#include <thread>

#include "pyrt/adaptive_threads.h"
#include "pyrt/errors.h"

#ifdef __linux__
#include <sched.h>
#endif

namespace pyrt {
namespace {

int available_cores() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

int default_threads() {
  if (const char* env = std::getenv("PYRT_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    PYRT_CHECK(end != env && *end == '\0' && n > 0 && n <= 1024, Unsupported,
               "PYRT_NUM_THREADS='", env, "' is not a positive integer");
    return int(n);
  }
  return available_cores();
}

std::atomic<int>& thread_slot() {
  static std::atomic<int> slot{default_threads()};
  return slot;
}

// An explicit count is used exactly: PYRT_NUM_THREADS, or set_num_threads(n > 0).
std::atomic<bool> explicit_threads{std::getenv("PYRT_NUM_THREADS") != nullptr};

}  // namespace

bool num_threads_explicit() { return explicit_threads.load(std::memory_order_relaxed); }

int num_threads() { return thread_slot().load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  PYRT_CHECK(n <= 1024, Unsupported, "thread count ", n, " is too large");
  thread_slot().store(n > 0 ? n : default_threads());
  explicit_threads.store(n > 0 || std::getenv("PYRT_NUM_THREADS") != nullptr, std::memory_order_relaxed);
}

}  // namespace pyrt
