// Per-thread scratch memory for the ISA kernels. It lives in a portable file on purpose: a
// std::vector used inside an *_avx512.cc file would emit AVX-512-compiled copies of shared template
// code that the linker may pick for every caller (see cmake/check_isa_symbols.py).
#pragma once
#include <cstddef>

namespace pyrt::cpu {

// A 64-byte aligned buffer of at least `bytes`, owned by the calling thread, one per `slot`
// (0..kScratchSlots-1). Its contents are undefined; it stays valid until the same thread asks for
// the same slot again.
constexpr int kScratchSlots = 4;
void* thread_scratch(int slot, size_t bytes);

}  // namespace pyrt::cpu
