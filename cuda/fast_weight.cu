// CudaBackend: the fast-weight recurrence (sum and delta rule), forward and
// backward, with the semantics of src/core/backend.h (see src/ops/fast_weight.cpp):
//
// (a) Fused recurrent kernels, one launch for all steps. A block owns one
//     stream and a tile of value rows (whole state if it fits); each thread
//     keeps rv x ck entries of W (and of dW in the backward) in registers, the
//     lk lanes of a row share its key axis and sum partial dot products with
//     warp shuffles (tile::fw_* in tile_math.cuh). Inputs of the next tc steps
//     are staged in shared memory with cp.async while the current ones are
//     processed. The forward saves W every `interval` steps (when given a
//     buffer); the backward walks the steps in reverse from state_out. With
//     the saved states it recomputes each interval's states forward from its
//     saved one with the forward's arithmetic (the CPU's scheme, in two
//     levels: tile::IntervalRecompute; each thread keeps its own entries of
//     about 2 sqrt(L) states in global scratch), so every W_{t-1} is the
//     forward's bit for bit; without them it rebuilds W_{t-1} = W_t - u_t k_t^T
//     over the whole sequence (float32 residue growing with T). No per-step
//     state is stored; the
//     per-step sums over value rows (dq, dk, dbeta) are reduced across warps
//     once per staged chunk (and across value tiles by a final kernel, in a
//     fixed order: results are deterministic).
// (b) The chunkwise (WY) algorithm of cuda/chunked_plan.h: cuBLAS batched
//     fp32 products for everything that is parallel over chunks, and one scan
//     kernel per direction for the state recursion of the delta rule (the
//     state tile lives in shared memory; products are done in 16 x 16 thread
//     tiles over shared-memory slabs).
// (c) Algorithm::Auto picks (a) for short sequences and small heads, (b)
//     otherwise (CudaBackend::choose_algorithm).
//
// All arithmetic is fp32 (no TF32 unless FWP_CUDA_ALLOW_TF32=1 is set for the
// cuBLAS products of (b)).
#include <cuda_pipeline.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "chunked_plan.h"
#include "core/limits.h"
#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "tile_math.cuh"

