// Multi-head fast-weight attention (and the causal softmax-attention baseline)
// as a module on device tensors, in the style of nn/linear.h: it declares its
// parameters into the owner's ParameterList, keeps only their indices, and
// takes the list in every call. The recurrent state (fast weights W, z, or the
// softmax key/value cache) is an AttentionState the caller owns
// (nn/attention_state.h); the activations of one forward are a
// FastWeightAttentionWorkspace the caller keeps until the backward.
//
// For x [B, T, d_model]:
//   q, k, v = x Wq^T, x Wk^T, x Wv^T (H heads of d_head); beta = sigmoid(x Wbeta^T) (delta rule)
//   phi = feature map (elu+1 / DPFP / FAVOR+), optionally sum-normalised
//   W_t = W_{t-1} + v_t phi(k_t)^T                                (sum rule)
//   W_t = W_{t-1} + beta_t (v_t - W_{t-1} phi(k_t)) phi(k_t)^T      (delta rule)
//   o_t = W_t phi(q_t), optionally / (z_t . phi(q_t) + eps), z_t = z_{t-1} + phi(k_t)
//   y = s * concat_heads(o) Wo^T (+ b), s = 1/sqrt(d_head) with scale_output
// Softmax: o_t = sum_{j<=t} softmax_j(q_t . k_j / sqrt(d_head)) v_j, y = concat(o) Wo^T (+ b).
//
// Right-padded batches (the translation model's decoder): forward() takes the
// length of each row. Then keys (phi(k_t), after any sum normalisation) at or
// after a row's end are cleared before the recurrence, so padding never writes
// into W or z (for both rules: a zero key leaves the memory unchanged), outputs
// at padded steps are exactly 0, the backward ignores dy there and gives every
// padded step exactly zero input gradient. Valid steps never see later ones
// (causality), so their outputs are those of the unpadded rows. A state's
// position() still advances by T, the padded length (one count for all rows).
//
// Parameters, in this order (the names of fwp_layer; each with ".bias" after
// its ".weight" when use_bias): q_proj, k_proj, v_proj, beta_proj (delta rule
// only), out_proj, then "favor.projection" [m, d_head] (FAVOR+ only, not trainable).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/id_buffer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/attention_state.h"
#include "nn/input_grad.h"
#include "nn/linear.h"
#include "nn/parameter.h"

namespace fwp {

// Largest d_dot a layer accepts (a state row is d_head x d_dot per head).
constexpr int64_t kMaxFeatureDim = 4096;

// Settings of the attention (see fwp_layer_config in fwp/layer.h for each field).
struct FastWeightAttentionConfig {
  int64_t d_model = 128;
  int64_t num_heads = 8;
  int64_t d_head = 16;
  bool softmax = false;                       // causal softmax attention instead of a fast-weight memory
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

