#include "nn/fast_weight_layer.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "core/limits.h"
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

FeatureMapSpec FastWeightLayerConfig::feature_spec() const {
  FeatureMapSpec spec;
  spec.kind = feature_map;
  spec.d_in = d_head;
  spec.nu = dpfp_nu;
  spec.m = feature_map == FeatureMap::Favor ? favor_features : 0;
  return spec;
}

int64_t FastWeightLayerConfig::d_dot() const { return softmax ? 0 : feature_spec().d_out(); }

void FastWeightLayerConfig::validate(const std::string& prefix) const {
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

  if (softmax) {
    require(!carry_state, FWP_ERR_INVALID_ARGUMENT,
            prefix + "carry_state must be 0 with softmax attention (it has no fast-weight state)");
  }
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

// ---- workspaces ------------------------------------------------------------------------

// Activations of one forward. Names follow the data flow; [S, T, d] arrays hold
// stream s = b * H + h at step t.
template <typename T>
struct FastWeightLayer<T>::Workspace {
  int64_t batch = 0;
  int64_t steps = 0;
  Buffer<T> x;          // [N, d_model], N = B * T: the input (weight gradients need it)
  Buffer<T> scratch;    // [N, H * d_head]: projections before the head split
  Buffer<T> qh, kh, vh; // [S, T, d_head]: q, k, v per head (pre-feature-map)
  Buffer<T> beta_logit; // [S, T] (delta rule)
  Buffer<T> beta;       // [S, T] sigmoid(beta_logit)
  Buffer<T> favor;      // [m, d_head]: the redrawn FAVOR+ projection of this forward
  const T* favor_used = nullptr;  // the projection used (favor or the fixed parameter)
  Buffer<T> phi_q_raw, phi_k_raw;  // [S, T, d_dot] phi before sum normalisation
  Buffer<T> phi_q_norm, phi_k_norm;  // [S, T, d_dot] after it (sum_normalize only)
  Buffer<T> o;          // [S, T, d_head] fast-weight (or softmax) output
  Buffer<T> u;          // [S, T, d_head] the written values (fast_weight_forward)
  Buffer<T> state_out;  // [S, d_head, d_dot] final W
  Buffer<T> saved;      // [S, ceil(T / L), d_head, d_dot] states saved for the backward (fast_weight_forward)
  Buffer<T> z_in;       // [S, d_dot] initial z (attention normalisation)
  Buffer<T> z_out;      // [S, d_dot] final z
  Buffer<T> o_norm;     // [S, T, d_head] o after attention normalisation
  Buffer<T> denom;      // [S, T]
  Buffer<T> lse;        // [S, T] softmax log-sum-exp
  Buffer<T> merged;     // [N, H * d_head] heads merged (unscaled): the input of out_proj
  Buffer<T> y;          // [N, d_model]: the output staged in device memory (not used on the CPU)

  const T* phi_q(bool normalized) const { return normalized ? phi_q_norm.data() : phi_q_raw.data(); }
  const T* phi_k(bool normalized) const { return normalized ? phi_k_norm.data() : phi_k_raw.data(); }
};

template <typename T>
struct FastWeightLayer<T>::BackwardWorkspace {
  Buffer<T> dy;                   // [N, d_model] staged in device memory (not used on the CPU)
  Buffer<T> d_lin;                // [N, H * d_head] gradient of a projection's output
  Buffer<T> d_heads;              // [S, T, d_head] gradient of the (normalised) head outputs
  Buffer<T> d_o;                  // [S, T, d_head] gradient of the raw fast-weight output
  Buffer<T> dq_norm, dk_norm;     // [S, T, d_dot] attention-normalisation parts of dphi
  Buffer<T> dphi_q, dphi_k;       // [S, T, d_dot]
  Buffer<T> dqh, dkh, dvh;        // [S, T, d_head]
  Buffer<T> dbeta, dbeta_logit;   // [S, T]
  Buffer<T> dx;                   // [N, d_model] staged in device memory (not used on the CPU)
};

// ---- construction --------------------------------------------------------------------------

template <typename T>
FastWeightLayer<T>::FastWeightLayer(const FastWeightLayerConfig& config, std::shared_ptr<Backend<T>> backend,
                                    Rng rng)
    : config_(config), backend_(std::move(backend)), rng_(rng) {
  config_.validate();
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "FastWeightLayer needs a backend");
  const int64_t D = config_.d_model, P = config_.num_heads * config_.d_head, H = config_.num_heads;
  const bool delta = !is_softmax() && config_.update_rule == UpdateRule::Delta;

  // Declare every parameter, allocate the one block, then draw the weights
  // ~ N(0, init_std^2) on the host in parameter order (biases stay 0).
  auto add_linear = [&](const std::string& name, int64_t out, int64_t in, int64_t& w_index, int64_t& b_index) {
    params_.declare(name + ".weight", {out, in});
    w_index = params_.size() - 1;
    if (config_.use_bias) {
      params_.declare(name + ".bias", {out});
      b_index = params_.size() - 1;
    }
  };
  add_linear("q_proj", P, D, q_w_, q_b_);
  add_linear("k_proj", P, D, k_w_, k_b_);
  add_linear("v_proj", P, D, v_w_, v_b_);
  if (delta) add_linear("beta_proj", H, D, beta_w_, beta_b_);
  add_linear("out_proj", D, P, out_w_, out_b_);
  const int64_t m = config_.favor_features, dh = config_.d_head;
  if (!is_softmax() && config_.feature_map == FeatureMap::Favor) {
    params_.declare("favor.projection", {m, dh}, /*trainable=*/false);
    favor_ = params_.size() - 1;
  }
  params_.allocate(backend_);
  for (const int64_t w_index : {q_w_, k_w_, v_w_, beta_w_, out_w_}) {
    if (w_index < 0) continue;  // no beta_proj
    Parameter<T>& w = params_[w_index];
    std::vector<T> host(static_cast<size_t>(w.numel()));
    for (T& value : host) value = static_cast<T>(config_.init_std * rng_.normal());
    w.value.from_host(host.data(), w.numel());
  }
  if (favor_ >= 0) {
    std::vector<T> host(static_cast<size_t>(m * dh));
    draw_favor_projection<T>(rng_, m, dh, host.data());
    params_[favor_].value.from_host(host.data(), m * dh);
  }
  saved_ = std::make_unique<Workspace>();
  step_ws_ = std::make_unique<Workspace>();
  bwd_ = std::make_unique<BackwardWorkspace>();
}

