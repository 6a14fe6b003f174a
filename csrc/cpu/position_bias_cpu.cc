// The relative position bias on the CPU: the bucket of every distance once, then each head's
// [length, length] block filled row by row from those (a Toeplitz matrix: row i is the distance
// row shifted by i).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops_cpu.h"

namespace pyrt::cpu {

int64_t relative_position_bucket(int64_t relative, int64_t num_buckets, int64_t max_distance, bool bidirectional) {
  int64_t n = -relative;  // query index minus key index
  int64_t bucket = 0;
  if (bidirectional) {
    num_buckets /= 2;
    if (n < 0) bucket = num_buckets;  // keys after the query use the upper half
    n = n < 0 ? -n : n;
  } else {
    n = std::max<int64_t>(n, 0);
  }
  const int64_t exact = num_buckets / 2;
  if (n < exact) return bucket + n;
  // In FP64: at distances 2 exact, 4 exact, ... the log ratio is an exact integer fraction, and
  // FP64 lands on it as the reference implementations' FP32 does (tests/ops/test_position_bias.py).
  const double scaled = std::log(double(n) / double(exact)) / std::log(double(max_distance) / double(exact)) *
                        double(num_buckets - exact);
  const int64_t log_bucket = exact + int64_t(scaled);
  return bucket + std::min(log_bucket, num_buckets - 1);
}

void relative_position_bias(const float* table, int64_t num_buckets, int64_t num_heads, int64_t max_distance,
                            bool bidirectional, int64_t length, float* out) {
  // by_distance[h][d + length - 1]: the bias of key j = i + d, for d in (-length, length).
  const int64_t span = 2 * length - 1;
  std::vector<float> by_distance(size_t(num_heads * span));
  for (int64_t d = -(length - 1); d < length; ++d) {
    const int64_t b = relative_position_bucket(d, num_buckets, max_distance, bidirectional);
    for (int64_t h = 0; h < num_heads; ++h) by_distance[size_t(h * span + d + length - 1)] = table[b * num_heads + h];
  }
  for (int64_t h = 0; h < num_heads; ++h) {
    const float* distances = by_distance.data() + h * span;
    for (int64_t i = 0; i < length; ++i) {
      // Row i: keys j = 0 .. length - 1 sit at distances -i .. length - 1 - i.
      const float* from = distances + (length - 1 - i);
      std::copy(from, from + length, out + (h * length + i) * length);
    }
  }
}

}  // namespace pyrt::cpu
