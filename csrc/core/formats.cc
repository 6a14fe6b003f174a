// The traits table and the scalar (reference) quantizers. They must stay byte-identical with
// pyrt/formats.py: every division and rounding below is the same IEEE FP32 operation numpy does.
// The q-formats' default quantizers search their scales (core/quantize_search.h, mirrored by
// pyrt/quantize_search.py); the round-to-nearest codecs below give the first candidate.
#include "pyrt/formats.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/quantize_search.h"
#include "pyrt/errors.h"
#include "pyrt/format_dispatch.h"
#include "pyrt/half.h"

namespace pyrt {
namespace {

void check_finite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    PYRT_CHECK(std::isfinite(x[i]), Range, "cannot quantize a non-finite value (", x[i], ") at flat index ", i);
}

// FP16 storage of a scale or minimum: refuse instead of writing inf.
uint16_t to_fp16_checked(float v, const char* what) {
  PYRT_CHECK(std::fabs(v) <= kFp16Max, Range, "block ", what, " ", v,
             " exceeds the FP16 range (65504); use f32, bf16 or scale the weights");
  return fp32_to_fp16(v);
}

// ---- f32 / f16 / bf16 -------------------------------------------------------------------------
void quantize_f32(const float* src, void* dst, int64_t n, int, const float*) {
  check_finite(src, n);
  std::memcpy(dst, src, size_t(n) * 4);
}
void dequantize_f32(const void* src, float* dst, int64_t n, int) { std::memcpy(dst, src, size_t(n) * 4); }

void quantize_f16(const float* src, void* dst, int64_t n, int, const float*) {
  check_finite(src, n);
  auto* out = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    PYRT_CHECK(std::fabs(src[i]) <= kFp16Max, Range, "value ", src[i], " at flat index ", i,
               " exceeds the FP16 range (65504); use bf16 or f32 for this tensor");
    out[i] = fp32_to_fp16(src[i]);
  }
}
void dequantize_f16(const void* src, float* dst, int64_t n, int) {
  const auto* in = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(in[i]);
}

void quantize_bf16(const float* src, void* dst, int64_t n, int, const float*) {
  check_finite(src, n);
  auto* out = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    out[i] = fp32_to_bf16(src[i]);
    PYRT_CHECK((out[i] & 0x7fff) != 0x7f80, Range, "value ", src[i], " at flat index ", i,
               " overflows BF16 when rounded");
  }
}
void dequantize_bf16(const void* src, float* dst, int64_t n, int) {
  const auto* in = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(in[i]);
}

// ---- q-formats -------------------------------------------------------------------------------
// A codec quantizes one block of B floats into its struct from formats.h (and back); the struct is
// the layout. quantize_blocks / dequantize_blocks walk a row and copy blocks as bytes, since the
// buffers carry no alignment promise.

// ---- q8 ----------------------------------------------------------------------------------------
struct CodecQ8 {
  template <int B>
  using Block = BlockQ8<B>;
  template <int B>
  static float absmax(const float* src) {
    float amax = 0.0f;
    for (int i = 0; i < B; ++i) amax = std::max(amax, std::fabs(src[i]));
    return amax;
  }
  template <int B>
  static void quantize(const float* src, BlockQ8<B>& blk) {
    blk.d = to_fp16_checked(absmax<B>(src) / 127.0f, "scale");
    const float d = fp16_to_fp32(blk.d);
    for (int i = 0; i < B; ++i)
      blk.q[i] = d == 0.0f ? 0 : int8_t(std::clamp(std::nearbyint(src[i] / d), -127.0f, 127.0f));
  }
  template <int B>
  static void search(const float* src, const double* w, BlockQ8<B>& blk) {
    const float amax = absmax<B>(src), rtn = amax / 127.0f;
    to_fp16_checked(rtn, "scale");
    blk.d = quant_search::search_q8_block(src, w, B, rtn, amax, blk.q);
  }
  template <int B>
  static void dequantize(const BlockQ8<B>& blk, float* dst) {
    const float d = fp16_to_fp32(blk.d);
    for (int i = 0; i < B; ++i) dst[i] = float(blk.q[i]) * d;
  }
};

