// An owning, move-only int32 array on a backend: token ids and targets that
// modules read on the device. The C boundary uploads host ids into one; the
// modules see it as an IdView.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "core/backend.h"
#include "core/error.h"
#include "core/tensor.h"

namespace fwp {

template <typename T>
class IdBuffer {
 public:
  IdBuffer() = default;
  IdBuffer(std::shared_ptr<Backend<T>> backend, int64_t n) : backend_(std::move(backend)), size_(n) {
    data_ = backend_->allocate_int(n);
  }
  ~IdBuffer() { release(); }
  IdBuffer(const IdBuffer&) = delete;
  IdBuffer& operator=(const IdBuffer&) = delete;
  IdBuffer(IdBuffer&& o) noexcept { *this = std::move(o); }
  IdBuffer& operator=(IdBuffer&& o) noexcept {
    if (this != &o) {
      release();
      backend_ = std::move(o.backend_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  // Copies n host ids in, reallocating only when the backend or the count changes.
  void upload(const std::shared_ptr<Backend<T>>& backend, const int32_t* host, int64_t n) {
    if (backend != backend_ || n != size_) {
      release();
      backend_ = backend;
      data_ = backend_->allocate_int(n);
      size_ = n;
    }
    if (n > 0) backend_->upload_int(data_, host, n);
  }

  int32_t* data() { return data_; }
  const int32_t* data() const { return data_; }
  int64_t size() const { return size_; }
  // The ids under a shape with size() elements.
  IdView view(const Shape& shape) const {
    require(shape.numel() == size_, FWP_ERR_INTERNAL,
            "IdBuffer of " + std::to_string(size_) + " ids viewed as " + shape.str());
    return IdView(data_, shape);
  }

 private:
  void release() noexcept {
    if (data_ && backend_) backend_->deallocate_int(data_);
    data_ = nullptr;
    size_ = 0;
  }
  std::shared_ptr<Backend<T>> backend_;
  int32_t* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace fwp
