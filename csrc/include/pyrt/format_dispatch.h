// The one format x block visitor. Kernels are templates on <Format F, int B>; a kernel family's
// entry point turns the runtime (format, block) of its weights into those template arguments here,
// once per call, instead of its own switch ladder:
//
//   visit_format(w.format, w.block, [&](auto fb) { kernel<fb.format, fb.block>(args); });
//
// fb is a FormatBlock<F, B> (an empty type): the inner loops see only constants, and the compiler
// instantiates exactly the kernels it did for a hand-written switch. Plain formats carry B = 1.
// A new format adds its case to visit_plain_format or visit_blocked_format, nothing else here.
// The format and block must already be validated (csrc/ops/ does it): there is no error path.
#pragma once
#include <type_traits>

#include "pyrt/formats.h"

namespace pyrt {

template <Format F, int B>
struct FormatBlock {
  static constexpr Format format = F;
  static constexpr int block = B;
};

// fn(std::integral_constant<int, B>{}) for the block sizes of the q-formats (32, 64, 128).
template <class Fn>
decltype(auto) visit_block(int block, Fn&& fn) {
  switch (block) {
    case 32: return fn(std::integral_constant<int, 32>{});
    case 64: return fn(std::integral_constant<int, 64>{});
    default: return fn(std::integral_constant<int, 128>{});
  }
}

// fn(FormatBlock<F, B>{}) for the q-formats only (kernels that exist only for them: int8 activations).
template <class Fn>
decltype(auto) visit_blocked_format(Format f, int block, Fn&& fn) {
  return visit_block(block, [&](auto b) -> decltype(auto) {
    constexpr int B = decltype(b)::value;
    switch (f) {
      case Format::q8: return fn(FormatBlock<Format::q8, B>{});
      case Format::q4: return fn(FormatBlock<Format::q4, B>{});
      case Format::q4n: return fn(FormatBlock<Format::q4n, B>{});
      case Format::q5: return fn(FormatBlock<Format::q5, B>{});
      default: return fn(FormatBlock<Format::q4a, B>{});
    }
  });
}

// fn(FormatBlock<F, 1>{}) for the plain formats only.
template <class Fn>
decltype(auto) visit_plain_format(Format f, Fn&& fn) {
  switch (f) {
    case Format::f16: return fn(FormatBlock<Format::f16, 1>{});
    case Format::bf16: return fn(FormatBlock<Format::bf16, 1>{});
    default: return fn(FormatBlock<Format::f32, 1>{});
  }
}

// fn(FormatBlock<F, B>{}) for every format.
template <class Fn>
decltype(auto) visit_format(Format f, int block, Fn&& fn) {
  if (format_traits(f).blocked) return visit_blocked_format(f, block, fn);
  return visit_plain_format(f, fn);
}

}  // namespace pyrt
