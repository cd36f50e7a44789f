#include "nn/noncausal_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/limits.h"
#include "nn/fast_weight_attention.h"
#include "nn/module_init.h"
#include "ops/favor_projection.h"

namespace fwp {

namespace {
std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }
}  // namespace

// ---- config ------------------------------------------------------------------------------------

void NonCausalAttentionConfig::validate(const std::string& prefix) const {
  auto positive = [&](int64_t v, const char* name) {
    require(v >= 1, FWP_ERR_INVALID_ARGUMENT, prefix + name + " must be >= 1" + got(v));
  };
  positive(d_model, "d_model");
  positive(num_heads, "num_heads");
  positive(d_head, "d_head");
  const int64_t width = checked_mul(num_heads, d_head, prefix + "num_heads * d_head");
  checked_mul(width, d_model, prefix + "d_model * num_heads * d_head (the size of a projection)");
  require(std::isfinite(init_std) && init_std >= 0, FWP_ERR_INVALID_ARGUMENT,
          prefix + "init_std must be finite and >= 0");
  // The same option rules as the causal layer (the sum rule is the only rule of a non-causal memory).
  const int64_t dd = validate_attention_options(prefix, softmax, UpdateRule::Sum, sum_normalize, attn_normalize,
                                                norm_eps, feature_map, d_head, dpfp_nu, favor_features);
  require(!(softmax && scale_output), FWP_ERR_INVALID_ARGUMENT,
          prefix + "scale_output must be 0 with softmax attention (the scores are scaled instead)");
  checked_mul(width, dd, prefix + "num_heads * d_head * d_dot (the memory of one batch row)");
}

FeatureMapSpec NonCausalAttentionConfig::feature_spec() const { return attention_feature_spec(*this); }

int64_t NonCausalAttentionConfig::d_dot() const { return softmax ? 0 : feature_spec().d_out(); }

AttentionStateSpec NonCausalAttentionConfig::state_spec() const { return attention_state_spec(*this); }

// ---- the state of an incremental cross-attention ------------------------------------------------

template <typename T>
void CrossAttentionState<T>::reorder(const int64_t* rows, int64_t count) {
  memory.reorder(rows, count);  // checks rows and count, and leaves everything unchanged on failure
  std::vector<int64_t> lengths(static_cast<size_t>(count));
  std::vector<int32_t> ids(static_cast<size_t>(count));
  for (int64_t r = 0; r < count; ++r) {
    lengths[static_cast<size_t>(r)] = key_lengths[static_cast<size_t>(rows[r])];
    ids[static_cast<size_t>(r)] = static_cast<int32_t>(lengths[static_cast<size_t>(r)]);
  }
  key_lengths_device.upload(memory.backend(), ids.data(), count);
  key_lengths = std::move(lengths);
}

template <typename T>
void CrossAttentionState<T>::copy_from(const CrossAttentionState& other) {
  if (&other == this) return;
  memory.copy_from(other.memory);
  key_lengths = other.key_lengths;
  std::vector<int32_t> ids(key_lengths.begin(), key_lengths.end());
  key_lengths_device.upload(memory.backend(), ids.data(), static_cast<int64_t>(ids.size()));
}

template <typename T>
void CrossAttentionState<T>::clear() {
  memory.clear();
  key_lengths.clear();
  key_lengths_device = IdBuffer<T>();
}

// ---- construction -----------------------------------------------------------------------------

