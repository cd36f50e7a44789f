// CudaBackend: squared error against one-hot targets (the retrieval loss),
// one warp per row for the loss, one thread per element for its gradient.
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_common.cuh"

namespace fwp {

namespace {

constexpr int kRowThreads = 256;
constexpr int kRowsPerBlock = kRowThreads / cuda::kWarpSize;

// loss = 0.5 (||y||^2 - y_t^2 + (1 - y_t)^2), the CPU's formula (no
// cancellation when y is close to the target).
__global__ void onehot_mse_forward_kernel(const float* y, const int32_t* targets, float* loss, int64_t rows,
                                          int64_t classes) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / cuda::kWarpSize; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int32_t t = targets[r];
    if (t < 0) {
      if (lane == 0) loss[r] = 0.0f;
      continue;
    }
    const float* yr = y + r * classes;
    float sq = 0.0f;
    for (int64_t c = lane; c < classes; c += cuda::kWarpSize) sq += yr[c] * yr[c];
    sq = cuda::warp_sum(sq);
    if (lane == 0) {
      const float yt = yr[t];
      const float diff = 1.0f - yt;
      loss[r] = 0.5f * (sq - yt * yt + diff * diff);
    }
  }
}

__global__ void onehot_mse_backward_kernel(const float* y, const int32_t* targets, float scale, float* dy,
                                           int64_t rows, int64_t classes) {
  const int64_t n = rows * classes;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) {
    const int64_t r = e / classes, c = e - r * classes;
    const int32_t t = targets[r];
    if (t < 0) {
      dy[e] = 0.0f;
    } else {
      const float d = scale * y[e];
      dy[e] = c == t ? d - scale : d;
    }
  }
}

}  // namespace

void CudaBackend::onehot_mse_forward(const float* y, const int32_t* targets, float* loss, int64_t rows,
                                     int64_t classes) {
  if (rows <= 0) return;
  cuda::DeviceGuard guard(device_);
  onehot_mse_forward_kernel<<<cuda::grid_for(rows, kRowsPerBlock), kRowThreads, 0, stream_>>>(y, targets, loss, rows,
                                                                                              classes);
  FWP_CUDA_CHECK_LAUNCH("onehot_mse_forward_kernel");
}

void CudaBackend::onehot_mse_backward(const float* y, const int32_t* targets, float scale, float* dy, int64_t rows,
                                      int64_t classes) {
  if (rows <= 0 || classes <= 0) return;
  cuda::DeviceGuard guard(device_);
  onehot_mse_backward_kernel<<<cuda::grid_for(rows * classes, 256), 256, 0, stream_>>>(y, targets, scale, dy, rows,
                                                                                       classes);
  FWP_CUDA_CHECK_LAUNCH("onehot_mse_backward_kernel");
}

}  // namespace fwp
