// FeedForward: y = Linear2(act(Linear1(x))), d_model -> d_inner -> d_model,
// the position-wise block of a Transformer layer (ReLU in the paper's
// Transformer-XL-style language model; GELU also offered). No dropout: add it
// as its own module (with a seeded mask) when a model needs it. Keeps the
// pre-activation of its last forward for the backward, and one scratch array
// of the same size. See linear.h for how modules hold their parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/input_grad.h"
#include "nn/linear.h"
#include "nn/parameter.h"

namespace fwp {

enum class Activation { Relu, Gelu };

template <typename T>
class FeedForward {
 public:
  // Declares "<name>.linear1.weight" [d_inner, d_model], "<name>.linear1.bias",
  // "<name>.linear2.weight" [d_model, d_inner], "<name>.linear2.bias" (biases
  // only with `bias`). Throws Error(FWP_ERR_INVALID_ARGUMENT) unless d_model, d_inner >= 1.
  FeedForward(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, const std::string& name,
              int64_t d_model, int64_t d_inner, Activation activation, bool bias = true);

  // Both weights ~ N(0, std^2), biases 0 (the paper's LM: std 0.02).
  void init_normal(ParameterList<T>& params, Rng& rng, double std) const;

  // x, y: [..., d_model], same shape; y may not alias x (the backward reads x).
  void forward(const ParameterList<T>& params, ConstView<T> x, TensorView<T> y);

  // Adds to all four parameter gradients; writes dx (overwrite or accumulate;
  // a null dx skips it). x must be the last forward's input, unchanged.
  // Throws Error(FWP_ERR_BAD_STATE) before any forward and
  // Error(FWP_ERR_SHAPE_MISMATCH) when x has another number of rows than then.
  void backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx, InputGrad mode);

  const std::string& name() const { return name_; }
  int64_t d_model() const { return d_model_; }
  int64_t d_inner() const { return d_inner_; }
  Activation activation() const { return activation_; }
  const Linear<T>& linear1() const { return linear1_; }
  const Linear<T>& linear2() const { return linear2_; }

 private:
  void activate(const T* h, T* a, int64_t n) const;
  // dh = dA * act'(h); dh may alias da.
  void activate_backward(const T* h, const T* da, T* dh, int64_t n) const;

  std::shared_ptr<Backend<T>> backend_;
  std::string name_;
  int64_t d_model_ = 0, d_inner_ = 0;
  Activation activation_ = Activation::Relu;
  Linear<T> linear1_, linear2_;
  // Saved by forward: the pre-activation [rows, d_inner] of `saved_rows_` rows (-1: none).
  int64_t saved_rows_ = -1;
  Buffer<T> pre_;
  // Scratch [rows, d_inner]: the activation in forward, then its gradient in backward.
  Buffer<T> work_;
};

extern template class FeedForward<float>;
extern template class FeedForward<double>;

}  // namespace fwp
