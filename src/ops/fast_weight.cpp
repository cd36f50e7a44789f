// The fast-weight recurrence on the CPU: sum rule and delta rule, each as a
// per-step recurrence and as the chunkwise-parallel (WY / UT) form of Yang et
// al. 2024, forward and backward.
//
// Per stream the state W is [d_value][d_key], row-major, and
//   sum rule:   u_t = v_t
//   delta rule: u_t = beta_t (v_t - W_{t-1} k_t)
//   W_t = W_{t-1} + u_t k_t^T,   out_t = W_t q_t.
//
// The backward never stores per-step states. It walks backwards from
// state_out and reconstructs earlier states from the u the forward wrote,
// W_{t-1} = W_t - u_t k_t^T (per step in the recurrent form, per chunk in the
// chunked form). Both forms write the same u, so the forward of one may feed
// the backward of the other. Memory beyond the inputs is O(d_value * d_key)
// per thread (plus O(C^2 + C d) for the chunked form).
//
// Streams are independent and are spread over the backend's threads; each
// thread owns its scratch space.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include <Eigen/Core>
#include <Eigen/Dense>

#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {
namespace {

using cpu::row_map;

// The per-stream slices of the op's arguments (null where the op has none).
template <typename T>
struct StreamIn {
  const T* q;
  const T* k;
  const T* v;
  const T* beta;
};

template <typename T>
StreamIn<T> stream_in(const FastWeightShape& s, int64_t i, const T* q, const T* k, const T* v, const T* beta) {
  const int64_t tk = s.steps * s.d_key;
  const int64_t tv = s.steps * s.d_value;
  return {q ? q + i * tk : nullptr, k + i * tk, v + i * tv, beta ? beta + i * s.steps : nullptr};
}

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T acc = T(0);
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += a[j] * b[j];
  return acc;
}

// ---------------------------------------------------------------------------
// Recurrent form. One pass over the rows of W per step: row i of the update
// only needs row i of W (vbar_i = W_i . k, u_i, W_i += u_i k, out_i = W_i . q),
// so every row is read and written once while it sits in L1.
// ---------------------------------------------------------------------------

template <typename T, bool kDelta, bool kQuery>
void recurrent_forward_stream(const StreamIn<T>& in, int64_t steps, int64_t dk, int64_t dv, T* W, T* out,
                              T* u) {
  for (int64_t t = 0; t < steps; ++t) {
    const T* kt = in.k + t * dk;
    const T* qt = kQuery ? in.q + t * dk : nullptr;
    const T* vt = in.v + t * dv;
    T* ut = u + t * dv;
    T* ot = kQuery ? out + t * dv : nullptr;
    const T b = kDelta ? in.beta[t] : T(1);
    for (int64_t i = 0; i < dv; ++i) {
      T* w = W + i * dk;
      const T ui = kDelta ? b * (vt[i] - dot(w, kt, dk)) : vt[i];
      ut[i] = ui;
      if (kQuery) {
        T o = T(0);
#pragma omp simd reduction(+ : o)
        for (int64_t j = 0; j < dk; ++j) {
          w[j] += ui * kt[j];
          o += w[j] * qt[j];
        }
        ot[i] = o;
      } else {
#pragma omp simd
        for (int64_t j = 0; j < dk; ++j) w[j] += ui * kt[j];
      }
    }
  }
}

