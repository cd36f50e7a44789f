#include "nn/attention_state.h"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/id_buffer.h"
#include "core/limits.h"

namespace fwp {

namespace {
std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }
}  // namespace

std::string AttentionStateSpec::str() const {
  if (softmax)
    return "key/value cache (H = " + std::to_string(num_heads) + ", d_head = " + std::to_string(d_head) + ")";
  return "fast-weight state (H = " + std::to_string(num_heads) + ", d_head = " + std::to_string(d_head) +
         ", d_dot = " + std::to_string(d_dot) + ")";
}

template <typename T>
AttentionState<T>::AttentionState(std::shared_ptr<Backend<T>> backend, const AttentionStateSpec& spec)
    : backend_(std::move(backend)), spec_(spec) {
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "AttentionState needs a backend");
  const bool ok = spec.num_heads >= 1 && spec.d_head >= 1 && (spec.softmax ? spec.d_dot == 0 : spec.d_dot >= 1);
  require(ok, FWP_ERR_INTERNAL, "AttentionState: bad spec " + spec.str());
}

template <typename T>
AttentionState<T>::AttentionState(std::shared_ptr<Backend<T>> backend, const AttentionStateSpec& spec,
                                  int64_t batch)
    : AttentionState(std::move(backend), spec) {
  resize(batch);
}

template <typename T>
void AttentionState<T>::require_fast_weight(const char* what) const {
  require(!spec_.softmax, FWP_ERR_UNSUPPORTED,
          std::string(what) + ": a softmax attention layer's state is a key/value cache, it has no fast weights");
}

template <typename T>
void AttentionState<T>::require_cache(const char* what) const {
  require(spec_.softmax, FWP_ERR_UNSUPPORTED,
          std::string(what) + ": a fast-weight layer's state has no key/value cache");
}

template <typename T>
int64_t AttentionState<T>::w_count(int64_t batch) const {
  require_fast_weight("the size of W");
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(batch));
  return checked_mul(checked_mul(batch, spec_.num_heads * spec_.d_head, "the state size"), spec_.d_dot,
                     "the state size");
}

template <typename T>
int64_t AttentionState<T>::z_count(int64_t batch) const {
  require_fast_weight("the size of z");
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(batch));
  return checked_mul(batch, spec_.num_heads * spec_.d_dot, "the state size");
}

template <typename T>
void AttentionState<T>::reset() {
  w_.zero();
  z_.zero();
  length_ = 0;  // cached positions beyond the length are never read
  position_ = 0;
}

template <typename T>
void AttentionState<T>::clear() {
  batch_ = 0;
  position_ = 0;
  w_ = Buffer<T>();
  z_ = Buffer<T>();
  length_ = capacity_ = 0;
  k_ = Buffer<T>();
  v_ = Buffer<T>();
}

template <typename T>
void AttentionState<T>::resize(int64_t batch) {
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(batch));
  if (spec_.softmax) {
    // The cache grows on first use; only the row count is fixed here.
    checked_mul(batch, spec_.num_heads, spec_.d_head, "batch * num_heads * d_head");
    clear();
  } else {
    Buffer<T> w(backend_, w_count(batch)), z(backend_, z_count(batch));
    w.zero();
    z.zero();
    w_ = std::move(w);
    z_ = std::move(z);
  }
  batch_ = batch;
  position_ = 0;
}

template <typename T>
void AttentionState<T>::ensure_batch(int64_t batch, const std::string& what, const std::string& hint) {
  if (batch_ == 0) {
    resize(batch);
    return;
  }
  require(batch == batch_, FWP_ERR_SHAPE_MISMATCH,
          "batch must equal the batch of " + what + " (" + std::to_string(batch_) + ")" + got(batch) + hint);
}

template <typename T>
void AttentionState<T>::check_spec(const AttentionStateSpec& spec, const std::string& what) const {
  require(spec == spec_, FWP_ERR_SHAPE_MISMATCH,
          what + " is a " + spec_.str() + " where a " + spec.str() + " was expected");
}

template <typename T>
void AttentionState<T>::copy_from(const AttentionState& other) {
  if (&other == this) return;
  other.check_spec(spec_, "the source state");
  if (spec_.softmax) {
    const int64_t n = other.k_.size();
    Buffer<T> k(backend_, n), v(backend_, n);
    if (n > 0) {
      backend_->copy(k.data(), other.k_.data(), n);
      backend_->copy(v.data(), other.v_.data(), n);
    }
    k_ = std::move(k);
    v_ = std::move(v);
    length_ = other.length_;
    capacity_ = other.capacity_;
  } else {
    Buffer<T> w(backend_, other.w_.size()), z(backend_, other.z_.size());
    if (!w.empty()) backend_->copy(w.data(), other.w_.data(), w.size());
    if (!z.empty()) backend_->copy(z.data(), other.z_.data(), z.size());
    w_ = std::move(w);
    z_ = std::move(z);
  }
  batch_ = other.batch_;
  position_ = other.position_;
}