template <typename T>
FastWeightLayer<T>::~FastWeightLayer() = default;

template <typename T>
std::unique_ptr<FastWeightLayer<T>> FastWeightLayer<T>::create(const std::shared_ptr<Context>& context,
                                                              const FastWeightLayerConfig& config) {
  require(context != nullptr, FWP_ERR_NULL_POINTER, "context must not be NULL");
  config.validate();
  std::shared_ptr<Backend<T>> backend;
  if constexpr (std::is_same_v<T, float>) {
    backend = context->backend();
  } else {
    require(context->device() == Device::Cpu, FWP_ERR_UNSUPPORTED,
            "double-precision layers run on the CPU backend only");
    backend = make_cpu_backend<T>(context->num_threads());
  }
  return std::make_unique<FastWeightLayer<T>>(config, std::move(backend), context->make_rng());
}

// ---- helpers ---------------------------------------------------------------------------------

template <typename T>
void FastWeightLayer<T>::check_shape(int64_t batch, int64_t seq_len, const char* batch_name) const {
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, std::string(batch_name) + " must be >= 1" + got(batch));
  require(seq_len >= 1, FWP_ERR_INVALID_ARGUMENT, "seq_len must be >= 1" + got(seq_len));
  const int64_t rows = checked_mul(batch, seq_len, "batch * seq_len");
  checked_mul(rows, config_.d_model, "batch * seq_len * d_model");
  const int64_t width = std::max(config_.num_heads * config_.d_head, config_.d_model);
  const int64_t feat = std::max(config_.d_dot(), width);
  checked_mul(rows, feat, "batch * seq_len * (the widest activation)");
  if (!is_softmax()) checked_mul(batch, state_w_count(1), "batch * the state size of one batch row");
}

// y[rows, out] = alpha * x[rows, in] W^T (+ b), W: [out, in].
template <typename T>
void FastWeightLayer<T>::linear_forward(const T* x, int64_t rows, const Parameter<T>& w, const Parameter<T>* b,
                                        T* y, T alpha) {
  const int64_t out = w.shape[0], in = w.shape[1];
  backend_->gemm(false, true, rows, out, in, alpha, x, in, w.value.data(), in, T(0), y, out);
  if (b) backend_->add_bias(y, b->value.data(), rows, out);
}