// Backward of the recurrent form for one stream, t = T..1. On entry W holds
// W_T (state_out) and dW the gradient of W_T; on exit W holds W_0 and dW the
// gradient of W_0. kOutGrad: q and d_out are present. The per-row work is
// (G = dW + d_out_t q_t^T is the gradient of W_t):
//   dq_t += d_out_i W_i,  G_i = dW_i + d_out_i q_t,  du_i = G_i . k_t,
//   dk_t += u_i G_i,  W_i -= u_i k_t  (now W_{t-1}),
//   delta: vbar_i = W_i . k_t, dbeta_t += du_i (v_i - vbar_i), dv_i = beta du_i,
//          dW_i = G_i - beta du_i k_t, dk_t -= beta du_i W_i.
// dbeta uses the recomputed vbar rather than u / beta, which is unsafe for tiny beta.
template <typename T, bool kDelta, bool kOutGrad>
void recurrent_backward_stream(const StreamIn<T>& in, const T* u, const T* d_out, int64_t steps, int64_t dk,
                               int64_t dv, T* W, T* dW, T* dq, T* dkey, T* dval, T* dbeta) {
  // Without the delta rule and without an output gradient nothing reads W.
  constexpr bool kNeedW = kDelta || kOutGrad;
  for (int64_t t = steps - 1; t >= 0; --t) {
    const T* kt = in.k + t * dk;
    const T* qt = kOutGrad ? in.q + t * dk : nullptr;
    const T* vt = in.v + t * dv;
    const T* ut = u + t * dv;
    const T* gt = kOutGrad ? d_out + t * dv : nullptr;
    T* dqt = kOutGrad ? dq + t * dk : nullptr;
    T* dkt = dkey + t * dk;
    T* dvt = dval + t * dv;
    const T b = kDelta ? in.beta[t] : T(1);
    if (kOutGrad) std::fill(dqt, dqt + dk, T(0));
    std::fill(dkt, dkt + dk, T(0));
    T db = T(0);
    for (int64_t i = 0; i < dv; ++i) {
      T* w = W + i * dk;
      T* g = dW + i * dk;
      T du = T(0);
      if (kOutGrad) {
        const T go = gt[i];
#pragma omp simd reduction(+ : du)
        for (int64_t j = 0; j < dk; ++j) {
          dqt[j] += go * w[j];
          g[j] += go * qt[j];
          du += g[j] * kt[j];
        }
      } else {
        du = dot(g, kt, dk);
      }
      const T ui = ut[i];
      if (kNeedW) {
        T vbar = T(0);
#pragma omp simd reduction(+ : vbar)
        for (int64_t j = 0; j < dk; ++j) {
          dkt[j] += ui * g[j];
          w[j] -= ui * kt[j];
          vbar += w[j] * kt[j];
        }
        if (kDelta) {
          db += du * (vt[i] - vbar);
          dvt[i] = b * du;
          const T c = -b * du;
#pragma omp simd
          for (int64_t j = 0; j < dk; ++j) {
            g[j] += c * kt[j];
            dkt[j] += c * w[j];
          }
        } else {
          dvt[i] = du;
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < dk; ++j) dkt[j] += ui * g[j];
        dvt[i] = du;
      }
    }
    if (kDelta) dbeta[t] = db;
  }
}

// ---------------------------------------------------------------------------
// Chunked form. For a chunk of c steps with rows K, Q [c, dk], V, U [c, dv],
// beta [c] and state W at the chunk start:
//   A = strictly_lower(diag(beta) K K^T)
//   (I + A) U = diag(beta) (V - K W^T)          (delta; U = V for the sum rule)
//   O = Q W^T + lower_incl(Q K^T) U
//   W <- W + U^T K
// Row i of the solve is u_i + beta_i sum_{j<i} (k_i . k_j) u_j = beta_i (v_i - W k_i),
// i.e. exactly the recurrence, so U is the u of the recurrent form.
// ---------------------------------------------------------------------------

// Scratch space of one thread for the chunked form.
template <typename T>
struct ChunkScratch {
  std::vector<T> g, a, e, du, kw;
  ChunkScratch(int64_t chunk, int64_t dv)
      : g(static_cast<size_t>(chunk * chunk)),
        a(static_cast<size_t>(chunk * chunk)),
        e(static_cast<size_t>(chunk * chunk)),
        du(static_cast<size_t>(chunk * dv)),
        kw(static_cast<size_t>(chunk * dv)) {}
};

template <typename T>
void chunked_forward_stream(bool delta, const StreamIn<T>& in, int64_t steps, int64_t dk, int64_t dv,
                            int64_t chunk, ChunkScratch<T>& ws, T* W_ptr, T* out, T* u) {
  auto W = row_map(W_ptr, dv, dk, dk);
  for (int64_t t0 = 0; t0 < steps; t0 += chunk) {
    const int64_t c = std::min(chunk, steps - t0);
    const auto K = row_map(in.k + t0 * dk, c, dk, dk);
    const auto V = row_map(in.v + t0 * dv, c, dv, dv);
    auto U = row_map(u + t0 * dv, c, dv, dv);
    if (delta) {
      const T* b = in.beta + t0;
      U = V;
      U.noalias() -= K * W.transpose();
      auto A = row_map(ws.a.data(), c, c, c);
      A.noalias() = K * K.transpose();
      for (int64_t i = 0; i < c; ++i) {
        U.row(i) *= b[i];
        A.row(i).head(i) *= b[i];  // only the strictly lower part is read
      }
      A.template triangularView<Eigen::UnitLower>().solveInPlace(U);
    } else {
      U = V;
    }
    if (in.q) {
      const auto Q = row_map(in.q + t0 * dk, c, dk, dk);
      auto O = row_map(out + t0 * dv, c, dv, dv);
      auto P = row_map(ws.g.data(), c, c, c);
      P.noalias() = Q * K.transpose();
      O.noalias() = Q * W.transpose();
      O.noalias() += P.template triangularView<Eigen::Lower>() * U;
    }
    W.noalias() += U.transpose() * K;
  }
}

