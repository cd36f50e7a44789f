// The run state of one attention layer for N sequences, kept outside the
// module that reads and writes it (as llama.h keeps its context apart from the
// model), so a model can hold one per layer, copy it, and reorder its rows for
// beam search.
//
// - A fast-weight layer's state is the fast weights W [N][H][d_head][d_dot]
//   and the attention normaliser z [N][H][d_dot].
// - A softmax layer's state is its key/value cache, k and v each
//   [N * H][capacity][d_head], of which the first length() positions are used.
//
// Every array lives in the backend's memory. A state with batch 0 is "empty":
// it holds no rows and reads as zeros (the module then sizes it to the batch of
// its first call).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/tensor.h"

namespace fwp {

// What a state is made for: the layer's kind and sizes.
struct AttentionStateSpec {
  bool softmax = false;  // a key/value cache instead of W and z
  int64_t num_heads = 0;
  int64_t d_head = 0;
  int64_t d_dot = 0;  // 0 for softmax

  bool operator==(const AttentionStateSpec& o) const {
    return softmax == o.softmax && num_heads == o.num_heads && d_head == o.d_head && d_dot == o.d_dot;
  }
  bool operator!=(const AttentionStateSpec& o) const { return !(*this == o); }
  // "fast-weight state (H = 2, d_head = 3, d_dot = 12)" or "key/value cache (H = 2, d_head = 3)".
  std::string str() const;
};

// The feature map and the state an attention config implies. The causal
// (FastWeightAttentionConfig) and non-causal (NonCausalAttentionConfig)
// configs share these fields; their feature_spec() and state_spec() are these.
template <class Config>
FeatureMapSpec attention_feature_spec(const Config& c) {
  FeatureMapSpec spec;
  spec.kind = c.feature_map;
  spec.d_in = c.d_head;
  spec.nu = c.dpfp_nu;
  spec.m = c.feature_map == FeatureMap::Favor ? c.favor_features : 0;
  return spec;
}

template <class Config>
AttentionStateSpec attention_state_spec(const Config& c) {
  AttentionStateSpec spec;
  spec.softmax = c.softmax;
  spec.num_heads = c.num_heads;
  spec.d_head = c.d_head;
  spec.d_dot = c.softmax ? 0 : attention_feature_spec(c).d_out();
  return spec;
}

template <typename T>
class AttentionState {
 public:
  // An empty state (batch 0); throws Error(FWP_ERR_INTERNAL) for a bad spec.
  AttentionState(std::shared_ptr<Backend<T>> backend, const AttentionStateSpec& spec);
  // A zero state of `batch` rows (a fast-weight state) or an empty cache for `batch` rows.
  AttentionState(std::shared_ptr<Backend<T>> backend, const AttentionStateSpec& spec, int64_t batch);

  AttentionState(const AttentionState&) = delete;
  AttentionState& operator=(const AttentionState&) = delete;
  AttentionState(AttentionState&&) noexcept = default;
  AttentionState& operator=(AttentionState&&) noexcept = default;

  const AttentionStateSpec& spec() const { return spec_; }
  const std::shared_ptr<Backend<T>>& backend() const { return backend_; }
  bool is_softmax() const { return spec_.softmax; }
  int64_t batch() const { return batch_; }
  bool empty() const { return batch_ == 0; }

  // ---- whole-state operations ---------------------------------------------------------------
  // Back to zeros (W, z) or an empty cache (length 0), keeping the batch.
  void reset();
  // Forgets everything: batch 0.
  void clear();
  // A fresh zero state (empty cache) of `batch` >= 1 rows.
  void resize(int64_t batch);
  // Sizes an empty state to `batch` rows; otherwise requires batch() == batch
  // (Error(FWP_ERR_SHAPE_MISMATCH) "<what> ... has batch N (got M)<hint>").
  void ensure_batch(int64_t batch, const std::string& what, const std::string& hint = "");
  // Becomes a copy of `other` (same spec required, any batch): Error(FWP_ERR_SHAPE_MISMATCH) otherwise.
  void copy_from(const AttentionState& other);
  // Row r of the result is row rows[r] of this state, for r < count; rows may
  // repeat or be dropped (beam search). count >= 1 and 0 <= rows[r] < batch()
  // (Error(FWP_ERR_OUT_OF_RANGE) / FWP_ERR_INVALID_ARGUMENT naming the entry);
  // the state is unchanged when a check fails. `rows` is a host array.
  void reorder(const int64_t* rows, int64_t count);
  // Throws Error(FWP_ERR_SHAPE_MISMATCH) unless the state was made for `spec`; `what` names it.
  void check_spec(const AttentionStateSpec& spec, const std::string& what) const;

  // The number of tokens every row has been fed since the state was made,
  // resized, reset or cleared (a model's positional encoding continues from
  // it). Every row moves together (a forward or step feeds all of them), so
  // one count serves them all; copy_from() copies it, reorder() keeps it,
  // set_host() leaves it unchanged. The module advances it.
  int64_t position() const { return position_; }
  void advance_position(int64_t n) { position_ += n; }
  // Restores a position read from a checkpoint; n >= 0 (Error(FWP_ERR_INVALID_ARGUMENT)).
  void set_position(int64_t n);

  // ---- fast-weight state (Error(FWP_ERR_UNSUPPORTED) for a cache) ----------------------------
  // Element counts of W and z for `batch` rows (checked against the size bound).
  int64_t w_count(int64_t batch) const;
  int64_t z_count(int64_t batch) const;
  // Device arrays of the current batch (null while empty).
  T* w() { return w_.data(); }
  const T* w() const { return w_.data(); }
  T* z() { return z_.data(); }
  const T* z() const { return z_.data(); }
  // Replaces the state by `batch` rows from host arrays of w_count(batch) /
  // z_count(batch) elements; nullptr = zeros. Unchanged if an allocation fails.
  void set_host(int64_t batch, const T* w, const T* z);
  // Copies W and/or z (nullable) of the current batch to host arrays; nothing when empty.
  void get_host(T* w, T* z) const;

  // ---- key/value cache (Error(FWP_ERR_UNSUPPORTED) for a fast-weight state) -------------------
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  T* k_cache() { return k_.data(); }
  const T* k_cache() const { return k_.data(); }
  T* v_cache() { return v_.data(); }
  const T* v_cache() const { return v_.data(); }
  // Makes room for `length` positions per stream (doubling, at least 16),
  // keeping the cached ones.
  void reserve(int64_t length);
  // Marks `n` more positions as used (after they were written); advances position() too.
  void advance(int64_t n);
  // The used part of the cache as packed host arrays [batch * H][length()][d_head] (for checkpoints);
  // nothing when empty.
  void get_cache_host(T* k, T* v) const;
  // Replaces the cache by `batch` >= 1 rows of `length` >= 0 positions from packed host arrays as
  // get_cache_host() writes them; position() becomes `length`. Unchanged if an allocation fails.
  void set_cache_host(int64_t batch, int64_t length, const T* k, const T* v);

 private:
  void require_fast_weight(const char* what) const;
  void require_cache(const char* what) const;

  std::shared_ptr<Backend<T>> backend_;
  AttentionStateSpec spec_;
  int64_t batch_ = 0;
  int64_t position_ = 0;
  Buffer<T> w_, z_;                             // fast-weight state
  int64_t length_ = 0, capacity_ = 0;           // key/value cache
  Buffer<T> k_, v_;
};

extern template class AttentionState<float>;
extern template class AttentionState<double>;

}  // namespace fwp
