// CudaBackend: the cluster partition and block log-softmax of adaptive input
// and adaptive softmax. The partition is one block: a counting pass (per-thread
// counts, one block sum per cluster), then a stable pass over chunks of
// blockDim rows with one block scan per cluster, so each cluster's rows keep
// their order (the products that follow then sum in the same order on every
// run). The log-softmax gives each row one block, as cross_entropy.cu. The
// arithmetic comes from adaptive_math.cuh and row_math.cuh.
#include <cstdint>

#include "adaptive_math.cuh"
#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "row_math.cuh"

namespace fwp {

namespace {

constexpr int kPartitionThreads = 1024;
constexpr int kRowThreads = 256;

// Exclusive prefix sum of x over the block (blockDim.x a multiple of 32); the
// block's total in `total`. `warp_totals` holds 32 ints of shared memory.
// Contains __syncthreads: every thread of the block must call it. (Shuffles
// and shared memory only, no CUB: the kernel emulator runs this kernel too.)
__device__ int block_exclusive_sum(int x, int* warp_totals, int& total) {
  const int lane = threadIdx.x % cuda::kWarpSize, warp = threadIdx.x / cuda::kWarpSize;
  const int warps = blockDim.x / cuda::kWarpSize;
  int v = x;  // inclusive scan within the warp
  for (int o = 1; o < cuda::kWarpSize; o <<= 1) {
    const int y = __shfl_sync(0xffffffffu, v, lane >= o ? lane - o : lane);
    if (lane >= o) v += y;
  }
  __syncthreads();  // warp_totals may still be read by a previous call
  if (lane == cuda::kWarpSize - 1) warp_totals[warp] = v;
  __syncthreads();
  int before = 0, sum = 0;
  for (int w = 0; w < warps; ++w) {
    const int t = warp_totals[w];
    if (w < warp) before += t;
    sum += t;
  }
  total = sum;
  return before + v - x;
}

__global__ void __launch_bounds__(kPartitionThreads)
    adaptive_partition_kernel(const int32_t* ids, int64_t rows, AdaptiveBounds b, int32_t* cluster_rows,
                              int32_t* cluster_ids, int32_t* head_targets, int64_t head_cols, int64_t* counts_out) {
  __shared__ int warp_totals[cuda::kWarpSize];
  __shared__ int64_t next[kMaxAdaptiveClusters];
  const int32_t clusters = static_cast<int32_t>(b.clusters);
  // Counting pass: per-thread counts, then one block sum per cluster.
  int mine[kMaxAdaptiveClusters];
  for (int32_t k = 0; k < clusters; ++k) mine[k] = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const int32_t id = ids[r];
    const int32_t k = adaptive::cluster_of(id, b);
    if (head_targets) head_targets[r] = adaptive::head_target(id, k, clusters, head_cols);
    if (k >= 0 && k < clusters) ++mine[k];
  }
  for (int32_t k = 0; k < clusters; ++k) {
    int total = 0;
    block_exclusive_sum(mine[k], warp_totals, total);
    if (threadIdx.x == 0) counts_out[k] = total;
  }
  if (threadIdx.x == 0) {
    int64_t offset = 0;
    for (int32_t k = 0; k < clusters; ++k) {
      next[k] = offset;
      offset += counts_out[k];
    }
  }
  __syncthreads();
  // Stable pass: every thread runs the same number of chunks, so all reach the scans and barriers.
  for (int64_t base = 0; base < rows; base += blockDim.x) {
    const int64_t r = base + threadIdx.x;
    const int32_t id = r < rows ? ids[r] : -1;
    const int32_t k_row = adaptive::cluster_of(id, b);
    for (int32_t k = 0; k < clusters; ++k) {
      const int flag = k_row == k ? 1 : 0;
      int total = 0;
      const int rank = block_exclusive_sum(flag, warp_totals, total);
      if (flag) {
        const int64_t at = next[k] + rank;
        cluster_rows[at] = static_cast<int32_t>(r);
        cluster_ids[at] = static_cast<int32_t>(id - b.bounds[k]);
      }
      __syncthreads();  // next[k] is read above before thread 0 moves it on
      if (threadIdx.x == 0) next[k] += total;
      __syncthreads();
    }
  }
}

// The row loop bound is the same for every thread of a block, so the block
// reductions (with their __syncthreads) are reached by all of them.
__global__ void log_softmax_rows_kernel(const float* logits, int64_t rows, int64_t cols, int64_t write_cols,
                                        const float* base, int64_t base_stride, float* out, int64_t ldo) {
  __shared__ float shared_max[cuda::kWarpSize];
  __shared__ float shared_sum[cuda::kWarpSize];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* lr = logits + r * cols;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, lr[c]);
    m = cuda::block_max(m, shared_max);
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += tile::exp_f(lr[c] - m);
    s = cuda::block_sum(s, shared_sum);
    const float lse = rowmath::cross_entropy_lse(m, s);
    const float b = base ? base[r * base_stride] : 0.0f;
    for (int64_t c = threadIdx.x; c < write_cols; c += blockDim.x) out[r * ldo + c] = adaptive::log_prob(lr[c], lse, b);
  }
}

}  // namespace

void CudaBackend::adaptive_partition(const int32_t* ids, int64_t rows, const AdaptiveBounds& bounds,
                                     int32_t* cluster_rows, int32_t* cluster_ids, int32_t* head_targets,
                                     int64_t head_cols, int64_t* counts) {
  require(bounds.clusters >= 1 && bounds.clusters <= kMaxAdaptiveClusters, FWP_ERR_INTERNAL,
          "adaptive_partition: cluster count out of range");
  for (int64_t k = 0; k < bounds.clusters; ++k) counts[k] = 0;
  if (rows <= 0) return;
  cuda::DeviceGuard guard(device_);
  cuda::Scratch<int64_t> device_counts(*this, bounds.clusters);
  adaptive_partition_kernel<<<1, kPartitionThreads, 0, stream_>>>(ids, rows, bounds, cluster_rows, cluster_ids,
                                                                  head_targets, head_cols, device_counts.get());
  FWP_CUDA_CHECK_LAUNCH("adaptive_partition_kernel");
  FWP_CUDA_CHECK(cudaMemcpyAsync(counts, device_counts.get(), static_cast<size_t>(bounds.clusters) * sizeof(int64_t),
                                 cudaMemcpyDeviceToHost, stream_));
  FWP_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::log_softmax_rows(const float* logits, int64_t rows, int64_t cols, int64_t write_cols,
                                   const float* base, int64_t base_stride, float* out, int64_t ldo) {
  if (rows <= 0 || write_cols <= 0) return;
  cuda::DeviceGuard guard(device_);
  log_softmax_rows_kernel<<<cuda::grid_for(rows, 1), kRowThreads, 0, stream_>>>(logits, rows, cols, write_cols, base,
                                                                                 base_stride, out, ldo);
  FWP_CUDA_CHECK_LAUNCH("log_softmax_rows_kernel");
}

}  // namespace fwp
