// Small helpers shared by the CPU op implementations: how many OpenMP threads a
// piece of work deserves, a static parallel-for over contiguous ranges that
// carries exceptions out of the parallel region (with denormals flushed), and
// row-major Eigen maps.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>

#include <Eigen/Core>

#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#define FWP_HAVE_MXCSR 1
#endif

namespace fwp {
namespace cpu {

// Below roughly this many scalar operations per thread, waking another thread
// costs more than it saves.
constexpr int64_t kMinWorkPerThread = 1 << 15;

// Threads to use for `items` independent items of `cost_per_item` operations each.
inline int threads_for(int max_threads, int64_t items, int64_t cost_per_item) {
  if (max_threads <= 1 || items <= 1 || omp_in_parallel()) return 1;
  const int64_t total = items * std::max<int64_t>(cost_per_item, 1);
  const int64_t by_work = std::max<int64_t>(total / kMinWorkPerThread, 1);
  return static_cast<int>(std::min<int64_t>({static_cast<int64_t>(max_threads), items, by_work}));
}

// Sets flush-to-zero and denormals-are-zero on the calling thread for its
// lifetime and restores the caller's mode afterwards. The recurrences drive
// many values (delta-rule corrections, their gradients) towards zero as a
// model converges, and x86 cores take a microcode assist on every denormal
// operand: one retrieval run slowed from 30 to 5 steps/s that way. Values
// below 1.2e-38 (float) only ever matter as zeros here.
class FlushDenormals {
 public:
#ifdef FWP_HAVE_MXCSR
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
  ~FlushDenormals() { _mm_setcsr(saved_); }
#else
  FlushDenormals() = default;
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
#ifdef FWP_HAVE_MXCSR
  static constexpr unsigned kFlushToZero = 0x8000;
  static constexpr unsigned kDenormalsAreZero = 0x0040;
  unsigned saved_;
#endif
};

// Runs body(begin, end) over a static partition of [0, n) into contiguous
// ranges, one per thread (so each call can set up its scratch space once).
// An exception thrown by any range is rethrown on the calling thread: an
// exception must never escape an OpenMP region.
template <typename Body>
void parallel_for(int max_threads, int64_t n, int64_t cost_per_item, Body&& body) {
  if (n <= 0) return;
  const int nt = threads_for(max_threads, n, cost_per_item);
  if (nt <= 1) {
    FlushDenormals flush;
    body(int64_t{0}, n);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num();
    const int64_t team = omp_get_num_threads();
    const int64_t begin = n * t / team;
    const int64_t end = n * (t + 1) / team;
    FlushDenormals flush;
    if (begin < end) {
      try {
        body(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using RowMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using ConstRowMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using VecMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstVecMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <typename T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// A row-major [rows, cols] view with leading dimension ld.
template <typename T>
RowMap<T> row_map(T* p, int64_t rows, int64_t cols, int64_t ld) {
  return RowMap<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}
template <typename T>
ConstRowMap<T> row_map(const T* p, int64_t rows, int64_t cols, int64_t ld) {
  return ConstRowMap<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}

}  // namespace cpu
}  // namespace fwp
