// How the CPU ops decide whether a loop is worth a parallel region.
#pragma once
#include <algorithm>
#include <cstdint>

#include "pyrt/runtime.h"

namespace pyrt::cpu {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kMinParallelElements = int64_t(1) << 15;

inline int threads_for(int64_t elements) {
  return elements < kMinParallelElements ? 1 : std::max(1, num_threads());
}

}  // namespace pyrt::cpu
