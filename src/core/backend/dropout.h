// Dropout with a counter-based mask (core/counter_hash.h): element i of a call
// with `seed` is kept iff dropout_keep(seed, i, dropout_threshold(p)), the same
// on every backend and thread count, and recomputed by the backward instead of
// stored. CPU: src/ops/dropout.cpp; CUDA: cuda/dropout.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class DropoutOps : public virtual BackendFamily {
 public:
  // y[i] = keep(i) ? x[i] / (1 - p) : 0, for 0 <= p < 1. y may alias x.
  virtual void dropout_forward(const T* x, T* y, int64_t n, double p, uint64_t seed) {
    this->unsupported("dropout_forward");
  }

  // dx[i] = keep(i) ? dy[i] / (1 - p) : 0 with the forward's p and seed. dx may alias dy.
  virtual void dropout_backward(const T* dy, T* dx, int64_t n, double p, uint64_t seed) {
    this->unsupported("dropout_backward");
  }
};

}  // namespace fwp
