// The CPU matmul driver: converts FP16 activations once (and quantizes them in int8 mode), splits
// N across threads and calls the active ISA's kernel (cpu/kernels.h). csrc/ops/matmul.cc has
// validated the arguments.
#include <algorithm>
#include <atomic>
#include <vector>

#include "cpu/cpu_isa.h"
#include "cpu/ops_cpu.h"
#include "pyrt/errors.h"
#include "pyrt/runtime.h"

#ifdef PYRT_WITH_OPENMP
#include <omp.h>
#endif

namespace pyrt::cpu {

void matmul_rows(const MatmulParams& p, int64_t n_begin, int64_t n_end) noexcept {
  if (p.M == 0 || n_begin >= n_end) return;
  const KernelArgs args{static_cast<const float*>(p.x), p.M, p.w.cols, p.w, p.bias, p.y, p.w.rows};
  matmul_kernel(active_isa())(args, n_begin, n_end);
}

namespace {

bool uses_int8(const MatmulParams& p) {
  return p.activations != ActivationPrecision::exact && format_traits(p.w.format).blocked;
}

Int8KernelArgs int8_args(const MatmulParams& p, const QuantizedActivations& xq) {
  return Int8KernelArgs{xq.q.data(), xq.scale.data(), xq.sum.data(), p.M, p.w.cols, p.w, p.bias, p.y, p.w.rows};
}

}  // namespace

void matmul_rows(const MatmulParams& p, const QuantizedActivations& xq, int64_t n_begin, int64_t n_end) noexcept {
  if (!format_traits(p.w.format).blocked) return cpu::matmul_rows(p, n_begin, n_end);
  if (p.M == 0 || n_begin >= n_end) return;
  int8_matmul_kernel(active_isa())(int8_args(p, xq), n_begin, n_end);
}

void matmul(const MatmulParams& p) {
  const WeightView& w = p.w;
  const int64_t M = p.M, N = w.rows, K = w.cols;
  if (M == 0 || N == 0) return;

  std::vector<float> x_f32;
  const float* x = static_cast<const float*>(p.x);
  if (p.x_type == ActivationType::f16) {
    x_f32.resize(size_t(M * K));
    fp16_to_fp32_array(static_cast<const uint16_t*>(p.x), x_f32.data(), M * K);
    x = x_f32.data();
  }

  // int8 / int16 modes: the activations are quantized once per call, split by rows across the
  // same threads that then split N (thread_local buffers, so repeated calls of a model's forward pass
  // reuse them; the worker threads reach them through these pointers only). int16 interleaves the
  // two digits (row 2m quantizes x[m], row 2m+1 its residual) and the kernel sums each pair into
  // y[m] (Int8KernelArgs::digit_pairs), so every weight panel serves both digits in one product.
  thread_local QuantizedActivations xq_buf;
  const bool int8 = uses_int8(p);
  const bool two_digits = int8 && p.activations == ActivationPrecision::int16;
  const int64_t rows_q = two_digits ? 2 * M : M;
  QuantizedActivations* xq = &xq_buf;
  if (int8) {
    PYRT_CHECK(x != nullptr || K == 0, Internal, "null pointer");
    prepare_quantized_activations(rows_q, K, w.block, xq);
  }
  const KernelArgs args{x, M, K, w, p.bias, p.y, N};
  Int8KernelArgs args8{};
  if (int8) {
    args8 = int8_args(p, *xq);
    args8.M = rows_q;
    args8.digit_pairs = two_digits;
  }
  const MatmulKernel exact_kernel = matmul_kernel(active_isa());
  const Int8MatmulKernel int8_kernel = int8_matmul_kernel(active_isa());
  auto quantize_rows = [&](int64_t m0, int64_t m1) {
    if (!two_digits) return quantize_activation_rows(x + m0 * K, m1 - m0, xq, m0);
    // One row of residual scratch per thread: thread_local, so each thread has its own.
    thread_local std::vector<float> residual_row;
    if (residual_row.size() < size_t(K)) residual_row.resize(size_t(K));
    for (int64_t m = m0; m < m1; ++m) {
      if (!quantize_activation_rows(x + m * K, 1, xq, 2 * m)) return false;
      activation_residual_row(x + m * K, *xq, 2 * m, residual_row.data());
      if (!quantize_activation_rows(residual_row.data(), 1, xq, 2 * m + 1)) return false;
    }
    return true;
  };
  auto kernel = [&](int64_t n0, int64_t n1) {
    if (int8)
      int8_kernel(args8, n0, n1);
    else
      exact_kernel(args, n0, n1);
  };
  const char* nonfinite = "activations contain NaN or Inf (int8/int16 modes cannot quantize them)";

  // Each thread takes a contiguous slice of weight rows (aligned to 16 so SIMD kernels see whole
  // row groups); the weights are read once in total, which is what bounds small-M speed.
  constexpr int64_t kAlign = kMatmulRowAlign;
  const int64_t work = M * N * std::max<int64_t>(K, 1);
  int threads = std::max(1, num_threads());
  if (work < (int64_t(1) << 15)) threads = 1;  // too small to pay for waking threads
  threads = int(std::min<int64_t>(threads, (N + kAlign - 1) / kAlign));
  if (threads <= 1) {
    PYRT_CHECK(!int8 || quantize_rows(0, M), Range, nonfinite);
    kernel(0, N);
    return;
  }
#ifdef PYRT_WITH_OPENMP
  const int64_t chunks = (N + kAlign - 1) / kAlign;
  std::atomic<bool> finite{true};
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    if (int8) {
      if (!quantize_rows(M * t / nt, M * (t + 1) / nt)) finite.store(false, std::memory_order_relaxed);
#pragma omp barrier
    }
    const int64_t c0 = chunks * t / nt, c1 = chunks * (t + 1) / nt;
    const int64_t n0 = c0 * kAlign, n1 = std::min(N, c1 * kAlign);
    if (n0 < n1 && finite.load(std::memory_order_relaxed)) kernel(n0, n1);
  }
  PYRT_CHECK(finite.load(), Range, nonfinite);
#else
  PYRT_CHECK(!int8 || quantize_rows(0, M), Range, nonfinite);
  kernel(0, N);
#endif
}

void stacked_matmul_rows(const ThreadTeam& team, const MatmulParams* products, int count,
                         const QuantizedActivations* xq) noexcept {
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
        cpu::matmul_rows(products[i], *xq, n0, n1);
      else
        cpu::matmul_rows(products[i], n0, n1);
    }
    first += own;
  }
}

}  // namespace pyrt::cpu
