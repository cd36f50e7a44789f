// CudaBackend: softmax cross-entropy with ignored (negative) targets, plain
// and label-smoothed. The
// forward gives each row one block (two block reductions: the maximum, then
// the sum of exp(l - max)); the backward is one thread per logit. The
// arithmetic comes from row_math.cuh.
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "row_math.cuh"

namespace fwp {

namespace {

constexpr int kRowThreads = 256;

// The row loop bound is the same for every thread of a block, so the block
// reductions (with their __syncthreads) are reached by all of them.
__global__ void cross_entropy_forward_kernel(const float* logits, const int32_t* targets, float* loss, float* lse,
                                             int64_t rows, int64_t classes) {
  __shared__ float shared_max[cuda::kWarpSize];
  __shared__ float shared_sum[cuda::kWarpSize];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* lr = logits + r * classes;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) m = fmaxf(m, lr[c]);
    m = cuda::block_max(m, shared_max);
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) s += tile::exp_f(lr[c] - m);
    s = cuda::block_sum(s, shared_sum);
    if (threadIdx.x == 0) {
      const float row_lse = rowmath::cross_entropy_lse(m, s);
      const int32_t t = targets[r];
      lse[r] = row_lse;
      loss[r] = rowmath::cross_entropy_loss(row_lse, t >= 0 && t < classes ? lr[t] : 0.0f, t, classes);
    }
  }
}

// Reads each logit before writing its gradient, in the same thread: dlogits may alias logits.
__global__ void cross_entropy_backward_kernel(const float* logits, const int32_t* targets, const float* lse,
                                              float scale, float* dlogits, int64_t rows, int64_t classes) {
  const int64_t n = rows * classes;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) {
    const int64_t r = e / classes, c = e - r * classes;
    const int32_t t = targets[r];
    dlogits[e] = rowmath::cross_entropy_grad(logits[e], lse[r], c == t, t < 0, scale);
  }
}

// As cross_entropy_forward_kernel, plus a third pass for sum_c (lse - l_c)
// once lse is known (thread 0 shares it through shared memory).
__global__ void smoothed_cross_entropy_forward_kernel(const float* logits, const int32_t* targets, float smoothing,
                                                      float* loss, float* nll, float* lse, int64_t rows,
                                                      int64_t classes) {
  __shared__ float shared_max[cuda::kWarpSize];
  __shared__ float shared_sum[cuda::kWarpSize];
  __shared__ float row_lse_shared;
  const float other = rowmath::smoothing_other_weight(smoothing, classes);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* lr = logits + r * classes;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) m = fmaxf(m, lr[c]);
    m = cuda::block_max(m, shared_max);
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) s += tile::exp_f(lr[c] - m);
    s = cuda::block_sum(s, shared_sum);
    if (threadIdx.x == 0) row_lse_shared = rowmath::cross_entropy_lse(m, s);
    __syncthreads();
    const float row_lse = row_lse_shared;
    float spread = 0.0f;
    if (other > 0.0f) {
      for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) spread += row_lse - lr[c];
      spread = cuda::block_sum(spread, shared_sum);
    }
    if (threadIdx.x == 0) {
      const int32_t t = targets[r];
      const float row_nll = rowmath::cross_entropy_loss(row_lse, t >= 0 && t < classes ? lr[t] : 0.0f, t, classes);
      lse[r] = row_lse;
      nll[r] = row_nll;
      loss[r] = rowmath::smoothed_cross_entropy_loss(row_nll, spread, t, smoothing, other);
    }
    __syncthreads();  // row_lse_shared is rewritten by the next row
  }
}

__global__ void smoothed_cross_entropy_backward_kernel(const float* logits, const int32_t* targets, const float* lse,
                                                       float smoothing, float scale, float* dlogits, int64_t rows,
                                                       int64_t classes) {
  const float other = rowmath::smoothing_other_weight(smoothing, classes);
  const int64_t n = rows * classes;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) {
    const int64_t r = e / classes, c = e - r * classes;
    const int32_t t = targets[r];
    dlogits[e] = rowmath::smoothed_cross_entropy_grad(logits[e], lse[r], c == t, t < 0, smoothing, other, scale);
  }
}

}  // namespace

void CudaBackend::smoothed_cross_entropy_forward(const float* logits, const int32_t* targets, float smoothing,
                                                 float* loss, float* nll, float* lse, int64_t rows, int64_t classes) {
  if (rows <= 0) return;
  cuda::DeviceGuard guard(device_);
  smoothed_cross_entropy_forward_kernel<<<cuda::grid_for(rows, 1), kRowThreads, 0, stream_>>>(
      logits, targets, smoothing, loss, nll, lse, rows, classes);
  FWP_CUDA_CHECK_LAUNCH("smoothed_cross_entropy_forward_kernel");
}

void CudaBackend::smoothed_cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse,
                                                  float smoothing, float scale, float* dlogits, int64_t rows,
                                                  int64_t classes) {
  if (rows <= 0 || classes <= 0) return;
  cuda::DeviceGuard guard(device_);
  smoothed_cross_entropy_backward_kernel<<<cuda::grid_for(rows * classes, cuda::kElementwiseThreads),
                                           cuda::kElementwiseThreads, 0, stream_>>>(logits, targets, lse, smoothing,
                                                                                    scale, dlogits, rows, classes);
  FWP_CUDA_CHECK_LAUNCH("smoothed_cross_entropy_backward_kernel");
}

void CudaBackend::cross_entropy_forward(const float* logits, const int32_t* targets, float* loss, float* lse,
                                        int64_t rows, int64_t classes) {
  if (rows <= 0) return;
  cuda::DeviceGuard guard(device_);
  cross_entropy_forward_kernel<<<cuda::grid_for(rows, 1), kRowThreads, 0, stream_>>>(logits, targets, loss, lse, rows,
                                                                                     classes);
  FWP_CUDA_CHECK_LAUNCH("cross_entropy_forward_kernel");
}

void CudaBackend::cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse, float scale,
                                         float* dlogits, int64_t rows, int64_t classes) {
  if (rows <= 0 || classes <= 0) return;
  cuda::DeviceGuard guard(device_);
  cross_entropy_backward_kernel<<<cuda::grid_for(rows * classes, cuda::kElementwiseThreads),
                                  cuda::kElementwiseThreads, 0, stream_>>>(logits, targets, lse, scale, dlogits, rows,
                                                                           classes);
  FWP_CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
}

}  // namespace fwp
