// Tensor-core matmul for any M: 64x64 output tiles per 128-thread block, K in steps of 32. Each
// step stages x and the (dequantized) weights as FP16 in shared memory and runs WMMA 16x16x16 with
// FP32 accumulators; quantized weights are decoded once per tile, not once per output.
#include <mma.h>

#include "cuda/matmul_kernels.cuh"

namespace pyrt::gpu {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kTileM = 64, kTileN = 64, kTileK = 32;
constexpr int kThreads = 128;
// Row pitches padded by 8 halves / 4 floats to spread rows over shared-memory banks; WMMA needs
// them to be multiples of 16 bytes and every fragment pointer 32-byte aligned (rows of 16 keep it).
constexpr int kPitchK = kTileK + 8;
constexpr int kPitchC = kTileN + 4;
constexpr int kStageBytes = 2 * kTileM * kPitchK * 2;
constexpr int kOutBytes = kTileM * kPitchC * 4;
constexpr int kSharedBytes = kStageBytes > kOutBytes ? kStageBytes : kOutBytes;
static_assert(kTileM == kTileN && kThreads == 2 * kTileM, "one thread stages 16 halves of one tile row");

__device__ __forceinline__ void store_16_halves(__half* dst, const float (&v)[16]) {
  __half2 packed[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) packed[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
  reinterpret_cast<uint4*>(dst)[0] = reinterpret_cast<const uint4*>(packed)[0];
  reinterpret_cast<uint4*>(dst)[1] = reinterpret_cast<const uint4*>(packed)[1];
}

// 16 FP16 values row[k .. k+16) into shared memory; zeros past the matrix edge.
__device__ __forceinline__ void stage_halves(const __half* row, bool row_valid, int64_t k, int64_t K,
                                             bool vector_loads, __half* dst) {
  if (row_valid && vector_loads && k + 16 <= K) {
    reinterpret_cast<uint4*>(dst)[0] = load_16_bytes(row + k);
    reinterpret_cast<uint4*>(dst)[1] = load_16_bytes(row + k + 8);
    return;
  }
#pragma unroll
  for (int i = 0; i < 16; ++i) dst[i] = (row_valid && k + i < K) ? row[k + i] : __float2half(0.0f);
}

// 16 weights W[n, k .. k+16) decoded to FP16 (k is a multiple of 16, K of the block, so the run
// lies in one block and one 16-byte load).
template <WeightKind W>
__device__ __forceinline__ void stage_weights(const KernelArgs& a, int64_t n, int64_t k, __half* dst) {
  const bool row_valid = n < a.N;
  if constexpr (W == WeightKind::f16) {
    const __half* row = reinterpret_cast<const __half*>(a.quants) + (row_valid ? n : 0) * a.K;
    stage_halves(row, row_valid, k, a.K, a.w_vector_loads, dst);
  } else {
    float v[16];
    if (!row_valid) {
#pragma unroll
      for (int i = 0; i < 16; ++i) v[i] = 0.0f;
    } else {
      const int block = 1 << a.block_shift;
      const int64_t blk = k >> a.block_shift;
      const int64_t scale_index = n * (a.K >> a.block_shift) + blk;
      const float d = __half2float(a.scales[scale_index]);
      if constexpr (W == WeightKind::q8) {
        const uint4 q = load_16_bytes(a.quants + n * a.K + k);
#pragma unroll
        for (int i = 0; i < 16; ++i) v[i] = float(int8_t(uint8_t(byte_of(q, i)))) * d;
      } else {
        const int half_block = block / 2;
        const int j = int(k - blk * block);
        const uint4 q = load_16_bytes(a.quants + n * (a.K / 2) + blk * half_block + (j % half_block));
        const int shift = j >= half_block ? 4 : 0;
        if constexpr (W == WeightKind::q4) {
#pragma unroll
          for (int i = 0; i < 16; ++i) v[i] = (float((byte_of(q, i) >> shift) & 0xfu) - 8.0f) * d;
        } else if constexpr (W == WeightKind::q4n) {
#pragma unroll
          for (int i = 0; i < 16; ++i) v[i] = q4n_level((byte_of(q, i) >> shift) & 0xfu) * d;
        } else {
          const float mn = __half2float(a.mins[scale_index]);
#pragma unroll
          for (int i = 0; i < 16; ++i) v[i] = fmaf(float((byte_of(q, i) >> shift) & 0xfu), d, mn);
        }
      }
    }
    store_16_halves(dst, v);
  }
}

template <WeightKind W>
__global__ void __launch_bounds__(kThreads) tensor_core_kernel(const KernelArgs a) {
  __shared__ __align__(128) unsigned char shared[kSharedBytes];
  __half* tile_x = reinterpret_cast<__half*>(shared);
  __half* tile_w = tile_x + kTileM * kPitchK;
  float* tile_out = reinterpret_cast<float*>(shared);  // reused once the K loop is done

  const int t = threadIdx.x;
  const int warp = t / 32;
  const int warp_m = (warp / 2) * 32, warp_n = (warp % 2) * 32;  // 2x2 warps, 32x32 each
  const int64_t m0 = int64_t(blockIdx.y) * kTileM, n0 = int64_t(blockIdx.x) * kTileN;
  const int stage_row = t / 2, stage_col = (t % 2) * 16;
  const int64_t xm = m0 + stage_row;
  const __half* x_row = a.x + (xm < a.M ? xm : 0) * a.K;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int64_t k0 = 0; k0 < a.K; k0 += kTileK) {
    const int64_t k = k0 + stage_col;
    stage_halves(x_row, xm < a.M, k, a.K, a.x_vector_loads, tile_x + stage_row * kPitchK + stage_col);
    stage_weights<W>(a, n0 + stage_row, k, tile_w + stage_row * kPitchK + stage_col);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fx[2];
      // W is stored [n][k]: read as the K x N operand it is column-major.
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fw[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fx[i], tile_x + (warp_m + i * 16) * kPitchK + kk, kPitchK);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fw[j], tile_w + (warp_n + j * 16) * kPitchK + kk, kPitchK);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fx[i], fw[j], acc[i][j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(tile_out + (warp_m + i * 16) * kPitchC + warp_n + j * 16, acc[i][j], kPitchC,
                              wmma::mem_row_major);
  __syncthreads();
  // Consecutive threads write consecutive n: coalesced stores, edges masked.
  for (int e = t; e < kTileM * kTileN; e += kThreads) {
    const int r = e / kTileN, c = e % kTileN;
    const int64_t m = m0 + r, n = n0 + c;
    if (m < a.M && n < a.N) a.y[m * a.N + n] = tile_out[r * kPitchC + c] + (a.bias != nullptr ? a.bias[n] : 0.0f);
  }
}

}  // namespace

void launch_tensor_core(WeightKind kind, const KernelArgs& a, cudaStream_t stream) {
  const int64_t tiles_m = (a.M + kTileM - 1) / kTileM, tiles_n = (a.N + kTileN - 1) / kTileN;
  PYRT_CHECK(tiles_m <= 65535 && tiles_n <= 0x7fffffff, Unsupported, "matmul of [", a.M, ", ", a.K, "] x [",
             a.N, ", ", a.K, "] is too large for one CUDA grid; split M");
  const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(tiles_m));
  switch (kind) {
    case WeightKind::f16: tensor_core_kernel<WeightKind::f16><<<grid, kThreads, 0, stream>>>(a); break;
    case WeightKind::q8: tensor_core_kernel<WeightKind::q8><<<grid, kThreads, 0, stream>>>(a); break;
    case WeightKind::q4: tensor_core_kernel<WeightKind::q4><<<grid, kThreads, 0, stream>>>(a); break;
    case WeightKind::q4a: tensor_core_kernel<WeightKind::q4a><<<grid, kThreads, 0, stream>>>(a); break;
    case WeightKind::q4n: tensor_core_kernel<WeightKind::q4n><<<grid, kThreads, 0, stream>>>(a); break;
  }
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace pyrt::gpu