namespace fwp {

namespace {

using cuda::kFullMask;
using cuda::kWarpSize;

__device__ __forceinline__ void async_copy_float(float* dst_shared, const float* src_global) {
  __pipeline_memcpy_async(dst_shared, src_global, sizeof(float));
}

// ==============================================================================================
// (a) fused recurrent kernels
// ==============================================================================================

// Offsets (in floats) of the arrays of one staging buffer for tc steps.
struct StageLayout {
  int64_t k = 0, q = 0, u = 0, dout = 0, v = 0, beta = 0, size = 0;
};

__host__ __device__ inline StageLayout forward_stage_layout(int64_t tc, int64_t dk, int64_t rb, bool has_q,
                                                            bool delta) {
  StageLayout L;
  L.k = 0;
  L.q = L.k + tc * dk;
  L.v = L.q + (has_q ? tc * dk : 0);
  L.beta = L.v + tc * rb;
  L.size = L.beta + (delta ? tc : 0);
  return L;
}

__host__ __device__ inline StageLayout backward_stage_layout(int64_t tc, int64_t dk, int64_t rb, bool has_out,
                                                             bool delta) {
  StageLayout L;
  L.k = 0;
  L.q = L.k + tc * dk;
  L.u = L.q + (has_out ? tc * dk : 0);
  L.dout = L.u + tc * rb;
  L.v = L.dout + (has_out ? tc * rb : 0);
  L.beta = L.v + (delta ? tc * rb : 0);
  L.size = L.beta + (delta ? tc : 0);
  return L;
}

struct RecurrentForwardParams {
  const float* q;
  const float* k;
  const float* v;
  const float* beta;
  const float* state_in;
  float* out;
  float* u;
  float* state_out;
  float* states;  // nullable: [streams][n_states][dv][dk], W before steps 0, interval, ...
  int64_t steps, dk, dv, rows_per_block, interval, n_states;
  int lk, lv, tc;
  bool delta, has_q;
};

struct RecurrentBackwardParams {
  const float* q;
  const float* k;
  const float* v;
  const float* beta;
  const float* u;
  const float* state_out;
  const float* states;  // nullable: the forward's saved states
  int64_t interval, n_states;
  // With states: per block (stream, value tile) recompute.slots() slots of
  // blockDim x RV x CK floats, each thread's own (states recomputed in the interval).
  tile::IntervalRecompute recompute;
  float* recompute_slots;
  const float* d_out;
  const float* d_state_out;
  // Per value tile: [vtiles][streams][steps][d_key] (or the outputs themselves when vtiles == 1).
  float* dq;
  float* dk;
  float* dbeta;
  float* dv;
  float* d_state_in;
  int64_t streams, steps, dk_, dv_, rows_per_block;
  int lk, lv, tc, warps;
  bool delta, has_out;
};

// Copies the value-row slice [rows of this tile] of n steps of a [streams, steps, dv] array.
__device__ __forceinline__ void stage_rows(float* dst, const float* src, int64_t s, int64_t t0, int n,
                                           int64_t steps, int64_t dv, int64_t row_base, int64_t rb) {
  for (int64_t e = threadIdx.x; e < n * rb; e += blockDim.x) {
    const int64_t tt = e / rb;
    const int64_t row = row_base + (e - tt * rb);
    if (row < dv) {
      async_copy_float(dst + e, src + (s * steps + t0 + tt) * dv + row);
    } else {
      dst[e] = 0.0f;
    }
  }
}

__device__ __forceinline__ void stage_contiguous(float* dst, const float* src, int64_t count) {
  for (int64_t e = threadIdx.x; e < count; e += blockDim.x) async_copy_float(dst + e, src + e);
}

template <int RV, int CK>
__global__ void __launch_bounds__(256) recurrent_forward_kernel(RecurrentForwardParams p) {
  extern __shared__ float smem[];
  const int64_t s = blockIdx.x;
  const int64_t vt = blockIdx.y;
  const int64_t T = p.steps, dk = p.dk, dv = p.dv, rb = p.rows_per_block;
  const int64_t row_base = vt * rb;
  const StageLayout L = forward_stage_layout(p.tc, dk, rb, p.has_q, p.delta);
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int lk = lane % p.lk;
  const int lv = lane / p.lk;

  int64_t row[RV];
  int local_row[RV];
  int64_t col[CK];
#pragma unroll
  for (int r = 0; r < RV; ++r) {
    row[r] = tile::recurrent_row(rb, p.lv, RV, vt, warp, lv, r);
    local_row[r] = static_cast<int>(row[r] - row_base);
  }
#pragma unroll
  for (int c = 0; c < CK; ++c) col[c] = tile::recurrent_col(p.lk, lk, c);

  float w[RV][CK];
#pragma unroll
  for (int r = 0; r < RV; ++r) {
#pragma unroll
    for (int c = 0; c < CK; ++c) {
      w[r][c] = (p.state_in && row[r] < dv && col[c] < dk) ? p.state_in[(s * dv + row[r]) * dk + col[c]] : 0.0f;
    }
  }

  auto stage = [&](int64_t ch, float* buf) {
    const int64_t t0 = ch * p.tc;
    const int n = static_cast<int>(min(static_cast<int64_t>(p.tc), T - t0));
    stage_contiguous(buf + L.k, p.k + (s * T + t0) * dk, n * dk);
    if (p.has_q) stage_contiguous(buf + L.q, p.q + (s * T + t0) * dk, n * dk);
    stage_rows(buf + L.v, p.v, s, t0, n, T, dv, row_base, rb);
    if (p.delta) stage_contiguous(buf + L.beta, p.beta + s * T + t0, n);
  };

  const int64_t chunks = (T + p.tc - 1) / p.tc;
  stage(0, smem);
  __pipeline_commit();
  for (int64_t ch = 0; ch < chunks; ++ch) {
    if (ch + 1 < chunks) {
      stage(ch + 1, smem + ((ch + 1) & 1) * L.size);
      __pipeline_commit();
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    const float* buf = smem + (ch & 1) * L.size;
    const int64_t t0 = ch * p.tc;
    const int n = static_cast<int>(min(static_cast<int64_t>(p.tc), T - t0));
    for (int tt = 0; tt < n; ++tt) {
      const int64_t t = t0 + tt;
      if (p.states && t % p.interval == 0) {
        float* dst = p.states + (s * p.n_states + t / p.interval) * dv * dk;
#pragma unroll
        for (int r = 0; r < RV; ++r) {
#pragma unroll
          for (int c = 0; c < CK; ++c) {
            if (row[r] < dv && col[c] < dk) dst[row[r] * dk + col[c]] = w[r][c];
          }
        }
      }
      float kk[CK], qq[CK];
#pragma unroll
      for (int c = 0; c < CK; ++c) {
        kk[c] = col[c] < dk ? buf[L.k + tt * dk + col[c]] : 0.0f;
        qq[c] = (p.has_q && col[c] < dk) ? buf[L.q + tt * dk + col[c]] : 0.0f;
      }
      float wk[RV], wq[RV], kq;
      tile::fw_forward_partials<RV, CK>(w, kk, qq, p.has_q, wk, wq, kq);
      for (int o = 1; o < p.lk; o <<= 1) {
#pragma unroll
        for (int r = 0; r < RV; ++r) {
          wk[r] += __shfl_xor_sync(kFullMask, wk[r], o);
          wq[r] += __shfl_xor_sync(kFullMask, wq[r], o);
        }
        kq += __shfl_xor_sync(kFullMask, kq, o);
      }
      const float b = p.delta ? buf[L.beta + tt] : 1.0f;
      float uu[RV];
#pragma unroll
      for (int r = 0; r < RV; ++r) uu[r] = tile::fw_update_value(p.delta, buf[L.v + tt * rb + local_row[r]], b, wk[r]);
      tile::fw_rank1_update<RV, CK>(w, uu, kk);
      if (lk == 0) {
        const int64_t at = (s * T + t0 + tt) * dv;
#pragma unroll
        for (int r = 0; r < RV; ++r) {
          if (row[r] < dv) {
            p.u[at + row[r]] = uu[r];
            if (p.has_q) p.out[at + row[r]] = tile::fw_output(wq[r], uu[r], kq);
          }
        }
      }
    }
    __syncthreads();  // the buffer is refilled by the next iteration's prefetch
  }

#pragma unroll
  for (int r = 0; r < RV; ++r) {
#pragma unroll
    for (int c = 0; c < CK; ++c) {
      if (row[r] < dv && col[c] < dk) p.state_out[(s * dv + row[r]) * dk + col[c]] = w[r][c];
    }
  }
}

template <int RV, int CK>
__global__ void __launch_bounds__(256) recurrent_backward_kernel(RecurrentBackwardParams p) {
  extern __shared__ float smem[];
  const int64_t s = blockIdx.x;
  const int64_t vt = blockIdx.y;
  const int64_t S = p.streams, T = p.steps, dk = p.dk_, dv = p.dv_, rb = p.rows_per_block;
  const int64_t row_base = vt * rb;
  const StageLayout L = backward_stage_layout(p.tc, dk, rb, p.has_out, p.delta);
  // Per staged step and warp: the warp's sums of dq_t, dk_t and dbeta_t.
  const int64_t red_stride = 2 * dk + 1;
  float* red = smem + 2 * L.size;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int lk = lane % p.lk;
  const int lv = lane / p.lk;
  float* dq_dst = p.dq ? p.dq + vt * S * T * dk : nullptr;
  float* dk_dst = p.dk + vt * S * T * dk;
  float* db_dst = p.dbeta ? p.dbeta + vt * S * T : nullptr;

  int64_t row[RV];
  int local_row[RV];
  int64_t col[CK];
#pragma unroll
  for (int r = 0; r < RV; ++r) {
    row[r] = tile::recurrent_row(rb, p.lv, RV, vt, warp, lv, r);
    local_row[r] = static_cast<int>(row[r] - row_base);
  }
#pragma unroll
  for (int c = 0; c < CK; ++c) col[c] = tile::recurrent_col(p.lk, lk, c);

  float w[RV][CK], dw[RV][CK];
#pragma unroll
  for (int r = 0; r < RV; ++r) {
#pragma unroll
    for (int c = 0; c < CK; ++c) {
      const bool inside = row[r] < dv && col[c] < dk;
      const int64_t at = (s * dv + row[r]) * dk + col[c];
      w[r][c] = inside ? p.state_out[at] : 0.0f;
      dw[r][c] = (inside && p.d_state_out) ? p.d_state_out[at] : 0.0f;
    }
  }

  auto stage = [&](int64_t ch, float* buf) {
    const int64_t t0 = ch * p.tc;
    const int n = static_cast<int>(min(static_cast<int64_t>(p.tc), T - t0));
    stage_contiguous(buf + L.k, p.k + (s * T + t0) * dk, n * dk);
    if (p.has_out) {
      stage_contiguous(buf + L.q, p.q + (s * T + t0) * dk, n * dk);
      stage_rows(buf + L.dout, p.d_out, s, t0, n, T, dv, row_base, rb);
    }
    stage_rows(buf + L.u, p.u, s, t0, n, T, dv, row_base, rb);
    if (p.delta) {
      stage_rows(buf + L.v, p.v, s, t0, n, T, dv, row_base, rb);
      stage_contiguous(buf + L.beta, p.beta + s * T + t0, n);
    }
  };

  // The saved-state recompute: this thread's slots (its own entries only, so
  // no synchronisation) and one forward step of its entries, with the
  // forward's arithmetic (fw_rank1_update with the u the forward wrote), so
  // every recomputed state is the forward's bit for bit.
  float* my_slots = p.recompute_slots
                        ? p.recompute_slots + (static_cast<int64_t>(blockIdx.x) * gridDim.y + blockIdx.y) *
                                                  p.recompute.slots() * RV * CK * blockDim.x
                        : nullptr;
  auto store_slot = [&](int64_t slot, const float (&x)[RV][CK]) {
#pragma unroll
    for (int r = 0; r < RV; ++r) {
#pragma unroll
      for (int c = 0; c < CK; ++c) my_slots[((slot * RV + r) * CK + c) * blockDim.x + threadIdx.x] = x[r][c];
    }
  };
  auto load_slot = [&](int64_t slot, float (&x)[RV][CK]) {
#pragma unroll
    for (int r = 0; r < RV; ++r) {
#pragma unroll
      for (int c = 0; c < CK; ++c) x[r][c] = my_slots[((slot * RV + r) * CK + c) * blockDim.x + threadIdx.x];
    }
  };
  auto advance = [&](int64_t tp, float (&x)[RV][CK]) {
    float ku[CK], uv[RV];
#pragma unroll
    for (int c = 0; c < CK; ++c) ku[c] = col[c] < dk ? p.k[(s * T + tp) * dk + col[c]] : 0.0f;
#pragma unroll
    for (int r = 0; r < RV; ++r) uv[r] = row[r] < dv ? p.u[(s * T + tp) * dv + row[r]] : 0.0f;
    tile::fw_rank1_update<RV, CK>(x, uv, ku);
  };

  const int64_t chunks = (T + p.tc - 1) / p.tc;
  stage(chunks - 1, smem + ((chunks - 1) & 1) * L.size);
  __pipeline_commit();
  for (int64_t ch = chunks - 1; ch >= 0; --ch) {
    if (ch > 0) {
      stage(ch - 1, smem + ((ch - 1) & 1) * L.size);
      __pipeline_commit();
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    const float* buf = smem + (ch & 1) * L.size;
    const int64_t t0 = ch * p.tc;
    const int n = static_cast<int>(min(static_cast<int64_t>(p.tc), T - t0));
    for (int tt = n - 1; tt >= 0; --tt) {
      const int64_t t = t0 + tt;
      float kk[CK], qq[CK], dout[RV], uu[RV], vv[RV];
#pragma unroll
      for (int c = 0; c < CK; ++c) {
        kk[c] = col[c] < dk ? buf[L.k + tt * dk + col[c]] : 0.0f;
        qq[c] = (p.has_out && col[c] < dk) ? buf[L.q + tt * dk + col[c]] : 0.0f;
      }
#pragma unroll
      for (int r = 0; r < RV; ++r) {
        uu[r] = buf[L.u + tt * rb + local_row[r]];
        dout[r] = p.has_out ? buf[L.dout + tt * rb + local_row[r]] : 0.0f;
        vv[r] = p.delta ? buf[L.v + tt * rb + local_row[r]] : 0.0f;
      }
      const float b = p.delta ? buf[L.beta + tt] : 1.0f;
      float pq[CK], pk[CK], du[RV], a[RV], dvv[RV], db;
      if (p.states) {
        // w = W_t (exact: the previous step's W_{t-1}, or state_out); then
        // w = the exact W_{t-1} from this thread's recompute slots.
        tile::fw_backward_out_partials<RV, CK>(w, dw, qq, dout, p.has_out, pq);
        tile::recompute_state_before(
            p.recompute, t, T,
            [&](int64_t saved) {
              const float* src = p.states + (s * p.n_states + saved) * dv * dk;
#pragma unroll
              for (int r = 0; r < RV; ++r) {
#pragma unroll
                for (int c = 0; c < CK; ++c) {
                  w[r][c] = (row[r] < dv && col[c] < dk) ? src[row[r] * dk + col[c]] : 0.0f;
                }
              }
            },
            [&](int64_t slot) { store_slot(slot, w); }, [&](int64_t slot) { load_slot(slot, w); },
            [&](int64_t tp) { advance(tp, w); });
        tile::fw_backward_key_partials<RV, CK>(w, dw, kk, p.delta, du, a);
      } else {
        tile::fw_backward_partials<RV, CK>(w, dw, kk, qq, dout, uu, p.has_out, p.delta, pq, du, a);
      }
      for (int o = 1; o < p.lk; o <<= 1) {
#pragma unroll
        for (int r = 0; r < RV; ++r) {
          du[r] += __shfl_xor_sync(kFullMask, du[r], o);
          a[r] += __shfl_xor_sync(kFullMask, a[r], o);
        }
      }
      tile::fw_backward_finish<RV, CK>(w, dw, kk, uu, vv, b, du, a, p.delta, dvv, pk, db);
      if (lk == 0) {
        const int64_t at = (s * T + t0 + tt) * dv;
#pragma unroll
        for (int r = 0; r < RV; ++r) {
          if (row[r] < dv) p.dv[at + row[r]] = dvv[r];
        }
      }
      // Sum this warp's rows: lanes with the same lk hold the same columns.
      for (int o = p.lk; o < kWarpSize; o <<= 1) {
#pragma unroll
        for (int c = 0; c < CK; ++c) {
          if (p.has_out) pq[c] += __shfl_xor_sync(kFullMask, pq[c], o);
          pk[c] += __shfl_xor_sync(kFullMask, pk[c], o);
        }
        db += __shfl_xor_sync(kFullMask, db, o);
      }
      if (lv == 0) {
        float* slot = red + (static_cast<int64_t>(tt) * p.warps + warp) * red_stride;
#pragma unroll
        for (int c = 0; c < CK; ++c) {
          if (col[c] < dk) {
            if (p.has_out) slot[col[c]] = pq[c];
            slot[dk + col[c]] = pk[c];
          }
        }
        if (lane == 0) slot[2 * dk] = db;
      }
    }
    __syncthreads();
    // Sum the warps in a fixed order and write this chunk's dq, dk, dbeta.
    for (int64_t e = threadIdx.x; e < n * dk; e += blockDim.x) {
      const int64_t tt = e / dk, j = e - tt * dk;
      float aq = 0.0f, ak = 0.0f;
      for (int wi = 0; wi < p.warps; ++wi) {
        const float* slot = red + (tt * p.warps + wi) * red_stride;
        if (p.has_out) aq += slot[j];
        ak += slot[dk + j];
      }
      const int64_t at = (s * T + t0 + tt) * dk + j;
      if (p.has_out) dq_dst[at] = aq;
      dk_dst[at] = ak;
    }
    if (p.delta) {
      for (int64_t tt = threadIdx.x; tt < n; tt += blockDim.x) {
        float ab = 0.0f;
        for (int wi = 0; wi < p.warps; ++wi) ab += red[(tt * p.warps + wi) * red_stride + 2 * dk];
        db_dst[s * T + t0 + tt] = ab;
      }
    }
    // No barrier needed here: the next chunk writes `red` only after the
    // barrier at the top of the loop, which every thread reaches after its flush.
  }

  if (p.d_state_in) {
#pragma unroll
    for (int r = 0; r < RV; ++r) {
#pragma unroll
      for (int c = 0; c < CK; ++c) {
        if (row[r] < dv && col[c] < dk) p.d_state_in[(s * dv + row[r]) * dk + col[c]] = dw[r][c];
      }
    }
  }
}

// dst[i] = sum over value tiles of part[vt][i], in tile order.
__global__ void sum_value_tiles_kernel(const float* part, float* dst, int64_t n, int64_t vtiles) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    float acc = 0.0f;
    for (int64_t t = 0; t < vtiles; ++t) acc += part[t * n + i];
    dst[i] = acc;
  }
}

// Steps per staging buffer such that everything fits in `budget` bytes.
int64_t steps_per_stage(int64_t floats_per_step, int64_t budget_bytes) {
  const int64_t tc = budget_bytes / (4 * std::max<int64_t>(floats_per_step, 1));
  return std::max<int64_t>(1, std::min<int64_t>(tc, 64));
}

template <typename Kernel, typename Params>
void launch_recurrent(CudaBackend& be, Kernel kernel, const tile::RecurrentConfig& cfg, int64_t streams,
                      size_t smem, const Params& params, const char* name) {
  cuda::require_shared_memory(be, kernel, smem, name);
  const dim3 grid(static_cast<unsigned>(streams), static_cast<unsigned>(cfg.vtiles));
  kernel<<<grid, cfg.warps * kWarpSize, smem, be.stream()>>>(params);
  FWP_CUDA_CHECK_LAUNCH(name);
}

// Calls f.template run<RV, CK>() for the kernel instance of cfg.
template <typename F>
void dispatch_recurrent(const tile::RecurrentConfig& cfg, F&& f) {
#define FWP_RECURRENT_CASE(CK_, RV_)                \
  if (cfg.ck == CK_ && cfg.rv == RV_) {             \
    f.template run<RV_, CK_>();                     \
    return;                                         \
  }
  FWP_RECURRENT_CASE(2, 1) FWP_RECURRENT_CASE(2, 2) FWP_RECURRENT_CASE(2, 4)
  FWP_RECURRENT_CASE(4, 1) FWP_RECURRENT_CASE(4, 2) FWP_RECURRENT_CASE(4, 4)
  FWP_RECURRENT_CASE(8, 1) FWP_RECURRENT_CASE(8, 2) FWP_RECURRENT_CASE(8, 4)
  FWP_RECURRENT_CASE(16, 1) FWP_RECURRENT_CASE(16, 2)
  FWP_RECURRENT_CASE(32, 1)
#undef FWP_RECURRENT_CASE
  throw Error(FWP_ERR_INTERNAL, "fast_weight: no recurrent kernel for ck=" + std::to_string(cfg.ck) +
                                    " rv=" + std::to_string(cfg.rv));
}

struct ForwardLaunch {
  CudaBackend& be;
  const tile::RecurrentConfig& cfg;
  int64_t streams;
  size_t smem;
  const RecurrentForwardParams& params;
  template <int RV, int CK>
  void run() const {
    launch_recurrent(be, recurrent_forward_kernel<RV, CK>, cfg, streams, smem, params, "recurrent_forward_kernel");
  }
};

struct BackwardLaunch {
  CudaBackend& be;
  const tile::RecurrentConfig& cfg;
  int64_t streams;
  size_t smem;
  const RecurrentBackwardParams& params;
  template <int RV, int CK>
  void run() const {
    launch_recurrent(be, recurrent_backward_kernel<RV, CK>, cfg, streams, smem, params, "recurrent_backward_kernel");
  }
};

tile::RecurrentConfig checked_recurrent_config(const FastWeightShape& shape) {
  const tile::RecurrentConfig cfg = tile::recurrent_config(shape.d_key, shape.d_value);
  if (!cfg.supported()) {
    throw Error(FWP_ERR_UNSUPPORTED, "fast_weight: the CUDA recurrent kernel supports d_key <= 1024 (got " +
                                         std::to_string(shape.d_key) + "); use Algorithm::Chunked or Auto");
  }
  if (shape.streams > 0x7fffffff) {
    throw Error(FWP_ERR_UNSUPPORTED, "fast_weight: too many streams for one CUDA launch");
  }
  return cfg;
}

// Shared-memory budgets of the recurrent kernels (bytes; the backward asks for
// more than the default 48 KiB when it helps).
constexpr int64_t kRecurrentForwardBudget = 40 * 1024;
constexpr int64_t kRecurrentBackwardBudget = 96 * 1024;

void recurrent_forward(CudaBackend& be, bool delta, const FastWeightShape& shape, const float* q, const float* k,
                       const float* v, const float* beta, const float* state_in, float* out, float* u,
                       float* state_out, float* states, int64_t interval) {
  const tile::RecurrentConfig cfg = checked_recurrent_config(shape);
  RecurrentForwardParams p{};
  p.q = q;
  p.k = k;
  p.v = v;
  p.beta = beta;
  p.state_in = state_in;
  p.out = out;
  p.u = u;
  p.state_out = state_out;
  p.states = states;
  p.interval = interval;
  p.n_states = (shape.steps + interval - 1) / interval;
  p.steps = shape.steps;
  p.dk = shape.d_key;
  p.dv = shape.d_value;
  p.rows_per_block = cfg.rows_per_block;
  p.lk = cfg.lk;
  p.lv = cfg.lv;
  p.delta = delta;
  p.has_q = q != nullptr;
  const int64_t per_step = forward_stage_layout(1, p.dk, p.rows_per_block, p.has_q, delta).size;
  p.tc = static_cast<int>(steps_per_stage(2 * per_step, kRecurrentForwardBudget));
  const size_t smem = static_cast<size_t>(2 * forward_stage_layout(p.tc, p.dk, p.rows_per_block, p.has_q, delta).size) *
                      sizeof(float);
  dispatch_recurrent(cfg, ForwardLaunch{be, cfg, shape.streams, smem, p});
}

void recurrent_backward(CudaBackend& be, bool delta, const FastWeightShape& shape, const float* q, const float* k,
                        const float* v, const float* beta, const float* u, const float* state_out,
                        const float* d_out, const float* d_state_out, float* dq, float* dk, float* dv, float* dbeta,
                        float* d_state_in, const float* states, int64_t interval) {
  const tile::RecurrentConfig cfg = checked_recurrent_config(shape);
  const int64_t S = shape.streams, T = shape.steps, dkey = shape.d_key;
  RecurrentBackwardParams p{};
  p.q = q;
  p.k = k;
  p.v = v;
  p.beta = beta;
  p.u = u;
  p.state_out = state_out;
  p.d_out = d_out;
  p.d_state_out = d_state_out;
  p.states = states;
  p.interval = interval;
  p.n_states = (shape.steps + interval - 1) / interval;
  p.dv = dv;
  p.d_state_in = d_state_in;
  p.streams = S;
  p.steps = T;
  p.dk_ = dkey;
  p.dv_ = shape.d_value;
  p.rows_per_block = cfg.rows_per_block;
  p.lk = cfg.lk;
  p.lv = cfg.lv;
  p.warps = cfg.warps;
  p.delta = delta;
  p.has_out = q != nullptr && d_out != nullptr;

  // Several value tiles: each writes its partial sums, added up afterwards.
  cuda::Scratch<float> part_q, part_k, part_b;
  if (cfg.vtiles > 1) {
    if (p.has_out) part_q = cuda::Scratch<float>(be, cfg.vtiles * S * T * dkey);
    part_k = cuda::Scratch<float>(be, cfg.vtiles * S * T * dkey);
    if (delta) part_b = cuda::Scratch<float>(be, cfg.vtiles * S * T);
    p.dq = part_q.get();
    p.dk = part_k.get();
    p.dbeta = part_b.get();
  } else {
    p.dq = p.has_out ? dq : nullptr;
    p.dk = dk;
    p.dbeta = delta ? dbeta : nullptr;
  }

  // The saved-state recompute's slots: per block, slots x (threads x RV x CK)
  // floats, about 2 sqrt(L) / L of the saved states' memory per step of T
  // (e.g. 16 tile states per stream at L = 64).
  cuda::Scratch<float> recompute_slots;
  if (states) {
    p.recompute = tile::interval_recompute(interval);
    recompute_slots = cuda::Scratch<float>(be, S * cfg.vtiles * p.recompute.slots() * int64_t(cfg.warps) *
                                                   kWarpSize * cfg.rv * cfg.ck);
    p.recompute_slots = recompute_slots.get();
  }

  const int64_t per_step = 2 * backward_stage_layout(1, dkey, p.rows_per_block, p.has_out, delta).size +
                           cfg.warps * (2 * dkey + 1);
  p.tc = static_cast<int>(steps_per_stage(per_step, std::min<int64_t>(kRecurrentBackwardBudget,
                                                                         be.max_shared_memory_per_block())));
  const size_t smem =
      static_cast<size_t>(2 * backward_stage_layout(p.tc, dkey, p.rows_per_block, p.has_out, delta).size +
                          int64_t(p.tc) * cfg.warps * (2 * dkey + 1)) *
      sizeof(float);
  dispatch_recurrent(cfg, BackwardLaunch{be, cfg, S, smem, p});

  if (cfg.vtiles > 1) {
    const int64_t n = S * T * dkey;
    if (p.has_out) {
      sum_value_tiles_kernel<<<cuda::grid_for(n, 256), 256, 0, be.stream()>>>(part_q.get(), dq, n, cfg.vtiles);
      FWP_CUDA_CHECK_LAUNCH("sum_value_tiles_kernel");
    }
    sum_value_tiles_kernel<<<cuda::grid_for(n, 256), 256, 0, be.stream()>>>(part_k.get(), dk, n, cfg.vtiles);
    FWP_CUDA_CHECK_LAUNCH("sum_value_tiles_kernel");
    if (delta) {
      sum_value_tiles_kernel<<<cuda::grid_for(S * T, 256), 256, 0, be.stream()>>>(part_b.get(), dbeta, S * T,
                                                                                   cfg.vtiles);
      FWP_CUDA_CHECK_LAUNCH("sum_value_tiles_kernel");
    }
  }
  if (q && !p.has_out) be.fill(dq, 0.0f, S * T * dkey);
}

// ==============================================================================================
// (b) chunkwise kernels
// ==============================================================================================

__global__ void pad_steps_kernel(const float* src, float* dst, int64_t S, int64_t T, int64_t Tp, int64_t w) {
  const int64_t n = S * Tp * w;
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    const int64_t j = i % w;
    const int64_t t = (i / w) % Tp;
    const int64_t s = i / (w * Tp);
    dst[i] = t < T ? src[(s * T + t) * w + j] : 0.0f;
  }
}

__global__ void unpad_steps_kernel(const float* src, float* dst, int64_t S, int64_t T, int64_t Tp, int64_t w) {
  const int64_t n = S * T * w;
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    const int64_t j = i % w;
    const int64_t t = (i / w) % T;
    const int64_t s = i / (w * T);
    dst[i] = src[(s * Tp + t) * w + j];
  }
}

