// AVX-512 VNNI int8-activation kernel, small M (docs/int8.md): weights streamed once, decoded in
// registers to unsigned byte codes, one vpdpbusd (u8 x s8 -> 4 products summed into each int32
// lane) per 64 weights and activation row.
// Signedness: vpdpbusd needs one unsigned operand. The 4-bit codes are unsigned already (nibbles
// 0..15); q8 codes are made unsigned by flipping the sign bit (q_w + 128, one xor per 64 weights,
// shared by every activation row). The offsets come back out per block through the activation
// block sum S = d_x * sum(q_x), which the quantizer already computed:
//   q8: d_w d_x sum(q_x (q_w + 128)) - 128 d_w S     q4: d_w d_x sum(q_x n) - 8 d_w S
//   q4a: d_w d_x sum(q_x n) + m S                    q4n: d_w d_x sum(q_x (level + 128)) - 128 d_w S
//   q5: d_w d_x sum(q_x code) - 16 d_w S (codes 0..31, unsigned already)
// A vector of 64 weights covers two blocks (B = 32), one (B = 64) or half of one (B = 128); the
// per-lane scales d_x and the per-lane correction (S in one lane per block) are expanded once per
// call into a small table, so each product costs dpbusd, cvt and two FMAs. For 4-bit weights with
// B = 32 the weights stay in decode_chunk's split order and the activations are permuted once per
// call to match, which saves the cross-lane shuffle per 64 weights and row.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/int8_avx512.h"
#include "cpu/nibble_group_avx512.h"
#include "cpu/row_streams.h"
#include "cpu/scratch.h"
#include "pyrt/format_dispatch.h"

