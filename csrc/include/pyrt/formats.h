// Weight storage formats. Each format is defined here once: its block layout (structs with
// static_assert'ed sizes) and one row of the traits table (csrc/core/formats.cc). pyrt/formats.py
// mirrors this table and carries the numpy reference quantizer; tests check both give the same bytes.
//
// Layout of a quantized tensor [rows, K]: each row is K/B consecutive blocks, blocks along K.
//   q8 : { fp16 d; int8  q[B]   }          x = q * d,            RTN: d = absmax / 127
//   q4 : { fp16 d; uint8 q[B/2] }          x = (nibble - 8) * d, RTN: d = v / -8 (v: the value of largest |x|)
//   q4a: { fp16 d; fp16 m; uint8 q[B/2] }  x = nibble * d + m,   RTN: d = (max - min) / 15, m = min
//   q4n: { fp16 d; uint8 q[B/2] }          x = kQ4nLevels[nibble] * d (non-uniform; d always searched)
//   q5 : { fp16 d; uint8 q[5B/8] }         x = (code - 16) * d,  RTN: d = v / -16; code = nibble | high bit << 4
// The default quantizers search d (and m) instead (csrc/core/quantize_search.h); RTN stays available.
// Nibbles: byte j holds element j in its low half and element j + B/2 in its high half, so one
// 16-byte load yields 32 consecutive weights after a mask and a shift. q4n at B = 32 has the bytes
// of ggml's IQ4_NL block (same level table, same nibble order). q5's q holds B/8 bytes of high bits
// (bit i, little-endian, of element i) then the B/2 nibble bytes; at B = 32 it is ggml's Q5_0 block.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pyrt {

enum class Format : int { f32 = 0, f16 = 1, bf16 = 2, q8 = 3, q4 = 4, q4a = 5, q4n = 6, q5 = 7 };
constexpr int kNumFormats = 8;

constexpr int kDefaultBlock = 32;
inline bool is_valid_block(int block) { return block == 32 || block == 64 || block == 128; }

template <int B>
struct BlockQ8 {
  uint16_t d;
  int8_t q[B];
};
template <int B>
struct BlockQ4 {
  uint16_t d;
  uint8_t q[B / 2];
};
template <int B>
struct BlockQ4A {
  uint16_t d;
  uint16_t m;
  uint8_t q[B / 2];
};
// q4n: the same bytes as q4, a nibble indexing this table of int8 levels (denser near zero, where
// most weights are) instead of standing for nibble - 8.
template <int B>
struct BlockQ4N {
  uint16_t d;
  uint8_t q[B / 2];
};
constexpr int8_t kQ4nLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
// q5: 5-bit codes 0..31 standing for code - 16. One code array, so the layout's code bytes (and the
// CUDA code plane) are the high-bit bytes and the nibbles together: q[0, B/8) high bits, then
// q[B/8, B/8 + B/2) nibbles in q4's order.
template <int B>
struct BlockQ5 {
  uint16_t d;
  uint8_t q[B / 8 + B / 2];
};
template <int B>
constexpr int kQ5HighBytes = B / 8;  // offset of the nibbles inside q
static_assert(sizeof(BlockQ8<32>) == 34 && sizeof(BlockQ8<64>) == 66 && sizeof(BlockQ8<128>) == 130, "q8 block");
static_assert(sizeof(BlockQ4<32>) == 18 && sizeof(BlockQ4<64>) == 34 && sizeof(BlockQ4<128>) == 66, "q4 block");
static_assert(sizeof(BlockQ4A<32>) == 20 && sizeof(BlockQ4A<64>) == 36 && sizeof(BlockQ4A<128>) == 68, "q4a block");
static_assert(sizeof(BlockQ4N<32>) == 18 && sizeof(BlockQ4N<64>) == 34 && sizeof(BlockQ4N<128>) == 66, "q4n block");
static_assert(sizeof(BlockQ5<32>) == 22 && sizeof(BlockQ5<64>) == 42 && sizeof(BlockQ5<128>) == 82, "q5 block");

// Byte layout of one block, derived from the structs above (offsetof/sizeof), so no kernel, the
// CUDA plane builder or the file reader re-derives an offset by hand. Plain formats: block 1,
// bytes = the element size, quants at offset 0, no scale or minimum (offsets -1).
struct BlockLayout {
  int block = 1;
  int bytes = 0;          // sizeof one block (or one element)
  int scale_offset = -1;  // fp16 d
  int min_offset = -1;    // fp16 m (q4a only)
  int quants_offset = 0;  // first code byte
  int quants_bytes = 0;   // code bytes per block
};

// offsetof(Block, m), or -1 for blocks without a minimum.
template <class Block, class = void>
struct MinOffsetOf {
  static constexpr int value = -1;
};
template <class Block>
struct MinOffsetOf<Block, decltype(void(&Block::m))> {
  static constexpr int value = int(offsetof(Block, m));
};

template <class Block>
struct QuantBlockFields {
  using type = Block;
  static constexpr bool blocked = true;
  static constexpr int bytes = int(sizeof(Block));
  static constexpr int scale_offset = int(offsetof(Block, d));
  static constexpr int min_offset = MinOffsetOf<Block>::value;
  static constexpr int quants_offset = int(offsetof(Block, q));
  static constexpr int quants_bytes = int(sizeof(Block::q));
};
template <class Element>
struct PlainFields {
  using type = Element;
  static constexpr bool blocked = false;
  static constexpr int bytes = int(sizeof(Element));
  static constexpr int scale_offset = -1;
  static constexpr int min_offset = -1;
  static constexpr int quants_offset = 0;
  static constexpr int quants_bytes = int(sizeof(Element));
};