// One block per group, one thread per column of N (tile::wy_inverse_column),
// G and N in shared memory.
__global__ void wy_inverse_kernel(const float* G, const float* beta, float* N, int64_t C, bool scale_by_beta) {
  extern __shared__ float sm[];
  const int64_t ld = C + 1;  // odd stride: the column accesses do not collide in banks
  float* Gs = sm;
  float* Ns = Gs + C * ld;
  float* bs = Ns + C * ld;
  const int64_t g = blockIdx.x;
  for (int64_t e = threadIdx.x; e < C * C; e += blockDim.x) {
    const int64_t i = e / C, j = e - i * C;
    Gs[i * ld + j] = G[g * C * C + e];
  }
  for (int64_t e = threadIdx.x; e < C; e += blockDim.x) bs[e] = beta[g * C + e];
  __syncthreads();
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
    tile::wy_inverse_column(Gs, ld, bs, C, j, scale_by_beta, Ns, ld);
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < C * C; e += blockDim.x) {
    const int64_t i = e / C, j = e - i * C;
    N[g * C * C + e] = Ns[i * ld + j];
  }
}

__global__ void mask_causal_kernel(float* P, int64_t groups, int64_t C, bool inclusive) {
  const int64_t n = groups * C * C;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) {
    const int64_t j = e % C;
    const int64_t i = (e / C) % C;
    P[e] = tile::causal_mask(P[e], i, j, inclusive);
  }
}

