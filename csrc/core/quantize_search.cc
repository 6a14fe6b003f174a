// Searched block quantizers (quantize_search.h). Candidate grids, with t the level the block's
// reference value lands on (candidate scale = reference / t):
//   q8 : reference amax,  t = 127 + 0.5 k,    k = -8..8   (17 candidates)
//   q4 : reference vmax,  t = -8 + 0.125 k,   k = -8..8   (the extreme on the -8 side, 17)
//                         t =  7 + 0.125 k,   k = -4..4   (the extreme on the +7 side, 9)
//   q5 : reference vmax,  t = -16 + 0.25 k,   k = -8..8   (q4's grid at twice the levels, 17)
//                         t =  15 + 0.25 k,   k = -4..4   (9)
//   q4a: scale (hi - lo) / t with minimum lo, t = 15 + 0.125 k, k = -8..8 (17)
// t > |levels| clips the extreme value for a finer step; t < |levels| leaves room. The values of t
// are exact binary fractions, so the numpy mirror computes the very same candidates.
#include "core/quantize_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "pyrt/half.h"

namespace pyrt::quant_search {
namespace {

constexpr int kCodeCount = 16;  // q4 / q4a levels

// A candidate value as stored: FP32, then FP16. False when it does not fit FP16 (or is NaN).
bool to_half(double s, uint16_t* h, double* v) {
  const float f = float(s);
  if (!(std::fabs(f) <= kFp16Max)) return false;
  *h = fp32_to_fp16(f);
  *v = double(fp16_to_fp32(*h));
  return true;
}

// The nearest level to v within [lo, hi] (integers), ties to even: the value of
// clamp(nearbyint(v), lo, hi) (numpy's clip(rint(v))), by clamping first and then rounding with the
// 2^52 + 2^51 trick, which is exact for |v| < 2^51 and much cheaper than a nearbyint call.
inline double nearest_level(double v, double lo, double hi) {
  constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  const double c = std::min(std::max(v, lo), hi);
  return (c + kRound) - kRound;
}

// The one summation order of both implementations (B a multiple of 4): four lanes, lane j adding
// terms j, j + 4, j + 8, ... in index order from its first term, then (lane0 + lane1) + (lane2 +
// lane3). Four independent chains run about four times faster than one; numpy computes the same
// lanes with cumsum over a [blocks, B/4, 4] view.
template <class Term>
double ordered_sum(int B, Term term) {
  double s0 = term(0), s1 = term(1), s2 = term(2), s3 = term(3);
  for (int i = 4; i < B; i += 4) {
    s0 += term(i);
    s1 += term(i + 1);
    s2 += term(i + 2);
    s3 += term(i + 3);
  }
  return (s0 + s1) + (s2 + s3);
}

// ---- symmetric (q8, q4) ---------------------------------------------------------------------------
struct Symmetric {
  const double* x;
  const double* w;
  int B, qmin, qmax;

  // Nearest levels for the stored scale d, and the weighted error they leave. x * (1 / d) may differ
  // from x / d only next to an exact half-way point, where both neighbouring levels err alike.
  double codes_and_error(double d, double* q) const {
    const double inv = d == 0.0 ? 0.0 : 1.0 / d;
    for (int i = 0; i < B; ++i) q[i] = nearest_level(x[i] * inv, double(qmin), double(qmax));
    return ordered_sum(B, [&](int i) {
      const double r = x[i] - q[i] * d;
      return w[i] * r * r;
    });
  }
};

void symmetric_search(const Symmetric& s, float rtn_scale, float reference, const double* ts, int nt, double* best_q,
                     uint16_t* best_h) {
  double q[kMaxBlock];
  *best_h = fp32_to_fp16(rtn_scale);
  double best_e = s.codes_and_error(double(fp16_to_fp32(*best_h)), best_q);
  auto consider = [&](double scale) {
    uint16_t h;
    double d;
    if (!to_half(scale, &h, &d)) return false;
    const double e = s.codes_and_error(d, q);
    if (e < best_e) {
      best_e = e;
      *best_h = h;
      std::memcpy(best_q, q, sizeof(double) * size_t(s.B));
    }
    return true;
  };
  for (int j = 0; j < nt; ++j) {
    if (!consider(double(reference) / ts[j])) continue;
    // Least-squares scale for these codes: sum(w q x) / sum(w q^2).
    const double sxq = ordered_sum(s.B, [&](int i) { return s.w[i] * q[i] * s.x[i]; });
    const double sqq = ordered_sum(s.B, [&](int i) { return s.w[i] * q[i] * q[i]; });
    if (sqq > 0.0) consider(sxq / sqq);
  }
}

struct Grid {
  double t[32];
  int n = 0;
  Grid& add(double base, double step, int k0, int k1) {
    for (int k = k0; k <= k1; ++k) t[n++] = base + step * k;
    return *this;
  }
};
const Grid kQ8Grid = Grid().add(127.0, 0.5, -8, 8);
const Grid kQ4Grid = Grid().add(-8.0, 0.125, -8, 8).add(7.0, 0.125, -4, 4);
const Grid kQ5Grid = Grid().add(-16.0, 0.25, -8, 8).add(15.0, 0.25, -4, 4);
const Grid kQ4AGrid = Grid().add(15.0, 0.125, -8, 8);

void widen(const float* x, int B, double* out) {
  for (int i = 0; i < B; ++i) out[i] = double(x[i]);
}

// q4 / q5: the searched scale of levels qmin..qmax, the levels stored as level - qmin.
uint16_t search_levels(const float* x, const double* w, int B, float rtn_scale, float reference, int qmin, int qmax,
                       const Grid& grid, uint8_t* stored) {
  double xd[kMaxBlock], q[kMaxBlock];
  widen(x, B, xd);
  uint16_t h;
  symmetric_search(Symmetric{xd, w, B, qmin, qmax}, rtn_scale, reference, grid.t, grid.n, q, &h);
  for (int i = 0; i < B; ++i) stored[i] = uint8_t(int(q[i]) - qmin);
  return h;
}

}  // namespace

void block_weights(const float* x, const float* importance, int B, double* w) {
  (void)x;
  for (int i = 0; i < B; ++i) w[i] = importance ? double(importance[i]) : 1.0;
}

uint16_t search_q8_block(const float* x, const double* w, int B, float rtn_scale, float amax, int8_t* codes) {
  double xd[kMaxBlock], q[kMaxBlock];
  widen(x, B, xd);
  uint16_t h;
  symmetric_search(Symmetric{xd, w, B, -127, 127}, rtn_scale, amax, kQ8Grid.t, kQ8Grid.n, q, &h);
  for (int i = 0; i < B; ++i) codes[i] = int8_t(q[i]);
  return h;
}

uint16_t search_q5_block(const float* x, const double* w, int B, float rtn_scale, float vmax, uint8_t* codes) {
  return search_levels(x, w, B, rtn_scale, vmax, -16, 15, kQ5Grid, codes);
}

uint16_t search_q4_block(const float* x, const double* w, int B, float rtn_scale, float vmax, uint8_t* nibbles) {
  return search_levels(x, w, B, rtn_scale, vmax, -8, 7, kQ4Grid, nibbles);
}

// ---- asymmetric (q4a) -----------------------------------------------------------------------------
namespace {

struct Asymmetric {
  const double* x;
  const double* w;
  int B;

