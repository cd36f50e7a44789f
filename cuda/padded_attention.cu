// CudaBackend: the ops of the non-causal attention kinds over right-padded
// batches (core/backend/padded_attention.h): clearing padded steps, the
// whole-sequence sum-rule memory (batched cuBLAS products) and softmax
// attention with per-sequence key lengths.
//
// The masked softmax kernels give one warp to one query row (forward, dq) or
// one key row (dk, dv) and keep that row's output in registers, d / 32 columns
// per lane (d <= kMaxCols * 32); scores come from warp-wide dot products with
// an online (running max) softmax in the forward. Source sentences are short
// (tens of tokens), so this plain form is enough here; the flash-style kernels
// of softmax_attention.cu remain the causal path.
#include <cstdint>
#include <string>

#include "cuda_backend.h"
#include "cuda_common.cuh"

namespace fwp {

namespace {

constexpr int kRowThreads = 256;
constexpr int kWarpsPerBlock = kRowThreads / cuda::kWarpSize;
constexpr int kMaxCols = 8;  // columns per lane: d <= 256

__global__ void zero_padded_steps_kernel(float* x, const int32_t* lengths, int64_t streams, int64_t groups,
                                         int64_t steps, int64_t d) {
  const int64_t n = streams * steps * d;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) {
    const int64_t row = e / d;
    const int64_t s = row / steps, t = row - s * steps;
    if (t >= lengths[s / groups]) x[e] = 0.0f;
  }
}

// Dot product of two d-vectors across the warp; every lane gets the result.
__device__ __forceinline__ float warp_dot(const float* a, const float* b, int64_t d, int lane) {
  float acc = 0.0f;
  for (int64_t c = lane; c < d; c += cuda::kWarpSize) acc += a[c] * b[c];
  return cuda::warp_sum(acc);
}

// One warp per query row (s, j): online softmax over the stream's first len keys.
__global__ void __launch_bounds__(kRowThreads)
    masked_forward_kernel(const float* q, const float* k, const float* v, const int32_t* key_lengths,
                          float scale, float* out, float* lse, int64_t streams, int64_t groups, int64_t queries,
                          int64_t keys, int64_t key_stride, int64_t d) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t rows = streams * queries;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / cuda::kWarpSize; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t s = r / queries;
    const int64_t len = min(static_cast<int64_t>(key_lengths[s / groups]), keys);
    const float* qr = q + r * d;
    float acc[kMaxCols];
#pragma unroll
    for (int u = 0; u < kMaxCols; ++u) acc[u] = 0.0f;
    float run_max = -INFINITY, run_sum = 0.0f;
    for (int64_t i = 0; i < len; ++i) {
      const float* kr = k + (s * key_stride + i) * d;
      const float* vr = v + (s * key_stride + i) * d;
      const float score = scale * warp_dot(qr, kr, d, lane);
      const float new_max = fmaxf(run_max, score);
      const float alpha = expf(run_max - new_max);  // 0 on the first key (run_max = -inf)
      const float p = expf(score - new_max);
      run_sum = run_sum * alpha + p;
#pragma unroll
      for (int u = 0; u < kMaxCols; ++u) {
        const int64_t c = lane + static_cast<int64_t>(u) * cuda::kWarpSize;
        if (c < d) acc[u] = acc[u] * alpha + p * vr[c];
      }
      run_max = new_max;
    }
    const float inv = 1.0f / run_sum;
#pragma unroll
    for (int u = 0; u < kMaxCols; ++u) {
      const int64_t c = lane + static_cast<int64_t>(u) * cuda::kWarpSize;
      if (c < d) out[r * d + c] = acc[u] * inv;
    }
    if (lse && lane == 0) lse[r] = run_max + logf(run_sum);
  }
}

