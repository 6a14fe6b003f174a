// Small-M AVX-512 path (memory-bound, GEMV-like): each weight row is streamed once and decoded in
// registers; R rows are in flight together to hide load latency, and every decoded weight vector is
// reused for MB rows of x. y is reduced horizontally only once per (m, n).
#include "cpu/gemv_avx512.h"

#include <algorithm>
#include <cstring>

#include "cpu/decode_avx512.h"
#include "cpu/nibble_group_avx512.h"
#include "cpu/repacked_gemv_avx512.h"
#include "cpu/row_streams.h"
#include "cpu/scratch.h"
#include "pyrt/format_dispatch.h"

namespace pyrt::cpu::avx512 {
namespace {

constexpr int kRowsInFlight = 4;
constexpr int kMaxXRows = 4;

// Two accumulators per (m, r) when registers allow: the lo/hi halves of a q4 chunk then feed
// independent FMA chains, so M=1 is not bound by FMA latency.
template <int MB, int R>
constexpr int kSplit = (MB * R <= 8) ? 2 : 1;

template <int MB, int R, int S>
inline void store_results(const KernelArgs& a, int64_t n0, int64_t m0, int64_t step, __m512 (&acc)[S][MB][R]) {
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < R; ++r) {
      __m512 v = acc[0][m][r];
      if constexpr (S == 2) v = _mm512_add_ps(v, acc[1][m][r]);
      const int64_t n = n0 + r * step;
      a.y[(m0 + m) * a.N + n] = _mm512_reduce_add_ps(v) + (a.bias ? a.bias[n] : 0.0f);
    }
}

// Row r of a tile is n0 + r * step: step = 1 reads R consecutive rows, a larger step R separate streams.
template <Format F, int MB, int R>
void gemv_plain(const KernelArgs& a, int64_t n0, int64_t m0, int64_t step = 1) {
  constexpr int S = kSplit<MB, R>;
  const int64_t K = a.K;
  const float* x[MB];
  for (int m = 0; m < MB; ++m) x[m] = a.x + (m0 + m) * K;
  const uint8_t* w[R];
  for (int r = 0; r < R; ++r) w[r] = a.w.row(n0 + r * step);
  __m512 acc[S][MB][R];
  for (int s = 0; s < S; ++s)
    for (int m = 0; m < MB; ++m)
      for (int r = 0; r < R; ++r) acc[s][m][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 * S <= K; k += 16 * S) {
    for (int s = 0; s < S; ++s)
      for (int r = 0; r < R; ++r) {
        const __m512 wv = load_plain16<F>(w[r], k + 16 * s);
        for (int m = 0; m < MB; ++m)
          acc[s][m][r] = _mm512_fmadd_ps(_mm512_loadu_ps(x[m] + k + 16 * s), wv, acc[s][m][r]);
      }
  }
  for (; k < K; k += 16) {
    const __mmask16 mask = tail_mask(K - k < 16 ? K - k : 16);
    for (int r = 0; r < R; ++r) {
      const __m512 wv = load_plain16_masked<F>(w[r], k, mask);
      for (int m = 0; m < MB; ++m)
        acc[0][m][r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, x[m] + k), wv, acc[0][m][r]);
    }
  }
  store_results<MB, R, S>(a, n0, m0, step, acc);
}

