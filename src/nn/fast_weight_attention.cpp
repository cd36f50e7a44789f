#include "nn/fast_weight_attention.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/limits.h"
#include "nn/module_init.h"
#include "ops/favor_projection.h"

namespace fwp {

namespace {

std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }
std::string got(double v) {
  std::ostringstream os;
  os << v;
  return " (got " + os.str() + ")";
}

}  // namespace

// ---- config --------------------------------------------------------------------------

FeatureMapSpec FastWeightAttentionConfig::feature_spec() const { return attention_feature_spec(*this); }

int64_t FastWeightAttentionConfig::d_dot() const { return softmax ? 0 : feature_spec().d_out(); }

AttentionStateSpec FastWeightAttentionConfig::state_spec() const { return attention_state_spec(*this); }

void FastWeightAttentionConfig::validate(const std::string& prefix) const {
  validate_sizes(prefix);
  validate_options(prefix);
}

void FastWeightAttentionConfig::validate_sizes(const std::string& prefix) const {
  auto positive = [&](int64_t v, const char* name) {
    require(v >= 1, FWP_ERR_INVALID_ARGUMENT, prefix + name + " must be >= 1" + got(v));
  };
  positive(d_model, "d_model");
  positive(num_heads, "num_heads");
  positive(d_head, "d_head");
  const int64_t width = checked_mul(num_heads, d_head, prefix + "num_heads * d_head");
  checked_mul(width, d_model, prefix + "d_model * num_heads * d_head (the size of a projection)");
  require(std::isfinite(init_std) && init_std >= 0, FWP_ERR_INVALID_ARGUMENT,
          prefix + "init_std must be finite and >= 0" + got(init_std));
  check_chunk_size(chunk_size, prefix + "chunk_size");
}

void FastWeightAttentionConfig::validate_options(const std::string& prefix) const {
  const int64_t width = num_heads * d_head;  // bounded by validate_sizes()
  const int64_t dd = validate_attention_options(prefix, softmax, update_rule, sum_normalize, attn_normalize,
                                                norm_eps, feature_map, d_head, dpfp_nu, favor_features);
  checked_mul(width, dd, prefix + "num_heads * d_head * d_dot (the state of one batch row)");
}

int64_t validate_attention_options(const std::string& prefix, bool softmax, UpdateRule update_rule,
                                   bool sum_normalize, bool attn_normalize, double norm_eps,
                                   FeatureMap feature_map, int64_t d_head, int64_t dpfp_nu,
                                   int64_t favor_features) {
  auto positive = [&](int64_t v, const char* name) {
    require(v >= 1, FWP_ERR_INVALID_ARGUMENT, prefix + name + " must be >= 1" + got(v));
  };
  if (softmax) {
    require(update_rule == UpdateRule::Sum, FWP_ERR_INVALID_ARGUMENT,
            prefix + "update_rule must be FWP_UPDATE_SUM with softmax attention");
    require(!sum_normalize, FWP_ERR_INVALID_ARGUMENT,
            prefix + "sum_normalize must be 0 with softmax attention");
    require(!attn_normalize, FWP_ERR_INVALID_ARGUMENT,
            prefix + "attn_normalize must be 0 with softmax attention");
    return 0;
  }
  // The epsilon only matters with a normalisation, but a bad value is still a
  // mistake worth reporting.
  check_epsilon(norm_eps, prefix + "norm_eps");
  // d_dot is bounded, so every factor is checked against the bound before the
  // product is formed (no overflow for absurd inputs).
  int64_t dd = kMaxFeatureDim + 1;
  switch (feature_map) {
    case FeatureMap::Elu:
      dd = d_head;
      break;
    case FeatureMap::Dpfp:
      positive(dpfp_nu, "dpfp_nu");
      if (d_head <= kMaxFeatureDim && dpfp_nu <= kMaxFeatureDim) dd = 2 * d_head * dpfp_nu;
      break;
    case FeatureMap::Favor:
      positive(favor_features, "favor_features");
      if (favor_features <= kMaxFeatureDim) dd = 2 * favor_features;
      break;
  }
  require(dd <= kMaxFeatureDim, FWP_ERR_INVALID_ARGUMENT,
          prefix + "the feature dimension d_dot must be <= " + std::to_string(kMaxFeatureDim) +
              " (d_head, dpfp_nu or favor_features is too large)");
  return dd;
}

