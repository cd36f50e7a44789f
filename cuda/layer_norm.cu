// CudaBackend: layer normalisation over the last dimension. One warp per row
// for the forward and the input gradient (lanes stride over the row, two
// passes for the statistics); the parameter gradients are column sums, done
// as bias_grad_accumulate does them: per-chunk partial sums in scratch memory,
// then one thread per column adds the chunks in order (no atomics, so the
// result is deterministic). The arithmetic comes from row_math.cuh.
#include <algorithm>
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "row_math.cuh"

namespace fwp {

namespace {

constexpr int kRowThreads = 256;
constexpr int kRowsPerBlock = kRowThreads / cuda::kWarpSize;

// The loop bound is the same for every lane of a warp, so the warp
// reductions see all 32 lanes.
__global__ void layer_norm_forward_kernel(const float* x, const float* gain, const float* bias, float eps, float* y,
                                          float* mean, float* rstd, int64_t rows, int64_t d) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / cuda::kWarpSize; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const float* xr = x + r * d;
    float sum = 0.0f;
    for (int64_t c = lane; c < d; c += cuda::kWarpSize) sum += xr[c];
    const float mu = rowmath::layer_norm_mean(cuda::warp_sum(sum), d);
    float sq = 0.0f;
    for (int64_t c = lane; c < d; c += cuda::kWarpSize) {
      const float t = xr[c] - mu;
      sq += t * t;
    }
    const float inv = rowmath::layer_norm_rstd(cuda::warp_sum(sq), d, eps);
    if (lane == 0) {
      mean[r] = mu;
      rstd[r] = inv;
    }
    float* yr = y + r * d;
    for (int64_t c = lane; c < d; c += cuda::kWarpSize) yr[c] = rowmath::layer_norm_apply(xr[c], mu, inv, gain[c], bias[c]);
  }
}

__global__ void layer_norm_backward_kernel(const float* x, const float* gain, const float* mean, const float* rstd,
                                           const float* dy, float beta, float* dx, int64_t rows, int64_t d) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / cuda::kWarpSize; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const float* xr = x + r * d;
    const float* dyr = dy + r * d;
    const float mu = mean[r], inv = rstd[r];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int64_t c = lane; c < d; c += cuda::kWarpSize) {
      const float g = dyr[c] * gain[c];
      sum_g += g;
      sum_gx += g * (xr[c] - mu) * inv;
    }
    sum_g = cuda::warp_sum(sum_g);
    sum_gx = cuda::warp_sum(sum_gx);
    float* dxr = dx + r * d;
    for (int64_t c = lane; c < d; c += cuda::kWarpSize) {
      dxr[c] = rowmath::layer_norm_dx(xr[c], dyr[c], gain[c], mu, inv, sum_g, sum_gx, d, beta,
                                      beta == 0.0f ? 0.0f : dxr[c]);
    }
  }
}

constexpr int kParamCols = 32;
constexpr int kParamWarps = 8;
constexpr int64_t kMaxChunks = 4096;

// partial_g[chunk, c] = sum over the chunk's rows of dy xhat; partial_b likewise of dy.
__global__ void layer_norm_param_partial_kernel(const float* x, const float* mean, const float* rstd, const float* dy,
                                                float* partial_g, float* partial_b, int64_t rows, int64_t d,
                                                int64_t rows_per_chunk) {
  __shared__ float sums_g[kParamWarps][kParamCols];
  __shared__ float sums_b[kParamWarps][kParamCols];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kParamCols + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  float acc_g = 0.0f, acc_b = 0.0f;
  if (c < d) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kParamWarps) {
      const float g = dy[r * d + c];
      acc_g += g * (x[r * d + c] - mean[r]) * rstd[r];
      acc_b += g;
    }
  }
  sums_g[threadIdx.y][threadIdx.x] = acc_g;
  sums_b[threadIdx.y][threadIdx.x] = acc_b;
  __syncthreads();
  if (threadIdx.y == 0 && c < d) {
    float total_g = 0.0f, total_b = 0.0f;
    for (int i = 0; i < kParamWarps; ++i) {
      total_g += sums_g[i][threadIdx.x];
      total_b += sums_b[i][threadIdx.x];
    }
    partial_g[static_cast<int64_t>(blockIdx.y) * d + c] = total_g;
    partial_b[static_cast<int64_t>(blockIdx.y) * d + c] = total_b;
  }
}

__global__ void layer_norm_param_finish_kernel(float* dgain, float* dbias, const float* partial_g,
                                               const float* partial_b, int64_t chunks, int64_t d) {
  for (int64_t c = cuda::global_thread_index(); c < d; c += cuda::global_thread_count()) {
    float g = 0.0f, b = 0.0f;
    for (int64_t i = 0; i < chunks; ++i) {
      g += partial_g[i * d + c];
      b += partial_b[i * d + c];
    }
    dgain[c] += g;
    dbias[c] += b;
  }
}

}  // namespace

void CudaBackend::layer_norm_forward(const float* x, const float* gain, const float* bias, float eps, float* y,
                                     float* mean, float* rstd, int64_t rows, int64_t d) {
  if (rows <= 0 || d <= 0) return;
  cuda::DeviceGuard guard(device_);
  layer_norm_forward_kernel<<<cuda::grid_for(rows, kRowsPerBlock), kRowThreads, 0, stream_>>>(x, gain, bias, eps, y,
                                                                                              mean, rstd, rows, d);
  FWP_CUDA_CHECK_LAUNCH("layer_norm_forward_kernel");
}

void CudaBackend::layer_norm_backward(const float* x, const float* gain, const float* mean, const float* rstd,
                                      const float* dy, float beta, float* dx, int64_t rows, int64_t d) {
  if (rows <= 0 || d <= 0) return;
  cuda::DeviceGuard guard(device_);
  layer_norm_backward_kernel<<<cuda::grid_for(rows, kRowsPerBlock), kRowThreads, 0, stream_>>>(
      x, gain, mean, rstd, dy, beta, dx, rows, d);
  FWP_CUDA_CHECK_LAUNCH("layer_norm_backward_kernel");
}

void CudaBackend::layer_norm_param_grad_accumulate(const float* x, const float* mean, const float* rstd,
                                                   const float* dy, float* dgain, float* dbias, int64_t rows,
                                                   int64_t d) {
  if (rows <= 0 || d <= 0) return;
  cuda::DeviceGuard guard(device_);
  // About 512 rows per chunk, fewer chunks (longer ones) for very many rows.
  const int64_t chunks = std::min<int64_t>((rows + 511) / 512, kMaxChunks);
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  cuda::Scratch<float> partial(*this, 2 * chunks * d);
  float* partial_g = partial.get();
  float* partial_b = partial.get() + chunks * d;
  const dim3 grid(static_cast<unsigned>((d + kParamCols - 1) / kParamCols), static_cast<unsigned>(chunks));
  layer_norm_param_partial_kernel<<<grid, dim3(kParamCols, kParamWarps), 0, stream_>>>(
      x, mean, rstd, dy, partial_g, partial_b, rows, d, rows_per_chunk);
  FWP_CUDA_CHECK_LAUNCH("layer_norm_param_partial_kernel");
  layer_norm_param_finish_kernel<<<cuda::grid_for(d, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0,
                                   stream_>>>(dgain, dbias, partial_g, partial_b, chunks, d);
  FWP_CUDA_CHECK_LAUNCH("layer_norm_param_finish_kernel");
}

}  // namespace fwp
