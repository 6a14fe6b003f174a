// Small-M AVX2 path: four weight rows in flight, each decoded in registers group by group (no
// scratch buffer) and multiplied with one or two rows of x. Horizontal sums only at the end of a
// row. At M = 1 the weight bytes are read exactly once, which is the bound for decoding.
#include <algorithm>

#include "cpu/matmul_avx2.h"
#include "cpu/tile_avx2.h"
#include "pyrt/format_dispatch.h"

namespace pyrt::cpu::avx2 {
namespace {

// Computes out[m][r] = x[m, 0:groups*G] . W[rows[r], 0:groups*G] for m < MT.
// With one x row each output gets two accumulators (the pair's halves), so eight FMA chains are
// in flight, enough to cover the FMA latency; with two x rows there are already eight.
template <class D, int MT>
void gemv_tile(const uint8_t* const rows[kRowsPerTile], const float* x, int64_t ldx,
               int64_t groups, float out[MT][kRowsPerTile]) {
  constexpr int kSplit = MT == 1 ? 2 : 1;
  __m256 acc[MT][kRowsPerTile][kSplit];
  for (int m = 0; m < MT; ++m)
    for (int r = 0; r < kRowsPerTile; ++r)
      for (int s = 0; s < kSplit; ++s) acc[m][r][s] = _mm256_setzero_ps();

  const float* table = fp16_table();
  for (int64_t g = 0; g < groups; ++g) {
    const float* xg = x + g * D::kGroup;
#pragma GCC unroll 4
    for (int r = 0; r < kRowsPerTile; ++r) {
      const typename D::Group grp = D::group(rows[r], g, table);
#pragma GCC unroll 8
      for (int p = 0; p < D::kPairs; ++p) {
        __m256 w0, w1;
        D::pair(grp, p, w0, w1);
#pragma GCC unroll 2
        for (int m = 0; m < MT; ++m) {
          const float* xm = xg + m * ldx;
          acc[m][r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xm + D::off0(p)), w0, acc[m][r][0]);
          acc[m][r][kSplit - 1] =
              _mm256_fmadd_ps(_mm256_loadu_ps(xm + D::off1(p)), w1, acc[m][r][kSplit - 1]);
        }
      }
    }
  }
  for (int m = 0; m < MT; ++m) {
    __m256 s[kRowsPerTile];
    for (int r = 0; r < kRowsPerTile; ++r)
      s[r] = kSplit == 2 ? _mm256_add_ps(acc[m][r][0], acc[m][r][kSplit - 1]) : acc[m][r][0];
    _mm_storeu_ps(out[m], hsum4(s[0], s[1], s[2], s[3]));
  }
}

// Same result for the blocked formats, with the scale factored out of each block:
// sum_k x_k (q_k d + o) = d * sum_k x_k q_k + o * sum_k x_k. Per 32 weights this saves four
// dequantizing FMAs (or multiplies) for one FMA per block, and the x sums are shared by all four rows.
template <class D, int MT>
void gemv_tile_blocked(const uint8_t* const rows[kRowsPerTile], const uint8_t* const next[kRowsPerTile],
                       const float* x, int64_t ldx, int64_t groups, float out[MT][kRowsPerTile]) {
  __m256 acc[MT][kRowsPerTile];
  for (int m = 0; m < MT; ++m)
    for (int r = 0; r < kRowsPerTile; ++r) acc[m][r] = _mm256_setzero_ps();

  const float* table = fp16_table();
  for (int64_t g = 0; g < groups; ++g) {
    const float* xg = x + g * D::kGroup;
    __m256 xsum[MT], seed[MT];
    for (int m = 0; m < MT; ++m) {
      xsum[m] = _mm256_setzero_ps();
      if constexpr (D::kUsesXsum) {
#pragma GCC unroll 16
        for (int k = 0; k < D::kGroup; k += 8) xsum[m] = _mm256_add_ps(xsum[m], _mm256_loadu_ps(xg + m * ldx + k));
      }
      seed[m] = D::dot_seed(xsum[m]);
    }
    // Quantized rows are short (2.3 KB for q4, K=4096): the hardware prefetcher would relearn
    // four streams every tile. Fetch the next tile's rows, one line per 64 bytes, meanwhile.
    if (((g * D::kGroupBytes) & 63) < D::kGroupBytes)
      for (int r = 0; r < kRowsPerTile; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(next[r] + g * D::kGroupBytes), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int r = 0; r < kRowsPerTile; ++r) {
      const typename D::Group grp = D::group(rows[r], g, table);
      // One chain per block and x row; the four rows (and the next block, out of order) keep
      // enough chains in flight. Two chains measured no faster (1 more add per block).
      __m256 dot[MT];
      for (int m = 0; m < MT; ++m) dot[m] = seed[m];
#pragma GCC unroll 8
      for (int p = 0; p < D::kPairs; ++p) {
        __m256 q0, q1;
        D::raw_pair(grp, p, q0, q1);
#pragma GCC unroll 2
        for (int m = 0; m < MT; ++m) {
          const float* xm = xg + m * ldx;
          dot[m] = _mm256_fmadd_ps(_mm256_loadu_ps(xm + D::off0(p)), q0, dot[m]);
          dot[m] = _mm256_fmadd_ps(_mm256_loadu_ps(xm + D::off1(p)), q1, dot[m]);
        }
      }
      for (int m = 0; m < MT; ++m) acc[m][r] = D::apply_block(grp, dot[m], xsum[m], acc[m][r]);
    }
  }
  for (int m = 0; m < MT; ++m) _mm_storeu_ps(out[m], hsum4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]));
}