// ---- construction --------------------------------------------------------------------------

template <typename T>
FastWeightAttention<T>::FastWeightAttention(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend,
                                            std::string prefix, const FastWeightAttentionConfig& config)
    : config_(config), backend_(std::move(backend)), prefix_(std::move(prefix)) {
  config_.validate();
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "FastWeightAttention needs a backend");
  const int64_t D = config_.d_model, H = config_.num_heads, P = H * config_.d_head;
  const bool bias = config_.use_bias;
  q_ = std::make_unique<Linear<T>>(params, backend_, prefix_ + "q_proj", D, P, bias);
  k_ = std::make_unique<Linear<T>>(params, backend_, prefix_ + "k_proj", D, P, bias);
  v_ = std::make_unique<Linear<T>>(params, backend_, prefix_ + "v_proj", D, P, bias);
  if (!is_softmax() && config_.update_rule == UpdateRule::Delta)
    beta_ = std::make_unique<Linear<T>>(params, backend_, prefix_ + "beta_proj", D, H, bias);
  out_ = std::make_unique<Linear<T>>(params, backend_, prefix_ + "out_proj", P, D, bias);
  if (!is_softmax() && config_.feature_map == FeatureMap::Favor) {
    favor_ = nn_init::declare_parameter(params, backend_, prefix_ + "favor.projection",
                                        {config_.favor_features, config_.d_head}, /*trainable=*/false);
  }
}

template <typename T>
void FastWeightAttention<T>::init(ParameterList<T>& params, Rng& rng) const {
  for (const Linear<T>* lin : {q_.get(), k_.get(), v_.get(), beta_.get(), out_.get()})
    if (lin) lin->init_normal(params, rng, config_.init_std);
  if (favor_ >= 0) {
    const int64_t m = config_.favor_features, dh = config_.d_head;
    std::vector<T> host(static_cast<size_t>(m * dh));
    draw_favor_projection<T>(rng, m, dh, host.data());
    params[favor_].value.from_host(host.data(), m * dh);
  }
}

template <typename T>
AttentionState<T> FastWeightAttention<T>::make_state(int64_t batch) const {
  if (batch == 0) return AttentionState<T>(backend_, config_.state_spec());
  return AttentionState<T>(backend_, config_.state_spec(), batch);
}

// ---- helpers ---------------------------------------------------------------------------------

template <typename T>
void FastWeightAttention<T>::check_input(ConstView<T> x, TensorView<T> y, int64_t steps, const char* what) const {
  const int64_t D = config_.d_model;
  if (steps == 0) {  // [B, T, D]
    require(x.rank() == 3 && x.dim(2) == D, FWP_ERR_SHAPE_MISMATCH,
            std::string(what) + ": x has shape " + x.shape().str() + " where [B, T, " + std::to_string(D) +
                "] was expected");
  } else {  // [B, D]
    require(x.rank() == 2 && x.dim(1) == D, FWP_ERR_SHAPE_MISMATCH,
            std::string(what) + ": x has shape " + x.shape().str() + " where [B, " + std::to_string(D) +
                "] was expected");
  }
  check_shape(y.shape(), x.shape(), std::string(what) + ": y");
  const int64_t batch = x.dim(0), seq_len = steps == 0 ? x.dim(1) : 1;
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(batch));
  require(seq_len >= 1, FWP_ERR_INVALID_ARGUMENT, "seq_len must be >= 1" + got(seq_len));
  const int64_t rows = checked_mul(batch, seq_len, "batch * seq_len");
  const int64_t width = std::max(config_.num_heads * config_.d_head, config_.d_model);
  checked_mul(rows, std::max(config_.num_heads * config_.d_dot(), width), "batch * seq_len * (the widest activation)");
  if (!is_softmax())
    checked_mul(batch, config_.num_heads * config_.d_head * config_.d_dot(), "batch * the state size of one batch row");
}

