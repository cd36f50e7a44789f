// CpuBackend: the optimizers' element-wise updates and the gradient norm.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/aligned_vector.h"
#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

namespace {
// Fixed block size: partial sums are per block and added in block order, so
// the result does not depend on the number of threads.
constexpr int64_t kOptBlock = 1 << 14;
}  // namespace

template <typename T>
double CpuBackend<T>::sum_squares(const T* x, int64_t n) {
  if (n <= 0) return 0.0;
  const int64_t blocks = (n + kOptBlock - 1) / kOptBlock;
  AlignedVector<double> partial(static_cast<size_t>(blocks), 0.0);
  cpu::parallel_for(num_threads_, blocks, kOptBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * kOptBlock;
      const int64_t len = std::min(n, begin + kOptBlock) - begin;
      double sum = 0.0;
      for (int64_t i = 0; i < len; ++i) {
        const double v = static_cast<double>(x[begin + i]);
        sum += v * v;
      }
      partial[static_cast<size_t>(b)] = sum;
    }
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

template <typename T>
void CpuBackend<T>::adam_update(const AdamStepParams& hp, int64_t n, T* param, const T* grad, T* m, T* v) {
  if (n <= 0) return;
  const T grad_scale = static_cast<T>(hp.grad_scale);
  const T beta1 = static_cast<T>(hp.beta1), beta2 = static_cast<T>(hp.beta2);
  const T coupled_decay = hp.decoupled_weight_decay ? T(0) : static_cast<T>(hp.weight_decay);
  const T decay_factor = hp.decoupled_weight_decay ? static_cast<T>(1.0 - hp.lr * hp.weight_decay) : T(1);
  const T step_size = static_cast<T>(hp.lr / hp.bias_correction1);
  const T inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(hp.bias_correction2));
  const T eps = static_cast<T>(hp.eps);
  const int64_t blocks = (n + kOptBlock - 1) / kOptBlock;
  cpu::parallel_for(num_threads_, blocks, 8 * kOptBlock, [&](int64_t b0, int64_t b1) {
    const int64_t begin = b0 * kOptBlock;
    const int64_t len = std::min(n, b1 * kOptBlock) - begin;
    auto p = cpu::ArrMap<T>(param + begin, len);
    auto ma = cpu::ArrMap<T>(m + begin, len);
    auto va = cpu::ArrMap<T>(v + begin, len);
    const auto g_raw = cpu::ConstArrMap<T>(grad + begin, len);
    for (int64_t i = 0; i < len; ++i) {
      const T g = grad_scale * g_raw(i) + coupled_decay * p(i);
      const T pi = decay_factor * p(i);
      ma(i) = beta1 * ma(i) + (T(1) - beta1) * g;
      va(i) = beta2 * va(i) + (T(1) - beta2) * g * g;
      p(i) = pi - step_size * ma(i) / (std::sqrt(va(i)) * inv_sqrt_bc2 + eps);
    }
  });
}

template <typename T>
void CpuBackend<T>::sgd_update(const SgdStepParams& hp, int64_t n, T* param, const T* grad, T* momentum_buf) {
  if (n <= 0) return;
  const T grad_scale = static_cast<T>(hp.grad_scale);
  const T decay = static_cast<T>(hp.weight_decay);
  const T lr = static_cast<T>(hp.lr);
  const T mu = static_cast<T>(hp.momentum);
  const bool use_momentum = hp.momentum != 0.0;
  const int64_t blocks = (n + kOptBlock - 1) / kOptBlock;
  cpu::parallel_for(num_threads_, blocks, 4 * kOptBlock, [&](int64_t b0, int64_t b1) {
    const int64_t begin = b0 * kOptBlock;
    const int64_t len = std::min(n, b1 * kOptBlock) - begin;
    auto p = cpu::ArrMap<T>(param + begin, len);
    const auto g_raw = cpu::ConstArrMap<T>(grad + begin, len);
    for (int64_t i = 0; i < len; ++i) {
      const T g = grad_scale * g_raw(i) + decay * p(i);
      if (use_momentum) {
        T& buf = momentum_buf[begin + i];
        buf = mu * buf + g;
        p(i) -= lr * buf;
      } else {
        p(i) -= lr * g;
      }
    }
  });
}

#define FWP_INSTANTIATE_OPTIMIZER_OPS(T)                                                               \
  template double CpuBackend<T>::sum_squares(const T*, int64_t);                                       \
  template void CpuBackend<T>::adam_update(const AdamStepParams&, int64_t, T*, const T*, T*, T*);      \
  template void CpuBackend<T>::sgd_update(const SgdStepParams&, int64_t, T*, const T*, T*);

FWP_INSTANTIATE_OPTIMIZER_OPS(float)
FWP_INSTANTIATE_OPTIMIZER_OPS(double)
#undef FWP_INSTANTIATE_OPTIMIZER_OPS

}  // namespace fwp
