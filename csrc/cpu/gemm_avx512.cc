// Large-M AVX-512 path: a cache-blocked GEMM. Per block of x rows, x is packed transposed into
// micro-tiles [K][32] (FP32, exact); per panel of kNR weight rows and kKC of K, the weights are
// dequantized once into an FP32 buffer (L1) and reused for every x tile. The micro-kernel holds
// a 32 (x rows, two zmm) x 14 (weight rows) block of y^T in 28 registers: per k it loads two x
// vectors and does 14 broadcast-FMA pairs, so loads stay well below the FMA rate.
// Vectors run along M rather than N so weight panels keep their natural row-major layout (the
// dequantizers write rows; no transpose of weights) and only x, once per call, is transposed.
// K is the outer loop (as in BLIS): one kKC slice of every x tile (<= 512 KiB) stays in L2 while
// all the thread's weight panels pass over it, and the accumulators live in memory between
// slices. With N outer, every panel streamed the whole packed x block (2 MiB for K = 4096) from
// L3: on a 2 MiB-L2 Xeon the micro-kernel ran at 75 % of the FMA peak in place against 85 % with
// its operands cached (measured 2026-12-03, docs/benchmarks.md "Session 6").
#include <algorithm>

#include "cpu/scratch.h"

#include "cpu/decode_avx512.h"
#include "cpu/gemv_avx512.h"
#include "cpu/transpose_avx512.h"
#include "pyrt/format_dispatch.h"

namespace pyrt::cpu::avx512 {
namespace {

constexpr int kMR = 32;       // x rows per micro-tile
constexpr int kNR = 14;       // weight rows per panel
static_assert(kNR <= 16, "store_c_tiles moves accumulator blocks as 16x16 transposes");
constexpr int64_t kKC = 512;  // K per panel (multiple of every q block): 14 x 512 x 4 B = 28 KiB
// Panel row stride: 512 floats + one line, so the 14 rows do not fall into the same L1 sets.
constexpr int64_t kLdw = kKC + 16;

using SegmentFn = void (*)(const uint8_t* row, int64_t k0, int64_t len, float* dst);

SegmentFn segment_fn(const WeightView& w) {
  return visit_format(w.format, w.block, [](auto fb) -> SegmentFn { return dequantize_segment<fb.format, fb.block>; });
}

// c[j][0:16*MV] += sum_k xt[k][0:16*MV] * w[j][k] for j < kNR. Meanwhile it prefetches the
// `count` lines at `prefetch` (the next panel's weights) into L2, one every kc / count values of k:
// issued in one burst they stalled the core once the line-fill queues were full (18 % of an f32
// GEMM's time sat on the prefetch instruction, 2026-12-03), spread out they overlap the FMAs.
template <int MV>
void micro_kernel(const float* xt, const float* w, int64_t kc, float* c, const char* const* prefetch, int64_t count) {
  __m512 acc[MV][kNR];
#pragma GCC unroll 14
  for (int j = 0; j < kNR; ++j)
    for (int v = 0; v < MV; ++v) acc[v][j] = _mm512_loadu_ps(c + j * kMR + 16 * v);
  const int64_t step = count > 0 ? std::max<int64_t>(kc / count, 1) : kc;
  int64_t issued = 0;
  for (int64_t k0 = 0; k0 < kc; k0 += step) {
    if (issued < count) _mm_prefetch(prefetch[issued++], _MM_HINT_T1);
    const int64_t k1 = std::min(kc, k0 + step);
    for (int64_t k = k0; k < k1; ++k) {
      __m512 xv[MV];
      for (int v = 0; v < MV; ++v) xv[v] = _mm512_loadu_ps(xt + k * kMR + 16 * v);
#pragma GCC unroll 14
      for (int j = 0; j < kNR; ++j) {
        const __m512 wj = _mm512_set1_ps(w[j * kLdw + k]);
        for (int v = 0; v < MV; ++v) acc[v][j] = _mm512_fmadd_ps(xv[v], wj, acc[v][j]);
      }
    }
  }
  for (; issued < count; ++issued) _mm_prefetch(prefetch[issued], _MM_HINT_T1);
#pragma GCC unroll 14
  for (int j = 0; j < kNR; ++j)
    for (int v = 0; v < MV; ++v) _mm512_storeu_ps(c + j * kMR + 16 * v, acc[v][j]);
}

// Transposes rows [m0, m0 + mb) of x into tiles [t][k][32]; rows past mb (up to the last whole
// tile) are zero.
void pack_x_tiles(const float* x, int64_t K, int64_t m0, int64_t mb, int64_t tiles, float* xt_buf) {
  const int64_t k16 = K / 16 * 16;
  for (int64_t t = 0; t < tiles; ++t) {
    float* tile = xt_buf + t * K * kMR;
    for (int h = 0; h < kMR / 16; ++h) {
      const int64_t i0 = t * kMR + h * 16;  // first of the 16 rows within the block
      const int64_t valid = std::clamp<int64_t>(mb - i0, 0, 16);
      for (int64_t k0 = 0; k0 < k16; k0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i)
          r[i] = i < valid ? _mm512_loadu_ps(x + (m0 + i0 + i) * K + k0) : _mm512_setzero_ps();
        transpose16x16(r);
        for (int j = 0; j < 16; ++j) _mm512_storeu_ps(tile + (k0 + j) * kMR + h * 16, r[j]);
      }
      for (int64_t k = k16; k < K; ++k)
        for (int i = 0; i < 16; ++i) tile[k * kMR + h * 16 + i] = i < valid ? x[(m0 + i0 + i) * K + k] : 0.0f;
    }
  }
}

// Writes y[m0 + i][n0 + j] = c[j][i] + bias[n0 + j] for i < mb, j < nr from the tiles' [kNR][32]
// accumulator blocks. Reads two rows past each block's kNR (c_buf has the slack); their lanes are
// masked off.
void store_c_tiles(const float* c_buf, int64_t mb, int64_t nr, const float* bias, float* y, int64_t ldy) {
  const __mmask16 mask = __mmask16((1u << nr) - 1);
  const __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias) : _mm512_setzero_ps();
  for (int64_t i0 = 0; i0 < mb; i0 += 16) {
    const float* c = c_buf + (i0 / kMR) * kNR * kMR + (i0 % kMR);
    __m512 r[16];
    for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(c + j * kMR);
    transpose16x16(r);
    const int64_t rows = std::min<int64_t>(16, mb - i0);
    for (int64_t i = 0; i < rows; ++i) _mm512_mask_storeu_ps(y + (i0 + i) * ldy, mask, _mm512_add_ps(r[i], b));
  }
}