template <typename T>
NonCausalAttention<T>::NonCausalAttention(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend,
                                          std::string prefix, const NonCausalAttentionConfig& config)
    : config_(config), backend_(std::move(backend)), prefix_(std::move(prefix)) {
  config_.validate();
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "NonCausalAttention needs a backend");
  const int64_t D = config_.d_model, P = config_.num_heads * config_.d_head;
  const bool bias = config_.use_bias;
  q_ = std::make_unique<Linear<T>>(params, backend_, prefix_ + "q_proj", D, P, bias);
  k_ = std::make_unique<Linear<T>>(params, backend_, prefix_ + "k_proj", D, P, bias);
  v_ = std::make_unique<Linear<T>>(params, backend_, prefix_ + "v_proj", D, P, bias);
  out_ = std::make_unique<Linear<T>>(params, backend_, prefix_ + "out_proj", P, D, bias);
  if (!is_softmax() && config_.feature_map == FeatureMap::Favor) {
    favor_ = nn_init::declare_parameter(params, backend_, prefix_ + "favor.projection",
                                        {config_.favor_features, config_.d_head}, /*trainable=*/false);
  }
}

template <typename T>
void NonCausalAttention<T>::init(ParameterList<T>& params, Rng& rng) const {
  for (const Linear<T>* lin : {q_.get(), k_.get(), v_.get(), out_.get()}) lin->init_normal(params, rng, config_.init_std);
  if (favor_ >= 0) {
    const int64_t m = config_.favor_features, dh = config_.d_head;
    std::vector<T> host(static_cast<size_t>(m * dh));
    draw_favor_projection<T>(rng, m, dh, host.data());
    params[favor_].value.from_host(host.data(), m * dh);
  }
}

template <typename T>
CrossAttentionState<T> NonCausalAttention<T>::make_state() const {
  return CrossAttentionState<T>(AttentionState<T>(backend_, config_.state_spec()));
}

// ---- helpers ------------------------------------------------------------------------------------

template <typename T>
void NonCausalAttention<T>::check_sequence(ConstView<T> x, const char* what) const {
  const int64_t D = config_.d_model;
  require(x.rank() == 3 && x.dim(2) == D, FWP_ERR_SHAPE_MISMATCH,
          std::string(what) + " has shape " + x.shape().str() + " where [B, T, " + std::to_string(D) +
              "] was expected");
  require(x.dim(0) >= 1, FWP_ERR_INVALID_ARGUMENT, std::string(what) + ": batch must be >= 1" + got(x.dim(0)));
  require(x.dim(1) >= 1, FWP_ERR_INVALID_ARGUMENT, std::string(what) + ": seq_len must be >= 1" + got(x.dim(1)));
  const int64_t rows = checked_mul(x.dim(0), x.dim(1), std::string(what) + ": batch * seq_len");
  const int64_t widest = std::max({config_.num_heads * config_.d_head, config_.d_model,
                                   config_.num_heads * config_.d_dot()});
  checked_mul(rows, widest, std::string(what) + ": batch * seq_len * (the widest activation)");
}

template <typename T>
void NonCausalAttention<T>::upload_lengths(const std::vector<int64_t>& lengths, int64_t batch, int64_t steps,
                                           const char* what, IdBuffer<T>& device) const {
  std::vector<int32_t> ids(static_cast<size_t>(batch), static_cast<int32_t>(std::min<int64_t>(
                                                           steps, std::numeric_limits<int32_t>::max())));
  if (!lengths.empty()) {
    require(static_cast<int64_t>(lengths.size()) == batch, FWP_ERR_SHAPE_MISMATCH,
            std::string(what) + " has " + std::to_string(lengths.size()) + " entries where the batch is " +
                std::to_string(batch));
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t len = lengths[static_cast<size_t>(b)];
      require(len >= 1 && len <= steps, FWP_ERR_OUT_OF_RANGE,
              std::string(what) + "[" + std::to_string(b) + "] must be in [1, " + std::to_string(steps) + "]" +
                  got(len));
      ids[static_cast<size_t>(b)] = static_cast<int32_t>(len);
    }
  }
  require(steps <= std::numeric_limits<int32_t>::max(), FWP_ERR_INVALID_ARGUMENT,
          std::string(what) + ": sequences longer than 2^31 - 1 steps are not supported");
  device.upload(backend_, ids.data(), batch);
}

