// Portable reference for int8 activations: exact integer emulation of the math every SIMD int8
// kernel implements (docs/int8.md), one block at a time:
//   q8 : y += (d_w * d_x) * sum(q_x * q_w)
//   q4 : y += (d_w * d_x) * sum(q_x * (nibble - 8))
//   q4a: y += (d_w * d_x) * sum(q_x * nibble) + m * (d_x * sum(q_x))
//   q4n: y += (d_w * d_x) * sum(q_x * kQ4nLevels[nibble])
//   q5 : y += (d_w * d_x) * sum(q_x * (code - 16))
// The integer sums are exact (|sum| < 2^24); only the FP32 accumulation over blocks rounds.
#include <cstring>

#include "cpu/kernels.h"
#include "pyrt/half.h"

namespace pyrt::cpu::scalar {
namespace {

float fp16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

// Weight code j of a 4-bit block's nibbles (formats.h: byte j holds j and j + B/2).
int nibble(const uint8_t* q, int j, int B) {
  return j < B / 2 ? (q[j] & 0x0F) : (q[j - B / 2] >> 4);
}

// Code j (0..31) of a q5 block's q bytes (formats.h: high bits, then q4-ordered nibbles).
int q5_code(const uint8_t* q, int j, int B) {
  return nibble(q + B / 8, j, B) | (((q[j / 8] >> (j % 8)) & 1) << 4);
}

}  // namespace

void int8_matmul(const Int8KernelArgs& a, int64_t n_begin, int64_t n_end) {
  const int B = a.w.block;
  const int64_t nb = a.K / B;
  const Format f = a.w.format;
  const BlockLayout layout = block_layout(f, B);
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = a.w.row(n);
    for (int64_t m = 0; m < a.M; ++m) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = row + b * layout.bytes;
        const uint8_t* q = blk + layout.quants_offset;
        const int8_t* qx = a.q + m * a.K + b * B;
        const float dx = a.scale[m * nb + b];
        const float dw = fp16_at(blk + layout.scale_offset);
        int32_t dot = 0;
        if (f == Format::q8) {
          const int8_t* qw = reinterpret_cast<const int8_t*>(q);
          for (int j = 0; j < B; ++j) dot += int32_t(qx[j]) * qw[j];
          acc += (dw * dx) * float(dot);
        } else if (f == Format::q4) {
          for (int j = 0; j < B; ++j) dot += int32_t(qx[j]) * (nibble(q, j, B) - 8);
          acc += (dw * dx) * float(dot);
        } else if (f == Format::q5) {
          for (int j = 0; j < B; ++j) dot += int32_t(qx[j]) * (q5_code(q, j, B) - 16);
          acc += (dw * dx) * float(dot);
        } else if (f == Format::q4n) {
          for (int j = 0; j < B; ++j) dot += int32_t(qx[j]) * kQ4nLevels[nibble(q, j, B)];
          acc += (dw * dx) * float(dot);
        } else {  // q4a
          for (int j = 0; j < B; ++j) dot += int32_t(qx[j]) * nibble(q, j, B);
          acc += (dw * dx) * float(dot) + fp16_at(blk + layout.min_offset) * a.sum[m * nb + b];
        }
      }
      if (a.digit_pairs && (m & 1))
        a.y[(m / 2) * a.N + n] += acc;
      else
        a.y[(a.digit_pairs ? m / 2 : m) * a.N + n] = acc + (a.bias ? a.bias[n] : 0.0f);
    }
  }
}

}  // namespace pyrt::cpu::scalar
