// CudaBackend: dropout, one thread per element; the mask comes from
// core/counter_hash.h, the same function the CPU backend uses, so both
// backends drop the same elements for the same seed.
#include <cstdint>

#include "core/counter_hash.h"
#include "cuda_backend.h"
#include "cuda_common.cuh"

namespace fwp {

namespace {

__global__ void dropout_kernel(const float* in, float* out, int64_t n, uint32_t threshold, float scale,
                               uint64_t seed) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    out[i] = dropout_keep(seed, static_cast<uint64_t>(i), threshold) ? in[i] * scale : 0.0f;
  }
}

}  // namespace

void CudaBackend::dropout_forward(const float* x, float* y, int64_t n, double p, uint64_t seed) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  dropout_kernel<<<cuda::grid_for(n, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0, stream_>>>(
      x, y, n, dropout_threshold(p), static_cast<float>(1.0 / (1.0 - p)), seed);
  FWP_CUDA_CHECK_LAUNCH("dropout_kernel");
}

void CudaBackend::dropout_backward(const float* dy, float* dx, int64_t n, double p, uint64_t seed) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  dropout_kernel<<<cuda::grid_for(n, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0, stream_>>>(
      dy, dx, n, dropout_threshold(p), static_cast<float>(1.0 / (1.0 - p)), seed);
  FWP_CUDA_CHECK_LAUNCH("dropout_kernel");
}

}  // namespace fwp
