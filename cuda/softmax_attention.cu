// CudaBackend: softmax attention, flash-style in fp32. Causal self-attention
// (the Transformer baseline) and non-causal cross attention (the retrieval
// model) share one set of kernels:
//   forward   one block per (stream, 32 queries, 128 output columns); key
//             tiles of 32 are merged into a running max / sum per row
//             (tile::SoftmaxRow) and the log-sum-exp is stored;
//   backward  probabilities are recomputed from the stored lse: one kernel
//             per query tile accumulates dQ, one per key tile accumulates dK
//             and dV (no atomics: results are deterministic);
//   decode    one block per stream over the first `length` cache entries.
// Dot products over the head dimension run over shared-memory slabs of 32
// columns, so any d works; output columns come in groups of 128 (grid z).
// Thread t of a 256-thread block owns tile row t / 8 and columns t % 8 + 8 a.
#include <cstdint>
#include <string>

#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "tile_math.cuh"

namespace fwp {

namespace {

constexpr int kTile = 32;
constexpr int kLd = kTile + 1;
constexpr int kGroup = 128;
constexpr int kThreads = 256;
constexpr int kPerRow = kThreads / kTile;        // 8 threads per tile row
constexpr int kScoresPerThread = kTile / kPerRow;  // 4
constexpr int kColsPerThread = kGroup / kPerRow;   // 16

struct AttnParams {
  const float* q;
  const float* k;
  const float* v;
  const float* out;    // backward: the forward output
  const float* lse;    // backward: the forward log-sum-exp
  const float* d_out;  // backward
  const float* D;      // backward: rowwise d_out . out
  float* o;
  float* lse_out;
  float* dq;
  float* dk;
  float* dv;
  int64_t nq, nk, d, dv_;
  float scale;
  bool causal;
};

// acc[a] = sum_x A[r][x] B[c][x] for tile row r = t / 8 and tile column
// c = t % 8 + 8 a, over x < width; A and B are `rows` rows of stride `width`
// starting at abase / bbase (zero beyond arows / brows). Contains barriers.
__device__ void tile_dots(const float* abase, int64_t arows, const float* bbase, int64_t brows, int64_t width,
                          float* As, float* Bs, float (&acc)[kScoresPerThread]) {
  const int r = threadIdx.x / kPerRow, l8 = threadIdx.x % kPerRow;
#pragma unroll
  for (int a = 0; a < kScoresPerThread; ++a) acc[a] = 0.0f;
  for (int64_t x0 = 0; x0 < width; x0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += blockDim.x) {
      const int rr = e / kTile, xx = e % kTile;
      const int64_t x = x0 + xx;
      As[rr * kLd + xx] = (rr < arows && x < width) ? abase[rr * width + x] : 0.0f;
      Bs[rr * kLd + xx] = (rr < brows && x < width) ? bbase[rr * width + x] : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int xx = 0; xx < kTile; ++xx) {
      const float av = As[r * kLd + xx];
#pragma unroll
      for (int a = 0; a < kScoresPerThread; ++a) acc[a] += av * Bs[(l8 + kPerRow * a) * kLd + xx];
    }
    __syncthreads();
  }
}

// dst[rr][cc] = src row (row0 + rr), column (col0 + cc) of a [*, width] array,
// zero outside rows < rows and columns < width.
__device__ __forceinline__ void load_group(float* dst, const float* src, int64_t rows, int64_t width, int64_t col0) {
  for (int e = threadIdx.x; e < kTile * kGroup; e += blockDim.x) {
    const int rr = e / kGroup, cc = e % kGroup;
    const int64_t col = col0 + cc;
    dst[e] = (src && rr < rows && col < width) ? src[rr * width + col] : 0.0f;
  }
}

__device__ __forceinline__ float row_max8(float x) {
  x = fmaxf(x, __shfl_xor_sync(cuda::kFullMask, x, 1));
  x = fmaxf(x, __shfl_xor_sync(cuda::kFullMask, x, 2));
  return fmaxf(x, __shfl_xor_sync(cuda::kFullMask, x, 4));
}
__device__ __forceinline__ float row_sum8(float x) {
  x += __shfl_xor_sync(cuda::kFullMask, x, 1);
  x += __shfl_xor_sync(cuda::kFullMask, x, 2);
  return x + __shfl_xor_sync(cuda::kFullMask, x, 4);
}

__device__ __forceinline__ bool key_visible(const AttnParams& p, int64_t i, int64_t j, int c, int64_t krows) {
  return c < krows && (!p.causal || j <= i);
}

// Grid: x = stream, y = query tile, z = group of output columns.
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(AttnParams p) {
  __shared__ float Qs[kTile * kLd], Ks[kTile * kLd], Ps[kTile * kLd];
  __shared__ float Vg[kTile * kGroup];
  const int64_t s = blockIdx.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t col0 = static_cast<int64_t>(blockIdx.z) * kGroup;
  const int r = threadIdx.x / kPerRow, l8 = threadIdx.x % kPerRow;
  const int64_t i = i0 + r;
  const int64_t qrows = min(static_cast<int64_t>(kTile), p.nq - i0);
  const float* qbase = p.q + (s * p.nq + i0) * p.d;

  tile::SoftmaxRow row = tile::softmax_row_init();
  float acc[kColsPerThread];
#pragma unroll
  for (int x = 0; x < kColsPerThread; ++x) acc[x] = 0.0f;

  const int64_t key_tiles = (p.nk + kTile - 1) / kTile;
  const int64_t kt_end = p.causal ? min(key_tiles, static_cast<int64_t>(blockIdx.y) + 1) : key_tiles;
  for (int64_t kt = 0; kt < kt_end; ++kt) {
    const int64_t j0 = kt * kTile;
    const int64_t krows = min(static_cast<int64_t>(kTile), p.nk - j0);
    float sc[kScoresPerThread];
    tile_dots(qbase, qrows, p.k + (s * p.nk + j0) * p.d, krows, p.d, Qs, Ks, sc);
    float tmax = -INFINITY;
#pragma unroll
    for (int a = 0; a < kScoresPerThread; ++a) {
      const int c = l8 + kPerRow * a;
      sc[a] = key_visible(p, i, j0 + c, c, krows) ? p.scale * sc[a] : -INFINITY;
      tmax = fmaxf(tmax, sc[a]);
    }
    const float alpha = tile::softmax_row_rescale(row, row_max8(tmax));
    float psum = 0.0f;
#pragma unroll
    for (int a = 0; a < kScoresPerThread; ++a) {
      const float pr = tile::softmax_row_prob(row, sc[a]);
      Ps[r * kLd + l8 + kPerRow * a] = pr;
      psum += pr;
    }
    row.l += row_sum8(psum);
#pragma unroll
    for (int x = 0; x < kColsPerThread; ++x) acc[x] *= alpha;
    load_group(Vg, p.v + (s * p.nk + j0) * p.dv_, krows, p.dv_, col0);
    __syncthreads();
    for (int c = 0; c < kTile; ++c) {
      const float pr = Ps[r * kLd + c];
#pragma unroll
      for (int x = 0; x < kColsPerThread; ++x) acc[x] += pr * Vg[c * kGroup + l8 + kPerRow * x];
    }
    __syncthreads();
  }
  if (i < p.nq) {
    const float inv = tile::softmax_row_inv(row);
#pragma unroll
    for (int x = 0; x < kColsPerThread; ++x) {
      const int64_t col = col0 + l8 + kPerRow * x;
      if (col < p.dv_) p.o[(s * p.nq + i) * p.dv_ + col] = acc[x] * inv;
    }
    if (blockIdx.z == 0 && l8 == 0) p.lse_out[s * p.nq + i] = tile::softmax_row_lse(row);
  }
}

// D[row] = d_out[row] . out[row], one warp per row.
__global__ void attention_row_dot_kernel(const float* d_out, const float* out, float* D, int64_t rows, int64_t w) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int warps = blockDim.x / cuda::kWarpSize;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * warps + threadIdx.x / cuda::kWarpSize; r < rows;
       r += static_cast<int64_t>(gridDim.x) * warps) {
    float acc = 0.0f;
    for (int64_t x = lane; x < w; x += cuda::kWarpSize) acc += d_out[r * w + x] * out[r * w + x];
    acc = cuda::warp_sum(acc);
    if (lane == 0) D[r] = acc;
  }
}