template <typename T>
void FastWeightAttention<T>::check_state(const AttentionState<T>& state) const {
  require(state.backend() == backend_, FWP_ERR_INVALID_ARGUMENT,
          "the state lives on another backend than the attention layer");
  state.check_spec(config_.state_spec(), "the state");
}

template <typename T>
T FastWeightAttention<T>::output_scale() const {
  return config_.scale_output && !is_softmax() ? static_cast<T>(1.0 / std::sqrt(static_cast<double>(config_.d_head)))
                                              : T(1);
}

template <typename T>
void FastWeightAttention<T>::project_heads(const ParameterList<T>& params, ConstView<T> x, int64_t B, int64_t Tn,
                                           Workspace& ws) const {
  Backend<T>& be = *backend_;
  const int64_t H = config_.num_heads, dh = config_.d_head, P = H * dh, N = B * Tn;
  const ConstView<T> x2 = x.reshaped({N, config_.d_model});
  ws.lin.resize(backend_, N * P);
  ws.qh.resize(backend_, N * P);
  ws.kh.resize(backend_, N * P);
  ws.vh.resize(backend_, N * P);
  const TensorView<T> lin(ws.lin.data(), {N, P});
  q_->forward(params, x2, lin);
  be.split_heads(ws.lin.data(), ws.qh.data(), B, Tn, H, dh);
  k_->forward(params, x2, lin);
  be.split_heads(ws.lin.data(), ws.kh.data(), B, Tn, H, dh);
  v_->forward(params, x2, lin);
  be.split_heads(ws.lin.data(), ws.vh.data(), B, Tn, H, dh);
}

// ---- forward ------------------------------------------------------------------------------------

template <typename T>
void FastWeightAttention<T>::forward(const ParameterList<T>& params, ConstView<T> x, AttentionState<T>* state,
                                     StateUpdate update, TensorView<T> y, Workspace& ws, Rng* redraw_rng,
                                     const std::vector<int64_t>& lengths) const {
  check_input(x, y, 0, "FastWeightAttention::forward");
  const int64_t B = x.dim(0);
  if (state) {
    check_state(*state);
    if (!state->empty())
      require(state->batch() == B, FWP_ERR_SHAPE_MISMATCH,
              "batch must equal the batch of the state (" + std::to_string(state->batch()) + ")" + got(B));
  }
  require(update == StateUpdate::Keep || state != nullptr, FWP_ERR_INTERNAL,
          "FastWeightAttention::forward: StateUpdate::Write without a state");
  // A forward that fails half-way must not leave a backward that uses a mix
  // of old and new activations.
  ws.batch = ws.steps = 0;
  ws.padded = false;
  if (!lengths.empty()) {
    const int64_t Tn = x.dim(1);
    require(static_cast<int64_t>(lengths.size()) == B, FWP_ERR_SHAPE_MISMATCH,
            "lengths has " + std::to_string(lengths.size()) + " entries where the batch is " + std::to_string(B));
    std::vector<int32_t> ids(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = lengths[static_cast<size_t>(b)];
      require(len >= 1 && len <= Tn, FWP_ERR_OUT_OF_RANGE,
              "lengths[" + std::to_string(b) + "] must be in [1, " + std::to_string(Tn) + "]" + got(len));
      ids[static_cast<size_t>(b)] = static_cast<int32_t>(len);
    }
    require(!(is_softmax() && update == StateUpdate::Write), FWP_ERR_UNSUPPORTED,
            "a softmax attention forward of a padded batch cannot fill a key/value cache (one length for all rows)");
    ws.lengths.upload(backend_, ids.data(), B);
    ws.padded = true;
  }
  if (is_softmax()) {
    if (update == StateUpdate::Write)
      require(state->length() == 0, FWP_ERR_UNSUPPORTED,
              "a softmax attention forward continues no sequence: its key/value cache must be empty (length " +
                  std::to_string(state->length()) + "); reset the state, or continue with steps");
    softmax_forward(params, x, y, ws);
    if (update == StateUpdate::Write) fill_cache(ws, B, x.dim(1), *state);
  } else {
    const AttentionState<T>* initial = state && !state->empty() ? state : nullptr;
    fast_weight_forward(params, x, initial, y, ws, config_.feature_map == FeatureMap::Favor ? redraw_rng : nullptr);
    if (update == StateUpdate::Write) {
      write_state(ws, B, *state);
      state->advance_position(x.dim(1));
    }
  }
  // Padded steps output exactly zero: nothing leaks from them downstream.
  if (ws.padded) backend_->zero_padded_steps(y.data(), ws.lengths.data(), B, 1, x.dim(1), config_.d_model);
  ws.batch = B;
  ws.steps = x.dim(1);
}