template <typename T>
T NonCausalAttention<T>::output_scale() const {
  return config_.scale_output ? static_cast<T>(1.0 / std::sqrt(static_cast<double>(config_.d_head))) : T(1);
}

template <typename T>
void NonCausalAttention<T>::choose_favor(const ParameterList<T>& params, Rng* redraw_rng, Workspace& ws) const {
  ws.favor_used = nullptr;
  if (is_softmax() || config_.feature_map != FeatureMap::Favor) return;
  if (!redraw_rng) {
    ws.favor_used = params[favor_].value.data();
    return;
  }
  const int64_t m = config_.favor_features, dh = config_.d_head;
  std::vector<T> host(static_cast<size_t>(m * dh));
  draw_favor_projection<T>(*redraw_rng, m, dh, host.data());
  ws.favor.resize(backend_, m * dh);
  ws.favor.from_host(host.data(), m * dh);
  ws.favor_used = ws.favor.data();
}

template <typename T>
void NonCausalAttention<T>::query_features(const T* qh, int64_t rows, Workspace& ws) const {
  Backend<T>& be = *backend_;
  const int64_t dd = config_.d_dot();
  const T eps = static_cast<T>(config_.norm_eps);
  ws.phi_q_raw.resize(backend_, rows * dd);
  be.feature_map_forward(config_.feature_spec(), ws.favor_used, qh, ws.phi_q_raw.data(), rows);
  if (config_.sum_normalize) {
    ws.phi_q_norm.resize(backend_, rows * dd);
    be.sum_normalize_forward(ws.phi_q_raw.data(), ws.phi_q_norm.data(), rows, dd, eps);
  }
}

template <typename T>
void NonCausalAttention<T>::memory_side(const ParameterList<T>& params, ConstView<T> m, Workspace& ws) const {
  Backend<T>& be = *backend_;
  const int64_t B = m.dim(0), Tk = m.dim(1), H = config_.num_heads, dh = config_.d_head, P = H * dh;
  const int64_t N = B * Tk, S = B * H;
  const ConstView<T> m2 = m.reshaped({N, config_.d_model});
  ws.lin_k.resize(backend_, N * P);
  ws.kh.resize(backend_, N * P);
  ws.vh.resize(backend_, N * P);
  const TensorView<T> lin(ws.lin_k.data(), {N, P});
  k_->forward(params, m2, lin);
  be.split_heads(ws.lin_k.data(), ws.kh.data(), B, Tk, H, dh);
  v_->forward(params, m2, lin);
  be.split_heads(ws.lin_k.data(), ws.vh.data(), B, Tk, H, dh);
  if (is_softmax()) return;  // the masked softmax reads only the valid keys

  const int64_t dd = config_.d_dot();
  const T eps = static_cast<T>(config_.norm_eps);
  ws.phi_k_raw.resize(backend_, S * Tk * dd);
  be.feature_map_forward(config_.feature_spec(), ws.favor_used, ws.kh.data(), ws.phi_k_raw.data(), S * Tk);
  if (config_.sum_normalize) {
    ws.phi_k_norm.resize(backend_, S * Tk * dd);
    be.sum_normalize_forward(ws.phi_k_raw.data(), ws.phi_k_norm.data(), S * Tk, dd, eps);
  }
  // phi(pad) is not zero (elu+1 of anything is > 0): padded keys are cleared
  // from a copy, so the feature-map backward still sees the true phi.
  ws.phi_k_mem.resize(backend_, S * Tk * dd);
  be.copy(ws.phi_k_mem.data(), ws.phi_k(config_.sum_normalize), S * Tk * dd);
  be.zero_padded_steps(ws.phi_k_mem.data(), ws.key_lengths.data(), B, H, Tk, dd);
  be.zero_padded_steps(ws.vh.data(), ws.key_lengths.data(), B, H, Tk, dh);
  ws.memory.resize(backend_, S * dh * dd);
  be.outer_product_sum(S, Tk, dh, dd, ws.vh.data(), ws.phi_k_mem.data(), ws.memory.data());
  ws.z.resize(backend_, S * dd);
  be.step_sum(ws.phi_k_mem.data(), ws.z.data(), S, Tk, dd);
}