// Probabilities and score gradients of one (query tile, key tile) pair for
// tile row r = t / 8 (query i) and key columns t % 8 + 8 a. Contains barriers.
__device__ void tile_probs_and_grads(const AttnParams& p, int64_t s, int64_t i0, int64_t qrows, int64_t j0,
                                     int64_t krows, float* As, float* Bs, float (&pr)[kScoresPerThread],
                                     float (&ds)[kScoresPerThread]) {
  const int r = threadIdx.x / kPerRow, l8 = threadIdx.x % kPerRow;
  const int64_t i = i0 + r;
  float sc[kScoresPerThread], dp[kScoresPerThread];
  tile_dots(p.q + (s * p.nq + i0) * p.d, qrows, p.k + (s * p.nk + j0) * p.d, krows, p.d, As, Bs, sc);
  tile_dots(p.d_out + (s * p.nq + i0) * p.dv_, qrows, p.v + (s * p.nk + j0) * p.dv_, krows, p.dv_, As, Bs, dp);
  const bool row_ok = i < p.nq;
  const float lse_i = row_ok ? p.lse[s * p.nq + i] : 0.0f;
  const float D_i = row_ok ? p.D[s * p.nq + i] : 0.0f;
#pragma unroll
  for (int a = 0; a < kScoresPerThread; ++a) {
    const int c = l8 + kPerRow * a;
    const bool ok = row_ok && key_visible(p, i, j0 + c, c, krows);
    pr[a] = ok ? tile::softmax_prob_from_lse(p.scale * sc[a], lse_i) : 0.0f;
    ds[a] = ok ? tile::softmax_score_grad(pr[a], dp[a], D_i) : 0.0f;
  }
}

