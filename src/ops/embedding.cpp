// CpuBackend: embedding rows (gather and its scatter-add transpose) and one-hot rows.
#include <algorithm>
#include <cstring>

#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

template <typename T>
void CpuBackend<T>::embedding_gather(const T* table, const int32_t* ids, T* out, int64_t rows, int64_t dim) {
  if (rows <= 0 || dim <= 0) return;
  cpu::parallel_for(num_threads_, rows, dim, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* dst = out + r * dim;
      if (ids[r] < 0) {
        std::fill(dst, dst + dim, T(0));
      } else {
        std::memcpy(dst, table + static_cast<int64_t>(ids[r]) * dim, static_cast<size_t>(dim) * sizeof(T));
      }
    }
  });
}

template <typename T>
void CpuBackend<T>::embedding_scatter_accumulate(T* dtable, const int32_t* ids, const T* dout, int64_t rows,
                                                 int64_t dim) {
  if (rows <= 0 || dim <= 0) return;
  // Rows may share an id, so threads split the columns, not the rows: no two
  // threads touch the same element, and every element sums its rows in order
  // (the result does not depend on the thread count).
  constexpr int64_t kColumnBlock = 64;
  const int64_t blocks = (dim + kColumnBlock - 1) / kColumnBlock;
  cpu::parallel_for(num_threads_, blocks, rows * kColumnBlock, [&](int64_t b0, int64_t b1) {
    const int64_t c0 = b0 * kColumnBlock;
    const int64_t width = std::min(dim, b1 * kColumnBlock) - c0;
    for (int64_t r = 0; r < rows; ++r) {
      if (ids[r] < 0) continue;
      cpu::ArrMap<T>(dtable + static_cast<int64_t>(ids[r]) * dim + c0, width) +=
          cpu::ConstArrMap<T>(dout + r * dim + c0, width);
    }
  });
}

template <typename T>
void CpuBackend<T>::onehot_concat(const int32_t* ids, const T* x, T* out, int64_t rows, int64_t num_classes,
                                  int64_t d) {
  if (rows <= 0) return;
  const int64_t width = num_classes + d;
  cpu::parallel_for(num_threads_, rows, width, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* dst = out + r * width;
      std::fill(dst, dst + num_classes, T(0));
      dst[ids[r]] = T(1);
      if (d > 0) std::memcpy(dst + num_classes, x + r * d, static_cast<size_t>(d) * sizeof(T));
    }
  });
}

#define FWP_INSTANTIATE_EMBEDDING(T)                                                                    \
  template void CpuBackend<T>::embedding_gather(const T*, const int32_t*, T*, int64_t, int64_t);        \
  template void CpuBackend<T>::embedding_scatter_accumulate(T*, const int32_t*, const T*, int64_t,      \
                                                            int64_t);                                   \
  template void CpuBackend<T>::onehot_concat(const int32_t*, const T*, T*, int64_t, int64_t, int64_t);

FWP_INSTANTIATE_EMBEDDING(float)
FWP_INSTANTIATE_EMBEDDING(double)
#undef FWP_INSTANTIATE_EMBEDDING

}  // namespace fwp
