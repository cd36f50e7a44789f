#include "models/retrieval/retrieval_memory.h"

#include <cmath>
#include <utility>
#include <vector>

#include "core/error.h"

namespace fwp {

template <typename T>
RetrievalMemory<T>::RetrievalMemory(const RetrievalConfig& config, std::shared_ptr<Backend<T>> backend)
    : config_(config), backend_(std::move(backend)) {
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "RetrievalMemory needs a backend");
  delta_ = !config_.softmax && config_.update_rule == UpdateRule::Delta;
}

template <typename T>
void RetrievalMemory<T>::check_inputs(ConstView<T> k, ConstView<T> beta, ConstView<T> q) const {
  require(k.rank() == 3 && q.rank() == 3, FWP_ERR_INTERNAL, "RetrievalMemory: k and q must be [B, steps, d_head]");
  const int64_t B = k.dim(0), L = k.dim(1), Q = q.dim(1), dh = config_.d_head;
  check_shape(k.shape(), Shape{B, L, dh}, "RetrievalMemory keys");
  check_shape(q.shape(), Shape{B, Q, dh}, "RetrievalMemory queries");
  if (delta_) {
    check_shape(beta.shape(), Shape{B, L}, "RetrievalMemory beta");
  } else {
    require(beta.is_null(), FWP_ERR_INTERNAL, "RetrievalMemory: beta is only for the delta rule");
  }
}

template <typename T>
void RetrievalMemory<T>::forward(ConstView<T> k, ConstView<T> beta, IdView values, const int32_t* host_values,
                                 ConstView<T> q, const T* favor, TensorView<T> y) {
  check_inputs(k, beta, q);
  Backend<T>& be = *backend_;
  const auto& bp = backend_;
  const int64_t S = config_.num_keys, dh = config_.d_head, dd = config_.d_dot();
  const int64_t B = k.dim(0), L = k.dim(1), Q = q.dim(1), BL = B * L, BQ = B * Q;
  check_shape(values.shape(), Shape{B, L}, "RetrievalMemory values");
  check_shape(y.shape(), Shape{B, Q, S}, "RetrievalMemory output");
  batch_ = B;
  seq_len_ = L;
  queries_ = Q;
  k_ = k;
  beta_ = beta;
  q_ = q;
  y_ = y;
  favor_ = favor;

  // The stored values: one-hot rows (the sum rule writes them by index instead).
  const bool sum_write = !config_.softmax && !delta_;
  if (!sum_write) {
    v_onehot_.resize(bp, BL * S);
    be.onehot_concat(values.data(), nullptr, v_onehot_.data(), BL, S, 0);
  } else {
    std::vector<int32_t> slots(static_cast<size_t>(BL));
    for (int64_t r = 0; r < BL; ++r) slots[static_cast<size_t>(r)] = static_cast<int32_t>((r / L) * S + host_values[r]);
    slots_.upload(bp, slots.data(), BL);
  }

  if (config_.softmax) {
    lse_.resize(bp, BQ);
    const T scale = T(1) / std::sqrt(static_cast<T>(dh));
    be.cross_attention_forward(B, Q, L, dh, S, q.data(), k.data(), v_onehot_.data(), scale, y.data(), lse_.data());
    return;
  }

  const FeatureMapSpec spec = config_.feature_spec();
  const T eps = static_cast<T>(config_.norm_eps);
  const bool sum_norm = config_.sum_normalize;
  phi_k_.resize(bp, BL * dd);
  phi_q_.resize(bp, BQ * dd);
  if (sum_norm) {
    phi_k_raw_.resize(bp, BL * dd);
    phi_q_raw_.resize(bp, BQ * dd);
  }
  T* raw_k = sum_norm ? phi_k_raw_.data() : phi_k_.data();
  T* raw_q = sum_norm ? phi_q_raw_.data() : phi_q_.data();
  be.feature_map_forward(spec, favor, k.data(), raw_k, BL);
  be.feature_map_forward(spec, favor, q.data(), raw_q, BQ);
  if (sum_norm) {
    be.sum_normalize_forward(raw_k, phi_k_.data(), BL, dd, eps);
    be.sum_normalize_forward(raw_q, phi_q_.data(), BQ, dd, eps);
  }

  // Write all L pairs into the memory, then read every query from the final state.
  state_.resize(bp, B * S * dd);
  if (delta_) {
    const FastWeightShape write{B, L, dd, S};
    u_.resize(bp, BL * S);
    const int64_t interval = be.fast_weight_state_interval(write, 0);
    saved_.resize(bp, B * ((L + interval - 1) / interval) * S * dd);
    be.fast_weight_forward(UpdateRule::Delta, Algorithm::Auto, 0, write, nullptr, phi_k_.data(), v_onehot_.data(),
                           beta.data(), nullptr, nullptr, u_.data(), state_.data(), saved_.data());
  } else {
    // Sum rule with one-hot values: W = sum_i onehot(v_i) phi(k_i)^T adds
    // phi(k_i) to row v_i of its sequence's memory (O(B L d_dot), not O(B L d_dot S)).
    state_.zero();
    be.embedding_scatter_accumulate(state_.data(), slots_.data(), phi_k_.data(), BL, dd);
  }
  if (config_.attn_normalize) {
    z_.resize(bp, B * dd);
    denom_.resize(bp, BQ);
    be.step_sum(phi_k_.data(), z_.data(), B, L, dd);
  }
  const FastWeightShape read{B, Q, dd, S};
  be.fast_weight_readout_forward(read, state_.data(), config_.attn_normalize ? z_.data() : nullptr, phi_q_.data(),
                                 eps, y.data(), config_.attn_normalize ? denom_.data() : nullptr);
}

