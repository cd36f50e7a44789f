// CpuBackend: the ops of the associative-retrieval model that the layer ops do
// not cover: per-stream sums over steps, reading queries out of a fixed
// fast-weight state, and non-causal softmax attention of queries over a
// sequence. Every op works stream by stream, so streams run in parallel.
#include <cmath>
#include <limits>

#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

template <typename T>
void CpuBackend<T>::step_sum(const T* x, T* out, int64_t streams, int64_t steps, int64_t d) {
  if (streams <= 0 || d <= 0) return;
  cpu::parallel_for(num_threads_, streams, steps * d, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      auto acc = cpu::ArrMap<T>(out + s * d, d);
      acc.setZero();
      for (int64_t t = 0; t < steps; ++t) acc += cpu::ConstArrMap<T>(x + (s * steps + t) * d, d);
    }
  });
}

template <typename T>
void CpuBackend<T>::step_broadcast_accumulate(const T* v, T* x, int64_t streams, int64_t steps, int64_t d) {
  if (streams <= 0 || d <= 0) return;
  cpu::parallel_for(num_threads_, streams, steps * d, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const auto add = cpu::ConstArrMap<T>(v + s * d, d);
      for (int64_t t = 0; t < steps; ++t) cpu::ArrMap<T>(x + (s * steps + t) * d, d) += add;
    }
  });
}

template <typename T>
void CpuBackend<T>::fast_weight_readout_forward(const FastWeightShape& shape, const T* state, const T* z,
                                                const T* q, T eps, T* y, T* denom) {
  const int64_t nq = shape.steps, dk = shape.d_key, dv = shape.d_value;
  if (shape.streams <= 0 || nq <= 0 || dv <= 0) return;
  cpu::parallel_for(num_threads_, shape.streams, 2 * nq * dk * dv, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const auto Q = cpu::row_map(q + s * nq * dk, nq, dk, dk);
      const auto W = cpu::row_map(state + s * dv * dk, dv, dk, dk);
      auto Y = cpu::row_map(y + s * nq * dv, nq, dv, dv);
      Y.noalias() = Q * W.transpose();
      if (z) {
        const auto zs = cpu::ConstVecMap<T>(z + s * dk, dk);
        for (int64_t j = 0; j < nq; ++j) {
          const T den = Q.row(j).dot(zs.transpose()) + eps;
          denom[s * nq + j] = den;
          Y.row(j) /= den;
        }
      }
    }
  });
}

template <typename T>
void CpuBackend<T>::fast_weight_readout_backward(const FastWeightShape& shape, const T* state, const T* z,
                                                 const T* q, const T* y, const T* denom, const T* dy, T* dq,
                                                 T* d_state, T* d_z) {
  const int64_t nq = shape.steps, dk = shape.d_key, dv = shape.d_value;
  if (shape.streams <= 0) return;
  cpu::parallel_for(num_threads_, shape.streams, 4 * nq * dk * dv, [&](int64_t s0, int64_t s1) {
    cpu::RowMat<T> d_o;  // dL/d(W q) per query, reused across the thread's streams
    Eigen::Matrix<T, Eigen::Dynamic, 1> d_den;
    for (int64_t s = s0; s < s1; ++s) {
      const auto Q = cpu::row_map(q + s * nq * dk, nq, dk, dk);
      const auto W = cpu::row_map(state + s * dv * dk, dv, dk, dk);
      const auto dY = cpu::row_map(dy + s * nq * dv, nq, dv, dv);
      auto dQ = cpu::row_map(dq + s * nq * dk, nq, dk, dk);
      auto dW = cpu::row_map(d_state + s * dv * dk, dv, dk, dk);
      if (!z) {
        dQ.noalias() = dY * W;
        dW.noalias() = dY.transpose() * Q;
        continue;
      }
      // y = o / den: do = dy / den, d den = -(dy . y) / den, and den = z . q + eps.
      const auto Y = cpu::row_map(y + s * nq * dv, nq, dv, dv);
      const auto zs = cpu::ConstVecMap<T>(z + s * dk, dk);
      d_o.resize(nq, dv);
      d_den.resize(nq);
      for (int64_t j = 0; j < nq; ++j) {
        const T den = denom[s * nq + j];
        d_o.row(j) = dY.row(j) / den;
        d_den(j) = -dY.row(j).dot(Y.row(j)) / den;
      }
      dQ.noalias() = d_o * W;
      dQ.noalias() += d_den * zs.transpose();
      dW.noalias() = d_o.transpose() * Q;
      cpu::VecMap<T>(d_z + s * dk, dk).noalias() = Q.transpose() * d_den;
    }
  });
}

