// Overflow-checked size arithmetic for sizes that come from a file or an argument: a product that
// wraps would size a buffer too small and the first store past it would corrupt memory, so every
// such size is computed here and refused (Range) when it leaves int64 or a stated bound.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <limits>

#include "pyrt/errors.h"

namespace pyrt {

// a * b for non-negative a and b; false when the result would exceed int64.
inline bool mul_fits(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

// a + b for non-negative a and b; false when the result would exceed int64.
inline bool add_fits(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0 || b > std::numeric_limits<int64_t>::max() - a) return false;
  *out = a + b;
  return true;
}

// The product of non-negative factors, or a Range error naming `what` when it exceeds `limit`
// (int64 by default) at any step.
inline int64_t checked_product(const char* what, std::initializer_list<int64_t> factors,
                               int64_t limit = std::numeric_limits<int64_t>::max()) {
  int64_t product = 1;
  for (int64_t f : factors) {
    PYRT_CHECK(mul_fits(product, f, &product) && product <= limit, Range, what,
               " is too large: its size overflows (a factor of ", f, ", limit ", limit, ")");
  }
  return product;
}

inline int64_t checked_sum(const char* what, std::initializer_list<int64_t> terms,
                           int64_t limit = std::numeric_limits<int64_t>::max()) {
  int64_t sum = 0;
  for (int64_t t : terms) {
    PYRT_CHECK(add_fits(sum, t, &sum) && sum <= limit, Range, what, " is too large: ", t, " more exceeds ", limit);
  }
  return sum;
}

// Bytes one process can address: x86-64 and AArch64 user space is 47 or 48 bits; a model asking for
// more cannot run anywhere, so the request is refused before anything is allocated.
constexpr int64_t kAddressSpaceBytes = sizeof(void*) >= 8 ? (int64_t(1) << 47) : (int64_t(1) << 31);

}  // namespace pyrt