// One warp per query row: centre_j = dO_j . O_j, and dq_j = scale sum_i ds_ji k_i with
// ds_ji = p_ji (dO_j . v_i - centre_j).
__global__ void __launch_bounds__(kRowThreads)
    masked_dq_kernel(const float* q, const float* k, const float* v, const int32_t* key_lengths, const float* out,
                     const float* lse, const float* d_out, float scale, float* dq, float* centre, int64_t streams,
                     int64_t groups, int64_t queries, int64_t keys, int64_t d) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t rows = streams * queries;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / cuda::kWarpSize; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t s = r / queries;
    const int64_t len = min(static_cast<int64_t>(key_lengths[s / groups]), keys);
    const float* qr = q + r * d;
    const float* dor = d_out + r * d;
    const float c_j = warp_dot(dor, out + r * d, d, lane);
    if (lane == 0) centre[r] = c_j;
    const float l = lse[r];
    float acc[kMaxCols];
#pragma unroll
    for (int u = 0; u < kMaxCols; ++u) acc[u] = 0.0f;
    for (int64_t i = 0; i < len; ++i) {
      const float* kr = k + (s * keys + i) * d;
      const float p = expf(scale * warp_dot(qr, kr, d, lane) - l);
      const float ds = p * (warp_dot(dor, v + (s * keys + i) * d, d, lane) - c_j);
#pragma unroll
      for (int u = 0; u < kMaxCols; ++u) {
        const int64_t c = lane + static_cast<int64_t>(u) * cuda::kWarpSize;
        if (c < d) acc[u] += ds * kr[c];
      }
    }
#pragma unroll
    for (int u = 0; u < kMaxCols; ++u) {
      const int64_t c = lane + static_cast<int64_t>(u) * cuda::kWarpSize;
      if (c < d) dq[r * d + c] = scale * acc[u];
    }
  }
}

// One warp per key row (s, i): dk_i = scale sum_j ds_ji q_j, dv_i = sum_j p_ji dO_j; zero for masked keys.
__global__ void __launch_bounds__(kRowThreads)
    masked_dkv_kernel(const float* q, const float* k, const float* v, const int32_t* key_lengths, const float* lse,
                      const float* d_out, const float* centre, float scale, float* dk, float* dv, int64_t streams,
                      int64_t groups, int64_t queries, int64_t keys, int64_t d) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t rows = streams * keys;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / cuda::kWarpSize; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t s = r / keys, i = r - s * keys;
    const bool visible = i < static_cast<int64_t>(key_lengths[s / groups]);
    float acc_k[kMaxCols], acc_v[kMaxCols];
#pragma unroll
    for (int u = 0; u < kMaxCols; ++u) acc_k[u] = acc_v[u] = 0.0f;
    if (visible) {
      const float* kr = k + r * d;
      const float* vr = v + r * d;
      for (int64_t j = 0; j < queries; ++j) {
        const int64_t qrow = s * queries + j;
        const float* qr = q + qrow * d;
        const float* dor = d_out + qrow * d;
        const float p = expf(scale * warp_dot(qr, kr, d, lane) - lse[qrow]);
        const float ds = p * (warp_dot(dor, vr, d, lane) - centre[qrow]);
#pragma unroll
        for (int u = 0; u < kMaxCols; ++u) {
          const int64_t c = lane + static_cast<int64_t>(u) * cuda::kWarpSize;
          if (c < d) {
            acc_k[u] += ds * qr[c];
            acc_v[u] += p * dor[c];
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kMaxCols; ++u) {
      const int64_t c = lane + static_cast<int64_t>(u) * cuda::kWarpSize;
      if (c < d) {
        dk[r * d + c] = scale * acc_k[u];
        dv[r * d + c] = acc_v[u];
      }
    }
  }
}

void check_row_width(int64_t d, const char* op) {
  if (d > static_cast<int64_t>(kMaxCols) * cuda::kWarpSize) {
    throw Error(FWP_ERR_UNSUPPORTED, std::string(op) + ": the CUDA kernel supports d <= " +
                                         std::to_string(kMaxCols * cuda::kWarpSize) + " (got " + std::to_string(d) +
                                         ")");
  }
}

}  // namespace

