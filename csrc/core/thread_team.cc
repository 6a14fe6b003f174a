// The OpenMP side of pyrt/thread_team.h. The team's barrier is pyrt's own rather than `omp
// barrier`: libgomp's waiters spin ~300,000 iterations (milliseconds) before sleeping, so with
// another process on one of the cores the waiting thread burns its core while its partner waits
// for a time slice, and a decode step with 200 barriers collapses (docs/environment.md). Here a
// waiter spins for a bounded time, then sleeps on a futex, and the last thread to arrive wakes
// the sleepers only when there are any.
#include "pyrt/thread_team.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>

#include "pyrt/adaptive_threads.h"
#include "pyrt/errors.h"

#ifdef PYRT_WITH_OPENMP
#include <omp.h>
#endif
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PYRT_CPU_RELAX() _mm_pause()
#else
#define PYRT_CPU_RELAX() ((void)0)
#endif

#include <thread>

namespace pyrt {
namespace {

constexpr int kDefaultSpinMicroseconds = 50;
constexpr int kInvalidSetting = INT_MIN;

// PYRT_WAIT_SPIN_US, read once; an invalid value is kept as kInvalidSetting so that the first
// call from Python raises (a barrier inside a parallel region cannot throw: it uses the default).
int spin_setting_from_environment() {
  const char* env = std::getenv("PYRT_WAIT_SPIN_US");
  if (!env) return kDefaultSpinMicroseconds;
  char* end = nullptr;
  const long us = std::strtol(env, &end, 10);
  if (end == env || *end != '\0' || us < 0 || us > 10'000'000) return kInvalidSetting;
  return int(us);
}

std::atomic<int> spin_setting{spin_setting_from_environment()};

int spin_for_barrier() {
  const int us = spin_setting.load(std::memory_order_relaxed);
  return us == kInvalidSetting ? kDefaultSpinMicroseconds : us;
}

constexpr int kTrackedThreads = 64;  // the workers whose OS thread ids a team records

// One team's barrier. `generation` counts completed barriers (the sense that reverses); waiters
// sleep on its address. Each field on its own cache line: arrivals do not disturb the spinners.
struct TeamSync {
  alignas(64) std::atomic<int> arrived{0};
  alignas(64) std::atomic<uint32_t> generation{0};
  alignas(64) std::atomic<int> sleepers{0};
  alignas(64) std::atomic<int> tids[kTrackedThreads] = {};  // each thread's OS id, by team index
};
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex word");

void sleep_while_equal(std::atomic<uint32_t>& word, uint32_t value) {
#ifdef __linux__
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
#else
  (void)word, (void)value;
  std::this_thread::yield();
#endif
}

void wake_all(std::atomic<uint32_t>& word) {
#ifdef __linux__
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

void team_wait(TeamSync& s, int size) {
  const uint32_t gen = s.generation.load(std::memory_order_acquire);
  if (s.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == size) {
    s.arrived.store(0, std::memory_order_relaxed);  // published by the release below
    s.generation.store(gen + 1, std::memory_order_seq_cst);
    if (s.sleepers.load(std::memory_order_seq_cst) > 0) wake_all(s.generation);
    return;
  }
  // Spin first: on an idle machine the partner arrives within microseconds and a futex round
  // trip (tens of microseconds in a VM) would cost more than the wait; then sleep, so a partner
  // that lost its core to another process gets it back. Always spin first: an earlier variant
  // that slept at once after a few waits ended asleep locked itself into that mode on an idle VM
  // (both threads sleeping, each wake-up slower than the probe spin: SmolLM2 decode 48 instead of
  // 207 tok/s, 2026-12-02).
  const auto limit = std::chrono::microseconds(spin_for_barrier());
  if (limit.count() > 0) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      for (int i = 0; i < 16; ++i) {
        if (s.generation.load(std::memory_order_acquire) != gen) return;
        PYRT_CPU_RELAX();
      }
      if (std::chrono::steady_clock::now() - start >= limit) break;
    }
  }
  if (s.generation.load(std::memory_order_acquire) != gen) return;
  // The seq_cst increment orders against the releaser's seq_cst store/load pair: either it sees
  // this sleeper and wakes it, or the futex finds the generation already changed.
  s.sleepers.fetch_add(1, std::memory_order_seq_cst);
  while (s.generation.load(std::memory_order_acquire) == gen) sleep_while_equal(s.generation, gen);
  s.sleepers.fetch_sub(1, std::memory_order_relaxed);
}

#ifdef PYRT_WITH_OPENMP
// The barrier of the region this thread is in, set by current(). The master's object serves every
// region it starts (libgomp's workers serve one master), and one region at a time per master.
struct ThreadBinding {
  TeamSync* sync = nullptr;
  int id = 0;
  int size = 1;
};
thread_local ThreadBinding binding;
thread_local TeamSync own_sync;  // used when this thread is the master of a team

// The OS thread ids of the workers that joined this master's teams, by team index: a team smaller
// than the last one leaves libgomp's other workers idle, maybe still spinning, and the load sample
// must not count them as other processes (csrc/core/adaptive_threads.cc).
struct WorkerRecord {
  int tids[kTrackedThreads] = {};
  int pool = 1;               // the largest team this master started
  TeamSync* last = nullptr;   // the previous team's barrier, with that team's tids
  int last_size = 0;
};
thread_local WorkerRecord workers;

int own_tid() {
#ifdef __linux__
  thread_local const int tid = int(syscall(SYS_gettid));
  return tid;
#else
  return 0;
#endif
}

// Called by the master before its team passes the `single` of current(), so the previous team's
// tids (written before that team ended) are read while no worker of the new team writes them.
void fold_previous_team() {
  if (!workers.last) return;
  for (int i = 1; i < std::min(workers.last_size, kTrackedThreads); ++i) {
    workers.tids[i] = workers.last->tids[i].load(std::memory_order_relaxed);
  }
  workers.last = nullptr;
}
#endif

}  // namespace