__global__ void scale_rows_kernel(const float* x, const float* beta, float* y, int64_t rows, int64_t w) {
  const int64_t n = rows * w;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) y[e] = beta[e / w] * x[e];
}

__global__ void state_scan_kernel(float* H, int64_t S, int64_t n, int64_t E, const float* init, float* final_out,
                                  bool reverse, bool inclusive, float sign) {
  for (int64_t idx = cuda::global_thread_index(); idx < S * E; idx += cuda::global_thread_count()) {
    const int64_t s = idx / E, e = idx - s * E;
    float acc = init ? init[idx] : 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = reverse ? n - 1 - i : i;
      float* h = H + (s * n + c) * E + e;
      const float x = *h;
      if (inclusive) {
        acc += sign * x;
        *h = acc;
      } else {
        *h = acc;
        acc += sign * x;
      }
    }
    if (final_out) final_out[idx] = acc;
  }
}

// One block per group: dbeta (tile::wy_beta_grad), then G_S <- S (tile::wy_key_sym).
__global__ void delta_beta_grad_kernel(const float* dX, const float* R, const float* F, float* G_S,
                                       const float* beta, float* dbeta, int64_t C, int64_t dv) {
  const int64_t g = blockIdx.x;
  const float* Fg = F + g * C * C;
  float* Gg = G_S + g * C * C;
  for (int64_t t = threadIdx.x; t < C; t += blockDim.x) {
    const float* x = dX + (g * C + t) * dv;
    const float* r = R + (g * C + t) * dv;
    float row_dot = 0.0f;
    for (int64_t i = 0; i < dv; ++i) row_dot += x[i] * r[i];
    dbeta[g * C + t] = tile::wy_beta_grad(Fg + t * C, Gg + t * C, t, row_dot);
  }
  __syncthreads();  // every read of G is done before it is overwritten
  for (int64_t e = threadIdx.x; e < C * C; e += blockDim.x) {
    const int64_t t = e / C, s = e - t * C;
    Gg[e] = tile::wy_key_sym(Fg, C, beta + g * C, t, s);
  }
}