// Backward of the chunked form for one stream, chunks in reverse order. On
// entry W holds the final state and dW its gradient; on exit W holds W_0 and
// dW its gradient. Per chunk (W now the chunk-start state, dW the gradient of
// the chunk-end state, dO the output gradient):
//   dU = K dW^T + lower_incl(Q K^T)^T dO      dK = U dW + dP^T Q
//   dP = lower_incl(dO U^T)                    dQ = dO W + dP K
//   dW_start = dW + dO^T Q  (+ the delta terms below)
// Delta rule, through (I + A) U = R, R = diag(beta) (V - K W^T):
//   dR = (I + A)^{-T} dU,  dA = -strictly_lower(dR U^T),
//   dbeta_i = sum_{j<i} dA_ij (k_i . k_j) + dR_i . (v_i - W k_i),
//   dK += (D + D^T) K with D = diag(beta) dA,  dV = diag(beta) dR,
//   Z = -diag(beta) dR:  dK += Z W,  dW_start += Z^T K.
template <typename T>
void chunked_backward_stream(bool delta, const StreamIn<T>& in, const T* u, const T* d_out, int64_t steps,
                             int64_t dk, int64_t dv, int64_t chunk, ChunkScratch<T>& ws, T* W_ptr, T* dW_ptr,
                             T* dq, T* dkey, T* dval, T* dbeta) {
  auto W = row_map(W_ptr, dv, dk, dk);
  auto dW = row_map(dW_ptr, dv, dk, dk);
  const int64_t n_chunks = (steps + chunk - 1) / chunk;
  for (int64_t ci = n_chunks - 1; ci >= 0; --ci) {
    const int64_t t0 = ci * chunk;
    const int64_t c = std::min(chunk, steps - t0);
    const auto K = row_map(in.k + t0 * dk, c, dk, dk);
    const auto U = row_map(u + t0 * dv, c, dv, dv);
    auto dK = row_map(dkey + t0 * dk, c, dk, dk);
    auto dU = row_map(ws.du.data(), c, dv, dv);

    W.noalias() -= U.transpose() * K;  // the chunk-start state
    dU.noalias() = K * dW.transpose();
    dK.noalias() = U * dW;

    if (in.q) {
      auto dQ = row_map(dq + t0 * dk, c, dk, dk);
      if (d_out) {
        const auto Q = row_map(in.q + t0 * dk, c, dk, dk);
        const auto dO = row_map(d_out + t0 * dv, c, dv, dv);
        auto P = row_map(ws.g.data(), c, c, c);
        auto dP = row_map(ws.e.data(), c, c, c);
        P.noalias() = Q * K.transpose();
        dU.noalias() += P.template triangularView<Eigen::Lower>().transpose() * dO;
        dP.noalias() = dO * U.transpose();
        dQ.noalias() = dO * W;
        dQ.noalias() += dP.template triangularView<Eigen::Lower>() * K;
        dK.noalias() += dP.template triangularView<Eigen::Lower>().transpose() * Q;
        dW.noalias() += dO.transpose() * Q;
      } else {
        dQ.setZero();
      }
    }

    auto dV = row_map(dval + t0 * dv, c, dv, dv);
    if (!delta) {
      dV = dU;
      continue;
    }

    const T* b = in.beta + t0;
    const auto V = row_map(in.v + t0 * dv, c, dv, dv);
    auto G = row_map(ws.g.data(), c, c, c);  // K K^T
    auto A = row_map(ws.a.data(), c, c, c);  // diag(beta) K K^T, strictly lower part
    auto D = row_map(ws.e.data(), c, c, c);
    auto KW = row_map(ws.kw.data(), c, dv, dv);
    G.noalias() = K * K.transpose();
    for (int64_t i = 0; i < c; ++i) A.row(i).head(i) = b[i] * G.row(i).head(i);
    A.template triangularView<Eigen::UnitLower>().transpose().solveInPlace(dU);  // dU is now dR
    D.noalias() = dU * U.transpose();
    KW = V;
    KW.noalias() -= K * W.transpose();  // V - K W^T
    for (int64_t i = 0; i < c; ++i) {
      // dA_ij = -D_ij for j < i; D becomes the symmetric diag(beta) dA + (diag(beta) dA)^T.
      T db = -D.row(i).head(i).dot(G.row(i).head(i));
      db += dU.row(i).dot(KW.row(i));
      dbeta[t0 + i] = db;
      D.row(i).head(i) *= -b[i];
      D(i, i) = T(0);
    }
    for (int64_t i = 0; i < c; ++i) {
      for (int64_t j = i + 1; j < c; ++j) D(i, j) = D(j, i);
    }
    dK.noalias() += D * K;
    for (int64_t i = 0; i < c; ++i) {
      dV.row(i) = b[i] * dU.row(i);
      dU.row(i) *= -b[i];  // Z
    }
    dK.noalias() += dU * W;
    dW.noalias() += dU.transpose() * K;
  }
}

