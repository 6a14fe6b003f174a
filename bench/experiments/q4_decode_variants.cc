// Stand-alone variants of the exact q4 (block 32) M=1 GEMV inner loop, timed on one thread with a
// 256x4096 matrix that sits in L2: which part of decoding bounds the kernel (docs/benchmarks.md,
// "Where that limit comes from"). v0 is the per-block kernel (csrc/cpu/gemv_avx512.cc, still used
// for B = 64/128 and tail blocks); v7 is the nibble-group kernel and v8 the variant of it shipped
// for B = 32 at M = 1 (csrc/cpu/nibble_group_avx512.h). v5, v6, v11 and v13 compute wrong results on purpose, as
// bounds; every other variant must match v0 (exit status 1 otherwise).
//
//   g++ -O3 -std=c++17 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mavx512bf16
//       -Icsrc -Icsrc/include bench/experiments/q4_decode_variants.cc -o /tmp/q4_decode_variants   (one line)
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
// The q4 block layout at B = 32 (csrc/include/pyrt/formats.h): 18 bytes, d at 0, nibbles at 2.
using Q4Block = pyrt::BlockOf<Format::q4, 32>;
constexpr int B = 32, bb = Q4Block::bytes, R = 4;
constexpr int kNib = Q4Block::quants_offset, kScale = Q4Block::scale_offset;

// V0: per block (value table scaled by d + vpermps)
void v0(const uint8_t* W, const float* x, float* y, int N, int K) {
  const int nb = K / B;
  for (int n = 0; n < N; n += R) {
    __m512 a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
    for (int b = 0; b < nb; ++b)
      for (int r = 0; r < R; ++r) {
        const uint8_t* blk = W + (size_t)(n + r) * nb * bb + b * bb;
        const uint8_t* q;
        const __m512 table = nibble_value_table<Format::q4, B>(blk, &q);
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
        if constexpr (S == Scale::scalar) d = _mm512_set1_ps(load_fp16(blk + kScale));
        else if constexpr (S == Scale::memory) d = _mm512_cvtph_ps(_mm256_set1_epi16(*reinterpret_cast<const short*>(blk + kScale)));
        else d = _mm512_set1_ps(0.015f);
        const __m128i bytes = _mm_loadu_si128((const __m128i*)(blk + kNib));
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
        const __m256 d = _mm256_set1_ps(load_fp16(blk + kScale));
        __m256 part = _mm256_setzero_ps();
        for (int h = 0; h < 2; ++h) {
          const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(blk + kNib + 8 * h)));
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
        const __m512 w = _mm512_castsi512_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(blk + kNib))));
        a0[r] = _mm512_fmadd_ps(x1, w, _mm512_fmadd_ps(x0, w, a0[r]));
      }
    }
    for (int r = 0; r < R; ++r) y[n + r] = _mm512_reduce_add_ps(a0[r]);
  }
}


// V7: four blocks (128 weights) per step. Two 64-byte loads and one two-source word permute
// gather the four blocks' 64 nibble bytes into one register (every block's nibbles start at an
// even offset); dword j then holds 8 nibbles of block j/4, and nibble n of every dword is decoded
// by (shift by 4n) + vpermps on the unscaled level table. The four FP16 scales come from the same
// loads with one word permute, so the scale costs one FMA per 128 weights. x is permuted once per
// call to match: xp[g*128 + n*16 + j] = x[g*128 + (j/4)*32 + 4*(j%4) + n/2 + 16*(n%2)].
void permute_x_v7(const float* x, float* xp, int K) {
  for (int g = 0; g < K / 128; ++g)
    for (int n = 0; n < 8; ++n)
      for (int j = 0; j < 16; ++j) xp[g * 128 + n * 16 + j] = x[g * 128 + (j / 4) * 32 + 4 * (j % 4) + n / 2 + 16 * (n % 2)];
}

// One group of one row as the group variants see it: the two loads and the gathered nibbles.
struct Group {
  __m512i first, rest, nib;
};

