// Element-wise activations of the feed-forward blocks (ReLU, GELU).
// CPU: src/ops/activation.cpp; CUDA: cuda/activation.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class ActivationOps : public virtual BackendFamily {
 public:
  // y = max(x, 0). y may alias x.
  virtual void relu_forward(const T* x, T* y, int64_t n) { this->unsupported("relu_forward"); }

  // dx = dy * [x > 0] (the derivative at 0 taken as 0, as PyTorch does). x is
  // the forward INPUT (the output works as well: both are > 0 at the same
  // places). dx may alias dy.
  virtual void relu_backward(const T* x, const T* dy, T* dx, int64_t n) { this->unsupported("relu_backward"); }

  // The exact GELU, y = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2 (PyTorch's
  // default, not the tanh approximation). y may alias x.
  virtual void gelu_forward(const T* x, T* y, int64_t n) { this->unsupported("gelu_forward"); }

  // dx = dy * (Phi(x) + x phi(x)), phi the standard normal density. x is the
  // forward input; dx may alias dy.
  virtual void gelu_backward(const T* x, const T* dy, T* dx, int64_t n) { this->unsupported("gelu_backward"); }
};

}  // namespace fwp