// dQ = scale * dS K. Grid: x = stream, y = query tile, z = group of d columns.
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(AttnParams p) {
  __shared__ float As[kTile * kLd], Bs[kTile * kLd], dSs[kTile * kLd];
  __shared__ float Kg[kTile * kGroup];
  const int64_t s = blockIdx.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t col0 = static_cast<int64_t>(blockIdx.z) * kGroup;
  const int r = threadIdx.x / kPerRow, l8 = threadIdx.x % kPerRow;
  const int64_t i = i0 + r;
  const int64_t qrows = min(static_cast<int64_t>(kTile), p.nq - i0);
  float acc[kColsPerThread];
#pragma unroll
  for (int x = 0; x < kColsPerThread; ++x) acc[x] = 0.0f;
  const int64_t key_tiles = (p.nk + kTile - 1) / kTile;
  const int64_t kt_end = p.causal ? min(key_tiles, static_cast<int64_t>(blockIdx.y) + 1) : key_tiles;
  for (int64_t kt = 0; kt < kt_end; ++kt) {
    const int64_t j0 = kt * kTile;
    const int64_t krows = min(static_cast<int64_t>(kTile), p.nk - j0);
    float pr[kScoresPerThread], ds[kScoresPerThread];
    tile_probs_and_grads(p, s, i0, qrows, j0, krows, As, Bs, pr, ds);
#pragma unroll
    for (int a = 0; a < kScoresPerThread; ++a) dSs[r * kLd + l8 + kPerRow * a] = ds[a];
    load_group(Kg, p.k + (s * p.nk + j0) * p.d, krows, p.d, col0);
    __syncthreads();
    for (int c = 0; c < kTile; ++c) {
      const float g = dSs[r * kLd + c];
#pragma unroll
      for (int x = 0; x < kColsPerThread; ++x) acc[x] += g * Kg[c * kGroup + l8 + kPerRow * x];
    }
    __syncthreads();
  }
  if (i < p.nq) {
#pragma unroll
    for (int x = 0; x < kColsPerThread; ++x) {
      const int64_t col = col0 + l8 + kPerRow * x;
      if (col < p.d) p.dq[(s * p.nq + i) * p.d + col] = p.scale * acc[x];
    }
  }
}

