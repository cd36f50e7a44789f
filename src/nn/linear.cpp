#include "nn/linear.h"

#include <cmath>
#include <utility>
#include <vector>

#include "core/limits.h"
#include "nn/module_init.h"

namespace fwp {

template <typename T>
Linear<T>::Linear(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string name,
                  int64_t in_features, int64_t out_features, bool bias)
    : backend_(std::move(backend)), name_(std::move(name)), in_(in_features), out_(out_features) {
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "Linear '" + name_ + "' needs a backend");
  require(in_ >= 1, FWP_ERR_INVALID_ARGUMENT,
          "Linear '" + name_ + "': in_features must be >= 1 (got " + std::to_string(in_) + ")");
  require(out_ >= 1, FWP_ERR_INVALID_ARGUMENT,
          "Linear '" + name_ + "': out_features must be >= 1 (got " + std::to_string(out_) + ")");
  checked_mul(out_, in_, "Linear '" + name_ + "' weight");
  weight_ = nn_init::declare_parameter(params, backend_, name_ + ".weight", {out_, in_});
  if (bias) bias_ = nn_init::declare_parameter(params, backend_, name_ + ".bias", {out_});
}

template <typename T>
void Linear<T>::check_params(const ParameterList<T>& params) const {
  const bool ok = weight_ < params.size() && params[weight_].numel() == out_ * in_ &&
                  (bias_ < 0 || (bias_ < params.size() && params[bias_].numel() == out_));
  require(ok, FWP_ERR_INTERNAL, "Linear '" + name_ + "': the parameter list does not hold its parameters");
}

template <typename T>
void Linear<T>::init_normal(ParameterList<T>& params, Rng& rng, double std) const {
  check_params(params);
  nn_init::fill(*backend_, params[weight_], [&] { return std * rng.normal(); });
  if (bias_ >= 0) nn_init::fill(*backend_, params[bias_], [] { return 0.0; });
}

template <typename T>
void Linear<T>::init_uniform_fan_in(ParameterList<T>& params, Rng& rng) const {
  check_params(params);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
  auto uniform = [&] { return (2.0 * rng.uniform() - 1.0) * bound; };
  nn_init::fill(*backend_, params[weight_], uniform);
  if (bias_ >= 0) nn_init::fill(*backend_, params[bias_], uniform);
}

template <typename T>
void Linear<T>::forward(const ParameterList<T>& params, ConstView<T> x, TensorView<T> y) const {
  check_params(params);
  check_cols(x.shape(), in_, "Linear '" + name_ + "' input x");
  check_shape(y.shape(), with_cols(x.shape(), out_), "Linear '" + name_ + "' output y");
  const int64_t rows = x.rows();
  if (rows == 0) return;
  backend_->gemm(false, true, rows, out_, in_, T(1), x.data(), in_, params[weight_].value.data(), in_, T(0),
                 y.data(), out_);
  if (bias_ >= 0) backend_->add_bias(y.data(), params[bias_].value.data(), rows, out_);
}

template <typename T>
void Linear<T>::backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx,
                         InputGrad mode) const {
  check_params(params);
  check_cols(x.shape(), in_, "Linear '" + name_ + "' input x");
  check_shape(dy.shape(), with_cols(x.shape(), out_), "Linear '" + name_ + "' output gradient dy");
  if (!dx.is_null()) check_shape(dx.shape(), x.shape(), "Linear '" + name_ + "' input gradient dx");
  const int64_t rows = x.rows();
  if (rows == 0) return;
  // dW += dy^T x, before dx is written (dx may alias x).
  backend_->gemm(true, false, out_, in_, rows, T(1), dy.data(), out_, x.data(), in_, T(1),
                 params[weight_].grad.data(), in_);
  if (bias_ >= 0) backend_->bias_grad_accumulate(params[bias_].grad.data(), dy.data(), rows, out_);
  if (!dx.is_null()) {
    const T beta = mode == InputGrad::Accumulate ? T(1) : T(0);
    backend_->gemm(false, false, rows, in_, out_, T(1), dy.data(), out_, params[weight_].value.data(), in_, beta,
                   dx.data(), in_);
  }
}

template class Linear<float>;
template class Linear<double>;

}  // namespace fwp
