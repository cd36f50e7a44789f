// LayerNorm over the last dimension with a learned gain and bias (PyTorch's
// nn.LayerNorm: biased variance, eps inside the square root). Used before
// (pre-norm) or after (post-norm, the paper's LM) a residual block; the
// module does not care. Keeps the per-row mean and 1/std of its last forward
// for the backward. See linear.h for how modules hold their parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/tensor.h"
#include "nn/input_grad.h"
#include "nn/parameter.h"

namespace fwp {

template <typename T>
class LayerNorm {
 public:
  // Declares "<name>.weight" (the gain) and "<name>.bias", both [d]. Throws
  // Error(FWP_ERR_INVALID_ARGUMENT) unless d >= 1 and eps is finite and > 0.
  LayerNorm(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string name, int64_t d,
            double eps = 1e-5);

  // Gain 1, bias 0.
  void init(ParameterList<T>& params) const;

  // x, y: [..., d], same shape; y must not alias x (the backward reads x).
  // Saves mean and 1/std per row.
  void forward(const ParameterList<T>& params, ConstView<T> x, TensorView<T> y);

  // Adds to the gain and bias gradients; writes dx (overwrite or accumulate;
  // a null dx skips it). x must be the last forward's input, unchanged.
  // Throws Error(FWP_ERR_BAD_STATE) before any forward and
  // Error(FWP_ERR_SHAPE_MISMATCH) when x has another number of rows than then.
  void backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx, InputGrad mode);

  const std::string& name() const { return name_; }
  int64_t dim() const { return d_; }
  double eps() const { return eps_; }
  int64_t gain_index() const { return gain_; }
  int64_t bias_index() const { return bias_; }

 private:
  void check_params(const ParameterList<T>& params) const;

  std::shared_ptr<Backend<T>> backend_;
  std::string name_;
  int64_t d_ = 0;
  double eps_ = 1e-5;
  int64_t gain_ = -1, bias_ = -1;
  // Saved by forward: per-row statistics of `saved_rows_` rows (-1: no forward yet).
  int64_t saved_rows_ = -1;
  Buffer<T> mean_, rstd_;
};

extern template class LayerNorm<float>;
extern template class LayerNorm<double>;

}  // namespace fwp
