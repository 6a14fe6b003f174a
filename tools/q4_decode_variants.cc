// Stand-alone variants of the exact q4 (block 32) M=1 GEMV inner loop, timed on one thread with a
// 256x4096 matrix that sits in L2: which part of decoding bounds the kernel (docs/benchmarks.md,
// "Where that limit comes from"). v0 is the shipped approach (csrc/cpu/gemv_avx512.cc); v5 and v6
// compute wrong results on purpose, as bounds; every other variant must match v0 (exit status 1
// otherwise).
//
//   g++ -O3 -std=c++17 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c \
//       -Icsrc -Icsrc/include tools/q4_decode_variants.cc -o /tmp/q4_decode_variants
//   /tmp/q4_decode_variants

#include <immintrin.h>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>
#include <random>
#include <chrono>
#include <cmath>
#include "cpu/decode_avx512.h"
using namespace pyrt::cpu::avx512;
using pyrt::Format;
constexpr int B = 32, bb = 18, R = 4;

// V0: current (per-block value table + vpermps)
void v0(const uint8_t* W, const float* x, float* y, int N, int K) {
  const int nb = K / B;
  for (int n = 0; n < N; n += R) {
    __m512 a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
    for (int b = 0; b < nb; ++b)
      for (int r = 0; r < R; ++r) {
        const uint8_t* blk = W + (size_t)(n + r) * nb * bb + b * bb;
        const uint8_t* q;
        const __m512 table = nibble_value_table<Format::q4>(blk, &q);
        const __m512i idx = load_nibble_pairs(q);
        a0[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + b * B), low_nibbles(idx, table), a0[r]);
        a1[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + b * B + 16), high_nibbles(idx, table), a1[r]);
      }
    for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
  }
}

// V1, V2, V4, V5: no table. Bits 0x4B000000 | nibble are the float 2^23 + q exactly; subtracting
// 2^23 + 8 leaves q - 8. The block scale is applied once per block (part * d).
//   Expand: how the 16 nibble bytes become 16 dwords (vpmovzxbd, or a 128-bit broadcast + vpshufb).
//   Scale: where d comes from (scalar FP16 load + broadcast, a vpbroadcastw straight from memory, or
//   a constant: a wrong result, to bound what the scale path costs).
enum class Expand { movzx, shuffle };
enum class Scale { scalar, memory, constant };

template <Expand E, Scale S>
void magic(const uint8_t* W, const float* x, float* y, int N, int K) {
  const int nb = K / B;
  const __m512i magic_bits = _mm512_set1_epi32(0x4B000000);
  const __m512 bias = _mm512_set1_ps(8388608.0f + 8.0f);
  alignas(64) int8_t sh[64];
  for (int i = 0; i < 64; ++i) sh[i] = (i % 4 == 0) ? int8_t((i / 16) * 4 + (i % 16) / 4) : int8_t(-128);
  const __m512i shuf = _mm512_load_si512(sh);
  for (int n = 0; n < N; n += R) {
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const __m512 x0 = _mm512_loadu_ps(x + b * B), x1 = _mm512_loadu_ps(x + b * B + 16);
      for (int r = 0; r < R; ++r) {
        const uint8_t* blk = W + (size_t)(n + r) * nb * bb + b * bb;
        __m512 d;
        if constexpr (S == Scale::scalar) d = _mm512_set1_ps(load_fp16(blk));
        else if constexpr (S == Scale::memory) d = _mm512_cvtph_ps(_mm256_set1_epi16(*reinterpret_cast<const short*>(blk)));
        else d = _mm512_set1_ps(0.015f);
        const __m128i bytes = _mm_loadu_si128((const __m128i*)(blk + 2));
        __m512i idx;
        if constexpr (E == Expand::movzx) idx = _mm512_cvtepu8_epi32(bytes);
        else idx = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(bytes), shuf);
        // lo: (idx & 0xF) | magic in one ternary-logic op; hi: idx >> 4 needs no mask (bytes <= 255).
        const __m512i lo_i = _mm512_ternarylogic_epi32(idx, _mm512_set1_epi32(0xF), magic_bits, 0xEA);
        const __m512i hi_i = _mm512_or_si512(_mm512_srli_epi32(idx, 4), magic_bits);
        const __m512 lo = _mm512_sub_ps(_mm512_castsi512_ps(lo_i), bias);
        const __m512 hi = _mm512_sub_ps(_mm512_castsi512_ps(hi_i), bias);
        const __m512 part = _mm512_fmadd_ps(x1, hi, _mm512_mul_ps(x0, lo));
        acc[r] = _mm512_fmadd_ps(part, d, acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
  }
}

// V3: V1 on 256-bit vectors (AVX-512VL): Zen 4 double-pumps zmm anyway.
void v3(const uint8_t* W, const float* x, float* y, int N, int K) {
  const int nb = K / B;
  const __m256i magic = _mm256_set1_epi32(0x4B000000);
  const __m256 bias = _mm256_set1_ps(8388608.0f + 8.0f);
  const __m256i m15 = _mm256_set1_epi32(0xF);
  for (int n = 0; n < N; n += R) {
    __m256 a0[R];
    for (int r = 0; r < R; ++r) a0[r] = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      for (int r = 0; r < R; ++r) {
        const uint8_t* blk = W + (size_t)(n + r) * nb * bb + b * bb;
        const __m256 d = _mm256_set1_ps(load_fp16(blk));
        __m256 part = _mm256_setzero_ps();
        for (int h = 0; h < 2; ++h) {
          const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(blk + 2 + 8 * h)));
          const __m256 lo = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_ternarylogic_epi32(idx, m15, magic, 0xEA)), bias);
          const __m256 hi = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_or_si256(_mm256_srli_epi32(idx, 4), magic)), bias);
          part = _mm256_fmadd_ps(_mm256_loadu_ps(x + b * B + 8 * h), lo, part);
          part = _mm256_fmadd_ps(_mm256_loadu_ps(x + b * B + 16 + 8 * h), hi, part);
        }
        a0[r] = _mm256_fmadd_ps(part, d, a0[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      alignas(32) float t[8]; _mm256_store_ps(t, a0[r]);
      float s = 0; for (float v : t) s += v; y[n + r] = s;
    }
  }
}


