// AVX-512 VNNI int8-activation kernel, large M (encoder batches; docs/int8.md). Per panel of 32
// weight rows the codes are unpacked once (decode_chunk + an in-register 16x16 dword transpose)
// into the VNNI layout [k/4][32 rows][4 bytes]
// with the panel's block scales, then every group of 6 activation rows runs over it: per 4 k it
// loads two code vectors and does 12 vpdpbusd, each with one activation dword broadcast (u8 codes x
// s8 activations, the signedness handled as in int8_gemv_avx512.cc). At each block end the int32
// sums are scaled in FP32: y += (dot * d_x + c S) * d_w (q4a: y += dot * d_x * d_w + m S).
// Lanes run along N, so the activations are read in place (row-major int8) and only weights move.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/int8_avx512.h"
#include "cpu/scratch.h"
#include "cpu/transpose_avx512.h"
#include "pyrt/format_dispatch.h"

namespace pyrt::cpu::avx512 {
namespace {

constexpr int kPanelRows = 32;  // two zmm of int32 lanes
constexpr int kMR = 6;          // activation rows per micro-tile: 12 int32 + 12 FP32 accumulators

// Bytes of one packed block: codes [B/4][32][4], then d_w[32] and m[32] (FP32).
template <int B>
constexpr int64_t kPackedBlockBytes = int64_t(B) * kPanelRows + 2 * kPanelRows * 4;

// Packs rows [n0, n0 + nr) of the weights (nr <= 32; missing rows get zero codes and scales):
// 16 rows' chunks of 64 codes are decoded into registers and transposed there.
template <Format F, int B>
void pack_panel(const Int8KernelArgs& a, int64_t n0, int64_t nr, uint8_t* panel) {
  const int64_t K = a.K, nb = K / B, nchunks = (K + 63) / 64;
  using L = BlockOf<F, B>;
  constexpr int64_t bb = L::bytes;
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i row_offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(int32_t(a.w.row_stride)));
  for (int h = 0; h < 2; ++h) {
    const int64_t rows = std::clamp<int64_t>(nr - 16 * h, 0, 16);
    const uint8_t* first = a.w.row(std::min(n0 + 16 * h, a.N - 1));
    for (int64_t c = 0; c < nchunks; ++c) {
      __m512i r[16];
      __m512 dw, mw;
      if (rows == 16 && 64 * (c + 1) <= K) {  // the common case, without per-row checks
        for (int j = 0; j < 16; ++j) r[j] = decode_chunk<F, B, true>(first + j * a.w.row_stride, c, K, &dw, &mw);
      } else {
        for (int j = 0; j < 16; ++j)
          r[j] = j < rows ? decode_chunk<F, B>(first + j * a.w.row_stride, c, K, &dw, &mw) : _mm512_setzero_si512();
      }
      transpose16x16(r);
      for (int t = 0; t < 16; ++t) {
        const int64_t k = 64 * c + 4 * t, b = k / B, s = (k % B) / 4;
        if (b < nb) _mm512_storeu_si512(panel + b * kPackedBlockBytes<B> + (s * kPanelRows + 16 * h) * 4, r[t]);
      }
    }
    // Scales: one gather of 16 rows' FP16 d (and m) per block.
    const __mmask16 valid = rows >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rows) - 1u);
    for (int64_t b = 0; b < nb; ++b) {
      float* dw = reinterpret_cast<float*>(panel + b * kPackedBlockBytes<B> + B * kPanelRows) + 16 * h;
      const __m512i d = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, row_offsets, first + b * bb + L::scale_offset, 1);
      _mm512_storeu_ps(dw, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d)));
      if constexpr (F == Format::q4a) {
        const __m512i m = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, row_offsets, first + b * bb + L::min_offset, 1);
        _mm512_storeu_ps(dw + kPanelRows, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(m)));
      } else {
        _mm512_storeu_ps(dw + kPanelRows, _mm512_setzero_ps());
      }
    }
  }
}

