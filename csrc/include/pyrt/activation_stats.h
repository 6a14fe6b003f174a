// Activation statistics at the op level, for activation-aware quantization (pyrt/calibration.py):
// while collection is on, every matmul adds, for its weight, the sum of x^2 over its input rows per
// input column (and the row count). A model's forward pass is covered without any change to it:
// matmul() records its whole input; a product split over a team (matmul_rows per thread,
// stacked_matmul_rows) is recorded once, by the share that starts at output row 0 / team member 0.
//
// For the weights named at start, a product also adds its input's full second moment x^T x [K, K]
// (GPTQ, pyrt/quantize_gptq.py), computed with the active ISA's f32 GEMM on the recording thread;
// consecutive products on the same input (Q, K and V; gate and up) reuse one computation.
//
// Weights are keyed by the address of their bytes (WeightView::data); the caller maps addresses
// back to tensor names. Collection is process-wide and thread-safe; when off it costs one relaxed
// atomic load per product.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "pyrt/matmul.h"

namespace pyrt {

struct ColumnStats {
  std::vector<double> sum_sq;  // [K]: sum over rows of x[row, k]^2
  int64_t rows = 0;
  std::vector<double> second_moment;  // [K, K]: sum over rows of x x^T; only for weights asked for
};

// Clears earlier statistics and turns collection on; the weights at `second_moment_of` (data
// addresses) also collect their input's second moment.
void start_activation_stats(const std::set<const void*>& second_moment_of = {});
// Turns collection off and returns what was collected, by weight address. Throws (Internal) if a
// record could not be stored (out of memory during the forward pass).
std::map<const void*, ColumnStats> stop_activation_stats();
bool activation_stats_active() noexcept;
// Adds p's f32 input [M, K] to the statistics of p.w (no-op for other activation types).
void record_activations(const MatmulParams& p) noexcept;

}  // namespace pyrt
