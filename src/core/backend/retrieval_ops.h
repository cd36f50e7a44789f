// Ops only the retrieval model (src/models/retrieval) uses: per-stream sums and the read-only
// fast-weight readout. CPU: src/ops/retrieval_ops.cpp; CUDA: cuda/retrieval_ops.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class RetrievalOps : public virtual BackendFamily {
 public:
  // out[s, :] = sum_t x[s, t, :]; x: [streams, steps, d], out: [streams, d].
  virtual void step_sum(const T* x, T* out, int64_t streams, int64_t steps, int64_t d) {
    this->unsupported("step_sum");
  }

  // x[s, t, :] += v[s, :]; the transpose of step_sum.
  virtual void step_broadcast_accumulate(const T* v, T* x, int64_t streams, int64_t steps, int64_t d) {
    this->unsupported("step_broadcast_accumulate");
  }

  // Reads shape.steps queries per stream from a fixed fast-weight state (no write):
  //   o[s, j] = W_s q[s, j];  with z: y[s, j] = o[s, j] / (z_s . q[s, j] + eps) (denom stored), else y = o.
  // state: [streams, d_value, d_key]; z: [streams, d_key] or nullptr; q: [streams, steps, d_key];
  // y: [streams, steps, d_value]; denom: [streams, steps], nullptr iff z is nullptr.
  virtual void fast_weight_readout_forward(const FastWeightShape& shape, const T* state, const T* z,
                                           const T* q, T eps, T* y, T* denom) {
    this->unsupported("fast_weight_readout_forward");
  }

  // Gradients of the readout: overwrites dq, d_state and d_z (nullptr iff z was nullptr).
  // y and denom are the forward's outputs.
  virtual void fast_weight_readout_backward(const FastWeightShape& shape, const T* state, const T* z,
                                            const T* q, const T* y, const T* denom, const T* dy, T* dq,
                                            T* d_state, T* d_z) {
    this->unsupported("fast_weight_readout_backward");
  }
};

}  // namespace fwp
