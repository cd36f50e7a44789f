// CudaBackend: softmax cross-entropy with ignored (negative) targets. The
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

}  // namespace

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