// The compile-time face of the same layout, for kernels templated on <Format F, int B>:
// BlockOf<F, B>::bytes, ::quants_offset, ... and ::type (the block struct, or the element type of a
// plain format). One specialization per format; B is ignored by the plain formats.
template <Format F, int B>
struct BlockOf;
template <int B> struct BlockOf<Format::f32, B> : PlainFields<float> {};
template <int B> struct BlockOf<Format::f16, B> : PlainFields<uint16_t> {};
template <int B> struct BlockOf<Format::bf16, B> : PlainFields<uint16_t> {};
template <int B> struct BlockOf<Format::q8, B> : QuantBlockFields<BlockQ8<B>> {};
template <int B> struct BlockOf<Format::q4, B> : QuantBlockFields<BlockQ4<B>> {};
template <int B> struct BlockOf<Format::q4a, B> : QuantBlockFields<BlockQ4A<B>> {};
template <int B> struct BlockOf<Format::q4n, B> : QuantBlockFields<BlockQ4N<B>> {};
template <int B> struct BlockOf<Format::q5, B> : QuantBlockFields<BlockQ5<B>> {};

// Whether F stores blocks with a scale (q-formats) or plain elements.
template <Format F>
constexpr bool kBlocked = BlockOf<F, 32>::blocked;

template <Format F, int B>
constexpr BlockLayout layout_of() {
  using L = BlockOf<F, B>;
  return BlockLayout{L::blocked ? B : 1, L::bytes, L::scale_offset, L::min_offset, L::quants_offset, L::quants_bytes};
}
static_assert(BlockOf<Format::q4a, 32>::min_offset == 2 && BlockOf<Format::q4, 32>::min_offset == -1,
              "q4a's minimum follows the scale; q4 has none");

// Quantize `n` floats (n a multiple of the block for q-formats) into `dst`; throws pyrt::Error
// (Range) on NaN/Inf or values the format cannot represent. Dequantize is the exact inverse map.
// `importance`: n per-element weights >= 0 of the q-formats' scale search (e.g. the input column's
// mean squared activation), or nullptr for the default weighting (csrc/core/quantize_search.h).
using QuantizeRowFn = void (*)(const float* src, void* dst, int64_t n, int block, const float* importance);
using DequantizeRowFn = void (*)(const void* src, float* dst, int64_t n, int block);

// q4n's quantizer (csrc/core/quantize_q4n.cc): per block, the scale minimizing the error
// sum_i w_i (x_i - d * level_i)^2 among searched candidates, w_i = importance_i * (mean(y^2) + y_i^2)
// with y = x / absmax of the block; importance has n entries (importance[i] weights src[i]), null
// means 1. It is the table's quantize_row for q4n (q4n has no round-to-nearest variant).
void quantize_row_q4n_weighted(const float* src, void* dst, int64_t n, int block, const float* importance);
void dequantize_row_q4n(const void* src, float* dst, int64_t n, int block);

struct FormatTraits {
  Format format;
  const char* name;
  bool blocked;                 // q-formats: block size in {32, 64, 128}
  int header_bytes;             // per block (scale, min); 0 for plain formats
  int bits_per_element;         // payload bits per weight (32, 16, 8, 5, 4)
  QuantizeRowFn quantize_row;
  DequantizeRowFn dequantize_row;
};

const FormatTraits& format_traits(Format f);
// The round-to-nearest quantizer of f (absmax / min-max scales, importance ignored): the format's
// behaviour before the searched scales, kept for comparison. Plain formats: their only quantizer.
QuantizeRowFn rtn_quantize_row(Format f);
Format format_from_name(const std::string& name);  // throws Dtype on unknown names
int effective_block(Format f, int block);          // 1 for plain formats; validated block otherwise

// The layout of one block of f at `block` (validated: Dtype error for an invalid block).
BlockLayout block_layout(Format f, int block);
// Bytes of one block (q-formats) or one element (plain formats).
int64_t bytes_per_block(Format f, int block);
// Bytes of a row of K weights; throws Shape when K is not a multiple of the block.
int64_t row_bytes(Format f, int block, int64_t K);

// Where a tensor's bytes live. Ops dispatch on it (csrc/ops/): cpu -> csrc/cpu/, cuda -> csrc/cuda/.
enum class Device : int { cpu = 0, cuda = 1 };
const char* device_name(Device d);

// A read-only view of a 2-D weight matrix [rows, cols] stored in `format`, on `device`.
//   cpu : `data` holds pyrt's interleaved blocks, one row every `row_stride` bytes.
//   cuda: the device plane layout (docs/cuda.md): `data` is the code plane (fp16 [rows, cols] for
//         f16; B code bytes per block for q8, B/2 for q4/q4a/q4n, 5B/8 for q5, rows of cols * bits / 8 bytes),
//         `scales` and, for q4a, `mins` are fp16 [rows, cols / block]. `row_stride` is the code
//         plane's row stride. Built from the cpu bytes by block_layout() (csrc/cuda/).
struct WeightView {
  Format format = Format::f32;
  int block = 1;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;
  int64_t row_stride = 0;  // bytes between rows
  Device device = Device::cpu;
  int device_index = 0;               // which GPU, for Device::cuda
  const uint16_t* scales = nullptr;   // cuda plane layout only
  const uint16_t* mins = nullptr;     // cuda plane layout only (q4a)
  // cpu: a copy of the same weights in the M=1 kernels' layout (pyrt/repack.h), read where a kernel
  // of the active ISA uses it; null: the file's layout only. `data` stays valid either way.
  const uint8_t* repacked = nullptr;
  const uint8_t* row(int64_t r) const { return data + r * row_stride; }
};

}  // namespace pyrt