// Per-stream cost estimates (scalar operations) for the thread heuristic.
int64_t stream_cost(const FastWeightShape& s) {
  return std::max<int64_t>(1, 4 * s.steps * s.d_key * s.d_value);
}

}  // namespace

// ---------------------------------------------------------------------------
// Algorithm choice. Measured on the 2-core development machine (AVX-512, float,
// forward + backward, 2 threads, Eigen 3.4, see the notes in the commit that
// introduced this): the per-step recurrence is one fused pass over W per step and is
// hard to beat when W is tiny, while the chunked form turns the work into
// [C x d] matrix products whose efficiency grows with d.
// ---------------------------------------------------------------------------
template <typename T>
Algorithm CpuBackend<T>::choose_algorithm(UpdateRule rule, const FastWeightShape& shape) {
  const int64_t d = std::min(shape.d_key, shape.d_value);
  if (shape.steps < 64 || d < 32) return Algorithm::Recurrent;
  (void)rule;
  return Algorithm::Chunked;
}

template <typename T>
int64_t CpuBackend<T>::default_chunk_size(const FastWeightShape& shape) {
  const int64_t d = std::max(shape.d_key, shape.d_value);
  return d <= 32 ? 32 : 64;
}

template <typename T>
void CpuBackend<T>::fast_weight_forward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                        const FastWeightShape& shape, const T* q, const T* k, const T* v,
                                        const T* beta, const T* state_in, T* out, T* u, T* state_out) {
  const int64_t dk = shape.d_key;
  const int64_t dv = shape.d_value;
  const int64_t steps = shape.steps;
  const int64_t state_size = dk * dv;
  const bool delta = rule == UpdateRule::Delta;
  if (algo == Algorithm::Auto) algo = choose_algorithm(rule, shape);
  const int64_t chunk = chunk_size > 0 ? chunk_size : default_chunk_size(shape);

  cpu::parallel_for(num_threads(), shape.streams, stream_cost(shape), [&](int64_t begin, int64_t end) {
    std::unique_ptr<ChunkScratch<T>> ws;
    if (algo == Algorithm::Chunked && steps > 0) {
      ws = std::make_unique<ChunkScratch<T>>(std::min(chunk, steps), dv);
    }
    for (int64_t s = begin; s < end; ++s) {
      T* W = state_out + s * state_size;
      if (!state_in) {
        std::fill(W, W + state_size, T(0));
      } else if (state_in != state_out) {
        std::memcpy(W, state_in + s * state_size, sizeof(T) * static_cast<size_t>(state_size));
      }
      const StreamIn<T> in = stream_in(shape, s, q, k, v, beta);
      T* out_s = q ? out + s * steps * dv : nullptr;
      T* u_s = u + s * steps * dv;
      if (algo == Algorithm::Chunked) {
        chunked_forward_stream(delta, in, steps, dk, dv, chunk, *ws, W, out_s, u_s);
      } else if (delta) {
        if (q) recurrent_forward_stream<T, true, true>(in, steps, dk, dv, W, out_s, u_s);
        else recurrent_forward_stream<T, true, false>(in, steps, dk, dv, W, out_s, u_s);
      } else {
        if (q) recurrent_forward_stream<T, false, true>(in, steps, dk, dv, W, out_s, u_s);
        else recurrent_forward_stream<T, false, false>(in, steps, dk, dv, W, out_s, u_s);
      }
    }
  });
}