template <typename T>
void CpuBackend<T>::cross_attention_forward(int64_t streams, int64_t queries, int64_t keys, int64_t d,
                                            int64_t d_value, const T* q, const T* k, const T* v, T scale, T* out,
                                            T* lse) {
  if (streams <= 0 || queries <= 0) return;
  const int64_t cost = 2 * queries * keys * (d + d_value);
  cpu::parallel_for(num_threads_, streams, cost, [&](int64_t s0, int64_t s1) {
    cpu::RowMat<T> p;  // scores, then probabilities, [queries, keys]
    for (int64_t s = s0; s < s1; ++s) {
      const auto Q = cpu::row_map(q + s * queries * d, queries, d, d);
      const auto K = cpu::row_map(k + s * keys * d, keys, d, d);
      const auto V = cpu::row_map(v + s * keys * d_value, keys, d_value, d_value);
      auto O = cpu::row_map(out + s * queries * d_value, queries, d_value, d_value);
      p.noalias() = scale * (Q * K.transpose());
      for (int64_t j = 0; j < queries; ++j) {
        const T mx = keys > 0 ? p.row(j).maxCoeff() : T(0);
        p.row(j) = (p.row(j).array() - mx).exp().matrix();
        const T sum = p.row(j).sum();
        p.row(j) /= sum;
        lse[s * queries + j] = mx + std::log(sum);
      }
      O.noalias() = p * V;
    }
  });
}

template <typename T>
void CpuBackend<T>::cross_attention_backward(int64_t streams, int64_t queries, int64_t keys, int64_t d,
                                             int64_t d_value, const T* q, const T* k, const T* v, const T* out,
                                             const T* lse, const T* d_out, T scale, T* dq, T* dk, T* dv) {
  if (streams <= 0) return;
  const int64_t cost = 4 * queries * keys * (d + d_value);
  cpu::parallel_for(num_threads_, streams, cost, [&](int64_t s0, int64_t s1) {
    cpu::RowMat<T> p, ds;
    for (int64_t s = s0; s < s1; ++s) {
      const auto Q = cpu::row_map(q + s * queries * d, queries, d, d);
      const auto K = cpu::row_map(k + s * keys * d, keys, d, d);
      const auto V = cpu::row_map(v + s * keys * d_value, keys, d_value, d_value);
      const auto O = cpu::row_map(out + s * queries * d_value, queries, d_value, d_value);
      const auto dO = cpu::row_map(d_out + s * queries * d_value, queries, d_value, d_value);
      // Recompute the probabilities from the stored log-sum-exp.
      p.noalias() = scale * (Q * K.transpose());
      for (int64_t j = 0; j < queries; ++j) {
        p.row(j) = (p.row(j).array() - lse[s * queries + j]).exp().matrix();
      }
      // d score_ji = p_ji (dO_j . v_i - dO_j . out_j)
      ds.noalias() = dO * V.transpose();
      for (int64_t j = 0; j < queries; ++j) {
        const T row_dot = dO.row(j).dot(O.row(j));
        ds.row(j) = (p.row(j).array() * (ds.row(j).array() - row_dot)).matrix();
      }
      cpu::row_map(dq + s * queries * d, queries, d, d).noalias() = scale * (ds * K);
      cpu::row_map(dk + s * keys * d, keys, d, d).noalias() = scale * (ds.transpose() * Q);
      if (dv) cpu::row_map(dv + s * keys * d_value, keys, d_value, d_value).noalias() = p.transpose() * dO;
    }
  });
}

#define FWP_INSTANTIATE_RETRIEVAL_OPS(T)                                                                      \
  template void CpuBackend<T>::step_sum(const T*, T*, int64_t, int64_t, int64_t);                             \
  template void CpuBackend<T>::step_broadcast_accumulate(const T*, T*, int64_t, int64_t, int64_t);            \
  template void CpuBackend<T>::fast_weight_readout_forward(const FastWeightShape&, const T*, const T*,       \
                                                           const T*, T, T*, T*);                             \
  template void CpuBackend<T>::fast_weight_readout_backward(const FastWeightShape&, const T*, const T*,      \
                                                            const T*, const T*, const T*, const T*, T*, T*, \
                                                            T*);                                             \
  template void CpuBackend<T>::cross_attention_forward(int64_t, int64_t, int64_t, int64_t, int64_t, const T*, \
                                                       const T*, const T*, T, T*, T*);                       \
  template void CpuBackend<T>::cross_attention_backward(int64_t, int64_t, int64_t, int64_t, int64_t,         \
                                                        const T*, const T*, const T*, const T*, const T*,    \
                                                        const T*, T, T*, T*, T*);

FWP_INSTANTIATE_RETRIEVAL_OPS(float)
FWP_INSTANTIATE_RETRIEVAL_OPS(double)
#undef FWP_INSTANTIATE_RETRIEVAL_OPS

}  // namespace fwp
