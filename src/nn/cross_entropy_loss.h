// CrossEntropyLoss: softmax cross-entropy of logits [..., classes] against
// integer targets [...], negative targets ignored (padding): the language
// model's loss, and with label smoothing (fairseq's definition, see the
// cross_entropy ops) the translation model's. Keeps the per-row log-sum-exp of
// its last forward for the backward. Holds no parameters.
#pragma once

#include <cstdint>
#include <memory>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/tensor.h"

namespace fwp {

template <typename T>
class CrossEntropyLoss {
 public:
  explicit CrossEntropyLoss(std::shared_ptr<Backend<T>> backend);

  // Label smoothing in [0, 1); 0 (the default) is the plain cross-entropy.
  // Throws Error(FWP_ERR_INVALID_ARGUMENT) outside [0, 1).
  void set_label_smoothing(double smoothing);
  double label_smoothing() const { return smoothing_; }

  // Returns the SUM of the per-row losses (ignored rows add 0), summed on the
  // host in double; the caller divides by its count of scored targets, which
  // it knows from the host ids. Targets must be < classes (checked at the C
  // boundary; see the cross_entropy ops for what happens otherwise).
  // With label smoothing the sum is of the smoothed losses (what backward
  // differentiates); last_nll_sum() has the unsmoothed one (for perplexity).
  // Smoothing needs at least 2 classes.
  double forward(ConstView<T> logits, IdView targets);

  // The sum of the unsmoothed losses -log p(target) of the last forward (equal
  // to its return value without smoothing).
  double last_nll_sum() const { return nll_sum_; }

  // dlogits = scale * d(sum of losses)/d logits (e.g. scale = 1 / count for
  // the mean); overwritten, zero rows for ignored targets. dlogits may be the
  // logits themselves. logits and targets must be the last forward's.
  void backward(ConstView<T> logits, IdView targets, T scale, TensorView<T> dlogits);

  // Per-row losses of the last forward, [rows] on the backend.
  const Buffer<T>& row_losses() const { return loss_; }

 private:
  void check(ConstView<T> logits, IdView targets) const;

  std::shared_ptr<Backend<T>> backend_;
  int64_t saved_rows_ = -1;
  double smoothing_ = 0.0, saved_smoothing_ = 0.0;
  double nll_sum_ = 0.0;
  Buffer<T> loss_, lse_, nll_;
};

extern template class CrossEntropyLoss<float>;
extern template class CrossEntropyLoss<double>;

}  // namespace fwp