// Backward of linear_forward with the same alpha: dW += alpha * dy^T x,
// db += colsum(dy), dx = dx_alpha * dy W + dx_beta * dx (when dx is not null).
template <typename T>
void FastWeightLayer<T>::linear_backward(const T* x, const T* dy, int64_t rows, Parameter<T>& w,
                                         Parameter<T>* b, T dx_alpha, T dx_beta, T* dx, T alpha) {
  const int64_t out = w.shape[0], in = w.shape[1];
  backend_->gemm(true, false, out, in, rows, alpha, dy, out, x, in, T(1), w.grad.data(), in);
  if (b) backend_->bias_grad_accumulate(b->grad.data(), dy, rows, out);
  if (dx) backend_->gemm(false, false, rows, in, out, dx_alpha, dy, out, w.value.data(), in, dx_beta, dx, in);
}

// The CPU backend's memory is the caller's: results can be written straight
// to the caller's arrays instead of through a staging buffer and a copy.
template <typename T>
bool FastWeightLayer<T>::host_memory() const {
  return backend_->device() == Device::Cpu;
}

// Where the layer's output of `n` values goes: the caller's y, or ws.y to be
// downloaded from device memory.
template <typename T>
T* FastWeightLayer<T>::output_target(Workspace& ws, T* y, int64_t n) {
  if (host_memory()) return y;
  ws.y.resize(backend_, n);
  return ws.y.data();
}

template <typename T>
T FastWeightLayer<T>::output_scale() const {
  return config_.scale_output ? static_cast<T>(1.0 / std::sqrt(static_cast<double>(config_.d_head))) : T(1);
}

// ---- forward ------------------------------------------------------------------------------------

template <typename T>
void FastWeightLayer<T>::forward(const T* x, int64_t batch, int64_t seq_len, T* y) {
  require(x != nullptr, FWP_ERR_NULL_POINTER, "x must not be NULL");
  require(y != nullptr, FWP_ERR_NULL_POINTER, "y must not be NULL");
  check_shape(batch, seq_len, "batch");
  if (!is_softmax() && state_batch_ != 0) {
    require(batch == state_batch_, FWP_ERR_SHAPE_MISMATCH,
            "batch must equal the batch of the layer's state (" + std::to_string(state_batch_) + ")" +
                got(batch) + "; call fwp_layer_reset_state() or fwp_layer_set_state() first");
  }
  // A forward that fails half-way must not leave a backward that uses a mix
  // of old and new activations.
  has_forward_ = false;
  if (is_softmax()) {
    run_softmax_forward(*saved_, x, batch, seq_len, y);
  } else {
    const bool fixed = !training_ || !config_.favor_redraw;
    run_fast_weight_forward(*saved_, x, batch, seq_len, y, fixed);
    if (config_.carry_state) commit_state(*saved_);
  }
  has_forward_ = true;
}

