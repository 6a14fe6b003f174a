// Measured in the variants tool (v15 against v8, docs/benchmarks.md "Load-time repacking"): the
// one plain load per group instead of two loads and a two-source permute, 1.23x at M = 1 in L2.
#include "cpu/repacked_gemv_avx512.h"

#include <algorithm>

namespace pyrt::cpu::avx512 {
namespace {

// vpermw index from the group's 128 / B (q4a: twice as many) stored FP16 words to
// NibbleGroupLoader::load's order: lane j's block scale in word j, q4a's minimum in word 16 + j
// (lane j is block j / (B / 8), group_element<B>).
template <int B>
inline __m512i scale_word_index() {
  constexpr int kBlocks = kGroupWeights / B;
  alignas(64) int16_t idx[32];
  for (int w = 0; w < 32; ++w) idx[w] = int16_t(w < 16 ? w / (B / 8) : kBlocks + (w - 16) / (B / 8));
  return _mm512_load_si512(idx);
}

// The group's scale words of one row (2, 4, 8 or 16 bytes) in the low words of a register.
template <int kBytes>
inline __m512i load_scales(const uint8_t* at) {
  if constexpr (kBytes == 16) return _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(at)));
  if constexpr (kBytes == 8) return _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(at)));
  if constexpr (kBytes == 4) return _mm512_castsi128_si512(_mm_loadu_si32(at));
  return _mm512_castsi128_si512(_mm_loadu_si16(at));
}

// Quads read side by side, each its own stream, and how far ahead in each the kernel prefetches.
// One stream per core left the DRAM prefetchers idle part of the time: 11008x4096 q4/32 M = 1,
// 2 threads, from DRAM (Xeon, 2026-12-03, 3 interleaved rounds): one stream with a next-quad
// prefetch 1.08-1.10 ms, 4 streams 1 KiB ahead 0.92-0.93 ms (q4a 1.12-1.15 -> 1.01-1.03). 2, 3, 6
// or 8 streams, 768 B to 4 KiB ahead measured no better, T1/NTA hints slower (NTA 2x). The streams
// start a quarter of the thread's quads apart, not at adjacent quads: a short quad (SmolLM2's
// K = 576: 1 KiB) would make 4 adjacent ones one stream again (docs/benchmarks.md, "Session 10").
constexpr int kQuadStreams = 4;
constexpr int64_t kStreamPrefetchBytes = 1024;

template <Format F, int B, int S>
void gemv_quad_set(const KernelArgs& a, const NibbleGroup<F, B>& group, const float* xp, const float* sums,
                   const __m512i scale_words, int64_t quad, int64_t step) {
  constexpr int R = kRepackRows, kSb = repacked_scale_bytes(F, B);
  const int64_t groups = a.K / kGroupWeights, quads = a.N / R, nblocks = a.K / B;
  const int64_t first = groups * (kGroupWeights / B), tail = nblocks - first;
  const int64_t tail_bytes = tail * BlockOf<F, B>::bytes;
  constexpr int64_t pd = kStreamPrefetchBytes, pds = pd * kSb / kRepackNibbleBytes;
  const uint8_t* nib[S];
  const uint8_t* sc[S];
  for (int s = 0; s < S; ++s) {
    nib[s] = a.w.repacked + repacked_nibbles_at(quad + s * step, 0, groups);
    sc[s] = a.w.repacked + repacked_scales_at(F, B, quad + s * step, 0, quads, groups);
  }
  // Each stream's next quad follows its current one in every region, so "ahead" is linear.
  const uint8_t* end = a.w.repacked + repacked_tail_at(F, B, quads, 0, quads, groups, tail_bytes);
  for (int s = 0; s < S; ++s)
    if (quad + s * step + 1 < quads)
      for (int64_t off = 0; off < R * tail_bytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(
                         a.w.repacked + repacked_tail_at(F, B, quad + s * step + 1, 0, quads, groups, tail_bytes) + off),
                     _MM_HINT_T0);
  __m512 acc[S * R];
  for (int r = 0; r < S * R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t ahead = g * R * kRepackNibbleBytes + pd, ahead_s = g * R * kSb + pds;
    for (int s = 0; s < S; ++s) {
      const uint8_t* p = nib[s] + ahead;
      if (p < end)
        for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(p + r * kRepackNibbleBytes), _MM_HINT_T0);
      const uint8_t* ps = sc[s] + ahead_s;
      if (ps < end) _mm_prefetch(reinterpret_cast<const char*>(ps), _MM_HINT_T0);
    }
    for (int s = 0; s < S; ++s)
      for (int r = 0; r < R; ++r) {
        const __m512i nv = _mm512_loadu_si512(nib[s] + (g * R + r) * kRepackNibbleBytes);
        const __m512i sv = _mm512_permutexvar_epi16(scale_words, load_scales<kSb>(sc[s] + (g * R + r) * kSb));
        acc[s * R + r] = group.accumulate_loaded(nv, sv, xp + g * kGroupWeights, sums + g * 16, acc[s * R + r]);
      }
  }
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < R; ++r)
      acc[s * R + r] = accumulate_blocks<F, B>(
          a.w.repacked + repacked_tail_at(F, B, quad + s * step, r, quads, groups, tail_bytes), a.x + first * B, tail,
          acc[s * R + r]);
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < R; ++r) {
      const int64_t n = (quad + s * step) * R + r;
      a.y[n] = _mm512_reduce_add_ps(acc[s * R + r]) + (a.bias ? a.bias[n] : 0.0f);
    }
}

}  // namespace

