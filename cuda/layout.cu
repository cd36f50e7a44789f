// CudaBackend: head layout changes ([B, T, H, D] <-> [B, H, T, D]) and the
// element-wise sigmoid. One thread per element; consecutive threads touch
// consecutive elements of the output, so writes are coalesced and reads are
// contiguous within each run of D.
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "tile_math.cuh"

namespace fwp {

namespace {

// out [B, H, T, D] from in [B, T, H, D].
__global__ void split_heads_kernel(const float* in, float* out, int64_t B, int64_t T, int64_t H, int64_t D) {
  const int64_t n = B * H * T * D;
  for (int64_t o = cuda::global_thread_index(); o < n; o += cuda::global_thread_count()) {
    const int64_t d = o % D;
    const int64_t t = (o / D) % T;
    const int64_t h = (o / (D * T)) % H;
    const int64_t b = o / (D * T * H);
    out[o] = in[((b * T + t) * H + h) * D + d];
  }
}

// out [B, T, H, D] from in [B, H, T, D].
__global__ void merge_heads_kernel(const float* in, float* out, int64_t B, int64_t T, int64_t H, int64_t D) {
  const int64_t n = B * T * H * D;
  for (int64_t o = cuda::global_thread_index(); o < n; o += cuda::global_thread_count()) {
    const int64_t d = o % D;
    const int64_t h = (o / D) % H;
    const int64_t t = (o / (D * H)) % T;
    const int64_t b = o / (D * H * T);
    out[o] = in[((b * H + h) * T + t) * D + d];
  }
}

__global__ void sigmoid_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) y[i] = tile::sigmoid(x[i]);
}

__global__ void sigmoid_backward_kernel(const float* y, const float* dy, float* dx, int64_t n) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    dx[i] = tile::sigmoid_grad(y[i], dy[i]);
  }
}

}  // namespace

void CudaBackend::split_heads(const float* in, float* out, int64_t B, int64_t T_, int64_t H, int64_t D) {
  const int64_t n = B * T_ * H * D;
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  split_heads_kernel<<<cuda::grid_for(n, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0, stream_>>>(
      in, out, B, T_, H, D);
  FWP_CUDA_CHECK_LAUNCH("split_heads_kernel");
}

void CudaBackend::merge_heads(const float* in, float* out, int64_t B, int64_t T_, int64_t H, int64_t D) {
  const int64_t n = B * T_ * H * D;
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  merge_heads_kernel<<<cuda::grid_for(n, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0, stream_>>>(
      in, out, B, T_, H, D);
  FWP_CUDA_CHECK_LAUNCH("merge_heads_kernel");
}

void CudaBackend::sigmoid_forward(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  sigmoid_forward_kernel<<<cuda::grid_for(n, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0, stream_>>>(
      x, y, n);
  FWP_CUDA_CHECK_LAUNCH("sigmoid_forward_kernel");
}

void CudaBackend::sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  sigmoid_backward_kernel<<<cuda::grid_for(n, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0, stream_>>>(
      y, dy, dx, n);
  FWP_CUDA_CHECK_LAUNCH("sigmoid_backward_kernel");
}

}  // namespace fwp
