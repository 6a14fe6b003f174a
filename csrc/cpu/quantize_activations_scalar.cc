// Reference quantizer for int8 activations (docs/int8.md), per row and per block of B:
// d = max|x| / 127, q = round_half_even(x * (127 / max|x|)) clamped to [-127, 127], S = d * sum(q).
// The SIMD versions produce the same bytes; tests/helpers.py emulates this in numpy.
#include <cstring>

#include "cpu/kernels.h"

namespace pyrt::cpu::scalar {
namespace {

// Round to nearest, ties to even, for |v| <= 127.5: adding 1.5 * 2^23 leaves no fraction bits, so
// the FPU's default rounding does the work (std::nearbyint is a libm call per element without
// SSE4.1, and blocks vectorisation). The build never reassociates FP math (no -ffast-math), so
// (v + magic) - magic is kept as written. Bit-identical to numpy's np.rint on float32.
inline float round_half_even(float v) {
  const float magic = 12582912.0f;
  return (v + magic) - magic;
}

// max |x| of n floats as IEEE bits: an integer max (which vectorises, unlike a float max without
// -ffast-math); bits >= 0x7F800000 mean Inf or NaN.
inline uint32_t abs_max_bits(const float* x, int n) {
  uint32_t m = 0;
  for (int j = 0; j < n; ++j) {
    uint32_t b;
    std::memcpy(&b, x + j, 4);
    b &= 0x7FFFFFFFu;
    m = b > m ? b : m;
  }
  return m;
}

}  // namespace

bool quantize_activations(const float* x, int64_t M, int64_t K, int block, int8_t* q, float* scale, float* sum) {
  const int64_t nb = K / block;
  bool finite = true;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* src = x + m * K + b * block;
      int8_t* dst = q + m * K + b * block;
      const uint32_t bits = abs_max_bits(src, block);
      if (bits >= 0x7F800000u) {
        finite = false;
        continue;
      }
      float amax;
      std::memcpy(&amax, &bits, 4);
      // inv is computed as 127 / amax (one rounding) and applied by multiplication, exactly as the
      // numpy emulation in tests/helpers.py does.
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      int32_t isum = 0;
      for (int j = 0; j < block; ++j) {
        float r = round_half_even(src[j] * inv);
        r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
        dst[j] = static_cast<int8_t>(r);
        isum += dst[j];
      }
      const float d = amax / 127.0f;
      scale[size_t(m * nb + b)] = d;
      sum[size_t(m * nb + b)] = d * static_cast<float>(isum);
    }
  }
  return finite;
}

}  // namespace pyrt::cpu::scalar
