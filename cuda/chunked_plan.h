// The chunkwise-parallel fast-weight algorithm (sum and delta rule, forward
// and backward) as a sequence of batched matrix products and small kernels,
// written once against an executor type `Exec`. cuda/fast_weight.cu runs it
// with cuBLAS and CUDA kernels; tests/cpp/test_cuda_tiles.cpp runs the very
// same sequence with a host executor (plain loops) against the CPU backend,
// so the algebra, the buffer plumbing and the argument order of every product
// are checked without a GPU.
//
// Layout: the sequence of every stream is cut into n = ceil(T / C) chunks of C
// steps; when C does not divide T the inputs are copied into zero-padded
// [streams][n C][d] arrays (a padded step has k = 0, beta = 0, so it changes
// nothing). A "group" is one (stream, chunk) pair, G = streams * n of them, and
// per-group arrays are [G][C][C] or [G][d_value][d_key].
//
// Per chunk (rows K, Q [C, dk], V, U [C, dv], state W [dv, dk] at the chunk start):
//   delta: N = (I + strictly_lower(diag(beta) K K^T))^{-1},  T = N diag(beta)
//          U = T V - (T K) W^T                       (the u of the recurrence)
//   sum:   U = V
//   O = Q W^T + lower_incl(Q K^T) U,   W <- W + U^T K
// The state recursion is the only sequential part: a scan kernel for the delta
// rule, a prefix sum over the chunk products U^T K for the sum rule. The
// forward can hand its chunk-start states out (`saved`, [streams][n][dv][dk],
// the op's saved states); the backward then reads them, and otherwise
// reconstructs them from the final state and u (W_start = W_end - U^T K),
// exactly like the CPU's chunked backward (whose float32 residue grows with T).
//
// The Exec interface (all pointers are executor memory, all matrices row-major):
//   float* alloc(int64_t n)                            scratch, alive as long as the executor
//   gemm(ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch)
//                                                      C_g = alpha op(A_g) op(B_g) + beta C_g
//   copy(dst, src, n), zero(dst, n)
//   pad_steps(src, dst, S, T, Tp, width)               dst[s][t] = t < T ? src[s][t] : 0
//   unpad_steps(src, dst, S, T, Tp, width)             dst[s][t] = src[s][t], t < T
//   wy_inverse(G, beta, N, groups, C, scale_by_beta)   tile::wy_inverse_column for every column
//   mask_causal(P, groups, C, inclusive)               tile::causal_mask on every entry
//   scale_rows(x, beta, y, rows, width)                y[r] = beta[r] x[r]
//   state_scan(H, S, n, E, init, final, reverse, inclusive, sign)
//       per stream and element e, over the chunks in order (or reversed): with
//       acc = init (0 if null): exclusive: H[c] <- acc, acc += sign H[c];
//       inclusive: acc += sign H[c], H[c] <- acc; final <- acc (if not null)
//   delta_forward_scan(dims, K, Wk, Uv, state_in, U, states, state_out)
//       per stream: W = state_in (0 if null); per chunk c: states[c] = W,
//       U_c = Uv_c - Wk_c W^T, W += U_c^T K_c; state_out = W
//   delta_backward_scan(dims, K, Q, U, dO, N, beta, dU_dX, state_out, d_state_out, Wst, dWst, d_state_in)
//       per stream: W = state_out, dW = d_state_out (0 if null); chunks in reverse:
//       dWst[c] = dW, W -= U_c^T K_c, Wst[c] = W, dX_c = N_c^T (dU_c + K_c dW^T)
//       (written over dU_c), dW += dO_c^T Q_c (if dO) - (diag(beta_c) dX_c)^T K_c;
//       d_state_in = dW (if not null)
//   delta_beta_grad(dX, R, F, G_S, beta, dbeta, groups, C, dv)
//       dbeta_t = tile::wy_beta_grad(F_t, G_t, t, dX_t . R_t), then G_S <- S = tile::wy_key_sym(F)
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/backend.h"