template <typename T>
void FastWeightAttention<T>::fast_weight_forward(const ParameterList<T>& params, ConstView<T> x,
                                                 const AttentionState<T>* initial, TensorView<T> y, Workspace& ws,
                                                 Rng* redraw_rng) const {
  Backend<T>& be = *backend_;
  const auto& be_ptr = backend_;
  const int64_t B = x.dim(0), Tn = x.rank() == 3 ? x.dim(1) : 1;
  const int64_t D = config_.d_model, H = config_.num_heads, dh = config_.d_head, P = H * dh;
  const int64_t dd = config_.d_dot(), N = B * Tn, S = B * H;
  const bool delta = config_.update_rule == UpdateRule::Delta;
  const bool sum_norm = config_.sum_normalize, attn_norm = config_.attn_normalize;
  const T eps = static_cast<T>(config_.norm_eps);
  const FeatureMapSpec spec = config_.feature_spec();
  ws.fast_weight = true;

  // Projections, then heads to [S, T, d_head].
  project_heads(params, x, B, Tn, ws);
  if (delta) {
    // [N, H] logits are [B, T, H, 1]; splitting heads with D = 1 gives [S, T].
    ws.beta_logit.resize(be_ptr, N * H);
    ws.beta.resize(be_ptr, N * H);
    beta_->forward(params, x.reshaped({N, D}), TensorView<T>(ws.lin.data(), {N, H}));
    be.split_heads(ws.lin.data(), ws.beta_logit.data(), B, Tn, H, 1);
    be.sigmoid_forward(ws.beta_logit.data(), ws.beta.data(), N * H);
  }

  // Feature maps.
  ws.favor_used = nullptr;
  if (config_.feature_map == FeatureMap::Favor) {
    if (!redraw_rng) {
      ws.favor_used = params[favor_].value.data();
    } else {
      const int64_t m = config_.favor_features;
      std::vector<T> host(static_cast<size_t>(m * dh));
      draw_favor_projection<T>(*redraw_rng, m, dh, host.data());
      ws.favor.resize(be_ptr, m * dh);
      ws.favor.from_host(host.data(), m * dh);
      ws.favor_used = ws.favor.data();
    }
  }
  ws.phi_q_raw.resize(be_ptr, N * H * dd);
  ws.phi_k_raw.resize(be_ptr, N * H * dd);
  be.feature_map_forward(spec, ws.favor_used, ws.qh.data(), ws.phi_q_raw.data(), S * Tn);
  be.feature_map_forward(spec, ws.favor_used, ws.kh.data(), ws.phi_k_raw.data(), S * Tn);
  if (sum_norm) {
    ws.phi_q_norm.resize(be_ptr, N * H * dd);
    ws.phi_k_norm.resize(be_ptr, N * H * dd);
    be.sum_normalize_forward(ws.phi_q_raw.data(), ws.phi_q_norm.data(), S * Tn, dd, eps);
    be.sum_normalize_forward(ws.phi_k_raw.data(), ws.phi_k_norm.data(), S * Tn, dd, eps);
  }
  const T* phi_q = ws.phi_q(sum_norm);
  const T* phi_k = ws.phi_k(sum_norm);
  if (ws.padded) {
    // A zero key writes nothing (sum rule: v 0^T; delta rule: beta (v - W 0) 0^T) and adds
    // nothing to z: padded steps leave the memory as the row's last token left it.
    ws.phi_k_mem.resize(be_ptr, N * H * dd);
    be.copy(ws.phi_k_mem.data(), phi_k, N * H * dd);
    be.zero_padded_steps(ws.phi_k_mem.data(), ws.lengths.data(), B, H, Tn, dd);
    phi_k = ws.phi_k_mem.data();
  }

  // The recurrence, from the initial state (or zeros).
  const FastWeightShape shape{S, Tn, dd, dh};
  ws.o.resize(be_ptr, N * P);
  ws.u.resize(be_ptr, N * P);
  ws.state_out.resize(be_ptr, S * dh * dd);
  const int64_t interval = be.fast_weight_state_interval(shape, config_.chunk_size);
  ws.saved.resize(be_ptr, S * ((Tn + interval - 1) / interval) * dh * dd);
  be.fast_weight_forward(config_.update_rule, config_.algorithm, config_.chunk_size, shape, phi_q, phi_k,
                         ws.vh.data(), delta ? ws.beta.data() : nullptr, initial ? initial->w() : nullptr,
                         ws.o.data(), ws.u.data(), ws.state_out.data(), ws.saved.data());
  const T* heads_out = ws.o.data();
  if (attn_norm) {
    ws.z_in.resize(be_ptr, S * dd);
    if (initial)
      be.copy(ws.z_in.data(), initial->z(), S * dd);
    else
      ws.z_in.zero();
    ws.z_out.resize(be_ptr, S * dd);
    ws.o_norm.resize(be_ptr, N * P);
    ws.denom.resize(be_ptr, N * H);
    be.attn_norm_forward(shape, phi_q, phi_k, ws.z_in.data(), ws.o.data(), eps, ws.o_norm.data(),
                         ws.denom.data(), ws.z_out.data());
    heads_out = ws.o_norm.data();
  }

  // Merge heads, scale, project.
  ws.merged.resize(be_ptr, N * P);
  be.merge_heads(heads_out, ws.merged.data(), B, Tn, H, dh);
  const T s = output_scale();
  if (s != T(1)) be.scale(N * P, s, ws.merged.data());
  out_->forward(params, ConstView<T>(ws.merged.data(), {N, P}), y.reshaped({N, D}));
}

