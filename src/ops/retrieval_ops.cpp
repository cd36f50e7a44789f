// CpuBackend: the ops of the associative-retrieval model that the layer ops do
// not cover (core/backend/retrieval_ops.h): per-stream sums over steps and
// reading queries out of a fixed fast-weight state. Every op works stream by
// stream, so streams run in parallel. (Its cross attention is in
// softmax_attention.cpp.)
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

#define FWP_INSTANTIATE_RETRIEVAL_OPS(T)                                                                      \
  template void CpuBackend<T>::step_sum(const T*, T*, int64_t, int64_t, int64_t);                             \
  template void CpuBackend<T>::step_broadcast_accumulate(const T*, T*, int64_t, int64_t, int64_t);            \
  template void CpuBackend<T>::fast_weight_readout_forward(const FastWeightShape&, const T*, const T*,       \
                                                           const T*, T, T*, T*);                             \
  template void CpuBackend<T>::fast_weight_readout_backward(const FastWeightShape&, const T*, const T*,      \
                                                            const T*, const T*, const T*, const T*, T*, T*, \
                                                            T*);

FWP_INSTANTIATE_RETRIEVAL_OPS(float)
FWP_INSTANTIATE_RETRIEVAL_OPS(double)
#undef FWP_INSTANTIATE_RETRIEVAL_OPS

}  // namespace fwp