// dK = scale * dS^T Q, dV = P^T dO. Grid: x = stream, y = key tile, z = group
// of columns (of d for dK, of d_value for dV). Dynamic shared memory.
__global__ void __launch_bounds__(kThreads) attention_dkv_kernel(AttnParams p) {
  extern __shared__ float sm[];
  float* As = sm;
  float* Bs = As + kTile * kLd;
  float* Ps = Bs + kTile * kLd;
  float* dSs = Ps + kTile * kLd;
  float* Qg = dSs + kTile * kLd;
  float* dOg = Qg + kTile * kGroup;
  const int64_t s = blockIdx.x;
  const int64_t j0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t col0 = static_cast<int64_t>(blockIdx.z) * kGroup;
  const int r = threadIdx.x / kPerRow, l8 = threadIdx.x % kPerRow;  // r: query row, then key row
  const int64_t krows = min(static_cast<int64_t>(kTile), p.nk - j0);
  const bool want_k = col0 < p.d;
  const bool want_v = p.dv && col0 < p.dv_;
  float acc_k[kColsPerThread], acc_v[kColsPerThread];
#pragma unroll
  for (int x = 0; x < kColsPerThread; ++x) acc_k[x] = acc_v[x] = 0.0f;
  const int64_t query_tiles = (p.nq + kTile - 1) / kTile;
  for (int64_t qt = p.causal ? blockIdx.y : 0; qt < query_tiles; ++qt) {
    const int64_t i0 = qt * kTile;
    const int64_t qrows = min(static_cast<int64_t>(kTile), p.nq - i0);
    float pr[kScoresPerThread], ds[kScoresPerThread];
    tile_probs_and_grads(p, s, i0, qrows, j0, krows, As, Bs, pr, ds);
#pragma unroll
    for (int a = 0; a < kScoresPerThread; ++a) {
      Ps[r * kLd + l8 + kPerRow * a] = pr[a];
      dSs[r * kLd + l8 + kPerRow * a] = ds[a];
    }
    if (want_k) load_group(Qg, p.q + (s * p.nq + i0) * p.d, qrows, p.d, col0);
    if (want_v) load_group(dOg, p.d_out + (s * p.nq + i0) * p.dv_, qrows, p.dv_, col0);
    __syncthreads();
    for (int rr = 0; rr < kTile; ++rr) {
      const float pv = Ps[rr * kLd + r];
      const float g = dSs[rr * kLd + r];
#pragma unroll
      for (int x = 0; x < kColsPerThread; ++x) {
        if (want_k) acc_k[x] += g * Qg[rr * kGroup + l8 + kPerRow * x];
        if (want_v) acc_v[x] += pv * dOg[rr * kGroup + l8 + kPerRow * x];
      }
    }
    __syncthreads();
  }
  if (r < krows) {
    const int64_t j = j0 + r;
#pragma unroll
    for (int x = 0; x < kColsPerThread; ++x) {
      const int64_t col = col0 + l8 + kPerRow * x;
      if (want_k && col < p.d) p.dk[(s * p.nk + j) * p.d + col] = p.scale * acc_k[x];
      if (want_v && col < p.dv_) p.dv[(s * p.nk + j) * p.dv_ + col] = acc_v[x];
    }
  }
}

constexpr size_t kDkvSmem = static_cast<size_t>(4 * kTile * kLd + 2 * kTile * kGroup) * sizeof(float);

// One decoding step per stream, keys in tiles of 256 (one score per thread
// slot, computed by a warp per key), up to 4 x 256 output columns per thread.
constexpr int kDecodeThreads = 256;
constexpr int kDecodeCols = 4;

__global__ void __launch_bounds__(kDecodeThreads) attention_decode_kernel(const float* q, const float* k_cache,
                                                                          const float* v_cache, float scale,
                                                                          float* out, int64_t length,
                                                                          int64_t capacity, int64_t d) {
  __shared__ float sc[kDecodeThreads];
  __shared__ float red[32];
  const int64_t s = blockIdx.x;
  const int lane = threadIdx.x % cuda::kWarpSize, warp = threadIdx.x / cuda::kWarpSize;
  const int warps = blockDim.x / cuda::kWarpSize;
  const float* qs = q + s * d;
  const float* ks = k_cache + s * capacity * d;
  const float* vs = v_cache + s * capacity * d;
  tile::SoftmaxRow row = tile::softmax_row_init();
  float acc[kDecodeCols] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t j0 = 0; j0 < length; j0 += kDecodeThreads) {
    const int n = static_cast<int>(min(static_cast<int64_t>(kDecodeThreads), length - j0));
    for (int kk = warp; kk < n; kk += warps) {
      float dot = 0.0f;
      for (int64_t x = lane; x < d; x += cuda::kWarpSize) dot += qs[x] * ks[(j0 + kk) * d + x];
      dot = cuda::warp_sum(dot);
      if (lane == 0) sc[kk] = scale * dot;
    }
    __syncthreads();
    const float mine = threadIdx.x < n ? sc[threadIdx.x] : -INFINITY;
    const float alpha = tile::softmax_row_rescale(row, cuda::block_max(mine, red));
    const float pr = threadIdx.x < n ? tile::softmax_row_prob(row, mine) : 0.0f;
    row.l += cuda::block_sum(pr, red);
    __syncthreads();  // everyone has read its score before it is replaced by the probability
    if (threadIdx.x < n) sc[threadIdx.x] = pr;
    __syncthreads();
#pragma unroll
    for (int cx = 0; cx < kDecodeCols; ++cx) {
      const int64_t col = threadIdx.x + static_cast<int64_t>(cx) * kDecodeThreads;
      if (col < d) {
        float a = acc[cx] * alpha;
        for (int kk = 0; kk < n; ++kk) a += sc[kk] * vs[(j0 + kk) * d + col];
        acc[cx] = a;
      }
    }
    __syncthreads();
  }
  const float inv = tile::softmax_row_inv(row);
