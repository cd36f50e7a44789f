// CudaBackend: the optimizers' element-wise updates (the CPU's float
// arithmetic, operation for operation) and the sum of squares for gradient
// clipping, reduced in double in a fixed order (deterministic).
#include <cmath>
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "tile_math.cuh"

namespace fwp {

namespace {

constexpr int kReduceThreads = 256;
// Fixed, so the summation order does not depend on n. The kernel emulator of the
// tests (tests/emulator) builds with a smaller grid: the kernels stride over any
// grid, and 1024 blocks of 256 threads took two minutes to emulate.
#ifndef FWP_SUM_SQUARES_BLOCKS
#define FWP_SUM_SQUARES_BLOCKS 1024
#endif
constexpr int64_t kReduceBlocks = FWP_SUM_SQUARES_BLOCKS;

__global__ void sum_squares_partial_kernel(const float* x, int64_t n, double* partial) {
  __shared__ double shared[32];
  double acc = 0.0;
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    const double v = x[i];
    acc += v * v;
  }
  acc = cuda::block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(const double* partial, int64_t n, double* total) {
  __shared__ double shared[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = cuda::block_sum(acc, shared);
  if (threadIdx.x == 0) *total = acc;
}

struct AdamConstants {
  float grad_scale, beta1, beta2, coupled_decay, decay_factor, step_size, inv_sqrt_bc2, eps;
};

__global__ void adam_kernel(AdamConstants k, int64_t n, float* param, const float* grad, float* m, float* v) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    const float p = param[i];
    const float g = k.grad_scale * grad[i] + k.coupled_decay * p;
    const float pi = k.decay_factor * p;
    const float mi = k.beta1 * m[i] + (1.0f - k.beta1) * g;
    const float vi = k.beta2 * v[i] + (1.0f - k.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = pi - k.step_size * mi / (tile::sqrt_f(vi) * k.inv_sqrt_bc2 + k.eps);
  }
}

__global__ void sgd_kernel(float grad_scale, float decay, float lr, float mu, bool use_momentum, int64_t n,
                           float* param, const float* grad, float* buf) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    const float g = grad_scale * grad[i] + decay * param[i];
    if (use_momentum) {
      const float b = mu * buf[i] + g;
      buf[i] = b;
      param[i] -= lr * b;
    } else {
      param[i] -= lr * g;
    }
  }
}

}  // namespace

double CudaBackend::sum_squares(const float* x, int64_t n) {
  if (n <= 0) return 0.0;
  cuda::DeviceGuard guard(device_);
  cuda::Scratch<double> partial(*this, kReduceBlocks + 1);
  sum_squares_partial_kernel<<<static_cast<unsigned>(kReduceBlocks), kReduceThreads, 0, stream_>>>(x, n,
                                                                                                  partial.get());
  FWP_CUDA_CHECK_LAUNCH("sum_squares_partial_kernel");
  sum_partials_kernel<<<1, kReduceThreads, 0, stream_>>>(partial.get(), kReduceBlocks, partial.get() + kReduceBlocks);
  FWP_CUDA_CHECK_LAUNCH("sum_partials_kernel");
  double total = 0.0;
  FWP_CUDA_CHECK(
      cudaMemcpyAsync(&total, partial.get() + kReduceBlocks, sizeof(double), cudaMemcpyDeviceToHost, stream_));
  FWP_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return total;
}

void CudaBackend::adam_update(const AdamStepParams& hp, int64_t n, float* param, const float* grad, float* m,
                              float* v) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  AdamConstants k{};
  k.grad_scale = static_cast<float>(hp.grad_scale);
  k.beta1 = static_cast<float>(hp.beta1);
  k.beta2 = static_cast<float>(hp.beta2);
  k.coupled_decay = hp.decoupled_weight_decay ? 0.0f : static_cast<float>(hp.weight_decay);
  k.decay_factor = hp.decoupled_weight_decay ? static_cast<float>(1.0 - hp.lr * hp.weight_decay) : 1.0f;
  k.step_size = static_cast<float>(hp.lr / hp.bias_correction1);
  k.inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(hp.bias_correction2));
  k.eps = static_cast<float>(hp.eps);
  adam_kernel<<<cuda::grid_for(n, 256), 256, 0, stream_>>>(k, n, param, grad, m, v);
  FWP_CUDA_CHECK_LAUNCH("adam_kernel");
}

void CudaBackend::sgd_update(const SgdStepParams& hp, int64_t n, float* param, const float* grad,
                             float* momentum_buf) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  const bool use_momentum = hp.momentum != 0.0;
  sgd_kernel<<<cuda::grid_for(n, 256), 256, 0, stream_>>>(
      static_cast<float>(hp.grad_scale), static_cast<float>(hp.weight_decay), static_cast<float>(hp.lr),
      static_cast<float>(hp.momentum), use_momentum, n, param, grad, momentum_buf);
  FWP_CUDA_CHECK_LAUNCH("sgd_kernel");
}

}  // namespace fwp
