// Softmax cross-entropy over the last dimension of [rows, classes] logits, the
// language model's loss. CPU: src/ops/cross_entropy.cpp; CUDA: cuda/cross_entropy.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class CrossEntropyOps : public virtual BackendFamily {
 public:
  // Per row r: lse[r] = log sum_c exp(logits[r, c]) (computed as max + log sum
  // exp(l - max), so large logits do not overflow), and
  // loss[r] = lse[r] - logits[r, targets[r]]. A negative target is ignored
  // (padding): loss[r] = 0 (lse[r] is still written). A target >= classes is a
  // caller bug: the CPU throws Error(FWP_ERR_INTERNAL), CUDA writes a NaN loss.
  // logits: [rows, classes]; targets, loss, lse: [rows].
  virtual void cross_entropy_forward(const T* logits, const int32_t* targets, T* loss, T* lse, int64_t rows,
                                     int64_t classes) {
    this->unsupported("cross_entropy_forward");
  }

  // dlogits[r, c] = scale * (exp(logits[r, c] - lse[r]) - [c == targets[r]]),
  // and 0 for rows with a negative target. lse is the forward's. dlogits may
  // alias logits (the logits are then overwritten by their gradient, which
  // saves a [rows, classes] array for a large vocabulary).
  virtual void cross_entropy_backward(const T* logits, const int32_t* targets, const T* lse, T scale, T* dlogits,
                                      int64_t rows, int64_t classes) {
    this->unsupported("cross_entropy_backward");
  }

  // Label-smoothed cross-entropy, fairseq's definition (the translation
  // model's loss): with e = smoothing / (classes - 1) the target distribution
  // gives 1 - smoothing to the target and e to every other class, so per row
  //   loss[r] = (1 - smoothing - e) (lse[r] - l_t) + e sum_c (lse[r] - l_c)
  //   nll[r]  = lse[r] - l_t               (the unsmoothed loss, for perplexity)
  // Negative targets are ignored (loss = nll = 0; lse still written). smoothing
  // is in [0, 1) and classes >= 2 (checked by the caller); smoothing 0 gives
  // the plain cross-entropy.
  virtual void smoothed_cross_entropy_forward(const T* logits, const int32_t* targets, T smoothing, T* loss, T* nll,
                                              T* lse, int64_t rows, int64_t classes) {
    this->unsupported("smoothed_cross_entropy_forward");
  }

  // dlogits[r, c] = scale * (softmax_c - e - (1 - smoothing - e) [c == t]); 0
  // for ignored rows. lse is the forward's; dlogits may alias logits.
  virtual void smoothed_cross_entropy_backward(const T* logits, const int32_t* targets, const T* lse, T smoothing,
                                               T scale, T* dlogits, int64_t rows, int64_t classes) {
    this->unsupported("smoothed_cross_entropy_backward");
  }
};

}  // namespace fwp
