// CpuBackend: the ops of the non-causal attention kinds over right-padded
// batches (core/backend/padded_attention.h). Streams are independent, so every
// op runs streams in parallel; the products are Eigen GEMMs per stream (the
// memory of one stream is one [d_a x steps] x [steps x d_b] product).
#include <algorithm>
#include <cmath>

#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

template <typename T>
void CpuBackend<T>::zero_padded_steps(T* x, const int32_t* lengths, int64_t batch, int64_t groups, int64_t steps,
                                      int64_t d) {
  if (batch <= 0 || groups <= 0 || steps <= 0 || d <= 0) return;
  cpu::parallel_for(num_threads_, batch * groups, steps * d, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t len = std::min<int64_t>(std::max<int64_t>(lengths[s / groups], 0), steps);
      std::fill(x + (s * steps + len) * d, x + (s + 1) * steps * d, T(0));
    }
  });
}

template <typename T>
void CpuBackend<T>::outer_product_sum(int64_t streams, int64_t steps, int64_t d_a, int64_t d_b, const T* a,
                                      const T* b, T* out) {
  if (streams <= 0 || d_a <= 0 || d_b <= 0) return;
  cpu::parallel_for(num_threads_, streams, 2 * steps * d_a * d_b, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      auto O = cpu::row_map(out + s * d_a * d_b, d_a, d_b, d_b);
      if (steps <= 0) {
        O.setZero();
        continue;
      }
      const auto A = cpu::row_map(a + s * steps * d_a, steps, d_a, d_a);
      const auto B = cpu::row_map(b + s * steps * d_b, steps, d_b, d_b);
      O.noalias() = A.transpose() * B;
    }
  });
}

template <typename T>
void CpuBackend<T>::outer_product_sum_backward(int64_t streams, int64_t steps, int64_t d_a, int64_t d_b,
                                               const T* a, const T* b, const T* d_out, T* da, T* db) {
  if (streams <= 0 || steps <= 0) return;
  cpu::parallel_for(num_threads_, streams, 4 * steps * d_a * d_b, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const auto A = cpu::row_map(a + s * steps * d_a, steps, d_a, d_a);
      const auto B = cpu::row_map(b + s * steps * d_b, steps, d_b, d_b);
      const auto dO = cpu::row_map(d_out + s * d_a * d_b, d_a, d_b, d_b);
      cpu::row_map(da + s * steps * d_a, steps, d_a, d_a).noalias() = B * dO.transpose();
      cpu::row_map(db + s * steps * d_b, steps, d_b, d_b).noalias() = A * dO;
    }
  });
}

template <typename T>
void CpuBackend<T>::masked_attention_forward(int64_t streams, int64_t groups, int64_t queries, int64_t keys,
                                             int64_t key_stride, int64_t d, const T* q, const T* k, const T* v,
                                             const int32_t* key_lengths, T scale, T* out, T* lse) {
  if (streams <= 0 || queries <= 0 || d <= 0) return;
  cpu::parallel_for(num_threads_, streams, 4 * queries * keys * d, [&](int64_t s0, int64_t s1) {
    cpu::RowMat<T> p;  // scores, then probabilities, [queries, len]
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t len = std::min<int64_t>(key_lengths[s / groups], keys);
      const auto Q = cpu::row_map(q + s * queries * d, queries, d, d);
      const auto K = cpu::row_map(k + s * key_stride * d, len, d, d);
      const auto V = cpu::row_map(v + s * key_stride * d, len, d, d);
      auto O = cpu::row_map(out + s * queries * d, queries, d, d);
      p.noalias() = scale * (Q * K.transpose());
      for (int64_t j = 0; j < queries; ++j) {
        const T mx = p.row(j).maxCoeff();
        p.row(j) = (p.row(j).array() - mx).exp().matrix();
        const T sum = p.row(j).sum();
        p.row(j) /= sum;
        if (lse) lse[s * queries + j] = mx + std::log(sum);
      }
      O.noalias() = p * V;
    }
  });
}

template <typename T>
void CpuBackend<T>::masked_attention_backward(int64_t streams, int64_t groups, int64_t queries, int64_t keys,
                                              int64_t d, const T* q, const T* k, const T* v,
                                              const int32_t* key_lengths, const T* out, const T* lse,
                                              const T* d_out, T scale, T* dq, T* dk, T* dv) {
  if (streams <= 0 || d <= 0) return;
  cpu::parallel_for(num_threads_, streams, 8 * queries * keys * d, [&](int64_t s0, int64_t s1) {
    cpu::RowMat<T> p, ds;
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t len = std::min<int64_t>(key_lengths[s / groups], keys);
      const auto Q = cpu::row_map(q + s * queries * d, queries, d, d);
      const auto K = cpu::row_map(k + s * keys * d, len, d, d);
      const auto V = cpu::row_map(v + s * keys * d, len, d, d);
      const auto O = cpu::row_map(out + s * queries * d, queries, d, d);
      const auto dO = cpu::row_map(d_out + s * queries * d, queries, d, d);
      // Probabilities again from the stored log-sum-exp.
      p.noalias() = scale * (Q * K.transpose());
      for (int64_t j = 0; j < queries; ++j) p.row(j) = (p.row(j).array() - lse[s * queries + j]).exp().matrix();
      // d score_ji = p_ji (dO_j . v_i - dO_j . out_j)
      ds.noalias() = dO * V.transpose();
      for (int64_t j = 0; j < queries; ++j) {
        const T centre = dO.row(j).dot(O.row(j));
        ds.row(j) = (p.row(j).array() * (ds.row(j).array() - centre)).matrix();
      }
      cpu::row_map(dq + s * queries * d, queries, d, d).noalias() = scale * (ds * K);
      cpu::row_map(dk + s * keys * d, len, d, d).noalias() = scale * (ds.transpose() * Q);
      cpu::row_map(dv + s * keys * d, len, d, d).noalias() = p.transpose() * dO;
      // Masked keys received no attention: exactly zero gradient.
      std::fill(dk + (s * keys + len) * d, dk + (s + 1) * keys * d, T(0));
      std::fill(dv + (s * keys + len) * d, dv + (s + 1) * keys * d, T(0));
    }
  });
}

#define FWP_INSTANTIATE_PADDED_ATTENTION(T)                                                                       \
  template void CpuBackend<T>::zero_padded_steps(T*, const int32_t*, int64_t, int64_t, int64_t, int64_t);        \
  template void CpuBackend<T>::outer_product_sum(int64_t, int64_t, int64_t, int64_t, const T*, const T*, T*);    \
  template void CpuBackend<T>::outer_product_sum_backward(int64_t, int64_t, int64_t, int64_t, const T*,          \
                                                          const T*, const T*, T*, T*);                          \
  template void CpuBackend<T>::masked_attention_forward(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,    \
                                                        const T*, const T*, const T*, const int32_t*, T, T*,    \
                                                        T*);                                                    \
  template void CpuBackend<T>::masked_attention_backward(int64_t, int64_t, int64_t, int64_t, int64_t, const T*,  \
                                                         const T*, const T*, const int32_t*, const T*,          \
                                                         const T*, const T*, T, T*, T*, T*);

FWP_INSTANTIATE_PADDED_ATTENTION(float)
FWP_INSTANTIATE_PADDED_ATTENTION(double)
#undef FWP_INSTANTIATE_PADDED_ATTENTION

}  // namespace fwp
