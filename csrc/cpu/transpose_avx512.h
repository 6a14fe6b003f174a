// 16x16 transposes of 32-bit elements in AVX-512 registers, shared by the FP32 GEMM's packing and
// the int8 GEMM's weight panels. Include only from *_avx512.cc files.
#pragma once
#include <immintrin.h>

namespace pyrt::cpu::avx512 {

// r[j] holds row j (16 dwords); afterwards r[t] holds dword t of rows 0..15. Three stages: dword and
// qword unpacks within 128-bit lanes, then 128-bit lane shuffles (64 operations for 256 elements).
inline void transpose16x16(__m512i (&r)[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // u[4i + j], 128-bit lane L: rows 4i..4i+3 of dword 4L + j
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i a = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88), b = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);
    const __m512i c = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88), d = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
    r[j] = _mm512_shuffle_i32x4(a, c, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(a, c, 0xdd);
    r[4 + j] = _mm512_shuffle_i32x4(b, d, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(b, d, 0xdd);
  }
}

inline void transpose16x16(__m512 (&r)[16]) {
  __m512i v[16];
  for (int i = 0; i < 16; ++i) v[i] = _mm512_castps_si512(r[i]);
  transpose16x16(v);
  for (int i = 0; i < 16; ++i) r[i] = _mm512_castsi512_ps(v[i]);
}

}  // namespace pyrt::cpu::avx512