// ---- q4 / q4a nibbles ---------------------------------------------------------------------------
// formats.h: byte j holds element j in its low half and element j + B/2 in its high half.
template <int B>
void pack_nibbles(const uint8_t (&levels)[B], uint8_t (&q)[B / 2]) {
  for (int j = 0; j < B / 2; ++j) q[j] = uint8_t(levels[j] | (levels[j + B / 2] << 4));
}

// ---- q4 / q5 (symmetric) ------------------------------------------------------------------------
// Levels kMin..kMax stored as level - kMin. Round to nearest maps the value of largest magnitude
// exactly to kMin, which uses every level.
template <int kMin, int kMax>
struct SymmetricLevels {
  // First element of largest magnitude (ties keep the earliest), exactly like numpy's argmax.
  template <int B>
  static float extreme(const float* src) {
    float vmax = src[0], amax = std::fabs(src[0]);
    for (int i = 1; i < B; ++i)
      if (std::fabs(src[i]) > amax) amax = std::fabs(src[i]), vmax = src[i];
    return vmax;
  }
  template <int B>
  static uint16_t rtn(const float* src, uint8_t (&levels)[B]) {
    const uint16_t h = to_fp16_checked(extreme<B>(src) / float(kMin), "scale");
    const float d = fp16_to_fp32(h);
    for (int i = 0; i < B; ++i)
      levels[i] = d == 0.0f ? uint8_t(-kMin)
                            : uint8_t(std::clamp(std::nearbyint(src[i] / d), float(kMin), float(kMax)) - float(kMin));
    return h;
  }
  // The searched scale (search: quant_search::search_q4_block or search_q5_block).
  template <int B, class Search>
  static uint16_t searched(const float* src, const double* w, uint8_t (&levels)[B], Search search) {
    const float vmax = extreme<B>(src), rtn_scale = vmax / float(kMin);
    to_fp16_checked(rtn_scale, "scale");
    return search(src, w, B, rtn_scale, vmax, levels);
  }
};

// quantize and search of a symmetric format D (q4, q5): D::Levels, D::search_block
// (quant_search::search_q4_block, ...) and D::pack<B>(levels, blk), which stores the levels.
template <class D>
struct SymmetricCodec {
  template <template <int> class BlockT, int B>
  static void quantize(const float* src, BlockT<B>& blk) {
    uint8_t levels[B];
    blk.d = D::Levels::template rtn<B>(src, levels);
    D::template pack<B>(levels, blk);
  }
  template <template <int> class BlockT, int B>
  static void search(const float* src, const double* w, BlockT<B>& blk) {
    uint8_t levels[B];
    blk.d = D::Levels::template searched<B>(src, w, levels, D::search_block);
    D::template pack<B>(levels, blk);
  }
};

struct CodecQ4 : SymmetricCodec<CodecQ4> {
  using Levels = SymmetricLevels<-8, 7>;
  template <int B>
  using Block = BlockQ4<B>;
  static constexpr auto search_block = quant_search::search_q4_block;
  template <int B>
  static void pack(const uint8_t (&levels)[B], BlockQ4<B>& blk) {
    pack_nibbles<B>(levels, blk.q);
  }
  template <int B>
  static void dequantize(const BlockQ4<B>& blk, float* dst) {
    const float d = fp16_to_fp32(blk.d);
    for (int j = 0; j < B / 2; ++j) {
      dst[j] = float(int(blk.q[j] & 0x0f) - 8) * d;
      dst[j + B / 2] = float(int(blk.q[j] >> 4) - 8) * d;
    }
  }
};