#pragma unroll
  for (int cx = 0; cx < kDecodeCols; ++cx) {
    const int64_t col = threadIdx.x + static_cast<int64_t>(cx) * kDecodeThreads;
    if (col < d) out[s * d + col] = acc[cx] * inv;
  }
}

void check_grid(int64_t streams, int64_t tiles, int64_t groups, const char* what) {
  if (streams > 0x7fffffff || tiles > 65535 || groups > 65535) {
    throw Error(FWP_ERR_UNSUPPORTED, std::string(what) + ": the problem is too large for one CUDA launch");
  }
}

}  // namespace

namespace {

void attention_forward(CudaBackend& be, int64_t streams, int64_t nq, int64_t nk, int64_t d, int64_t dv,
                       const float* q, const float* k, const float* v, float scale, bool causal, float* out,
                       float* lse, const char* what) {
  if (streams <= 0 || nq <= 0) return;
  const int64_t tiles = (nq + kTile - 1) / kTile;
  const int64_t groups = std::max<int64_t>(1, (dv + kGroup - 1) / kGroup);
  check_grid(streams, tiles, groups, what);
  AttnParams p{};
  p.q = q;
  p.k = k;
  p.v = v;
  p.o = out;
  p.lse_out = lse;
  p.nq = nq;
  p.nk = nk;
  p.d = d;
  p.dv_ = dv;
  p.scale = scale;
  p.causal = causal;
  const dim3 grid(static_cast<unsigned>(streams), static_cast<unsigned>(tiles), static_cast<unsigned>(groups));
  attention_forward_kernel<<<grid, kThreads, 0, be.stream()>>>(p);
  FWP_CUDA_CHECK_LAUNCH("attention_forward_kernel");
}

void attention_backward(CudaBackend& be, int64_t streams, int64_t nq, int64_t nk, int64_t d, int64_t dv,
                        const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* d_out, float scale, bool causal, float* dq, float* dk, float* dvv,
                        const char* what) {
  if (streams <= 0) return;
  if (nq <= 0 || nk <= 0) {
    // No queries: nothing flows back to keys and values; no keys: out was 0.
    if (nk > 0) {
      be.fill(dk, 0.0f, streams * nk * d);
      if (dvv) be.fill(dvv, 0.0f, streams * nk * dv);
    }
    if (nq > 0) be.fill(dq, 0.0f, streams * nq * d);
    return;
  }
  cuda::Scratch<float> D(be, streams * nq);
  attention_row_dot_kernel<<<cuda::grid_for(streams * nq, 8), 256, 0, be.stream()>>>(d_out, out, D.get(),
                                                                                      streams * nq, dv);
  FWP_CUDA_CHECK_LAUNCH("attention_row_dot_kernel");
  AttnParams p{};
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.lse = lse;
  p.d_out = d_out;
  p.D = D.get();
  p.dq = dq;
  p.dk = dk;
  p.dv = dvv;
  p.nq = nq;
  p.nk = nk;
  p.d = d;
  p.dv_ = dv;
  p.scale = scale;
  p.causal = causal;
  const int64_t q_tiles = (nq + kTile - 1) / kTile, k_tiles = (nk + kTile - 1) / kTile;
  const int64_t q_groups = std::max<int64_t>(1, (d + kGroup - 1) / kGroup);
  const int64_t kv_groups = std::max<int64_t>(1, (std::max(d, dvv ? dv : int64_t{0}) + kGroup - 1) / kGroup);
  check_grid(streams, std::max(q_tiles, k_tiles), std::max(q_groups, kv_groups), what);
  attention_dq_kernel<<<dim3(static_cast<unsigned>(streams), static_cast<unsigned>(q_tiles),
                             static_cast<unsigned>(q_groups)),
                        kThreads, 0, be.stream()>>>(p);
  FWP_CUDA_CHECK_LAUNCH("attention_dq_kernel");
  cuda::require_shared_memory(be, attention_dkv_kernel, kDkvSmem, "attention_dkv_kernel");
  attention_dkv_kernel<<<dim3(static_cast<unsigned>(streams), static_cast<unsigned>(k_tiles),
                              static_cast<unsigned>(kv_groups)),
                         kThreads, kDkvSmem, be.stream()>>>(p);
  FWP_CUDA_CHECK_LAUNCH("attention_dkv_kernel");
}

}  // namespace