namespace fwp {
namespace chunked {

struct Dims {
  int64_t streams = 0;
  int64_t steps = 0;  // T
  int64_t dk = 0;
  int64_t dv = 0;
  int64_t chunk = 0;   // C
  int64_t chunks = 0;  // n per stream
  int64_t padded_steps = 0;  // n * C
  bool padded() const { return padded_steps != steps; }
  int64_t groups() const { return streams * chunks; }
};

inline Dims make_dims(const FastWeightShape& shape, int64_t chunk) {
  Dims d;
  d.streams = shape.streams;
  d.steps = shape.steps;
  d.dk = shape.d_key;
  d.dv = shape.d_value;
  d.chunk = std::max<int64_t>(1, std::min(chunk, shape.steps));
  d.chunks = (shape.steps + d.chunk - 1) / d.chunk;
  d.padded_steps = d.chunks * d.chunk;
  return d;
}

namespace detail {

// An input in the padded layout: the original pointer when no padding is needed.
template <class Exec>
const float* padded_input(Exec& ex, const Dims& d, const float* src, int64_t width) {
  if (!src) return nullptr;
  if (!d.padded()) return src;
  float* p = ex.alloc(d.streams * d.padded_steps * width);
  ex.pad_steps(src, p, d.streams, d.steps, d.padded_steps, width);
  return p;
}

// An output in the padded layout (copied out by padded_output_done).
template <class Exec>
float* padded_output(Exec& ex, const Dims& d, float* dst, int64_t width) {
  if (!dst) return nullptr;
  if (!d.padded()) return dst;
  return ex.alloc(d.streams * d.padded_steps * width);
}

template <class Exec>
void padded_output_done(Exec& ex, const Dims& d, const float* p, float* dst, int64_t width) {
  if (dst && d.padded()) ex.unpad_steps(p, dst, d.streams, d.steps, d.padded_steps, width);
}

}  // namespace detail

// Forward of backend.h's fast_weight_forward for steps >= 1, d_key >= 1, d_value >= 1.
template <class Exec>
void forward(Exec& ex, bool delta, const Dims& d, const float* q, const float* k, const float* v,
             const float* beta, const float* state_in, float* out, float* u, float* state_out,
             float* saved = nullptr) {
  const int64_t C = d.chunk, dk = d.dk, dv = d.dv, G = d.groups();
  const int64_t CC = C * C, Cdk = C * dk, Cdv = C * dv, E = dv * dk;

  const float* Kp = detail::padded_input(ex, d, k, dk);
  const float* Vp = detail::padded_input(ex, d, v, dv);
  const float* Qp = detail::padded_input(ex, d, q, dk);
  float* Op = detail::padded_output(ex, d, q ? out : nullptr, dv);
  float* states = saved ? saved : ex.alloc(G * E);  // the chunk-start states
  float* P = ex.alloc(G * CC);
  const float* Up = nullptr;

  if (delta) {
    const float* Bp = detail::padded_input(ex, d, beta, 1);
    float* Tm = ex.alloc(G * CC);
    float* Wk = ex.alloc(d.streams * d.padded_steps * dk);
    float* Uv = ex.alloc(d.streams * d.padded_steps * dv);
    float* Uout = detail::padded_output(ex, d, u, dv);
    ex.gemm(false, true, C, C, dk, 1.0f, Kp, dk, Cdk, Kp, dk, Cdk, 0.0f, P, C, CC, G);  // K K^T
    ex.wy_inverse(P, Bp, Tm, G, C, true);                                                // N diag(beta)
    ex.gemm(false, false, C, dk, C, 1.0f, Tm, C, CC, Kp, dk, Cdk, 0.0f, Wk, dk, Cdk, G);
    ex.gemm(false, false, C, dv, C, 1.0f, Tm, C, CC, Vp, dv, Cdv, 0.0f, Uv, dv, Cdv, G);
    ex.delta_forward_scan(d, Kp, Wk, Uv, state_in, Uout, states, state_out);
    Up = Uout;
    detail::padded_output_done(ex, d, Uout, u, dv);
  } else {
    // H_c = V_c^T K_c, then an exclusive prefix sum over the chunks from state_in.
    ex.gemm(true, false, dv, dk, C, 1.0f, Vp, dv, Cdv, Kp, dk, Cdk, 0.0f, states, dk, E, G);
    ex.state_scan(states, d.streams, d.chunks, E, state_in, state_out, false, false, 1.0f);
    ex.copy(u, v, d.streams * d.steps * dv);
    Up = Vp;
  }

  if (q) {
    ex.gemm(false, true, C, C, dk, 1.0f, Qp, dk, Cdk, Kp, dk, Cdk, 0.0f, P, C, CC, G);  // Q K^T
    ex.mask_causal(P, G, C, true);
    ex.gemm(false, false, C, dv, C, 1.0f, P, C, CC, Up, dv, Cdv, 0.0f, Op, dv, Cdv, G);
    ex.gemm(false, true, C, dv, dk, 1.0f, Qp, dk, Cdk, states, dk, E, 1.0f, Op, dv, Cdv, G);  // + Q W^T
    detail::padded_output_done(ex, d, Op, out, dv);
  }
}

// Backward of backend.h's fast_weight_backward for steps >= 1, d_key >= 1, d_value >= 1.
template <class Exec>
void backward(Exec& ex, bool delta, const Dims& d, const float* q, const float* k, const float* v,
              const float* beta, const float* u, const float* state_out, const float* d_out,
              const float* d_state_out, float* dq, float* dk_out, float* dv_out, float* dbeta,
              float* d_state_in, const float* saved = nullptr) {
  const int64_t C = d.chunk, dk = d.dk, dv = d.dv, G = d.groups();
  const int64_t CC = C * C, Cdk = C * dk, Cdv = C * dv, E = dv * dk;
  const bool has_out = q && d_out;

  const float* Kp = detail::padded_input(ex, d, k, dk);
  const float* Up = detail::padded_input(ex, d, u, dv);
  const float* Qp = has_out ? detail::padded_input(ex, d, q, dk) : nullptr;
  const float* dOp = has_out ? detail::padded_input(ex, d, d_out, dv) : nullptr;
  float* dKp = detail::padded_output(ex, d, dk_out, dk);
  float* dVp = detail::padded_output(ex, d, dv_out, dv);
  float* dQp = has_out ? detail::padded_output(ex, d, dq, dk) : nullptr;
  float* Wst = (has_out && !saved) || delta ? ex.alloc(G * E) : nullptr;  // rebuilt chunk-start states
  const float* Wuse = saved ? saved : Wst;                                // the chunk-start states read
  float* dWst = ex.alloc(G * E);                              // gradients of the chunk-end states
  float* P = has_out ? ex.alloc(G * CC) : nullptr;            // lower_incl(Q K^T), later lower_incl(dO U^T)

  if (has_out) {
    ex.gemm(false, true, C, C, dk, 1.0f, Qp, dk, Cdk, Kp, dk, Cdk, 0.0f, P, C, CC, G);
    ex.mask_causal(P, G, C, true);
  }

  if (delta) {
    const float* Vp = detail::padded_input(ex, d, v, dv);
    const float* Bp = detail::padded_input(ex, d, beta, 1);
    float* dBp = detail::padded_output(ex, d, dbeta, 1);
    float* Gm = ex.alloc(G * CC);
    float* Nm = ex.alloc(G * CC);
    float* dX = ex.alloc(d.streams * d.padded_steps * dv);
    float* R = ex.alloc(d.streams * d.padded_steps * dv);
    float* F = ex.alloc(G * CC);
    ex.gemm(false, true, C, C, dk, 1.0f, Kp, dk, Cdk, Kp, dk, Cdk, 0.0f, Gm, C, CC, G);  // K K^T
    ex.wy_inverse(Gm, Bp, Nm, G, C, false);
    // The part of dU that does not depend on the state: lower_incl(Q K^T)^T dO.
    if (has_out) {
      ex.gemm(true, false, C, dv, C, 1.0f, P, C, CC, dOp, dv, Cdv, 0.0f, dX, dv, Cdv, G);
    } else {
      ex.zero(dX, d.streams * d.padded_steps * dv);
    }
    ex.delta_backward_scan(d, Kp, Qp, Up, dOp, Nm, Bp, dX, state_out, d_state_out, Wst, dWst, d_state_in);
    // R = V - K W^T per chunk, dV = dR = diag(beta) dX.
    ex.copy(R, Vp, d.streams * d.padded_steps * dv);
    ex.gemm(false, true, C, dv, dk, -1.0f, Kp, dk, Cdk, Wuse, dk, E, 1.0f, R, dv, Cdv, G);
    ex.scale_rows(dX, Bp, dVp, d.streams * d.padded_steps, dv);
    ex.gemm(false, true, C, C, dv, 1.0f, dX, dv, Cdv, Up, dv, Cdv, 0.0f, F, C, CC, G);  // dX U^T
    ex.delta_beta_grad(dX, R, F, Gm, Bp, dBp, G, C, dv);                                // Gm becomes S
    // dK = S K + U dW_end - dR W_start (+ lower_incl(dO U^T)^T Q below).
    ex.gemm(false, false, C, dk, C, 1.0f, Gm, C, CC, Kp, dk, Cdk, 0.0f, dKp, dk, Cdk, G);
    ex.gemm(false, false, C, dk, dv, 1.0f, Up, dv, Cdv, dWst, dk, E, 1.0f, dKp, dk, Cdk, G);
    ex.gemm(false, false, C, dk, dv, -1.0f, dVp, dv, Cdv, Wuse, dk, E, 1.0f, dKp, dk, Cdk, G);
    detail::padded_output_done(ex, d, dBp, dbeta, 1);
  } else {
    // dW_end of chunk c = d_state_out + sum_{c' > c} dO_c'^T Q_c' (a reverse exclusive scan).
    if (has_out) {
      ex.gemm(true, false, dv, dk, C, 1.0f, dOp, dv, Cdv, Qp, dk, Cdk, 0.0f, dWst, dk, E, G);
    } else {
      ex.zero(dWst, G * E);
    }
    ex.state_scan(dWst, d.streams, d.chunks, E, d_state_out, d_state_in, true, false, 1.0f);
    // dU = lower_incl(Q K^T)^T dO + K dW_end^T; dV = dU.
    if (has_out) ex.gemm(true, false, C, dv, C, 1.0f, P, C, CC, dOp, dv, Cdv, 0.0f, dVp, dv, Cdv, G);
    ex.gemm(false, true, C, dv, dk, 1.0f, Kp, dk, Cdk, dWst, dk, E, has_out ? 1.0f : 0.0f, dVp, dv, Cdv, G);
    ex.gemm(false, false, C, dk, dv, 1.0f, Up, dv, Cdv, dWst, dk, E, 0.0f, dKp, dk, Cdk, G);
    if (has_out && !saved) {
      // W_start of chunk c = state_out - sum_{c' >= c} U_c'^T K_c' (a reverse inclusive scan).
      ex.gemm(true, false, dv, dk, C, 1.0f, Up, dv, Cdv, Kp, dk, Cdk, 0.0f, Wst, dk, E, G);
      ex.state_scan(Wst, d.streams, d.chunks, E, state_out, nullptr, true, true, -1.0f);
    }
  }

  if (has_out) {
    // E = lower_incl(dO U^T): dK += E^T Q, dQ = E K + dO W_start.
    ex.gemm(false, true, C, C, dv, 1.0f, dOp, dv, Cdv, Up, dv, Cdv, 0.0f, P, C, CC, G);
    ex.mask_causal(P, G, C, true);
    ex.gemm(true, false, C, dk, C, 1.0f, P, C, CC, Qp, dk, Cdk, 1.0f, dKp, dk, Cdk, G);
    ex.gemm(false, false, C, dk, C, 1.0f, P, C, CC, Kp, dk, Cdk, 0.0f, dQp, dk, Cdk, G);
    ex.gemm(false, false, C, dk, dv, 1.0f, dOp, dv, Cdv, Wuse, dk, E, 1.0f, dQp, dk, Cdk, G);
    detail::padded_output_done(ex, d, dQp, dq, dk);
  } else if (q) {
    ex.zero(dq, d.streams * d.steps * dk);
  }
  detail::padded_output_done(ex, d, dKp, dk_out, dk);
  detail::padded_output_done(ex, d, dVp, dv_out, dv);
}

}  // namespace chunked
}  // namespace fwp
