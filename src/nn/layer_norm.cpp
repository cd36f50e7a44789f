#include "nn/layer_norm.h"

#include <cmath>
#include <utility>

#include "nn/module_init.h"

namespace fwp {

template <typename T>
LayerNorm<T>::LayerNorm(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string name, int64_t d,
                        double eps)
    : backend_(std::move(backend)), name_(std::move(name)), d_(d), eps_(eps) {
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "LayerNorm '" + name_ + "' needs a backend");
  require(d_ >= 1, FWP_ERR_INVALID_ARGUMENT,
          "LayerNorm '" + name_ + "': d must be >= 1 (got " + std::to_string(d_) + ")");
  require(std::isfinite(eps_) && eps_ > 0, FWP_ERR_INVALID_ARGUMENT,
          "LayerNorm '" + name_ + "': eps must be finite and > 0 (got " + std::to_string(eps_) + ")");
  gain_ = nn_init::declare_parameter(params, backend_, name_ + ".weight", {d_});
  bias_ = nn_init::declare_parameter(params, backend_, name_ + ".bias", {d_});
}

template <typename T>
void LayerNorm<T>::check_params(const ParameterList<T>& params) const {
  const bool ok = bias_ < params.size() && params[gain_].numel() == d_ && params[bias_].numel() == d_;
  require(ok, FWP_ERR_INTERNAL, "LayerNorm '" + name_ + "': the parameter list does not hold its parameters");
}

template <typename T>
void LayerNorm<T>::init(ParameterList<T>& params) const {
  check_params(params);
  nn_init::fill(*backend_, params[gain_], [] { return 1.0; });
  nn_init::fill(*backend_, params[bias_], [] { return 0.0; });
}

template <typename T>
void LayerNorm<T>::forward(const ParameterList<T>& params, ConstView<T> x, TensorView<T> y) {
  check_params(params);
  check_cols(x.shape(), d_, "LayerNorm '" + name_ + "' input x");
  check_shape(y.shape(), x.shape(), "LayerNorm '" + name_ + "' output y");
  const int64_t rows = x.rows();
  mean_.resize(backend_, rows);
  rstd_.resize(backend_, rows);
  if (rows > 0) {
    backend_->layer_norm_forward(x.data(), params[gain_].value.data(), params[bias_].value.data(), T(eps_),
                                 y.data(), mean_.data(), rstd_.data(), rows, d_);
  }
  saved_rows_ = rows;
}

template <typename T>
void LayerNorm<T>::backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx,
                            InputGrad mode) {
  check_params(params);
  require(saved_rows_ >= 0, FWP_ERR_BAD_STATE, "LayerNorm '" + name_ + "': backward needs a forward first");
  check_cols(x.shape(), d_, "LayerNorm '" + name_ + "' input x");
  require(x.rows() == saved_rows_, FWP_ERR_SHAPE_MISMATCH,
          "LayerNorm '" + name_ + "' input x has " + std::to_string(x.rows()) + " rows but the last forward had " +
              std::to_string(saved_rows_));
  check_shape(dy.shape(), x.shape(), "LayerNorm '" + name_ + "' output gradient dy");
  if (!dx.is_null()) check_shape(dx.shape(), x.shape(), "LayerNorm '" + name_ + "' input gradient dx");
  const int64_t rows = x.rows();
  if (rows == 0) return;
  backend_->layer_norm_param_grad_accumulate(x.data(), mean_.data(), rstd_.data(), dy.data(),
                                             params[gain_].grad.data(), params[bias_].grad.data(), rows, d_);
  if (!dx.is_null()) {
    const T beta = mode == InputGrad::Accumulate ? T(1) : T(0);
    backend_->layer_norm_backward(x.data(), params[gain_].value.data(), mean_.data(), rstd_.data(), dy.data(), beta,
                                  dx.data(), rows, d_);
  }
}

template class LayerNorm<float>;
template class LayerNorm<double>;

}  // namespace fwp
