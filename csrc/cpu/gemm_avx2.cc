// Large-M AVX2 path: a cache-blocked GEMM. A block of kPanelRows weight rows x kDepth of K is
// dequantized once into a thread-local FP32 panel (L2-resident) and reused for every row of x; a
// 3x4 register-blocked micro-kernel (12 accumulators, 7 loads per 12 FMAs) runs over it with the
// vectors along K, so neither x nor the panel needs transposing. f32 weights are copied too: rows
// 16 KiB apart alias in L1, the contiguous panel does not (measured 41 -> 59 GFLOP/s, 1 thread).
#include <algorithm>
#include <memory>
#include <new>

#include "cpu/matmul_avx2.h"
#include "cpu/tile_avx2.h"

namespace pyrt::cpu::avx2 {
namespace {

constexpr int kMaxTileM = 3;          // rows of x per micro-kernel call
constexpr int64_t kDepth = 512;       // K per panel: a multiple of every block (32/64/128)
constexpr int64_t kPanelRows = 64;    // weight rows per panel: 64 x 512 x 4 B = 128 KiB (L2)
constexpr int64_t kRowsOfX = 128;     // rows of x per pass: 128 x 512 x 4 B = 256 KiB (L2)

// out[m][j] = x[m, 0:depth] . w[j][0:depth]; depth is a multiple of 16.
template <int MT>
void micro_kernel(const float* x, int64_t ldx, const float* const w[kRowsPerTile], int64_t depth,
                  float out[kMaxTileM][kRowsPerTile]) {
  __m256 acc[MT][kRowsPerTile];
  for (int m = 0; m < MT; ++m)
    for (int j = 0; j < kRowsPerTile; ++j) acc[m][j] = _mm256_setzero_ps();
  for (int64_t k = 0; k < depth; k += 8) {
    const __m256 w0 = _mm256_loadu_ps(w[0] + k), w1 = _mm256_loadu_ps(w[1] + k);
    const __m256 w2 = _mm256_loadu_ps(w[2] + k), w3 = _mm256_loadu_ps(w[3] + k);
#pragma GCC unroll 3
    for (int m = 0; m < MT; ++m) {
      const __m256 xv = _mm256_loadu_ps(x + m * ldx + k);
      acc[m][0] = _mm256_fmadd_ps(xv, w0, acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(xv, w1, acc[m][1]);
      acc[m][2] = _mm256_fmadd_ps(xv, w2, acc[m][2]);
      acc[m][3] = _mm256_fmadd_ps(xv, w3, acc[m][3]);
    }
  }
  for (int m = 0; m < MT; ++m) _mm_storeu_ps(out[m], hsum4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]));
}

// Dequantizes row[k0, k0 + depth) (group-aligned) into dst[0, depth).
template <class D>
void dequantize_span(const uint8_t* row, int64_t k0, int64_t depth, float* dst) {
  const float* table = fp16_table();
  for (int64_t g = k0 / D::kGroup; g < (k0 + depth) / D::kGroup; ++g) {
    const typename D::Group grp = D::group(row, g, table);
    float* out = dst + (g * D::kGroup - k0);
#pragma GCC unroll 8
    for (int p = 0; p < D::kPairs; ++p) {
      __m256 w0, w1;
      D::pair(grp, p, w0, w1);
      _mm256_storeu_ps(out + D::off0(p), w0);
      _mm256_storeu_ps(out + D::off1(p), w1);
    }
  }
}

float* thread_panel() {
  thread_local std::unique_ptr<float[]> panel(new (std::nothrow) float[kPanelRows * kDepth]);
  return panel.get();
}

template <class D>
void gemm_rows(const KernelArgs& a, int64_t n_begin, int64_t n_end, float* panel) {
  const int64_t M = a.M, K = a.K, N = a.N;
  const int64_t k_main = (K / D::kGroup) * D::kGroup;
  for (int64_t nb = n_begin; nb < n_end; nb += kPanelRows) {
    const int64_t rows_in_panel = std::min(kPanelRows, n_end - nb);
    for (int64_t k0 = 0; k0 < k_main; k0 += kDepth) {
      const int64_t depth = std::min(kDepth, k_main - k0);
      for (int64_t r = 0; r < rows_in_panel; ++r)
          dequantize_span<D>(a.w.row(nb + r), k0, depth, panel + r * depth);
      for (int64_t mb = 0; mb < M; mb += kRowsOfX) {
        const int64_t m_end = std::min(M, mb + kRowsOfX);
        for (int64_t j0 = 0; j0 < rows_in_panel; j0 += kRowsPerTile) {
          const int valid = int(std::min<int64_t>(kRowsPerTile, rows_in_panel - j0));
          const float* w[kRowsPerTile];
          for (int j = 0; j < kRowsPerTile; ++j) {
            const int64_t r = j0 + std::min(j, valid - 1);
            w[j] = panel + r * depth;
          }
          for (int64_t m0 = mb; m0 < m_end; m0 += kMaxTileM) {
            const int mt = int(std::min<int64_t>(kMaxTileM, m_end - m0));
            const float* x = a.x + m0 * K + k0;
            float tile[kMaxTileM][kRowsPerTile];
            if (mt == 3)
              micro_kernel<3>(x, K, w, depth, tile);
            else if (mt == 2)
              micro_kernel<2>(x, K, w, depth, tile);
            else
              micro_kernel<1>(x, K, w, depth, tile);
            for (int m = 0; m < mt; ++m) {
              float* y = a.y + (m0 + m) * N + nb + j0;
              for (int j = 0; j < valid; ++j) {
                const float start = k0 > 0 ? y[j] : (a.bias ? a.bias[nb + j0 + j] : 0.0f);
                y[j] = start + tile[m][j];
              }
            }
          }
        }
      }
    }
    // Plain formats: the K % 16 tail (and K < 16 entirely) in scalar code.
    if (k_main < K || k_main == 0) {
      for (int64_t r = 0; r < rows_in_panel; ++r) {
        const int64_t n = nb + r;
        for (int64_t m = 0; m < M; ++m) {
          const float t = plain_tail_dot(a.w.format, a.w.row(n), a.x + m * K, k_main, K);
          float& y = a.y[m * N + n];
          y = (k_main > 0 ? y : (a.bias ? a.bias[n] : 0.0f)) + t;
        }
      }
    }
  }
}

}  // namespace

bool gemm_packed(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  float* panel = thread_panel();
  if (!panel) return false;
  visit_decoder(a.w.format, a.w.block, [&](auto decoder) {
    gemm_rows<decltype(decoder)>(a, n_begin, n_end, panel);
  });
  return true;
}

}  // namespace pyrt::cpu::avx2