namespace pyrt::cpu::avx512 {
namespace {

constexpr int kRowsInFlight = 4;
constexpr int kMaxXRows = 4;

// 4-bit weights with B = 32 decode in decode_chunk's split order; the activations are permuted to
// match once per call.
template <Format F, int B>
constexpr bool kSplitOrder = B == 32 && F != Format::q8 && F != Format::q5;

// What a call builds once per thread before its row groups: per activation row and chunk of 64,
// d_x in each of the 16 lanes, then the correction term (kSumCoefficient * S) in the first lane of
// each block (zero elsewhere, so the final horizontal sum adds it once), M * K / 2 floats; and, in
// the split order, the activation codes permuted to it and zero-padded to whole chunks.
struct CallTables {
  const float* lanes;
  const int8_t* codes;      // activation row m starts at codes + m * code_stride
  int64_t code_stride;
};

template <Format F, int B>
CallTables call_tables(const Int8KernelArgs& a) {
  constexpr bool split = kSplitOrder<F, B>;
  const int64_t nchunks = (a.K + 63) / 64, nb = a.K / B;
  const size_t table_bytes = size_t(a.M * nchunks * 32) * sizeof(float);
  const size_t code_bytes = split ? size_t(a.M * nchunks * 64) : 0;
  auto* base = static_cast<uint8_t*>(thread_scratch(3, table_bytes + code_bytes));
  float* table = reinterpret_cast<float*>(base);
  for (int64_t m = 0; m < a.M; ++m)
    for (int64_t c = 0; c < nchunks; ++c) {
      float* dx = table + (m * nchunks + c) * 32;
      float* cs = dx + 16;
      for (int l = 0; l < 16; ++l) {
        int64_t blk;
        bool first;
        if constexpr (split) {
          blk = 2 * c + (l / 4) % 2;
          first = l == 0 || l == 4;
        } else {
          blk = B == 32 ? 2 * c + l / 8 : c * 64 / B;
          first = B == 32 ? l % 8 == 0 : (l == 0 && (B == 64 || (c & 1) == 0));
        }
        const bool valid = blk < nb;
        dx[l] = valid ? a.scale[m * nb + blk] : 0.0f;
        cs[l] = valid && first ? kSumCoefficient<F> * a.sum[m * nb + blk] : 0.0f;
      }
    }
  if constexpr (!split) {
    return CallTables{table, a.q, a.K};
  } else {
    int8_t* codes = reinterpret_cast<int8_t*>(base + table_bytes);
    for (int64_t m = 0; m < a.M; ++m)
      for (int64_t c = 0; c < nchunks; ++c)
        for (int g = 0; g < 4; ++g) {  // 16 elements at a time; K is a multiple of 32
          const int64_t k = c * 64 + g * 16;
          int8_t* dst = codes + m * nchunks * 64 + c * 64 + split_chunk_position(g * 16);
          if (k < a.K)
            std::memcpy(dst, a.q + m * a.K + k, 16);
          else
            std::memset(dst, 0, 16);
        }
    return CallTables{table, codes, nchunks * 64};
  }
}

// One chunk of 64 elements for every (activation row, weight row) pair of the tile.
template <Format F, int B, int MB, int R, bool kWhole>
inline void chunk_step(const Int8KernelArgs& a, const uint8_t* const (&w)[R], const uint8_t* const (&next)[R],
                       const int8_t* const (&x)[MB], const float* const (&t)[MB], int64_t c, bool prefetch,
                       __m512 (&acc)[MB][R]) {
  const int64_t K = a.K, row_len = a.w.row_stride;
  {
    if (prefetch) {
      // Quantized rows are short; fetch the next row group while this one computes (TileRows, row_streams.h).
      const int64_t off = chunk_byte_offset<F, B>(c);
      for (int r = 0; r < R; ++r)
        if (off < row_len) _mm_prefetch(reinterpret_cast<const char*>(next[r] + off), _MM_HINT_T0);
    }
    constexpr bool split = kSplitOrder<F, B>;
    // In the split order the activation copy is zero-padded to whole chunks.
    const __mmask64 xmask = kWhole || split ? ~__mmask64(0) : ((__mmask64(1) << (K - c * 64)) - 1);
    __m512i codes[R];
    __m512 dw[R], mw[R];
    for (int r = 0; r < R; ++r) mw[r] = _mm512_setzero_ps();  // read only by q4a; silences GCC
    for (int r = 0; r < R; ++r) codes[r] = decode_chunk<F, B, kWhole, split>(w[r], c, K, &dw[r], &mw[r]);
    for (int m = 0; m < MB; ++m) {
      const __m512i xv = _mm512_maskz_loadu_epi8(xmask, x[m] + c * 64);
      const __m512 dx = _mm512_loadu_ps(t[m] + c * 32), cs = _mm512_loadu_ps(t[m] + c * 32 + 16);
      for (int r = 0; r < R; ++r) {
        const __m512 p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[r], xv));
        if constexpr (F == Format::q4a) {
          acc[m][r] = _mm512_fmadd_ps(_mm512_mul_ps(p, dx), dw[r], acc[m][r]);
          acc[m][r] = _mm512_fmadd_ps(cs, mw[r], acc[m][r]);
        } else {
          acc[m][r] = _mm512_fmadd_ps(_mm512_fmadd_ps(p, dx, cs), dw[r], acc[m][r]);
        }
      }
    }
  }
}

template <Format F, int B, int MB, int R>
void int8_tile(const Int8KernelArgs& a, const CallTables& tables, int64_t n0, int64_t m0, int64_t step = 1) {
  const int64_t K = a.K, nchunks = (K + 63) / 64;
  const TileRows<R> rows(a, n0, step);
  const auto& w = rows.w;
  const int8_t* x[MB];
  const float* t[MB];
  for (int m = 0; m < MB; ++m) {
    x[m] = tables.codes + (m0 + m) * tables.code_stride;
    t[m] = tables.lanes + (m0 + m) * nchunks * 32;
  }
  __m512 acc[MB][R];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  const int64_t whole = K / 64;  // chunks of 64 elements; a B = 32 row may end with a half chunk
  for (int64_t c = 0; c < nchunks; ++c) {
    if (c < whole)
      chunk_step<F, B, MB, R, true>(a, w, rows.next, x, t, c, m0 == 0, acc);
    else
      chunk_step<F, B, MB, R, false>(a, w, rows.next, x, t, c, m0 == 0, acc);
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < R; ++r) {
      const int64_t row = m0 + m;  // tiles start at even rows and hold even counts when paired
      const int64_t n = n0 + r * step;
      const float v = _mm512_reduce_add_ps(acc[m][r]);
      if (a.digit_pairs && (row & 1))
        a.y[(row / 2) * a.N + n] += v;
      else
        a.y[(a.digit_pairs ? row / 2 : row) * a.N + n] = v + (a.bias ? a.bias[n] : 0.0f);
    }
}