// ---- the sequential scans of the delta rule ------------------------------------------------------
// A block owns one stream and rb = 16 NB value rows of its state, kept in
// shared memory with a zero-padded row stride ldw. 256 threads form a 16 x 16
// grid (tx, ty); products over a chunk use register tiles of MA x NB (chunk
// rows ty + 16 a, state rows tx + 16 b) or NB x (slab/16) (state rows
// ty + 16 a, key columns tx + 16 b), fed from shared-memory slabs.

constexpr int kScanThreads = 256;
constexpr int kSlabK = 32;  // key columns per slab of a product that reduces over d_key
constexpr int kSlabN = 64;  // key columns per slab of a state update

__host__ __device__ inline int64_t scan_ldw(int64_t dk) { return (dk + kSlabK - 1) / kSlabK * kSlabK + 1; }

__device__ __forceinline__ void load_slab(float* dst, int ld_dst, const float* src, int64_t ld_src, int rows,
                                          int64_t col0, int width, int64_t ncols) {
  for (int e = threadIdx.x; e < rows * width; e += blockDim.x) {
    const int r = e / width, c = e - r * width;
    const int64_t j = col0 + c;
    dst[r * ld_dst + c] = j < ncols ? src[r * ld_src + j] : 0.0f;
  }
}

// acc[a][b] = sum_j X[t][j] S[i][j] with t = ty + 16 a < C (X: C global rows of
// stride dk) and i = tx + 16 b (S: shared state rows of stride ldw).
template <int MA, int NB>
__device__ void chunk_times_state(const float* X, int C, int64_t dk, const float* Ss, int64_t ldw, float* stage,
                                  float (&acc)[MA][NB]) {
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
  for (int a = 0; a < MA; ++a) {
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[a][b] = 0.0f;
  }
  constexpr int ld = kSlabK + 1;
  for (int64_t j0 = 0; j0 < dk; j0 += kSlabK) {
    load_slab(stage, ld, X, dk, C, j0, kSlabK, dk);
    __syncthreads();
#pragma unroll 4
    for (int jj = 0; jj < kSlabK; ++jj) {
      float xa[MA], sb[NB];
#pragma unroll
      for (int a = 0; a < MA; ++a) xa[a] = ty + 16 * a < C ? stage[(ty + 16 * a) * ld + jj] : 0.0f;
#pragma unroll
      for (int b = 0; b < NB; ++b) sb[b] = Ss[(tx + 16 * b) * ldw + j0 + jj];
#pragma unroll
      for (int a = 0; a < MA; ++a) {
#pragma unroll
        for (int b = 0; b < NB; ++b) acc[a][b] += xa[a] * sb[b];
      }
    }
    __syncthreads();
  }
}

// S[i][j] += alpha * sum_t (A1[t][i] X1[t][j] + A2[t][i] X2[t][j]) for the rb
// state rows i and all key columns j < dk. A1, A2: [C][rb] in shared memory
// (A2 may be null); X1, X2: C global rows of stride dk.
template <int NB>
__device__ void state_update(float* Ss, int64_t ldw, int64_t dk, int C, const float* A1, const float* X1,
                             const float* A2, const float* X2, float alpha, float* stage) {
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  constexpr int rb = 16 * NB;
  // Two operands share the stage buffer (C x 64 floats): 32 columns each.
  const int width = A2 ? kSlabN / 2 : kSlabN;
  for (int64_t j0 = 0; j0 < dk; j0 += width) {
    load_slab(stage, width, X1, dk, C, j0, width, dk);
    if (A2) load_slab(stage + C * width, width, X2, dk, C, j0, width, dk);
    __syncthreads();
    float acc[NB][kSlabN / 16];
#pragma unroll
    for (int a = 0; a < NB; ++a) {
#pragma unroll
      for (int b = 0; b < kSlabN / 16; ++b) acc[a][b] = 0.0f;
    }
    const int nb = width / 16;
    for (int t = 0; t < C; ++t) {
      float a1[NB], a2[NB];
#pragma unroll
      for (int a = 0; a < NB; ++a) {
        a1[a] = A1[t * rb + ty + 16 * a];
        a2[a] = A2 ? A2[t * rb + ty + 16 * a] : 0.0f;
      }
#pragma unroll
      for (int b = 0; b < kSlabN / 16; ++b) {
        if (b < nb) {
          const float x1 = stage[t * width + tx + 16 * b];
          const float x2 = A2 ? stage[C * width + t * width + tx + 16 * b] : 0.0f;
#pragma unroll
          for (int a = 0; a < NB; ++a) acc[a][b] += a1[a] * x1 + a2[a] * x2;
        }
      }
    }
#pragma unroll
    for (int a = 0; a < NB; ++a) {
#pragma unroll
      for (int b = 0; b < kSlabN / 16; ++b) {
        const int64_t j = j0 + tx + 16 * b;
        if (b < nb && j < dk) Ss[(ty + 16 * a) * ldw + j] += alpha * acc[a][b];
      }
    }
    __syncthreads();
  }
}

