// Device-side helpers shared by the CUDA op files: launch geometry for
// grid-stride loops, warp and block reductions, and the opt-in for more than
// 48 KiB of dynamic shared memory.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_backend.h"

namespace fwp {
namespace cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
// Threads of the plain element-wise kernels.
constexpr int kElementwiseThreads = 256;

// Blocks for a grid-stride loop over n items; the loop covers whatever the
// grid does not (at most ~1M blocks are launched).
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t{1} << 20)));
}

__device__ __forceinline__ int64_t global_thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t global_thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}
__device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `shared` holds 32 values of T. Contains __syncthreads.
template <typename T>
__device__ T block_sum(T x, T* shared) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  x = warp_sum(x);
  __syncthreads();  // shared may still be read by a previous call
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  T total = lane < warps ? shared[lane] : T(0);
  return warp_sum(total);
}

__device__ inline float block_max(float x, float* shared) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  x = warp_max(x);
  __syncthreads();
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  float m = lane < warps ? shared[lane] : -INFINITY;
  return warp_max(m);
}

// Allows `kernel` to use `bytes` of dynamic shared memory (needed above 48 KiB);
// throws Error(FWP_ERR_UNSUPPORTED) when the device cannot provide it.
template <typename Kernel>
void require_shared_memory(const CudaBackend& backend, Kernel kernel, size_t bytes, const char* what) {
  if (bytes > static_cast<size_t>(backend.max_shared_memory_per_block())) {
    throw Error(FWP_ERR_UNSUPPORTED, std::string(what) + " needs " + std::to_string(bytes) +
                                         " bytes of shared memory per block; the device offers " +
                                         std::to_string(backend.max_shared_memory_per_block()));
  }
  if (bytes > 48 * 1024) {
    FWP_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

}  // namespace cuda
}  // namespace fwp
