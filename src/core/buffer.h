// Owning, move-only arrays in a backend's memory (host memory for the CPU
// backend, device memory for CUDA). Layers and models keep parameters,
// gradients and activations in these.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/backend.h"

namespace fwp {

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::shared_ptr<Backend<T>> backend, int64_t n) : backend_(std::move(backend)), size_(n) {
    data_ = backend_->allocate(n);
  }
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      backend_ = std::move(o.backend_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  // Reallocates only when the size changes; contents are then undefined.
  void resize(const std::shared_ptr<Backend<T>>& backend, int64_t n) {
    if (backend_ == backend && size_ == n) return;
    release();
    backend_ = backend;
    data_ = backend_->allocate(n);
    size_ = n;
  }
  void zero() {
    if (size_ > 0) backend_->fill(data_, T(0), size_);
  }
  std::vector<T> to_host() const {
    std::vector<T> h(static_cast<size_t>(size_));
    if (size_ > 0) backend_->download(h.data(), data_, size_);
    return h;
  }
  void from_host(const T* src, int64_t n) {
    require(n == size_, FWP_ERR_INTERNAL, "Buffer::from_host size mismatch");
    if (n > 0) backend_->upload(data_, src, n);
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  void release() noexcept {
    if (data_ && backend_) backend_->deallocate(data_);
    data_ = nullptr;
    size_ = 0;
  }
  std::shared_ptr<Backend<T>> backend_;
  T* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace fwp
