// CudaBackend: the associative-retrieval model's ops beyond the layer ops:
// per-stream sums over steps, and queries read out of a fixed fast-weight
// state (batched cuBLAS products plus a warp-per-row normalisation).
// (Non-causal cross attention shares the kernels of softmax_attention.cu.)
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "tile_math.cuh"

namespace fwp {

namespace {

constexpr int kRowThreads = 256;
constexpr int kRowsPerBlock = kRowThreads / cuda::kWarpSize;

// out[s, j] = sum_t x[s, t, j], one thread per (s, j), steps in order.
__global__ void step_sum_kernel(const float* x, float* out, int64_t streams, int64_t steps, int64_t d) {
  for (int64_t idx = cuda::global_thread_index(); idx < streams * d; idx += cuda::global_thread_count()) {
    const int64_t s = idx / d, j = idx - s * d;
    float acc = 0.0f;
    for (int64_t t = 0; t < steps; ++t) acc += x[(s * steps + t) * d + j];
    out[idx] = acc;
  }
}

__global__ void step_broadcast_kernel(const float* v, float* x, int64_t streams, int64_t steps, int64_t d) {
  const int64_t n = streams * steps * d;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) {
    const int64_t j = e % d;
    const int64_t s = e / (steps * d);
    x[e] += v[s * d + j];
  }
}

// Row (s, j): den = q . z_s + eps, y /= den.
__global__ void readout_normalize_kernel(const float* q, const float* z, float eps, float* y, float* denom,
                                         int64_t streams, int64_t nq, int64_t dk, int64_t dv) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t rows = streams * nq;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / cuda::kWarpSize; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t s = r / nq;
    float dot = 0.0f;
    for (int64_t x = lane; x < dk; x += cuda::kWarpSize) dot += q[r * dk + x] * z[s * dk + x];
    const float den = cuda::warp_sum(dot) + eps;
    if (lane == 0) denom[r] = den;
    for (int64_t x = lane; x < dv; x += cuda::kWarpSize) y[r * dv + x] /= den;
  }
}

// d_o = dy / den, d_den = -(dy . y) / den per row.
__global__ void readout_rows_backward_kernel(const float* y, const float* denom, const float* dy, float* d_o,
                                             float* d_den, int64_t rows, int64_t dv) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / cuda::kWarpSize; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    float dot = 0.0f;
    for (int64_t x = lane; x < dv; x += cuda::kWarpSize) dot += dy[r * dv + x] * y[r * dv + x];
    dot = cuda::warp_sum(dot);
    const float den = denom[r];
    if (lane == 0) d_den[r] = tile::attn_norm_denom_grad(dot, den);
    for (int64_t x = lane; x < dv; x += cuda::kWarpSize) d_o[r * dv + x] = dy[r * dv + x] / den;
  }
}

// dq[s, j, :] += d_den[s, j] z[s, :].
__global__ void readout_dq_rank1_kernel(float* dq, const float* d_den, const float* z, int64_t streams, int64_t nq,
                                        int64_t dk) {
  const int64_t n = streams * nq * dk;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) {
    const int64_t x = e % dk;
    const int64_t r = e / dk;
    dq[e] += d_den[r] * z[(r / nq) * dk + x];
  }
}

}  // namespace

void CudaBackend::step_sum(const float* x, float* out, int64_t streams, int64_t steps, int64_t d) {
  if (streams <= 0 || d <= 0) return;
  cuda::DeviceGuard guard(device_);
  step_sum_kernel<<<cuda::grid_for(streams * d, 256), 256, 0, stream_>>>(x, out, streams, steps, d);
  FWP_CUDA_CHECK_LAUNCH("step_sum_kernel");
}

void CudaBackend::step_broadcast_accumulate(const float* v, float* x, int64_t streams, int64_t steps, int64_t d) {
  if (streams <= 0 || steps <= 0 || d <= 0) return;
  cuda::DeviceGuard guard(device_);
  step_broadcast_kernel<<<cuda::grid_for(streams * steps * d, 256), 256, 0, stream_>>>(v, x, streams, steps, d);
  FWP_CUDA_CHECK_LAUNCH("step_broadcast_kernel");
}

void CudaBackend::fast_weight_readout_forward(const FastWeightShape& shape, const float* state, const float* z,
                                              const float* q, float eps, float* y, float* denom) {
  const int64_t S = shape.streams, nq = shape.steps, dk = shape.d_key, dv = shape.d_value;
  if (S <= 0 || nq <= 0 || dv <= 0) return;
  cuda::DeviceGuard guard(device_);
  // Y_s = Q_s W_s^T.
  gemm_batched(false, true, nq, dv, dk, 1.0f, q, dk, nq * dk, state, dk, dv * dk, 0.0f, y, dv, nq * dv, S);
  if (z) {
    readout_normalize_kernel<<<cuda::grid_for(S * nq, kRowsPerBlock), kRowThreads, 0, stream_>>>(q, z, eps, y, denom,
                                                                                                 S, nq, dk, dv);
    FWP_CUDA_CHECK_LAUNCH("readout_normalize_kernel");
  }
}

void CudaBackend::fast_weight_readout_backward(const FastWeightShape& shape, const float* state, const float* z,
                                               const float* q, const float* y, const float* denom, const float* dy,
                                               float* dq, float* d_state, float* d_z) {
  const int64_t S = shape.streams, nq = shape.steps, dk = shape.d_key, dv = shape.d_value;
  if (S <= 0) return;
  cuda::DeviceGuard guard(device_);
  if (nq <= 0 || dv <= 0 || dk <= 0) {
    // Empty products: every gradient is zero.
    if (dk > 0 && dv > 0) fill(d_state, 0.0f, S * dv * dk);
    if (z && dk > 0) fill(d_z, 0.0f, S * dk);
    if (nq > 0 && dk > 0) fill(dq, 0.0f, S * nq * dk);
    return;
  }
  const float* d_o = dy;
  cuda::Scratch<float> d_o_buf, d_den;
  if (z) {
    d_o_buf = cuda::Scratch<float>(*this, S * nq * dv);
    d_den = cuda::Scratch<float>(*this, S * nq);
    readout_rows_backward_kernel<<<cuda::grid_for(S * nq, kRowsPerBlock), kRowThreads, 0, stream_>>>(
        y, denom, dy, d_o_buf.get(), d_den.get(), S * nq, dv);
    FWP_CUDA_CHECK_LAUNCH("readout_rows_backward_kernel");
    d_o = d_o_buf.get();
  }
  // dQ_s = dO_s W_s, dW_s = dO_s^T Q_s.
  gemm_batched(false, false, nq, dk, dv, 1.0f, d_o, dv, nq * dv, state, dk, dv * dk, 0.0f, dq, dk, nq * dk, S);
  gemm_batched(true, false, dv, dk, nq, 1.0f, d_o, dv, nq * dv, q, dk, nq * dk, 0.0f, d_state, dk, dv * dk, S);
  if (z) {
    readout_dq_rank1_kernel<<<cuda::grid_for(S * nq * dk, 256), 256, 0, stream_>>>(dq, d_den.get(), z, S, nq, dk);
    FWP_CUDA_CHECK_LAUNCH("readout_dq_rank1_kernel");
    // d_z_s = Q_s^T d_den_s.
    gemm_batched(true, false, dk, 1, nq, 1.0f, q, dk, nq * dk, d_den.get(), 1, nq, 0.0f, d_z, 1, dk, S);
  }
}

}  // namespace fwp
