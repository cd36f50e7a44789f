// The fast-weight recurrence (sum and delta rules), recurrent and chunkwise. CPU:
// src/ops/fast_weight.cpp; CUDA: cuda/fast_weight.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class FastWeightOps : public virtual BackendFamily {
 public:
  // For each stream, with W_0 = state_in (zeros if nullptr):
  //   sum rule:   u_t = v_t
  //   delta rule: u_t = beta_t (v_t - W_{t-1} k_t)
  //   W_t = W_{t-1} + u_t k_t^T,   out_t = W_t q_t
  // q: [streams, steps, d_key] or nullptr (then out is not computed and may be nullptr).
  // k: [streams, steps, d_key]; v, u, out: [streams, steps, d_value];
  // beta: [streams, steps] (delta rule; nullptr for the sum rule).
  // state_in, state_out: [streams, d_value, d_key]; state_out may alias state_in.
  // u is written: the backward reconstructs earlier states from it and state_out
  // (W_{t-1} = W_t - u_t k_t^T), so no per-step state is ever stored.
  // chunk_size: for Algorithm::Chunked (0 = backend default); Auto lets the backend pick.
  virtual void fast_weight_forward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                   const FastWeightShape& shape, const T* q, const T* k, const T* v,
                                   const T* beta, const T* state_in, T* out, T* u, T* state_out) {
    this->unsupported("fast_weight_forward");
  }

  // Gradients of the forward above. d_out may be nullptr (no output gradient), and
  // so may d_state_out (gradient of the final state taken as zero). dq is nullptr
  // iff q was; dbeta is nullptr for the sum rule; d_state_in may be nullptr.
  // state_out is the final state the forward produced.
  virtual void fast_weight_backward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                    const FastWeightShape& shape, const T* q, const T* k, const T* v,
                                    const T* beta, const T* u, const T* state_out, const T* d_out,
                                    const T* d_state_out, T* dq, T* dk, T* dv, T* dbeta,
                                    T* d_state_in) {
    this->unsupported("fast_weight_backward");
  }
};

}  // namespace fwp
