// relative_position_bucket, relative_position_bias: validate, then the CPU backend
// (cpu/position_bias_cpu.cc).
#include "cpu/ops_cpu.h"
#include "ops/dispatch.h"

namespace pyrt {
namespace {

void check_buckets(int64_t num_buckets, int64_t max_distance, bool bidirectional) {
  // Each half of a bidirectional table (and a one-directional table) needs an exact and a log part.
  const int64_t half = bidirectional ? num_buckets / 2 : num_buckets;
  PYRT_CHECK(num_buckets > 0 && num_buckets <= (1 << 16) && half >= 2 && (!bidirectional || num_buckets % 2 == 0),
             Shape, "relative position bias: ", num_buckets, " buckets (", bidirectional ? "bidirectional, " : "",
             "need an even count >= 4 when bidirectional, >= 2 otherwise, at most 65536)");
  PYRT_CHECK(max_distance > half / 2 && max_distance <= INT32_MAX, Range, "relative position bias: max distance ",
             max_distance, " must exceed the ", half / 2, " exact buckets");
}

}  // namespace

int64_t relative_position_bucket(int64_t relative, int64_t num_buckets, int64_t max_distance, bool bidirectional) {
  check_buckets(num_buckets, max_distance, bidirectional);
  PYRT_CHECK(relative > -(int64_t(1) << 40) && relative < (int64_t(1) << 40), Range,
             "relative position ", relative, " is out of range");
  return cpu::relative_position_bucket(relative, num_buckets, max_distance, bidirectional);
}

void relative_position_bias(const float* table, int64_t num_buckets, int64_t num_heads, int64_t max_distance,
                            bool bidirectional, int64_t length, float* out, Device device) {
  ops::require_cpu(device, "relative_position_bias");
  check_buckets(num_buckets, max_distance, bidirectional);
  ops::require_sizes("relative_position_bias", num_heads, length);
  PYRT_CHECK(num_heads > 0 && length <= INT32_MAX, Shape, "relative_position_bias: ", num_heads, " heads, length ",
             length);
  if (length == 0) return;
  ops::require_pointers("relative_position_bias", table && out);
  cpu::relative_position_bias(table, num_buckets, num_heads, max_distance, bidirectional, length, out);
}

}  // namespace pyrt
