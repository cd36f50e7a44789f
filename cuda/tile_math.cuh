// The arithmetic the CUDA kernels do per element, row or register tile,
// written once as __host__ __device__ functions. The kernels in cuda/*.cu call
// these; tests/cpp/test_cuda_tiles.cpp compiles this header with g++ (where
// FWP_HD expands to nothing) and checks the same functions against the CPU
// backend, so that only thread mapping and synchronisation are left for a GPU.
//
// Conventions follow src/core/backend.h and the CPU implementations in src/ops.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FWP_HD __host__ __device__
#else
#define FWP_HD
#endif
// Loop unrolling hint for the device compilation pass only (the host pass and
// g++ do not know the pragma).
#if defined(__CUDA_ARCH__)
#define FWP_UNROLL _Pragma("unroll")
#else
#define FWP_UNROLL
#endif

namespace fwp {
namespace tile {

// ---- scalar helpers (device intrinsics vs <cmath>) ------------------------------------------

FWP_HD inline float exp_f(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return std::exp(x);
#endif
}
FWP_HD inline float log_f(float x) {
#if defined(__CUDA_ARCH__)
  return logf(x);
#else
  return std::log(x);
#endif
}
FWP_HD inline float max_f(float a, float b) { return a > b ? a : b; }
FWP_HD inline float sqrt_f(float x) {
#if defined(__CUDA_ARCH__)
  return sqrtf(x);
#else
  return std::sqrt(x);
#endif
}

// ---- elementwise ------------------------------------------------------------------------------

// 1 / (1 + e^-x); saturates to 0 or 1 without NaN.
FWP_HD inline float sigmoid(float x) { return 1.0f / (1.0f + exp_f(-x)); }
FWP_HD inline float sigmoid_grad(float y, float dy) { return dy * y * (1.0f - y); }

// ---- feature maps -----------------------------------------------------------------------------

// elu(x) + 1: x + 1 for x > 0, exp(x) otherwise.
FWP_HD inline float elu1(float x) { return x > 0.0f ? x + 1.0f : exp_f(x); }
// For x <= 0 the derivative exp(x) is phi itself.
FWP_HD inline float elu1_grad(float x, float phi, float dphi) { return x > 0.0f ? dphi : dphi * phi; }

// FAVOR+: phi = (2m)^(-1/2) [exp(Rx - |x|^2/2); exp(-Rx - |x|^2/2)], computed as
// exp(+-r + shift) with shift = log_c - |x|^2 / 2 and log_c = -log(2m) / 2.
FWP_HD inline float favor_log_c(int64_t m) { return -0.5f * log_f(static_cast<float>(2 * m)); }
FWP_HD inline float favor_shift(float log_c, float squared_norm) { return log_c - 0.5f * squared_norm; }
FWP_HD inline float favor_plus(float r, float shift) { return exp_f(r + shift); }
FWP_HD inline float favor_minus(float r, float shift) { return exp_f(shift - r); }
// Backward: g = dphi+ phi+ - dphi- phi- feeds dx = R^T g, and total = sum of
// dphi * phi over both halves gives dx -= total * x.
FWP_HD inline float favor_grad_g(float pp, float pm, float dpp, float dpm) { return dpp * pp - dpm * pm; }
FWP_HD inline float favor_grad_total(float pp, float pm, float dpp, float dpm) { return dpp * pp + dpm * pm; }

// DPFP, z = [relu(x); relu(-x)] of length n2 = 2d; block j = 1..nu of phi is
// z * roll(z, j) with roll(z, j)[i] = z[(i - j) mod n2].
FWP_HD inline float dpfp_z(const float* x, int64_t d, int64_t i) {
  return i < d ? max_f(x[i], 0.0f) : max_f(-x[i - d], 0.0f);
}
// phi[idx] for idx < 2 d nu, z computed on the fly from the row x.
FWP_HD inline float dpfp_phi(const float* x, int64_t d, int64_t idx) {
  const int64_t n2 = 2 * d;
  const int64_t j = idx / n2 + 1;
  const int64_t i = idx - (j - 1) * n2;
  int64_t src = i - j % n2;
  if (src < 0) src += n2;
  return dpfp_z(x, d, i) * dpfp_z(x, d, src);
}
// dL/dz[a] = sum_j dphi_j[a] z[(a - j) mod n2] + dphi_j[(a + j) mod n2] z[(a + j) mod n2].
FWP_HD inline float dpfp_dz(const float* x, const float* dphi, int64_t d, int64_t nu, int64_t a) {
  const int64_t n2 = 2 * d;
  float acc = 0.0f;
  for (int64_t j = 1; j <= nu; ++j) {
    const int64_t s = j % n2;
    const float* g = dphi + (j - 1) * n2;
    int64_t lo = a - s;
    if (lo < 0) lo += n2;
    int64_t hi = a + s;
    if (hi >= n2) hi -= n2;
    acc += g[a] * dpfp_z(x, d, lo);
    acc += g[hi] * dpfp_z(x, d, hi);
  }
  return acc;
}
// dx[k] = dz[k] [x_k > 0] - dz[d + k] [x_k < 0] (relu'(0) taken as 0).
FWP_HD inline float dpfp_dx(const float* x, const float* dphi, int64_t d, int64_t nu, int64_t k) {
  const float xk = x[k];
  if (xk > 0.0f) return dpfp_dz(x, dphi, d, nu, k);
  if (xk < 0.0f) return -dpfp_dz(x, dphi, d, nu, d + k);
  return 0.0f;
}

// Sum normalisation out = phi / (sum(phi) + eps) and its backward
// dphi = (dout - (dout . phi) / S) / S with S = sum(phi) + eps.
FWP_HD inline float sum_normalize_inv(float sum, float eps) { return 1.0f / (sum + eps); }
FWP_HD inline float sum_normalize_grad(float dout, float dot_dout_phi, float inv) {
  return (dout - dot_dout_phi * inv) * inv;
}

// ---- attention normalisation ------------------------------------------------------------------

// g_t = dL/d denom_t = -(dy_t . y_t) / denom_t.
FWP_HD inline float attn_norm_denom_grad(float dy_dot_y, float denom) { return -dy_dot_y / denom; }

// ---- online softmax ------------------------------------------------------------------------------
// Running state of one row: m = max so far, l = sum of exp(s - m). A tile of
// scores with maximum tile_max is merged by m' = max(m, tile_max), rescaling
// the running sum and accumulator by alpha = exp(m - m'), and adding exp(s - m')
// per score. m starts at -inf (alpha is then 0).

struct SoftmaxRow {
  float m;
  float l;
};

FWP_HD inline SoftmaxRow softmax_row_init() { return {-INFINITY, 0.0f}; }
// Returns alpha and sets row.m to the merged maximum (row.l is rescaled).
FWP_HD inline float softmax_row_rescale(SoftmaxRow& row, float tile_max) {
  const float m_new = max_f(row.m, tile_max);
  // Both -inf: nothing seen yet, nothing to rescale.
  const float alpha = m_new == -INFINITY ? 1.0f : exp_f(row.m - m_new);
  row.m = m_new;
  row.l *= alpha;
  return alpha;
}
// exp(s - m) for a score of the current tile (masked scores are -inf and give 0).
FWP_HD inline float softmax_row_prob(const SoftmaxRow& row, float s) {
  return row.m == -INFINITY ? 0.0f : exp_f(s - row.m);
}
// log-sum-exp of everything merged (-inf when nothing was).
FWP_HD inline float softmax_row_lse(const SoftmaxRow& row) {
  return row.l > 0.0f ? row.m + log_f(row.l) : -INFINITY;
}
// 1 / l, or 0 for an empty row (the empty sum gives a zero output).
FWP_HD inline float softmax_row_inv(const SoftmaxRow& row) { return row.l > 0.0f ? 1.0f / row.l : 0.0f; }
// Backward: p = exp(s - lse); dS = p (dP - D) with D = dO . O.
FWP_HD inline float softmax_prob_from_lse(float s, float lse) { return exp_f(s - lse); }
FWP_HD inline float softmax_score_grad(float p, float dp, float D) { return p * (dp - D); }

// ---- the fast-weight recurrence on a register tile ---------------------------------------------
// The fused recurrent kernels give each thread RV rows (value components) x CK
// columns (key components) of a stream's state W [d_value][d_key]. The lanes of
// one row group split the key axis: lane lk holds columns lk + c * LK (c < CK),
// zero outside [0, d_key). A step is: partial dot products on the tile, a sum
// over the LK lanes (warp shuffles), then the rest on the tile.

// Thread geometry of the fused recurrent kernels for a state of d_value x
// d_key: lk lanes share a row (ck key columns each), lv = 32 / lk row groups
// per warp, rv rows per thread, `warps` warps per block, and the value rows are
// split over `vtiles` blocks per stream. Unsupported (lk == 0) above d_key 1024.
struct RecurrentConfig {
  int lk = 0, ck = 0, lv = 0, rv = 0, warps = 0;
  int64_t rows_per_block = 0, vtiles = 0;
  bool supported() const { return lk > 0; }
};
inline RecurrentConfig recurrent_config(int64_t dk, int64_t dv) {
  RecurrentConfig cfg;
  if (dk <= 8) { cfg.lk = 4; cfg.ck = 2; }
  else if (dk <= 16) { cfg.lk = 4; cfg.ck = 4; }
  else if (dk <= 32) { cfg.lk = 8; cfg.ck = 4; }
  else if (dk <= 64) { cfg.lk = 8; cfg.ck = 8; }
  else if (dk <= 128) { cfg.lk = 8; cfg.ck = 16; }
  else if (dk <= 256) { cfg.lk = 16; cfg.ck = 16; }
  else if (dk <= 512) { cfg.lk = 16; cfg.ck = 32; }
  else if (dk <= 1024) { cfg.lk = 32; cfg.ck = 32; }
  else return cfg;
  cfg.lv = 32 / cfg.lk;
  // Registers: a thread holds rv x ck state entries (twice in the backward).
  const int max_rv = 32 / cfg.ck < 4 ? 32 / cfg.ck : 4;
  cfg.rv = 1;
  while (cfg.rv < max_rv && static_cast<int64_t>(cfg.rv) * cfg.lv < dv) cfg.rv *= 2;
  const int64_t rows_per_warp = static_cast<int64_t>(cfg.rv) * cfg.lv;
  const int64_t warps_needed = dv < 1 ? 1 : (dv + rows_per_warp - 1) / rows_per_warp;
  cfg.warps = static_cast<int>(warps_needed < 8 ? warps_needed : 8);
  cfg.rows_per_block = rows_per_warp * cfg.warps;
  cfg.vtiles = dv < 1 ? 0 : (dv + cfg.rows_per_block - 1) / cfg.rows_per_block;
  return cfg;
}
// Value row of register row r of the thread at (warp, row group lv) in block vtile.
FWP_HD inline int64_t recurrent_row(int64_t rows_per_block, int lv_count, int rv, int64_t vtile, int warp, int lv,
                                    int r) {
  return vtile * rows_per_block + static_cast<int64_t>(warp) * rv * lv_count + static_cast<int64_t>(r) * lv_count +
         lv;
}
// Key column of register column c of lane lk.
FWP_HD inline int64_t recurrent_col(int lk_count, int lk, int c) {
  return lk + static_cast<int64_t>(c) * lk_count;
}

// Partial products of step t (forward): wk_r = W_r . k, wq_r = W_r . q over this
// thread's columns, and kq = k . q (the same for every row).
template <int RV, int CK>
FWP_HD inline void fw_forward_partials(const float (&w)[RV][CK], const float (&k)[CK], const float (&q)[CK],
                                       bool with_query, float (&wk)[RV], float (&wq)[RV], float& kq) {
  kq = 0.0f;
  if (with_query) {
FWP_UNROLL
    for (int c = 0; c < CK; ++c) kq += k[c] * q[c];
  }
FWP_UNROLL
  for (int r = 0; r < RV; ++r) {
    float a = 0.0f, b = 0.0f;
FWP_UNROLL
    for (int c = 0; c < CK; ++c) {
      a += w[r][c] * k[c];
      if (with_query) b += w[r][c] * q[c];
    }
    wk[r] = a;
    wq[r] = b;
  }
}

// u_t: beta (v - W_{t-1} k) for the delta rule, v for the sum rule.
FWP_HD inline float fw_update_value(bool delta, float v, float beta, float wk) {
  return delta ? beta * (v - wk) : v;
}
// out_t = W_t q = W_{t-1} q + u (k . q).
FWP_HD inline float fw_output(float wq, float u, float kq) { return wq + u * kq; }

// W_r += u_r k^T on the tile.
template <int RV, int CK>
FWP_HD inline void fw_rank1_update(float (&w)[RV][CK], const float (&u)[RV], const float (&k)[CK]) {
FWP_UNROLL
  for (int r = 0; r < RV; ++r) {
FWP_UNROLL
    for (int c = 0; c < CK; ++c) w[r][c] += u[r] * k[c];
  }
}

// Backward of step t, first part. On entry w = W_t and dw = the gradient of
// W_t without the output term. Adds the output term (dw += dout q^T) and this
// thread's share of dq_t = W_t^T dout into pq, turns w into
// W_{t-1} = W_t - u k^T, and returns the partial sums du_r = dw_r . k and
// (delta rule) a_r = W_{t-1,r} . k over this thread's columns.
template <int RV, int CK>
FWP_HD inline void fw_backward_partials(float (&w)[RV][CK], float (&dw)[RV][CK], const float (&k)[CK],
                                        const float (&q)[CK], const float (&dout)[RV], const float (&u)[RV],
                                        bool with_out_grad, bool delta, float (&pq)[CK], float (&du)[RV],
                                        float (&a)[RV]) {
FWP_UNROLL
  for (int c = 0; c < CK; ++c) pq[c] = 0.0f;
FWP_UNROLL
  for (int r = 0; r < RV; ++r) {
    float s_du = 0.0f, s_a = 0.0f;
FWP_UNROLL
    for (int c = 0; c < CK; ++c) {
      if (with_out_grad) {
        pq[c] += w[r][c] * dout[r];
        dw[r][c] += dout[r] * q[c];
      }
      w[r][c] -= u[r] * k[c];
      s_du += dw[r][c] * k[c];
      if (delta) s_a += w[r][c] * k[c];
    }
    du[r] = s_du;
    a[r] = s_a;
  }
}

// The same first part split in two for the saved-state backward, which
// reads the exact W_{t-1} (recomputed from a saved state) instead of
// subtracting: fw_backward_out_partials with w = W_t (output term of dw and
// this thread's share of dq_t), then, with w = W_{t-1},
// fw_backward_key_partials (du_r = dw_r . k and, delta rule, a_r = W_{t-1,r} . k).
template <int RV, int CK>
FWP_HD inline void fw_backward_out_partials(const float (&w)[RV][CK], float (&dw)[RV][CK], const float (&q)[CK],
                                            const float (&dout)[RV], bool with_out_grad, float (&pq)[CK]) {
FWP_UNROLL
  for (int c = 0; c < CK; ++c) pq[c] = 0.0f;
  if (!with_out_grad) return;
FWP_UNROLL
  for (int r = 0; r < RV; ++r) {
FWP_UNROLL
    for (int c = 0; c < CK; ++c) {
      pq[c] += w[r][c] * dout[r];
      dw[r][c] += dout[r] * q[c];
    }
  }
}

template <int RV, int CK>
FWP_HD inline void fw_backward_key_partials(const float (&w)[RV][CK], const float (&dw)[RV][CK], const float (&k)[CK],
                                            bool delta, float (&du)[RV], float (&a)[RV]) {
FWP_UNROLL
  for (int r = 0; r < RV; ++r) {
    float s_du = 0.0f, s_a = 0.0f;
FWP_UNROLL
    for (int c = 0; c < CK; ++c) {
      s_du += dw[r][c] * k[c];
      if (delta) s_a += w[r][c] * k[c];
    }
    du[r] = s_du;
    a[r] = s_a;
  }
}

// The saved-state backward recomputes an interval of L steps in two levels
// (as the CPU's recurrent backward does): the checkpoints W before steps
// c0, c0 + M, ... from the saved state, then per sub-block of M steps (last
// first) the states W before steps a0 + 1 .. a0 + M - 1 from its checkpoint.
// M = ceil(sqrt(L)) keeps the per-thread slots, ceil(L / M) + M - 1, near
// their minimum 2 sqrt(L) (each slot: one thread's RV x CK entries).
struct IntervalRecompute {
  int64_t interval = 1, sub = 1;
  FWP_HD int64_t checkpoints() const { return (interval + sub - 1) / sub; }
  FWP_HD int64_t slots() const { return checkpoints() + sub - 1; }
  // Slot holding W before step c0 + i of an interval (0 <= i < interval):
  // checkpoint i / M if i is a multiple of M, else sub-block state i % M.
  FWP_HD int64_t slot_before(int64_t i) const {
    return i % sub == 0 ? i / sub : checkpoints() + i % sub - 1;
  }
  // Whether step t (of T) is the last of its sub-block: the backward, which
  // walks t = T - 1 .. 0, recomputes the sub-block's states there (and, at the
  // last step of an interval, first the interval's checkpoints).
  FWP_HD bool sub_block_ends_at(int64_t t, int64_t steps) const {
    const int64_t i = t % interval;
    return (i + 1) % sub == 0 || i + 1 == interval || t + 1 == steps;
  }
};

// The backward's step t with saved states: leaves the exact W before step t
// (= W_{t-1}) in the caller's working state, recomputing where needed. The
// caller supplies, for its own entries of the state: load_saved(b) (working
// state = saved state b), store(slot) / load(slot) (working state to / from a
// slot) and advance(tp) (working state += u_tp k_tp^T, the forward's update).
// Called for t = steps - 1 down to 0, in that order; per interval of n steps
// it advances about 2 n times.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class LoadSaved, class Store, class Load, class Advance>
FWP_HD inline void recompute_state_before(const IntervalRecompute& rc, int64_t t, int64_t steps,
                                          LoadSaved&& load_saved, Store&& store, Load&& load, Advance&& advance) {
  const int64_t c0 = t / rc.interval * rc.interval;
  if (rc.sub_block_ends_at(t, steps)) {
    const int64_t a0 = c0 + (t - c0) / rc.sub * rc.sub;
    const int64_t c1 = c0 + rc.interval < steps ? c0 + rc.interval : steps;
    if (t + 1 == c1) {  // level 1: the interval's checkpoints
      load_saved(c0 / rc.interval);
      store(int64_t(0));
      for (int64_t tp = c0; tp < a0; ++tp) {
        advance(tp);
        if ((tp + 1 - c0) % rc.sub == 0) store((tp + 1 - c0) / rc.sub);
      }
    }
    load(rc.slot_before(a0 - c0));  // level 2: the sub-block's states
    for (int64_t tp = a0; tp < t; ++tp) {
      advance(tp);
      store(rc.slot_before(tp + 1 - c0));
    }
  }
  load(rc.slot_before(t - c0));
}

FWP_HD inline IntervalRecompute interval_recompute(int64_t interval) {
  IntervalRecompute r;
  r.interval = interval < 1 ? 1 : interval;
  while (r.sub * r.sub < r.interval) ++r.sub;
  return r;
}

// Backward of step t, second part, with du_r and a_r summed over the key lanes.
// Writes dv_r, this thread's share of dk_t into pk and of dbeta_t into dbeta,
// and (delta rule) moves dw to the gradient of W_{t-1}:
//   delta: r = v - a, dbeta += du r, dr = beta du, dv = dr,
//          dk += u dw - dr W_{t-1}, dw -= dr k^T
//   sum:   dv = du, dk += u dw.
template <int RV, int CK>
FWP_HD inline void fw_backward_finish(const float (&w)[RV][CK], float (&dw)[RV][CK], const float (&k)[CK],
                                      const float (&u)[RV], const float (&v)[RV], float beta,
                                      const float (&du)[RV], const float (&a)[RV], bool delta,
                                      float (&dv)[RV], float (&pk)[CK], float& dbeta) {
FWP_UNROLL
  for (int c = 0; c < CK; ++c) pk[c] = 0.0f;
  dbeta = 0.0f;
FWP_UNROLL
  for (int r = 0; r < RV; ++r) {
    if (delta) {
      dbeta += du[r] * (v[r] - a[r]);
      const float dr = beta * du[r];
      dv[r] = dr;
FWP_UNROLL
      for (int c = 0; c < CK; ++c) {
        pk[c] += u[r] * dw[r][c] - dr * w[r][c];
        dw[r][c] -= dr * k[c];
      }
    } else {
      dv[r] = du[r];
FWP_UNROLL
      for (int c = 0; c < CK; ++c) pk[c] += u[r] * dw[r][c];
    }
  }
}

// ---- the chunkwise (WY) form ----------------------------------------------------------------------
// Per chunk of C steps: G = K K^T, A = strictly_lower(diag(beta) G) and
// N = (I + A)^{-1} (unit lower triangular). Column j of N solves
// (I + A) n = e_j by forward substitution, independently of the other columns,
// which is how the kernel splits the work (one thread per column).
//   N[t][j] = [t == j] - sum_{j <= s < t} beta_t G[t][s] N[s][j]
// With scale_by_beta the column is multiplied by beta_j (T = N diag(beta)).
FWP_HD inline void wy_inverse_column(const float* G, int64_t ldg, const float* beta, int64_t C, int64_t j,
                                     bool scale_by_beta, float* N, int64_t ldn) {
  for (int64_t t = 0; t < j; ++t) N[t * ldn + j] = 0.0f;
  N[j * ldn + j] = 1.0f;
  for (int64_t t = j + 1; t < C; ++t) {
    float acc = 0.0f;
    for (int64_t s = j; s < t; ++s) acc += G[t * ldg + s] * N[s * ldn + j];
    N[t * ldn + j] = -beta[t] * acc;
  }
  if (scale_by_beta) {
    for (int64_t t = j; t < C; ++t) N[t * ldn + j] *= beta[j];
  }
}

// Zeroes the entries above the diagonal (inclusive = keep the diagonal) of
// element (i, j) of a C x C block: returns the kept value.
FWP_HD inline float causal_mask(float value, int64_t i, int64_t j, bool inclusive) {
  return (inclusive ? j <= i : j < i) ? value : 0.0f;
}

// dbeta_t of the chunkwise delta-rule backward, with F = dX U^T and
// G = K K^T of the chunk, dX = (I + A)^{-T} dU and R = V - K W^T:
//   dbeta_t = dX_t . R_t - sum_{s<t} F[t][s] G[t][s]
// (row_dot is dX_t . R_t, computed by the caller).
FWP_HD inline float wy_beta_grad(const float* F_row, const float* G_row, int64_t t, float row_dot) {
  float acc = 0.0f;
  for (int64_t s = 0; s < t; ++s) acc += F_row[s] * G_row[s];
  return row_dot - acc;
}
// Entry (t, s) of the symmetric matrix S = D + D^T, D = strictly_lower(-diag(beta) F),
// whose product with K adds the key gradient through G = K K^T.
FWP_HD inline float wy_key_sym(const float* F, int64_t ldf, const float* beta, int64_t t, int64_t s) {
  if (t == s) return 0.0f;
  return t > s ? -beta[t] * F[t * ldf + s] : -beta[s] * F[s * ldf + t];
}

// ---- cuBLAS argument translation -------------------------------------------------------------------
// Row-major C[M,N] = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the
// column-major call multiplies B's buffer (first) by A's buffer with the same
// transpose flags, m = N, n = M.
struct ColMajorGemm {
  bool trans_first;   // transpose flag for the first operand (B's buffer)
  bool trans_second;  // transpose flag for the second operand (A's buffer)
  int64_t m, n, k;
  const float* first;
  int64_t ld_first;
  const float* second;
  int64_t ld_second;
};
FWP_HD inline ColMajorGemm to_col_major(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                        const float* A, int64_t lda, const float* B, int64_t ldb) {
  return {trans_b, trans_a, N, M, K, B, ldb, A, lda};
}

}  // namespace tile
}  // namespace fwp