// ---- forward ------------------------------------------------------------------------------------

template <typename T>
void NonCausalAttention<T>::forward(const ParameterList<T>& params, ConstView<T> x,
                                    const std::vector<int64_t>& x_lengths, ConstView<T> m,
                                    const std::vector<int64_t>& m_lengths, TensorView<T> y, Workspace& ws,
                                    Rng* redraw_rng) const {
  check_sequence(x, "NonCausalAttention::forward: x");
  check_sequence(m, "NonCausalAttention::forward: the memory m");
  check_shape(y.shape(), x.shape(), "NonCausalAttention::forward: y");
  const int64_t B = x.dim(0), Tq = x.dim(1), Tk = m.dim(1);
  require(m.dim(0) == B, FWP_ERR_SHAPE_MISMATCH,
          "NonCausalAttention::forward: the memory's batch must equal x's (" + std::to_string(B) + ")" +
              got(m.dim(0)));
  // A forward that fails half-way leaves nothing a backward could use.
  ws.batch = ws.queries = ws.keys = 0;
  upload_lengths(x_lengths, B, Tq, "x_lengths", ws.query_lengths);
  upload_lengths(m_lengths, B, Tk, "m_lengths", ws.key_lengths);

  Backend<T>& be = *backend_;
  const int64_t D = config_.d_model, H = config_.num_heads, dh = config_.d_head, P = H * dh;
  const int64_t N = B * Tq, S = B * H;
  choose_favor(params, redraw_rng, ws);
  ws.lin_q.resize(backend_, N * P);
  ws.qh.resize(backend_, N * P);
  q_->forward(params, x.reshaped({N, D}), TensorView<T>(ws.lin_q.data(), {N, P}));
  be.split_heads(ws.lin_q.data(), ws.qh.data(), B, Tq, H, dh);
  memory_side(params, m, ws);

  ws.o.resize(backend_, N * P);
  if (is_softmax()) {
    ws.lse.resize(backend_, S * Tq);
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh)));
    be.masked_attention_forward(S, H, Tq, Tk, Tk, dh, ws.qh.data(), ws.kh.data(), ws.vh.data(),
                                ws.key_lengths.data(), scale, ws.o.data(), ws.lse.data());
  } else {
    query_features(ws.qh.data(), S * Tq, ws);
    const bool norm = config_.attn_normalize;
    if (norm) ws.denom.resize(backend_, S * Tq);
    const FastWeightShape shape{S, Tq, config_.d_dot(), dh};
    be.fast_weight_readout_forward(shape, ws.memory.data(), norm ? ws.z.data() : nullptr,
                                   ws.phi_q(config_.sum_normalize), static_cast<T>(config_.norm_eps), ws.o.data(),
                                   norm ? ws.denom.data() : nullptr);
  }
  ws.merged.resize(backend_, N * P);
  be.merge_heads(ws.o.data(), ws.merged.data(), B, Tq, H, dh);
  const T s = output_scale();
  if (s != T(1)) be.scale(N * P, s, ws.merged.data());
  out_->forward(params, ConstView<T>(ws.merged.data(), {N, P}), y.reshaped({N, D}));
  // Padded queries output exactly zero (not the bias): nothing leaks from them downstream.
  be.zero_padded_steps(y.data(), ws.query_lengths.data(), B, 1, Tq, D);
  ws.batch = B;
  ws.queries = Tq;
  ws.keys = Tk;
}

template <typename T>
void NonCausalAttention<T>::forward_self(const ParameterList<T>& params, ConstView<T> x,
                                         const std::vector<int64_t>& lengths, TensorView<T> y, Workspace& ws,
                                         Rng* redraw_rng) const {
  forward(params, x, lengths, x, lengths, y, ws, redraw_rng);
}