struct ScanParams {
  int64_t chunks, C, dk, dv, Tp, ldw;
  // forward
  const float* K;
  const float* Wk;
  const float* Uv;
  const float* state_in;
  float* U;
  float* states;
  float* state_out;
  // backward
  const float* Q;
  const float* Uin;
  const float* dO;
  const float* N;
  const float* beta;
  float* dUX;
  const float* final_state;
  const float* d_final_state;
  float* Wst;
  float* dWst;
  float* d_state_in;
};

__device__ __forceinline__ void load_state_tile(float* Ss, int64_t ldw, const float* src, int64_t s, int64_t dk,
                                                int64_t dv, int64_t row_base, int rb) {
  for (int64_t e = threadIdx.x; e < rb * ldw; e += blockDim.x) {
    const int64_t i = e / ldw, j = e - i * ldw;
    const int64_t row = row_base + i;
    Ss[e] = (src && row < dv && j < dk) ? src[(s * dv + row) * dk + j] : 0.0f;
  }
}

// dst[row][j] = Ss[i][j] for the tile's rows below dv; dst is [dv][dk].
__device__ __forceinline__ void store_state_tile(float* dst, const float* Ss, int64_t ldw, int64_t dk, int64_t dv,
                                                 int64_t row_base, int rb) {
  for (int64_t e = threadIdx.x; e < rb * dk; e += blockDim.x) {
    const int64_t i = e / dk, j = e - i * dk;
    const int64_t row = row_base + i;
    if (row < dv) dst[row * dk + j] = Ss[i * ldw + j];
  }
}

template <int MA, int NB>
__global__ void __launch_bounds__(kScanThreads) delta_forward_scan_kernel(ScanParams p) {
  extern __shared__ float sm[];
  constexpr int rb = 16 * NB;
  const int C = static_cast<int>(p.C);
  const int64_t dk = p.dk, dv = p.dv, ldw = p.ldw, E = dv * dk;
  float* Ws = sm;
  float* Us = Ws + rb * ldw;
  float* stage = Us + C * rb;
  const int64_t s = blockIdx.x;
  const int64_t row_base = static_cast<int64_t>(blockIdx.y) * rb;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  load_state_tile(Ws, ldw, p.state_in, s, dk, dv, row_base, rb);
  __syncthreads();
  for (int64_t c = 0; c < p.chunks; ++c) {
    const int64_t row0 = s * p.Tp + c * C;
    const int64_t g = s * p.chunks + c;
    store_state_tile(p.states + g * E, Ws, ldw, dk, dv, row_base, rb);
    // U_c = Uv_c - Wk_c W^T.
    float acc[MA][NB];
    chunk_times_state<MA, NB>(p.Wk + row0 * dk, C, dk, Ws, ldw, stage, acc);
#pragma unroll
    for (int a = 0; a < MA; ++a) {
#pragma unroll
      for (int b = 0; b < NB; ++b) {
        const int t = ty + 16 * a, i = tx + 16 * b;
        const int64_t row = row_base + i;
        if (t < C) {
          float val = 0.0f;
          if (row < dv) {
            val = p.Uv[(row0 + t) * dv + row] - acc[a][b];
            p.U[(row0 + t) * dv + row] = val;
          }
          Us[t * rb + i] = val;
        }
      }
    }
    __syncthreads();
    // W += U_c^T K_c.
    state_update<NB>(Ws, ldw, dk, C, Us, p.K + row0 * dk, nullptr, nullptr, 1.0f, stage);
  }
  store_state_tile(p.state_out + s * E, Ws, ldw, dk, dv, row_base, rb);
}

template <int MA, int NB>
__global__ void __launch_bounds__(kScanThreads) delta_backward_scan_kernel(ScanParams p) {
  extern __shared__ float sm[];
  constexpr int rb = 16 * NB;
  const int C = static_cast<int>(p.C);
  const int64_t dk = p.dk, dv = p.dv, ldw = p.ldw, E = dv * dk;
  float* Ws = sm;
  float* dWs = Ws + rb * ldw;
  float* P1 = dWs + rb * ldw;  // U, later Z = -diag(beta) dX
  float* P2 = P1 + C * rb;     // dU, later dO
  float* stage = P2 + C * rb;
  const int64_t s = blockIdx.x;
  const int64_t row_base = static_cast<int64_t>(blockIdx.y) * rb;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  load_state_tile(Ws, ldw, p.final_state, s, dk, dv, row_base, rb);
  load_state_tile(dWs, ldw, p.d_final_state, s, dk, dv, row_base, rb);
  __syncthreads();
  for (int64_t c = p.chunks - 1; c >= 0; --c) {
    const int64_t row0 = s * p.Tp + c * C;
    const int64_t g = s * p.chunks + c;
    store_state_tile(p.dWst + g * E, dWs, ldw, dk, dv, row_base, rb);
    for (int e = threadIdx.x; e < C * rb; e += blockDim.x) {
      const int t = e / rb, i = e - t * rb;
      const int64_t row = row_base + i;
      P1[e] = row < dv ? p.Uin[(row0 + t) * dv + row] : 0.0f;
    }
    __syncthreads();
    // W <- W - U_c^T K_c: the chunk-start state.
    state_update<NB>(Ws, ldw, dk, C, P1, p.K + row0 * dk, nullptr, nullptr, -1.0f, stage);
    store_state_tile(p.Wst + g * E, Ws, ldw, dk, dv, row_base, rb);
    // dU = (lower_incl(Q K^T)^T dO, precomputed in dUX) + K dW^T.
    {
      float acc[MA][NB];
      chunk_times_state<MA, NB>(p.K + row0 * dk, C, dk, dWs, ldw, stage, acc);
#pragma unroll
      for (int a = 0; a < MA; ++a) {
#pragma unroll
        for (int b = 0; b < NB; ++b) {
          const int t = ty + 16 * a, i = tx + 16 * b;
          const int64_t row = row_base + i;
          if (t < C) P2[t * rb + i] = row < dv ? p.dUX[(row0 + t) * dv + row] + acc[a][b] : 0.0f;
        }
      }
    }
    __syncthreads();
    // dX = N^T dU, N unit lower triangular; N's rows come in slabs of 32.
    float acc[MA][NB];
#pragma unroll
    for (int a = 0; a < MA; ++a) {
#pragma unroll
      for (int b = 0; b < NB; ++b) acc[a][b] = 0.0f;
    }
    const float* Ng = p.N + g * p.C * p.C;
    for (int r0 = 0; r0 < C; r0 += 32) {
      const int rows = min(32, C - r0);
      load_slab(stage, C, Ng + static_cast<int64_t>(r0) * C, C, rows, 0, C, C);
      __syncthreads();
      for (int rr = 0; rr < rows; ++rr) {
        float nv[MA], du[NB];
#pragma unroll
        for (int a = 0; a < MA; ++a) nv[a] = ty + 16 * a < C ? stage[rr * C + ty + 16 * a] : 0.0f;
#pragma unroll
        for (int b = 0; b < NB; ++b) du[b] = P2[(r0 + rr) * rb + tx + 16 * b];
#pragma unroll
        for (int a = 0; a < MA; ++a) {
#pragma unroll
          for (int b = 0; b < NB; ++b) acc[a][b] += nv[a] * du[b];
        }
      }
      __syncthreads();
    }
#pragma unroll
    for (int a = 0; a < MA; ++a) {
#pragma unroll
      for (int b = 0; b < NB; ++b) {
        const int t = ty + 16 * a, i = tx + 16 * b;
        const int64_t row = row_base + i;
        if (t < C) {
          const float x = row < dv ? acc[a][b] : 0.0f;
          if (row < dv) p.dUX[(row0 + t) * dv + row] = x;
          P1[t * rb + i] = -p.beta[row0 + t] * x;
        }
      }
    }
    for (int e = threadIdx.x; e < C * rb; e += blockDim.x) {
      const int t = e / rb, i = e - t * rb;
      const int64_t row = row_base + i;
      P2[e] = (p.dO && row < dv) ? p.dO[(row0 + t) * dv + row] : 0.0f;
    }
    __syncthreads();
    // dW <- dW + Z^T K_c + dO_c^T Q_c: the gradient of the chunk-start state.
    state_update<NB>(dWs, ldw, dk, C, P1, p.K + row0 * dk, p.dO ? P2 : nullptr, p.dO ? p.Q + row0 * dk : nullptr,
                     1.0f, stage);
  }
  if (p.d_state_in) store_state_tile(p.d_state_in + s * E, dWs, ldw, dk, dv, row_base, rb);
}