template <typename T>
void FastWeightLayer<T>::run_fast_weight_forward(Workspace& ws, const T* x, int64_t B, int64_t Tn, T* y,
                                                 bool fixed_features) {
  Backend<T>& be = *backend_;
  const auto& be_ptr = backend_;
  const int64_t D = config_.d_model, H = config_.num_heads, dh = config_.d_head, P = H * dh;
  const int64_t dd = config_.d_dot(), N = B * Tn, S = B * H;
  const bool delta = config_.update_rule == UpdateRule::Delta;
  const bool sum_norm = config_.sum_normalize, attn_norm = config_.attn_normalize;
  const T eps = static_cast<T>(config_.norm_eps);
  const FeatureMapSpec spec = config_.feature_spec();

  ws.batch = B;
  ws.steps = Tn;
  ws.x.resize(be_ptr, N * D);
  ws.x.from_host(x, N * D);

  // Projections, then heads to [S, T, d_head].
  ws.scratch.resize(be_ptr, N * P);
  ws.qh.resize(be_ptr, N * P);
  ws.kh.resize(be_ptr, N * P);
  ws.vh.resize(be_ptr, N * P);
  const Parameter<T>* no_bias = nullptr;
  auto bias = [&](int64_t index) { return index >= 0 ? &params_[index] : no_bias; };
  linear_forward(ws.x.data(), N, params_[q_w_], bias(q_b_), ws.scratch.data());
  be.split_heads(ws.scratch.data(), ws.qh.data(), B, Tn, H, dh);
  linear_forward(ws.x.data(), N, params_[k_w_], bias(k_b_), ws.scratch.data());
  be.split_heads(ws.scratch.data(), ws.kh.data(), B, Tn, H, dh);
  linear_forward(ws.x.data(), N, params_[v_w_], bias(v_b_), ws.scratch.data());
  be.split_heads(ws.scratch.data(), ws.vh.data(), B, Tn, H, dh);
  if (delta) {
    // [N, H] logits are [B, T, H, 1]; splitting heads with D = 1 gives [S, T].
    ws.beta_logit.resize(be_ptr, N * H);
    ws.beta.resize(be_ptr, N * H);
    linear_forward(ws.x.data(), N, params_[beta_w_], bias(beta_b_), ws.scratch.data());
    be.split_heads(ws.scratch.data(), ws.beta_logit.data(), B, Tn, H, 1);
    be.sigmoid_forward(ws.beta_logit.data(), ws.beta.data(), N * H);
  }

  // Feature maps.
  ws.favor_used = nullptr;
  if (config_.feature_map == FeatureMap::Favor) {
    if (fixed_features) {
      ws.favor_used = params_[favor_].value.data();
    } else {
      const int64_t m = config_.favor_features;
      std::vector<T> host(static_cast<size_t>(m * dh));
      draw_favor_projection<T>(rng_, m, dh, host.data());
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

  // The recurrence, from the held state (or zeros).
  const FastWeightShape shape{S, Tn, dd, dh};
  const bool have_state = state_batch_ != 0;
  ws.o.resize(be_ptr, N * P);
  ws.u.resize(be_ptr, N * P);
  ws.state_out.resize(be_ptr, S * dh * dd);
  const int64_t interval = be.fast_weight_state_interval(shape, config_.chunk_size);
  ws.saved.resize(be_ptr, S * ((Tn + interval - 1) / interval) * dh * dd);
  be.fast_weight_forward(config_.update_rule, config_.algorithm, config_.chunk_size, shape, phi_q, phi_k,
                         ws.vh.data(), delta ? ws.beta.data() : nullptr, have_state ? state_w_.data() : nullptr,
                         ws.o.data(), ws.u.data(), ws.state_out.data(), ws.saved.data());
  const T* heads_out = ws.o.data();
  if (attn_norm) {
    ws.z_in.resize(be_ptr, S * dd);
    if (have_state)
      be.copy(ws.z_in.data(), state_z_.data(), S * dd);
    else
      ws.z_in.zero();
    ws.z_out.resize(be_ptr, S * dd);
    ws.o_norm.resize(be_ptr, N * P);
    ws.denom.resize(be_ptr, N * H);
    be.attn_norm_forward(shape, phi_q, phi_k, ws.z_in.data(), ws.o.data(), eps, ws.o_norm.data(),
                         ws.denom.data(), ws.z_out.data());
    heads_out = ws.o_norm.data();
  }

  // Merge heads and project; the output scale is folded into the product.
  ws.merged.resize(be_ptr, N * P);
  be.merge_heads(heads_out, ws.merged.data(), B, Tn, H, dh);
  linear_forward(ws.merged.data(), N, params_[out_w_], bias(out_b_), output_target(ws, y, N * D), output_scale());
  if (!host_memory()) be.download(y, ws.y.data(), N * D);
}

template <typename T>
void FastWeightLayer<T>::run_softmax_forward(Workspace& ws, const T* x, int64_t B, int64_t Tn, T* y) {
  Backend<T>& be = *backend_;
  const auto& be_ptr = backend_;
  const int64_t D = config_.d_model, H = config_.num_heads, dh = config_.d_head, P = H * dh;
  const int64_t N = B * Tn, S = B * H;
  const Parameter<T>* no_bias = nullptr;
  auto bias = [&](int64_t index) { return index >= 0 ? &params_[index] : no_bias; };

  ws.batch = B;
  ws.steps = Tn;
  ws.x.resize(be_ptr, N * D);
  ws.x.from_host(x, N * D);
  ws.scratch.resize(be_ptr, N * P);
  ws.qh.resize(be_ptr, N * P);
  ws.kh.resize(be_ptr, N * P);
  ws.vh.resize(be_ptr, N * P);
  linear_forward(ws.x.data(), N, params_[q_w_], bias(q_b_), ws.scratch.data());
  be.split_heads(ws.scratch.data(), ws.qh.data(), B, Tn, H, dh);
  linear_forward(ws.x.data(), N, params_[k_w_], bias(k_b_), ws.scratch.data());
  be.split_heads(ws.scratch.data(), ws.kh.data(), B, Tn, H, dh);
  linear_forward(ws.x.data(), N, params_[v_w_], bias(v_b_), ws.scratch.data());
  be.split_heads(ws.scratch.data(), ws.vh.data(), B, Tn, H, dh);

  ws.o.resize(be_ptr, N * P);
  ws.lse.resize(be_ptr, N * H);
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh)));
  be.softmax_attention_forward(S, Tn, dh, ws.qh.data(), ws.kh.data(), ws.vh.data(), scale, ws.o.data(),
                               ws.lse.data());
  ws.merged.resize(be_ptr, N * P);
  be.merge_heads(ws.o.data(), ws.merged.data(), B, Tn, H, dh);
  linear_forward(ws.merged.data(), N, params_[out_w_], bias(out_b_), output_target(ws, y, N * D));
  if (!host_memory()) be.download(y, ws.y.data(), N * D);
}

