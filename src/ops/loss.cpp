// CpuBackend: squared error against one-hot targets (the retrieval loss).
#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

template <typename T>
void CpuBackend<T>::onehot_mse_forward(const T* y, const int32_t* targets, T* loss, int64_t rows,
                                       int64_t classes) {
  if (rows <= 0) return;
  cpu::parallel_for(num_threads_, rows, 2 * classes, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t t = targets[r];
      if (t < 0) {
        loss[r] = T(0);
        continue;
      }
      // Sum the squared differences directly (not ||y||^2 - 2 y_t + 1), which
      // keeps full precision when y is close to the target.
      const T* yr = y + r * classes;
      T sum = T(0);
      for (int64_t c = 0; c < classes; ++c) sum += yr[c] * yr[c];
      const T diff_t = T(1) - yr[t];
      loss[r] = T(0.5) * (sum - yr[t] * yr[t] + diff_t * diff_t);
    }
  });
}

template <typename T>
void CpuBackend<T>::onehot_mse_backward(const T* y, const int32_t* targets, T scale, T* dy, int64_t rows,
                                        int64_t classes) {
  if (rows <= 0) return;
  cpu::parallel_for(num_threads_, rows, classes, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      auto d = cpu::ArrMap<T>(dy + r * classes, classes);
      const int32_t t = targets[r];
      if (t < 0) {
        d.setZero();
        continue;
      }
      d = scale * cpu::ConstArrMap<T>(y + r * classes, classes);
      d(t) -= scale;
    }
  });
}

#define FWP_INSTANTIATE_LOSS(T)                                                                  \
  template void CpuBackend<T>::onehot_mse_forward(const T*, const int32_t*, T*, int64_t, int64_t); \
  template void CpuBackend<T>::onehot_mse_backward(const T*, const int32_t*, T, T*, int64_t, int64_t);

FWP_INSTANTIATE_LOSS(float)
FWP_INSTANTIATE_LOSS(double)
#undef FWP_INSTANTIATE_LOSS

}  // namespace fwp