void CudaBackend::zero_padded_steps(float* x, const int32_t* lengths, int64_t batch, int64_t groups, int64_t steps,
                                    int64_t d) {
  if (batch <= 0 || groups <= 0 || steps <= 0 || d <= 0) return;
  cuda::DeviceGuard guard(device_);
  const int64_t n = batch * groups * steps * d;
  zero_padded_steps_kernel<<<cuda::grid_for(n, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0, stream_>>>(
      x, lengths, batch * groups, groups, steps, d);
  FWP_CUDA_CHECK_LAUNCH("zero_padded_steps_kernel");
}

void CudaBackend::outer_product_sum(int64_t streams, int64_t steps, int64_t d_a, int64_t d_b, const float* a,
                                    const float* b, float* out) {
  if (streams <= 0 || d_a <= 0 || d_b <= 0) return;
  cuda::DeviceGuard guard(device_);
  if (steps <= 0) {
    fill(out, 0.0f, streams * d_a * d_b);  // the empty sum (cuBLAS takes no K = 0)
    return;
  }
  // Out_s [d_a, d_b] = A_s^T B_s.
  gemm_batched(true, false, d_a, d_b, steps, 1.0f, a, d_a, steps * d_a, b, d_b, steps * d_b, 0.0f, out, d_b,
               d_a * d_b, streams);
}

void CudaBackend::outer_product_sum_backward(int64_t streams, int64_t steps, int64_t d_a, int64_t d_b,
                                             const float* a, const float* b, const float* d_out, float* da,
                                             float* db) {
  if (streams <= 0 || steps <= 0 || d_a <= 0 || d_b <= 0) return;
  cuda::DeviceGuard guard(device_);
  // dA_s = B_s dOut_s^T, dB_s = A_s dOut_s.
  gemm_batched(false, true, steps, d_a, d_b, 1.0f, b, d_b, steps * d_b, d_out, d_b, d_a * d_b, 0.0f, da, d_a,
               steps * d_a, streams);
  gemm_batched(false, false, steps, d_b, d_a, 1.0f, a, d_a, steps * d_a, d_out, d_b, d_a * d_b, 0.0f, db, d_b,
               steps * d_b, streams);
}

void CudaBackend::masked_attention_forward(int64_t streams, int64_t groups, int64_t queries, int64_t keys,
                                           int64_t key_stride, int64_t d, const float* q, const float* k,
                                           const float* v, const int32_t* key_lengths, float scale, float* out,
                                           float* lse) {
  if (streams <= 0 || queries <= 0 || d <= 0) return;
  check_row_width(d, "masked_attention_forward");
  cuda::DeviceGuard guard(device_);
  masked_forward_kernel<<<cuda::grid_for(streams * queries, kWarpsPerBlock), kRowThreads, 0, stream_>>>(
      q, k, v, key_lengths, scale, out, lse, streams, groups, queries, keys, key_stride, d);
  FWP_CUDA_CHECK_LAUNCH("masked_forward_kernel");
}

void CudaBackend::masked_attention_backward(int64_t streams, int64_t groups, int64_t queries, int64_t keys,
                                            int64_t d, const float* q, const float* k, const float* v,
                                            const int32_t* key_lengths, const float* out, const float* lse,
                                            const float* d_out, float scale, float* dq, float* dk, float* dv) {
  if (streams <= 0 || d <= 0) return;
  check_row_width(d, "masked_attention_backward");
  cuda::DeviceGuard guard(device_);
  if (queries <= 0) {
    if (keys > 0) {
      fill(dk, 0.0f, streams * keys * d);
      fill(dv, 0.0f, streams * keys * d);
    }
    return;
  }
  cuda::Scratch<float> centre(*this, streams * queries);
  masked_dq_kernel<<<cuda::grid_for(streams * queries, kWarpsPerBlock), kRowThreads, 0, stream_>>>(
      q, k, v, key_lengths, out, lse, d_out, scale, dq, centre.get(), streams, groups, queries, keys, d);
  FWP_CUDA_CHECK_LAUNCH("masked_dq_kernel");
  if (keys <= 0) return;
  masked_dkv_kernel<<<cuda::grid_for(streams * keys, kWarpsPerBlock), kRowThreads, 0, stream_>>>(
      q, k, v, key_lengths, lse, d_out, centre.get(), scale, dk, dv, streams, groups, queries, keys, d);
  FWP_CUDA_CHECK_LAUNCH("masked_dkv_kernel");
}

}  // namespace fwp
