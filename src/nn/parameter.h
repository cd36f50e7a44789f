// Named parameter tensors of a layer or model, and the list of them that the
// C API's parameter functions, the optimizers and the checkpoints work on, so
// they treat layers and models alike.
//
// A ParameterList owns ONE contiguous block of values and ONE of gradients on
// its backend (llm.c's layout); every Parameter's value and grad are views
// into them. The owner first declares every parameter (name, shape,
// trainable), then allocate() makes the two blocks, zero-filled, then the
// owner initialises the values. Trainable parameters come first, in
// declaration order, so an optimizer covers them all with one norm reduction
// and one update over [0, trainable_size()); fixed buffers (e.g. FAVOR+
// projections) follow, outside that range.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"
#include "core/limits.h"

namespace fwp {

// A non-owning window of a backend array: a parameter's slice of its list's
// block, or of an optimizer's moment block. Offers what Buffer offers for
// reading and writing elements; the block's owner keeps the memory alive.
template <typename T>
class BlockView {
 public:
  BlockView() = default;
  BlockView(Backend<T>* backend, T* data, int64_t size) : backend_(backend), data_(data), size_(size) {}

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void zero() {
    if (size_ > 0) backend_->fill(data_, T(0), size_);
  }
  std::vector<T> to_host() const {
    std::vector<T> h(static_cast<size_t>(size_));
    if (size_ > 0) backend_->download(h.data(), data_, size_);
    return h;
  }
  void from_host(const T* src, int64_t n) {
    require(n == size_, FWP_ERR_INTERNAL, "BlockView::from_host size mismatch");
    if (n > 0) backend_->upload(data_, src, n);
  }

 private:
  Backend<T>* backend_ = nullptr;
  T* data_ = nullptr;
  int64_t size_ = 0;
};

template <typename T>
struct Parameter {
  std::string name;
  std::vector<int64_t> shape;
  bool trainable = true;  // false for fixed buffers, e.g. FAVOR+ projections
  BlockView<T> value;     // views into the list's blocks; empty until it is allocated
  BlockView<T> grad;      // same size as value (kept at zero for fixed buffers)
  int64_t offset = 0;     // where value and grad start in the list's blocks (elements)

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;  // bounded when the parameter was declared
    return n;
  }
};

template <typename T>
class ParameterList {
 public:
  // Every parameter starts at a multiple of 256 bytes: the alignment of a
  // separate allocation (CPU: 64 bytes; cudaMalloc: 256), so kernels see the
  // same alignment as with one buffer per parameter. The padding between
  // parameters holds zeros that no op writes, so updating or reducing over the
  // whole trainable range touches nothing else.
  static constexpr int64_t kAlignElements = 256 / static_cast<int64_t>(sizeof(T));

  // Declares a parameter; its value and grad exist once allocate() has run.
  Parameter<T>& declare(std::string name, std::vector<int64_t> shape, bool trainable = true) {
    require(!allocated(), FWP_ERR_INTERNAL,
            "ParameterList: '" + name + "' declared after allocate(); declare every parameter first");
    params_.push_back(make_parameter(std::move(name), std::move(shape), trainable));
    return *params_.back();
  }

  // Allocates the value and gradient blocks on `backend`, zero-filled, and
  // points every declared parameter into them.
  void allocate(const std::shared_ptr<Backend<T>>& backend) {
    require(!allocated(), FWP_ERR_INTERNAL, "ParameterList::allocate called twice");
    require(backend != nullptr, FWP_ERR_INTERNAL, "ParameterList::allocate needs a backend");
    lay_out(backend);
  }

