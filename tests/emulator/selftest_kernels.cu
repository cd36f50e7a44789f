// Kernels that break CUDA's rules, for the emulator's own tests
// (test_emulated_kernels.cpp, EmulatorSelfTest/EmulatorDeathTest): compiled
// through rewrite_cu.py exactly like cuda/*.cu, never by nvcc.
#include <cuda_runtime.h>

#include <string>

namespace fwp {
namespace {

__global__ void divergent_barrier_kernel(float* x) {
  if (threadIdx.x < 16) __syncthreads();  // only half the block arrives
  x[threadIdx.x] = 1.0f;
}
__global__ void divergent_shuffle_kernel(float* x) {
  float v = x[threadIdx.x];
  if (threadIdx.x % 2 == 0) v = __shfl_xor_sync(0xffffffffu, v, 2);  // odd lanes never arrive
  x[threadIdx.x] = v;
}
__global__ void read_shared_unwritten_kernel(float* x) {
  __shared__ float tile[64];
  if (threadIdx.x > 0) tile[threadIdx.x] = 1.0f;  // slot 0 never written
  __syncthreads();
  x[threadIdx.x] = tile[(threadIdx.x + 63) % 64];
}
__global__ void shuffle_sum_kernel(float* x) {
  float v = x[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  x[threadIdx.x] = v;
}
__global__ void big_shared_kernel(float* x) {
  extern __shared__ float big[];
  big[threadIdx.x] = 0.0f;
}

}  // namespace

void selftest_launch(const std::string& kernel, dim3 grid, dim3 block, size_t smem, float* x) {
  if (kernel == "divergent_barrier") divergent_barrier_kernel<<<grid, block, smem>>>(x);
  if (kernel == "divergent_shuffle") divergent_shuffle_kernel<<<grid, block, smem>>>(x);
  if (kernel == "read_shared_unwritten") read_shared_unwritten_kernel<<<grid, block, smem>>>(x);
  if (kernel == "shuffle_sum") shuffle_sum_kernel<<<grid, block, smem>>>(x);
  if (kernel == "big_shared") big_shared_kernel<<<grid, block, smem>>>(x);
}

cudaError_t selftest_opt_in_big_shared(int bytes) {
  return cudaFuncSetAttribute(big_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

}  // namespace fwp
