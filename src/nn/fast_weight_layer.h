// The multi-head fast-weight attention layer (and its softmax-attention
// baseline) behind fwp_layer: parameters, forward, backward, the fast-weight
// state carried between calls, and recurrent stepping.
//
// The layer is written against Backend<T> only, so the same code runs on the
// CPU backend (float and double) and on the CUDA backend (float). All array
// arguments of the public methods are host pointers; the layer moves data to
// and from the backend itself.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/rng.h"
#include "nn/parameter.h"

namespace fwp {

class Context;

// Settings of a layer (the C++ mirror of fwp_layer_config; see fwp.h for the
// meaning of each field).
struct FastWeightLayerConfig {
  int64_t d_model = 128;
  int64_t num_heads = 8;
  int64_t d_head = 16;
  bool softmax = false;                  // causal softmax attention instead of a fast-weight memory
  FeatureMap feature_map = FeatureMap::Dpfp;  // ignored when softmax
  int64_t dpfp_nu = 1;
  int64_t favor_features = 64;
  bool favor_redraw = true;
  UpdateRule update_rule = UpdateRule::Delta;
  bool sum_normalize = true;
  bool attn_normalize = false;
  double norm_eps = 1e-6;
  bool scale_output = true;
  bool use_bias = false;
  double init_std = 0.02;
  Algorithm algorithm = Algorithm::Auto;
  int64_t chunk_size = 0;
  bool carry_state = false;

  // Throws Error(FWP_ERR_INVALID_ARGUMENT) naming the first bad field, written
  // as prefix + field name (e.g. "config->d_model must be >= 1 (got 0)").
  void validate(const std::string& prefix = "") const;
  // The feature map of keys and queries (for a fast-weight layer).
  FeatureMapSpec feature_spec() const;
  // d_dot, the width of phi; 0 for softmax attention.
  int64_t d_dot() const;
};

// Largest d_dot a layer accepts (a state row is d_head x d_dot per head).
constexpr int64_t kMaxFeatureDim = 4096;

// The checks every attention config (layer, retrieval model) shares: options
// that only exist for a fast-weight memory keep their neutral values with
// softmax attention (never silently ignored), norm_eps is finite and > 0, the
// feature-map sizes are >= 1 and d_dot <= kMaxFeatureDim. Throws Error naming
// `prefix` + the field; returns d_dot (0 for softmax).
int64_t validate_attention_options(const std::string& prefix, bool softmax, UpdateRule update_rule,
                                   bool sum_normalize, bool attn_normalize, double norm_eps,
                                   FeatureMap feature_map, int64_t d_head, int64_t dpfp_nu,
                                   int64_t favor_features);

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

  bool training() const { return training_; }
  void set_training(bool training) { training_ = training; }

  ParameterList<T>& params() { return params_; }
  const ParameterList<T>& params() const { return params_; }
  void zero_grad() { params_.zero_grad(); }

  // x, y: [batch][seq_len][d_model]. Starts from the held state (zeros if none)
  // and, with carry_state, leaves the final state there. Keeps what backward needs.
  void forward(const T* x, int64_t batch, int64_t seq_len, T* y);
  // Adds parameter gradients; dx (nullable) is overwritten; keeps dL/d(initial state).
  void backward(const T* dy, int64_t batch, int64_t seq_len, T* dx);
  // True once a forward has completed (backward may then be called).
  bool has_forward() const { return has_forward_; }

  // ---- fast-weight state (these throw FWP_ERR_UNSUPPORTED for softmax) -----------
  int64_t state_w_count(int64_t batch) const;
  int64_t state_z_count(int64_t batch) const;
  // The batch of the held state; 0 when none is held (it then reads as zeros).
  int64_t state_batch() const { return state_batch_; }
  // w, z: host arrays of state_w_count(batch) / state_z_count(batch); nullptr = zeros.
  void set_state(int64_t batch, const T* w, const T* z);
  // w, z (nullable): host arrays sized for state_batch().
  void get_state(T* w, T* z) const;
  // The batch of the last backward's initial-state gradient; 0 before any backward.
  int64_t state_grad_batch() const { return grad_state_batch_; }
  void get_state_grad(T* dw, T* dz) const;
  // Forgets the state, the softmax key/value cache, and any step batch.
  void reset_state();

  // One token per batch row in evaluation mode: x, y are [batch][d_model].
  void step(const T* x, int64_t batch, T* y);

 private:
  struct Workspace;          // activations of one forward (or one step)
  struct BackwardWorkspace;  // scratch of the backward

  bool is_softmax() const { return config_.softmax; }
  void check_shape(int64_t batch, int64_t seq_len, const char* batch_name) const;
  void linear_forward(const T* x, int64_t rows, const Parameter<T>& w, const Parameter<T>* b, T* y,
                      T alpha = T(1));
  void linear_backward(const T* x, const T* dy, int64_t rows, Parameter<T>& w, Parameter<T>* b, T dx_alpha,
                       T dx_beta, T* dx, T alpha = T(1));
  // 1/sqrt(d_head) with scale_output, else 1.
  bool host_memory() const;
  T* output_target(Workspace& ws, T* y, int64_t n);
  T output_scale() const;
  // The fast-weight forward into `ws`, from the held state if one is held.
  void run_fast_weight_forward(Workspace& ws, const T* x, int64_t batch, int64_t seq_len, T* y,
                               bool fixed_features);
  void run_softmax_forward(Workspace& ws, const T* x, int64_t batch, int64_t seq_len, T* y);
  // Makes ws's final state the held state.
  void commit_state(const Workspace& ws);
  void fast_weight_backward(const T* dy, T* dx);
  void softmax_backward(const T* dy, T* dx);
  void softmax_step(const T* x, int64_t batch, T* y);

  FastWeightLayerConfig config_;
  std::shared_ptr<Backend<T>> backend_;
  Rng rng_;
  bool training_ = true;
  ParameterList<T> params_;
  // Indices into params_ (-1 if absent).
  int64_t q_w_ = -1, q_b_ = -1, k_w_ = -1, k_b_ = -1, v_w_ = -1, v_b_ = -1, beta_w_ = -1, beta_b_ = -1,
          out_w_ = -1, out_b_ = -1, favor_ = -1;

  std::unique_ptr<Workspace> saved_;    // the last forward
  std::unique_ptr<Workspace> step_ws_;  // scratch of step(), so stepping keeps saved_ intact
  std::unique_ptr<BackwardWorkspace> bwd_;
  bool has_forward_ = false;

  // Held fast-weight state: W [B][H][d_head][d_dot], z [B][H][d_dot].
  int64_t state_batch_ = 0;
  Buffer<T> state_w_, state_z_;
  // dL/d(initial state) of the last backward.
  int64_t grad_state_batch_ = 0;
  Buffer<T> grad_w_, grad_z_;

  // Softmax decoding cache: [B*H][capacity][d_head] each.
  int64_t cache_batch_ = 0, cache_length_ = 0, cache_capacity_ = 0;
  Buffer<T> k_cache_, v_cache_;
};

extern template class FastWeightLayer<float>;
extern template class FastWeightLayer<double>;

}  // namespace fwp
