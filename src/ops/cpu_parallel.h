// Small helpers shared by the CPU op implementations: how many threads a piece
// of work deserves, a parallel-for over contiguous ranges on the thread pool
// that carries exceptions back to the caller (with denormals flushed), and
// row-major Eigen maps.
#pragma once

#include <algorithm>
#include <cstdint>

#include <Eigen/Core>

#include "core/thread_pool.h"

#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#define FWP_HAVE_MXCSR 1
#endif

namespace fwp {
namespace cpu {

// The grain: below roughly this many scalar operations per chunk, handing work
// to another thread costs more than it saves (waking a sleeping worker takes
// some microseconds); bench/thread_scaling.sh measures the result (bench/RESULTS.md).
constexpr int64_t kMinWorkPerThread = int64_t(1) << 17;

// Threads to use for `items` independent items of `cost_per_item` operations each.
inline int threads_for(int max_threads, int64_t items, int64_t cost_per_item) {
  if (max_threads <= 1 || items <= 1 || in_parallel_region()) return 1;
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

// Runs body(begin, end) over contiguous ranges that together cover [0, n),
// on the thread pool (core/thread_pool.h). The ranges are chunks of at least
// the grain, up to four per thread, claimed dynamically: a thread that gets
// less CPU (another process on the core) simply claims fewer. body may run
// several times on one thread, so it sets up its scratch once per range. An
// exception thrown by any range is rethrown on the calling thread.
template <typename Body>
void parallel_for(int max_threads, int64_t n, int64_t cost_per_item, Body&& body) {
  if (n <= 0) return;
  FlushDenormals flush;  // the calling thread; pool workers flush denormals for life
  const int nt = threads_for(max_threads, n, cost_per_item);
  if (nt <= 1) {
    body(int64_t{0}, n);
    return;
  }
  const int64_t total = n * std::max<int64_t>(cost_per_item, 1);
  const int64_t chunks =
      std::min<int64_t>({n, int64_t{4} * nt, std::max<int64_t>(nt, total / kMinWorkPerThread)});
  run_in_pool(nt, chunks, [&](int64_t c) { body(n * c / chunks, n * (c + 1) / chunks); });
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