template <typename T>
void FastWeightLayer<T>::commit_state(const Workspace& ws) {
  const int64_t S = ws.batch * config_.num_heads, dd = config_.d_dot(), dh = config_.d_head;
  if (state_batch_ != ws.batch) {
    // No state was held (a held state always has the forward's batch): z starts at zero.
    state_w_.resize(backend_, S * dh * dd);
    state_z_.resize(backend_, S * dd);
    state_z_.zero();
  }
  backend_->copy(state_w_.data(), ws.state_out.data(), S * dh * dd);
  // z only moves with attention normalisation; otherwise it is carried unchanged.
  if (config_.attn_normalize) backend_->copy(state_z_.data(), ws.z_out.data(), S * dd);
  state_batch_ = ws.batch;
}

// ---- backward ------------------------------------------------------------------------------------

template <typename T>
void FastWeightLayer<T>::backward(const T* dy, int64_t batch, int64_t seq_len, T* dx) {
  require(dy != nullptr, FWP_ERR_NULL_POINTER, "dy must not be NULL");
  require(has_forward_, FWP_ERR_BAD_STATE, "backward needs a forward first");
  require(batch == saved_->batch, FWP_ERR_SHAPE_MISMATCH,
          "batch must equal the batch of the last forward (" + std::to_string(saved_->batch) + ")" + got(batch));
  require(seq_len == saved_->steps, FWP_ERR_SHAPE_MISMATCH,
          "seq_len must equal the seq_len of the last forward (" + std::to_string(saved_->steps) + ")" +
              got(seq_len));
  const int64_t N = batch * seq_len, D = config_.d_model;
  BackwardWorkspace& g = *bwd_;
  // With host memory the caller's arrays are used in place (dy is read only
  // by the output projection's backward, before dx is first written, so the
  // two may even be the same array).
  const bool host = host_memory();
  const T* dy_dev = dy;
  if (!host) {
    g.dy.resize(backend_, N * D);
    g.dy.from_host(dy, N * D);
    dy_dev = g.dy.data();
  }
  T* dx_dev = nullptr;
  if (dx) {
    if (!host) g.dx.resize(backend_, N * D);
    dx_dev = host ? dx : g.dx.data();
  }
  if (is_softmax())
    softmax_backward(dy_dev, dx_dev);
  else
    fast_weight_backward(dy_dev, dx_dev);
  if (dx && !host) backend_->download(dx, g.dx.data(), N * D);
}

