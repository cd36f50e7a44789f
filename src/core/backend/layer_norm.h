// Layer normalisation over the last dimension of [rows, d] arrays.
// CPU: src/ops/layer_norm.cpp; CUDA: cuda/layer_norm.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class LayerNormOps : public virtual BackendFamily {
 public:
  // Per row r: mean_r = sum_c x / d, var_r = sum_c (x - mean_r)^2 / d (biased,
  // as PyTorch), rstd_r = 1 / sqrt(var_r + eps), and
  // y[r, c] = (x[r, c] - mean_r) rstd_r gain[c] + bias[c].
  // x, y: [rows, d] (y must not alias x when the backward is needed; the
  // backward reads x); gain, bias: [d]; mean, rstd: [rows], saved for the backward.
  virtual void layer_norm_forward(const T* x, const T* gain, const T* bias, T eps, T* y, T* mean, T* rstd,
                                  int64_t rows, int64_t d) {
    this->unsupported("layer_norm_forward");
  }

  // dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)), g = dy * gain,
  // xhat = (x - mean) rstd, written as dx = grad + beta * dx with beta 0
  // (overwrite; dx is then not read) or 1 (accumulate into an input gradient
  // that another branch already holds, e.g. a residual). dx may not alias dy or x.
  virtual void layer_norm_backward(const T* x, const T* gain, const T* mean, const T* rstd, const T* dy, T beta,
                                   T* dx, int64_t rows, int64_t d) {
    this->unsupported("layer_norm_backward");
  }

  // Parameter gradients (ACCUMULATE, like bias_grad_accumulate):
  // dgain[c] += sum_r dy[r, c] xhat[r, c], dbias[c] += sum_r dy[r, c].
  virtual void layer_norm_param_grad_accumulate(const T* x, const T* mean, const T* rstd, const T* dy, T* dgain,
                                                T* dbias, int64_t rows, int64_t d) {
    this->unsupported("layer_norm_param_grad_accumulate");
  }
};

}  // namespace fwp
