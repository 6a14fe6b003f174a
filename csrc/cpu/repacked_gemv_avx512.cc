// Measured in the variants tool (v15 against v8, docs/benchmarks.md "Load-time repacking"): the
// one plain load per group instead of two loads and a two-source permute, 1.23x at M = 1 in L2.
#include "cpu/repacked_gemv_avx512.h"

#include <algorithm>

#include "cpu/decode_avx512.h"

namespace pyrt::cpu::avx512 {
namespace {

// vpermw index from the 4 (q4a: 8) stored FP16 words of a group to NibbleGroupLoader::load's
// order: lane j's block scale in word j, q4a's minimum in word 16 + j (lane j is block j / 4).
inline __m512i scale_word_index() {
  alignas(64) int16_t idx[32];
  for (int w = 0; w < 32; ++w) idx[w] = int16_t(w < 16 ? w / 4 : 4 + (w - 16) / 4);
  return _mm512_load_si512(idx);
}

template <Format F>
inline __m512i load_scales(const uint8_t* at) {
  if constexpr (F == Format::q4a) return _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(at)));
  return _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(at)));
}

}  // namespace

template <Format F>
void gemv_repacked_quads(const KernelArgs& a, const NibbleGroup<F>& group, const float* xp, const float* sums,
                         int64_t q0, int64_t q1) {
  constexpr int R = kRepackRows, kSb = repacked_scale_bytes(F);
  const int64_t groups = a.K / kGroupWeights, quads = a.N / R, nblocks = a.K / kGroupBlock;
  const __m512i scale_words = scale_word_index();
  const int64_t first = groups * (kGroupWeights / kGroupBlock), tail = nblocks - first;
  const int64_t tail_bytes = tail * BlockOf<F, kGroupBlock>::bytes;
  for (int64_t n = q0; n < q1; n += R) {
    const int64_t quad = n / R;
    const uint8_t* nib = a.w.repacked + repacked_nibbles_at(quad, 0, groups);
    const uint8_t* sc = a.w.repacked + repacked_scales_at(F, quad, 0, quads, groups);
    // As the file kernel does for its next row group: the hardware prefetcher alone left the
    // stream from DRAM at half the file layout's speed (measured, bench/bench_repack.py).
    const int64_t next = std::min(quad + 1, quads - 1);
    const uint8_t* nib_next = a.w.repacked + repacked_nibbles_at(next, 0, groups);
    const uint8_t* sc_next = a.w.repacked + repacked_scales_at(F, next, 0, quads, groups);
    for (int64_t off = 0; off < R * tail_bytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(a.w.repacked + repacked_tail_at(F, next, 0, quads, groups, tail_bytes) + off),
                   _MM_HINT_T0);
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(nib_next + (g * R + r) * kRepackNibbleBytes), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(sc_next + g * R * kSb), _MM_HINT_T0);
      for (int r = 0; r < R; ++r) {
        const __m512i nv = _mm512_loadu_si512(nib + (g * R + r) * kRepackNibbleBytes);
        const __m512i sv = _mm512_permutexvar_epi16(scale_words, load_scales<F>(sc + (g * R + r) * kSb));
        acc[r] = group.accumulate_loaded(nv, sv, xp + g * kGroupWeights, sums + g * 16, acc[r]);
      }
    }
    // Blocks after the whole groups: in the copy's tail as the file stores them, decoded per block
    // as the file kernel does.
    for (int r = 0; r < R; ++r)
      acc[r] = accumulate_blocks<F>(a.w.repacked + repacked_tail_at(F, quad, r, quads, groups, tail_bytes),
                                    a.x + first * kGroupBlock, tail, acc[r]);
    for (int r = 0; r < R; ++r) a.y[n + r] = _mm512_reduce_add_ps(acc[r]) + (a.bias ? a.bias[n + r] : 0.0f);
  }
}

namespace {

// One q8 block of one row: gemv_quant<q8, B, 1, R>'s operations in its order (two partial sums
// of 16 lanes, scaled once per block), so the two layouts give the same bits.
template <int B>
inline void q8_block(const uint8_t* q, float d, const float* x, __m512& acc0, __m512& acc1) {
  __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps();
  for (int c = 0; c < B; c += 32) {
    p0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c), load_q8x16(q + c), p0);
    p1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c + 16), load_q8x16(q + c + 16), p1);
  }
  const __m512 dv = _mm512_set1_ps(d);
  acc0 = _mm512_fmadd_ps(p0, dv, acc0);
  acc1 = _mm512_fmadd_ps(p1, dv, acc1);
}

}  // namespace

template <int B>
void gemv_repacked_q8_quads(const KernelArgs& a, int64_t q0, int64_t q1) {
  constexpr Format F = Format::q8;
  constexpr int R = kRepackRows, kQb = repacked_quant_bytes(F), kSb = repacked_scale_bytes(F, B);
  constexpr int kBlocks = kRepackGroupWeights / B;
  using L = BlockOf<F, B>;
  const int64_t groups = a.K / kRepackGroupWeights, quads = a.N / R;
  const int64_t first = groups * kBlocks, tail = a.K / B - first, tail_bytes = tail * L::bytes;
  for (int64_t n = q0; n < q1; n += R) {
    const int64_t quad = n / R;
    const uint8_t* quants = a.w.repacked + repacked_quants_at(F, quad, 0, groups);
    const uint8_t* sc = a.w.repacked + repacked_scales_at(F, B, quad, 0, quads, groups);
    __m512 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      // The quants are one stream across quads: fetch 4 groups (2 KiB) ahead in it. Measured
      // against the 4-bit kernel's next-quad prefetch (0.75x the file layout from DRAM) and none
      // (0.71x): 0.81x, the best of the three, still slower than the file layout.
      for (int off = 0; off < R * kQb; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(quants + (g + 4) * R * kQb + off), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(sc + (g + 4) * R * kSb), _MM_HINT_T0);
      for (int r = 0; r < R; ++r) {
        const uint8_t* q = quants + (g * R + r) * kQb;
        const uint8_t* s = sc + (g * R + r) * kSb;
        for (int j = 0; j < kBlocks; ++j)
          q8_block<B>(q + j * B, load_fp16(s + 2 * j), a.x + g * kRepackGroupWeights + j * B, acc0[r], acc1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* t = a.w.repacked + repacked_tail_at(F, B, quad, r, quads, groups, tail_bytes);
      for (int64_t b = 0; b < tail; ++b)
        q8_block<B>(t + b * L::bytes + L::quants_offset, load_fp16(t + b * L::bytes + L::scale_offset),
                    a.x + (first + b) * B, acc0[r], acc1[r]);
    }
    for (int r = 0; r < R; ++r)
      a.y[n + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r])) + (a.bias ? a.bias[n + r] : 0.0f);
  }
}

template void gemv_repacked_q8_quads<32>(const KernelArgs&, int64_t, int64_t);
template void gemv_repacked_q8_quads<64>(const KernelArgs&, int64_t, int64_t);
template void gemv_repacked_q8_quads<128>(const KernelArgs&, int64_t, int64_t);

template void gemv_repacked_quads<Format::q4>(const KernelArgs&, const NibbleGroup<Format::q4>&, const float*,
                                              const float*, int64_t, int64_t);
template void gemv_repacked_quads<Format::q4a>(const KernelArgs&, const NibbleGroup<Format::q4a>&, const float*,
                                               const float*, int64_t, int64_t);
template void gemv_repacked_quads<Format::q4n>(const KernelArgs&, const NibbleGroup<Format::q4n>&, const float*,
                                               const float*, int64_t, int64_t);

}  // namespace pyrt::cpu::avx512
