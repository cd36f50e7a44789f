// CpuBackend: dropout. The mask of element i comes from counter_hash(seed, i),
// so blocks run in any order on any thread and give the GPU's mask.
#include <algorithm>

#include "core/counter_hash.h"
#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

namespace {

constexpr int64_t kDropoutBlock = 1 << 14;

template <typename T>
void apply_mask(int threads, const T* in, T* out, int64_t n, double p, uint64_t seed) {
  if (n <= 0) return;
  const uint32_t threshold = dropout_threshold(p);
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  const int64_t blocks = (n + kDropoutBlock - 1) / kDropoutBlock;
  cpu::parallel_for(threads, blocks, 8 * kDropoutBlock, [&](int64_t b0, int64_t b1) {
    const int64_t end = std::min(n, b1 * kDropoutBlock);
    for (int64_t i = b0 * kDropoutBlock; i < end; ++i) {
      out[i] = dropout_keep(seed, static_cast<uint64_t>(i), threshold) ? in[i] * scale : T(0);
    }
  });
}

}  // namespace

template <typename T>
void CpuBackend<T>::dropout_forward(const T* x, T* y, int64_t n, double p, uint64_t seed) {
  apply_mask(num_threads_, x, y, n, p, seed);
}

template <typename T>
void CpuBackend<T>::dropout_backward(const T* dy, T* dx, int64_t n, double p, uint64_t seed) {
  apply_mask(num_threads_, dy, dx, n, p, seed);
}

#define FWP_INSTANTIATE_DROPOUT(T)                                                           \
  template void CpuBackend<T>::dropout_forward(const T*, T*, int64_t, double, uint64_t);   \
  template void CpuBackend<T>::dropout_backward(const T*, T*, int64_t, double, uint64_t);

FWP_INSTANTIATE_DROPOUT(float)
FWP_INSTANTIATE_DROPOUT(double)
#undef FWP_INSTANTIATE_DROPOUT

}  // namespace fwp
