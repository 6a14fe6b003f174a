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

}  // namespace

template <Format F, int B>
void gemv_repacked_quads(const KernelArgs& a, const NibbleGroup<F, B>& group, const float* xp, const float* sums,
                         int64_t q0, int64_t q1) {
  constexpr int R = kRepackRows, kSb = repacked_scale_bytes(F, B);
  const int64_t groups = a.K / kGroupWeights, quads = a.N / R, nblocks = a.K / B;
  const __m512i scale_words = scale_word_index<B>();
  const int64_t first = groups * (kGroupWeights / B), tail = nblocks - first;
  const int64_t tail_bytes = tail * BlockOf<F, B>::bytes;
  for (int64_t n = q0; n < q1; n += R) {
    const int64_t quad = n / R;
    const uint8_t* nib = a.w.repacked + repacked_nibbles_at(quad, 0, groups);
    const uint8_t* sc = a.w.repacked + repacked_scales_at(F, B, quad, 0, quads, groups);
    // As the file kernel does for its next row group: the hardware prefetcher alone left the
    // stream from DRAM at half the file layout's speed (measured, bench/bench_repack.py).
    const int64_t next = std::min(quad + 1, quads - 1);
    const uint8_t* nib_next = a.w.repacked + repacked_nibbles_at(next, 0, groups);
    const uint8_t* sc_next = a.w.repacked + repacked_scales_at(F, B, next, 0, quads, groups);
    for (int64_t off = 0; off < R * tail_bytes; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(a.w.repacked + repacked_tail_at(F, B, next, 0, quads, groups, tail_bytes) + off),
                   _MM_HINT_T0);
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      for (int r = 0; r < R; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(nib_next + (g * R + r) * kRepackNibbleBytes), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(sc_next + g * R * kSb), _MM_HINT_T0);
      for (int r = 0; r < R; ++r) {
        const __m512i nv = _mm512_loadu_si512(nib + (g * R + r) * kRepackNibbleBytes);
        const __m512i sv = _mm512_permutexvar_epi16(scale_words, load_scales<kSb>(sc + (g * R + r) * kSb));
        acc[r] = group.accumulate_loaded(nv, sv, xp + g * kGroupWeights, sums + g * 16, acc[r]);
      }
    }
    // Blocks after the whole groups: in the copy's tail as the file stores them, decoded per block
    // as the file kernel does.
    for (int r = 0; r < R; ++r)
      acc[r] = accumulate_blocks<F, B>(a.w.repacked + repacked_tail_at(F, B, quad, r, quads, groups, tail_bytes),
                                       a.x + first * B, tail, acc[r]);
    for (int r = 0; r < R; ++r) a.y[n + r] = _mm512_reduce_add_ps(acc[r]) + (a.bias ? a.bias[n + r] : 0.0f);
  }
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