void CudaBackend::softmax_attention_forward(int64_t streams, int64_t steps, int64_t d, const float* q,
                                            const float* k, const float* v, float scale, float* out, float* lse) {
  if (streams <= 0 || steps <= 0) return;
  cuda::DeviceGuard guard(device_);
  attention_forward(*this, streams, steps, steps, d, d, q, k, v, scale, true, out, lse, "softmax_attention_forward");
}

void CudaBackend::softmax_attention_backward(int64_t streams, int64_t steps, int64_t d, const float* q,
                                             const float* k, const float* v, const float* out, const float* lse,
                                             const float* d_out, float scale, float* dq, float* dk, float* dv) {
  if (streams <= 0 || steps <= 0) return;
  cuda::DeviceGuard guard(device_);
  attention_backward(*this, streams, steps, steps, d, d, q, k, v, out, lse, d_out, scale, true, dq, dk, dv,
                     "softmax_attention_backward");
}

void CudaBackend::softmax_attention_decode(int64_t streams, int64_t length, int64_t capacity, int64_t d,
                                           const float* q, const float* k_cache, const float* v_cache, float scale,
                                           float* out) {
  if (streams <= 0 || d <= 0) return;
  cuda::DeviceGuard guard(device_);
  if (length <= 0) {
    fill(out, 0.0f, streams * d);  // nothing to attend to: the empty sum
    return;
  }
  if (d > static_cast<int64_t>(kDecodeCols) * kDecodeThreads) {
    throw Error(FWP_ERR_UNSUPPORTED, "softmax_attention_decode: the CUDA kernel supports d <= " +
                                         std::to_string(kDecodeCols * kDecodeThreads) + " (got " +
                                         std::to_string(d) + ")");
  }
  if (streams > 0x7fffffff) throw Error(FWP_ERR_UNSUPPORTED, "softmax_attention_decode: too many streams");
  attention_decode_kernel<<<static_cast<unsigned>(streams), kDecodeThreads, 0, stream_>>>(q, k_cache, v_cache, scale,
                                                                                         out, length, capacity, d);
  FWP_CUDA_CHECK_LAUNCH("attention_decode_kernel");
}

void CudaBackend::cross_attention_forward(int64_t streams, int64_t queries, int64_t keys, int64_t d,
                                          int64_t d_value, const float* q, const float* k, const float* v,
                                          float scale, float* out, float* lse) {
  if (streams <= 0 || queries <= 0) return;
  cuda::DeviceGuard guard(device_);
  attention_forward(*this, streams, queries, keys, d, d_value, q, k, v, scale, false, out, lse,
                    "cross_attention_forward");
}

void CudaBackend::cross_attention_backward(int64_t streams, int64_t queries, int64_t keys, int64_t d,
                                           int64_t d_value, const float* q, const float* k, const float* v,
                                           const float* out, const float* lse, const float* d_out, float scale,
                                           float* dq, float* dk, float* dv) {
  if (streams <= 0) return;
  cuda::DeviceGuard guard(device_);
  attention_backward(*this, streams, queries, keys, d, d_value, q, k, v, out, lse, d_out, scale, false, dq, dk, dv,
                     "cross_attention_backward");
}

}  // namespace fwp
