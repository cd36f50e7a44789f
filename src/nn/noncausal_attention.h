// Non-causal multi-head attention over right-padded batches: the encoder
// self-attention and the decoder-encoder cross-attention of the translation
// model (paper section 6.2), as a module in the style of
// nn/fast_weight_attention.h (parameters declared into the owner's
// ParameterList, explicit forward/backward with a caller-owned workspace).
//
// Design note. The causal layer (FastWeightAttention) is a recurrence over
// steps; a non-causal memory is not: it is one sum over the whole (unpadded)
// source, read by every query. So rather than a "bidirectional" mode threaded
// through the causal module's recurrence, state and chunking code, both
// non-causal kinds are this one module: queries come from x [B, Tq, d_model],
// keys and values from a memory m [B, Tk, d_model]. Encoder self-attention is
// the case m = x (forward_self / backward_self); cross-attention passes the
// encoder output as m. The ops it needs beyond the causal ones are in
// core/backend/padded_attention.h.
//
// Per head, with S = B * H streams (stream b * H + h):
//   q, k, v = x Wq^T, m Wk^T, m Wv^T
//   linear:  M = sum_{j < len_m} v_j phi(k_j)^T,  z = sum_{j < len_m} phi(k_j)
//            o_i = M phi(q_i) / (z . phi(q_i) + eps)   (attn_normalize; else o_i = M phi(q_i))
//            phi = elu+1 / DPFP / FAVOR+, optionally sum-normalised (as the causal layer)
//   softmax: o_i = sum_{j < len_m} softmax_j(q_i . k_j / sqrt(d_head)) v_j
//   y = s * concat_heads(o) Wo^T (+ b), s = 1/sqrt(d_head) with scale_output (linear only)
//
// Padding: keys at or after a sequence's length never enter M, z or a softmax;
// outputs at padded query positions are exactly 0; the backward ignores dy at
// padded query positions, and the input gradients at every padded position
// (of x and of m) are exactly 0. Lengths are host vectors of B entries in
// [1, T]; an empty vector means "no padding".
//
// Incremental decoding: begin() computes the memory side once per sentence
// into a CrossAttentionState (M and z per head for the linear kinds, the
// key/value cache for softmax, plus the source lengths); step() then costs
// O(1) in the target length (linear) or O(source length) (softmax). The state
// reorders its rows by an index vector for beam search.
//
// Parameters, in this order (each with ".bias" after its ".weight" when
// use_bias): q_proj, k_proj, v_proj, out_proj, then "favor.projection"
// [m, d_head] (FAVOR+ only, not trainable).
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

struct NonCausalAttentionConfig {
  int64_t d_model = 128;
  int64_t num_heads = 8;
  int64_t d_head = 16;
  bool softmax = false;                      // softmax attention with a key padding mask
  FeatureMap feature_map = FeatureMap::Elu;  // linear kinds only
  int64_t dpfp_nu = 1;
  int64_t favor_features = 64;
  bool sum_normalize = false;
  // The paper's translation models normalise the linear attention (Katharopoulos et al.); 0 with softmax.
  bool attn_normalize = true;
  double norm_eps = 1e-6;
  bool scale_output = false;  // y scaled by 1/sqrt(d_head) (linear kinds; must be 0 with softmax)
  bool use_bias = false;
  double init_std = 0.02;

  // Throws Error(FWP_ERR_INVALID_ARGUMENT) naming prefix + the first bad field.
  void validate(const std::string& prefix = "") const;
  FeatureMapSpec feature_spec() const;
  int64_t d_dot() const;  // width of phi; 0 for softmax
  // What CrossAttentionState::memory holds: a fast-weight state (M, z) or a key/value cache.
  AttentionStateSpec state_spec() const;
};

// The memory side of a cross-attention, computed once per source sentence.
template <typename T>
struct CrossAttentionState {
  explicit CrossAttentionState(AttentionState<T> memory_state) : memory(std::move(memory_state)) {}

  AttentionState<T> memory;          // M [N][H][d_head][d_dot] and z [N][H][d_dot], or the K/V cache
  std::vector<int64_t> key_lengths;  // host: the source length of each row
  IdBuffer<T> key_lengths_device;    // the same on the device (int32)

  int64_t batch() const { return memory.batch(); }
  bool empty() const { return memory.empty(); }
  // Row r becomes row rows[r] (beam search); same checks as AttentionState::reorder.
  void reorder(const int64_t* rows, int64_t count);
  // Becomes a copy of `other` (same spec).
  void copy_from(const CrossAttentionState& other);
  void clear();
};

// Activations of one forward, kept by the caller until the backward; arrays
// marked [S, T, d] hold stream s = b * H + h at step t.
template <typename T>
struct NonCausalAttentionWorkspace {
  // ---- saved by forward, read by backward ----
  int64_t batch = 0, queries = 0, keys = 0;  // 0 before a forward completed
  IdBuffer<T> query_lengths, key_lengths;    // device int32 [B]
  Buffer<T> qh;                   // [S, Tq, d_head]
  Buffer<T> kh, vh;               // [S, Tk, d_head] (vh zero at padded keys, linear kinds)
  Buffer<T> favor;                // [m, d_head] a redrawn FAVOR+ projection
  const T* favor_used = nullptr;
  Buffer<T> phi_q_raw, phi_q_norm;  // [S, Tq, d_dot]
  Buffer<T> phi_k_raw, phi_k_norm;  // [S, Tk, d_dot]
  Buffer<T> phi_k_mem;              // [S, Tk, d_dot] the keys written into M (zero at padded keys)
  Buffer<T> memory, z;              // [S, d_head, d_dot], [S, d_dot]
  Buffer<T> o;                      // [S, Tq, d_head]
  Buffer<T> denom;                  // [S, Tq] (attention normalisation)
  Buffer<T> lse;                    // [S, Tq] (softmax)
  Buffer<T> merged;                 // [B*Tq, H*d_head] input of out_proj

