// Dropout (inverted: kept elements are scaled by 1 / (1 - p) in training, so
// evaluation is the identity). The mask is not stored: each training forward
// draws a 64-bit seed from the caller's Rng (so a model's dropout is seeded
// through its context and checkpointed with its Rng state) and the backward
// recomputes the same mask from it (core/counter_hash.h). Holds no parameters.
#pragma once

#include <cstdint>
#include <memory>

#include "core/backend.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace fwp {

template <typename T>
class Dropout {
 public:
  // Throws Error(FWP_ERR_INVALID_ARGUMENT) unless 0 <= p < 1. `stream`
  // (nullable, shared by a model's dropouts) is mixed into every seed when it
  // is not 0: data-parallel ranks draw the same seeds from their equal Rngs
  // (so FAVOR+ redraws stay equal) and still get masks of their own.
  Dropout(std::shared_ptr<Backend<T>> backend, double p, std::shared_ptr<const uint64_t> stream = nullptr);

  // Training (and p > 0): y = mask * x / (1 - p) with a fresh seed from `rng`.
  // Otherwise y = x (a copy; nothing when y is x). y may alias x; same shapes.
  void forward(ConstView<T> x, TensorView<T> y, Rng& rng, bool training);

  // dx = mask * dy / (1 - p) with the last forward's mask (dx = dy after an
  // evaluation forward). Overwrites dx; dx may alias dy. Throws
  // Error(FWP_ERR_BAD_STATE) before any forward and
  // Error(FWP_ERR_SHAPE_MISMATCH) when dy has another size than that forward's x.
  void backward(ConstView<T> dy, TensorView<T> dx);

  double p() const { return p_; }
  // The seed of the last training forward (for tests and debugging).
  uint64_t last_seed() const { return seed_; }

 private:
  std::shared_ptr<Backend<T>> backend_;
  std::shared_ptr<const uint64_t> stream_;
  double p_ = 0.0;
  int64_t saved_numel_ = -1;  // -1: no forward yet
  bool saved_masked_ = false;
  uint64_t seed_ = 0;
};

extern template class Dropout<float>;
extern template class Dropout<double>;

}  // namespace fwp
