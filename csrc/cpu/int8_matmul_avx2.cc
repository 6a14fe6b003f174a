// AVX2 int8-activation kernel (docs/int8.md). Each weight row is unpacked once into one byte per
// weight (q8: the signed code; q4/q4a: the nibble 0..15; q4n, q5: the signed level) plus its block scales, then dotted with
// every activation row while it sits in L1.
// vpmaddubsw multiplies unsigned by signed bytes with a saturating 16-bit pair sum:
//   q4/q4a: nibble (u8, <= 15) x q_x (s8): pair sums <= 2*15*127, never saturate;
//   q8: both signed, so the sign trick: |q_w| (u8, <= 128) x sign(q_x, q_w) (s8) = q_w * q_x, pair
//       sums <= 2*128*127 = 32512, never saturate. q4n's levels (|level| <= 127) take the same path.
// q4's "- 8" and q4a's "+ m" are applied per block in FP32 through the activation block sums.
#include <immintrin.h>

#include <cstring>

#include "cpu/decode_avx2.h"
#include "cpu/kernels.h"
#include "cpu/scratch.h"
#include "pyrt/format_dispatch.h"

namespace pyrt::cpu::avx2 {
namespace {

inline float load_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One weight row -> codes[K] (natural element order), dw[nb] and cw[nb] (the FP32 coefficient of
// the activation block sum: -8 d_w for q4, m for q4a, 0 for q8).
template <Format F, int B>
void unpack_row(const uint8_t* row, int64_t nb, uint8_t* codes, float* dw, float* cw) {
  using L = BlockOf<F, B>;
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * L::bytes;
    uint8_t* c = codes + b * B;
    const uint8_t* q = blk + L::quants_offset;
    dw[b] = load_fp16(blk + L::scale_offset);
    if constexpr (F == Format::q8) {
      cw[b] = 0.0f;
      std::memcpy(c, q, B);
    } else if constexpr (F == Format::q5) {
      cw[b] = 0.0f;  // signed levels: q8's sign trick, no offset term
      q5_block_levels<B>(q, reinterpret_cast<int8_t*>(c));
    } else if constexpr (F == Format::q4n) {
      cw[b] = 0.0f;
      const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kQ4nLevels));
      for (int j = 0; j < B / 2; j += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + j));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(c + j), _mm_shuffle_epi8(table, _mm_and_si128(v, low4)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(c + B / 2 + j),
                         _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(v, 4), low4)));
      }
    } else {
      if constexpr (F == Format::q4)
        cw[b] = -8.0f * dw[b];
      else
        cw[b] = load_fp16(blk + L::min_offset);
      for (int j = 0; j < B / 2; j += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + j));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(c + j), _mm_and_si128(v, low4));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(c + B / 2 + j), _mm_and_si128(_mm_srli_epi16(v, 4), low4));
      }
    }
  }
}

template <Format F>
inline __m256i dot32(const uint8_t* codes, const int8_t* qx) {
  const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qx));
  __m256i p16;
  if constexpr (F == Format::q8 || F == Format::q4n || F == Format::q5)
    p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(c), _mm256_sign_epi8(x, c));
  else
    p16 = _mm256_maddubs_epi16(c, x);
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

template <Format F, int B>
float row_dot(const uint8_t* codes, const float* dw, const float* cw, const int8_t* qx, const float* dx,
              const float* sx, int64_t nb) {
  // Two accumulators over alternate blocks: one FMA chain would bound the loop by its latency.
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  float corr = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    __m256i idot = dot32<F>(codes + b * B, qx + b * B);
    for (int j = 32; j < B; j += 32) idot = _mm256_add_epi32(idot, dot32<F>(codes + b * B + j, qx + b * B + j));
    acc[b & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(idot), _mm256_set1_ps(dw[b] * dx[b]), acc[b & 1]);
    if constexpr (F == Format::q4 || F == Format::q4a) corr += cw[b] * sx[b];
  }
  return hsum(_mm256_add_ps(acc[0], acc[1])) + corr;
}

template <Format F, int B>
void int8_matmul_format(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  const int64_t K = a.K, nb = K / B;
  uint8_t* codes = static_cast<uint8_t*>(thread_scratch(0, size_t(K)));
  float* dw = static_cast<float*>(thread_scratch(1, size_t(nb) * sizeof(float)));
  float* cw = static_cast<float*>(thread_scratch(2, size_t(nb) * sizeof(float)));
  for (int64_t n = n_begin; n < n_end; ++n) {
    unpack_row<F, B>(a.w.row(n), nb, codes, dw, cw);
    const float bias = a.bias ? a.bias[n] : 0.0f;
    for (int64_t m = 0; m < a.M; ++m) {
      const float v = row_dot<F, B>(codes, dw, cw, a.q + m * K, a.scale + m * nb, a.sum + m * nb, nb);
      if (a.digit_pairs && (m & 1))
        a.y[(m / 2) * a.N + n] += v;
      else
        a.y[(a.digit_pairs ? m / 2 : m) * a.N + n] = v + bias;
    }
  }
}

}  // namespace

void int8_matmul(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  visit_blocked_format(a.w.format, a.w.block,
                       [&](auto fb) { int8_matmul_format<fb.format, fb.block>(a, n_begin, n_end); });
}

}  // namespace pyrt::cpu::avx2
