#include "nn/cross_entropy_loss.h"

#include <string>
#include <utility>
#include <vector>

namespace fwp {

template <typename T>
CrossEntropyLoss<T>::CrossEntropyLoss(std::shared_ptr<Backend<T>> backend) : backend_(std::move(backend)) {
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "CrossEntropyLoss needs a backend");
}

template <typename T>
void CrossEntropyLoss<T>::set_label_smoothing(double smoothing) {
  require(smoothing >= 0.0 && smoothing < 1.0, FWP_ERR_INVALID_ARGUMENT,
          "label smoothing must be in [0, 1) (got " + std::to_string(smoothing) + ")");
  smoothing_ = smoothing;
}

// Sums per-row values on the host in double.
template <typename T>
static double host_sum(const Buffer<T>& values) {
  double sum = 0.0;
  for (T v : values.to_host()) sum += static_cast<double>(v);
  return sum;
}

template <typename T>
void CrossEntropyLoss<T>::check(ConstView<T> logits, IdView targets) const {
  require(logits.rank() >= 1 && logits.cols() >= 1, FWP_ERR_SHAPE_MISMATCH,
          "CrossEntropyLoss logits have shape " + logits.shape().str() + "; the last dimension (classes) must be >= 1");
  require(targets.rank() < kMaxTensorRank, FWP_ERR_SHAPE_MISMATCH, "CrossEntropyLoss targets have rank 4");
  check_shape(logits.shape(), append_dim(targets.shape(), logits.cols()), "CrossEntropyLoss logits");
}

template <typename T>
double CrossEntropyLoss<T>::forward(ConstView<T> logits, IdView targets) {
  check(logits, targets);
  const int64_t rows = logits.rows();
  loss_.resize(backend_, rows);
  lse_.resize(backend_, rows);
  saved_rows_ = rows;
  saved_smoothing_ = smoothing_;  // the backward differentiates what this forward computed
  nll_sum_ = 0.0;
  if (rows == 0) return 0.0;
  if (smoothing_ == 0.0) {
    backend_->cross_entropy_forward(logits.data(), targets.data(), loss_.data(), lse_.data(), rows, logits.cols());
    nll_sum_ = host_sum(loss_);
    return nll_sum_;
  }
  require(logits.cols() >= 2, FWP_ERR_SHAPE_MISMATCH, "CrossEntropyLoss: label smoothing needs at least 2 classes");
  nll_.resize(backend_, rows);
  backend_->smoothed_cross_entropy_forward(logits.data(), targets.data(), static_cast<T>(smoothing_), loss_.data(),
                                           nll_.data(), lse_.data(), rows, logits.cols());
  nll_sum_ = host_sum(nll_);
  return host_sum(loss_);
}

template <typename T>
void CrossEntropyLoss<T>::backward(ConstView<T> logits, IdView targets, T scale, TensorView<T> dlogits) {
  require(saved_rows_ >= 0, FWP_ERR_BAD_STATE, "CrossEntropyLoss: backward needs a forward first");
  check(logits, targets);
  require(logits.rows() == saved_rows_, FWP_ERR_SHAPE_MISMATCH,
          "CrossEntropyLoss logits have " + std::to_string(logits.rows()) + " rows but the last forward had " +
              std::to_string(saved_rows_));
  check_shape(dlogits.shape(), logits.shape(), "CrossEntropyLoss logit gradient");
  if (saved_rows_ == 0) return;
  if (saved_smoothing_ == 0.0) {
    backend_->cross_entropy_backward(logits.data(), targets.data(), lse_.data(), scale, dlogits.data(), saved_rows_,
                                     logits.cols());
  } else {
    backend_->smoothed_cross_entropy_backward(logits.data(), targets.data(), lse_.data(), static_cast<T>(saved_smoothing_),
                                              scale, dlogits.data(), saved_rows_, logits.cols());
  }
}

template class CrossEntropyLoss<float>;
template class CrossEntropyLoss<double>;

}  // namespace fwp
