// Attention normalisation of a fast-weight output. CPU: src/ops/attn_norm.cpp; CUDA: cuda/attn_norm.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class AttnNormOps : public virtual BackendFamily {
 public:
  // z_t = z_in + sum_{j<=t} k_j,  denom_t = q_t . z_t + eps,  y_t = o_t / denom_t.
  // q, k: [streams, steps, d_key]; o, y: [streams, steps, d_value] (y may alias o only if
  // the backward is not needed); denom: [streams, steps]; z_in (nullable), z_out (nullable):
  // [streams, d_key].
  virtual void attn_norm_forward(const FastWeightShape& shape, const T* q, const T* k, const T* z_in,
                                 const T* o, T eps, T* y, T* denom, T* z_out) {
    this->unsupported("attn_norm_forward");
  }

  // Overwrites d_o, dq, dk (same shapes as o, q, k) and d_z_in (nullable). y is the forward output.
  virtual void attn_norm_backward(const FastWeightShape& shape, const T* q, const T* k, const T* z_in,
                                  const T* y, const T* denom, const T* dy, T* d_o, T* dq, T* dk,
                                  T* d_z_in) {
    this->unsupported("attn_norm_backward");
  }
};

}  // namespace fwp