template <Format F, int B, int MR>
void micro_kernel(const Int8KernelArgs& a, const uint8_t* panel, const float* xtab, int64_t m0, int64_t n0,
                  int64_t nr) {
  const int64_t K = a.K, nb = K / B;
  __m512 y[MR][2];
  for (int i = 0; i < MR; ++i) y[i][0] = y[i][1] = _mm512_setzero_ps();
  const int8_t* x = a.q + m0 * K;
  const float* t = xtab + m0 * nb * 2;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* pb = panel + b * kPackedBlockBytes<B>;
    __m512i acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
    const int8_t* xb = x + b * B;
    for (int s = 0; s < B / 4; ++s) {
      const __m512i w0 = _mm512_loadu_si512(pb + s * 128), w1 = _mm512_loadu_si512(pb + s * 128 + 64);
      for (int i = 0; i < MR; ++i) {
        int32_t xd;
        std::memcpy(&xd, xb + i * K + 4 * s, 4);
        const __m512i xv = _mm512_set1_epi32(xd);
        acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], w0, xv);
        acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], w1, xv);
      }
    }
    const float* dwp = reinterpret_cast<const float*>(pb + B * kPanelRows);
    const __m512 dw0 = _mm512_loadu_ps(dwp), dw1 = _mm512_loadu_ps(dwp + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 dx = _mm512_set1_ps(t[(i * nb + b) * 2]), cs = _mm512_set1_ps(t[(i * nb + b) * 2 + 1]);
      const __m512 p0 = _mm512_cvtepi32_ps(acc[i][0]), p1 = _mm512_cvtepi32_ps(acc[i][1]);
      if constexpr (F == Format::q4a) {
        y[i][0] = _mm512_fmadd_ps(_mm512_mul_ps(p0, dx), dw0, y[i][0]);
        y[i][1] = _mm512_fmadd_ps(_mm512_mul_ps(p1, dx), dw1, y[i][1]);
        y[i][0] = _mm512_fmadd_ps(_mm512_loadu_ps(dwp + 32), cs, y[i][0]);
        y[i][1] = _mm512_fmadd_ps(_mm512_loadu_ps(dwp + 48), cs, y[i][1]);
      } else {
        y[i][0] = _mm512_fmadd_ps(_mm512_fmadd_ps(p0, dx, cs), dw0, y[i][0]);
        y[i][1] = _mm512_fmadd_ps(_mm512_fmadd_ps(p1, dx, cs), dw1, y[i][1]);
      }
    }
  }
  const __mmask16 k0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1u);
  const __mmask16 k1 = nr >= 32 ? __mmask16(0xFFFF) : (nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1u));
  const __m512 bias0 = a.bias ? _mm512_maskz_loadu_ps(k0, a.bias + n0) : _mm512_setzero_ps();
  const __m512 bias1 = a.bias ? _mm512_maskz_loadu_ps(k1, a.bias + n0 + 16) : _mm512_setzero_ps();
  for (int i = 0; i < MR; ++i) {
    const int64_t row = m0 + i;  // tiles start at even rows and hold even counts when paired
    float* yr = a.y + (a.digit_pairs ? row / 2 : row) * a.N + n0;
    if (a.digit_pairs && (row & 1)) {
      _mm512_mask_storeu_ps(yr, k0, _mm512_add_ps(y[i][0], _mm512_maskz_loadu_ps(k0, yr)));
      _mm512_mask_storeu_ps(yr + 16, k1, _mm512_add_ps(y[i][1], _mm512_maskz_loadu_ps(k1, yr + 16)));
    } else {
      _mm512_mask_storeu_ps(yr, k0, _mm512_add_ps(y[i][0], bias0));
      _mm512_mask_storeu_ps(yr + 16, k1, _mm512_add_ps(y[i][1], bias1));
    }
  }
}

template <Format F, int B>
void int8_gemm_format(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  const int64_t M = a.M, K = a.K, nb = K / B;
  // Activation side per (row, block): d_x and the correction coefficient times S.
  float* xtab = static_cast<float*>(thread_scratch(0, size_t(M * nb * 2) * sizeof(float)));
  for (int64_t i = 0; i < M * nb; ++i) {
    xtab[2 * i] = a.scale[i];
    xtab[2 * i + 1] = kSumCoefficient<F> * a.sum[i];
  }
  uint8_t* panel = static_cast<uint8_t*>(thread_scratch(2, size_t(nb * kPackedBlockBytes<B>)));
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kPanelRows) {
    const int64_t nr = std::min<int64_t>(kPanelRows, n_end - n0);
    pack_panel<F, B>(a, n0, nr, panel);
    int64_t m0 = 0;
    for (; m0 + kMR <= M; m0 += kMR) micro_kernel<F, B, kMR>(a, panel, xtab, m0, n0, nr);
    switch (M - m0) {
      case 1: micro_kernel<F, B, 1>(a, panel, xtab, m0, n0, nr); break;
      case 2: micro_kernel<F, B, 2>(a, panel, xtab, m0, n0, nr); break;
      case 3: micro_kernel<F, B, 3>(a, panel, xtab, m0, n0, nr); break;
      case 4: micro_kernel<F, B, 4>(a, panel, xtab, m0, n0, nr); break;
      case 5: micro_kernel<F, B, 5>(a, panel, xtab, m0, n0, nr); break;
      default: break;
    }
  }
}

}  // namespace

void int8_gemm(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  visit_blocked_format(a.w.format, a.w.block,
                       [&](auto fb) { int8_gemm_format<fb.format, fb.block>(a, n_begin, n_end); });
}

}  // namespace pyrt::cpu::avx512
