// Losses. CPU: src/ops/loss.cpp; CUDA: cuda/loss.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class LossOps : public virtual BackendFamily {
 public:
  // Squared error against one-hot targets: loss[r] = 0.5 * ||onehot(targets[r]) - y[r, :]||^2,
  // and 0 where targets[r] < 0 (padding). y: [rows, classes]; targets, loss: [rows].
  virtual void onehot_mse_forward(const T* y, const int32_t* targets, T* loss, int64_t rows,
                                  int64_t classes) {
    this->unsupported("onehot_mse_forward");
  }

  // dy[r, :] = scale * (y[r, :] - onehot(targets[r])), zero rows for padding.
  virtual void onehot_mse_backward(const T* y, const int32_t* targets, T scale, T* dy, int64_t rows,
                                   int64_t classes) {
    this->unsupported("onehot_mse_backward");
  }
};

}  // namespace fwp