template <typename T>
void FastWeightLayer<T>::fast_weight_backward(const T* dy, T* dx) {
  Backend<T>& be = *backend_;
  const auto& be_ptr = backend_;
  Workspace& ws = *saved_;
  BackwardWorkspace& g = *bwd_;
  const int64_t B = ws.batch, Tn = ws.steps;
  const int64_t H = config_.num_heads, dh = config_.d_head, P = H * dh;
  const int64_t dd = config_.d_dot(), N = B * Tn, S = B * H;
  const bool delta = config_.update_rule == UpdateRule::Delta;
  const bool sum_norm = config_.sum_normalize, attn_norm = config_.attn_normalize;
  const T eps = static_cast<T>(config_.norm_eps);
  const FeatureMapSpec spec = config_.feature_spec();
  const FastWeightShape shape{S, Tn, dd, dh};
  Parameter<T>* no_bias = nullptr;
  auto bias = [&](int64_t index) { return index >= 0 ? &params_[index] : no_bias; };
  const T* phi_q = ws.phi_q(sum_norm);
  const T* phi_k = ws.phi_k(sum_norm);

  // Output projection (with the forward's output scale).
  const T s = output_scale();
  g.d_lin.resize(be_ptr, N * P);
  linear_backward(ws.merged.data(), dy, N, params_[out_w_], bias(out_b_), s, T(0), g.d_lin.data(), s);
  g.d_heads.resize(be_ptr, N * P);
  be.split_heads(g.d_lin.data(), g.d_heads.data(), B, Tn, H, dh);

  // Attention normalisation.
  const T* d_o = g.d_heads.data();
  grad_z_.resize(be_ptr, S * dd);
  if (attn_norm) {
    g.d_o.resize(be_ptr, N * P);
    g.dq_norm.resize(be_ptr, N * H * dd);
    g.dk_norm.resize(be_ptr, N * H * dd);
    be.attn_norm_backward(shape, phi_q, phi_k, ws.z_in.data(), ws.o_norm.data(), ws.denom.data(),
                          g.d_heads.data(), g.d_o.data(), g.dq_norm.data(), g.dk_norm.data(), grad_z_.data());
    d_o = g.d_o.data();
  } else {
    grad_z_.zero();  // z does not influence the output
  }

  // The recurrence.
  g.dphi_q.resize(be_ptr, N * H * dd);
  g.dphi_k.resize(be_ptr, N * H * dd);
  g.dvh.resize(be_ptr, N * P);
  if (delta) g.dbeta.resize(be_ptr, N * H);
  grad_w_.resize(be_ptr, S * dh * dd);
  be.fast_weight_backward(config_.update_rule, config_.algorithm, config_.chunk_size, shape, phi_q, phi_k,
                          ws.vh.data(), delta ? ws.beta.data() : nullptr, ws.u.data(), ws.state_out.data(), d_o,
                          nullptr, g.dphi_q.data(), g.dphi_k.data(), g.dvh.data(),
                          delta ? g.dbeta.data() : nullptr, grad_w_.data(), ws.saved.data());
  grad_state_batch_ = B;
  if (attn_norm) {
    be.axpy(N * H * dd, T(1), g.dq_norm.data(), g.dphi_q.data());
    be.axpy(N * H * dd, T(1), g.dk_norm.data(), g.dphi_k.data());
  }

  // Feature maps (sum normalisation in place: dphi may alias dout).
  if (sum_norm) {
    be.sum_normalize_backward(ws.phi_q_raw.data(), g.dphi_q.data(), g.dphi_q.data(), S * Tn, dd, eps);
    be.sum_normalize_backward(ws.phi_k_raw.data(), g.dphi_k.data(), g.dphi_k.data(), S * Tn, dd, eps);
  }
  g.dqh.resize(be_ptr, N * P);
  g.dkh.resize(be_ptr, N * P);
  be.feature_map_backward(spec, ws.favor_used, ws.qh.data(), ws.phi_q_raw.data(), g.dphi_q.data(), g.dqh.data(),
                          S * Tn);
  be.feature_map_backward(spec, ws.favor_used, ws.kh.data(), ws.phi_k_raw.data(), g.dphi_k.data(), g.dkh.data(),
                          S * Tn);

  // Input projections; dx is written by the first and accumulated by the rest.
  be.merge_heads(g.dqh.data(), g.d_lin.data(), B, Tn, H, dh);
  linear_backward(ws.x.data(), g.d_lin.data(), N, params_[q_w_], bias(q_b_), T(1), T(0), dx);
  be.merge_heads(g.dkh.data(), g.d_lin.data(), B, Tn, H, dh);
  linear_backward(ws.x.data(), g.d_lin.data(), N, params_[k_w_], bias(k_b_), T(1), T(1), dx);
  be.merge_heads(g.dvh.data(), g.d_lin.data(), B, Tn, H, dh);
  linear_backward(ws.x.data(), g.d_lin.data(), N, params_[v_w_], bias(v_b_), T(1), T(1), dx);
  if (delta) {
    g.dbeta_logit.resize(be_ptr, N * H);
    be.sigmoid_backward(ws.beta.data(), g.dbeta.data(), g.dbeta_logit.data(), N * H);
    // [S, T] back to [N, H]: merging heads with D = 1.
    be.merge_heads(g.dbeta_logit.data(), g.d_lin.data(), B, Tn, H, 1);
    linear_backward(ws.x.data(), g.d_lin.data(), N, params_[beta_w_], bias(beta_b_), T(1), T(1), dx);
  }
}

