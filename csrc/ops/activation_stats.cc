// The op-level activation statistics (pyrt/activation_stats.h).
#include "pyrt/activation_stats.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "cpu/ops_cpu.h"
#include "pyrt/errors.h"

namespace pyrt {
namespace {

std::atomic<bool> g_active{false};
std::mutex g_mutex;
std::map<const void*, ColumnStats> g_stats;  // guarded by g_mutex
bool g_failed = false;                       // guarded by g_mutex
std::set<const void*> g_second_moment_of;    // guarded by g_mutex

// The last x^T x computed and the input it was computed from, so that the next product on the same
// input values (Q, K and V; gate and up) reuses it (guarded by g_mutex). Compared by content, not
// by address: a buffer is rewritten between layers.
struct Gram {
  int64_t M = 0, K = 0;
  std::vector<float> x;    // [M, K] copy of the input
  std::vector<float> xt;   // [K, M]: x transposed, the GEMM's activations and weight
  std::vector<float> xtx;  // [K, K]
};
Gram g_gram;

// Rows of x^T x computed per GEMM call: each block of rows from its diagonal on, so that only the
// upper triangle is computed (x^T x is symmetric; stop_activation_stats mirrors it).
constexpr int64_t kGramRowBlock = 64;

// The upper triangle of x^T x for x [M, K], by the f32 GEMM y = xt @ xt^T, single-threaded on the
// calling thread (a product recorded inside a model's parallel region must not start threads of
// its own). Float sums over one call's rows (at most a batch of tokens) are then added in double.
const std::vector<float>& gram(const float* x, int64_t M, int64_t K) {
  const size_t n = size_t(M * K);
  if (g_gram.M == M && g_gram.K == K && std::memcmp(g_gram.x.data(), x, n * sizeof(float)) == 0) return g_gram.xtx;
  g_gram.M = g_gram.K = 0;  // invalid until complete (an allocation below may throw)
  g_gram.x.assign(x, x + n);
  g_gram.xt.resize(n);
  g_gram.xtx.resize(size_t(K * K));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) g_gram.xt[size_t(k * M + m)] = x[m * K + k];
  MatmulParams p;
  p.w.format = Format::f32;
  p.w.rows = K;
  p.w.cols = M;
  p.w.data = reinterpret_cast<const uint8_t*>(g_gram.xt.data());
  p.w.row_stride = M * int64_t(sizeof(float));
  for (int64_t i0 = 0; i0 < K; i0 += kGramRowBlock) {
    p.x = g_gram.xt.data() + i0 * M;
    p.M = std::min(kGramRowBlock, K - i0);
    p.y = g_gram.xtx.data() + i0 * K;  // rows i0.. of y [K, K]; columns from i0 on
    cpu::matmul_rows(p, i0, K);
  }
  g_gram.M = M;
  g_gram.K = K;
  return g_gram.xtx;
}

}  // namespace

void start_activation_stats(const std::set<const void*>& second_moment_of) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_stats.clear();
  g_failed = false;
  g_second_moment_of = second_moment_of;
  g_gram = Gram();
  g_active.store(true, std::memory_order_relaxed);
}

std::map<const void*, ColumnStats> stop_activation_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_active.store(false, std::memory_order_relaxed);
  g_gram = Gram();  // the buffers can be large: free them
  PYRT_CHECK(!g_failed, Internal, "activation statistics could not be stored (out of memory)");
  for (auto& entry : g_stats) {  // only the upper triangles were added
    ColumnStats& s = entry.second;
    const size_t K = s.sum_sq.size();
    for (size_t i = 0; i < K && !s.second_moment.empty(); ++i)
      for (size_t j = 0; j < i; ++j) s.second_moment[i * K + j] = s.second_moment[j * K + i];
  }
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
    if (g_second_moment_of.count(p.w.data)) {
      if (s.second_moment.empty()) s.second_moment.assign(size_t(K * K), 0.0);
      const std::vector<float>& xtx = gram(x, p.M, K);
      for (int64_t i = 0; i < K; ++i)
        for (int64_t j = i; j < K; ++j) s.second_moment[size_t(i * K + j)] += xtx[size_t(i * K + j)];
    }
  } catch (...) {
    g_failed = true;
  }
}

}  // namespace pyrt
