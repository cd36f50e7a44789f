// A named parameter tensor with its gradient, and the list of them that every
// layer and model exposes. The C API's parameter functions, the optimizers and
// the checkpoints all work on a ParameterList, so they treat layers and models
// alike.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer.h"

namespace fwp {

template <typename T>
struct Parameter {
  std::string name;
  std::vector<int64_t> shape;
  Buffer<T> value;
  Buffer<T> grad;          // same size as value (allocated for fixed buffers too, kept at zero)
  bool trainable = true;   // false for fixed buffers, e.g. FAVOR+ projections

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
};

template <typename T>
class ParameterList {
 public:
  // Adds a parameter (value and grad zero-filled) and returns it.
  Parameter<T>& add(const std::shared_ptr<Backend<T>>& backend, std::string name, std::vector<int64_t> shape,
                    bool trainable = true) {
    auto p = std::make_unique<Parameter<T>>();
    p->name = std::move(name);
    p->shape = std::move(shape);
    p->trainable = trainable;
    p->value = Buffer<T>(backend, p->numel());
    p->grad = Buffer<T>(backend, p->numel());
    p->value.zero();
    p->grad.zero();
    params_.push_back(std::move(p));
    return *params_.back();
  }
  int64_t size() const { return static_cast<int64_t>(params_.size()); }
  Parameter<T>& operator[](int64_t i) { return *params_[static_cast<size_t>(i)]; }
  const Parameter<T>& operator[](int64_t i) const { return *params_[static_cast<size_t>(i)]; }
  // Index of the parameter with this name, or -1.
  int64_t find(const std::string& name) const {
    for (size_t i = 0; i < params_.size(); ++i)
      if (params_[i]->name == name) return static_cast<int64_t>(i);
    return -1;
  }
  void zero_grad() {
    for (auto& p : params_) p->grad.zero();
  }

 private:
  // unique_ptr keeps each Parameter's address stable while the list grows.
  std::vector<std::unique_ptr<Parameter<T>>> params_;
};

}  // namespace fwp
