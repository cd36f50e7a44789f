// CudaBackend: the feature maps phi (elu+1, FAVOR+, DPFP) and sum
// normalisation, forward and backward. Element-wise maps use one thread per
// output element; maps with a row reduction use one warp per row. The
// FAVOR+ projections Rx and R^T g are cuBLAS products.
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "tile_math.cuh"

namespace fwp {

namespace {

constexpr int kRowThreads = 256;  // 8 warps, one row each
constexpr int kRowsPerBlock = kRowThreads / cuda::kWarpSize;

unsigned row_grid(int64_t rows) { return cuda::grid_for(rows, kRowsPerBlock); }

__device__ __forceinline__ int64_t warp_row_begin() {
  return static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / cuda::kWarpSize;
}
__device__ __forceinline__ int64_t warp_row_stride() { return static_cast<int64_t>(gridDim.x) * kRowsPerBlock; }

__global__ void elu_forward_kernel(const float* x, float* phi, int64_t n) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) phi[i] = tile::elu1(x[i]);
}

__global__ void elu_backward_kernel(const float* x, const float* phi, const float* dphi, float* dx, int64_t n) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    dx[i] = tile::elu1_grad(x[i], phi[i], dphi[i]);
  }
}

__global__ void dpfp_forward_kernel(const float* x, float* phi, int64_t rows, int64_t d, int64_t d_out) {
  const int64_t n = rows * d_out;
  for (int64_t o = cuda::global_thread_index(); o < n; o += cuda::global_thread_count()) {
    const int64_t r = o / d_out;
    phi[o] = tile::dpfp_phi(x + r * d, d, o - r * d_out);
  }
}

__global__ void dpfp_backward_kernel(const float* x, const float* dphi, float* dx, int64_t rows, int64_t d,
                                     int64_t nu) {
  const int64_t n = rows * d;
  const int64_t d_out = 2 * d * nu;
  for (int64_t o = cuda::global_thread_index(); o < n; o += cuda::global_thread_count()) {
    const int64_t r = o / d;
    dx[o] = tile::dpfp_dx(x + r * d, dphi + r * d_out, d, nu, o - r * d);
  }
}

// phi's first half holds Rx on entry.
__global__ void favor_forward_kernel(const float* x, float* phi, int64_t rows, int64_t d, int64_t m, float log_c) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  for (int64_t r = warp_row_begin(); r < rows; r += warp_row_stride()) {
    const float* xr = x + r * d;
    float sq = 0.0f;
    for (int64_t j = lane; j < d; j += cuda::kWarpSize) sq += xr[j] * xr[j];
    const float shift = tile::favor_shift(log_c, cuda::warp_sum(sq));
    float* pr = phi + r * 2 * m;
    for (int64_t i = lane; i < m; i += cuda::kWarpSize) {
      const float proj = pr[i];
      pr[m + i] = tile::favor_minus(proj, shift);
      pr[i] = tile::favor_plus(proj, shift);
    }
  }
}

// g = dphi+ phi+ - dphi- phi-  (for dx = g R), and dx = -sum(dphi phi) x.
__global__ void favor_backward_kernel(const float* x, const float* phi, const float* dphi, float* g, float* dx,
                                      int64_t rows, int64_t d, int64_t m) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  for (int64_t r = warp_row_begin(); r < rows; r += warp_row_stride()) {
    const float* pr = phi + r * 2 * m;
    const float* dpr = dphi + r * 2 * m;
    float total = 0.0f;
    for (int64_t i = lane; i < m; i += cuda::kWarpSize) {
      const float pp = pr[i], pm = pr[m + i], dpp = dpr[i], dpm = dpr[m + i];
      g[r * m + i] = tile::favor_grad_g(pp, pm, dpp, dpm);
      total += tile::favor_grad_total(pp, pm, dpp, dpm);
    }
    total = cuda::warp_sum(total);
    for (int64_t j = lane; j < d; j += cuda::kWarpSize) dx[r * d + j] = -total * x[r * d + j];
  }
}

__global__ void sum_normalize_forward_kernel(const float* phi, float* out, int64_t rows, int64_t d, float eps) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  for (int64_t r = warp_row_begin(); r < rows; r += warp_row_stride()) {
    const float* p = phi + r * d;
    float s = 0.0f;
    for (int64_t j = lane; j < d; j += cuda::kWarpSize) s += p[j];
    const float inv = tile::sum_normalize_inv(cuda::warp_sum(s), eps);
    // Each lane rewrites only elements it has read itself, so out may alias phi.
    for (int64_t j = lane; j < d; j += cuda::kWarpSize) out[r * d + j] = p[j] * inv;
  }
}

