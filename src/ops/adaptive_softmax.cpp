// CpuBackend: the cluster partition and block log-softmax of adaptive input
// and adaptive softmax. The partition is one sequential pass (it is O(rows),
// negligible next to the products it sizes); the log-softmax runs rows in
// parallel with the max-subtracted log-sum-exp of cross_entropy.cpp.
#include <cmath>
#include <string>
#include <vector>

#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

template <typename T>
void CpuBackend<T>::adaptive_partition(const int32_t* ids, int64_t rows, const AdaptiveBounds& bounds,
                                       int32_t* cluster_rows, int32_t* cluster_ids, int32_t* head_targets,
                                       int64_t head_cols, int64_t* counts) {
  const int64_t clusters = bounds.clusters;
  require(clusters >= 1 && clusters <= kMaxAdaptiveClusters, FWP_ERR_INTERNAL,
          "adaptive_partition: cluster count out of range");
  const int64_t vocab = bounds.bounds[clusters];
  // First pass: the cluster of each row (and the head target), and the counts.
  std::vector<int32_t> cluster_of(static_cast<size_t>(rows), -1);
  for (int64_t k = 0; k < clusters; ++k) counts[k] = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t id = ids[r];
    require(id < vocab, FWP_ERR_INTERNAL,
            "adaptive_partition: id " + std::to_string(id) + " of row " + std::to_string(r) +
                " is not below the vocabulary size " + std::to_string(vocab));
    int32_t k = -1;
    if (id >= 0) {
      k = 0;
      while (id >= bounds.bounds[k + 1]) ++k;
      ++counts[k];
    }
    cluster_of[static_cast<size_t>(r)] = k;
    if (head_targets) head_targets[r] = k <= 0 ? id : static_cast<int32_t>(head_cols - k);
  }
  // Second pass: each cluster's rows in ascending order.
  std::vector<int64_t> next(static_cast<size_t>(clusters), 0);
  for (int64_t k = 1; k < clusters; ++k) next[k] = next[k - 1] + counts[k - 1];
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t k = cluster_of[static_cast<size_t>(r)];
    if (k < 0) continue;
    const int64_t at = next[static_cast<size_t>(k)]++;
    cluster_rows[at] = static_cast<int32_t>(r);
    cluster_ids[at] = static_cast<int32_t>(ids[r] - bounds.bounds[k]);
  }
}

template <typename T>
void CpuBackend<T>::log_softmax_rows(const T* logits, int64_t rows, int64_t cols, int64_t write_cols, const T* base,
                                     int64_t base_stride, T* out, int64_t ldo) {
  if (rows <= 0 || write_cols <= 0) return;
  cpu::parallel_for(num_threads_, rows, 3 * cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const auto lr = cpu::ConstArrMap<T>(logits + r * cols, cols);
      const T m = lr.maxCoeff();
      const T lse = m + std::log((lr - m).exp().sum());
      const T shift = (base ? base[r * base_stride] : T(0)) - lse;
      cpu::ArrMap<T>(out + r * ldo, write_cols) = lr.head(write_cols) + shift;
    }
  });
}

#define FWP_INSTANTIATE_ADAPTIVE(T)                                                                              \
  template void CpuBackend<T>::adaptive_partition(const int32_t*, int64_t, const AdaptiveBounds&, int32_t*,       \
                                                  int32_t*, int32_t*, int64_t, int64_t*);                         \
  template void CpuBackend<T>::log_softmax_rows(const T*, int64_t, int64_t, int64_t, const T*, int64_t, T*, int64_t);

FWP_INSTANTIATE_ADAPTIVE(float)
FWP_INSTANTIATE_ADAPTIVE(double)
#undef FWP_INSTANTIATE_ADAPTIVE

}  // namespace fwp