// An FP16 value's FP32 bit pattern by integer arithmetic (normal numbers; zero, subnormals, Inf
// and NaN through F16C): keeps the per-block scale off the vector pipes. pyrt/half.h's
// fp16_to_fp32 computes the same, but its ldexp call for subnormals made the compiler spill the
// accumulators around the loop and broadcast through vmovd + vbroadcastss: 18.3 weights/ns in L2.
inline uint32_t fp16_to_fp32_bits(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  const uint32_t magnitude = h & 0x7FFFu;
  if (magnitude >= 0x0400u && magnitude < 0x7C00u) [[likely]]
    return (uint32_t(h & 0x8000u) << 16) | ((magnitude << 13) + 0x38000000u);
  const float f = _cvtsh_ss(h);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

// q8 with one row of x: per row and block, the products into a fresh partial sum and one FMA by
// the block's scale, converted from FP16 in integer registers. At block 32 that is 8 vector ops;
// converting the scale in vector registers (vmovd, vcvtph2ps, vbroadcastss) and a second
// accumulator per row took 11. Zen 4, one thread, in L2: 18.2 -> 21.1 weights/ns at K = 4096,
// 16.9 -> 19.0 at K = 576; from DRAM no change (docs/benchmarks.md, "Session 11").
template <int B, int R>
void gemv_q8_one_x_row(const KernelArgs& a, int64_t n0, int64_t m0, int64_t step) {
  using L = BlockOf<Format::q8, B>;
  constexpr int64_t bb = L::bytes;
  const int64_t nblocks = a.K / B;
  const float* x = a.x + m0 * a.K;
  const TileRows<R> rows(a, n0, step);
  const auto& w = rows.w;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t k0 = b * B;
    if (m0 == 0) rows.prefetch_next(b * bb, (b + 1) * bb);  // once per row group, not per tile of x rows
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w[r] + b * bb;
      const uint8_t* q = blk + L::quants_offset;
      __m512 part = _mm512_mul_ps(_mm512_loadu_ps(x + k0), load_q8x16(q));
      for (int c = 16; c < B; c += 16) part = _mm512_fmadd_ps(_mm512_loadu_ps(x + k0 + c), load_q8x16(q + c), part);
      const __m512 d = _mm512_castsi512_ps(_mm512_set1_epi32(int32_t(fp16_to_fp32_bits(blk + L::scale_offset))));
      acc[r] = _mm512_fmadd_ps(part, d, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const int64_t n = n0 + r * step;
    a.y[m0 * a.N + n] = _mm512_reduce_add_ps(acc[r]) + (a.bias ? a.bias[n] : 0.0f);
  }
}

template <Format F, int B, int MB, int R>
void gemv_quant(const KernelArgs& a, int64_t n0, int64_t m0, int64_t step = 1) {
  constexpr int S = kSplit<MB, R>;
  using L = BlockOf<F, B>;
  constexpr int64_t bb = L::bytes;
  const int64_t K = a.K, nblocks = K / B;
  const float* x[MB];
  for (int m = 0; m < MB; ++m) x[m] = a.x + (m0 + m) * K;
  const TileRows<R> rows(a, n0, step);
  const auto& w = rows.w;
  __m512 acc[S][MB][R];
  for (int s = 0; s < S; ++s)
    for (int m = 0; m < MB; ++m)
      for (int r = 0; r < R; ++r) acc[s][m][r] = _mm512_setzero_ps();

  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t k0 = b * B;
    if (m0 == 0) rows.prefetch_next(b * bb, (b + 1) * bb);  // once per row group, not per tile of x rows
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w[r] + b * bb;
      if constexpr (F == Format::q8) {
        static_assert(MB > 1, "one row of x: gemv_q8_one_x_row");
        const __m512 d = _mm512_set1_ps(load_fp16(blk + L::scale_offset));
        for (int c = 0; c < B; c += 16) {
          const __m512 wv = _mm512_mul_ps(load_q8x16(blk + L::quants_offset + c), d);
          for (int m = 0; m < MB; ++m)
            acc[(c / 16) % S][m][r] = _mm512_fmadd_ps(_mm512_loadu_ps(x[m] + k0 + c), wv, acc[(c / 16) % S][m][r]);
        }
      } else if constexpr (F == Format::q5) {
        const Q5Values<B> v(blk);
        for (int c = 0; c < B / 2; c += 16) {
          __m512 lo, hi;
          v.pair(c, &lo, &hi);
          for (int m = 0; m < MB; ++m) {
            acc[0][m][r] = _mm512_fmadd_ps(_mm512_loadu_ps(x[m] + k0 + c), lo, acc[0][m][r]);
            acc[S - 1][m][r] = _mm512_fmadd_ps(_mm512_loadu_ps(x[m] + k0 + B / 2 + c), hi, acc[S - 1][m][r]);
          }
        }
      } else {
        const uint8_t* q;
        const __m512 table = nibble_value_table<F, B>(blk, &q);
        for (int c = 0; c < B / 2; c += 16) {
          const __m512i idx = load_nibble_pairs(q + c);
          const __m512 lo = low_nibbles(idx, table), hi = high_nibbles(idx, table);
          for (int m = 0; m < MB; ++m) {
            acc[0][m][r] = _mm512_fmadd_ps(_mm512_loadu_ps(x[m] + k0 + c), lo, acc[0][m][r]);
            acc[S - 1][m][r] = _mm512_fmadd_ps(_mm512_loadu_ps(x[m] + k0 + B / 2 + c), hi, acc[S - 1][m][r]);
          }
        }
      }
    }
  }
  store_results<MB, R, S>(a, n0, m0, step, acc);
}

template <Format F, int B, int MB, int R>
inline void gemv_tile(const KernelArgs& a, int64_t n0, int64_t m0, int64_t step = 1) {
  if constexpr (!kBlocked<F>)
    gemv_plain<F, MB, R>(a, n0, m0, step);
  else if constexpr (F == Format::q8 && MB == 1)
    gemv_q8_one_x_row<B, R>(a, n0, m0, step);
  else
    gemv_quant<F, B, MB, R>(a, n0, m0, step);
}

template <Format F, int B, int R>
inline void gemv_rows(const KernelArgs& a, int64_t n0) {
  // m tiles inside the row group: the group's weights (a few KiB) stay in L1/L2 across tiles.
  int64_t m0 = 0;
  for (; m0 + kMaxXRows <= a.M; m0 += kMaxXRows) gemv_tile<F, B, kMaxXRows, R>(a, n0, m0);
  switch (a.M - m0) {
    case 1: gemv_tile<F, B, 1, R>(a, n0, m0); break;
    case 2: gemv_tile<F, B, 2, R>(a, n0, m0); break;
    case 3: gemv_tile<F, B, 3, R>(a, n0, m0); break;
    default: break;
  }
}