// The loop shared by the group variants (v7-v12, v14): RR rows at a time, each group gathered and
// its scales applied once; part(group, g) returns the group's unscaled per-lane products.
template <int RR, class Part>
void run_groups(const uint8_t* W, float* y, int N, int K, Part part) {
  const int nb = K / B, ng = K / 128;
  alignas(64) int16_t nib_idx[32], sc_idx[32];
  for (int w = 0; w < 32; ++w) {
    nib_idx[w] = int16_t((w / 8) * (bb / 2) + kNib / 2 + w % 8);
    sc_idx[w] = int16_t((w % 16) / 4 * (bb / 2) + kScale / 2);
  }
  const __m512i nidx = _mm512_load_si512(nib_idx), sidx = _mm512_load_si512(sc_idx);
  const __mmask64 tail = (~0ull) >> (128 - bb * 4);  // the group's 72 bytes: 8 past the first load
  for (int n = 0; n < N; n += RR) {
    __m512 acc[RR];
    for (int r = 0; r < RR; ++r) acc[r] = _mm512_setzero_ps();
    for (int g = 0; g < ng; ++g)
      for (int r = 0; r < RR; ++r) {
        const uint8_t* grp = W + (size_t)(n + r) * nb * bb + (size_t)g * 4 * bb;
        Group G;
        G.first = _mm512_loadu_si512(grp);
        G.rest = _mm512_maskz_loadu_epi8(tail, grp + 64);
        G.nib = _mm512_permutex2var_epi16(G.first, nidx, G.rest);
        const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(sidx, G.first)));
        acc[r] = _mm512_fmadd_ps(part(G, g), d, acc[r]);
      }
    for (int r = 0; r < RR; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
  }
}

// Nibble q (bits 4q..4q+3, q = 1..3) of every dword as its level q - 8 without a shuffle: ORed into
// the float 2^(23-4q), whose mantissa ulp is then 1, it gives 2^(23-4q) + nibble exactly.
struct MantissaDecode {
  __m512i mask[4], magic[4];
  __m512 bias[4];
  MantissaDecode() {
    for (int q = 0; q < 4; ++q) {
      mask[q] = _mm512_set1_epi32(0xF << (4 * q));
      const float m = std::ldexp(1.0f, 23 - 4 * q);
      magic[q] = _mm512_castps_si512(_mm512_set1_ps(m));
      bias[q] = _mm512_set1_ps(m + 8.0f);
    }
  }
  __m512 operator()(__m512i src, int q) const {
    return _mm512_sub_ps(_mm512_castsi512_ps(_mm512_ternarylogic_epi32(src, mask[q], magic[q], 0xEA)), bias[q]);
  }
};

// Activations permuted to the group order, per call.
const float* group_ordered_x(const float* x, int K) {
  static std::vector<float> xp;
  xp.resize(K);
  permute_x_v7(x, xp.data(), K);
  return xp.data();
}

template <int RR>
void v7r(const uint8_t* W, const float* x, float* y, int N, int K) {
  const float* xp = group_ordered_x(x, K);
  const __m512 table = q4_level_table();
  run_groups<RR>(W, y, N, K, [&](const Group& G, int g) {
    const float* xg = xp + g * 128;
    __m512 p0 = _mm512_mul_ps(_mm512_loadu_ps(xg), _mm512_permutexvar_ps(G.nib, table));
    __m512 p1 = _mm512_mul_ps(_mm512_loadu_ps(xg + 16), _mm512_permutexvar_ps(_mm512_srli_epi32(G.nib, 4), table));
    for (int s = 2; s < 8; s += 2) {
      p0 = _mm512_fmadd_ps(_mm512_loadu_ps(xg + 16 * s), _mm512_permutexvar_ps(_mm512_srli_epi32(G.nib, 4 * s), table), p0);
      p1 = _mm512_fmadd_ps(_mm512_loadu_ps(xg + 16 * s + 16),
                           _mm512_permutexvar_ps(_mm512_srli_epi32(G.nib, 4 * s + 4), table), p1);
    }
    return _mm512_add_ps(p0, p1);
  });
}
void v7(const uint8_t* W, const float* x, float* y, int N, int K) { v7r<4>(W, x, y, N, K); }