template <typename T>
void FastWeightLayer<T>::softmax_backward(const T* dy, T* dx) {
  Backend<T>& be = *backend_;
  const auto& be_ptr = backend_;
  Workspace& ws = *saved_;
  BackwardWorkspace& g = *bwd_;
  const int64_t B = ws.batch, Tn = ws.steps;
  const int64_t H = config_.num_heads, dh = config_.d_head, P = H * dh, N = B * Tn, S = B * H;
  Parameter<T>* no_bias = nullptr;
  auto bias = [&](int64_t index) { return index >= 0 ? &params_[index] : no_bias; };

  g.d_lin.resize(be_ptr, N * P);
  linear_backward(ws.merged.data(), dy, N, params_[out_w_], bias(out_b_), T(1), T(0), g.d_lin.data());
  g.d_heads.resize(be_ptr, N * P);
  be.split_heads(g.d_lin.data(), g.d_heads.data(), B, Tn, H, dh);
  g.dqh.resize(be_ptr, N * P);
  g.dkh.resize(be_ptr, N * P);
  g.dvh.resize(be_ptr, N * P);
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh)));
  be.softmax_attention_backward(S, Tn, dh, ws.qh.data(), ws.kh.data(), ws.vh.data(), ws.o.data(), ws.lse.data(),
                                g.d_heads.data(), scale, g.dqh.data(), g.dkh.data(), g.dvh.data());
  be.merge_heads(g.dqh.data(), g.d_lin.data(), B, Tn, H, dh);
  linear_backward(ws.x.data(), g.d_lin.data(), N, params_[q_w_], bias(q_b_), T(1), T(0), dx);
  be.merge_heads(g.dkh.data(), g.d_lin.data(), B, Tn, H, dh);
  linear_backward(ws.x.data(), g.d_lin.data(), N, params_[k_w_], bias(k_b_), T(1), T(1), dx);
  be.merge_heads(g.dvh.data(), g.d_lin.data(), B, Tn, H, dh);
  linear_backward(ws.x.data(), g.d_lin.data(), N, params_[v_w_], bias(v_b_), T(1), T(1), dx);
}

// ---- state ------------------------------------------------------------------------------------------

template <typename T>
int64_t FastWeightLayer<T>::state_w_count(int64_t batch) const {
  require(!is_softmax(), FWP_ERR_UNSUPPORTED, "softmax attention has no fast-weight state");
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(batch));
  return checked_mul(checked_mul(batch, config_.num_heads * config_.d_head, "the state size"), config_.d_dot(), "the state size");
}

template <typename T>
int64_t FastWeightLayer<T>::state_z_count(int64_t batch) const {
  require(!is_softmax(), FWP_ERR_UNSUPPORTED, "softmax attention has no fast-weight state");
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(batch));
  return checked_mul(batch, config_.num_heads * config_.d_dot(), "the state size");
}

template <typename T>
void FastWeightLayer<T>::set_state(int64_t batch, const T* w, const T* z) {
  const int64_t nw = state_w_count(batch), nz = state_z_count(batch);
  // Build the new state aside so that a failure leaves the old one in place.
  Buffer<T> new_w(backend_, nw), new_z(backend_, nz);
  if (w)
    new_w.from_host(w, nw);
  else
    new_w.zero();
  if (z)
    new_z.from_host(z, nz);
  else
    new_z.zero();
  state_w_ = std::move(new_w);
  state_z_ = std::move(new_z);
  state_batch_ = batch;
}

template <typename T>
void FastWeightLayer<T>::get_state(T* w, T* z) const {
  require(!is_softmax(), FWP_ERR_UNSUPPORTED, "softmax attention has no fast-weight state");
  if (state_batch_ == 0) return;
  if (w) backend_->download(w, state_w_.data(), state_w_.size());
  if (z) backend_->download(z, state_z_.data(), state_z_.size());
}

template <typename T>
void FastWeightLayer<T>::get_state_grad(T* dw, T* dz) const {
  require(!is_softmax(), FWP_ERR_UNSUPPORTED, "softmax attention has no fast-weight state");
  require(grad_state_batch_ != 0, FWP_ERR_BAD_STATE, "the state gradient needs a backward first");
  if (dw) backend_->download(dw, grad_w_.data(), grad_w_.size());
  if (dz) backend_->download(dz, grad_z_.data(), grad_z_.size());
}