// ---- backward -----------------------------------------------------------------------------------

template <typename T>
void NonCausalAttention<T>::backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> m, ConstView<T> dy,
                                     TensorView<T> dx, InputGrad dx_mode, TensorView<T> dm, InputGrad dm_mode,
                                     Workspace& ws) const {
  require(ws.batch >= 1, FWP_ERR_BAD_STATE, "backward needs a forward first");
  const int64_t B = ws.batch, Tq = ws.queries, Tk = ws.keys;
  const int64_t D = config_.d_model, H = config_.num_heads, dh = config_.d_head, P = H * dh;
  const int64_t N = B * Tq, NK = B * Tk, S = B * H;
  check_shape(x.shape(), Shape{B, Tq, D}, "NonCausalAttention::backward: x (the forward's input)");
  check_shape(m.shape(), Shape{B, Tk, D}, "NonCausalAttention::backward: m (the forward's memory)");
  check_shape(dy.shape(), Shape{B, Tq, D}, "NonCausalAttention::backward: dy");
  if (!dx.is_null()) check_shape(dx.shape(), Shape{B, Tq, D}, "NonCausalAttention::backward: dx");
  if (!dm.is_null()) check_shape(dm.shape(), Shape{B, Tk, D}, "NonCausalAttention::backward: dm");
  require(dm.is_null() || dm.data() != dx.data() || dm_mode == InputGrad::Accumulate, FWP_ERR_INTERNAL,
          "NonCausalAttention::backward: dm may share dx's memory only when accumulating");
  Backend<T>& be = *backend_;

  // dy at padded queries is ignored (their outputs are constant zeros).
  ws.dy_masked.resize(backend_, N * D);
  be.copy(ws.dy_masked.data(), dy.data(), N * D);
  be.zero_padded_steps(ws.dy_masked.data(), ws.query_lengths.data(), B, 1, Tq, D);

  ws.lin_q.resize(backend_, N * P);
  out_->backward(params, ConstView<T>(ws.merged.data(), {N, P}), ConstView<T>(ws.dy_masked.data(), {N, D}),
                 TensorView<T>(ws.lin_q.data(), {N, P}), InputGrad::Overwrite);
  const T s = output_scale();
  if (s != T(1)) be.scale(N * P, s, ws.lin_q.data());
  ws.d_heads.resize(backend_, N * P);
  be.split_heads(ws.lin_q.data(), ws.d_heads.data(), B, Tq, H, dh);

  ws.dqh.resize(backend_, N * P);
  ws.dkh.resize(backend_, NK * P);
  ws.dvh.resize(backend_, NK * P);
  if (is_softmax()) {
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh)));
    be.masked_attention_backward(S, H, Tq, Tk, dh, ws.qh.data(), ws.kh.data(), ws.vh.data(), ws.key_lengths.data(),
                                 ws.o.data(), ws.lse.data(), ws.d_heads.data(), scale, ws.dqh.data(), ws.dkh.data(),
                                 ws.dvh.data());
  } else {
    const int64_t dd = config_.d_dot();
    const bool norm = config_.attn_normalize, sum_norm = config_.sum_normalize;
    const T eps = static_cast<T>(config_.norm_eps);
    const FeatureMapSpec spec = config_.feature_spec();
    ws.dphi_q.resize(backend_, S * Tq * dd);
    ws.dphi_k.resize(backend_, S * Tk * dd);
    ws.d_memory.resize(backend_, S * dh * dd);
    if (norm) ws.d_z.resize(backend_, S * dd);
    be.fast_weight_readout_backward(FastWeightShape{S, Tq, dd, dh}, ws.memory.data(), norm ? ws.z.data() : nullptr,
                                    ws.phi_q(sum_norm), ws.o.data(), norm ? ws.denom.data() : nullptr,
                                    ws.d_heads.data(), ws.dphi_q.data(), ws.d_memory.data(),
                                    norm ? ws.d_z.data() : nullptr);
    be.outer_product_sum_backward(S, Tk, dh, dd, ws.vh.data(), ws.phi_k_mem.data(), ws.d_memory.data(),
                                  ws.dvh.data(), ws.dphi_k.data());
    if (norm) be.step_broadcast_accumulate(ws.d_z.data(), ws.dphi_k.data(), S, Tk, dd);
    // Padded keys were never written: no gradient reaches them.
    be.zero_padded_steps(ws.dphi_k.data(), ws.key_lengths.data(), B, H, Tk, dd);
    be.zero_padded_steps(ws.dvh.data(), ws.key_lengths.data(), B, H, Tk, dh);
    if (sum_norm) {
      be.sum_normalize_backward(ws.phi_q_raw.data(), ws.dphi_q.data(), ws.dphi_q.data(), S * Tq, dd, eps);
      be.sum_normalize_backward(ws.phi_k_raw.data(), ws.dphi_k.data(), ws.dphi_k.data(), S * Tk, dd, eps);
    }
    be.feature_map_backward(spec, ws.favor_used, ws.qh.data(), ws.phi_q_raw.data(), ws.dphi_q.data(),
                            ws.dqh.data(), S * Tq);
    be.feature_map_backward(spec, ws.favor_used, ws.kh.data(), ws.phi_k_raw.data(), ws.dphi_k.data(),
                            ws.dkh.data(), S * Tk);
  }

  // Input projections: q into dx, k and v into dm.
  const TensorView<T> dx2 = dx.is_null() ? TensorView<T>() : dx.reshaped({N, D});
  const TensorView<T> dm2 = dm.is_null() ? TensorView<T>() : dm.reshaped({NK, D});
  be.merge_heads(ws.dqh.data(), ws.lin_q.data(), B, Tq, H, dh);
  q_->backward(params, x.reshaped({N, D}), ConstView<T>(ws.lin_q.data(), {N, P}), dx2, dx_mode);
  ws.lin_k.resize(backend_, NK * P);
  const ConstView<T> m2 = m.reshaped({NK, D});
  be.merge_heads(ws.dkh.data(), ws.lin_k.data(), B, Tk, H, dh);
  k_->backward(params, m2, ConstView<T>(ws.lin_k.data(), {NK, P}), dm2, dm_mode);
  be.merge_heads(ws.dvh.data(), ws.lin_k.data(), B, Tk, H, dh);
  v_->backward(params, m2, ConstView<T>(ws.lin_k.data(), {NK, P}), dm2, InputGrad::Accumulate);
}

