// Portable attention head (see attention_head.h): the reference for the SIMD kernels. Keys are
// copied transposed into a [head_dim, L] tile so both inner loops run over contiguous memory
// without a reduction, which the compiler vectorizes without reassociating FP32 sums.
#include "cpu/attention_head.h"
#include "cpu/vector_math.h"

namespace pyrt::cpu::scalar {

void attend_head(const AttentionHead& a, float* scratch) {
  const int64_t L = a.L, hd = a.head_dim;
  float* keys_t = scratch;           // [hd, L]
  float* scores = keys_t + hd * L;   // [L]
  float* acc = scores + L;           // [hd]
  for (int64_t j = 0; j < L; ++j)
    for (int64_t d = 0; d < hd; ++d) keys_t[d * L + j] = a.k[j * a.stride + d];
  for (int64_t i = 0; i < L; ++i) {
    const float* qi = a.q + i * a.stride;
    for (int64_t j = 0; j < L; ++j) scores[j] = 0.0f;
    for (int64_t d = 0; d < hd; ++d) {
      const float qd = qi[d];
      const float* kd = keys_t + d * L;
      for (int64_t j = 0; j < L; ++j) scores[j] += qd * kd[j];
    }
    kVectorMath.softmax(scores, L, L, add_score_bias(a, i, scores));
    for (int64_t d = 0; d < hd; ++d) acc[d] = 0.0f;
    for (int64_t j = 0; j < L; ++j) {
      const float p = scores[j];
      const float* vj = a.v + j * a.stride;
      for (int64_t d = 0; d < hd; ++d) acc[d] += p * vj[d];
    }
    float* out = a.ctx + i * a.stride;
    for (int64_t d = 0; d < hd; ++d) out[d] = acc[d];
  }
}

}  // namespace pyrt::cpu::scalar