template <typename T>
void FastWeightAttention<T>::write_state(const Workspace& ws, int64_t B, AttentionState<T>& state) const {
  const int64_t S = B * config_.num_heads, dd = config_.d_dot(), dh = config_.d_head;
  // An empty state starts as zeros, so z stays zero without attention normalisation.
  state.ensure_batch(B, "the state");
  backend_->copy(state.w(), ws.state_out.data(), S * dh * dd);
  // z only moves with attention normalisation; otherwise it is carried unchanged.
  if (config_.attn_normalize) backend_->copy(state.z(), ws.z_out.data(), S * dd);
}

template <typename T>
void FastWeightAttention<T>::softmax_forward(const ParameterList<T>& params, ConstView<T> x, TensorView<T> y,
                                             Workspace& ws) const {
  Backend<T>& be = *backend_;
  const int64_t B = x.dim(0), Tn = x.dim(1);
  const int64_t D = config_.d_model, H = config_.num_heads, dh = config_.d_head, P = H * dh;
  const int64_t N = B * Tn, S = B * H;
  ws.fast_weight = false;
  project_heads(params, x, B, Tn, ws);
  ws.o.resize(backend_, N * P);
  ws.lse.resize(backend_, N * H);
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh)));
  be.softmax_attention_forward(S, Tn, dh, ws.qh.data(), ws.kh.data(), ws.vh.data(), scale, ws.o.data(),
                               ws.lse.data());
  ws.merged.resize(backend_, N * P);
  be.merge_heads(ws.o.data(), ws.merged.data(), B, Tn, H, dh);
  out_->forward(params, ConstView<T>(ws.merged.data(), {N, P}), y.reshaped({N, D}));
}

template <typename T>
void FastWeightAttention<T>::fill_cache(const Workspace& ws, int64_t B, int64_t Tn, AttentionState<T>& state) const {
  const int64_t S = B * config_.num_heads, dh = config_.d_head;
  state.ensure_batch(B, "the key/value cache");
  state.reserve(Tn);
  // [S, T, d_head] keys and values become the first T positions of each stream.
  const int64_t cap = state.capacity();
  for (int64_t s = 0; s < S; ++s) {
    backend_->copy(state.k_cache() + s * cap * dh, ws.kh.data() + s * Tn * dh, Tn * dh);
    backend_->copy(state.v_cache() + s * cap * dh, ws.vh.data() + s * Tn * dh, Tn * dh);
  }
  state.advance(Tn);
}

