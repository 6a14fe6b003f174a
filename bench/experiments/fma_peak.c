/* The FP32 FMA and int8 VNNI peaks of this machine: register-only loops of 12 independent
 * 512-bit FMA (and vpdpbusd) chains, no memory traffic, on every OpenMP thread. This is the
 * arithmetic bound that docs/benchmarks.md holds compute-bound results (encoder batch 32, M=128)
 * against.
 *
 *   gcc -O3 -funroll-loops -mavx512f -mavx512vnni -mfma -fopenmp bench/experiments/fma_peak.c -o /tmp/fma_peak
 *   OMP_NUM_THREADS=2 /tmp/fma_peak
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

enum { kChains = 12 };
static const long kIterations = 50000000;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
  for (int vnni = 0; vnni < 2; ++vnni) {
    double sink = 0;
    const double start = now();
#pragma omp parallel reduction(+ : sink)
    {
      __m512 f[kChains];
      __m512i q[kChains];
      const __m512 mul = _mm512_set1_ps(1.0000001f), add = _mm512_set1_ps(1e-7f);
      const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(5);
      for (int i = 0; i < kChains; ++i) {
        f[i] = _mm512_set1_ps((float)i);
        q[i] = _mm512_set1_epi32(i);
      }
      for (long it = 0; it < kIterations; ++it)
        for (int i = 0; i < kChains; ++i) {
          if (vnni)
            q[i] = _mm512_dpbusd_epi32(q[i], u, s);
          else
            f[i] = _mm512_fmadd_ps(f[i], mul, add);
        }
      /* Keep the chains alive so the compiler cannot drop them. */
      for (int i = 0; i < kChains; ++i) sink += _mm512_reduce_add_ps(f[i]) + (double)_mm512_reduce_add_epi32(q[i]);
    }
    const double seconds = now() - start;
    const double ops_per_instruction = vnni ? 128.0 : 32.0; /* 2 ops per multiply-add */
    printf("%s: %.1f G%s/s on %d threads (checksum %g)\n", vnni ? "vpdpbusd zmm" : "FP32 FMA zmm",
           ops_per_instruction * kChains * kIterations * omp_get_max_threads() / seconds / 1e9,
           vnni ? " int8 ops" : "FLOP", omp_get_max_threads(), sink);
  }
  return 0;
}
