// The load-following thread count of pyrt/adaptive_threads.h. State is process-wide (the load is
// the machine's); one thread samples at a time and the others skip the sample, so concurrent
// models never wait on each other here.
#include "pyrt/adaptive_threads.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "pyrt/errors.h"
#include "pyrt/runtime.h"

#ifdef __linux__
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#endif

namespace pyrt {
namespace {

// A sample costs an open/read/close of /proc/loadavg (a few microseconds); a SmolLM2 decode step
// takes ~5 ms on 2 threads, so a sample per step at most and the cost stays under 0.2 %.
constexpr int64_t kSampleIntervalNs = 4'000'000;
// Samples in a row that must ask for another count before it changes: a task that runs for a
// moment (a kernel worker, a shell) never shrinks the team; a process that keeps a core does
// within ~3 steps.
constexpr int kSamplesToChange = 3;
constexpr int kInvalidSetting = INT_MIN;

int adaptive_setting_from_environment() {
  const char* env = std::getenv("PYRT_ADAPTIVE_THREADS");
  if (!env) return 1;
  if (std::strcmp(env, "0") == 0) return 0;
  if (std::strcmp(env, "1") == 0) return 1;
  return kInvalidSetting;
}

struct Adaptation {
  std::atomic<int> setting{adaptive_setting_from_environment()};
  std::atomic<int> threads{0};  // the adapted count; 0: not reduced
  std::atomic<int> last{0};
  std::atomic<int64_t> next_sample_ns{0};
  std::atomic<int> fake_others{-1};
  std::atomic<int> fake_online{0};
  std::mutex sampler;  // guards the streak
  int streak = 0;      // samples in a row asking for fewer (< 0) or more (> 0) threads
  int streak_target = 0;  // the count closest to the current one that those samples asked for
};

Adaptation& state() {
  static Adaptation s;
  return s;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int online_cpus() {
#ifdef __linux__
  static const int n = int(std::max<long>(1, sysconf(_SC_NPROCESSORS_ONLN)));
  return n;
#else
  return 1;
#endif
}

int usable_cpus() {
#ifdef __linux__
  static const int n = [] {
    cpu_set_t set;
    return sched_getaffinity(0, sizeof(set), &set) == 0 ? std::max(1, CPU_COUNT(&set)) : online_cpus();
  }();
  return std::min(n, online_cpus());
#else
  return 1;
#endif
}

// Runnable tasks on the machine now (the 4th field of /proc/loadavg, "running/total"), or -1.
int runnable_tasks() {
#ifdef __linux__
  const int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char text[128];
  const ssize_t got = ::read(fd, text, sizeof(text) - 1);
  ::close(fd);
  if (got <= 0) return -1;
  text[got] = '\0';
  const char* p = text;
  for (int field = 0; field < 3; ++field) {
    p = std::strchr(p, ' ');
    if (!p) return -1;
    ++p;
  }
  char* end = nullptr;
  const long running = std::strtol(p, &end, 10);
  return end != p && *end == '/' && running >= 0 ? int(std::min<long>(running, INT_MAX)) : -1;
#else
  return -1;
#endif
}

// How many of these threads of this process are running (state R in /proc/self/task/<tid>/stat).
// At most kMaxStateReads are read; the rest count as not running, i.e. as other load, which can
// only keep the team smaller a while longer, never make it larger than the free cores.
constexpr int kMaxStateReads = 8;

int running_threads(const int* tids, int count) {
  int running = 0;
#ifdef __linux__
  for (int i = 0; i < std::min(count, kMaxStateReads); ++i) {
    if (tids[i] <= 0) continue;
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tids[i]);
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char text[512];
    const ssize_t got = ::read(fd, text, sizeof(text) - 1);
    ::close(fd);
    if (got <= 0) continue;
    text[got] = '\0';
    const char* paren = std::strrchr(text, ')');  // the thread's name may hold spaces and ')'
    if (paren && paren[1] == ' ' && paren[2] == 'R') ++running;
  }
#else
  (void)tids, (void)count;
#endif
  return running;
}

bool adapting(const Adaptation& s) {
  return !num_threads_explicit() && s.setting.load(std::memory_order_relaxed) != 0;
}

int adapted_count(const Adaptation& s, int configured) {
  const int adapted = s.threads.load(std::memory_order_relaxed);
  return adapted > 0 ? std::min(adapted, configured) : configured;
}

// One sample: `others` tasks runnable besides the team on the machine's `online` CPUs, of which
// this process may use `usable`. The count is the machine's: with a smaller affinity mask only the
// mask's share of the others is taken to run on its CPUs (processes pinned to exactly these CPUs
// are undercounted then; docs/environment.md).
void take_sample(Adaptation& s, int others, int online, int usable) {
  const int configured = std::max(1, num_threads());
  const int current = adapted_count(s, configured);
  const int64_t others_here = (int64_t(std::max(0, others)) * usable + online / 2) / online;
  const int target = int(std::clamp<int64_t>(usable - others_here, 1, configured));
  if (target == current) {
    s.streak = 0;
    return;
  }
  const int direction = target < current ? -1 : 1;
  if (s.streak == 0 || (s.streak < 0) != (direction < 0)) {
    s.streak = direction;
    s.streak_target = target;
  } else {
    s.streak += direction;
    s.streak_target = direction < 0 ? std::max(s.streak_target, target) : std::min(s.streak_target, target);
  }
  if (std::abs(s.streak) >= kSamplesToChange) {
    s.threads.store(s.streak_target >= configured ? 0 : s.streak_target, std::memory_order_relaxed);
    s.streak = 0;
  }
}

}  // namespace

int team_threads() {
  const int configured = std::max(1, num_threads());
  const Adaptation& s = state();
  if (num_threads_explicit()) return configured;
  const int setting = s.setting.load(std::memory_order_relaxed);
  PYRT_CHECK(setting != kInvalidSetting, Unsupported, "PYRT_ADAPTIVE_THREADS='", std::getenv("PYRT_ADAPTIVE_THREADS"),
             "' is neither 0 nor 1");
  return setting ? adapted_count(s, configured) : configured;
}

void note_team_start(int size, const int* idle_worker_tids, int idle_workers) {
  Adaptation& s = state();
  s.last.store(size, std::memory_order_relaxed);
  if (!adapting(s)) return;
  const int fake = s.fake_others.load(std::memory_order_relaxed);
  const int64_t now = now_ns();
  if (fake < 0 && now < s.next_sample_ns.load(std::memory_order_relaxed)) return;
  std::unique_lock<std::mutex> lock(s.sampler, std::try_to_lock);
  if (!lock.owns_lock()) return;  // another team is sampling
  if (fake < 0 && now < s.next_sample_ns.load(std::memory_order_relaxed)) return;
  s.next_sample_ns.store(now + kSampleIntervalNs, std::memory_order_relaxed);
  // The team's threads are all running as it starts: they are exactly the team's share of the count.
  if (fake >= 0) {
    const int fake_online = s.fake_online.load(std::memory_order_relaxed);
    take_sample(s, fake, fake_online > 0 ? fake_online : online_cpus(), fake_online > 0 ? fake_online : usable_cpus());
    return;
  }
  const int running = runnable_tasks();
  if (running < 0) return;  // no signal here (not Linux, no /proc): keep the count
  int others = running - size;
  // Idle workers still spinning in libgomp's wait are this process's: without this, a team that
  // shrank would see its own former workers as load and never grow back.
  if (others > 0 && idle_workers > 0) others -= running_threads(idle_worker_tids, idle_workers);
  take_sample(s, others, online_cpus(), usable_cpus());
}

int last_team_threads() { return state().last.load(std::memory_order_relaxed); }

bool adaptive_threads_enabled() {
  const int setting = state().setting.load(std::memory_order_relaxed);
  PYRT_CHECK(setting != kInvalidSetting, Unsupported, "PYRT_ADAPTIVE_THREADS='", std::getenv("PYRT_ADAPTIVE_THREADS"),
             "' is neither 0 nor 1");
  return setting != 0;
}

void set_adaptive_threads_enabled(bool enabled) {
  Adaptation& s = state();
  std::lock_guard<std::mutex> lock(s.sampler);
  s.setting.store(enabled ? 1 : 0, std::memory_order_relaxed);
  s.threads.store(0, std::memory_order_relaxed);  // start again from the configured count
  s.streak = 0;
}

void set_fake_load(int others, int online) {
  Adaptation& s = state();
  std::lock_guard<std::mutex> lock(s.sampler);
  s.fake_others.store(others >= 0 ? others : -1, std::memory_order_relaxed);
  s.fake_online.store(online > 0 ? online : 0, std::memory_order_relaxed);
}

}  // namespace pyrt