// V8 (shipped for B = 32), V9: v7 with nibbles 1..NMAGIC decoded by MantissaDecode instead of
// shift + vpermps, which moves work off the shuffle pipes.
template <int RR, int NMAGIC>
void v8r(const uint8_t* W, const float* x, float* y, int N, int K) {
  const float* xp = group_ordered_x(x, K);
  const __m512 table = q4_level_table();
  const MantissaDecode mantissa;
  run_groups<RR>(W, y, N, K, [&](const Group& G, int g) {
    __m512 p[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int s = 0; s < 8; ++s) {
      const __m512 w = (s >= 1 && s <= NMAGIC) ? mantissa(G.nib, s)
                                               : _mm512_permutexvar_ps(s ? _mm512_srli_epi32(G.nib, 4 * s) : G.nib, table);
      p[s & 1] = _mm512_fmadd_ps(_mm512_loadu_ps(xp + g * 128 + 16 * s), w, p[s & 1]);
    }
    return _mm512_add_ps(p[0], p[1]);
  });
}
void v8(const uint8_t* W, const float* x, float* y, int N, int K) { v8r<4, 3>(W, x, y, N, K); }
void v9(const uint8_t* W, const float* x, float* y, int N, int K) { v8r<4, 1>(W, x, y, N, K); }

// V10, V11: v7's grouping with the products on vdpbf16ps (32 products per instruction). The weights
// (integers -8..7) are exact in BF16; x is split once per call into three BF16 parts
// (hi + mid + lo == x exactly), so the sums are those of exact products accumulated in FP32 (v10).
// v11 keeps two parts (16 bits of x: a wrong result by the exactness standard, a bound).
static inline uint16_t bf16_trunc(float f, float* rest) {
  uint32_t u; memcpy(&u, &f, 4); u &= 0xFFFF0000u; float h; memcpy(&h, &u, 4); *rest = f - h; return uint16_t(u >> 16);
}
void split_x_bf16(const float* x, uint16_t* xb, int K, int NS) {
  // xb[((g*4 + s)*NS + part)*32 + 2j + i]
  for (int g = 0; g < K / 128; ++g)
    for (int s = 0; s < 4; ++s)
      for (int j = 0; j < 16; ++j)
        for (int i = 0; i < 2; ++i) {
          const int n = 4 * i + s;
          float v = x[g * 128 + (j / 4) * 32 + 4 * (j % 4) + n / 2 + 16 * (n % 2)];
          for (int p = 0; p < NS; ++p) xb[((g * 4 + s) * NS + p) * 32 + 2 * j + i] = bf16_trunc(v, &v);
        }
}
template <int RR, int NS>
void v10r(const uint8_t* W, const float* x, float* y, int N, int K) {
  static std::vector<uint16_t> xb;
  xb.resize((size_t)K * NS);
  split_x_bf16(x, xb.data(), K, NS);
  alignas(64) int16_t tab[32];  // BF16 levels, indexed by 5 bits: the fifth is the next nibble's
  for (int w = 0; w < 32; ++w) {
    float lv = float((w & 15) - 8); uint32_t u; memcpy(&u, &lv, 4); tab[w] = int16_t(u >> 16);
  }
  const __m512i table = _mm512_load_si512(tab);
  run_groups<RR>(W, y, N, K, [&](const Group& G, int g) {
    const uint16_t* xg = xb.data() + (size_t)g * 4 * NS * 32;
    __m512 p[NS];
    for (int q = 0; q < NS; ++q) p[q] = _mm512_setzero_ps();
    for (int s = 0; s < 4; ++s) {
      const __m512bh w = (__m512bh)_mm512_permutexvar_epi16(s ? _mm512_srli_epi16(G.nib, 4 * s) : G.nib, table);
      for (int q = 0; q < NS; ++q)
        p[q] = _mm512_dpbf16_ps(p[q], w, (__m512bh)_mm512_loadu_si512(xg + (s * NS + q) * 32));
    }
    __m512 t = p[0];
    for (int q = 1; q < NS; ++q) t = _mm512_add_ps(t, p[q]);
    return t;
  });
}
void v10(const uint8_t* W, const float* x, float* y, int N, int K) { v10r<4, 3>(W, x, y, N, K); }
void v11(const uint8_t* W, const float* x, float* y, int N, int K) { v10r<4, 2>(W, x, y, N, K); }

// V12: v7 with two rows in flight instead of four.
void v12(const uint8_t* W, const float* x, float* y, int N, int K) { v7r<2>(W, x, y, N, K); }

