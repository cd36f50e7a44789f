// Linear: y = x W^T + b over the last dimension, W in PyTorch's layout
// [out_features, in_features], b [out_features] optional.
//
// Like every module in src/nn, a Linear declares its parameters in a
// ParameterList that the owner (a model) holds and keeps only their indices;
// every call takes that list. Values are set by an init step after the list
// is allocated (declare -> allocate -> init). All tensors are device arrays
// of the module's backend.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/input_grad.h"
#include "nn/parameter.h"

namespace fwp {

template <typename T>
class Linear {
 public:
  // Declares "<name>.weight" [out, in] and, with bias, "<name>.bias" [out].
  // Throws Error(FWP_ERR_INVALID_ARGUMENT) unless in, out >= 1.
  Linear(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string name, int64_t in_features,
         int64_t out_features, bool bias);

  // W ~ N(0, std^2) drawn row-major, b = 0 (the paper's language model).
  void init_normal(ParameterList<T>& params, Rng& rng, double std) const;
  // PyTorch's nn.Linear default: W, then b, ~ U(-1/sqrt(in), 1/sqrt(in)),
  // each drawn row-major as (2 u - 1) / sqrt(in) (the retrieval model's init).
  void init_uniform_fan_in(ParameterList<T>& params, Rng& rng) const;

  // x: [..., in]; y: [..., out] with the same leading dimensions. y must not alias x.
  void forward(const ParameterList<T>& params, ConstView<T> x, TensorView<T> y) const;

  // Adds dy^T x to dW and the column sums of dy to db; writes dx = dy W
  // (overwrite or accumulate; a null dx skips it). x is the forward's input;
  // dx may alias x (the weight gradient is taken before dx is written), not dy.
  void backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx, InputGrad mode) const;

  const std::string& name() const { return name_; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  bool has_bias() const { return bias_ >= 0; }
  int64_t weight_index() const { return weight_; }
  int64_t bias_index() const { return bias_; }  // -1 without bias

 private:
  // Throws Error(FWP_ERR_INTERNAL) when `params` is not the list this module declared into.
  void check_params(const ParameterList<T>& params) const;

  std::shared_ptr<Backend<T>> backend_;
  std::string name_;
  int64_t in_ = 0, out_ = 0;
  int64_t weight_ = -1, bias_ = -1;
};

extern template class Linear<float>;
extern template class Linear<double>;

}  // namespace fwp
