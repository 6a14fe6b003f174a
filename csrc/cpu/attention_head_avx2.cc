// AVX2 + FMA attention head (see attention_head.h): the AVX-512 kernel's scheme with 8 lanes.
// Scores come from a transposed key tile, R queries at a time (R FMAs per key vector loaded, no
// horizontal sums); P V runs over the value rows in place, R output rows of up to 16 columns in
// registers.
#include <immintrin.h>

#include "cpu/attention_head.h"
#include "cpu/vector_math.h"

namespace pyrt::cpu::avx2 {
namespace {

constexpr int kQueryBlock = 4;

__m256i tail_mask(int64_t left) {
  const int k = left >= 8 ? 8 : left <= 0 ? 0 : int(left);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// scores[r, 0:Lp] = q[i0 + r] . keys_t[:, 0:Lp] for r < R; columns past L hold 0.
template <int R>
void score_block(const AttentionHead& a, const float* keys_t, int64_t Lp, int64_t i0, float* scores) {
  const float* q[R];
  for (int r = 0; r < R; ++r) q[r] = a.q + (i0 + r) * a.stride;
  for (int64_t j = 0; j < Lp; j += 16) {
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    for (int64_t d = 0; d < a.head_dim; ++d) {
      const __m256 k0 = _mm256_loadu_ps(keys_t + d * Lp + j), k1 = _mm256_loadu_ps(keys_t + d * Lp + j + 8);
      for (int r = 0; r < R; ++r) {
        const __m256 qd = _mm256_broadcast_ss(q[r] + d);
        acc0[r] = _mm256_fmadd_ps(qd, k0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(qd, k1, acc1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(scores + r * Lp + j, acc0[r]);
      _mm256_storeu_ps(scores + r * Lp + j + 8, acc1[r]);
    }
  }
}

// ctx[i0 + r, :] = sum_j p[r, j] v[j, :] for r < R.
template <int R>
void weighted_values(const AttentionHead& a, const float* p, int64_t Lp, int64_t i0) {
  for (int64_t d = 0; d < a.head_dim; d += 16) {
    const __m256i m0 = tail_mask(a.head_dim - d), m1 = tail_mask(a.head_dim - d - 8);
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    for (int64_t j = 0; j < a.L; ++j) {
      const float* vj = a.v + j * a.stride + d;
      const __m256 v0 = _mm256_maskload_ps(vj, m0), v1 = _mm256_maskload_ps(vj + 8, m1);
      for (int r = 0; r < R; ++r) {
        const __m256 pj = _mm256_broadcast_ss(p + r * Lp + j);
        acc0[r] = _mm256_fmadd_ps(pj, v0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(pj, v1, acc1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      float* out = a.ctx + (i0 + r) * a.stride + d;
      _mm256_maskstore_ps(out, m0, acc0[r]);
      _mm256_maskstore_ps(out + 8, m1, acc1[r]);
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
  float* keys_t = scratch;                   // [head_dim, Lp], zero past L
  float* scores = keys_t + a.head_dim * Lp;  // [kQueryBlock, Lp]
  for (int64_t d = 0; d < a.head_dim; ++d)
    for (int64_t j = L; j < Lp; ++j) keys_t[d * Lp + j] = 0.0f;
  for (int64_t j = 0; j < L; ++j) {
    const float* kj = a.k + j * a.stride;
    for (int64_t d = 0; d < a.head_dim; ++d) keys_t[d * Lp + j] = kj[d];
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

}  // namespace pyrt::cpu::avx2
