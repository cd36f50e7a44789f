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
  // Rows may share an id. Every element sums its rows in order whatever the
  // thread count, so the result does not depend on it. Threads split the
  // table's rows when there are enough of them: each range scans all ids
  // (cheap) and adds whole rows of its own, contiguous in memory. Splitting the
  // columns instead made each thread walk every row 64 columns at a time,
  // which cost 2.5x the CPU time of one thread on the retrieval memory
  // (12,800 rows of 256 into 13 MB); it stays for tables of few rows.
  const int max_threads = cpu::threads_for(num_threads_, rows, dim);
  if (max_threads <= 1) {
    for (int64_t r = 0; r < rows; ++r) {
      if (ids[r] < 0) continue;
      cpu::ArrMap<T>(dtable + static_cast<int64_t>(ids[r]) * dim, dim) += cpu::ConstArrMap<T>(dout + r * dim, dim);
    }
    return;
  }
  int64_t table_rows = 0;
  for (int64_t r = 0; r < rows; ++r) table_rows = std::max<int64_t>(table_rows, int64_t{ids[r]} + 1);
  if (table_rows >= int64_t{16} * max_threads) {
    // Ranges of table rows; cost of one: its share of the rows, plus the scan.
    const int64_t cost = std::max<int64_t>(rows * dim / table_rows, 1);
    cpu::parallel_for(num_threads_, table_rows, cost, [&](int64_t t0, int64_t t1) {
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t id = ids[r];
        if (id < t0 || id >= t1) continue;
        cpu::ArrMap<T>(dtable + id * dim, dim) += cpu::ConstArrMap<T>(dout + r * dim, dim);
      }
    });
    return;
  }
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
