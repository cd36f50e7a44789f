// Softmax attention: causal (the baseline layer, with decoding from a key/value cache) and
// non-causal cross attention. CPU: src/ops/softmax_attention.cpp; CUDA: cuda/softmax_attention.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class SoftmaxAttentionOps : public virtual BackendFamily {
 public:
  // out_t = sum_{j<=t} softmax_j(scale * q_t . k_j) v_j per stream; q, k, v, out:
  // [streams, steps, d]; lse: [streams, steps] log-sum-exp of the scaled scores (for backward).
  virtual void softmax_attention_forward(int64_t streams, int64_t steps, int64_t d, const T* q, const T* k,
                                         const T* v, T scale, T* out, T* lse) {
    this->unsupported("softmax_attention_forward");
  }

  virtual void softmax_attention_backward(int64_t streams, int64_t steps, int64_t d, const T* q,
                                          const T* k, const T* v, const T* out, const T* lse,
                                          const T* d_out, T scale, T* dq, T* dk, T* dv) {
    this->unsupported("softmax_attention_backward");
  }

  // One decoding step: the query of each stream attends to the first `length`
  // entries of its cache. q, out: [streams, d]; k_cache, v_cache: [streams, capacity, d].
  virtual void softmax_attention_decode(int64_t streams, int64_t length, int64_t capacity, int64_t d,
                                        const T* q, const T* k_cache, const T* v_cache, T scale,
                                        T* out) {
    this->unsupported("softmax_attention_decode");
  }

  // Non-causal softmax attention of `queries` queries over `keys` keys per stream:
  //   out[s, j] = sum_i softmax_i(scale * q[s, j] . k[s, i]) v[s, i]
  // q: [streams, queries, d]; k: [streams, keys, d]; v: [streams, keys, d_value];
  // out: [streams, queries, d_value]; lse: [streams, queries] log-sum-exp of the scaled scores.
  virtual void cross_attention_forward(int64_t streams, int64_t queries, int64_t keys, int64_t d,
                                       int64_t d_value, const T* q, const T* k, const T* v, T scale, T* out,
                                       T* lse) {
    this->unsupported("cross_attention_forward");
  }

  // Overwrites dq and dk, and dv unless it is nullptr (no value gradient wanted).
  virtual void cross_attention_backward(int64_t streams, int64_t queries, int64_t keys, int64_t d,
                                        int64_t d_value, const T* q, const T* k, const T* v, const T* out,
                                        const T* lse, const T* d_out, T scale, T* dq, T* dk, T* dv) {
    this->unsupported("cross_attention_backward");
  }
};

}  // namespace fwp
