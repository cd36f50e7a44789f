// Ops of the non-causal attention kinds over right-padded batches (encoder
// self-attention and decoder-encoder cross-attention of the translation
// model): masking padded steps, the sum-rule memory of a whole sequence and
// softmax attention with per-sequence key lengths.
// CPU: src/ops/padded_attention.cpp; CUDA: cuda/padded_attention.cu.
//
// Lengths are device int32 arrays of one entry per batch row; a [streams, ...]
// array with streams = batch * groups holds batch row b in streams
// b * groups .. b * groups + groups - 1 (groups = heads).
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class PaddedAttentionOps : public virtual BackendFamily {
 public:
  // x: [batch, groups, steps, d]; sets x[b, g, t, :] = 0 for t >= lengths[b].
  virtual void zero_padded_steps(T* x, const int32_t* lengths, int64_t batch, int64_t groups, int64_t steps,
                                 int64_t d) {
    this->unsupported("zero_padded_steps");
  }

  // out[s] = sum_t a[s, t, :]^T b[s, t, :]: a [streams, steps, d_a], b [streams, steps, d_b],
  // out [streams, d_a, d_b] (the sum-rule memory sum_t v_t phi(k_t)^T with a = v, b = phi(k)).
  virtual void outer_product_sum(int64_t streams, int64_t steps, int64_t d_a, int64_t d_b, const T* a,
                                 const T* b, T* out) {
    this->unsupported("outer_product_sum");
  }

  // Its gradients: da[s, t] = d_out[s] b[s, t], db[s, t] = d_out[s]^T a[s, t] (overwritten).
  virtual void outer_product_sum_backward(int64_t streams, int64_t steps, int64_t d_a, int64_t d_b, const T* a,
                                          const T* b, const T* d_out, T* da, T* db) {
    this->unsupported("outer_product_sum_backward");
  }

  // Softmax attention of `queries` queries over the first key_lengths[s / groups] of the keys of
  // each stream (1 <= key_lengths[b] <= keys):
  //   out[s, j] = sum_{i < len} softmax_i(scale * q[s, j] . k[s, i]) v[s, i]
  // q: [streams, queries, d]; k, v: [streams, key_stride, d] (key_stride >= keys: a key/value
  // cache whose first `keys` positions are filled); out: [streams, queries, d];
  // lse: [streams, queries] log-sum-exp of the scaled scores (for the backward; may be nullptr).
  virtual void masked_attention_forward(int64_t streams, int64_t groups, int64_t queries, int64_t keys,
                                        int64_t key_stride, int64_t d, const T* q, const T* k, const T* v,
                                        const int32_t* key_lengths, T scale, T* out, T* lse) {
    this->unsupported("masked_attention_forward");
  }

  // Overwrites dq [streams, queries, d] and dk, dv [streams, keys, d] (key_stride == keys);
  // the gradients of masked keys are exactly zero.
  virtual void masked_attention_backward(int64_t streams, int64_t groups, int64_t queries, int64_t keys,
                                         int64_t d, const T* q, const T* k, const T* v,
                                         const int32_t* key_lengths, const T* out, const T* lse,
                                         const T* d_out, T scale, T* dq, T* dk, T* dv) {
    this->unsupported("masked_attention_backward");
  }
};

}  // namespace fwp