template <typename T>
void AttentionState<T>::reorder(const int64_t* rows, int64_t count) {
  require(rows != nullptr, FWP_ERR_NULL_POINTER, "rows must not be NULL");
  require(count >= 1, FWP_ERR_INVALID_ARGUMENT, "count must be >= 1" + got(count));
  require(batch_ >= 1, FWP_ERR_BAD_STATE, "an empty state has no rows to reorder");
  // The gather op takes int32 row ids; a batch never comes near that bound,
  // but the count is the caller's.
  require(count <= std::numeric_limits<int32_t>::max(), FWP_ERR_INVALID_ARGUMENT,
          "count must be <= 2^31 - 1" + got(count));
  std::vector<int32_t> ids(static_cast<size_t>(count));
  for (int64_t r = 0; r < count; ++r) {
    const int64_t row = rows[r];
    if (row < 0 || row >= batch_) {
      throw Error(FWP_ERR_OUT_OF_RANGE, "rows[" + std::to_string(r) + "] must be in [0, " +
                                            std::to_string(batch_) + ")" + got(row));
    }
    ids[static_cast<size_t>(r)] = static_cast<int32_t>(row);
  }
  IdBuffer<T> dev_ids;
  dev_ids.upload(backend_, ids.data(), count);
  // Each state row is one contiguous block: gather whole rows.
  auto gather = [&](const Buffer<T>& from, int64_t row_size) {
    Buffer<T> to(backend_, checked_mul(count, row_size, "the reordered state"));
    backend_->embedding_gather(from.data(), dev_ids.data(), to.data(), count, row_size);
    return to;
  };
  if (spec_.softmax) {
    if (capacity_ > 0) {
      const int64_t row_size = spec_.num_heads * capacity_ * spec_.d_head;
      Buffer<T> k = gather(k_, row_size), v = gather(v_, row_size);
      k_ = std::move(k);
      v_ = std::move(v);
    }
  } else {
    Buffer<T> w = gather(w_, w_count(1)), z = gather(z_, z_count(1));
    w_ = std::move(w);
    z_ = std::move(z);
  }
  batch_ = count;
}

template <typename T>
void AttentionState<T>::set_host(int64_t batch, const T* w, const T* z) {
  const int64_t nw = w_count(batch), nz = z_count(batch);
  // Build the new state aside so that a failure leaves the old one in place.
  Buffer<T> new_w(backend_, nw), new_z(backend_, nz);
  if (w)
    new_w.from_host(w, nw);
  else
    new_w.zero();
  if (z)
    new_z.from_host(z, nz);
  else
    new_z.zero();
  w_ = std::move(new_w);
  z_ = std::move(new_z);
  batch_ = batch;
}

template <typename T>
void AttentionState<T>::get_host(T* w, T* z) const {
  require_fast_weight("reading the state");
  if (batch_ == 0) return;
  if (w) backend_->download(w, w_.data(), w_.size());
  if (z) backend_->download(z, z_.data(), z_.size());
}

template <typename T>
void AttentionState<T>::reserve(int64_t length) {
  require_cache("reserving cache positions");
  require(batch_ >= 1, FWP_ERR_INTERNAL, "AttentionState::reserve on an empty state");
  if (length <= capacity_) return;
  const int64_t S = batch_ * spec_.num_heads, dh = spec_.d_head;
  int64_t capacity = std::max<int64_t>(16, 2 * capacity_);
  while (capacity < length) capacity *= 2;
  const int64_t n = checked_mul(S, capacity, dh, "the key/value cache");
  Buffer<T> k_new(backend_, n), v_new(backend_, n);
  // Each stream's prefix moves to its place in the wider layout.
  for (int64_t s = 0; s < S && length_ > 0; ++s) {
    backend_->copy(k_new.data() + s * capacity * dh, k_.data() + s * capacity_ * dh, length_ * dh);
    backend_->copy(v_new.data() + s * capacity * dh, v_.data() + s * capacity_ * dh, length_ * dh);
  }
  k_ = std::move(k_new);
  v_ = std::move(v_new);
  capacity_ = capacity;
}

template <typename T>
void AttentionState<T>::advance(int64_t n) {
  require(length_ + n <= capacity_, FWP_ERR_INTERNAL, "AttentionState::advance past the capacity");
  length_ += n;
  position_ += n;
}

template <typename T>
void AttentionState<T>::set_position(int64_t n) {
  require(n >= 0, FWP_ERR_INVALID_ARGUMENT, "a state's position must be >= 0 (got " + std::to_string(n) + ")");
  position_ = n;
}

template <typename T>
void AttentionState<T>::get_cache_host(T* k, T* v) const {
  require_cache("reading the key/value cache");
  const int64_t S = batch_ * spec_.num_heads, dh = spec_.d_head;
  for (int64_t s = 0; s < S && length_ > 0; ++s) {
    backend_->download(k + s * length_ * dh, k_.data() + s * capacity_ * dh, length_ * dh);
    backend_->download(v + s * length_ * dh, v_.data() + s * capacity_ * dh, length_ * dh);
  }
}

template <typename T>
void AttentionState<T>::set_cache_host(int64_t batch, int64_t length, const T* k, const T* v) {
  require_cache("writing the key/value cache");
  require(batch >= 1 && length >= 0, FWP_ERR_INTERNAL, "AttentionState::set_cache_host with a bad size");
  // Built aside (as set_host), so a failed allocation leaves this state as it was.
  AttentionState<T> fresh(backend_, spec_, batch);
  if (length > 0) {
    fresh.reserve(length);
    const int64_t S = batch * spec_.num_heads, dh = spec_.d_head;
    for (int64_t s = 0; s < S; ++s) {
      backend_->upload(fresh.k_.data() + s * fresh.capacity_ * dh, k + s * length * dh, length * dh);
      backend_->upload(fresh.v_.data() + s * fresh.capacity_ * dh, v + s * length * dh, length * dh);
    }
    fresh.advance(length);
  }
  *this = std::move(fresh);
}

template class AttentionState<float>;
template class AttentionState<double>;

}  // namespace fwp
