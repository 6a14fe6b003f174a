// Fused dequantize + GEMV for small M (1..16): the weights are read once from memory, which is the
// bound at these sizes, so each warp streams one weight row with 16-byte loads, dequantizes in
// registers and keeps FP32 partial sums for every activation row; a shuffle reduction finishes.
#include "cuda/matmul_kernels.cuh"

namespace pyrt::gpu {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr unsigned kFullMask = 0xffffffffu;

// sum_i x[i] * w[i] over 8 FP16 activations packed in one 16-byte load.
__device__ __forceinline__ float dot8(const uint4 xv, const float* w) {
  const __half2* h = reinterpret_cast<const __half2*>(&xv);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    s = fmaf(f.x, w[2 * i], s);
    s = fmaf(f.y, w[2 * i + 1], s);
  }
  return s;
}

// sum_i x[i]: the q4a minimum multiplies the plain sum of the activations.
__device__ __forceinline__ float sum8(const uint4 xv) {
  const __half2* h = reinterpret_cast<const __half2*>(&xv);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    s += f.x + f.y;
  }
  return s;
}

template <WeightKind W, int MT>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) gemv_kernel(const KernelArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t n = int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (n >= a.N) return;  // whole warps leave together: the shuffles below stay convergent
  const int M = int(a.M);
  const int64_t K = a.K;
  const int block = 1 << a.block_shift;
  const int64_t blocks_per_row = K >> a.block_shift;

  // One "chunk" is 16 bytes of a weight row: 8 f16, 16 q8 or 32 q4 weights.
  const uint8_t* wrow;
  int64_t chunks;
  if constexpr (W == WeightKind::f16) {
    wrow = a.quants + n * K * 2;
    chunks = K / 8;
  } else if constexpr (W == WeightKind::q8) {
    wrow = a.quants + n * K;
    chunks = K / 16;
  } else {
    wrow = a.quants + n * (K / 2);
    chunks = K / 32;
  }

  float acc[MT];
#pragma unroll
  for (int m = 0; m < MT; ++m) acc[m] = 0.0f;

  // Two chunks per lane in flight: the loads of the second issue before the first is consumed.
#pragma unroll 2
  for (int64_t c = lane; c < chunks; c += 32) {
    const uint4 wv = load_16_bytes(wrow + c * 16);
    if constexpr (W == WeightKind::f16) {
      float w[8];
      const __half2* h = reinterpret_cast<const __half2*>(&wv);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(h[i]);
        w[2 * i] = f.x;
        w[2 * i + 1] = f.y;
      }
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m < M) acc[m] += dot8(load_16_bytes(a.x + m * K + c * 8), w);
      }
    } else if constexpr (W == WeightKind::q8) {
      const int64_t k = c * 16;
      const float d = __half2float(a.scales[n * blocks_per_row + (k >> a.block_shift)]);
      float w[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) w[i] = float(int8_t(uint8_t(byte_of(wv, i))));
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m < M) {
          const __half* xr = a.x + m * K + k;
          acc[m] += d * (dot8(load_16_bytes(xr), w) + dot8(load_16_bytes(xr + 8), w + 8));
        }
      }
    } else {
      // Byte j of a block holds element j (low nibble) and element j + B/2 (high nibble), so a
      // 16-byte chunk covers two runs of 16 consecutive elements, B/2 apart.
      const int half_block = block / 2;
      const int64_t byte = c * 16;
      const int64_t blk = byte / half_block;
      const int64_t k_lo = blk * block + byte % half_block;
      const int64_t k_hi = k_lo + half_block;
      const float d = __half2float(a.scales[n * blocks_per_row + blk]);
      constexpr float offset = W == WeightKind::q4 ? 8.0f : 0.0f;
      float lo[16], hi[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const uint32_t b = byte_of(wv, i);
        if constexpr (W == WeightKind::q4n) {
          lo[i] = q4n_level(b & 0xfu);
          hi[i] = q4n_level(b >> 4);
        } else {
          lo[i] = float(b & 0xfu) - offset;
          hi[i] = float(b >> 4) - offset;
        }
      }
      float mn = 0.0f;
      if constexpr (W == WeightKind::q4a) mn = __half2float(a.mins[n * blocks_per_row + blk]);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m < M) {
          const __half* xr = a.x + m * K;
          const uint4 x0 = load_16_bytes(xr + k_lo), x1 = load_16_bytes(xr + k_lo + 8);
          const uint4 x2 = load_16_bytes(xr + k_hi), x3 = load_16_bytes(xr + k_hi + 8);
          const float s = dot8(x0, lo) + dot8(x1, lo + 8) + dot8(x2, hi) + dot8(x3, hi + 8);
          if constexpr (W == WeightKind::q4a) {
            acc[m] += d * s + mn * (sum8(x0) + sum8(x1) + sum8(x2) + sum8(x3));
          } else {
            acc[m] += d * s;
          }
        }
      }
    }
  }

  const float b = a.bias != nullptr ? a.bias[n] : 0.0f;
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) acc[m] += __shfl_xor_sync(kFullMask, acc[m], offset);
    // Every lane holds the sum now; lane m stores row m, so the MT stores go out in parallel.
    if (m < M && lane == m) a.y[int64_t(m) * a.N + n] = acc[m] + b;
  }
}

template <WeightKind W>
void launch_for_kind(const KernelArgs& a, cudaStream_t stream) {
  const dim3 grid(unsigned((a.N + kWarpsPerBlock - 1) / kWarpsPerBlock));
  const dim3 threads(kWarpsPerBlock * 32);
  // Smallest instantiation that covers M: rows beyond M are skipped, never loaded.
  if (a.M <= 1) {
    gemv_kernel<W, 1><<<grid, threads, 0, stream>>>(a);
  } else if (a.M <= 2) {
    gemv_kernel<W, 2><<<grid, threads, 0, stream>>>(a);
  } else if (a.M <= 4) {
    gemv_kernel<W, 4><<<grid, threads, 0, stream>>>(a);
  } else if (a.M <= 8) {
    gemv_kernel<W, 8><<<grid, threads, 0, stream>>>(a);
  } else {
    gemv_kernel<W, kGemvMaxM><<<grid, threads, 0, stream>>>(a);
  }
}

}  // namespace

void launch_gemv(WeightKind kind, const KernelArgs& a, cudaStream_t stream) {
  PYRT_INTERNAL_CHECK(a.M >= 1 && a.M <= kGemvMaxM && a.x_vector_loads && a.w_vector_loads);
  PYRT_CHECK((a.N + kWarpsPerBlock - 1) / kWarpsPerBlock <= 0x7fffffff, Unsupported, "N=", a.N,
             " is too large for one CUDA grid");
  switch (kind) {
    case WeightKind::f16: launch_for_kind<WeightKind::f16>(a, stream); break;
    case WeightKind::q8: launch_for_kind<WeightKind::q8>(a, stream); break;
    case WeightKind::q4: launch_for_kind<WeightKind::q4>(a, stream); break;
    case WeightKind::q4a: launch_for_kind<WeightKind::q4a>(a, stream); break;
    case WeightKind::q4n: launch_for_kind<WeightKind::q4n>(a, stream); break;
  }
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace pyrt::gpu