__global__ void sum_normalize_backward_kernel(const float* phi, const float* dout, float* dphi, int64_t rows,
                                              int64_t d, float eps) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  for (int64_t r = warp_row_begin(); r < rows; r += warp_row_stride()) {
    const float* p = phi + r * d;
    const float* g = dout + r * d;
    float s = 0.0f, dot = 0.0f;
    for (int64_t j = lane; j < d; j += cuda::kWarpSize) {
      s += p[j];
      dot += g[j] * p[j];
    }
    // The sums are complete (warp_sum synchronises the warp) before any lane
    // writes, so dphi may alias dout.
    const float inv = tile::sum_normalize_inv(cuda::warp_sum(s), eps);
    dot = cuda::warp_sum(dot);
    for (int64_t j = lane; j < d; j += cuda::kWarpSize) dphi[r * d + j] = tile::sum_normalize_grad(g[j], dot, inv);
  }
}

}  // namespace

void CudaBackend::feature_map_forward(const FeatureMapSpec& spec, const float* favor_projection, const float* x,
                                      float* phi, int64_t rows) {
  const int64_t d = spec.d_in;
  const int64_t d_out = spec.d_out();
  if (rows <= 0 || d_out <= 0) return;
  cuda::DeviceGuard guard(device_);
  switch (spec.kind) {
    case FeatureMap::Elu:
      elu_forward_kernel<<<cuda::grid_for(rows * d, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0,
                           stream_>>>(x, phi, rows * d);
      FWP_CUDA_CHECK_LAUNCH("elu_forward_kernel");
      return;
    case FeatureMap::Dpfp:
      dpfp_forward_kernel<<<cuda::grid_for(rows * d_out, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0,
                            stream_>>>(x, phi, rows, d, d_out);
      FWP_CUDA_CHECK_LAUNCH("dpfp_forward_kernel");
      return;
    case FeatureMap::Favor: {
      const int64_t m = spec.m;
      // Rx into the first half of every phi row.
      gemm(false, true, rows, m, d, 1.0f, x, d, favor_projection, d, 0.0f, phi, d_out);
      favor_forward_kernel<<<row_grid(rows), kRowThreads, 0, stream_>>>(x, phi, rows, d, m, tile::favor_log_c(m));
      FWP_CUDA_CHECK_LAUNCH("favor_forward_kernel");
      return;
    }
  }
  throw Error(FWP_ERR_INTERNAL, "feature_map_forward: unknown feature map");
}

void CudaBackend::feature_map_backward(const FeatureMapSpec& spec, const float* favor_projection, const float* x,
                                       const float* phi, const float* dphi, float* dx, int64_t rows) {
  const int64_t d = spec.d_in;
  if (rows <= 0 || d <= 0) return;
  cuda::DeviceGuard guard(device_);
  switch (spec.kind) {
    case FeatureMap::Elu:
      elu_backward_kernel<<<cuda::grid_for(rows * d, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0,
                            stream_>>>(x, phi, dphi, dx, rows * d);
      FWP_CUDA_CHECK_LAUNCH("elu_backward_kernel");
      return;
    case FeatureMap::Dpfp:
      dpfp_backward_kernel<<<cuda::grid_for(rows * d, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0,
                             stream_>>>(x, dphi, dx, rows, d, spec.nu);
      FWP_CUDA_CHECK_LAUNCH("dpfp_backward_kernel");
      return;
    case FeatureMap::Favor: {
      const int64_t m = spec.m;
      if (m <= 0) {
        fill(dx, 0.0f, rows * d);
        return;
      }
      cuda::Scratch<float> g(*this, rows * m);
      favor_backward_kernel<<<row_grid(rows), kRowThreads, 0, stream_>>>(x, phi, dphi, g.get(), dx, rows, d, m);
      FWP_CUDA_CHECK_LAUNCH("favor_backward_kernel");
      gemm(false, false, rows, d, m, 1.0f, g.get(), m, favor_projection, d, 1.0f, dx, d);  // + g R
      return;
    }
  }
  throw Error(FWP_ERR_INTERNAL, "feature_map_backward: unknown feature map");
}

void CudaBackend::sum_normalize_forward(const float* phi, float* out, int64_t rows, int64_t d, float eps) {
  if (rows <= 0 || d <= 0) return;
  cuda::DeviceGuard guard(device_);
  sum_normalize_forward_kernel<<<row_grid(rows), kRowThreads, 0, stream_>>>(phi, out, rows, d, eps);
  FWP_CUDA_CHECK_LAUNCH("sum_normalize_forward_kernel");
}

void CudaBackend::sum_normalize_backward(const float* phi, const float* dout, float* dphi, int64_t rows, int64_t d,
                                         float eps) {
  if (rows <= 0 || d <= 0) return;
  cuda::DeviceGuard guard(device_);
  sum_normalize_backward_kernel<<<row_grid(rows), kRowThreads, 0, stream_>>>(phi, dout, dphi, rows, d, eps);
  FWP_CUDA_CHECK_LAUNCH("sum_normalize_backward_kernel");
}

}  // namespace fwp