// ---- q4a (asymmetric) --------------------------------------------------------------------------
struct CodecQ4A {
  template <int B>
  using Block = BlockQ4A<B>;
  template <int B>
  static void range(const float* src, float* lo_out, float* hi_out) {
    float lo = src[0], hi = src[0];
    for (int i = 1; i < B; ++i) lo = std::min(lo, src[i]), hi = std::max(hi, src[i]);
    // min/max of {-0, +0} is either; adding +0 makes both +0 so the bytes never depend on it.
    *lo_out = lo + 0.0f;
    *hi_out = hi + 0.0f;
  }
  template <int B>
  static void quantize(const float* src, BlockQ4A<B>& blk) {
    float lo, hi;
    range<B>(src, &lo, &hi);
    blk.d = to_fp16_checked((hi - lo) / 15.0f, "scale");
    blk.m = to_fp16_checked(lo, "minimum");
    const float d = fp16_to_fp32(blk.d), m = fp16_to_fp32(blk.m);
    uint8_t levels[B];
    for (int i = 0; i < B; ++i)
      levels[i] = d == 0.0f ? 0 : uint8_t(std::clamp(std::nearbyint((src[i] - m) / d), 0.0f, 15.0f));
    pack_nibbles<B>(levels, blk.q);
  }
  template <int B>
  static void search(const float* src, const double* w, BlockQ4A<B>& blk) {
    float lo, hi;
    range<B>(src, &lo, &hi);
    const float rtn = (hi - lo) / 15.0f;
    to_fp16_checked(rtn, "scale");
    to_fp16_checked(lo, "minimum");
    uint8_t levels[B];
    quant_search::search_q4a_block(src, w, B, rtn, lo, hi, &blk.d, &blk.m, levels);
    pack_nibbles<B>(levels, blk.q);
  }
  template <int B>
  static void dequantize(const BlockQ4A<B>& blk, float* dst) {
    const float d = fp16_to_fp32(blk.d), m = fp16_to_fp32(blk.m);
    for (int j = 0; j < B / 2; ++j) {
      dst[j] = float(blk.q[j] & 0x0f) * d + m;
      dst[j + B / 2] = float(blk.q[j] >> 4) * d + m;
    }
  }
};

// ---- q5 (symmetric, 5-bit) ---------------------------------------------------------------------
// formats.h: codes 0..31 (level + 16); bit i of the high-bit bytes is code i's bit 4, the low four
// bits pack as q4's nibbles.
template <int B>
void pack_q5(const uint8_t (&codes)[B], uint8_t (&q)[B / 8 + B / 2]) {
  for (int j = 0; j < B / 8; ++j) q[j] = 0;
  for (int i = 0; i < B; ++i) q[i / 8] = uint8_t(q[i / 8] | ((codes[i] >> 4) << (i % 8)));
  uint8_t* nib = q + kQ5HighBytes<B>;
  for (int j = 0; j < B / 2; ++j) nib[j] = uint8_t((codes[j] & 0x0f) | ((codes[j + B / 2] & 0x0f) << 4));
}

struct CodecQ5 : SymmetricCodec<CodecQ5> {
  using Levels = SymmetricLevels<-16, 15>;
  template <int B>
  using Block = BlockQ5<B>;
  static constexpr auto search_block = quant_search::search_q5_block;
  template <int B>
  static void pack(const uint8_t (&codes)[B], BlockQ5<B>& blk) {
    pack_q5<B>(codes, blk.q);
  }
  template <int B>
  static void dequantize(const BlockQ5<B>& blk, float* dst) {
    const float d = fp16_to_fp32(blk.d);
    const uint8_t* nib = blk.q + kQ5HighBytes<B>;
    for (int j = 0; j < B / 2; ++j) {
      const int hi0 = (blk.q[j / 8] >> (j % 8)) & 1, hi1 = (blk.q[(j + B / 2) / 8] >> (j % 8)) & 1;
      dst[j] = float(int(nib[j] & 0x0f) + 16 * hi0 - 16) * d;
      dst[j + B / 2] = float(int(nib[j] >> 4) + 16 * hi1 - 16) * d;
    }
  }
};

void check_importance(const float* importance, int64_t n) {
  if (!importance) return;
  for (int64_t i = 0; i < n; ++i)
    PYRT_CHECK(std::isfinite(importance[i]) && importance[i] >= 0.0f, Range, "importance must be finite and >= 0, got ",
               importance[i], " at flat index ", i);
}

