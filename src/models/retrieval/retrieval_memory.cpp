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
  const bool attn_norm = config_.attn_normalize;
  phi_k_.resize(bp, BL * dd);
  phi_q_.resize(bp, BQ * dd);
  if (sum_norm) {
    phi_k_raw_.resize(bp, BL * dd);
    phi_q_raw_.resize(bp, BQ * dd);
  }
  state_.resize(bp, B * S * dd);
  if (attn_norm) {
    z_.resize(bp, B * dd);
    denom_.resize(bp, BQ);
  }
  T* raw_k = sum_norm ? phi_k_raw_.data() : phi_k_.data();
  T* raw_q = sum_norm ? phi_q_raw_.data() : phi_q_.data();
  // phi (and its sum normalisation) of the keys and queries of sequences [b0, b1).
  auto features = [&](int64_t b0, int64_t b1) {
    const int64_t nk = (b1 - b0) * L, nq = (b1 - b0) * Q;
    be.feature_map_forward(spec, favor, k.data() + b0 * L * dh, raw_k + b0 * L * dd, nk);
    be.feature_map_forward(spec, favor, q.data() + b0 * Q * dh, raw_q + b0 * Q * dd, nq);
    if (sum_norm) {
      be.sum_normalize_forward(raw_k + b0 * L * dd, phi_k_.data() + b0 * L * dd, nk, dd, eps);
      be.sum_normalize_forward(raw_q + b0 * Q * dd, phi_q_.data() + b0 * Q * dd, nq, dd, eps);
    }
  };
  // Every query of sequences [b0, b1) read from their final states.
  auto readout = [&](int64_t b0, int64_t b1) {
    const int64_t nb = b1 - b0;
    if (attn_norm) be.step_sum(phi_k_.data() + b0 * L * dd, z_.data() + b0 * dd, nb, L, dd);
    be.fast_weight_readout_forward(FastWeightShape{nb, Q, dd, S}, state_.data() + b0 * S * dd,
                                   attn_norm ? z_.data() + b0 * dd : nullptr, phi_q_.data() + b0 * Q * dd, eps,
                                   y.data() + b0 * Q * S, attn_norm ? denom_.data() + b0 * Q : nullptr);
  };

  if (delta_) {
    // Write all L pairs into the memory, then read every query from the final state.
    features(0, B);
    const FastWeightShape write{B, L, dd, S};
    u_.resize(bp, BL * S);
    const int64_t interval = be.fast_weight_state_interval(write, 0);
    saved_.resize(bp, B * ((L + interval - 1) / interval) * S * dd);
    be.fast_weight_forward(UpdateRule::Delta, Algorithm::Auto, 0, write, nullptr, phi_k_.data(), v_onehot_.data(),
                           beta.data(), nullptr, nullptr, u_.data(), state_.data(), saved_.data());
    readout(0, B);
    return;
  }
  // Sum rule with one-hot values: W = sum_i onehot(v_i) phi(k_i)^T adds
  // phi(k_i) to row v_i of its sequence's memory (O(B L d_dot), not O(B L d_dot S)).
  // Every step is per sequence, so a block of sequences goes through all of
  // them while its data is in cache (Backend::for_each_block).
  const int64_t bytes_per_sequence =
      static_cast<int64_t>(sizeof(T)) * ((L + Q) * (dh + (sum_norm ? 2 : 1) * dd) + S * dd + Q * S);
  be.for_each_block(B, bytes_per_sequence, [&](int64_t b0, int64_t b1) {
    features(b0, b1);
    be.fill(state_.data() + b0 * S * dd, T(0), (b1 - b0) * S * dd);
    be.embedding_scatter_accumulate(state_.data(), slots_.data() + b0 * L, phi_k_.data() + b0 * L * dd,
                                    (b1 - b0) * L, dd);
    readout(b0, b1);
  });
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
  const bool sum_norm = config_.sum_normalize;
  dphi_q_.resize(bp, BQ * dd);
  d_state_.resize(bp, B * S * dd);
  if (attn_norm) dz_.resize(bp, B * dd);
  dphi_k_.resize(bp, BL * dd);
  // The readout's gradients for sequences [b0, b1): dphi(q), d state, dz.
  auto readout = [&](int64_t b0, int64_t b1) {
    be.fast_weight_readout_backward(FastWeightShape{b1 - b0, Q, dd, S}, state_.data() + b0 * S * dd,
                                    attn_norm ? z_.data() + b0 * dd : nullptr, phi_q_.data() + b0 * Q * dd,
                                    y_.data() + b0 * Q * S, attn_norm ? denom_.data() + b0 * Q : nullptr,
                                    dy.data() + b0 * Q * S, dphi_q_.data() + b0 * Q * dd,
                                    d_state_.data() + b0 * S * dd, attn_norm ? dz_.data() + b0 * dd : nullptr);
  };
  // From dphi(k) (without z's share) and dphi(q) to dk and dq, for sequences [b0, b1).
  auto features = [&](int64_t b0, int64_t b1) {
    const int64_t nk = (b1 - b0) * L, nq = (b1 - b0) * Q;
    T* dphi_k = dphi_k_.data() + b0 * L * dd;
    T* dphi_q = dphi_q_.data() + b0 * Q * dd;
    // z = sum_i phi(k_i) feeds every phi(k_i).
    if (attn_norm) be.step_broadcast_accumulate(dz_.data() + b0 * dd, dphi_k, b1 - b0, L, dd);
    if (sum_norm) {
      be.sum_normalize_backward(phi_k_raw_.data() + b0 * L * dd, dphi_k, dphi_k, nk, dd, eps);
      be.sum_normalize_backward(phi_q_raw_.data() + b0 * Q * dd, dphi_q, dphi_q, nq, dd, eps);
    }
    const T* phi_k = (sum_norm ? phi_k_raw_.data() : phi_k_.data()) + b0 * L * dd;
    const T* phi_q = (sum_norm ? phi_q_raw_.data() : phi_q_.data()) + b0 * Q * dd;
    be.feature_map_backward(spec, favor_, k_.data() + b0 * L * dh, phi_k, dphi_k, dk.data() + b0 * L * dh, nk);
    be.feature_map_backward(spec, favor_, q_.data() + b0 * Q * dh, phi_q, dphi_q, dq.data() + b0 * Q * dh, nq);
  };

  if (delta_) {
    readout(0, B);
    const FastWeightShape write{B, L, dd, S};
    dv_.resize(bp, BL * S);  // the values are fixed one-hot rows: computed, then unused
    be.fast_weight_backward(UpdateRule::Delta, Algorithm::Auto, 0, write, nullptr, phi_k_.data(), v_onehot_.data(),
                            beta_.data(), u_.data(), state_.data(), nullptr, d_state_.data(), nullptr,
                            dphi_k_.data(), dv_.data(), dbeta.data(), nullptr, saved_.data());
    features(0, B);
    return;
  }
  const int64_t bytes_per_sequence =
      static_cast<int64_t>(sizeof(T)) * ((L + Q) * (2 * dh + (sum_norm ? 3 : 2) * dd) + 2 * S * dd + 2 * Q * S);
  be.for_each_block(B, bytes_per_sequence, [&](int64_t b0, int64_t b1) {
    readout(b0, b1);
    // The transpose of the scatter: each pair reads back its memory row's gradient.
    be.embedding_gather(d_state_.data(), slots_.data() + b0 * L, dphi_k_.data() + b0 * L * dd, (b1 - b0) * L, dd);
    features(b0, b1);
  });
}

template class RetrievalMemory<float>;
template class RetrievalMemory<double>;

}  // namespace fwp
