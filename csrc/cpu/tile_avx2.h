// Helpers shared by the AVX2 GEMV and GEMM paths: horizontal sums and the scalar epilogue that
// adds the K tail and the bias and writes (or accumulates) a tile of y. Include only from *_avx2.cc.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "cpu/decode_avx2.h"
#include "cpu/kernels.h"

namespace pyrt::cpu::avx2 {

constexpr int kRowsPerTile = 4;  // weight rows (outputs n) computed together

// Sums of four vectors, one per lane of the result: {sum(a), sum(b), sum(c), sum(d)}.
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b);
  const __m256 cd = _mm256_hadd_ps(c, d);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// Row pointers for the tile starting at weight row n0 with `valid` rows (1..4): the missing rows
// repeat the last valid one, so the kernels always read real memory; their results are dropped.
inline void tile_rows(const WeightView& w, int64_t n0, int valid, const uint8_t* rows[kRowsPerTile]) {
  for (int r = 0; r < kRowsPerTile; ++r) rows[r] = w.row(n0 + (r < valid ? r : valid - 1));
}

// Dot product of x[k_begin, K) with a plain-format weight row (the K % 16 tail).
inline float plain_tail_dot(Format f, const uint8_t* row, const float* x, int64_t k_begin, int64_t K) {
  float acc = 0.0f;
  for (int64_t k = k_begin; k < K; ++k) acc += x[k] * plain_weight(f, row, k);
  return acc;
}

}  // namespace pyrt::cpu::avx2
