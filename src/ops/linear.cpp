// CpuBackend: dense products (Eigen), bias, axpy, scale.
//
// Eigen is built with EIGEN_DONT_PARALLELIZE: we split one product into
// independent blocks of C ourselves, one single-threaded Eigen product per
// block on the thread pool, so the thread count is the backend's and nested
// parallelism (ops called from inside a parallel region) cannot oversubscribe
// the cores.
#include <algorithm>
#include <vector>

#include "core/aligned_vector.h"
#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

namespace {

// Flops below which one more thread does not pay for itself.
constexpr double kGemmFlopsPerThread = double(1 << 18);
// Block boundaries are multiples of this (one 64-byte line of floats), and a
// block narrower than kMinSplit is not worth a thread of its own.
constexpr int64_t kSplitAlign = 16;
constexpr int64_t kMinSplit = 32;
// Dynamic balance: parts per thread, and the smallest part worth cutting off:
// every part packs the whole shared operand again (K x N when rows are split).
// Estimated from packing ~1 element per cycle against ~32 flops per cycle of
// multiply-adds, that is ~2% of a 512-row part's work and ~8% of a 128-row
// one; measured with 128-row parts, the language model's training step spent
// 3x the time packing on 2 threads that it spent on 1 (perf).
constexpr int64_t kPartsPerThread = 4;
constexpr int64_t kMinPartExtent = 512;

int64_t split_point(int64_t total, int64_t part, int64_t parts) {
  if (part >= parts) return total;
  const int64_t raw = total * part / parts;
  return std::min(total, (raw + kSplitAlign / 2) / kSplitAlign * kSplitAlign);
}

// C_block = alpha * opA * opB + beta * C_block, never reading C when beta == 0.
template <typename T, typename MatA, typename MatB>
void gemm_block(cpu::RowMap<T> c, T alpha, const MatA& a, const MatB& b, T beta) {
  if (beta == T(0)) {
    c.noalias() = alpha * a * b;
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * a * b;
  }
}

}  // namespace

template <typename T>
void CpuBackend<T>::gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                         int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;

  // Computes the block of C with rows [r0, r1) and columns [c0, c1).
  auto run_block = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    auto c = cpu::row_map(C + r0 * ldc + c0, r1 - r0, c1 - c0, ldc);
    if (K <= 0 || alpha == T(0)) {
      if (beta == T(0)) {
        c.setZero();
      } else if (beta != T(1)) {
        c *= beta;
      }
      return;
    }
    const int64_t mb = r1 - r0, nb = c1 - c0;
    // op(A) rows r0..r1: A is [M,K] (ld lda), or [K,M] when transposed.
    // op(B) cols c0..c1: B is [K,N] (ld ldb), or [N,K] when transposed.
    if (!trans_a && !trans_b) {
      gemm_block<T>(c, alpha, cpu::row_map(A + r0 * lda, mb, K, lda), cpu::row_map(B + c0, K, nb, ldb), beta);
    } else if (!trans_a && trans_b) {
      gemm_block<T>(c, alpha, cpu::row_map(A + r0 * lda, mb, K, lda),
                    cpu::row_map(B + c0 * ldb, nb, K, ldb).transpose(), beta);
    } else if (trans_a && !trans_b) {
      gemm_block<T>(c, alpha, cpu::row_map(A + r0, K, mb, lda).transpose(), cpu::row_map(B + c0, K, nb, ldb),
                    beta);
    } else {
      gemm_block<T>(c, alpha, cpu::row_map(A + r0, K, mb, lda).transpose(),
                    cpu::row_map(B + c0 * ldb, nb, K, ldb).transpose(), beta);
    }
  };

  const double flops = 2.0 * double(M) * double(N) * double(std::max<int64_t>(K, 1));
  int nt = 1;
  if (num_threads_ > 1 && !in_parallel_region()) {
    nt = static_cast<int>(std::min<double>(num_threads_, std::max(1.0, flops / kGemmFlopsPerThread)));
  }
  // Split rows of C when they are plentiful, else columns when those are.
  const bool split_rows = M / nt >= kMinSplit || M >= N;
  const int64_t extent = split_rows ? M : N;
  nt = static_cast<int>(std::min<int64_t>(nt, std::max<int64_t>(1, extent / kMinSplit)));
  if (nt <= 1) {
    run_block(0, M, 0, N);
    return;
  }
  // Up to kPartsPerThread parts per thread, claimed dynamically: a thread that
  // gets less CPU (another process on its core) takes fewer parts instead of
  // holding up the product with a fixed half (bench/thread_scaling.sh). A
  // whole number of parts per thread, so that an idle machine stays balanced
  // (3 parts on 2 threads would leave one thread with twice the work).
  const int64_t per_thread = std::max<int64_t>(
      1, std::min<int64_t>({kPartsPerThread, extent / kMinPartExtent / nt,
                            static_cast<int64_t>(flops / kGemmFlopsPerThread) / nt}));
  const int64_t parts = per_thread * nt;
  cpu::parallel_for(nt, parts, cpu::kMinWorkPerThread, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t lo = split_point(extent, p, parts), hi = split_point(extent, p + 1, parts);
      if (lo >= hi) continue;
      if (split_rows) {
        run_block(lo, hi, 0, N);
      } else {
        run_block(0, M, lo, hi);
      }
    }
  });
}