  // Declares and allocates at once, keeping the values and gradients of the
  // parameters already there (the blocks are re-made, so earlier data()
  // pointers go stale). For lists built one parameter at a time, e.g. in
  // tests; owners declare everything and allocate once.
  Parameter<T>& add(const std::shared_ptr<Backend<T>>& backend, std::string name, std::vector<int64_t> shape,
                    bool trainable = true) {
    require(backend != nullptr, FWP_ERR_INTERNAL, "ParameterList::add needs a backend");
    require(!allocated() || backend == backend_, FWP_ERR_INTERNAL, "ParameterList::add on another backend");
    params_.push_back(make_parameter(std::move(name), std::move(shape), trainable));
    try {
      lay_out(backend);
    } catch (...) {
      params_.pop_back();  // the old blocks and views are untouched
      throw;
    }
    return *params_.back();
  }

  bool allocated() const { return backend_ != nullptr; }
  int64_t size() const { return static_cast<int64_t>(params_.size()); }
  Parameter<T>& operator[](int64_t i) { return *params_[static_cast<size_t>(i)]; }
  const Parameter<T>& operator[](int64_t i) const { return *params_[static_cast<size_t>(i)]; }
  // Index of the parameter with this name, or -1.
  int64_t find(const std::string& name) const {
    for (size_t i = 0; i < params_.size(); ++i)
      if (params_[i]->name == name) return static_cast<int64_t>(i);
    return -1;
  }

  // The blocks. Elements [0, trainable_size()) hold every trainable parameter
  // (and zero padding); fixed buffers lie after.
  T* value_block() { return values_.data(); }
  const T* value_block() const { return values_.data(); }
  T* grad_block() { return grads_.data(); }
  const T* grad_block() const { return grads_.data(); }
  int64_t trainable_size() const { return trainable_size_; }
  int64_t block_size() const { return values_.size(); }

  void zero_grad() { grads_.zero(); }

 private:
  static int64_t align_up(int64_t n) { return (n + kAlignElements - 1) / kAlignElements * kAlignElements; }

  static std::unique_ptr<Parameter<T>> make_parameter(std::string name, std::vector<int64_t> shape,
                                                      bool trainable) {
    auto p = std::make_unique<Parameter<T>>();
    p->name = std::move(name);
    p->shape = std::move(shape);
    p->trainable = trainable;
    int64_t n = 1;
    for (int64_t d : p->shape) n = checked_mul(n, d, "parameter '" + p->name + "'");
    return p;
  }

  // Makes new zero-filled blocks for every parameter (trainable first), copies
  // over the contents of parameters that had a place in the old blocks, and
  // re-points the views. Nothing changes if an allocation fails.
  void lay_out(const std::shared_ptr<Backend<T>>& backend) {
    std::vector<int64_t> offsets(params_.size());
    int64_t end = 0, trainable_end = 0;
    for (const bool trainable : {true, false}) {
      for (size_t i = 0; i < params_.size(); ++i) {
        if (params_[i]->trainable != trainable) continue;
        offsets[i] = end;
        end = checked_add(end, align_up(params_[i]->numel()), "the parameter block");
      }
      if (trainable) trainable_end = end;
    }
    Buffer<T> values(backend, end), grads(backend, end);
    values.zero();
    grads.zero();
    for (size_t i = 0; i < params_.size(); ++i) {
      Parameter<T>& p = *params_[i];
      if (p.value.size() > 0) {  // placed before: keep its contents
        backend->copy(values.data() + offsets[i], p.value.data(), p.numel());
        backend->copy(grads.data() + offsets[i], p.grad.data(), p.numel());
      }
    }
    values_ = std::move(values);
    grads_ = std::move(grads);
    trainable_size_ = trainable_end;
    backend_ = backend;
    for (size_t i = 0; i < params_.size(); ++i) {
      Parameter<T>& p = *params_[i];
      p.offset = offsets[i];
      p.value = BlockView<T>(backend.get(), values_.data() + p.offset, p.numel());
      p.grad = BlockView<T>(backend.get(), grads_.data() + p.offset, p.numel());
    }
  }

  // unique_ptr keeps each Parameter's address stable while the list grows.
  std::vector<std::unique_ptr<Parameter<T>>> params_;
  std::shared_ptr<Backend<T>> backend_;  // set by allocation
  Buffer<T> values_, grads_;
  int64_t trainable_size_ = 0;
};

}  // namespace fwp
