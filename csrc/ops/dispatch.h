// Shared by csrc/ops/*.cc: the checks every op makes before it picks a backend.
#pragma once
#include <cstdint>

#include "pyrt/errors.h"
#include "pyrt/formats.h"

namespace pyrt::ops {

// Ops without a CUDA backend yet: a precise Device error instead of reading device memory on the host.
inline void require_cpu(Device device, const char* op) {
  PYRT_CHECK(device == Device::cpu, Device, op, " runs on the CPU only so far, got tensors on ", device_name(device));
}

inline void require_sizes(const char* op, int64_t rows, int64_t n) {
  PYRT_CHECK(rows >= 0 && n >= 0, Shape, op, ": negative size [", rows, ", ", n, "]");
}

inline void require_pointers(const char* op, bool all_set) {
  PYRT_CHECK(all_set, Internal, op, ": null pointer");
}

}  // namespace pyrt::ops
