// AVX-512 attention head (see attention_head.h). Scores come from a [head_dim, 16k] transposed key
// tile, a block of R queries at a time: each key vector loaded feeds R FMAs with broadcast query
// elements, so no horizontal sums. P V then runs over the value rows in place (contiguous
// head_dim floats each), R output rows of up to 32 columns in registers.
#include "cpu/avx512_intrinsics.h"

#include "cpu/attention_head.h"
#include "cpu/vector_math.h"

namespace pyrt::cpu::avx512 {
namespace {

constexpr int kQueryBlock = 4;

__mmask16 tail_mask(int64_t left) {
  return left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1u);
}

// scores[r, 0:Lp] = q[i0 + r] . keys_t[:, 0:Lp] for r < R; columns past L hold 0.
template <int R>
void score_block(const AttentionHead& a, const float* keys_t, int64_t Lp, int64_t i0, float* scores) {
  const float* q[R];
  for (int r = 0; r < R; ++r) q[r] = a.q + (i0 + r) * a.stride;
  for (int64_t j = 0; j < Lp; j += 16) {
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t d = 0; d < a.head_dim; ++d) {
      const __m512 kv = _mm512_loadu_ps(keys_t + d * Lp + j);
      for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][d]), kv, acc[r]);
    }
    for (int r = 0; r < R; ++r) _mm512_storeu_ps(scores + r * Lp + j, acc[r]);
  }
}

// ctx[i0 + r, :] = sum_j p[r, j] v[j, :] for r < R.
template <int R>
void weighted_values(const AttentionHead& a, const float* p, int64_t Lp, int64_t i0) {
  for (int64_t d = 0; d < a.head_dim; d += 32) {
    const __mmask16 m0 = tail_mask(a.head_dim - d), m1 = tail_mask(a.head_dim - d - 16);
    __m512 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
    for (int64_t j = 0; j < a.L; ++j) {
      const float* vj = a.v + j * a.stride + d;
      const __m512 v0 = _mm512_maskz_loadu_ps(m0, vj), v1 = _mm512_maskz_loadu_ps(m1, vj + 16);
      for (int r = 0; r < R; ++r) {
        const __m512 pj = _mm512_set1_ps(p[r * Lp + j]);
        acc0[r] = _mm512_fmadd_ps(pj, v0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(pj, v1, acc1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      float* out = a.ctx + (i0 + r) * a.stride + d;
      _mm512_mask_storeu_ps(out, m0, acc0[r]);
      _mm512_mask_storeu_ps(out + 16, m1, acc1[r]);
    }
  }
}

template <int R>
void query_block(const AttentionHead& a, const float* keys_t, int64_t Lp, int64_t i0, float* scores) {
  score_block<R>(a, keys_t, Lp, i0, scores);
  for (int r = 0; r < R; ++r) {
    float* row = scores + r * Lp;
    kVectorMath.softmax(row, a.L, a.L, add_score_bias(a, i0 + r, row));
  }
  weighted_values<R>(a, scores, Lp, i0);
}

}  // namespace

void attend_head(const AttentionHead& a, float* scratch) {
  const int64_t L = a.L, Lp = (L + 15) / 16 * 16;
  float* keys_t = scratch;               // [head_dim, Lp], zero past L
  float* scores = keys_t + a.head_dim * Lp;  // [kQueryBlock, Lp]
  // Transposed with gathers of 16 rows (a masked gather leaves the padding columns 0): a few
  // cycles per 16 elements, where element-wise strided stores cost one store each. Row offsets
  // are int32: strides up to 2^31 / 16 floats.
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(int(a.stride)));
  for (int64_t j = 0; j < Lp; j += 16) {
    const __mmask16 m = tail_mask(L - j);
    for (int64_t d = 0; d < a.head_dim; ++d)
      _mm512_storeu_ps(keys_t + d * Lp + j, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, rows, a.k + j * a.stride + d, 4));
  }
  int64_t i = 0;
  for (; i + kQueryBlock <= L; i += kQueryBlock) query_block<kQueryBlock>(a, keys_t, Lp, i, scores);
  switch (L - i) {
    case 3: query_block<3>(a, keys_t, Lp, i, scores); break;
    case 2: query_block<2>(a, keys_t, Lp, i, scores); break;
    case 1: query_block<1>(a, keys_t, Lp, i, scores); break;
    default: break;
  }
}

}  // namespace pyrt::cpu::avx512