template <typename T>
void CpuBackend<T>::fast_weight_backward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                         const FastWeightShape& shape, const T* q, const T* k, const T* v,
                                         const T* beta, const T* u, const T* state_out, const T* d_out,
                                         const T* d_state_out, T* dq, T* dk, T* dv, T* dbeta, T* d_state_in) {
  const int64_t d_key = shape.d_key;
  const int64_t d_value = shape.d_value;
  const int64_t steps = shape.steps;
  const int64_t state_size = d_key * d_value;
  const bool delta = rule == UpdateRule::Delta;
  if (algo == Algorithm::Auto) algo = choose_algorithm(rule, shape);
  const int64_t chunk = chunk_size > 0 ? chunk_size : default_chunk_size(shape);
  // An output gradient only exists together with the query.
  const T* d_out_used = q ? d_out : nullptr;

  cpu::parallel_for(num_threads(), shape.streams, stream_cost(shape), [&](int64_t begin, int64_t end) {
    std::vector<T> W(static_cast<size_t>(state_size));
    std::vector<T> dW(static_cast<size_t>(state_size));
    std::unique_ptr<ChunkScratch<T>> ws;
    if (algo == Algorithm::Chunked && steps > 0) {
      ws = std::make_unique<ChunkScratch<T>>(std::min(chunk, steps), d_value);
    }
    for (int64_t s = begin; s < end; ++s) {
      std::memcpy(W.data(), state_out + s * state_size, sizeof(T) * static_cast<size_t>(state_size));
      if (d_state_out) {
        std::memcpy(dW.data(), d_state_out + s * state_size, sizeof(T) * static_cast<size_t>(state_size));
      } else {
        std::fill(dW.begin(), dW.end(), T(0));
      }
      const StreamIn<T> in = stream_in(shape, s, q, k, v, beta);
      const int64_t off_k = s * steps * d_key;
      const int64_t off_v = s * steps * d_value;
      const T* u_s = u + off_v;
      const T* d_out_s = d_out_used ? d_out_used + off_v : nullptr;
      T* dq_s = q ? dq + off_k : nullptr;
      T* dbeta_s = delta ? dbeta + s * steps : nullptr;
      if (algo == Algorithm::Chunked) {
        chunked_backward_stream(delta, in, u_s, d_out_s, steps, d_key, d_value, chunk, *ws, W.data(), dW.data(),
                                dq_s, dk + off_k, dv + off_v, dbeta_s);
      } else {
        if (q && !d_out_s) std::fill(dq_s, dq_s + steps * d_key, T(0));
        const bool out_grad = d_out_s != nullptr;
        if (delta && out_grad) {
          recurrent_backward_stream<T, true, true>(in, u_s, d_out_s, steps, d_key, d_value, W.data(), dW.data(),
                                                   dq_s, dk + off_k, dv + off_v, dbeta_s);
        } else if (delta) {
          recurrent_backward_stream<T, true, false>(in, u_s, d_out_s, steps, d_key, d_value, W.data(),
                                                    dW.data(), dq_s, dk + off_k, dv + off_v, dbeta_s);
        } else if (out_grad) {
          recurrent_backward_stream<T, false, true>(in, u_s, d_out_s, steps, d_key, d_value, W.data(),
                                                    dW.data(), dq_s, dk + off_k, dv + off_v, dbeta_s);
        } else {
          recurrent_backward_stream<T, false, false>(in, u_s, d_out_s, steps, d_key, d_value, W.data(),
                                                     dW.data(), dq_s, dk + off_k, dv + off_v, dbeta_s);
        }
      }
      if (d_state_in) {
        std::memcpy(d_state_in + s * state_size, dW.data(), sizeof(T) * static_cast<size_t>(state_size));
      }
    }
  });
}

// Only the members defined here are instantiated (the rest of the class lives
// in the other ops files).
#define FWP_INSTANTIATE_FAST_WEIGHT(T)                                                                        \
  template Algorithm CpuBackend<T>::choose_algorithm(UpdateRule, const FastWeightShape&);                     \
  template int64_t CpuBackend<T>::default_chunk_size(const FastWeightShape&);                                 \
  template void CpuBackend<T>::fast_weight_forward(UpdateRule, Algorithm, int64_t, const FastWeightShape&,    \
                                                   const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                                   T*);                                                       \
  template void CpuBackend<T>::fast_weight_backward(UpdateRule, Algorithm, int64_t, const FastWeightShape&,   \
                                                    const T*, const T*, const T*, const T*, const T*,         \
                                                    const T*, const T*, const T*, T*, T*, T*, T*, T*);

FWP_INSTANTIATE_FAST_WEIGHT(float)
FWP_INSTANTIATE_FAST_WEIGHT(double)
#undef FWP_INSTANTIATE_FAST_WEIGHT

}  // namespace fwp
