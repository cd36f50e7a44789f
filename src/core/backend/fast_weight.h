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
  // chunk_size: for Algorithm::Chunked (0 = backend default); Auto lets the backend pick.
  // states (nullable; pass it when a backward follows): the saved states,
  //   [streams, ceil(steps / L), d_value, d_key] with L = fast_weight_state_interval(shape,
  //   chunk_size): states[s][b] = W before step b L (states[s][0] = state_in). That is
  //   O(T / L * d_value * d_key) per stream, L the chunk length (16..64 on the CPU). Both
  //   algorithms save the same states and write the same u, so the forward of one
  //   may feed the backward of the other.
  // u is written: from a saved state and u the recurrent backward recomputes the
  // states of its interval with the forward's arithmetic (CPU and CUDA, in
  // cache-sized sub-blocks; the chunked forms need only the saved chunk-start
  // states), so no per-step state is stored.
  virtual void fast_weight_forward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                   const FastWeightShape& shape, const T* q, const T* k, const T* v,
                                   const T* beta, const T* state_in, T* out, T* u, T* state_out,
                                   T* states = nullptr) {
    this->unsupported("fast_weight_forward");
  }

  // L, the steps between two saved states: chunk_size if > 0, else the
  // backend's default chunk length for this shape (for either algorithm).
  virtual int64_t fast_weight_state_interval(const FastWeightShape& shape, int64_t chunk_size) {
    this->unsupported("fast_weight_state_interval");
  }

  // Gradients of the forward above. d_out may be nullptr (no output gradient), and
  // so may d_state_out (gradient of the final state taken as zero). dq is nullptr
  // iff q was; dbeta is nullptr for the sum rule; d_state_in may be nullptr.
  // state_out is the final state the forward produced; states the ones it saved
  // (same chunk_size). Without states (nullptr) every earlier state is rebuilt from
  // state_out over the whole sequence: exact in double, but in float32 the
  // residue grows with T (a gradient error ~ T * 1e-7 relative to |W_T| in early
  // states; bench/RESULTS.md). Use that only for short sequences.
  virtual void fast_weight_backward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                    const FastWeightShape& shape, const T* q, const T* k, const T* v,
                                    const T* beta, const T* u, const T* state_out, const T* d_out,
                                    const T* d_state_out, T* dq, T* dk, T* dv, T* dbeta,
                                    T* d_state_in, const T* states = nullptr) {
    this->unsupported("fast_weight_backward");
  }
};

}  // namespace fwp