template <typename T>
void FastWeightLayer<T>::reset_state() {
  state_batch_ = 0;
  state_w_ = Buffer<T>();
  state_z_ = Buffer<T>();
  cache_batch_ = cache_length_ = cache_capacity_ = 0;
  k_cache_ = Buffer<T>();
  v_cache_ = Buffer<T>();
}

// ---- recurrent inference ----------------------------------------------------------------------------

template <typename T>
void FastWeightLayer<T>::step(const T* x, int64_t batch, T* y) {
  require(x != nullptr, FWP_ERR_NULL_POINTER, "x must not be NULL");
  require(y != nullptr, FWP_ERR_NULL_POINTER, "y must not be NULL");
  check_shape(batch, 1, "batch");
  if (is_softmax()) {
    softmax_step(x, batch, y);
    return;
  }
  if (state_batch_ != 0) {
    require(batch == state_batch_, FWP_ERR_SHAPE_MISMATCH,
            "batch must equal the batch of the layer's state (" + std::to_string(state_batch_) + ")" +
                got(batch) + "; call fwp_layer_reset_state() first to start new sequences");
  }
  run_fast_weight_forward(*step_ws_, x, batch, 1, y, /*fixed_features=*/true);
  commit_state(*step_ws_);
}

template <typename T>
void FastWeightLayer<T>::softmax_step(const T* x, int64_t B, T* y) {
  Backend<T>& be = *backend_;
  const auto& be_ptr = backend_;
  const int64_t D = config_.d_model, H = config_.num_heads, dh = config_.d_head, P = H * dh, S = B * H;
  if (cache_batch_ != 0) {
    require(B == cache_batch_, FWP_ERR_SHAPE_MISMATCH,
            "batch must equal the batch of the key/value cache (" + std::to_string(cache_batch_) + ")" + got(B) +
                "; call fwp_layer_reset_state() first to start new sequences");
  }
  const Parameter<T>* no_bias = nullptr;
  auto bias = [&](int64_t index) { return index >= 0 ? &params_[index] : no_bias; };
  Workspace& ws = *step_ws_;

  // Grow the cache by doubling (copy each stream's prefix into the new layout).
  if (cache_length_ + 1 > cache_capacity_) {
    const int64_t capacity = std::max<int64_t>(16, 2 * cache_capacity_);
    checked_mul(checked_mul(S, capacity, "the key/value cache"), dh, "the key/value cache");
    Buffer<T> k_new(be_ptr, S * capacity * dh), v_new(be_ptr, S * capacity * dh);
    for (int64_t s = 0; s < S && cache_length_ > 0; ++s) {
      be.copy(k_new.data() + s * capacity * dh, k_cache_.data() + s * cache_capacity_ * dh, cache_length_ * dh);
      be.copy(v_new.data() + s * capacity * dh, v_cache_.data() + s * cache_capacity_ * dh, cache_length_ * dh);
    }
    k_cache_ = std::move(k_new);
    v_cache_ = std::move(v_new);
    cache_capacity_ = capacity;
  }

  // With one token, [B, 1, H, d_head] is already the [S, d_head] head layout.
  ws.x.resize(be_ptr, B * D);
  ws.x.from_host(x, B * D);
  ws.qh.resize(be_ptr, B * P);
  ws.scratch.resize(be_ptr, B * P);
  linear_forward(ws.x.data(), B, params_[q_w_], bias(q_b_), ws.qh.data());
  linear_forward(ws.x.data(), B, params_[k_w_], bias(k_b_), ws.scratch.data());
  for (int64_t s = 0; s < S; ++s)
    be.copy(k_cache_.data() + (s * cache_capacity_ + cache_length_) * dh, ws.scratch.data() + s * dh, dh);
  linear_forward(ws.x.data(), B, params_[v_w_], bias(v_b_), ws.scratch.data());
  for (int64_t s = 0; s < S; ++s)
    be.copy(v_cache_.data() + (s * cache_capacity_ + cache_length_) * dh, ws.scratch.data() + s * dh, dh);
  cache_length_ += 1;
  cache_batch_ = B;

  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh)));
  ws.o.resize(be_ptr, B * P);
  be.softmax_attention_decode(S, cache_length_, cache_capacity_, dh, ws.qh.data(), k_cache_.data(),
                              v_cache_.data(), scale, ws.o.data());
  linear_forward(ws.o.data(), B, params_[out_w_], bias(out_b_), output_target(ws, y, B * D));
  if (!host_memory()) be.download(y, ws.y.data(), B * D);
}

template class FastWeightLayer<float>;
template class FastWeightLayer<double>;

}  // namespace fwp