// ---- backward ------------------------------------------------------------------------------------

template <typename T>
void FastWeightAttention<T>::backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx,
                                      InputGrad mode, Workspace& ws) const {
  require(ws.batch >= 1, FWP_ERR_BAD_STATE, "backward needs a forward first");
  const Shape expected{ws.batch, ws.steps, config_.d_model};
  check_shape(x.shape(), expected, "FastWeightAttention::backward: x (the forward's input)");
  check_shape(dy.shape(), expected, "FastWeightAttention::backward: dy");
  if (!dx.is_null()) check_shape(dx.shape(), expected, "FastWeightAttention::backward: dx");
  ConstView<T> dy_used = dy;
  if (ws.padded) {
    // dy at padded steps is ignored (their outputs are constant zeros).
    const int64_t n = ws.batch * ws.steps * config_.d_model;
    ws.dy_masked.resize(backend_, n);
    backend_->copy(ws.dy_masked.data(), dy.data(), n);
    backend_->zero_padded_steps(ws.dy_masked.data(), ws.lengths.data(), ws.batch, 1, ws.steps, config_.d_model);
    dy_used = ConstView<T>(ws.dy_masked.data(), expected);
  }
  if (ws.fast_weight)
    fast_weight_backward(params, x, dy_used, dx, mode, ws);
  else
    softmax_backward(params, x, dy_used, dx, mode, ws);
}