  double codes_and_error(double d, double m, double* q) const {
    const double inv = d == 0.0 ? 0.0 : 1.0 / d;
    for (int i = 0; i < B; ++i) q[i] = nearest_level((x[i] - m) * inv, 0.0, double(kCodeCount - 1));
    return ordered_sum(B, [&](int i) {
      const double r = x[i] - (q[i] * d + m);
      return w[i] * r * r;
    });
  }

  // Weighted least-squares (d, m) for fixed codes; false when the codes do not determine them.
  bool refit(const double* q, double* d, double* m) const {
    const double sw = ordered_sum(B, [&](int i) { return w[i]; });
    const double sq = ordered_sum(B, [&](int i) { return w[i] * q[i]; });
    const double sqq = ordered_sum(B, [&](int i) { return w[i] * q[i] * q[i]; });
    const double sx = ordered_sum(B, [&](int i) { return w[i] * x[i]; });
    const double sqx = ordered_sum(B, [&](int i) { return w[i] * q[i] * x[i]; });
    const double det = sw * sqq - sq * sq;
    if (!(det > 0.0)) return false;
    *d = (sw * sqx - sq * sx) / det;
    *m = (sqq * sx - sq * sqx) / det;
    return true;
  }
};

constexpr int kRefits = 2;

}  // namespace

void search_q4a_block(const float* x, const double* w, int B, float rtn_scale, float lo, float hi, uint16_t* d_out,
                      uint16_t* m_out, uint8_t* nibbles) {
  double xd[kMaxBlock], q[kMaxBlock], best_q[kMaxBlock];
  widen(x, B, xd);
  const Asymmetric a{xd, w, B};
  uint16_t best_d = fp32_to_fp16(rtn_scale), best_m = fp32_to_fp16(lo);
  double best_e = a.codes_and_error(double(fp16_to_fp32(best_d)), double(fp16_to_fp32(best_m)), best_q);
  auto consider = [&](double scale, double minimum) {
    uint16_t hd, hm;
    double dv, mv;
    if (!to_half(scale, &hd, &dv) || !to_half(minimum, &hm, &mv)) return false;
    const double e = a.codes_and_error(dv, mv, q);
    if (e < best_e) {
      best_e = e;
      best_d = hd;
      best_m = hm;
      std::memcpy(best_q, q, sizeof(double) * size_t(B));
    }
    return true;
  };
  const double range = double(hi) - double(lo);
  for (int j = 0; j < kQ4AGrid.n; ++j) {
    if (!consider(range / kQ4AGrid.t[j], double(lo))) continue;
    double d, m;
    for (int it = 0; it < kRefits; ++it)
      if (!a.refit(q, &d, &m) || !consider(d, m)) break;
  }
  *d_out = best_d;
  *m_out = best_m;
  for (int i = 0; i < B; ++i) nibbles[i] = uint8_t(best_q[i]);
}

}  // namespace pyrt::quant_search