// Geometry of the scan kernels: value rows per block and shared memory.
struct ScanGeometry {
  int nb = 1;  // rb = 16 nb
  int ma = 4;  // chunk rows up to 16 ma
  int64_t ldw = 0;
  size_t forward_smem = 0, backward_smem = 0;
};

ScanGeometry scan_geometry(int64_t C, int64_t dk, int64_t dv) {
  ScanGeometry g;
  g.nb = (dk <= 512 && dv > 16) ? 2 : 1;
  g.ma = C <= 64 ? 4 : 8;
  g.ldw = scan_ldw(dk);
  const int64_t rb = 16 * g.nb;
  g.forward_smem = static_cast<size_t>(rb * g.ldw + C * rb + C * kSlabN) * sizeof(float);
  g.backward_smem = static_cast<size_t>(2 * rb * g.ldw + 2 * C * rb + C * kSlabN) * sizeof(float);
  return g;
}

template <typename F>
void dispatch_scan(const ScanGeometry& g, F&& f) {
  if (g.ma == 4 && g.nb == 1) return f.template run<4, 1>();
  if (g.ma == 4 && g.nb == 2) return f.template run<4, 2>();
  if (g.ma == 8 && g.nb == 1) return f.template run<8, 1>();
  if (g.ma == 8 && g.nb == 2) return f.template run<8, 2>();
  throw Error(FWP_ERR_INTERNAL, "fast_weight: no scan kernel for this geometry");
}

struct ScanLaunch {
  CudaBackend& be;
  bool forward;
  dim3 grid;
  size_t smem;
  const ScanParams& params;
  template <int MA, int NB>
  void run() const {
    if (forward) {
      cuda::require_shared_memory(be, delta_forward_scan_kernel<MA, NB>, smem,
                                  "chunked delta-rule forward scan (d_key too large?)");
      delta_forward_scan_kernel<MA, NB><<<grid, kScanThreads, smem, be.stream()>>>(params);
      FWP_CUDA_CHECK_LAUNCH("delta_forward_scan_kernel");
    } else {
      cuda::require_shared_memory(be, delta_backward_scan_kernel<MA, NB>, smem,
                                  "chunked delta-rule backward scan (d_key too large?)");
      delta_backward_scan_kernel<MA, NB><<<grid, kScanThreads, smem, be.stream()>>>(params);
      FWP_CUDA_CHECK_LAUNCH("delta_backward_scan_kernel");
    }
  }
};

// The executor of chunked_plan.h on the GPU.
class CudaExec {
 public:
  explicit CudaExec(CudaBackend& be) : be_(be) {}

  float* alloc(int64_t n) {
    scratch_.emplace_back(be_, n);
    return scratch_.back().get();
  }
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
            int64_t sa, const float* B, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc, int64_t sc,
            int64_t batch) {
    be_.gemm_batched(ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
  }
  void copy(float* dst, const float* src, int64_t n) { be_.copy(dst, src, n); }
  void zero(float* dst, int64_t n) { be_.fill(dst, 0.0f, n); }
  void pad_steps(const float* src, float* dst, int64_t S, int64_t T, int64_t Tp, int64_t w) {
    pad_steps_kernel<<<cuda::grid_for(S * Tp * w, 256), 256, 0, be_.stream()>>>(src, dst, S, T, Tp, w);
    FWP_CUDA_CHECK_LAUNCH("pad_steps_kernel");
  }
  void unpad_steps(const float* src, float* dst, int64_t S, int64_t T, int64_t Tp, int64_t w) {
    unpad_steps_kernel<<<cuda::grid_for(S * T * w, 256), 256, 0, be_.stream()>>>(src, dst, S, T, Tp, w);
    FWP_CUDA_CHECK_LAUNCH("unpad_steps_kernel");
  }
  void wy_inverse(const float* G, const float* beta, float* N, int64_t groups, int64_t C, bool scale_by_beta) {
    const size_t smem = static_cast<size_t>(2 * C * (C + 1) + C) * sizeof(float);
    cuda::require_shared_memory(be_, wy_inverse_kernel, smem, "wy_inverse_kernel");
    const int threads = static_cast<int>(std::max<int64_t>(32, (C + 31) / 32 * 32));
    wy_inverse_kernel<<<static_cast<unsigned>(groups), threads, smem, be_.stream()>>>(G, beta, N, C, scale_by_beta);
    FWP_CUDA_CHECK_LAUNCH("wy_inverse_kernel");
  }
  void mask_causal(float* P, int64_t groups, int64_t C, bool inclusive) {
    mask_causal_kernel<<<cuda::grid_for(groups * C * C, 256), 256, 0, be_.stream()>>>(P, groups, C, inclusive);
    FWP_CUDA_CHECK_LAUNCH("mask_causal_kernel");
  }
  void scale_rows(const float* x, const float* beta, float* y, int64_t rows, int64_t w) {
    scale_rows_kernel<<<cuda::grid_for(rows * w, 256), 256, 0, be_.stream()>>>(x, beta, y, rows, w);
    FWP_CUDA_CHECK_LAUNCH("scale_rows_kernel");
  }
  void state_scan(float* H, int64_t S, int64_t n, int64_t E, const float* init, float* final_out, bool reverse,
                  bool inclusive, float sign) {
    state_scan_kernel<<<cuda::grid_for(S * E, 256), 256, 0, be_.stream()>>>(H, S, n, E, init, final_out, reverse,
                                                                             inclusive, sign);
    FWP_CUDA_CHECK_LAUNCH("state_scan_kernel");
  }
  void delta_forward_scan(const chunked::Dims& d, const float* K, const float* Wk, const float* Uv,
                          const float* state_in, float* U, float* states, float* state_out) {
    const ScanGeometry g = scan_geometry(d.chunk, d.dk, d.dv);
    ScanParams p = base_params(d, g);
    p.K = K;
    p.Wk = Wk;
    p.Uv = Uv;
    p.state_in = state_in;
    p.U = U;
    p.states = states;
    p.state_out = state_out;
    const dim3 grid(static_cast<unsigned>(d.streams), static_cast<unsigned>((d.dv + 16 * g.nb - 1) / (16 * g.nb)));
    dispatch_scan(g, ScanLaunch{be_, true, grid, g.forward_smem, p});
  }
  void delta_backward_scan(const chunked::Dims& d, const float* K, const float* Q, const float* U, const float* dO,
                           const float* N, const float* beta, float* dU_dX, const float* state_out,
                           const float* d_state_out, float* Wst, float* dWst, float* d_state_in) {
    const ScanGeometry g = scan_geometry(d.chunk, d.dk, d.dv);
    ScanParams p = base_params(d, g);
    p.K = K;
    p.Q = Q;
    p.Uin = U;
    p.dO = dO;
    p.N = N;
    p.beta = beta;
    p.dUX = dU_dX;
    p.final_state = state_out;
    p.d_final_state = d_state_out;
    p.Wst = Wst;
    p.dWst = dWst;
    p.d_state_in = d_state_in;
    const dim3 grid(static_cast<unsigned>(d.streams), static_cast<unsigned>((d.dv + 16 * g.nb - 1) / (16 * g.nb)));
    dispatch_scan(g, ScanLaunch{be_, false, grid, g.backward_smem, p});
  }
  void delta_beta_grad(const float* dX, const float* R, float* F, float* G_S, const float* beta, float* dbeta,
                       int64_t groups, int64_t C, int64_t dv) {
    const int threads = static_cast<int>(std::max<int64_t>(32, std::min<int64_t>(256, (C + 31) / 32 * 32)));
    delta_beta_grad_kernel<<<static_cast<unsigned>(groups), threads, 0, be_.stream()>>>(dX, R, F, G_S, beta, dbeta,
                                                                                         C, dv);
    FWP_CUDA_CHECK_LAUNCH("delta_beta_grad_kernel");
  }

 private:
  static ScanParams base_params(const chunked::Dims& d, const ScanGeometry& g) {
    ScanParams p{};
    p.chunks = d.chunks;
    p.C = d.chunk;
    p.dk = d.dk;
    p.dv = d.dv;
    p.Tp = d.padded_steps;
    p.ldw = g.ldw;
    return p;
  }

  CudaBackend& be_;
  std::vector<cuda::Scratch<float>> scratch_;
};