int wait_spin_microseconds() {
  const int us = spin_setting.load(std::memory_order_relaxed);
  PYRT_CHECK(us != kInvalidSetting, Unsupported, "PYRT_WAIT_SPIN_US='", std::getenv("PYRT_WAIT_SPIN_US"),
             "' is not an integer in [0, 10000000]");
  return us;
}

void set_wait_spin_microseconds(int microseconds) {
  PYRT_CHECK(microseconds <= 10'000'000, Unsupported, "spin time ", microseconds, " us is too long");
  spin_setting.store(microseconds >= 0 ? microseconds : kDefaultSpinMicroseconds, std::memory_order_relaxed);
}

ThreadTeam ThreadTeam::current() {
#ifdef PYRT_WITH_OPENMP
  const ThreadTeam team{omp_get_thread_num(), omp_get_num_threads()};
  if (team.id == 0) fold_previous_team();
  if (team.size > 1) {
    TeamSync* sync = nullptr;
#pragma omp single copyprivate(sync)
    sync = &own_sync;  // `single` runs on one thread; with the master's object any thread may run it
    binding = ThreadBinding{sync, team.id, team.size};
    if (team.id < kTrackedThreads) sync->tids[team.id].store(own_tid(), std::memory_order_relaxed);
    if (team.id == 0) workers.last = sync, workers.last_size = team.size;
  }
  // After the `single` above (a barrier) every thread of the team is running: the moment to count
  // the machine's other runnable tasks for the next step's team size.
  if (team.id == 0) {
    workers.pool = std::max(workers.pool, team.size);
    const int idle = std::max(0, std::min(workers.pool, kTrackedThreads) - team.size);
    note_team_start(team.size, workers.tids + std::min(team.size, kTrackedThreads), idle);
  }
  return team;
#else
  note_team_start(1, nullptr, 0);
  return ThreadTeam{};
#endif
}

void ThreadTeam::barrier() {
#ifdef PYRT_WITH_OPENMP
  const int size = omp_get_num_threads();
  if (size <= 1) return;
  if (binding.sync && binding.size == size && binding.id == omp_get_thread_num()) {
    team_wait(*binding.sync, size);
  } else {
#pragma omp barrier
  }
#endif
}

}  // namespace pyrt