template <typename T>
void CpuBackend<T>::add_bias(T* y, const T* bias, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const auto b = cpu::ConstArrMap<T>(bias, cols);
  cpu::parallel_for(num_threads_, rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) cpu::ArrMap<T>(y + r * cols, cols) += b;
  });
}

template <typename T>
void CpuBackend<T>::bias_grad_accumulate(T* dbias, const T* dy, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const int nt = cpu::threads_for(num_threads_, rows, cols);
  // One partial sum per thread, added in a fixed order, so the result does not
  // depend on scheduling.
  AlignedVector<T> partial(static_cast<size_t>(nt) * cols, T(0));
  cpu::parallel_for(nt, nt, cpu::kMinWorkPerThread, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      auto acc = cpu::ArrMap<T>(partial.data() + p * cols, cols);
      const int64_t r_begin = rows * p / nt, r_end = rows * (p + 1) / nt;
      for (int64_t r = r_begin; r < r_end; ++r) acc += cpu::ConstArrMap<T>(dy + r * cols, cols);
    }
  });
  auto out = cpu::ArrMap<T>(dbias, cols);
  for (int p = 0; p < nt; ++p) out += cpu::ConstArrMap<T>(partial.data() + p * cols, cols);
}

namespace {
constexpr int64_t kVectorBlock = 1 << 15;
}

template <typename T>
void CpuBackend<T>::axpy(int64_t n, T alpha, const T* x, T* y) {
  const int64_t blocks = (n + kVectorBlock - 1) / kVectorBlock;
  cpu::parallel_for(num_threads_, blocks, kVectorBlock, [&](int64_t b0, int64_t b1) {
    const int64_t begin = b0 * kVectorBlock;
    const int64_t len = std::min(n, b1 * kVectorBlock) - begin;
    cpu::ArrMap<T>(y + begin, len) += alpha * cpu::ConstArrMap<T>(x + begin, len);
  });
}

template <typename T>
void CpuBackend<T>::scale(int64_t n, T alpha, T* x) {
  const int64_t blocks = (n + kVectorBlock - 1) / kVectorBlock;
  cpu::parallel_for(num_threads_, blocks, kVectorBlock, [&](int64_t b0, int64_t b1) {
    const int64_t begin = b0 * kVectorBlock;
    const int64_t len = std::min(n, b1 * kVectorBlock) - begin;
    cpu::ArrMap<T>(x + begin, len) *= alpha;
  });
}

#define FWP_INSTANTIATE_LINEAR(T)                                                                         \
  template void CpuBackend<T>::gemm(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, \
                                    int64_t, T, T*, int64_t);                                              \
  template void CpuBackend<T>::add_bias(T*, const T*, int64_t, int64_t);                                   \
  template void CpuBackend<T>::bias_grad_accumulate(T*, const T*, int64_t, int64_t);                       \
  template void CpuBackend<T>::axpy(int64_t, T, const T*, T*);                                             \
  template void CpuBackend<T>::scale(int64_t, T, T*);

FWP_INSTANTIATE_LINEAR(float)
FWP_INSTANTIATE_LINEAR(double)
#undef FWP_INSTANTIATE_LINEAR

}  // namespace fwp