template <Format F, int B>
void gemv_repacked_quads(const KernelArgs& a, const NibbleGroup<F, B>& group, const float* xp, const float* sums,
                         int64_t q0, int64_t q1) {
  constexpr int R = kRepackRows;
  const __m512i scale_words = scale_word_index<B>();
  constexpr int S = kQuadStreams;
  const int64_t first = q0 / R, last = q1 / R;
  // Stream s reads quads first + s * step + [0, step), so the streams are far apart in memory even
  // when a quad is short; the quads left after S * step run as one stream.
  const int64_t step = (last - first) / S;
  for (int64_t quad = first; quad < first + step; ++quad) gemv_quad_set<F, B, S>(a, group, xp, sums, scale_words, quad, step);
  for (int64_t quad = first + S * step; quad < last; ++quad) gemv_quad_set<F, B, 1>(a, group, xp, sums, scale_words, quad, 0);
}

template void gemv_repacked_quads<Format::q4, 32>(const KernelArgs&, const NibbleGroup<Format::q4, 32>&,
                                                     const float*, const float*, int64_t, int64_t);
template void gemv_repacked_quads<Format::q4, 64>(const KernelArgs&, const NibbleGroup<Format::q4, 64>&,
                                                     const float*, const float*, int64_t, int64_t);
template void gemv_repacked_quads<Format::q4a, 32>(const KernelArgs&, const NibbleGroup<Format::q4a, 32>&,
                                                     const float*, const float*, int64_t, int64_t);
template void gemv_repacked_quads<Format::q4a, 64>(const KernelArgs&, const NibbleGroup<Format::q4a, 64>&,
                                                     const float*, const float*, int64_t, int64_t);
template void gemv_repacked_quads<Format::q4n, 32>(const KernelArgs&, const NibbleGroup<Format::q4n, 32>&,
                                                     const float*, const float*, int64_t, int64_t);
template void gemv_repacked_quads<Format::q4n, 64>(const KernelArgs&, const NibbleGroup<Format::q4n, 64>&,
                                                     const float*, const float*, int64_t, int64_t);
template void gemv_repacked_quads<Format::q4, 128>(const KernelArgs&, const NibbleGroup<Format::q4, 128>&,
                                                     const float*, const float*, int64_t, int64_t);
template void gemv_repacked_quads<Format::q4a, 128>(const KernelArgs&, const NibbleGroup<Format::q4a, 128>&,
                                                     const float*, const float*, int64_t, int64_t);

}  // namespace pyrt::cpu::avx512
