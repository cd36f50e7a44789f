// CudaBackend: attention normalisation of the sum rule,
//   z_t = z_in + sum_{j<=t} k_j,  denom_t = q_t . z_t + eps,  y_t = o_t / denom_t.
// The running sums run with one thread per (stream, key column), stepping
// through time in order like the CPU; the per-row dot products and scalings
// use one warp per (stream, step) row.
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "tile_math.cuh"

namespace fwp {

namespace {

constexpr int kRowThreads = 256;
constexpr int kRowsPerBlock = kRowThreads / cuda::kWarpSize;

// Z[s, t, j] = z_t[j]; z_out[s, j] = z_T[j].
__global__ void attn_norm_prefix_kernel(const float* k, const float* z_in, float* Z, float* z_out, int64_t streams,
                                        int64_t steps, int64_t dk) {
  for (int64_t idx = cuda::global_thread_index(); idx < streams * dk; idx += cuda::global_thread_count()) {
    const int64_t s = idx / dk, j = idx - s * dk;
    float z = z_in ? z_in[idx] : 0.0f;
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t at = (s * steps + t) * dk + j;
      z += k[at];
      Z[at] = z;
    }
    if (z_out) z_out[idx] = z;
  }
}

__global__ void attn_norm_rows_kernel(const float* q, const float* Z, const float* o, float eps, float* y,
                                      float* denom, int64_t rows, int64_t dk, int64_t dv) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / cuda::kWarpSize; r < rows;
       r += stride) {
    float dot = 0.0f;
    for (int64_t j = lane; j < dk; j += cuda::kWarpSize) dot += q[r * dk + j] * Z[r * dk + j];
    const float den = cuda::warp_sum(dot) + eps;
    if (lane == 0) denom[r] = den;
    // Element-wise, so y may alias o.
    for (int64_t x = lane; x < dv; x += cuda::kWarpSize) y[r * dv + x] = o[r * dv + x] / den;
  }
}

// g[r] = -(dy . y) / denom, d_o = dy / denom (d_o may alias dy: the dot
// product is complete before any lane writes).
__global__ void attn_norm_rows_backward_kernel(const float* y, const float* denom, const float* dy, float* d_o,
                                               float* g, int64_t rows, int64_t dv) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / cuda::kWarpSize; r < rows;
       r += stride) {
    float dot = 0.0f;
    for (int64_t x = lane; x < dv; x += cuda::kWarpSize) dot += dy[r * dv + x] * y[r * dv + x];
    dot = cuda::warp_sum(dot);
    const float den = denom[r];
    if (lane == 0) g[r] = tile::attn_norm_denom_grad(dot, den);
    for (int64_t x = lane; x < dv; x += cuda::kWarpSize) d_o[r * dv + x] = dy[r * dv + x] / den;
  }
}

// dk_t = sum_{t'>=t} g_t' q_t' (reverse running sum), d_z_in = the full sum,
// dq_t = g_t z_t (z rebuilt forwards).
__global__ void attn_norm_columns_backward_kernel(const float* q, const float* k, const float* z_in, const float* g,
                                                  float* dq, float* dk, float* d_z_in, int64_t streams,
                                                  int64_t steps, int64_t dkey) {
  for (int64_t idx = cuda::global_thread_index(); idx < streams * dkey; idx += cuda::global_thread_count()) {
    const int64_t s = idx / dkey, j = idx - s * dkey;
    float acc = 0.0f;
    for (int64_t t = steps - 1; t >= 0; --t) {
      const int64_t at = (s * steps + t) * dkey + j;
      acc += g[s * steps + t] * q[at];
      dk[at] = acc;
    }
    if (d_z_in) d_z_in[idx] = acc;
    float z = z_in ? z_in[idx] : 0.0f;
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t at = (s * steps + t) * dkey + j;
      z += k[at];
      dq[at] = g[s * steps + t] * z;
    }
  }
}

}  // namespace

void CudaBackend::attn_norm_forward(const FastWeightShape& shape, const float* q, const float* k, const float* z_in,
                                    const float* o, float eps, float* y, float* denom, float* z_out) {
  const int64_t S = shape.streams, T = shape.steps, dk = shape.d_key, dv = shape.d_value;
  if (S <= 0) return;
  cuda::DeviceGuard guard(device_);
  if (T <= 0 || dk <= 0) {
    // No steps: z_out = z_in; no key columns: z is empty and denom = eps.
    if (z_out && dk > 0) {
      if (z_in) copy(z_out, z_in, S * dk);
      else fill(z_out, 0.0f, S * dk);
    }
    if (T > 0) {
      attn_norm_rows_kernel<<<cuda::grid_for(S * T, kRowsPerBlock), kRowThreads, 0, stream_>>>(
          q, nullptr, o, eps, y, denom, S * T, 0, dv);
      FWP_CUDA_CHECK_LAUNCH("attn_norm_rows_kernel");
    }
    return;
  }
  cuda::Scratch<float> Z(*this, S * T * dk);
  attn_norm_prefix_kernel<<<cuda::grid_for(S * dk, 128), 128, 0, stream_>>>(k, z_in, Z.get(), z_out, S, T, dk);
  FWP_CUDA_CHECK_LAUNCH("attn_norm_prefix_kernel");
  attn_norm_rows_kernel<<<cuda::grid_for(S * T, kRowsPerBlock), kRowThreads, 0, stream_>>>(q, Z.get(), o, eps, y,
                                                                                            denom, S * T, dk, dv);
  FWP_CUDA_CHECK_LAUNCH("attn_norm_rows_kernel");
}

void CudaBackend::attn_norm_backward(const FastWeightShape& shape, const float* q, const float* k,
                                     const float* z_in, const float* y, const float* denom, const float* dy,
                                     float* d_o, float* dq, float* dk, float* d_z_in) {
  const int64_t S = shape.streams, T = shape.steps, dkey = shape.d_key, dv = shape.d_value;
  if (S <= 0) return;
  cuda::DeviceGuard guard(device_);
  if (T <= 0) {
    if (d_z_in && dkey > 0) fill(d_z_in, 0.0f, S * dkey);
    return;
  }
  cuda::Scratch<float> g(*this, S * T);
  attn_norm_rows_backward_kernel<<<cuda::grid_for(S * T, kRowsPerBlock), kRowThreads, 0, stream_>>>(
      y, denom, dy, d_o, g.get(), S * T, dv);
  FWP_CUDA_CHECK_LAUNCH("attn_norm_rows_backward_kernel");
  if (dkey <= 0) return;
  attn_norm_columns_backward_kernel<<<cuda::grid_for(S * dkey, 128), 128, 0, stream_>>>(q, k, z_in, g.get(), dq, dk,
                                                                                         d_z_in, S, T, dkey);
  FWP_CUDA_CHECK_LAUNCH("attn_norm_columns_backward_kernel");
}

}  // namespace fwp