// Rows of x per block: every block dequantizes all the weights once more, so as many as the L2
// slice (rows x kKC x 4 B <= 512 KiB) and the packed block's memory (rows x K x 4 B <= 8 MiB) allow.
constexpr int64_t kMaxBlockRows = 256;
int64_t x_block_rows(int64_t K) {
  const int64_t rows = (int64_t(8) << 20) / (std::max<int64_t>(K, 1) * 4);
  return std::clamp<int64_t>(rows / kMR * kMR, kMR, kMaxBlockRows);
}

// Weight rows per pass over K: their accumulators (rows x block rows x 4 B) within ~4 MiB.
int64_t n_block_rows(int64_t mb_max) {
  const int64_t rows = (int64_t(4) << 20) / (mb_max * 4);
  return std::max<int64_t>(rows / kNR * kNR, kNR);
}

// The lines of rows [n0, n0 + nr) x the K slice at seg_begin (seg_bytes per row) into lines[]: in
// K-outer order each panel reads a short segment of 14 rows, too scattered for the hardware
// prefetcher. Returns how many.
int64_t panel_lines(const WeightView& w, int64_t n0, int64_t nr, int64_t seg_begin, int64_t seg_bytes,
                    const char** lines) {
  int64_t count = 0;
  for (int64_t j = 0; j < nr; ++j) {
    const char* p = reinterpret_cast<const char*>(w.row(n0 + j)) + seg_begin;
    for (int64_t off = 0; off < seg_bytes; off += 64) lines[count++] = p + off;
  }
  return count;
}

}  // namespace