// V13 (bound, wrong result): v7 with the nibble register from one plain 64-byte load (no gather)
// and the scale a constant: what the loads and the assembly cost.
template <int RR>
void v13r(const uint8_t* W, const float* x, float* y, int N, int K) {
  const int nb = K / B, ng = K / 128;
  const float* xp = group_ordered_x(x, K);
  const __m512 table = q4_level_table();
  const __m512 d = _mm512_set1_ps(0.015f);
  for (int n = 0; n < N; n += RR) {
    __m512 acc[RR];
    for (int r = 0; r < RR; ++r) acc[r] = _mm512_setzero_ps();
    for (int g = 0; g < ng; ++g) {
      const float* xg = xp + g * 128;
      for (int r = 0; r < RR; ++r) {
        const uint8_t* grp = W + (size_t)(n + r) * nb * bb + (size_t)g * 64;
        const __m512i nib = _mm512_loadu_si512(grp);
        __m512 p[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int s = 0; s < 8; ++s) {
          __m512 w = _mm512_permutexvar_ps(s ? _mm512_srli_epi32(nib, 4 * s) : nib, table);
          p[s & 1] = _mm512_fmadd_ps(_mm512_loadu_ps(xg + 16 * s), w, p[s & 1]);
        }
        acc[r] = _mm512_fmadd_ps(_mm512_add_ps(p[0], p[1]), d, acc[r]);
      }
    }
    for (int r = 0; r < RR; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
  }
}
void v13(const uint8_t* W, const float* x, float* y, int N, int K) { v13r<4>(W, x, y, N, K); }

// V14: v8 without shifts: a second word gather with the two halves of every dword swapped puts
// nibbles 4..7 where 0..3 were, so nibbles 0 and 4 decode by vpermps alone and 1-3, 5-7 by
// MantissaDecode.
template <int RR>
void v14r(const uint8_t* W, const float* x, float* y, int N, int K) {
  const float* xp = group_ordered_x(x, K);
  const __m512 table = q4_level_table();
  const MantissaDecode mantissa;
  alignas(64) int16_t swp_idx[32];
  for (int w = 0; w < 32; ++w) swp_idx[w] = int16_t(((w ^ 1) / 8) * (bb / 2) + kNib / 2 + (w ^ 1) % 8);
  const __m512i widx = _mm512_load_si512(swp_idx);
  run_groups<RR>(W, y, N, K, [&](const Group& G, int g) {
    const __m512i swp = _mm512_permutex2var_epi16(G.first, widx, G.rest);
    __m512 p[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int s = 0; s < 8; ++s) {
      const __m512i src = s < 4 ? G.nib : swp;
      const __m512 w = s % 4 == 0 ? _mm512_permutexvar_ps(src, table) : mantissa(src, s % 4);
      p[s & 1] = _mm512_fmadd_ps(_mm512_loadu_ps(xp + g * 128 + 16 * s), w, p[s & 1]);
    }
    return _mm512_add_ps(p[0], p[1]);
  });
}
void v14(const uint8_t* W, const float* x, float* y, int N, int K) { v14r<4>(W, x, y, N, K); }

// V15, V16: the layout a load-time repacking would build (issue 18): per row, each group's 64
// nibble bytes already in the register order v7 gathers, so one aligned load replaces the two
// loads and the word permute; the scales apart, v15 as the file's 4 FP16 per group (72 bytes per
// 128 weights, as in the file), v16 as 4 FP32 (80 bytes: no conversion, 11 % more bytes). Exact:
// the decode and summation order are v8's.
struct RepackedQ4 {
  std::vector<uint8_t> nib;   // [row / 4][group][row % 4][64]
  std::vector<uint16_t> d16;  // [row / 4][group][row % 4][4]
  std::vector<float> d32;     // [row / 4][group][row % 4][4]
};
// Rows interleaved by 4 within each group (the 4 rows the kernel has in flight): one stream.
inline size_t repacked_index(int n, int g, int ng) { return ((size_t)(n / 4) * ng + g) * 4 + n % 4; }
RepackedQ4& repacked_q4(const uint8_t* W, int N, int K) {
  static RepackedQ4 p;
  const int nb = K / B, ng = K / 128;
  if (p.nib.size() == (size_t)N * ng * 64 + 64) return p;  // built once, as at load time
  p.nib.resize((size_t)N * ng * 64 + 64);
  p.d16.resize((size_t)N * ng * 4);
  p.d32.resize((size_t)N * ng * 4);
  alignas(64) int16_t nib_idx[32];
  for (int w = 0; w < 32; ++w) nib_idx[w] = int16_t((w / 8) * (bb / 2) + kNib / 2 + w % 8);
  const __m512i nidx = _mm512_load_si512(nib_idx);
  const __mmask64 tail = (~0ull) >> (128 - bb * 4);
  for (int n = 0; n < N; ++n)
    for (int g = 0; g < ng; ++g) {
      const uint8_t* grp = W + (size_t)n * nb * bb + (size_t)g * 4 * bb;
      const __m512i nib = _mm512_permutex2var_epi16(_mm512_loadu_si512(grp), nidx, _mm512_maskz_loadu_epi8(tail, grp + 64));
      const size_t at = repacked_index(n, g, ng);
      _mm512_storeu_si512(&p.nib[at * 64], nib);
      for (int i = 0; i < 4; ++i) {
        memcpy(&p.d16[at * 4 + i], grp + i * bb + kScale, 2);
        p.d32[at * 4 + i] = load_fp16(grp + i * bb + kScale);
      }
    }
  return p;
}

template <int RR, bool kFp32Scales>
void v15r(const uint8_t* W, const float* x, float* y, int N, int K) {
  const int ng = K / 128;
  const float* xp = group_ordered_x(x, K);
  const RepackedQ4& P = repacked_q4(W, N, K);
  const __m512 table = q4_level_table();
  const MantissaDecode mantissa;
  alignas(64) int16_t lane_block16[16];
  alignas(64) int32_t lane_block32[16];
  for (int j = 0; j < 16; ++j) lane_block16[j] = int16_t(j / 4), lane_block32[j] = j / 4;
  const __m256i sidx16 = _mm256_load_si256((const __m256i*)lane_block16);
  const __m512i sidx32 = _mm512_load_si512(lane_block32);
  for (int n = 0; n < N; n += RR) {
    __m512 acc[RR];
    for (int r = 0; r < RR; ++r) acc[r] = _mm512_setzero_ps();
    for (int g = 0; g < ng; ++g)
      for (int r = 0; r < RR; ++r) {
        const size_t at = repacked_index(n + r, g, ng);
        const __m512i nib = _mm512_loadu_si512(&P.nib[at * 64]);
        __m512 d;
        if constexpr (kFp32Scales)
          d = _mm512_permutexvar_ps(sidx32, _mm512_castps128_ps512(_mm_loadu_ps(&P.d32[at * 4])));
        else
          d = _mm512_cvtph_ps(_mm256_permutexvar_epi16(sidx16, _mm256_castsi128_si256(_mm_loadl_epi64((const __m128i*)&P.d16[at * 4]))));
        __m512 p[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int s = 0; s < 8; ++s) {
          const __m512 w = (s >= 1 && s <= 3) ? mantissa(nib, s)
                                              : _mm512_permutexvar_ps(s ? _mm512_srli_epi32(nib, 4 * s) : nib, table);
          p[s & 1] = _mm512_fmadd_ps(_mm512_loadu_ps(xp + g * 128 + 16 * s), w, p[s & 1]);
        }
        acc[r] = _mm512_fmadd_ps(_mm512_add_ps(p[0], p[1]), d, acc[r]);
      }
    for (int r = 0; r < RR; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]);
  }
}
void v15(const uint8_t* W, const float* x, float* y, int N, int K) { v15r<4, false>(W, x, y, N, K); }
void v16(const uint8_t* W, const float* x, float* y, int N, int K) { v15r<4, true>(W, x, y, N, K); }

int main() {
  const int N = 256, K = 4096, nb = K / B;
  std::mt19937 rng(1);
  std::vector<uint8_t> W((size_t)N * nb * bb + 64); W.resize((size_t)N * nb * bb);
  for (auto& v : W) v = rng() & 0xFF;
  for (int n = 0; n < N; ++n) for (int b = 0; b < nb; ++b) {  // sane fp16 scales: 0.01..0.02
    uint16_t h = _cvtss_sh(0.01f + 0.01f * (rng() % 100) / 100.0f, 0);
    memcpy(&W[((size_t)n * nb + b) * bb + kScale], &h, 2);
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
             v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, v16};
  const bool bound_only[] = {false, false, false, false, false, true, true, false, false, false, false, true, false, true, false,
                            false, false};  // v5, v6, v11, v13: wrong on purpose
  int failures = 0;
  for (int v = 0; v < 17; ++v) {
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
