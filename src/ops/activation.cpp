// CpuBackend: ReLU and GELU, forward and backward, element-wise over blocks of
// the array.
#include <algorithm>
#include <cmath>

#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

namespace {

constexpr int64_t kActivationBlock = 1 << 14;

// Calls f(begin, length) over [0, n) in parallel blocks; cost is per element.
template <typename F>
void for_blocks(int threads, int64_t n, int64_t cost, F&& f) {
  if (n <= 0) return;
  const int64_t blocks = (n + kActivationBlock - 1) / kActivationBlock;
  cpu::parallel_for(threads, blocks, cost * kActivationBlock, [&](int64_t b0, int64_t b1) {
    const int64_t begin = b0 * kActivationBlock;
    f(begin, std::min(n, b1 * kActivationBlock) - begin);
  });
}

// Phi(x) = (1 + erf(x / sqrt 2)) / 2 and phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
template <typename T>
T normal_cdf(T x) {
  return T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
}
template <typename T>
T normal_pdf(T x) {
  return T(0.39894228040143267794) * std::exp(T(-0.5) * x * x);
}

}  // namespace

template <typename T>
void CpuBackend<T>::relu_forward(const T* x, T* y, int64_t n) {
  for_blocks(num_threads_, n, 1, [&](int64_t b, int64_t len) {
    cpu::ArrMap<T>(y + b, len) = cpu::ConstArrMap<T>(x + b, len).max(T(0));
  });
}

template <typename T>
void CpuBackend<T>::relu_backward(const T* x, const T* dy, T* dx, int64_t n) {
  for_blocks(num_threads_, n, 1, [&](int64_t b, int64_t len) {
    // Eigen's select vectorises (the plain loop did not: dx may alias dy, and
    // the branch was data-dependent; ~8% of a paper-small training step).
    const auto xs = cpu::ConstArrMap<T>(x + b, len);
    cpu::ArrMap<T>(dx + b, len) = (xs > T(0)).select(cpu::ConstArrMap<T>(dy + b, len), T(0));
  });
}

template <typename T>
void CpuBackend<T>::gelu_forward(const T* x, T* y, int64_t n) {
  for_blocks(num_threads_, n, 20, [&](int64_t b, int64_t len) {
    for (int64_t i = b; i < b + len; ++i) y[i] = x[i] * normal_cdf(x[i]);
  });
}

template <typename T>
void CpuBackend<T>::gelu_backward(const T* x, const T* dy, T* dx, int64_t n) {
  for_blocks(num_threads_, n, 40, [&](int64_t b, int64_t len) {
    for (int64_t i = b; i < b + len; ++i) dx[i] = dy[i] * (normal_cdf(x[i]) + x[i] * normal_pdf(x[i]));
  });
}

#define FWP_INSTANTIATE_ACTIVATION(T)                                                  \
  template void CpuBackend<T>::relu_forward(const T*, T*, int64_t);                  \
  template void CpuBackend<T>::relu_backward(const T*, const T*, T*, int64_t);       \
  template void CpuBackend<T>::gelu_forward(const T*, T*, int64_t);                  \
  template void CpuBackend<T>::gelu_backward(const T*, const T*, T*, int64_t);

FWP_INSTANTIATE_ACTIVATION(float)
FWP_INSTANTIATE_ACTIVATION(double)
#undef FWP_INSTANTIATE_ACTIVATION

}  // namespace fwp
