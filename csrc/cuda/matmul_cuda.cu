// pyrt::gpu::matmul: checks the request, then picks the small-M GEMV kernel or the tensor-core
// kernel. Bad input is rejected here with a typed error before any kernel can touch memory.
#include "cuda/matmul_kernels.cuh"
#include "pyrt/device.h"

namespace pyrt::gpu {
namespace {

WeightKind weight_kind(Format f) {
  switch (f) {
    case Format::f16: return WeightKind::f16;
    case Format::q8: return WeightKind::q8;
    case Format::q4: return WeightKind::q4;
    case Format::q4a: return WeightKind::q4a;
    default: break;
  }
  PYRT_THROW(Unsupported, format_traits(f).name,
             " weights are not supported by the CUDA backend (use f16, q8, q4 or q4a)");
}

bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

int log2_block(int block) {
  int shift = 0;
  while ((1 << shift) < block) ++shift;
  return shift;
}

}  // namespace

void matmul(const DeviceMatmulParams& p) {
  const DeviceWeights& w = p.w;
  const WeightKind kind = weight_kind(w.format);
  const int64_t N = w.rows, K = w.cols;
  PYRT_CHECK(p.M >= 0 && N >= 0 && K > 0, Shape, "invalid matmul shape: M=", p.M, " N=", N, " K=", K);
  const bool quantized = kind != WeightKind::f16;
  if (quantized) {
    PYRT_CHECK(is_valid_block(w.block), Dtype, "block must be 32, 64 or 128, got ", w.block);
    PYRT_CHECK(K % w.block == 0, Shape, "K=", K, " is not a multiple of the block ", w.block);
    PYRT_CHECK(w.scales != nullptr && (kind != WeightKind::q4a || w.mins != nullptr), Internal,
               "quantized device weights without scales");
    PYRT_CHECK(aligned_16(w.quants), Internal, "quantized device weights are not 16-byte aligned");
  }
  require_device(p.device);
  if (p.M == 0 || N == 0) return;
  require_device_pointer(p.x, p.device, "x");
  require_device_pointer(p.y, p.device, "out");
  require_device_pointer(w.quants, p.device, "weights");
  if (p.bias != nullptr) require_device_pointer(p.bias, p.device, "bias");

  KernelArgs a;
  a.x = reinterpret_cast<const __half*>(p.x);
  a.M = p.M;
  a.N = N;
  a.K = K;
  a.block_shift = quantized ? log2_block(w.block) : 0;
  a.quants = static_cast<const uint8_t*>(w.quants);
  a.scales = reinterpret_cast<const __half*>(w.scales);
  a.mins = reinterpret_cast<const __half*>(w.mins);
  a.bias = p.bias;
  a.y = p.y;
  a.x_vector_loads = aligned_16(p.x) && K % 8 == 0;
  // Quantized planes are cudaMalloc'ed and K is a multiple of 32: every 16-byte run is aligned.
  a.w_vector_loads = quantized || (aligned_16(w.quants) && K % 8 == 0);

  DeviceGuard guard(p.device);
  const cudaStream_t stream = stream_from_handle(p.stream);
  if (p.M <= kGemvMaxM && a.x_vector_loads && a.w_vector_loads) {
    launch_gemv(kind, a, stream);
  } else {
    launch_tensor_core(kind, a, stream);
  }
}

}  // namespace pyrt::gpu
