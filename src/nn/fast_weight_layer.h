// The multi-head fast-weight attention layer (and its softmax-attention
// baseline) behind fwp_layer: a thin wrapper that owns a ParameterList, a
// FastWeightAttention module (nn/fast_weight_attention.h), the workspaces of
// its last forward and step, and its own AttentionState (the fast-weight
// state carried between calls, or the softmax key/value cache).
//
// All array arguments of the public methods are host pointers; the layer
// moves data to and from the backend at this boundary only. The *_with_state
// methods run the layer against a state the caller owns instead of its own.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/rng.h"
#include "nn/attention_state.h"
#include "nn/fast_weight_attention.h"
#include "nn/parameter.h"

namespace fwp {

class Context;

// Settings of a layer (the C++ mirror of fwp_layer_config; see fwp.h for the
// meaning of each field): the attention's settings and what the layer does
// with its own state.
struct FastWeightLayerConfig : FastWeightAttentionConfig {
  bool carry_state = false;

  // Throws Error(FWP_ERR_INVALID_ARGUMENT) naming the first bad field, written
  // as prefix + field name (e.g. "config->d_model must be >= 1 (got 0)").
  void validate(const std::string& prefix = "") const;
};

template <typename T>
class FastWeightLayer {
 public:
  // Creates a layer on `backend` whose parameters are drawn from `rng` (the
  // layer keeps the generator for FAVOR+ redraws). Validates the config.
  FastWeightLayer(const FastWeightLayerConfig& config, std::shared_ptr<Backend<T>> backend, Rng rng);
  ~FastWeightLayer();
  FastWeightLayer(const FastWeightLayer&) = delete;
  FastWeightLayer& operator=(const FastWeightLayer&) = delete;

  // A layer on the context's device, seeded through context->make_rng(). For
  // T = double the context must be a CPU context (a double CPU backend with the
  // context's thread count is created); otherwise FWP_ERR_UNSUPPORTED.
  static std::unique_ptr<FastWeightLayer> create(const std::shared_ptr<Context>& context,
                                                 const FastWeightLayerConfig& config);

  const FastWeightLayerConfig& config() const { return config_; }
  const std::shared_ptr<Backend<T>>& backend() const { return backend_; }
  int64_t d_dot() const { return config_.d_dot(); }
  const FastWeightAttention<T>& attention() const { return attention_; }

  bool training() const { return training_; }
  void set_training(bool training) { training_ = training; }

  ParameterList<T>& params() { return params_; }
  const ParameterList<T>& params() const { return params_; }
  void zero_grad() { params_.zero_grad(); }

  // x, y: [batch][seq_len][d_model]. Starts from the held state (zeros if none)
  // and, with carry_state, leaves the final state there. Keeps what backward needs.
  void forward(const T* x, int64_t batch, int64_t seq_len, T* y);
  // The same against `state` (made for this layer: make_state()), which it
  // reads and leaves the final state in (whatever carry_state says); the
  // layer's own state is untouched. An empty state is sized to `batch`. For
  // softmax attention the state's cache must be empty and receives the keys
  // and values of this forward (then step_with_state() continues).
  void forward_with_state(AttentionState<T>& state, const T* x, int64_t batch, int64_t seq_len, T* y);
  // Adds parameter gradients; dx (nullable) is overwritten; keeps dL/d(initial state).
  void backward(const T* dy, int64_t batch, int64_t seq_len, T* dx);
  // True once a forward has completed (backward may then be called).
  bool has_forward() const { return has_forward_; }

  // ---- fast-weight state (these throw FWP_ERR_UNSUPPORTED for softmax) -----------
  int64_t state_w_count(int64_t batch) const;
  int64_t state_z_count(int64_t batch) const;
  // The batch of the held state; 0 when none is held (it then reads as zeros).
  int64_t state_batch() const { return state_.batch(); }
  // w, z: host arrays of state_w_count(batch) / state_z_count(batch); nullptr = zeros.
  void set_state(int64_t batch, const T* w, const T* z);
  // w, z (nullable): host arrays sized for state_batch().
  void get_state(T* w, T* z) const;
  // The batch of the last backward's initial-state gradient; 0 before any backward.
  int64_t state_grad_batch() const { return saved_.grad_batch; }
  void get_state_grad(T* dw, T* dz) const;
  // Forgets the state, the softmax key/value cache, and any step batch.
  void reset_state();
  // The layer's own state (what forward and step use).
  const AttentionState<T>& state() const { return state_; }
  // An empty state (batch 0) or a zero one of `batch` rows for this layer.
  AttentionState<T> make_state(int64_t batch) const { return attention_.make_state(batch); }

  // One token per batch row in evaluation mode: x, y are [batch][d_model].
  void step(const T* x, int64_t batch, T* y);
  // The same against `state` instead of the layer's own.
  void step_with_state(AttentionState<T>& state, const T* x, int64_t batch, T* y);

 private:
  bool is_softmax() const { return config_.softmax; }
  // Checks the sizes of a call before anything is allocated.
  void check_shape(int64_t batch, int64_t seq_len, const char* batch_name) const;
  // A state of another caller must be on this layer's backend and made for its sizes.
  void check_external_state(const AttentionState<T>& state) const;
  // The CPU backend's memory is the caller's: host arrays are used in place.
  bool host_memory() const;
  // x staged in x_ (the backward needs it after the caller's array may have changed).
  ConstView<T> stage_input(const T* x, int64_t batch, int64_t seq_len);
  // Where an output of `shape` goes: the caller's y, or y_ to be downloaded.
  TensorView<T> output_target(T* y, const Shape& shape);
  void finish_output(T* y, const Shape& shape);
  void run_forward(AttentionState<T>* state, StateUpdate update, const T* x, int64_t batch, int64_t seq_len, T* y);
  void run_step(AttentionState<T>& state, const T* x, int64_t batch, T* y);

  FastWeightLayerConfig config_;
  std::shared_ptr<Backend<T>> backend_;
  Rng rng_;
  bool training_ = true;
  ParameterList<T> params_;
  FastWeightAttention<T> attention_;

  FastWeightAttentionWorkspace<T> saved_;    // the last forward (and the last backward's state gradient)
  FastWeightAttentionWorkspace<T> step_ws_;  // scratch of step(), so stepping keeps saved_ intact
  Buffer<T> x_;                              // the last forward's input, [B, T, d_model]
  Buffer<T> y_, dy_, dx_;                    // staging of outputs and gradients (device memory only)
  Buffer<T> step_x_;                         // a step's input
  bool has_forward_ = false;

  AttentionState<T> state_;  // W [B][H][d_head][d_dot], z [B][H][d_dot], or the key/value cache
};

extern template class FastWeightLayer<float>;
extern template class FastWeightLayer<double>;

}  // namespace fwp
