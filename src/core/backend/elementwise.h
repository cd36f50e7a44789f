// Elementwise activations. CPU: src/ops/cpu_backend.cpp; CUDA: cuda/layout.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class ElementwiseOps : public virtual BackendFamily {
 public:
  virtual void sigmoid_forward(const T* x, T* y, int64_t n) {
    this->unsupported("sigmoid_forward");
  }

  // dx = dy * y * (1 - y), where y = sigmoid(x).
  virtual void sigmoid_backward(const T* y, const T* dy, T* dx, int64_t n) {
    this->unsupported("sigmoid_backward");
  }
};

}  // namespace fwp
