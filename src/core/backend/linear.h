// Dense linear algebra: GEMM, bias, axpy, scale. CPU: src/ops/linear.cpp; CUDA: cuda/linear.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class LinearOps : public virtual BackendFamily {
 public:
  // C[M,N] = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
  // A is [M,K] (or [K,M] if trans_a), B is [K,N] (or [N,K] if trans_b).
  // When beta == 0, C is not read (it may hold NaN).
  virtual void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                    int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
    this->unsupported("gemm");
  }

  // y[r, c] += bias[c] for r < rows, c < cols.
  virtual void add_bias(T* y, const T* bias, int64_t rows, int64_t cols) {
    this->unsupported("add_bias");
  }

  // dbias[c] += sum_r dy[r, c]   (accumulates: parameter gradients accumulate).
  virtual void bias_grad_accumulate(T* dbias, const T* dy, int64_t rows, int64_t cols) {
    this->unsupported("bias_grad_accumulate");
  }

  // y += alpha * x
  virtual void axpy(int64_t n, T alpha, const T* x, T* y) {
    this->unsupported("axpy");
  }

  // x *= alpha
  virtual void scale(int64_t n, T alpha, T* x) {
    this->unsupported("scale");
  }
};

}  // namespace fwp
