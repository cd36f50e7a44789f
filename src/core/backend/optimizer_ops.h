// Reductions and parameter updates of the optimizers (src/train). CPU: src/ops/optimizer_ops.cpp;
// CUDA: cuda/optimizer_ops.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class OptimizerOps : public virtual BackendFamily {
 public:
  // sum_i x[i]^2, accumulated in double and returned to the host (synchronises). Non-finite if
  // any x[i] is.
  virtual double sum_squares(const T* x, int64_t n) {
    this->unsupported("sum_squares");
  }

  // One Adam / AdamW step on n elements (PyTorch semantics), g = grad_scale * grad:
  //   Adam:  g += weight_decay * param;   AdamW: param *= 1 - lr * weight_decay
  //   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
  //   param -= lr * (m / bias_correction1) / (sqrt(v / bias_correction2) + eps)
  virtual void adam_update(const AdamStepParams& p, int64_t n, T* param, const T* grad, T* m, T* v) {
    this->unsupported("adam_update");
  }

  // One SGD step, g = grad_scale * grad + weight_decay * param:
  //   momentum != 0: buf = momentum * buf + g, param -= lr * buf;  else param -= lr * g.
  // momentum_buf may be nullptr iff momentum == 0.
  virtual void sgd_update(const SgdStepParams& p, int64_t n, T* param, const T* grad, T* momentum_buf) {
    this->unsupported("sgd_update");
  }
};

}  // namespace fwp
