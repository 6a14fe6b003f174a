// The CUDA backend's op entry points, declared without CUDA types so that csrc/ops/ can dispatch
// to them in every build. A CUDA build implements them in csrc/cuda/*.cu; a CPU-only build links
// twins that raise pyrt::Error(Device).
#pragma once
#include "pyrt/matmul.h"

namespace pyrt::gpu {

// pyrt::matmul for p.w.device == Device::cuda: p already passed the device-independent checks.
void matmul(const MatmulParams& p);

}  // namespace pyrt::gpu