// M = 1, 4-bit weights with B = 32: nibble groups of 128 weights (nibble_group_avx512.h). One
// gathered register holds four blocks' nibbles, dword j of block j/4, so its low nibbles and its
// high nibbles are two vectors of 64 codes whose vpdpbusd products land in their own block's lanes;
// one conversion and two FMAs per 128 weights then apply d_x, the offset term and d_w per lane.
// About 11 vector operations per 128 weights and row instead of about 26 (two chunks of 64).
// Tables, per group g: codes [g*128, +64) the activation codes of the four blocks' first halves
// (elements 0-15 of each), [+64, +128) their second halves; lanes [g*32, +16) d_x of lane j's block,
// [+16, +32) kSumCoefficient * S / 4 (each of a block's four lanes carries a quarter).
struct GroupTables {
  const int8_t* codes;
  const float* lanes;
};

template <Format F>
GroupTables group_tables(const Int8KernelArgs& a, int64_t groups) {
  auto* base = static_cast<uint8_t*>(thread_scratch(0, size_t(groups) * (kGroupWeights + 32 * sizeof(float))));
  float* lanes = reinterpret_cast<float*>(base);
  int8_t* codes = reinterpret_cast<int8_t*>(base + groups * 32 * sizeof(float));
  for (int64_t g = 0; g < groups; ++g)
    for (int b = 0; b < 4; ++b) {
      const int64_t blk = 4 * g + b;
      std::memcpy(codes + g * kGroupWeights + 16 * b, a.q + blk * 32, 16);
      std::memcpy(codes + g * kGroupWeights + 64 + 16 * b, a.q + blk * 32 + 16, 16);
      for (int l = 0; l < 4; ++l) {
        lanes[g * 32 + 4 * b + l] = a.scale[blk];
        lanes[g * 32 + 16 + 4 * b + l] = 0.25f * kSumCoefficient<F> * a.sum[blk];
      }
    }
  return GroupTables{codes, lanes};
}

template <Format F, int R>
void int8_group_rows(const Int8KernelArgs& a, const NibbleGroupLoader<F>& loader, const GroupTables& gt,
                     const CallTables* tail, int64_t n0, int64_t step = 1) {
  constexpr int64_t gb = NibbleGroupLoader<F>::kBytes;
  const int64_t groups = a.K / kGroupWeights;
  const TileRows<R> rows(a, n0, step);
  const auto& w = rows.w;
  __m512 acc[1][R];
  for (int r = 0; r < R; ++r) acc[0][r] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t g = 0; g < groups; ++g) {
    rows.prefetch_next(g * gb, (g + 1) * gb);
    const __m512i x_lo = _mm512_loadu_si512(gt.codes + g * kGroupWeights);
    const __m512i x_hi = _mm512_loadu_si512(gt.codes + g * kGroupWeights + 64);
    const __m512 dx = _mm512_loadu_ps(gt.lanes + g * 32), cs = _mm512_loadu_ps(gt.lanes + g * 32 + 16);
    for (int r = 0; r < R; ++r) {
      __m512i scales;
      const __m512i nib = loader.load(w[r] + g * gb, &scales);
      const __m512i lo = nibble_codes<F>(_mm512_and_si512(nib, low4));
      const __m512i hi = nibble_codes<F>(_mm512_and_si512(_mm512_srli_epi16(nib, 4), low4));
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, x_lo), hi, x_hi);
      const __m512 p = _mm512_cvtepi32_ps(dot);
      const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(scales));
      if constexpr (F == Format::q4a) {
        acc[0][r] = _mm512_fmadd_ps(_mm512_mul_ps(p, dx), dw, acc[0][r]);
        acc[0][r] = _mm512_fmadd_ps(cs, _mm512_cvtph_ps(_mm512_extracti64x4_epi64(scales, 1)), acc[0][r]);
      } else {
        acc[0][r] = _mm512_fmadd_ps(_mm512_fmadd_ps(p, dx, cs), dw, acc[0][r]);
      }
    }
  }
  if (tail) {  // the one to three blocks after the last whole group: the chunk kernel
    const int64_t nchunks = (a.K + 63) / 64, whole = a.K / 64;
    const int8_t* x[1] = {tail->codes};
    const float* t[1] = {tail->lanes};
    for (int64_t c = 2 * groups; c < nchunks; ++c) {
      if (c < whole)
        chunk_step<F, kGroupBlock, 1, R, true>(a, w, rows.next, x, t, c, false, acc);
      else
        chunk_step<F, kGroupBlock, 1, R, false>(a, w, rows.next, x, t, c, false, acc);
    }
  }
  for (int r = 0; r < R; ++r) {
    const int64_t n = n0 + r * step;
    a.y[n] = _mm512_reduce_add_ps(acc[0][r]) + (a.bias ? a.bias[n] : 0.0f);
  }
}