  // Throws Error(FWP_ERR_INVALID_ARGUMENT) naming the first bad field, written
  // as prefix + field name (e.g. "config->d_model must be >= 1 (got 0)").
  void validate(const std::string& prefix = "") const;
  // The two halves of validate(): sizes, then the attention options.
  void validate_sizes(const std::string& prefix) const;
  void validate_options(const std::string& prefix) const;
  // The feature map of keys and queries (for a fast-weight layer).
  FeatureMapSpec feature_spec() const;
  // d_dot, the width of phi; 0 for softmax attention.
  int64_t d_dot() const;
  // What an AttentionState for this attention holds.
  AttentionStateSpec state_spec() const;
};

// The checks every attention config (layer, retrieval model) shares: options
// that only exist for a fast-weight memory keep their neutral values with
// softmax attention (never silently ignored), norm_eps is finite and > 0, the
// feature-map sizes are >= 1 and d_dot <= kMaxFeatureDim. Throws Error naming
// `prefix` + the field; returns d_dot (0 for softmax).
int64_t validate_attention_options(const std::string& prefix, bool softmax, UpdateRule update_rule,
                                   bool sum_normalize, bool attn_normalize, double norm_eps,
                                   FeatureMap feature_map, int64_t d_head, int64_t dpfp_nu,
                                   int64_t favor_features);

// What a forward leaves for its backward, and the backward's scratch. Arrays
// marked [S, T, d] hold stream s = b * H + h at step t. Everything here is
// owned by the caller of the module; a step() uses one too (as scratch) and
// leaves nothing a backward could use.
template <typename T>
struct FastWeightAttentionWorkspace {
  // ---- saved by forward, read by backward ----
  int64_t batch = 0, steps = 0;  // B and T of the forward; 0 before one completed
  bool fast_weight = false;      // which path produced it
  Buffer<T> qh, kh, vh;          // [S, T, d_head]: q, k, v per head (before the feature map)
  Buffer<T> beta;                // [S, T] sigmoid(beta logits) (delta rule)
  Buffer<T> favor;               // [m, d_head]: the FAVOR+ projection drawn for this forward (redraws)
  const T* favor_used = nullptr; // the projection used: `favor` or the fixed parameter
  Buffer<T> phi_q_raw, phi_k_raw;    // [S, T, d_dot] phi before sum normalisation
  Buffer<T> phi_q_norm, phi_k_norm;  // [S, T, d_dot] after it (sum_normalize only)
  Buffer<T> o;                   // [S, T, d_head] fast-weight (or softmax) output
  Buffer<T> u;                   // [S, T, d_head] the written values (fast-weight recurrence)
  Buffer<T> state_out;           // [S, d_head, d_dot] final W
  Buffer<T> saved;               // states saved by the recurrence for its backward
  Buffer<T> z_in, z_out;         // [S, d_dot] initial and final z (attention normalisation)
  Buffer<T> o_norm;              // [S, T, d_head] o after attention normalisation
  Buffer<T> denom;               // [S, T]
  Buffer<T> lse;                 // [S, T] softmax log-sum-exp
  Buffer<T> merged;              // [B*T, H*d_head]: heads merged and scaled, the input of out_proj
  bool padded = false;           // the forward had row lengths
  IdBuffer<T> lengths;           // [B] device int32 row lengths (padded forwards)
  Buffer<T> phi_k_mem;           // [S, T, d_dot] the keys written (zero at padded steps; padded forwards)

  // ---- written by backward: dL/d(initial state) [B][H][d_head][d_dot], [B][H][d_dot] ----
  int64_t grad_batch = 0;        // B of the last backward (fast-weight only); 0 before one
  Buffer<T> grad_w, grad_z;

  // ---- scratch ----
  Buffer<T> lin;                 // [B*T, H*d_head] a projection's output or its gradient
  Buffer<T> beta_logit;          // [S, T]
  Buffer<T> d_heads, d_o;        // [S, T, d_head]
  Buffer<T> dq_norm, dk_norm, dphi_q, dphi_k;  // [S, T, d_dot]
  Buffer<T> dqh, dkh, dvh;       // [S, T, d_head]
  Buffer<T> dbeta, dbeta_logit;  // [S, T]
  Buffer<T> dy_masked;           // [B*T, d_model] dy without its padded steps (padded backwards)

  const T* phi_q(bool normalized) const { return normalized ? phi_q_norm.data() : phi_q_raw.data(); }
  const T* phi_k(bool normalized) const { return normalized ? phi_k_norm.data() : phi_k_raw.data(); }
};

// How a forward treats the state it is given.
enum class StateUpdate {
  Keep,   // start from it, leave it unchanged
  Write,  // start from it and leave the final state in it
};

template <typename T>
class FastWeightAttention {
 public:
  using Workspace = FastWeightAttentionWorkspace<T>;

  // Validates the config and declares the parameters as "<prefix>q_proj.weight" etc.
  FastWeightAttention(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string prefix,
                      const FastWeightAttentionConfig& config);

  // Weights ~ N(0, init_std^2) drawn from `rng` in parameter order, biases 0,
  // then the fixed FAVOR+ projection from the same generator.
  void init(ParameterList<T>& params, Rng& rng) const;

  const FastWeightAttentionConfig& config() const { return config_; }
  const std::shared_ptr<Backend<T>>& backend() const { return backend_; }
  int64_t d_dot() const { return config_.d_dot(); }
  bool is_softmax() const { return config_.softmax; }
  // A zero state for `batch` rows (an empty state for batch 0).
  AttentionState<T> make_state(int64_t batch) const;