template <typename T>
void NonCausalAttention<T>::backward_self(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy,
                                          TensorView<T> dx, InputGrad mode, Workspace& ws) const {
  backward(params, x, x, dy, dx, mode, dx, InputGrad::Accumulate, ws);
}

// ---- incremental decoding ------------------------------------------------------------------------

template <typename T>
void NonCausalAttention<T>::begin(const ParameterList<T>& params, ConstView<T> m,
                                  const std::vector<int64_t>& m_lengths, CrossAttentionState<T>& state,
                                  Workspace& ws) const {
  check_sequence(m, "NonCausalAttention::begin: the memory m");
  require(state.memory.backend() == backend_, FWP_ERR_INVALID_ARGUMENT,
          "the state lives on another backend than the attention layer");
  state.memory.check_spec(config_.state_spec(), "the cross-attention state");
  const int64_t B = m.dim(0), Tk = m.dim(1), H = config_.num_heads, dh = config_.d_head, S = B * H;
  ws.batch = ws.queries = ws.keys = 0;  // scratch only: nothing for a backward
  upload_lengths(m_lengths, B, Tk, "m_lengths", ws.key_lengths);
  choose_favor(params, nullptr, ws);
  memory_side(params, m, ws);

  // Built aside, so a failure leaves the old state.
  AttentionState<T> memory(backend_, config_.state_spec(), B);
  if (is_softmax()) {
    memory.reserve(Tk);
    const int64_t cap = memory.capacity();
    for (int64_t s = 0; s < S; ++s) {
      backend_->copy(memory.k_cache() + s * cap * dh, ws.kh.data() + s * Tk * dh, Tk * dh);
      backend_->copy(memory.v_cache() + s * cap * dh, ws.vh.data() + s * Tk * dh, Tk * dh);
    }
    memory.advance(Tk);
  } else {
    const int64_t dd = config_.d_dot();
    backend_->copy(memory.w(), ws.memory.data(), S * dh * dd);
    backend_->copy(memory.z(), ws.z.data(), S * dd);
  }
  std::vector<int64_t> lengths = m_lengths.empty() ? std::vector<int64_t>(static_cast<size_t>(B), Tk) : m_lengths;
  state.memory = std::move(memory);
  state.key_lengths_device = std::move(ws.key_lengths);
  state.key_lengths = std::move(lengths);
}

