// Portable scalar FP16 / BF16 conversions (round to nearest even), bit-exact with numpy.
// The SIMD kernels use F16C / AVX-512 instructions instead; these are the reference.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace pyrt {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

constexpr float kFp16Max = 65504.0f;

// FP16 -> FP32, exact (including subnormals, inf and NaN).
inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24, exact in FP32
    const float v = std::ldexp(float(mant), -24);
    return (h & 0x8000) ? -v : v;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000 | (mant << 13));
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

// FP32 -> FP16 with round-to-nearest-even. |f| >= 65520 becomes inf: callers that must never
// produce inf check the range first (see quantize).
inline uint16_t fp32_to_fp16(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) {  // inf or NaN (keep NaN quiet)
    return uint16_t(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
  }
  if (ax >= 0x477ff000) return uint16_t(sign | 0x7c00);  // >= 65520 rounds to inf
  if (ax < 0x38800000) {
    // below the smallest normal (2^-14): the result is mant * 2^-24. Scaling by 2^24 is exact,
    // nearbyint rounds half to even; 1024 lands exactly on the smallest normal's encoding.
    const float scaled = bits_float(ax) * 16777216.0f;
    return uint16_t(sign | uint16_t(std::nearbyint(scaled)));
  }
  const uint32_t mant = ax & 0x7fffff;
  uint32_t h = (((ax >> 23) - 112) << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;  // a carry into the exponent is correct
  return uint16_t(sign | h);
}

inline float bf16_to_fp32(uint16_t b) { return bits_float(uint32_t(b) << 16); }

// FP32 -> BF16, round to nearest even; NaN stays NaN.
inline uint16_t fp32_to_bf16(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return uint16_t(x >> 16);
}

}  // namespace pyrt
