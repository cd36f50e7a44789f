// CudaBackend: ReLU and GELU, forward and backward; one thread per element in
// grid-stride loops, the arithmetic from row_math.cuh.
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "row_math.cuh"

namespace fwp {

namespace {

__global__ void relu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) y[i] = rowmath::relu(x[i]);
}

__global__ void relu_backward_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    dx[i] = rowmath::relu_grad(x[i], dy[i]);
  }
}

__global__ void gelu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) y[i] = rowmath::gelu(x[i]);
}

__global__ void gelu_backward_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    dx[i] = rowmath::gelu_grad(x[i], dy[i]);
  }
}

unsigned blocks_for(int64_t n) { return cuda::grid_for(n, cuda::kElementwiseThreads); }

}  // namespace

void CudaBackend::relu_forward(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  relu_forward_kernel<<<blocks_for(n), cuda::kElementwiseThreads, 0, stream_>>>(x, y, n);
  FWP_CUDA_CHECK_LAUNCH("relu_forward_kernel");
}

void CudaBackend::relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  relu_backward_kernel<<<blocks_for(n), cuda::kElementwiseThreads, 0, stream_>>>(x, dy, dx, n);
  FWP_CUDA_CHECK_LAUNCH("relu_backward_kernel");
}

void CudaBackend::gelu_forward(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  gelu_forward_kernel<<<blocks_for(n), cuda::kElementwiseThreads, 0, stream_>>>(x, y, n);
  FWP_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
}

void CudaBackend::gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  gelu_backward_kernel<<<blocks_for(n), cuda::kElementwiseThreads, 0, stream_>>>(x, dy, dx, n);
  FWP_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
}

}  // namespace fwp
