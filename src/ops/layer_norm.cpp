// CpuBackend: layer normalisation over the last dimension, forward, input
// gradient and parameter gradients. Rows run in parallel; the statistics take
// two passes over a row (mean, then squared deviations), which stays accurate
// in float when |mean| >> std.
#include <cmath>
#include <vector>

#include "core/aligned_vector.h"
#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

template <typename T>
void CpuBackend<T>::layer_norm_forward(const T* x, const T* gain, const T* bias, T eps, T* y, T* mean, T* rstd,
                                       int64_t rows, int64_t d) {
  if (rows <= 0 || d <= 0) return;
  const auto g = cpu::ConstArrMap<T>(gain, d);
  const auto b = cpu::ConstArrMap<T>(bias, d);
  cpu::parallel_for(num_threads_, rows, 6 * d, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const auto xr = cpu::ConstArrMap<T>(x + r * d, d);
      const T mu = xr.sum() / T(d);
      const T var = (xr - mu).square().sum() / T(d);
      const T inv = T(1) / std::sqrt(var + eps);
      mean[r] = mu;
      rstd[r] = inv;
      cpu::ArrMap<T>(y + r * d, d) = (xr - mu) * inv * g + b;
    }
  });
}

template <typename T>
void CpuBackend<T>::layer_norm_backward(const T* x, const T* gain, const T* mean, const T* rstd, const T* dy,
                                        T beta, T* dx, int64_t rows, int64_t d) {
  if (rows <= 0 || d <= 0) return;
  const auto gn = cpu::ConstArrMap<T>(gain, d);
  cpu::parallel_for(num_threads_, rows, 10 * d, [&](int64_t r0, int64_t r1) {
    AlignedVector<T> xhat_buf(static_cast<size_t>(d)), g_buf(static_cast<size_t>(d));
    auto xhat = cpu::ArrMap<T>(xhat_buf.data(), d);
    auto g = cpu::ArrMap<T>(g_buf.data(), d);
    for (int64_t r = r0; r < r1; ++r) {
      xhat = (cpu::ConstArrMap<T>(x + r * d, d) - mean[r]) * rstd[r];
      g = cpu::ConstArrMap<T>(dy + r * d, d) * gn;
      const T mean_g = g.sum() / T(d);
      const T mean_gx = (g * xhat).sum() / T(d);
      auto out = cpu::ArrMap<T>(dx + r * d, d);
      if (beta == T(0)) {
        out = rstd[r] * (g - mean_g - xhat * mean_gx);
      } else {
        out = rstd[r] * (g - mean_g - xhat * mean_gx) + beta * out;
      }
    }
  });
}

template <typename T>
void CpuBackend<T>::layer_norm_param_grad_accumulate(const T* x, const T* mean, const T* rstd, const T* dy,
                                                     T* dgain, T* dbias, int64_t rows, int64_t d) {
  if (rows <= 0 || d <= 0) return;
  const int nt = cpu::threads_for(num_threads_, rows, 4 * d);
  // One partial sum per thread, added in a fixed order: the result does not
  // depend on scheduling (as bias_grad_accumulate).
  AlignedVector<T> partial(static_cast<size_t>(2 * nt * d), T(0));
  cpu::parallel_for(nt, nt, cpu::kMinWorkPerThread, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      auto acc_g = cpu::ArrMap<T>(partial.data() + 2 * p * d, d);
      auto acc_b = cpu::ArrMap<T>(partial.data() + (2 * p + 1) * d, d);
      for (int64_t r = rows * p / nt; r < rows * (p + 1) / nt; ++r) {
        const auto dyr = cpu::ConstArrMap<T>(dy + r * d, d);
        acc_g += dyr * (cpu::ConstArrMap<T>(x + r * d, d) - mean[r]) * rstd[r];
        acc_b += dyr;
      }
    }
  });
  auto out_g = cpu::ArrMap<T>(dgain, d);
  auto out_b = cpu::ArrMap<T>(dbias, d);
  for (int p = 0; p < nt; ++p) {
    out_g += cpu::ConstArrMap<T>(partial.data() + 2 * p * d, d);
    out_b += cpu::ConstArrMap<T>(partial.data() + (2 * p + 1) * d, d);
  }
}

#define FWP_INSTANTIATE_LAYER_NORM(T)                                                                            \
  template void CpuBackend<T>::layer_norm_forward(const T*, const T*, const T*, T, T*, T*, T*, int64_t, int64_t); \
  template void CpuBackend<T>::layer_norm_backward(const T*, const T*, const T*, const T*, const T*, T, T*,     \
                                                   int64_t, int64_t);                                          \
  template void CpuBackend<T>::layer_norm_param_grad_accumulate(const T*, const T*, const T*, const T*, T*, T*, \
                                                                int64_t, int64_t);

FWP_INSTANTIATE_LAYER_NORM(float)
FWP_INSTANTIATE_LAYER_NORM(double)
#undef FWP_INSTANTIATE_LAYER_NORM

}  // namespace fwp
