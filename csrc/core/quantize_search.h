// Searched block quantizers: each block's scale (and q4a's minimum) is the one of a fixed candidate
// set with the lowest weighted squared error sum_i w_i (x_i - stored_i)^2, the round-to-nearest
// (RTN) scale being the first candidate, so the result is never worse than RTN under that error.
//
// Every candidate is judged as it would be stored: its scale (and minimum) rounded to FP16, the
// codes the nearest levels for those FP16 values. For each candidate, the weighted least-squares
// refit of the scale (and minimum) for its codes is tried too (q4a: twice, alternating).
//
// pyrt/quantize_search.py is a byte-identical numpy mirror. To make that possible all arithmetic
// here is float64 (inputs widened from float32), sums run in one fixed order (four interleaved
// lanes, see ordered_sum), this file is compiled without FMA contraction (CMakeLists.txt), and
// ties keep the earlier candidate. The candidate grids are documented in quantize_search.cc.
#pragma once
#include <cstdint>

namespace pyrt::quant_search {

constexpr int kMaxBlock = 128;

// The per-element weights of one block of B values: importance_i (e.g. the mean squared activation
// of the weight's input column), or 1 without importance (plain squared error). Measured on
// all-MiniLM-L6-v2 q4a/32 (docs/quantization.md), these beat x^2-based weightings (x_i^2,
// mean(x^2) + x_i^2, and importance times sqrt(mean(x^2) + x_i^2)).
void block_weights(const float* x, const float* importance, int B, double* w);

// q8: levels -127..127. rtn_scale = amax / 127 (FP16 range already checked by the caller).
uint16_t search_q8_block(const float* x, const double* w, int B, float rtn_scale, float amax, int8_t* codes);
// q4: levels -8..7, stored as level + 8. rtn_scale = vmax / -8 (vmax: the first value of largest |x|).
uint16_t search_q4_block(const float* x, const double* w, int B, float rtn_scale, float vmax, uint8_t* nibbles);
// q5: levels -16..15, stored as level + 16. rtn_scale = vmax / -16 (vmax as for q4).
uint16_t search_q5_block(const float* x, const double* w, int B, float rtn_scale, float vmax, uint8_t* codes);
// q4a: x = n * d + m, n in 0..15. rtn: d = (hi - lo) / 15, m = lo (both range-checked by the caller).
void search_q4a_block(const float* x, const double* w, int B, float rtn_scale, float lo, float hi, uint16_t* d,
                      uint16_t* m, uint8_t* nibbles);

}  // namespace pyrt::quant_search