  // x, y: [B, T, d_model] device views; y must not alias x. Keeps in `ws` what
  // backward needs (x itself is not kept: backward takes it again).
  // Fast-weight layers start from `state` (nullptr or empty: zeros; otherwise
  // its batch must be B) and with StateUpdate::Write leave the final state
  // there (an empty state is then sized to B).
  // Softmax layers keep no state in a forward, except that with Write an
  // empty cache (length 0) receives this forward's keys and values, so step()
  // can continue the sequences; a non-empty cache is refused (FWP_ERR_UNSUPPORTED).
  // redraw_rng (FAVOR+): when given, this forward uses a projection freshly
  // drawn from it (training with favor_redraw); otherwise the fixed one.
  // lengths: empty (no padding) or B row lengths in [1, T] (see "Right-padded batches" above); a
  // softmax layer refuses StateUpdate::Write of a padded batch (FWP_ERR_UNSUPPORTED: its cache
  // has one length for every row).
  void forward(const ParameterList<T>& params, ConstView<T> x, AttentionState<T>* state, StateUpdate update,
               TensorView<T> y, Workspace& ws, Rng* redraw_rng = nullptr,
               const std::vector<int64_t>& lengths = {}) const;

  // Adds the parameter gradients of the forward that filled `ws` (x is that
  // forward's input) and writes dx (overwrite or accumulate; a null view skips
  // it); fast-weight layers also write ws.grad_w / ws.grad_z, the gradient of
  // the initial state (the final state's gradient is taken as zero). dy may
  // alias dx (it is read completely before dx is written), not x.
  void backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx, InputGrad mode,
                Workspace& ws) const;

  // One token per row in evaluation mode: x, y [B, d_model]. The state (an
  // empty one is sized to B, otherwise its batch must be B) advances by one
  // token. `ws` is scratch (any workspace not needed for a backward).
  void step(const ParameterList<T>& params, ConstView<T> x, AttentionState<T>& state, TensorView<T> y,
            Workspace& ws) const;

  // The projections (their weight_index()/bias_index() locate them in the
  // list); beta_proj is null without the delta rule.
  const Linear<T>& q_proj() const { return *q_; }
  const Linear<T>& k_proj() const { return *k_; }
  const Linear<T>& v_proj() const { return *v_; }
  const Linear<T>* beta_proj() const { return beta_.get(); }
  const Linear<T>& out_proj() const { return *out_; }
  // The fixed FAVOR+ projection's index in the list (-1 without FAVOR+).
  int64_t favor_index() const { return favor_; }

 private:
  // The checks of a forward or step input: shapes and size bounds.
  void check_input(ConstView<T> x, TensorView<T> y, int64_t steps, const char* what) const;
  void check_state(const AttentionState<T>& state) const;
  T output_scale() const;
  // q, k, v per head into ws.qh / kh / vh: [S, T, d_head].
  void project_heads(const ParameterList<T>& params, ConstView<T> x, int64_t B, int64_t Tn, Workspace& ws) const;
  void fast_weight_forward(const ParameterList<T>& params, ConstView<T> x, const AttentionState<T>* initial,
                           TensorView<T> y, Workspace& ws, Rng* redraw_rng) const;
  // Makes ws's final state the state's (sizing an empty one).
  void write_state(const Workspace& ws, int64_t B, AttentionState<T>& state) const;
  void softmax_forward(const ParameterList<T>& params, ConstView<T> x, TensorView<T> y, Workspace& ws) const;
  // Puts the forward's keys and values in an empty cache.
  void fill_cache(const Workspace& ws, int64_t B, int64_t Tn, AttentionState<T>& state) const;
  void fast_weight_backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx,
                            InputGrad mode, Workspace& ws) const;
  void softmax_backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx,
                        InputGrad mode, Workspace& ws) const;
  void softmax_step(const ParameterList<T>& params, ConstView<T> x, AttentionState<T>& state, TensorView<T> y,
                    Workspace& ws) const;

  FastWeightAttentionConfig config_;
  std::shared_ptr<Backend<T>> backend_;
  std::string prefix_;
  std::unique_ptr<Linear<T>> q_, k_, v_, beta_, out_;
  int64_t favor_ = -1;
};

extern template class FastWeightAttention<float>;
extern template class FastWeightAttention<double>;

}  // namespace fwp