template <typename T>
void NonCausalAttention<T>::step(const ParameterList<T>& params, ConstView<T> x, const CrossAttentionState<T>& state,
                                 TensorView<T> y, Workspace& ws) const {
  const int64_t D = config_.d_model, H = config_.num_heads, dh = config_.d_head, P = H * dh;
  require(x.rank() == 2 && x.dim(1) == D, FWP_ERR_SHAPE_MISMATCH,
          "NonCausalAttention::step: x has shape " + x.shape().str() + " where [B, " + std::to_string(D) +
              "] was expected");
  check_shape(y.shape(), x.shape(), "NonCausalAttention::step: y");
  require(!state.empty(), FWP_ERR_BAD_STATE, "NonCausalAttention::step: begin() the state with a source first");
  state.memory.check_spec(config_.state_spec(), "the cross-attention state");
  const int64_t B = x.dim(0), S = B * H;
  require(B == state.batch(), FWP_ERR_SHAPE_MISMATCH,
          "batch must equal the batch of the cross-attention state (" + std::to_string(state.batch()) + ")" +
              got(B));
  Backend<T>& be = *backend_;
  ws.batch = ws.queries = ws.keys = 0;
  // One query per row: [B, H * d_head] is already the [S, d_head] head layout.
  ws.qh.resize(backend_, B * P);
  q_->forward(params, x, TensorView<T>(ws.qh.data(), {B, P}));
  ws.o.resize(backend_, B * P);
  if (is_softmax()) {
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh)));
    be.masked_attention_forward(S, H, 1, state.memory.length(), state.memory.capacity(), dh, ws.qh.data(),
                                state.memory.k_cache(), state.memory.v_cache(), state.key_lengths_device.data(),
                                scale, ws.o.data(), nullptr);
  } else {
    choose_favor(params, nullptr, ws);
    query_features(ws.qh.data(), S, ws);
    const bool norm = config_.attn_normalize;
    if (norm) ws.denom.resize(backend_, S);
    be.fast_weight_readout_forward(FastWeightShape{S, 1, config_.d_dot(), dh}, state.memory.w(),
                                   norm ? state.memory.z() : nullptr, ws.phi_q(config_.sum_normalize),
                                   static_cast<T>(config_.norm_eps), ws.o.data(), norm ? ws.denom.data() : nullptr);
    const T s = output_scale();
    if (s != T(1)) be.scale(B * P, s, ws.o.data());
  }
  out_->forward(params, ConstView<T>(ws.o.data(), {B, P}), y);
}

template struct CrossAttentionState<float>;
template struct CrossAttentionState<double>;
template class NonCausalAttention<float>;
template class NonCausalAttention<double>;

}  // namespace fwp
