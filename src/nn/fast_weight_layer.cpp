#include "nn/fast_weight_layer.h"

#include <algorithm>
#include <string>
#include <type_traits>
#include <utility>

#include "core/context.h"
#include "core/error.h"
#include "core/limits.h"

namespace fwp {

namespace {
std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }
}  // namespace

// ---- config --------------------------------------------------------------------------

void FastWeightLayerConfig::validate(const std::string& prefix) const {
  validate_sizes(prefix);
  if (softmax) {
    require(!carry_state, FWP_ERR_INVALID_ARGUMENT,
            prefix + "carry_state must be 0 with softmax attention (it has no fast-weight state)");
  }
  validate_options(prefix);
}

// ---- construction --------------------------------------------------------------------------

template <typename T>
FastWeightLayer<T>::FastWeightLayer(const FastWeightLayerConfig& config, std::shared_ptr<Backend<T>> backend,
                                    Rng rng)
    : config_((config.validate(), config)),
      backend_(std::move(backend)),
      rng_(rng),
      attention_(params_, backend_, "", config_),
      state_(backend_, config_.state_spec()) {
  // The parameters were declared by the module; weights ~ N(0, init_std^2)
  // are drawn from the layer's generator in parameter order (biases stay 0),
  // then the fixed FAVOR+ projection. The module only declared them: the
  // layer owns the list, so it allocates the one block before the init.
  params_.allocate(backend_);
  attention_.init(params_, rng_);
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

template <typename T>
bool FastWeightLayer<T>::host_memory() const {
  return backend_->device() == Device::Cpu;
}

template <typename T>
ConstView<T> FastWeightLayer<T>::stage_input(const T* x, int64_t batch, int64_t seq_len) {
  const int64_t n = batch * seq_len * config_.d_model;
  x_.resize(backend_, n);
  x_.from_host(x, n);
  return ConstView<T>(x_.data(), {batch, seq_len, config_.d_model});
}

template <typename T>
TensorView<T> FastWeightLayer<T>::output_target(T* y, const Shape& shape) {
  if (host_memory()) return TensorView<T>(y, shape);
  y_.resize(backend_, shape.numel());
  return TensorView<T>(y_.data(), shape);
}

template <typename T>
void FastWeightLayer<T>::finish_output(T* y, const Shape& shape) {
  if (!host_memory()) backend_->download(y, y_.data(), shape.numel());
}

template <typename T>
void FastWeightLayer<T>::check_external_state(const AttentionState<T>& state) const {
  require(state.backend() == backend_, FWP_ERR_INVALID_ARGUMENT,
          "the state was made for a layer on another device or context");
  state.check_spec(config_.state_spec(), "the state");
}

// ---- forward ------------------------------------------------------------------------------------

template <typename T>
void FastWeightLayer<T>::forward(const T* x, int64_t batch, int64_t seq_len, T* y) {
  require(x != nullptr, FWP_ERR_NULL_POINTER, "x must not be NULL");
  require(y != nullptr, FWP_ERR_NULL_POINTER, "y must not be NULL");
  check_shape(batch, seq_len, "batch");
  if (!is_softmax() && !state_.empty()) {
    require(batch == state_.batch(), FWP_ERR_SHAPE_MISMATCH,
            "batch must equal the batch of the layer's state (" + std::to_string(state_.batch()) + ")" +
                got(batch) + "; call fwp_layer_reset_state() or fwp_layer_set_state() first");
  }
  // The softmax layer's forward neither reads nor fills its own cache.
  if (is_softmax())
    run_forward(nullptr, StateUpdate::Keep, x, batch, seq_len, y);
  else
    run_forward(&state_, config_.carry_state ? StateUpdate::Write : StateUpdate::Keep, x, batch, seq_len, y);
}

template <typename T>
void FastWeightLayer<T>::forward_with_state(AttentionState<T>& state, const T* x, int64_t batch, int64_t seq_len,
                                            T* y) {
  require(x != nullptr, FWP_ERR_NULL_POINTER, "x must not be NULL");
  require(y != nullptr, FWP_ERR_NULL_POINTER, "y must not be NULL");
  check_shape(batch, seq_len, "batch");
  check_external_state(state);
  if (!state.empty()) {
    require(batch == state.batch(), FWP_ERR_SHAPE_MISMATCH,
            "batch must equal the batch of the state (" + std::to_string(state.batch()) + ")" + got(batch));
  }
  run_forward(&state, StateUpdate::Write, x, batch, seq_len, y);
}

template <typename T>
void FastWeightLayer<T>::run_forward(AttentionState<T>* state, StateUpdate update, const T* x, int64_t batch,
                                     int64_t seq_len, T* y) {
  // A forward that fails half-way must not leave a backward that uses a mix
  // of old and new activations.
  has_forward_ = false;
  const Shape shape{batch, seq_len, config_.d_model};
  const ConstView<T> xv = stage_input(x, batch, seq_len);
  const TensorView<T> yv = output_target(y, shape);
  const bool redraw = training_ && config_.favor_redraw;
  attention_.forward(params_, xv, state, update, yv, saved_, redraw ? &rng_ : nullptr);
  finish_output(y, shape);
  has_forward_ = true;
}

// ---- backward ------------------------------------------------------------------------------------

template <typename T>
void FastWeightLayer<T>::backward(const T* dy, int64_t batch, int64_t seq_len, T* dx) {
  require(dy != nullptr, FWP_ERR_NULL_POINTER, "dy must not be NULL");
  require(has_forward_, FWP_ERR_BAD_STATE, "backward needs a forward first");
  require(batch == saved_.batch, FWP_ERR_SHAPE_MISMATCH,
          "batch must equal the batch of the last forward (" + std::to_string(saved_.batch) + ")" + got(batch));
  require(seq_len == saved_.steps, FWP_ERR_SHAPE_MISMATCH,
          "seq_len must equal the seq_len of the last forward (" + std::to_string(saved_.steps) + ")" +
              got(seq_len));
  const Shape shape{batch, seq_len, config_.d_model};
  const int64_t n = shape.numel();
  // With host memory the caller's arrays are used in place (the module reads
  // dy completely before it first writes dx, so the two may be the same array).
  const bool host = host_memory();
  ConstView<T> dyv(dy, shape);
  if (!host) {
    dy_.resize(backend_, n);
    dy_.from_host(dy, n);
    dyv = ConstView<T>(dy_.data(), shape);
  }
  TensorView<T> dxv;
  if (dx) {
    if (!host) dx_.resize(backend_, n);
    dxv = TensorView<T>(host ? dx : dx_.data(), shape);
  }
  attention_.backward(params_, ConstView<T>(x_.data(), shape), dyv, dxv, InputGrad::Overwrite, saved_);
  if (dx && !host) backend_->download(dx, dx_.data(), n);
}

// ---- state ------------------------------------------------------------------------------------------

template <typename T>
int64_t FastWeightLayer<T>::state_w_count(int64_t batch) const {
  require(!is_softmax(), FWP_ERR_UNSUPPORTED, "softmax attention has no fast-weight state");
  return state_.w_count(batch);
}

template <typename T>
int64_t FastWeightLayer<T>::state_z_count(int64_t batch) const {
  require(!is_softmax(), FWP_ERR_UNSUPPORTED, "softmax attention has no fast-weight state");
  return state_.z_count(batch);
}

template <typename T>
void FastWeightLayer<T>::set_state(int64_t batch, const T* w, const T* z) {
  require(!is_softmax(), FWP_ERR_UNSUPPORTED, "softmax attention has no fast-weight state");
  state_.set_host(batch, w, z);
}

template <typename T>
void FastWeightLayer<T>::get_state(T* w, T* z) const {
  require(!is_softmax(), FWP_ERR_UNSUPPORTED, "softmax attention has no fast-weight state");
  state_.get_host(w, z);
}

template <typename T>
void FastWeightLayer<T>::get_state_grad(T* dw, T* dz) const {
  require(!is_softmax(), FWP_ERR_UNSUPPORTED, "softmax attention has no fast-weight state");
  require(saved_.grad_batch != 0, FWP_ERR_BAD_STATE, "the state gradient needs a backward first");
  if (dw) backend_->download(dw, saved_.grad_w.data(), saved_.grad_w.size());
  if (dz) backend_->download(dz, saved_.grad_z.data(), saved_.grad_z.size());
}

template <typename T>
void FastWeightLayer<T>::reset_state() {
  state_.clear();
}

// ---- recurrent inference ----------------------------------------------------------------------------

template <typename T>
void FastWeightLayer<T>::step(const T* x, int64_t batch, T* y) {
  require(x != nullptr, FWP_ERR_NULL_POINTER, "x must not be NULL");
  require(y != nullptr, FWP_ERR_NULL_POINTER, "y must not be NULL");
  check_shape(batch, 1, "batch");
  if (!state_.empty()) {
    const char* what = is_softmax() ? "the key/value cache" : "the layer's state";
    require(batch == state_.batch(), FWP_ERR_SHAPE_MISMATCH,
            std::string("batch must equal the batch of ") + what + " (" + std::to_string(state_.batch()) + ")" +
                got(batch) + "; call fwp_layer_reset_state() first to start new sequences");
  }
  run_step(state_, x, batch, y);
}

template <typename T>
void FastWeightLayer<T>::step_with_state(AttentionState<T>& state, const T* x, int64_t batch, T* y) {
  require(x != nullptr, FWP_ERR_NULL_POINTER, "x must not be NULL");
  require(y != nullptr, FWP_ERR_NULL_POINTER, "y must not be NULL");
  check_shape(batch, 1, "batch");
  check_external_state(state);
  if (!state.empty()) {
    require(batch == state.batch(), FWP_ERR_SHAPE_MISMATCH,
            "batch must equal the batch of the state (" + std::to_string(state.batch()) + ")" + got(batch));
  }
  run_step(state, x, batch, y);
}

template <typename T>
void FastWeightLayer<T>::run_step(AttentionState<T>& state, const T* x, int64_t batch, T* y) {
  const Shape shape{batch, config_.d_model};
  // Staged on every device, so that y may be the same array as x.
  step_x_.resize(backend_, shape.numel());
  step_x_.from_host(x, shape.numel());
  attention_.step(params_, ConstView<T>(step_x_.data(), shape), state, output_target(y, shape), step_ws_);
  finish_output(y, shape);
}

template class FastWeightLayer<float>;
template class FastWeightLayer<double>;

}  // namespace fwp
