// The memory of the retrieval model (paper section 6.1): write all L (key,
// value) pairs of a sequence, then read every query from the final state.
// Values are the one-hot rows onehot(value_i), so they arrive as ids.
//
//   fast weights: W_L = sum rule or delta rule over (phi(k_i), onehot(v_i), beta_i), i < L
//   y_j = W_L phi(q_j), divided by (z_L . phi(q_j) + eps) with attn_normalize (z_L = sum_i phi(k_i))
//   softmax baseline: y_j = sum_i softmax_i(q_j . k_i / sqrt(d_head)) onehot(v_i)
//
// phi is the config's feature map (with sum normalisation if set). Written on
// the backend op families; keeps its activations between forward and backward.
#pragma once

#include <cstdint>
#include <memory>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/id_buffer.h"
#include "core/tensor.h"
#include "models/retrieval/retrieval_config.h"

namespace fwp {

template <typename T>
class RetrievalMemory {
 public:
  // The config must be valid (RetrievalConfig::validate).
  RetrievalMemory(const RetrievalConfig& config, std::shared_ptr<Backend<T>> backend);

  // k: [B, L, d_head]; beta: [B, L] with the delta rule, else a null view;
  // values: [B, L] device ids in [0, S) and host_values the same ids on the
  // host; q: [B, Q, d_head]; favor: the FAVOR+ projection [m, d_head] for
  // this forward (nullptr for other feature maps); y: [B, Q, S].
  void forward(ConstView<T> k, ConstView<T> beta, IdView values, const int32_t* host_values, ConstView<T> q,
               const T* favor, TensorView<T> y);

  // Overwrites dk, dbeta (delta rule; else a null view) and dq from dy [B, Q, S],
  // for the last forward (whose inputs and output y must still be alive and
  // unchanged).
  void backward(ConstView<T> dy, TensorView<T> dk, TensorView<T> dbeta, TensorView<T> dq);

 private:
  void check_inputs(ConstView<T> k, ConstView<T> beta, ConstView<T> q) const;

  RetrievalConfig config_;
  std::shared_ptr<Backend<T>> backend_;
  bool delta_ = false;

  // The last forward's inputs (views: the caller keeps them alive) and activations.
  int64_t batch_ = 0, seq_len_ = 0, queries_ = 0;
  ConstView<T> k_, beta_, q_, y_;  // y: the output, which the readout's backward needs
  const T* favor_ = nullptr;
  IdBuffer<T> slots_;  // [B*L]: b * S + value_i, the memory row pair i writes (sum rule)
  // phi_k, phi_q are what the memory uses. With sum normalisation they are the
  // normalised rows and *_raw keeps phi itself; without it, *_raw stays empty.
  Buffer<T> phi_k_raw_, phi_k_, phi_q_raw_, phi_q_;
  Buffer<T> v_onehot_;  // [B*L, S] (delta rule and softmax)
  Buffer<T> u_;         // [B*L, S] (delta rule)
  Buffer<T> saved_;     // [B, ceil(L / interval), S, d_dot] states saved for the backward (delta rule)
  Buffer<T> state_;     // [B, S, d_dot]
  Buffer<T> z_;         // [B, d_dot] (attention normalisation)
  Buffer<T> denom_;     // [B*Q]
  Buffer<T> lse_;       // [B*Q] (softmax)
  // backward scratch
  Buffer<T> dphi_q_, d_state_, dz_, dphi_k_, dv_;
};

extern template class RetrievalMemory<float>;
extern template class RetrievalMemory<double>;

}  // namespace fwp