  // ---- scratch ----
  Buffer<T> lin_q, lin_k;           // [B*Tq, P], [B*Tk, P]
  Buffer<T> dy_masked;              // [B*Tq, d_model]
  Buffer<T> d_heads;                // [S, Tq, d_head]
  Buffer<T> dphi_q, dphi_k;         // [S, T, d_dot]
  Buffer<T> d_memory, d_z;          // [S, d_head, d_dot], [S, d_dot]
  Buffer<T> dqh, dkh, dvh;          // [S, T, d_head]

  const T* phi_q(bool normalized) const { return normalized ? phi_q_norm.data() : phi_q_raw.data(); }
  const T* phi_k(bool normalized) const { return normalized ? phi_k_norm.data() : phi_k_raw.data(); }
};

template <typename T>
class NonCausalAttention {
 public:
  using Workspace = NonCausalAttentionWorkspace<T>;

  // Validates the config and declares the parameters "<prefix>q_proj.weight" etc.
  NonCausalAttention(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string prefix,
                     const NonCausalAttentionConfig& config);

  // Weights ~ N(0, init_std^2) from `rng` in parameter order, biases 0, then the FAVOR+ projection.
  void init(ParameterList<T>& params, Rng& rng) const;

  const NonCausalAttentionConfig& config() const { return config_; }
  const std::shared_ptr<Backend<T>>& backend() const { return backend_; }
  bool is_softmax() const { return config_.softmax; }
  int64_t d_dot() const { return config_.d_dot(); }

  // Cross-attention: x [B, Tq, d_model] queries, m [B, Tk, d_model] memory, y [B, Tq, d_model]
  // (y must alias neither). x_lengths / m_lengths: B entries in [1, Tq] / [1, Tk], or empty.
  // redraw_rng (FAVOR+): when given, a projection freshly drawn from it is used (training).
  void forward(const ParameterList<T>& params, ConstView<T> x, const std::vector<int64_t>& x_lengths,
               ConstView<T> m, const std::vector<int64_t>& m_lengths, TensorView<T> y, Workspace& ws,
               Rng* redraw_rng = nullptr) const;
  // Adds the parameter gradients and writes dx and dm (each by its mode; a null view skips it).
  // dy may alias dx (it is read completely first); x and m are the forward's inputs. dm may be the
  // same view as dx only with dm_mode == Accumulate (self-attention).
  void backward(ParameterList<T>& params, ConstView<T> x, ConstView<T> m, ConstView<T> dy, TensorView<T> dx,
                InputGrad dx_mode, TensorView<T> dm, InputGrad dm_mode, Workspace& ws) const;

  // Encoder self-attention: m = x, one length vector.
  void forward_self(const ParameterList<T>& params, ConstView<T> x, const std::vector<int64_t>& lengths,
                    TensorView<T> y, Workspace& ws, Rng* redraw_rng = nullptr) const;
  void backward_self(ParameterList<T>& params, ConstView<T> x, ConstView<T> dy, TensorView<T> dx, InputGrad mode,
                     Workspace& ws) const;

  // ---- incremental decoding (evaluation mode: the fixed FAVOR+ projection) ----
  CrossAttentionState<T> make_state() const;
  // Computes the memory side of m [B, Tk, d_model] (lengths as in forward) into `state` (any batch
  // before; B after). `ws` is scratch.
  void begin(const ParameterList<T>& params, ConstView<T> m, const std::vector<int64_t>& m_lengths,
             CrossAttentionState<T>& state, Workspace& ws) const;
  // One query per row: x, y [B, d_model], B == state.batch(). `ws` is scratch.
  void step(const ParameterList<T>& params, ConstView<T> x, const CrossAttentionState<T>& state, TensorView<T> y,
            Workspace& ws) const;

  const Linear<T>& q_proj() const { return *q_; }
  const Linear<T>& k_proj() const { return *k_; }
  const Linear<T>& v_proj() const { return *v_; }
  const Linear<T>& out_proj() const { return *out_; }
  int64_t favor_index() const { return favor_; }

 private:
  void check_sequence(ConstView<T> x, const char* what) const;
  // Validates lengths (B entries in [1, steps], or empty = all steps) and uploads them.
  void upload_lengths(const std::vector<int64_t>& lengths, int64_t batch, int64_t steps, const char* what,
                      IdBuffer<T>& device) const;
  T output_scale() const;
  // Keys and values of m into ws.kh / ws.vh [S, Tk, d_head]; for the linear kinds also phi(k),
  // the masked keys phi_k_mem and values, and M, z into ws.memory / ws.z.
  void memory_side(const ParameterList<T>& params, ConstView<T> m, Workspace& ws) const;
  // phi of `rows` query rows qh into ws.phi_q_raw / phi_q_norm.
  void query_features(const T* qh, int64_t rows, Workspace& ws) const;
  void choose_favor(const ParameterList<T>& params, Rng* redraw_rng, Workspace& ws) const;

  NonCausalAttentionConfig config_;
  std::shared_ptr<Backend<T>> backend_;
  std::string prefix_;
  std::unique_ptr<Linear<T>> q_, k_, v_, out_;
  int64_t favor_ = -1;
};

extern template struct CrossAttentionState<float>;
extern template struct CrossAttentionState<double>;
extern template class NonCausalAttention<float>;
extern template class NonCausalAttention<double>;

}  // namespace fwp