template <class D, int MT>
void gemv_any(const uint8_t* const rows[kRowsPerTile], const uint8_t* const next[kRowsPerTile],
              const float* x, int64_t ldx, int64_t groups, float out[MT][kRowsPerTile]) {
  if constexpr (D::kScaledBlocks)
    gemv_tile_blocked<D, MT>(rows, next, x, ldx, groups, out);
  else
    gemv_tile<D, MT>(rows, x, ldx, groups, out);
}

// y[n[r]] for the kRowsPerTile rows `rows` (n[r] their indices; the first `valid` are written).
template <class D>
void gemv_row_tile(const KernelArgs& a, const uint8_t* const rows[kRowsPerTile], const uint8_t* const next[kRowsPerTile],
                   const int64_t n[kRowsPerTile], int valid) {
  const int64_t groups = a.K / D::kGroup;
  const int64_t k_main = groups * D::kGroup;  // the rest (plain formats only) is the scalar tail
  for (int64_t m0 = 0; m0 < a.M; m0 += 2) {
    const int mt = int(std::min<int64_t>(2, a.M - m0));
    const float* x = a.x + m0 * a.K;
    float tile[2][kRowsPerTile];
    if (mt == 2)
      gemv_any<D, 2>(rows, next, x, a.K, groups, tile);
    else
      gemv_any<D, 1>(rows, next, x, a.K, groups, tile);
    for (int m = 0; m < mt; ++m) {
      float* y = a.y + (m0 + m) * a.N;
      for (int r = 0; r < valid; ++r) {
        float v = tile[m][r];
        if (k_main < a.K) v += plain_tail_dot(a.w.format, rows[r], x + m * a.K, k_main, a.K);
        y[n[r]] = a.bias ? v + a.bias[n[r]] : v;
      }
    }
  }
}

template <class D>
void gemv_rows(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  const uint8_t* rows[kRowsPerTile];
  const uint8_t* next[kRowsPerTile];
  int64_t n[kRowsPerTile];
  if (a.M == 1) {
    // Rows r of a tile a quarter of this thread's rows apart: 4 streams through memory, where 4
    // adjacent short rows would be one (as in gemv_avx512.cc). Each row's sum is unchanged.
    const int64_t quarter = (n_end - n_begin) / kRowsPerTile;
    for (int64_t i = 0; i < quarter; ++i) {
      for (int r = 0; r < kRowsPerTile; ++r) {
        n[r] = n_begin + i + r * quarter;
        rows[r] = a.w.row(n[r]);
        next[r] = a.w.row(i + 1 < quarter ? n[r] + 1 : n[r]);
      }
      gemv_row_tile<D>(a, rows, next, n, kRowsPerTile);
    }
    n_begin += quarter * kRowsPerTile;
  }
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kRowsPerTile) {
    const int valid = int(std::min<int64_t>(kRowsPerTile, n_end - n0));
    tile_rows(a.w, n0, valid, rows);
    // the next tile's rows (this one's again at the end)
    const int64_t n_next = n0 + kRowsPerTile < n_end ? n0 + kRowsPerTile : n0;
    tile_rows(a.w, n_next, int(std::min<int64_t>(kRowsPerTile, n_end - n_next)), next);
    for (int r = 0; r < kRowsPerTile; ++r) n[r] = n0 + r;
    gemv_row_tile<D>(a, rows, next, n, valid);
  }
}

}  // namespace

void gemv_small_m(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  visit_format(a.w.format, a.w.block, [&](auto fb) { gemv_rows<Decoder<fb.format, fb.block>>(a, n_begin, n_end); });
}

}  // namespace pyrt::cpu::avx2
