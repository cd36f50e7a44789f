#include "nn/dropout.h"

#include "core/counter_hash.h"

#include <cmath>
#include <string>
#include <utility>

namespace fwp {

template <typename T>
Dropout<T>::Dropout(std::shared_ptr<Backend<T>> backend, double p, std::shared_ptr<const uint64_t> stream)
    : backend_(std::move(backend)), stream_(std::move(stream)), p_(p) {
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "Dropout needs a backend");
  require(std::isfinite(p_) && p_ >= 0.0 && p_ < 1.0, FWP_ERR_INVALID_ARGUMENT,
          "dropout must be in [0, 1) (got " + std::to_string(p_) + ")");
}

template <typename T>
void Dropout<T>::forward(ConstView<T> x, TensorView<T> y, Rng& rng, bool training) {
  check_shape(y.shape(), x.shape(), "Dropout output y");
  saved_numel_ = x.numel();
  saved_masked_ = training && p_ > 0.0;
  if (saved_masked_) {
    seed_ = rng.next_u64();
    if (stream_ && *stream_ != 0) seed_ = counter_hash(seed_, *stream_);
    backend_->dropout_forward(x.data(), y.data(), x.numel(), p_, seed_);
  } else if (y.data() != x.data() && x.numel() > 0) {
    backend_->copy(y.data(), x.data(), x.numel());
  }
}

template <typename T>
void Dropout<T>::backward(ConstView<T> dy, TensorView<T> dx) {
  require(saved_numel_ >= 0, FWP_ERR_BAD_STATE, "Dropout: backward needs a forward first");
  check_shape(dx.shape(), dy.shape(), "Dropout input gradient dx");
  require(dy.numel() == saved_numel_, FWP_ERR_SHAPE_MISMATCH,
          "Dropout output gradient dy has " + std::to_string(dy.numel()) + " elements but the last forward had " +
              std::to_string(saved_numel_));
  if (saved_masked_) {
    backend_->dropout_backward(dy.data(), dx.data(), dy.numel(), p_, seed_);
  } else if (dx.data() != dy.data() && dy.numel() > 0) {
    backend_->copy(dx.data(), dy.data(), dy.numel());
  }
}

template class Dropout<float>;
template class Dropout<double>;

}  // namespace fwp
