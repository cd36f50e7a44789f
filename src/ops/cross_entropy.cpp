// CpuBackend: softmax cross-entropy with ignored (negative) targets, the
// language model's loss. Rows run in parallel; the log-sum-exp subtracts the
// row maximum so that large logits neither overflow nor lose the small terms.
#include <algorithm>
#include <cmath>
#include <string>

#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

template <typename T>
void CpuBackend<T>::cross_entropy_forward(const T* logits, const int32_t* targets, T* loss, T* lse, int64_t rows,
                                          int64_t classes) {
  if (rows <= 0) return;
  cpu::parallel_for(num_threads_, rows, 4 * classes, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t t = targets[r];
      require(t < classes, FWP_ERR_INTERNAL,
              "cross_entropy_forward: target " + std::to_string(t) + " of row " + std::to_string(r) +
                  " is not below the " + std::to_string(classes) + " classes");
      const auto lr = cpu::ConstArrMap<T>(logits + r * classes, classes);
      const T m = lr.maxCoeff();
      lse[r] = m + std::log((lr - m).exp().sum());
      loss[r] = t < 0 ? T(0) : lse[r] - lr(t);
    }
  });
}

template <typename T>
void CpuBackend<T>::cross_entropy_backward(const T* logits, const int32_t* targets, const T* lse, T scale,
                                           T* dlogits, int64_t rows, int64_t classes) {
  if (rows <= 0) return;
  cpu::parallel_for(num_threads_, rows, 2 * classes, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      auto out = cpu::ArrMap<T>(dlogits + r * classes, classes);
      const int32_t t = targets[r];
      if (t < 0) {
        out.setZero();
        continue;
      }
      require(t < classes, FWP_ERR_INTERNAL, "cross_entropy_backward: target out of range");
      // Element-wise from the logits, so dlogits may alias them.
      out = scale * (cpu::ConstArrMap<T>(logits + r * classes, classes) - lse[r]).exp();
      out(t) -= scale;
    }
  });
}

// The smoothing weights of a row: e = smoothing / (classes - 1) on every
// class, 1 - smoothing - e more on the target.
template <typename T>
static void check_smoothing(const char* op, T smoothing, int64_t classes) {
  require(smoothing >= T(0) && smoothing < T(1) && (smoothing == T(0) || classes >= 2), FWP_ERR_INTERNAL,
          std::string(op) + ": smoothing " + std::to_string(static_cast<double>(smoothing)) +
              " needs to be in [0, 1) with at least 2 classes");
}

template <typename T>
void CpuBackend<T>::smoothed_cross_entropy_forward(const T* logits, const int32_t* targets, T smoothing, T* loss,
                                                   T* nll, T* lse, int64_t rows, int64_t classes) {
  if (rows <= 0) return;
  check_smoothing("smoothed_cross_entropy_forward", smoothing, classes);
  const T other = smoothing > T(0) ? smoothing / static_cast<T>(classes - 1) : T(0);
  cpu::parallel_for(num_threads_, rows, 5 * classes, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t t = targets[r];
      require(t < classes, FWP_ERR_INTERNAL,
              "smoothed_cross_entropy_forward: target " + std::to_string(t) + " of row " + std::to_string(r) +
                  " is not below the " + std::to_string(classes) + " classes");
      const auto lr = cpu::ConstArrMap<T>(logits + r * classes, classes);
      const T m = lr.maxCoeff();
      lse[r] = m + std::log((lr - m).exp().sum());
      if (t < 0) {
        loss[r] = nll[r] = T(0);
        continue;
      }
      nll[r] = lse[r] - lr(t);
      // sum_c (lse - l_c): each term >= 0, so no cancellation between two large sums.
      const T spread = other > T(0) ? (lse[r] - lr).sum() : T(0);
      loss[r] = (T(1) - smoothing - other) * nll[r] + other * spread;
    }
  });
}

template <typename T>
void CpuBackend<T>::smoothed_cross_entropy_backward(const T* logits, const int32_t* targets, const T* lse,
                                                    T smoothing, T scale, T* dlogits, int64_t rows, int64_t classes) {
  if (rows <= 0) return;
  check_smoothing("smoothed_cross_entropy_backward", smoothing, classes);
  const T other = smoothing > T(0) ? smoothing / static_cast<T>(classes - 1) : T(0);
  cpu::parallel_for(num_threads_, rows, 2 * classes, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      auto out = cpu::ArrMap<T>(dlogits + r * classes, classes);
      const int32_t t = targets[r];
      if (t < 0) {
        out.setZero();
        continue;
      }
      require(t < classes, FWP_ERR_INTERNAL, "smoothed_cross_entropy_backward: target out of range");
      out = scale * ((cpu::ConstArrMap<T>(logits + r * classes, classes) - lse[r]).exp() - other);
      out(t) -= scale * (T(1) - smoothing - other);
    }
  });
}

#define FWP_INSTANTIATE_CROSS_ENTROPY(T)                                                                 \
  template void CpuBackend<T>::cross_entropy_forward(const T*, const int32_t*, T*, T*, int64_t, int64_t); \
  template void CpuBackend<T>::cross_entropy_backward(const T*, const int32_t*, const T*, T, T*, int64_t,  \
                                                      int64_t);                                        \
  template void CpuBackend<T>::smoothed_cross_entropy_forward(const T*, const int32_t*, T, T*, T*, T*, int64_t,  \
                                                              int64_t);                                          \
  template void CpuBackend<T>::smoothed_cross_entropy_backward(const T*, const int32_t*, const T*, T, T, T*,     \
                                                               int64_t, int64_t);

FWP_INSTANTIATE_CROSS_ENTROPY(float)
FWP_INSTANTIATE_CROSS_ENTROPY(double)
#undef FWP_INSTANTIATE_CROSS_ENTROPY

}  // namespace fwp