// M = 1, 4-bit weights with B = 32: nibble groups (nibble_group_avx512.h) over K's whole groups of
// 128, one block at a time for the blocks after them (a zero-padded partial group was measured 9 %
// slower at K = 576). xp, sums: x permuted by group.permute_x.
template <Format F, int R>
void gemv_nibble_groups(const KernelArgs& a, const NibbleGroup<F>& group, const float* xp, const float* sums,
                        int64_t n0, int64_t step = 1) {
  constexpr int B = kGroupBlock;
  constexpr int64_t gb = NibbleGroup<F>::kBytes;
  const int64_t groups = a.K / kGroupWeights, nblocks = a.K / B;
  const TileRows<R> rows(a, n0, step);
  const auto& w = rows.w;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    rows.prefetch_next(g * gb, (g + 1) * gb);
    for (int r = 0; r < R; ++r)
      acc[r] = group.accumulate(w[r] + g * gb, xp + g * kGroupWeights, sums + g * 16, acc[r]);
  }
  const int64_t first = groups * (kGroupWeights / B);
  for (int r = 0; r < R; ++r)
    acc[r] = accumulate_blocks<F>(w[r] + first * BlockOf<F, B>::bytes, a.x + first * B, nblocks - first, acc[r]);
  for (int r = 0; r < R; ++r) {
    const int64_t n = n0 + r * step;
    a.y[n] = _mm512_reduce_add_ps(acc[r]) + (a.bias ? a.bias[n] : 0.0f);
  }
}

// M = 1, 4-bit weights. B = 32: nibble groups over the file's layout or the repacked copy. B = 64,
// 128 (only with a copy, pyrt/repack.h; q4n at 128 has none): nibble groups in B's nibble order
// over the copy, the per-block kernel for the rows around its quads.
template <Format F, int B>
void gemv_4bit_single_row(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  const NibbleGroup<F, B> group;
  const int64_t groups = a.K / kGroupWeights;
  float* xp = static_cast<float*>(thread_scratch(3, size_t(groups * (kGroupWeights + 16)) * sizeof(float)));
  float* sums = xp + groups * kGroupWeights;
  group.permute_x(a.x, groups, xp, sums);
  auto file_rows = [&](int64_t n, int64_t end) {
    if constexpr (B == kGroupBlock) {
      for_row_streams<kRowsInFlight>(
          n, end, [&](int64_t r, int64_t step) { gemv_nibble_groups<F, kRowsInFlight>(a, group, xp, sums, r, step); },
          [&](int64_t r) { gemv_nibble_groups<F, 1>(a, group, xp, sums, r); });
    } else {
      for (; n + kRowsInFlight <= end; n += kRowsInFlight) gemv_rows<F, B, kRowsInFlight>(a, n);
      for (; n < end; ++n) gemv_rows<F, B, 1>(a, n);
    }
  };
  if (a.w.repacked == nullptr) return file_rows(n_begin, n_end);
  // The repacked copy holds whole quads of rows (pyrt/repack.h): the rows around them, if any,
  // from the file's layout. At B = 32 both sum in the same order, so every row gets the same bits.
  const int64_t q0 = std::min((n_begin + kRepackRows - 1) / kRepackRows * kRepackRows, n_end);
  const int64_t q1 = std::max(q0, n_end / kRepackRows * kRepackRows);
  file_rows(n_begin, q0);
  gemv_repacked_quads<F, B>(a, group, xp, sums, q0, q1);
  file_rows(q1, n_end);
}

template <Format F, int B>
void gemv_format(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  if constexpr ((F == Format::q4 || F == Format::q4a || F == Format::q4n) && B == kGroupBlock) {
    if (a.M == 1 && a.K >= kGroupWeights) return gemv_4bit_single_row<F, B>(a, n_begin, n_end);
  } else if constexpr (has_repacked_layout(F, B)) {
    if (a.M == 1 && a.K >= kGroupWeights && a.w.repacked != nullptr) return gemv_4bit_single_row<F, B>(a, n_begin, n_end);
  }
  if (a.M == 1)  // one stream per core left DRAM bandwidth unused on short rows (row_streams.h)
    return for_row_streams<kRowsInFlight>(
        n_begin, n_end, [&](int64_t n, int64_t step) { gemv_tile<F, B, 1, kRowsInFlight>(a, n, 0, step); },
        [&](int64_t n) { gemv_tile<F, B, 1, 1>(a, n, 0); });
  int64_t n = n_begin;
  for (; n + kRowsInFlight <= n_end; n += kRowsInFlight) gemv_rows<F, B, kRowsInFlight>(a, n);
  for (; n < n_end; ++n) gemv_rows<F, B, 1>(a, n);
}

}  // namespace

void gemv(const KernelArgs& a, int64_t n_begin, int64_t n_end) {
  visit_format(a.w.format, a.w.block, [&](auto fb) { gemv_format<fb.format, fb.block>(a, n_begin, n_end); });
}

}  // namespace pyrt::cpu::avx512