template <typename T>
void FastWeightAttention<T>::fast_weight_backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy,
                                                  TensorView<T> dx, InputGrad mode, Workspace& ws) const {
  Backend<T>& be = *backend_;
  const auto& be_ptr = backend_;
  const int64_t B = ws.batch, Tn = ws.steps;
  const int64_t D = config_.d_model, H = config_.num_heads, dh = config_.d_head, P = H * dh;
  const int64_t dd = config_.d_dot(), N = B * Tn, S = B * H;
  const bool delta = config_.update_rule == UpdateRule::Delta;
  const bool sum_norm = config_.sum_normalize, attn_norm = config_.attn_normalize;
  const T eps = static_cast<T>(config_.norm_eps);
  const FeatureMapSpec spec = config_.feature_spec();
  const FastWeightShape shape{S, Tn, dd, dh};
  const T* phi_q = ws.phi_q(sum_norm);
  const T* phi_k = ws.padded ? ws.phi_k_mem.data() : ws.phi_k(sum_norm);
  const ConstView<T> x2 = x.reshaped({N, D});
  const TensorView<T> dx2 = dx.is_null() ? TensorView<T>() : dx.reshaped({N, D});
  ws.lin.resize(be_ptr, N * P);
  const TensorView<T> lin(ws.lin.data(), {N, P});

  // Output projection; the output scale is the derivative of the scaling.
  out_->backward(params, ConstView<T>(ws.merged.data(), {N, P}), dy.reshaped({N, D}), lin, InputGrad::Overwrite);
  const T s = output_scale();
  if (s != T(1)) be.scale(N * P, s, ws.lin.data());
  ws.d_heads.resize(be_ptr, N * P);
  be.split_heads(ws.lin.data(), ws.d_heads.data(), B, Tn, H, dh);

  // Attention normalisation.
  const T* d_o = ws.d_heads.data();
  ws.grad_z.resize(be_ptr, S * dd);
  if (attn_norm) {
    ws.d_o.resize(be_ptr, N * P);
    ws.dq_norm.resize(be_ptr, N * H * dd);
    ws.dk_norm.resize(be_ptr, N * H * dd);
    be.attn_norm_backward(shape, phi_q, phi_k, ws.z_in.data(), ws.o_norm.data(), ws.denom.data(),
                          ws.d_heads.data(), ws.d_o.data(), ws.dq_norm.data(), ws.dk_norm.data(), ws.grad_z.data());
    d_o = ws.d_o.data();
  } else {
    ws.grad_z.zero();  // z does not influence the output
  }

  // The recurrence.
  ws.dphi_q.resize(be_ptr, N * H * dd);
  ws.dphi_k.resize(be_ptr, N * H * dd);
  ws.dvh.resize(be_ptr, N * P);
  if (delta) ws.dbeta.resize(be_ptr, N * H);
  ws.grad_w.resize(be_ptr, S * dh * dd);
  be.fast_weight_backward(config_.update_rule, config_.algorithm, config_.chunk_size, shape, phi_q, phi_k,
                          ws.vh.data(), delta ? ws.beta.data() : nullptr, ws.u.data(), ws.state_out.data(), d_o,
                          nullptr, ws.dphi_q.data(), ws.dphi_k.data(), ws.dvh.data(),
                          delta ? ws.dbeta.data() : nullptr, ws.grad_w.data(), ws.saved.data());
  ws.grad_batch = B;
  if (attn_norm) {
    be.axpy(N * H * dd, T(1), ws.dq_norm.data(), ws.dphi_q.data());
    be.axpy(N * H * dd, T(1), ws.dk_norm.data(), ws.dphi_k.data());
  }
  if (ws.padded) {
    // The cleared keys are constants: no gradient reaches padded steps' keys, values or betas.
    be.zero_padded_steps(ws.dphi_k.data(), ws.lengths.data(), B, H, Tn, dd);
    be.zero_padded_steps(ws.dvh.data(), ws.lengths.data(), B, H, Tn, dh);
    if (delta) be.zero_padded_steps(ws.dbeta.data(), ws.lengths.data(), B, H, Tn, 1);
  }

  // Feature maps (sum normalisation in place: dphi may alias dout).
  if (sum_norm) {
    be.sum_normalize_backward(ws.phi_q_raw.data(), ws.dphi_q.data(), ws.dphi_q.data(), S * Tn, dd, eps);
    be.sum_normalize_backward(ws.phi_k_raw.data(), ws.dphi_k.data(), ws.dphi_k.data(), S * Tn, dd, eps);
  }
  ws.dqh.resize(be_ptr, N * P);
  ws.dkh.resize(be_ptr, N * P);
  be.feature_map_backward(spec, ws.favor_used, ws.qh.data(), ws.phi_q_raw.data(), ws.dphi_q.data(), ws.dqh.data(),
                          S * Tn);
  be.feature_map_backward(spec, ws.favor_used, ws.kh.data(), ws.phi_k_raw.data(), ws.dphi_k.data(), ws.dkh.data(),
                          S * Tn);

  // Input projections; dx takes the caller's mode from the first and accumulates the rest.
  be.merge_heads(ws.dqh.data(), ws.lin.data(), B, Tn, H, dh);
  q_->backward(params, x2, lin, dx2, mode);
  be.merge_heads(ws.dkh.data(), ws.lin.data(), B, Tn, H, dh);
  k_->backward(params, x2, lin, dx2, InputGrad::Accumulate);
  be.merge_heads(ws.dvh.data(), ws.lin.data(), B, Tn, H, dh);
  v_->backward(params, x2, lin, dx2, InputGrad::Accumulate);
  if (delta) {
    ws.dbeta_logit.resize(be_ptr, N * H);
    be.sigmoid_backward(ws.beta.data(), ws.dbeta.data(), ws.dbeta_logit.data(), N * H);
    // [S, T] back to [N, H]: merging heads with D = 1.
    be.merge_heads(ws.dbeta_logit.data(), ws.lin.data(), B, Tn, H, 1);
    beta_->backward(params, x2, ConstView<T>(ws.lin.data(), {N, H}), dx2, InputGrad::Accumulate);
  }
}

