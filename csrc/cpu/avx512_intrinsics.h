// <immintrin.h> for the *_avx512.cc files, with one GCC 12 false positive switched off for the rest
// of the including file: the intrinsics' own _mm512_undefined_* pass-through operands (cvtdq2ps,
// cvtepu16, slli, reduce_add/max) are reported as uninitialized once kernels are inlined.
#pragma once
#include <immintrin.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
