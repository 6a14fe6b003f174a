// pyrt::matmul on Device::cuda (declared in cuda/backend.h): checks the request, then picks the
// small-M GEMV kernel or the tensor-core kernel. Bad input is rejected here with a typed error
// before any kernel can touch memory.
#include "cuda/backend.h"
#include "cuda/matmul_kernels.cuh"
#include "pyrt/weight_planes.h"
#include "pyrt/device.h"

namespace pyrt::gpu {
namespace {

WeightKind weight_kind(Format f) {
  require_cuda_format(f);
  switch (f) {
    case Format::q8: return WeightKind::q8;
    case Format::q4: return WeightKind::q4;
    case Format::q4a: return WeightKind::q4a;
    case Format::q4n: return WeightKind::q4n;
    default: return WeightKind::f16;
  }
}

bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

int log2_block(int block) {
  int shift = 0;
  while ((1 << shift) < block) ++shift;
  return shift;
}

// The weight view must be the plane layout upload_weights() builds: checked here so a view built
// any other way can never send a kernel past a plane.
void check_weights(const WeightView& w, WeightKind kind) {
  PYRT_CHECK(w.device == Device::cuda, Internal, "gpu::matmul got ", device_name(w.device), " weights");
  PYRT_CHECK(w.rows >= 0 && w.cols > 0, Shape, "invalid weight shape [", w.rows, ", ", w.cols, "]");
  const PlaneBytes bytes = plane_bytes(w.format, w.block, w.rows, w.cols);  // validates block and K
  PYRT_CHECK(w.row_stride == bytes.code_row, Internal, "device weights have a row stride of ", w.row_stride,
             " bytes, the plane layout ", bytes.code_row);
  PYRT_CHECK(w.data != nullptr && (bytes.scales == 0 || w.scales != nullptr) && (bytes.mins == 0 || w.mins != nullptr),
             Internal, "device weights without their planes");
  PYRT_CHECK(kind == WeightKind::f16 || aligned_16(w.data), Internal,
             "quantized device weights are not 16-byte aligned");
}

}  // namespace

void matmul(const MatmulParams& p) {
  const WeightView& w = p.w;
  const WeightKind kind = weight_kind(w.format);
  check_weights(w, kind);
  const int64_t N = w.rows, K = w.cols;
  PYRT_CHECK(p.M >= 0, Shape, "invalid matmul shape: M=", p.M, " N=", N, " K=", K);
  PYRT_CHECK(p.x_type == ActivationType::f16, Dtype,
             "CUDA matmul reads float16 activations, x is float32; convert with x.astype(cupy.float16)");
  PYRT_CHECK(p.activations == ActivationPrecision::exact, Dtype, "activations='",
             activation_precision_name(p.activations), "' is a CPU mode; CUDA products use exact activations");
  const int device = w.device_index;
  require_device(device);
  if (p.M == 0 || N == 0) return;
  require_device_pointer(p.x, device, "x");
  require_device_pointer(p.y, device, "out");
  require_device_pointer(w.data, device, "weights");
  if (p.bias != nullptr) require_device_pointer(p.bias, device, "bias");

  const bool quantized = kind != WeightKind::f16;
  KernelArgs a;
  a.x = static_cast<const __half*>(p.x);
  a.M = p.M;
  a.N = N;
  a.K = K;
  a.block_shift = quantized ? log2_block(w.block) : 0;
  a.quants = w.data;
  a.scales = reinterpret_cast<const __half*>(w.scales);
  a.mins = reinterpret_cast<const __half*>(w.mins);
  a.bias = p.bias;
  a.y = p.y;
  a.x_vector_loads = aligned_16(p.x) && K % 8 == 0;
  // Quantized planes are cudaMalloc'ed and K is a multiple of 32: every 16-byte run is aligned.
  a.w_vector_loads = quantized || (aligned_16(w.data) && K % 8 == 0);

  DeviceGuard guard(device);
  const cudaStream_t stream = stream_from_handle(p.stream);
  if (p.M <= kGemvMaxM && a.x_vector_loads && a.w_vector_loads) {
    launch_gemv(kind, a, stream);
  } else {
    launch_tensor_core(kind, a, stream);
  }
}

}  // namespace pyrt::gpu