template <typename T>
void RetrievalMemory<T>::backward(ConstView<T> dy, TensorView<T> dk, TensorView<T> dbeta, TensorView<T> dq) {
  Backend<T>& be = *backend_;
  const auto& bp = backend_;
  const int64_t S = config_.num_keys, dh = config_.d_head, dd = config_.d_dot();
  const int64_t B = batch_, L = seq_len_, Q = queries_, BL = B * L, BQ = B * Q;
  check_shape(dy.shape(), Shape{B, Q, S}, "RetrievalMemory output gradient");
  check_shape(dk.shape(), Shape{B, L, dh}, "RetrievalMemory key gradient");
  check_shape(dq.shape(), Shape{B, Q, dh}, "RetrievalMemory query gradient");
  if (delta_) check_shape(dbeta.shape(), Shape{B, L}, "RetrievalMemory beta gradient");

  if (config_.softmax) {
    const T scale = T(1) / std::sqrt(static_cast<T>(dh));
    be.cross_attention_backward(B, Q, L, dh, S, q_.data(), k_.data(), v_onehot_.data(), y_.data(), lse_.data(),
                                dy.data(), scale, dq.data(), dk.data(), nullptr);
    return;
  }
  const FeatureMapSpec spec = config_.feature_spec();
  const T eps = static_cast<T>(config_.norm_eps);
  const bool attn_norm = config_.attn_normalize;
  dphi_q_.resize(bp, BQ * dd);
  d_state_.resize(bp, B * S * dd);
  if (attn_norm) dz_.resize(bp, B * dd);
  const FastWeightShape read{B, Q, dd, S};
  be.fast_weight_readout_backward(read, state_.data(), attn_norm ? z_.data() : nullptr, phi_q_.data(), y_.data(),
                                  attn_norm ? denom_.data() : nullptr, dy.data(), dphi_q_.data(), d_state_.data(),
                                  attn_norm ? dz_.data() : nullptr);

  dphi_k_.resize(bp, BL * dd);
  if (delta_) {
    const FastWeightShape write{B, L, dd, S};
    dv_.resize(bp, BL * S);  // the values are fixed one-hot rows: computed, then unused
    be.fast_weight_backward(UpdateRule::Delta, Algorithm::Auto, 0, write, nullptr, phi_k_.data(), v_onehot_.data(),
                            beta_.data(), u_.data(), state_.data(), nullptr, d_state_.data(), nullptr,
                            dphi_k_.data(), dv_.data(), dbeta.data(), nullptr, saved_.data());
  } else {
    // The transpose of the scatter: each pair reads back its memory row's gradient.
    be.embedding_gather(d_state_.data(), slots_.data(), dphi_k_.data(), BL, dd);
  }
  // z = sum_i phi(k_i) feeds every phi(k_i).
  if (attn_norm) be.step_broadcast_accumulate(dz_.data(), dphi_k_.data(), B, L, dd);

  const bool sum_norm = config_.sum_normalize;
  if (sum_norm) {
    be.sum_normalize_backward(phi_k_raw_.data(), dphi_k_.data(), dphi_k_.data(), BL, dd, eps);
    be.sum_normalize_backward(phi_q_raw_.data(), dphi_q_.data(), dphi_q_.data(), BQ, dd, eps);
  }
  be.feature_map_backward(spec, favor_, k_.data(), sum_norm ? phi_k_raw_.data() : phi_k_.data(), dphi_k_.data(),
                          dk.data(), BL);
  be.feature_map_backward(spec, favor_, q_.data(), sum_norm ? phi_q_raw_.data() : phi_q_.data(), dphi_q_.data(),
                          dq.data(), BQ);
}

template class RetrievalMemory<float>;
template class RetrievalMemory<double>;

}  // namespace fwp