template <typename T>
void FastWeightAttention<T>::softmax_backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy,
                                              TensorView<T> dx, InputGrad mode, Workspace& ws) const {
  Backend<T>& be = *backend_;
  const auto& be_ptr = backend_;
  const int64_t B = ws.batch, Tn = ws.steps;
  const int64_t D = config_.d_model, H = config_.num_heads, dh = config_.d_head, P = H * dh, N = B * Tn, S = B * H;
  const ConstView<T> x2 = x.reshaped({N, D});
  const TensorView<T> dx2 = dx.is_null() ? TensorView<T>() : dx.reshaped({N, D});
  ws.lin.resize(be_ptr, N * P);
  const TensorView<T> lin(ws.lin.data(), {N, P});

  out_->backward(params, ConstView<T>(ws.merged.data(), {N, P}), dy.reshaped({N, D}), lin, InputGrad::Overwrite);
  ws.d_heads.resize(be_ptr, N * P);
  be.split_heads(ws.lin.data(), ws.d_heads.data(), B, Tn, H, dh);
  ws.dqh.resize(be_ptr, N * P);
  ws.dkh.resize(be_ptr, N * P);
  ws.dvh.resize(be_ptr, N * P);
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh)));
  be.softmax_attention_backward(S, Tn, dh, ws.qh.data(), ws.kh.data(), ws.vh.data(), ws.o.data(), ws.lse.data(),
                                ws.d_heads.data(), scale, ws.dqh.data(), ws.dkh.data(), ws.dvh.data());
  be.merge_heads(ws.dqh.data(), ws.lin.data(), B, Tn, H, dh);
  q_->backward(params, x2, lin, dx2, mode);
  be.merge_heads(ws.dkh.data(), ws.lin.data(), B, Tn, H, dh);
  k_->backward(params, x2, lin, dx2, InputGrad::Accumulate);
  be.merge_heads(ws.dvh.data(), ws.lin.data(), B, Tn, H, dh);
  v_->backward(params, x2, lin, dx2, InputGrad::Accumulate);
}

// ---- recurrent inference ----------------------------------------------------------------------------

template <typename T>
void FastWeightAttention<T>::step(const ParameterList<T>& params, ConstView<T> x, AttentionState<T>& state,
                                  TensorView<T> y, Workspace& ws) const {
  check_input(x, y, 1, "FastWeightAttention::step");
  check_state(state);
  const int64_t B = x.dim(0);
  const char* hint = "; reset the state first to start new sequences";
  // Nothing a backward could use is left in ws.
  ws.batch = ws.steps = 0;
  if (is_softmax()) {
    state.ensure_batch(B, "the key/value cache", hint);
    softmax_step(params, x, state, y, ws);
    return;
  }
  state.ensure_batch(B, "the state", hint);
  ws.padded = false;  // one token per row: nothing to mask
  // With one token, [B, D] is [B, 1, D]; evaluation mode uses the fixed features.
  fast_weight_forward(params, x.reshaped({B, 1, config_.d_model}), &state,
                      y.reshaped({B, 1, config_.d_model}), ws, nullptr);
  write_state(ws, B, state);
  state.advance_position(1);
}

template <typename T>
void FastWeightAttention<T>::softmax_step(const ParameterList<T>& params, ConstView<T> x, AttentionState<T>& state,
                                          TensorView<T> y, Workspace& ws) const {
  Backend<T>& be = *backend_;
  const int64_t B = x.dim(0);
  const int64_t H = config_.num_heads, dh = config_.d_head, P = H * dh, S = B * H;
  state.reserve(state.length() + 1);
  const int64_t cap = state.capacity(), pos = state.length();

  // With one token, [B, H * d_head] is already the [S, d_head] head layout.
  ws.qh.resize(backend_, B * P);
  ws.lin.resize(backend_, B * P);
  const TensorView<T> lin(ws.lin.data(), {B, P});
  q_->forward(params, x, TensorView<T>(ws.qh.data(), {B, P}));
  k_->forward(params, x, lin);
  for (int64_t s = 0; s < S; ++s) be.copy(state.k_cache() + (s * cap + pos) * dh, ws.lin.data() + s * dh, dh);
  v_->forward(params, x, lin);
  for (int64_t s = 0; s < S; ++s) be.copy(state.v_cache() + (s * cap + pos) * dh, ws.lin.data() + s * dh, dh);
  state.advance(1);

  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh)));
  ws.o.resize(backend_, B * P);
  be.softmax_attention_decode(S, state.length(), cap, dh, ws.qh.data(), state.k_cache(), state.v_cache(), scale,
                              ws.o.data());
  out_->forward(params, ConstView<T>(ws.o.data(), {B, P}), y);
}

template class FastWeightAttention<float>;
template class FastWeightAttention<double>;

}  // namespace fwp