// The row functions of the traits table: n / B blocks, each through the codec at the runtime
// block size (validated by the caller). Round to nearest:
template <class Codec>
void quantize_blocks(const float* src, void* dst, int64_t n, int block, const float*) {
  check_finite(src, n);
  visit_block(block, [&](auto b) {
    constexpr int B = b.value;
    typename Codec::template Block<B> blk;
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n / B; ++i) {
      Codec::quantize(src + i * B, blk);
      std::memcpy(out + i * int64_t(sizeof blk), &blk, sizeof blk);
    }
  });
}
// Searched scales, weighted by `importance` (or the default weighting).
template <class Codec>
void search_blocks(const float* src, void* dst, int64_t n, int block, const float* importance) {
  check_finite(src, n);
  check_importance(importance, n);
  visit_block(block, [&](auto b) {
    constexpr int B = b.value;
    typename Codec::template Block<B> blk;
    double w[B];
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n / B; ++i) {
      quant_search::block_weights(src + i * B, importance ? importance + i * B : nullptr, B, w);
      Codec::search(src + i * B, w, blk);
      std::memcpy(out + i * int64_t(sizeof blk), &blk, sizeof blk);
    }
  });
}
template <class Codec>
void dequantize_blocks(const void* src, float* dst, int64_t n, int block) {
  visit_block(block, [&](auto b) {
    constexpr int B = b.value;
    typename Codec::template Block<B> blk;
    const auto* in = static_cast<const uint8_t*>(src);
    for (int64_t i = 0; i < n / B; ++i) {
      std::memcpy(&blk, in + i * int64_t(sizeof blk), sizeof blk);
      Codec::dequantize(blk, dst + i * B);
    }
  });
}

// Header bytes (scale, minimum) per block: the same at every block size.
template <Format F>
constexpr int kHeaderBytes = BlockOf<F, 32>::quants_offset;

const FormatTraits kTraits[kNumFormats] = {
    {Format::f32, "f32", false, 0, 32, quantize_f32, dequantize_f32},
    {Format::f16, "f16", false, 0, 16, quantize_f16, dequantize_f16},
    {Format::bf16, "bf16", false, 0, 16, quantize_bf16, dequantize_bf16},
    {Format::q8, "q8", true, kHeaderBytes<Format::q8>, 8, search_blocks<CodecQ8>, dequantize_blocks<CodecQ8>},
    {Format::q4, "q4", true, kHeaderBytes<Format::q4>, 4, search_blocks<CodecQ4>, dequantize_blocks<CodecQ4>},
    {Format::q4a, "q4a", true, kHeaderBytes<Format::q4a>, 4, search_blocks<CodecQ4A>, dequantize_blocks<CodecQ4A>},
    {Format::q4n, "q4n", true, kHeaderBytes<Format::q4n>, 4, quantize_row_q4n_weighted, dequantize_row_q4n},
    {Format::q5, "q5", true, kHeaderBytes<Format::q5>, 5, search_blocks<CodecQ5>, dequantize_blocks<CodecQ5>},
};

}  // namespace

QuantizeRowFn rtn_quantize_row(Format f) {
  switch (f) {
    case Format::q8: return quantize_blocks<CodecQ8>;
    case Format::q4: return quantize_blocks<CodecQ4>;
    case Format::q4a: return quantize_blocks<CodecQ4A>;
    case Format::q5: return quantize_blocks<CodecQ5>;
    default: return format_traits(f).quantize_row;
  }
}

const FormatTraits& format_traits(Format f) {
  const int i = static_cast<int>(f);
  PYRT_INTERNAL_CHECK(i >= 0 && i < kNumFormats);
  return kTraits[i];
}

Format format_from_name(const std::string& name) {
  for (const auto& t : kTraits)
    if (name == t.name) return t.format;
  PYRT_THROW(Dtype, "unknown weight format '", name, "' (expected one of f32, f16, bf16, q8, q4, q4a, q4n, q5)");
}

int effective_block(Format f, int block) {
  if (!format_traits(f).blocked) return 1;
  PYRT_CHECK(is_valid_block(block), Dtype, "block size must be 32, 64 or 128 for ",
             format_traits(f).name, ", got ", block);
  return block;
}

BlockLayout block_layout(Format f, int block) {
  return visit_format(f, effective_block(f, block), [](auto fb) { return layout_of<fb.format, fb.block>(); });
}

int64_t bytes_per_block(Format f, int block) { return block_layout(f, block).bytes; }

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

int64_t row_bytes(Format f, int block, int64_t K) {
  const int B = effective_block(f, block);
  PYRT_CHECK(K % B == 0, Shape, "the last dimension (", K, ") must be a multiple of the block size ", B,
             " for ", format_traits(f).name);
  return (K / B) * bytes_per_block(f, B);
}

}  // namespace pyrt