// V6: upper bound: no decode at all, x . x-ish FMAs with the same loads (wrong result).
void v6(const uint8_t* W, const float* x, float* y, int N, int K) {
  const int nb = K / B;
  for (int n = 0; n < N; n += R) {
    __m512 a0[R];
    for (int r = 0; r < R; ++r) a0[r] = _mm512_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const __m512 x0 = _mm512_loadu_ps(x + b * B), x1 = _mm512_loadu_ps(x + b * B + 16);
      for (int r = 0; r < R; ++r) {
        const uint8_t* blk = W + (size_t)(n + r) * nb * bb + b * bb;
        const __m512 w = _mm512_castsi512_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(blk + 2))));
        a0[r] = _mm512_fmadd_ps(x1, w, _mm512_fmadd_ps(x0, w, a0[r]));
      }
    }
    for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(a0[r]);
  }
}

int main() {
  const int N = 256, K = 4096, nb = K / B;
  std::mt19937 rng(1);
  std::vector<uint8_t> W((size_t)N * nb * bb);
  for (auto& v : W) v = rng() & 0xFF;
  for (int n = 0; n < N; ++n) for (int b = 0; b < nb; ++b) {  // sane fp16 scales: 0.01..0.02
    uint16_t h = _cvtss_sh(0.01f + 0.01f * (rng() % 100) / 100.0f, 0);
    memcpy(&W[((size_t)n * nb + b) * bb], &h, 2);
  }
  std::vector<float> x(K), y0(N), y(N);
  for (auto& v : x) v = std::normal_distribution<float>()(rng);
  v0(W.data(), x.data(), y0.data(), N, K);
  using F = void (*)(const uint8_t*, const float*, float*, int, int);
  F fs[] = {v0,
             magic<Expand::movzx, Scale::scalar>,     // v1
             magic<Expand::shuffle, Scale::scalar>,   // v2
             v3,
             magic<Expand::movzx, Scale::memory>,     // v4
             magic<Expand::movzx, Scale::constant>,   // v5
             v6};
  const bool bound_only[] = {false, false, false, false, false, true, true};  // v5, v6: wrong on purpose
  int failures = 0;
  for (int v = 0; v < 7; ++v) {
    fs[v](W.data(), x.data(), y.data(), N, K);
    double err = 0, mag = 0;
    for (int n = 0; n < N; ++n) { err = std::fmax(err, std::fabs(y[n] - y0[n])); mag = std::fmax(mag, std::fabs(y0[n])); }
    double best = 1e9;
    for (int rep = 0; rep < 200; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      fs[v](W.data(), x.data(), y.data(), N, K);
      double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::fmin(best, t);
    }
    printf("v%d: %.1f us  %.2f weights/ns  %.1f GB/s  maxerr %.2g (|y| %.2g)\n", v, best * 1e6, N * (double)K / best / 1e9,
           W.size() / best / 1e9, err, mag);
    if (!bound_only[v] && err > 1e-5 * mag) {
      printf("  v%d disagrees with v0\n", v);
      ++failures;
    }
  }
  return failures ? 1 : 0;
}
