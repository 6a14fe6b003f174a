// The op-level activation statistics (pyrt/activation_stats.h).
#include "pyrt/activation_stats.h"

#include <atomic>
#include <mutex>

#include "pyrt/errors.h"

namespace pyrt {
namespace {

std::atomic<bool> g_active{false};
std::mutex g_mutex;
std::map<const void*, ColumnStats> g_stats;  // guarded by g_mutex
bool g_failed = false;                       // guarded by g_mutex

}  // namespace

void start_activation_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_stats.clear();
  g_failed = false;
  g_active.store(true, std::memory_order_relaxed);
}

std::map<const void*, ColumnStats> stop_activation_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_active.store(false, std::memory_order_relaxed);
  PYRT_CHECK(!g_failed, Internal, "activation statistics could not be stored (out of memory)");
  return std::move(g_stats);
}

bool activation_stats_active() noexcept { return g_active.load(std::memory_order_relaxed); }

void record_activations(const MatmulParams& p) noexcept {
  if (p.x_type != ActivationType::f32 || p.x == nullptr || p.M <= 0 || p.w.cols <= 0) return;
  const int64_t K = p.w.cols;
  const float* x = static_cast<const float*>(p.x);
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_active.load(std::memory_order_relaxed)) return;
  try {
    ColumnStats& s = g_stats[p.w.data];
    if (s.sum_sq.empty()) s.sum_sq.assign(size_t(K), 0.0);
    if (int64_t(s.sum_sq.size()) != K) return;  // another shape at the same address: not a weight
    for (int64_t m = 0; m < p.M; ++m)
      for (int64_t k = 0; k < K; ++k) {
        const double v = x[m * K + k];
        s.sum_sq[size_t(k)] += v * v;
      }
    s.rows += p.M;
  } catch (...) {
    g_failed = true;
  }
}

}  // namespace pyrt
