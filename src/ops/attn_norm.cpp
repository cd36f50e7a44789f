// CpuBackend: attention normalisation of the sum rule,
//   z_t = z_in + sum_{j<=t} k_j,  denom_t = q_t . z_t + eps,  y_t = o_t / denom_t,
// forward and backward in O(steps * d) per stream, streams in parallel.
#include <algorithm>
#include <vector>

#include "core/aligned_vector.h"
#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

using cpu::ArrMap;
using cpu::ConstArrMap;

template <typename T>
void CpuBackend<T>::attn_norm_forward(const FastWeightShape& shape, const T* q, const T* k, const T* z_in,
                                      const T* o, T eps, T* y, T* denom, T* z_out) {
  const int64_t steps = shape.steps, dk = shape.d_key, dv = shape.d_value;
  cpu::parallel_for(num_threads_, shape.streams, steps * (3 * dk + dv), [&](int64_t s0, int64_t s1) {
    Eigen::Array<T, Eigen::Dynamic, 1> z(dk);
    for (int64_t s = s0; s < s1; ++s) {
      if (z_in) {
        z = ConstArrMap<T>(z_in + s * dk, dk);
      } else {
        z.setZero();
      }
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t row = s * steps + t;
        z += ConstArrMap<T>(k + row * dk, dk);
        const T den = (ConstArrMap<T>(q + row * dk, dk) * z).sum() + eps;
        denom[row] = den;
        // Elementwise, so y == o is allowed.
        ArrMap<T>(y + row * dv, dv) = ConstArrMap<T>(o + row * dv, dv) / den;
      }
      if (z_out) ArrMap<T>(z_out + s * dk, dk) = z;
    }
  });
}

template <typename T>
void CpuBackend<T>::attn_norm_backward(const FastWeightShape& shape, const T* q, const T* k, const T* z_in,
                                       const T* y, const T* denom, const T* dy, T* d_o, T* dq, T* dk,
                                       T* d_z_in) {
  // Where q_t . z_t = 0 (sparse DPFP features sharing nothing with the keys so
  // far) denom_t = eps, o_t = 0 and d_o_t = dy_t / eps: the fast-weight backward
  // then gives dq_t = W_t^T dy_t / eps, a true (large) gradient that is right
  // only if W_t is exact, zero columns included (the fast-weight ops read the
  // forward's saved states for that; rebuilt states were off by ~1e-7 |W_T|).
  // With g_t = dL/d denom_t = -(dy_t . y_t) / denom_t:
  //   d_o_t = dy_t / denom_t,   dq_t = g_t z_t,
  //   dk_j = sum_{t>=j} g_t q_t (a reverse running sum),  d_z_in = sum_t g_t q_t.
  const int64_t steps = shape.steps, dkey = shape.d_key, dv = shape.d_value;
  cpu::parallel_for(num_threads_, shape.streams, steps * (5 * dkey + 3 * dv), [&](int64_t s0, int64_t s1) {
    AlignedVector<T> g(static_cast<size_t>(steps));
    Eigen::Array<T, Eigen::Dynamic, 1> acc(dkey);
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t base = s * steps;
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t row = base + t;
        const auto dyr = ConstArrMap<T>(dy + row * dv, dv);
        const T den = denom[row];
        g[t] = -(dyr * ConstArrMap<T>(y + row * dv, dv)).sum() / den;
        // After g_t: d_o may alias dy.
        ArrMap<T>(d_o + row * dv, dv) = dyr / den;
      }
      acc.setZero();
      for (int64_t t = steps - 1; t >= 0; --t) {
        const int64_t row = base + t;
        acc += g[t] * ConstArrMap<T>(q + row * dkey, dkey);
        ArrMap<T>(dk + row * dkey, dkey) = acc;
      }
      if (d_z_in) ArrMap<T>(d_z_in + s * dkey, dkey) = acc;
      // acc now becomes z_t, rebuilt forwards.
      if (z_in) {
        acc = ConstArrMap<T>(z_in + s * dkey, dkey);
      } else {
        acc.setZero();
      }
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t row = base + t;
        acc += ConstArrMap<T>(k + row * dkey, dkey);
        ArrMap<T>(dq + row * dkey, dkey) = g[t] * acc;
      }
    }
  });
}

#define FWP_INSTANTIATE_ATTN_NORM(T)                                                                        \
  template void CpuBackend<T>::attn_norm_forward(const FastWeightShape&, const T*, const T*, const T*,      \
                                                 const T*, T, T*, T*, T*);                                  \
  template void CpuBackend<T>::attn_norm_backward(const FastWeightShape&, const T*, const T*, const T*,     \
                                                  const T*, const T*, const T*, T*, T*, T*, T*);

FWP_INSTANTIATE_ATTN_NORM(float)
FWP_INSTANTIATE_ATTN_NORM(double)
#undef FWP_INSTANTIATE_ATTN_NORM

}  // namespace fwp