template <Format F>
void int8_gemv_single_row(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  const NibbleGroupLoader<F> loader;
  const int64_t groups = a.K / kGroupWeights;
  const GroupTables gt = group_tables<F>(a, groups);
  // One to three blocks after the last whole group go through the chunk kernel, with its tables
  // (built for all of K, a few hundred stores). Treating them as a zero-padded partial group
  // instead was measured 7 % slower at K = 576 (SmolLM2's width): a full group's work per row.
  CallTables tail_tables{};
  const bool has_tail = a.K % kGroupWeights != 0;
  if (has_tail) tail_tables = call_tables<F, kGroupBlock>(a);
  const CallTables* tail = has_tail ? &tail_tables : nullptr;
  for_row_streams<kRowsInFlight>(
      n_begin, n_end, [&](int64_t n, int64_t step) { int8_group_rows<F, kRowsInFlight>(a, loader, gt, tail, n, step); },
      [&](int64_t n) { int8_group_rows<F, 1>(a, loader, gt, tail, n); });
}

template <Format F, int B, int R>
void int8_rows(const Int8KernelArgs& a, const CallTables& tables, int64_t n0) {
  int64_t m0 = 0;
  for (; m0 + kMaxXRows <= a.M; m0 += kMaxXRows) int8_tile<F, B, kMaxXRows, R>(a, tables, n0, m0);
  switch (a.M - m0) {
    case 1: int8_tile<F, B, 1, R>(a, tables, n0, m0); break;
    case 2: int8_tile<F, B, 2, R>(a, tables, n0, m0); break;
    case 3: int8_tile<F, B, 3, R>(a, tables, n0, m0); break;
    default: break;
  }
}

template <Format F, int B>
void int8_gemv_format(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  if constexpr (F != Format::q8 && F != Format::q5 && B == kGroupBlock) {
    if (a.M == 1 && !a.digit_pairs && a.K >= kGroupWeights) return int8_gemv_single_row<F>(a, n_begin, n_end);
  }
  const CallTables tables = call_tables<F, B>(a);
  if (a.M == 1)  // row_streams.h
    return for_row_streams<kRowsInFlight>(
        n_begin, n_end, [&](int64_t n, int64_t step) { int8_tile<F, B, 1, kRowsInFlight>(a, tables, n, 0, step); },
        [&](int64_t n) { int8_tile<F, B, 1, 1>(a, tables, n, 0); });
  int64_t n = n_begin;
  for (; n + kRowsInFlight <= n_end; n += kRowsInFlight) int8_rows<F, B, kRowsInFlight>(a, tables, n);
  for (; n < n_end; ++n) int8_rows<F, B, 1>(a, tables, n);
}

}  // namespace

void int8_gemv(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  visit_blocked_format(a.w.format, a.w.block,
                       [&](auto fb) { int8_gemv_format<fb.format, fb.block>(a, n_begin, n_end); });
}

}  // namespace pyrt::cpu::avx512