void gemm(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  const int64_t M = a.M, N = a.N, K = a.K;
  const SegmentFn dequantize = segment_fn(a.w);
  const int64_t mb_max = x_block_rows(K);
  const int64_t tiles_max = mb_max / kMR;
  const int64_t nc_max = n_block_rows(mb_max);
  const int64_t panels_max = (std::min(nc_max, n_end - n_begin) + kNR - 1) / kNR;
  // Per-thread buffers from a portable file: std::vector here would leak AVX-512 template code.
  float* xt_buf = static_cast<float*>(thread_scratch(0, size_t(tiles_max * K * kMR) * sizeof(float)));
  float* w_buf = static_cast<float*>(thread_scratch(1, size_t(kNR * kLdw) * sizeof(float)));
  // +2 rows of slack: store_c_tiles reads 16 accumulator rows per block, of which kNR are real.
  float* c_all = static_cast<float*>(thread_scratch(2, size_t(panels_max * tiles_max * kNR * kMR + 2 * kMR) * sizeof(float)));
  // The next panel's weight lines (at most kNR rows x kKC f32 weights).
  const char** lines = static_cast<const char**>(thread_scratch(3, size_t(kNR * kKC * 4 / 64 + kNR) * sizeof(const char*)));

  for (int64_t m0 = 0; m0 < M; m0 += mb_max) {
    const int64_t mb = std::min(mb_max, M - m0);
    const int64_t tiles = (mb + kMR - 1) / kMR;
    const int64_t panel_floats = tiles * kNR * kMR;  // one panel's accumulators, [tile][kNR][32]
    pack_x_tiles(a.x, K, m0, mb, tiles, xt_buf);
    for (int64_t nc0 = n_begin; nc0 < n_end; nc0 += nc_max) {
      const int64_t nc1 = std::min(n_end, nc0 + nc_max);
      std::fill(c_all, c_all + ((nc1 - nc0 + kNR - 1) / kNR) * panel_floats, 0.0f);
      for (int64_t k0 = 0; k0 < K; k0 += kKC) {
        const int64_t kc = std::min(kKC, K - k0);
        const int64_t seg_begin = row_bytes(a.w.format, a.w.block, k0);
        const int64_t seg_bytes = row_bytes(a.w.format, a.w.block, k0 + kc) - seg_begin;
        const int64_t first = panel_lines(a.w, nc0, std::min<int64_t>(kNR, nc1 - nc0), seg_begin, seg_bytes, lines);
        for (int64_t i = 0; i < first; ++i) _mm_prefetch(lines[i], _MM_HINT_T1);
        for (int64_t n0 = nc0; n0 < nc1; n0 += kNR) {
          // Rows of a short last panel keep stale buffer contents: they only feed accumulators
          // that are never stored.
          const int64_t nr = std::min<int64_t>(kNR, nc1 - n0);
          const int64_t next = n0 + kNR < nc1 ? panel_lines(a.w, n0 + kNR, std::min<int64_t>(kNR, nc1 - n0 - kNR), seg_begin, seg_bytes, lines) : 0;
          for (int64_t j = 0; j < nr; ++j) dequantize(a.w.row(n0 + j), k0, kc, w_buf + j * kLdw);
          float* c_panel = c_all + ((n0 - nc0) / kNR) * panel_floats;
          for (int64_t t = 0; t < tiles; ++t) {
            const float* xt = xt_buf + t * K * kMR + k0 * kMR;
            float* c = c_panel + t * kNR * kMR;
            // The next panel's lines, shared out over this panel's tiles.
            const int64_t l0 = next * t / tiles, l1 = next * (t + 1) / tiles;
            if (mb - t * kMR > 16)
              micro_kernel<2>(xt, w_buf, kc, c, lines + l0, l1 - l0);
            else
              micro_kernel<1>(xt, w_buf, kc, c, lines + l0, l1 - l0);
          }
        }
      }
      for (int64_t n0 = nc0; n0 < nc1; n0 += kNR)
        store_c_tiles(c_all + ((n0 - nc0) / kNR) * panel_floats, mb, std::min<int64_t>(kNR, nc1 - n0),
                      a.bias ? a.bias + n0 : nullptr, a.y + m0 * N + n0, N);
    }
  }
}

}  // namespace pyrt::cpu::avx512
