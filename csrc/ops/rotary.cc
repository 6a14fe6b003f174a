// rope_tables, rope_interleaved, rope_neox: validate, then the CPU backend (cpu/rotary_cpu.cc).
#include <cmath>

#include "cpu/decoder_variants_cpu.h"
#include "cpu/ops_cpu.h"
#include "ops/dispatch.h"

namespace pyrt {
namespace {

void check_head_dim(int64_t head_dim) {
  PYRT_CHECK(head_dim > 0 && head_dim % 2 == 0, Shape, "rotary embedding: head_dim ", head_dim,
             " must be positive and even");
}

// true when there is work: the arguments of a rotation (either layout) checked.
bool check_rotation(const char* op, const float* x, int64_t rows, int64_t n_heads, int64_t head_dim,
                    const float* cos_t, const float* sin_t, Device device) {
  ops::require_cpu(device, op);
  check_head_dim(head_dim);
  ops::require_sizes(op, rows, n_heads);
  if (rows == 0 || n_heads == 0) return false;
  ops::require_pointers(op, x && cos_t && sin_t);
  return true;
}

}  // namespace

void rope_tables(int64_t head_dim, float theta, int64_t first_pos, int64_t rows, float* cos_t, float* sin_t) {
  check_head_dim(head_dim);
  PYRT_CHECK(std::isfinite(theta) && theta > 0, Range, "rotary embedding: theta must be positive");
  PYRT_CHECK(first_pos >= 0 && rows >= 0, Shape, "rotary embedding: negative position or row count");
  if (rows == 0) return;
  ops::require_pointers("rope_tables", cos_t && sin_t);
  cpu::rope_tables(head_dim, theta, first_pos, rows, cos_t, sin_t);
}

void rope_interleaved(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                      const float* sin_t, Device device) {
  if (check_rotation("rope_interleaved", x, rows, n_heads, head_dim, cos_t, sin_t, device))
    cpu::rope_interleaved_rows(x, rows, n_heads, head_dim, cos_t, sin_t);
}

void rope_interleaved_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                           const float* sin_t) noexcept {
  cpu::rope_interleaved_rows(x, rows, n_heads, head_dim, cos_t, sin_t);
}

void rope_neox(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t, const float* sin_t,
               Device device) {
  if (check_rotation("rope_neox", x, rows, n_heads, head_dim, cos_t, sin_t, device))
    cpu::rope_neox_rows(x, rows, n_heads, head_dim, cos_t, sin_t);
}

void rope_neox_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const float* cos_t,
                    const float* sin_t) noexcept {
  cpu::rope_neox_rows(x, rows, n_heads, head_dim, cos_t, sin_t);
}

}  // namespace pyrt