// Checks what the chunked kernels need before any work is queued.
void check_chunked(const CudaBackend& be, bool delta, const chunked::Dims& d) {
  if (d.chunk > CudaBackend::kMaxChunkSize) {
    throw Error(FWP_ERR_UNSUPPORTED, "fast_weight: the CUDA chunked kernels take chunk_size <= " +
                                         std::to_string(CudaBackend::kMaxChunkSize) + " (got " +
                                         std::to_string(d.chunk) + ")");
  }
  if (d.groups() > 0x7fffffff || d.streams > 0x7fffffff) {
    throw Error(FWP_ERR_UNSUPPORTED, "fast_weight: too many chunks for one CUDA launch");
  }
  if (delta) {
    const ScanGeometry g = scan_geometry(d.chunk, d.dk, d.dv);
    if (g.backward_smem > static_cast<size_t>(be.max_shared_memory_per_block())) {
      throw Error(FWP_ERR_UNSUPPORTED,
                  "fast_weight: the CUDA chunked delta rule keeps a 16 x d_key state tile in shared memory; "
                  "d_key = " + std::to_string(d.dk) + " needs " + std::to_string(g.backward_smem) +
                      " bytes, the device offers " + std::to_string(be.max_shared_memory_per_block()));
    }
  }
}

}  // namespace

// ==============================================================================================
// (c) dispatch
// ==============================================================================================

Algorithm CudaBackend::choose_algorithm(UpdateRule rule, const FastWeightShape& shape) {
  (void)rule;
  const int64_t d = std::max(shape.d_key, shape.d_value);
  if (shape.d_key > 1024) return Algorithm::Chunked;  // beyond the recurrent kernel
  // The fused recurrence costs ~steps x (a few hundred cycles) per launch and
  // needs no extra memory; the chunked form pays ~20 launches and O(T d^2 / C)
  // scratch but turns the steps into batched products. Crossover estimates,
  // to be refined with bench/gpu_fast_weight_bench.
  if (d <= 64 && shape.steps <= 1024) return Algorithm::Recurrent;
  if (d <= 128 && shape.steps <= 512) return Algorithm::Recurrent;
  return Algorithm::Chunked;
}

int64_t CudaBackend::default_chunk_size(const FastWeightShape& shape) {
  return std::max(shape.d_key, shape.d_value) <= 32 ? 32 : 64;
}

int64_t CudaBackend::fast_weight_state_interval(const FastWeightShape& shape, int64_t chunk_size) {
  check_chunk_size(chunk_size, "chunk_size");  // as the CPU backend: no caller's check is relied on
  return chunk_size > 0 ? chunk_size : default_chunk_size(shape);
}

void CudaBackend::fast_weight_forward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                      const FastWeightShape& shape, const float* q, const float* k, const float* v,
                                      const float* beta, const float* state_in, float* out, float* u,
                                      float* state_out, float* states) {
  const int64_t S = shape.streams, T = shape.steps, dk = shape.d_key, dv = shape.d_value;
  check_chunk_size(chunk_size, "chunk_size");  // before make_dims() adds a chunk to the step count
  if (S <= 0) return;
  cuda::DeviceGuard guard(device_);
  const bool delta = rule == UpdateRule::Delta;
  if (T <= 0 || dv <= 0) {
    // Nothing to step through (or no value rows): the state passes through.
    if (dk * dv > 0) {
      if (state_in) copy(state_out, state_in, S * dv * dk);
      else fill(state_out, 0.0f, S * dv * dk);
    }
    return;
  }
  if (algo == Algorithm::Auto) algo = choose_algorithm(rule, shape);
  if (algo == Algorithm::Chunked && dk > 0) {
    const chunked::Dims d = chunked::make_dims(shape, chunk_size > 0 ? chunk_size : default_chunk_size(shape));
    check_chunked(*this, delta, d);
    CudaExec ex(*this);
    chunked::forward(ex, delta, d, q, k, v, beta, state_in, out, u, state_out, states);
    return;
  }
  recurrent_forward(*this, delta, shape, q, k, v, beta, state_in, out, u, state_out, states,
                    fast_weight_state_interval(shape, chunk_size));
}

void CudaBackend::fast_weight_backward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                       const FastWeightShape& shape, const float* q, const float* k,
                                       const float* v, const float* beta, const float* u, const float* state_out,
                                       const float* d_out, const float* d_state_out, float* dq, float* dk,
                                       float* dv, float* dbeta, float* d_state_in, const float* states) {
  const int64_t S = shape.streams, T = shape.steps, dkey = shape.d_key, dval = shape.d_value;
  check_chunk_size(chunk_size, "chunk_size");  // before make_dims() adds a chunk to the step count
  if (S <= 0) return;
  cuda::DeviceGuard guard(device_);
  const bool delta = rule == UpdateRule::Delta;
  const float* d_out_used = q ? d_out : nullptr;  // an output gradient only exists with the query
  if (T <= 0 || dval <= 0) {
    // No steps: the state gradient passes through. No value rows: W is empty and
    // every gradient is zero.
    if (d_state_in && dkey * dval > 0) {
      if (d_state_out) copy(d_state_in, d_state_out, S * dval * dkey);
      else fill(d_state_in, 0.0f, S * dval * dkey);
    }
    if (T > 0) {
      if (q) fill(dq, 0.0f, S * T * dkey);
      fill(dk, 0.0f, S * T * dkey);
      if (delta) fill(dbeta, 0.0f, S * T);
    }
    return;
  }
  if (algo == Algorithm::Auto) algo = choose_algorithm(rule, shape);
  if (algo == Algorithm::Chunked && dkey > 0) {
    const chunked::Dims d = chunked::make_dims(shape, chunk_size > 0 ? chunk_size : default_chunk_size(shape));
    check_chunked(*this, delta, d);
    CudaExec ex(*this);
    chunked::backward(ex, delta, d, q, k, v, beta, u, state_out, d_out_used, d_state_out, dq, dk, dv, dbeta,
                      d_state_in, states);
    return;
  }
  recurrent_backward(*this, delta, shape, q, k, v, beta, u, state_out, d_out_used, d_state_out, dq, dk, dv, dbeta,
                     d_state_in, states, fast_weight_state_interval(shape, chunk_size));
}

}  // namespace fwp
