#include "nn/feed_forward.h"

#include <utility>

#include "core/limits.h"

namespace fwp {

template <typename T>
FeedForward<T>::FeedForward(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, const std::string& name,
                            int64_t d_model, int64_t d_inner, Activation activation, bool bias)
    : backend_(std::move(backend)),
      name_(name),
      d_model_(d_model),
      d_inner_(d_inner),
      activation_(activation),
      linear1_(params, backend_, name + ".linear1", d_model, d_inner, bias),
      linear2_(params, backend_, name + ".linear2", d_inner, d_model, bias) {}

template <typename T>
void FeedForward<T>::init_normal(ParameterList<T>& params, Rng& rng, double std) const {
  linear1_.init_normal(params, rng, std);
  linear2_.init_normal(params, rng, std);
}

template <typename T>
void FeedForward<T>::activate(const T* h, T* a, int64_t n) const {
  if (activation_ == Activation::Relu) {
    backend_->relu_forward(h, a, n);
  } else {
    backend_->gelu_forward(h, a, n);
  }
}

template <typename T>
void FeedForward<T>::activate_backward(const T* h, const T* da, T* dh, int64_t n) const {
  if (activation_ == Activation::Relu) {
    backend_->relu_backward(h, da, dh, n);
  } else {
    backend_->gelu_backward(h, da, dh, n);
  }
}

template <typename T>
void FeedForward<T>::forward(const ParameterList<T>& params, ConstView<T> x, TensorView<T> y) {
  check_cols(x.shape(), d_model_, "FeedForward '" + name_ + "' input x");
  check_shape(y.shape(), x.shape(), "FeedForward '" + name_ + "' output y");
  const int64_t rows = x.rows();
  const int64_t n = checked_mul(rows, d_inner_, "FeedForward '" + name_ + "' hidden activations");
  pre_.resize(backend_, n);
  work_.resize(backend_, n);
  const Shape hidden = with_cols(x.shape(), d_inner_);
  TensorView<T> h(pre_.data(), hidden), a(work_.data(), hidden);
  linear1_.forward(params, x, h);
  activate(h.data(), a.data(), n);
  linear2_.forward(params, a, y);
  saved_rows_ = rows;
}

template <typename T>
void FeedForward<T>::backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx,
                              InputGrad mode) {
  require(saved_rows_ >= 0, FWP_ERR_BAD_STATE, "FeedForward '" + name_ + "': backward needs a forward first");
  check_cols(x.shape(), d_model_, "FeedForward '" + name_ + "' input x");
  require(x.rows() == saved_rows_, FWP_ERR_SHAPE_MISMATCH,
          "FeedForward '" + name_ + "' input x has " + std::to_string(x.rows()) +
              " rows but the last forward had " + std::to_string(saved_rows_));
  check_shape(dy.shape(), x.shape(), "FeedForward '" + name_ + "' output gradient dy");
  const int64_t n = x.rows() * d_inner_;
  const Shape hidden = with_cols(x.shape(), d_inner_);
  TensorView<T> h(pre_.data(), hidden), work(work_.data(), hidden);
  // The activation is recomputed rather than saved (one cheap pass instead of
  // another [rows, d_inner] array). linear2's backward takes its weight
  // gradient from `work` before overwriting it with the activation's gradient.
  activate(h.data(), work.data(), n);
  linear2_.backward(params, work, dy, work, InputGrad::Overwrite);
  activate_backward(h.data(), work.data(), work.data(), n);
  linear1_.backward(params, x, work, dx, mode);
}

template class FeedForward<float>;
template class FeedForward<double>;

}  // namespace fwp
