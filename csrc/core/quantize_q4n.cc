// q4n's quantizer: a searched block scale for the non-uniform level table (formats.h). It must stay
// byte-identical with pyrt/formats.py's _quantize_q4n, so every sum runs in element order in FP32,
// each product is its own statement (nothing a compiler may fuse into an FMA), and ties break alike.
#include <cmath>
#include <cstring>

#include "pyrt/errors.h"
#include "pyrt/format_dispatch.h"
#include "pyrt/formats.h"
#include "pyrt/half.h"

namespace pyrt {
namespace {

// Candidate scales: the block's value of largest magnitude maps to an end level of the table plus
// an offset in [-kSteps, kSteps] (both ends: the table is asymmetric), 2 * (2 kSteps + 1) in all.
constexpr int kSteps = 7;
constexpr int kZeroLevel = 8;  // nibble of a block whose scale is 0 (level 1, the nearest to 0)

// Midpoints between neighbouring levels; the nearest level of v is the number of midpoints < v
// (a tie goes to the lower level), found from floor(v) with one comparison.
struct NearestLevel {
  float mid[16];       // mid[15]: a sentinel above every clamped v
  float level[16];     // kQ4nLevels as floats
  uint8_t below[245];  // below[f + 128]: midpoints < f, for f in [-128, 116]
  NearestLevel() {
    for (int i = 0; i < 15; ++i) mid[i] = 0.5f * float(kQ4nLevels[i] + kQ4nLevels[i + 1]);
    mid[15] = 1000.0f;
    for (int i = 0; i < 16; ++i) level[i] = float(kQ4nLevels[i]);
    for (int f = -128; f <= 116; ++f) {
      int c = 0;
      while (c < 15 && mid[c] < float(f)) ++c;
      below[f + 128] = uint8_t(c);
    }
  }
  // int(v + 128) is floor(v) + 128, or one more when the add rounds v just below an integer up to
  // it; no midpoint lies in between, so the count comes out the same (and no libm floor call).
  // Branch-free: which side of a midpoint a weight falls is a coin toss to a branch predictor.
  int operator()(float v) const {
    v = v < -128.0f ? -128.0f : (v > 116.0f ? 116.0f : v);
    const int i = below[int(v + 128.0f)];
    return i + int(v > mid[i]);
  }
};

const NearestLevel& nearest_level() {
  static const NearestLevel table;
  return table;
}

// One block: weights w, then the candidate whose least-squares scale removes the most error
// (maximal sum(w x l)^2 / sum(w l^2)); that scale, rounded to FP16, then picks each nibble.
template <int B>
void quantize_block(const float* x, const float* importance, BlockQ4N<B>& blk) {
  const NearestLevel& nearest = nearest_level();
  float vmax = x[0], amax = std::fabs(x[0]);
  for (int i = 1; i < B; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), vmax = x[i];
  uint8_t nib[B];
  if (amax == 0.0f) {
    blk.d = 0;
    std::memset(nib, kZeroLevel, sizeof nib);
  } else {
    // The search runs on y = x / amax (|y| <= 1), so no sum can overflow whatever the weights'
    // magnitude; d then scales back by amax.
    const float sign = vmax < 0.0f ? -1.0f : 1.0f;
    float y[B], w[B];
    float sumsq = 0.0f;
    for (int i = 0; i < B; ++i) {
      y[i] = x[i] / amax;
      const float sq = y[i] * y[i];
      sumsq += sq;
    }
    const float sigma2 = sumsq / float(B);
    for (int i = 0; i < B; ++i) {
      const float sq = y[i] * y[i];
      w[i] = sigma2 + sq;
      // importance^1.5: measured better than importance^1 with this weighting (docs/quantization.md)
      if (importance) w[i] *= importance[i] * std::sqrt(importance[i]);
    }
    float best_lx = 0.0f, best_ll = 0.0f, best_score = 0.0f;
    for (int end : {0, 15})
      for (int t = -kSteps; t <= kSteps; ++t) {
        const float inv = float(kQ4nLevels[end] + t) * sign;
        float lx = 0.0f, ll = 0.0f;
        for (int i = 0; i < B; ++i) {
          const float l = nearest.level[nearest(y[i] * inv)];
          const float wl = w[i] * l;
          const float wly = wl * y[i];
          const float wll = wl * l;
          lx += wly;
          ll += wll;
        }
        if (ll <= 0.0f) continue;  // every weight 0 (importance 0): no information
        const float ratio = lx / ll;
        const float score = ratio * lx;  // the error this scale removes: lx^2 / ll
        if (score > best_score) best_lx = lx, best_ll = ll, best_score = score;
      }
    // No candidate scored (every importance 0): the end level's scale, as if unsearched.
    const float ratio = best_score > 0.0f ? best_lx / best_ll : 0.0f;
    const float d = best_score > 0.0f ? ratio * amax : vmax / float(kQ4nLevels[0]);
    PYRT_CHECK(std::fabs(d) <= kFp16Max, Range, "block scale ", d,
               " exceeds the FP16 range (65504); use f32, bf16 or scale the weights");
    blk.d = fp32_to_fp16(d);
    const float d16 = fp16_to_fp32(blk.d);
    for (int i = 0; i < B; ++i) nib[i] = uint8_t(d16 == 0.0f ? kZeroLevel : nearest(x[i] / d16));
  }
  for (int j = 0; j < B / 2; ++j) blk.q[j] = uint8_t(nib[j] | (nib[j + B / 2] << 4));
}

}  // namespace

void quantize_row_q4n_weighted(const float* src, void* dst, int64_t n, int block, const float* importance) {
  for (int64_t i = 0; i < n; ++i)
    PYRT_CHECK(std::isfinite(src[i]), Range, "cannot quantize a non-finite value (", src[i], ") at flat index ", i);
  visit_block(block, [&](auto b) {
    constexpr int B = decltype(b)::value;
    BlockQ4N<B> blk;
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n / B; ++i) {
      quantize_block<B>(src + i * B, importance ? importance + i * B : nullptr, blk);
      std::memcpy(out + i * int64_t(sizeof blk), &blk, sizeof blk);
    }
  });
}

void dequantize_row_q4n(const void* src, float* dst, int64_t n, int block) {
  visit_block(block, [&](auto b) {
    constexpr int B = decltype(b)::value;
    BlockQ4N<B> blk;
    const auto* in = static_cast<const uint8_t*>(src);
    for (int64_t i = 0; i < n / B; ++i, dst += B) {
      std::memcpy(&blk, in + i * int64_t(sizeof blk), sizeof blk);
      const float d = fp16_to_fp32(blk.d);
      for (int j = 0; j < B / 2; ++j) {
        dst[j] = float(kQ4nLevels[blk.q[j] & 0x0f]) * d;
        dst[j + B / 2] = float(kQ4nLevels[blk.q[j] >> 4]) * d;
      }
    }
  });
}

}  // namespace pyrt
