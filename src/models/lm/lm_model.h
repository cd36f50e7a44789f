// The word-level language model of the paper (section 6.3): a decoder-only
// stack of residual blocks, each a multi-head attention (fast-weight or
// softmax, nn/fast_weight_attention.h) and a position-wise feed-forward block,
// as in the authors' toolkit (IDSIA/lmtool-fwp, src/model_main.py and
// src/utils/model_utils.py):
//
//   h_0   = dropout(sqrt(d_model) * E[x_t] + pe(t))         (pe: sinusoidal, or none)
//   post-LN (the paper):  a = dropout(attn(h));  h' = LN1(h + a)
//                         f = dropout(W2 dropout(relu(W1 h' + b1)) + b2);  out = LN2(h' + f)
//   pre-LN  (option):     h' = h + dropout(attn(LN1(h)));  out = h' + f(LN2(h')),
//                         and a final LayerNorm before the output layer
//   logits = h_L W_out^T + b_out  (W_out = E with tied embeddings);  loss = cross-entropy
//
// With cutoffs or div_val > 1 (the paper's WikiText-103 models use cutoffs),
// the input is the authors' AdaptiveEmbedding (nn/adaptive_input.h: per-cluster
// tables of width d_model / div_val^k, projected to d_model, scaled by
// sqrt(d_model)) and the output their ProjectedAdaptiveLogSoftmax
// (nn/adaptive_softmax.h: head = shortlist + one logit per tail cluster).
// tie_embeddings ties each cluster's output weight to the input table of that
// cluster and, with div_val > 1, the tail clusters' projections (the authors'
// WikiText-103 tie_projs = [False] + [True] * len(cutoffs)); the head's
// projection and every bias stay the output's own. Parameter names are then
// the authors' under "embedding." and "output." (emb_layers.k.weight,
// emb_projs.k, cluster_weight, out_layers.k.weight/bias, out_projs.k).
//
// Where this differs from the authors' code, and why:
// - positions count up from the first token of a sequence (pe(0), pe(1), ...)
//   and continue from the state's position() when a state is carried; the
//   authors' Transformer-XL code counts down (the last token of a segment is
//   position 0), which would make a token's encoding depend on where its
//   segment ends: no O(1) step-by-step generation, and no carried segment
//   equal to one long one. (The paper's carried-memory model uses no positions.)
// - pre-LN is the usual x + f(LN(x)) with a final LayerNorm; the authors'
//   pre-LN variant adds the residual to the normalised input and has none.
//   (The paper's models are post-LN, which matches the authors exactly.)
// - LayerNorm gains start at 1 (the authors draw them from N(1, 0.02)).
// - attention dropout (dropatt) is not built: only 0 is accepted (the paper's value).
// - with tie_embeddings = 0 nothing is tied, projections included (the
//   authors tie projections by dataset, independently of --not_tied).
// - the adaptive projections start from N(0, 0.01^2) (the authors'
//   proj_init_std default), whatever init_std is.
//
// LmNetwork<T> is written against Backend<T> only (float and double on the
// CPU, float on CUDA); LmModel wraps the float network behind the Model
// interface for the C API.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/id_buffer.h"
#include "core/rng.h"
#include "models/lm/lm_config.h"
#include "models/model.h"
#include "nn/adaptive_input.h"
#include "nn/adaptive_softmax.h"
#include "nn/attention_state.h"
#include "nn/cross_entropy_loss.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/fast_weight_attention.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/parameter.h"

namespace fwp {

enum class LmEvalMode { Segments, Sliding, Carry };

// What an evaluation returns: the summed negative log-likelihood (natural
// log) and the number of scored tokens; perplexity = exp(nll / scored).
struct LmEvalResult {
  double total_nll = 0.0;
  int64_t scored = 0;
};

template <typename T>
class LmNetwork {
 public:
  using States = std::vector<AttentionState<T>>;

  // Validates the config; parameters are drawn from `rng`, which the network
  // keeps for dropout masks and FAVOR+ redraws.
  LmNetwork(const LmConfig& config, std::shared_ptr<Backend<T>> backend, Rng rng);
  ~LmNetwork();
  LmNetwork(const LmNetwork&) = delete;
  LmNetwork& operator=(const LmNetwork&) = delete;

  const LmConfig& config() const { return config_; }
  const std::shared_ptr<Backend<T>>& backend() const { return backend_; }
  ParameterList<T>& params() { return params_; }
  const ParameterList<T>& params() const { return params_; }
  bool training() const { return training_; }
  void set_training(bool training) { training_ = training; }
  Rng::State rng_state() const { return rng_.state(); }
  void set_rng_state(const Rng::State& state) { rng_.set_state(state); }
  // Mixed into every dropout seed (Model::set_dropout_stream()); 0 = none.
  void set_dropout_stream(uint64_t stream) { *dropout_stream_ = stream; }

  // One spec per layer, in layer order.
  std::vector<AttentionStateSpec> state_specs() const;
  // Throws Error(FWP_ERR_SHAPE_MISMATCH) unless `states` were made for this
  // network's layers, and (batch > 0) hold `batch` rows (an empty state is
  // accepted: it is sized on first use).
  void check_states(const States& states, int64_t batch) const;
  // Throws Error(FWP_ERR_OUT_OF_RANGE) naming `what`[i] unless every id is in
  // [0, vocab) (or negative, where allow_negative).
  void check_ids(const int32_t* ids, int64_t count, const char* what, bool allow_negative) const;

  // inputs, targets: host [B][T] (targets < 0 are not scored; at least one
  // must be). states (nullable): one per layer, read at the start and left at
  // the end of the segment; gradients do not flow into earlier segments.
  // Returns the mean loss over the scored targets; token_losses (nullable,
  // host [B*T]) receives every position's loss (0 where not scored). Keeps what
  // backward() needs. Checks every id first.
  double forward(const int32_t* inputs, const int32_t* targets, int64_t batch, int64_t length, States* states,
                 T* token_losses);
  // Adds dLoss/dparams of the last forward to the gradients; BAD_STATE when
  // there was no forward since the last backward (any other call in between
  // that runs the network, e.g. step or evaluate, also drops it).
  void backward();
  bool has_forward() const { return has_forward_; }

  // One token per row in evaluation mode (dropout off): tokens host [B],
  // log_probs host [B * vocab] (nullable: the state still advances). The
  // states advance by one token (position encoding at their position()).
  void step(const int32_t* tokens, int64_t batch, States& states, T* log_probs);
  // Feeds inputs [B][T] through the layers in evaluation mode, leaving the
  // final state in `states`, without the output layer (a prompt, before the
  // step that predicts the first new token). Softmax layers need empty caches.
  void prefill(const int32_t* inputs, int64_t batch, int64_t length, States& states);

  // The token stream scored as in the paper (see fwp_lm_evaluate in fwp/lm.h),
  // in evaluation mode; the training flag is restored after.
  LmEvalResult evaluate(const int32_t* tokens, int64_t count, LmEvalMode mode, int64_t length);

 private:
  struct Block;
  struct Workspace;

  // How many final positions of each row the output layer scores (all: length).
  double run(const int32_t* inputs, const int32_t* targets, int64_t batch, int64_t length, States* states,
             bool keep_for_backward, int64_t scored_tail, T* token_losses);
  void blocks_forward(int64_t batch, int64_t length, States* states, bool training);
  // The input layer (Embedding, or AdaptiveInput), scale, positions, dropout.
  void input_forward(int64_t batch, int64_t length, int64_t position, bool training);
  void input_backward();
  // The output layer and loss over `hidden` [rows, d] with ws.targets: the summed loss; the per-row
  // losses go to row_losses (host, nullable).
  double output_forward(const T* hidden, int64_t rows, std::vector<T>* row_losses);
  // dhidden [rows, d] of the last output_forward, for a loss scaled by `scale`; adds parameter gradients.
  void output_backward(const T* hidden, int64_t rows, T scale, T* dhidden);
  // log_probs [rows, V] (host) of `hidden` [rows, d] (device), in evaluation mode.
  void output_log_probs(const T* hidden, int64_t rows, T* log_probs);
  void sinusoid_rows(int64_t first, int64_t count, std::vector<T>& out) const;

  LmConfig config_;
  std::shared_ptr<Backend<T>> backend_;
  Rng rng_;
  std::shared_ptr<uint64_t> dropout_stream_ = std::make_shared<uint64_t>(0);
  bool training_ = true;
  ParameterList<T> params_;
  std::unique_ptr<Embedding<T>> embedding_;         // plain input (no cutoffs, div_val 1)
  std::unique_ptr<AdaptiveInput<T>> adaptive_input_;  // adaptive input and ...
  std::unique_ptr<AdaptiveSoftmax<T>> adaptive_softmax_;  // ... output (cutoffs or div_val > 1)
  std::vector<std::unique_ptr<Block>> blocks_;
  std::unique_ptr<LayerNorm<T>> final_norm_;  // pre-LN only
  int64_t out_weight_ = -1;                   // plain: untied output weight [V, d] (-1 when tied)
  int64_t out_bias_ = -1;                     // plain: [V]
  std::unique_ptr<Dropout<T>> input_dropout_;
  std::unique_ptr<Workspace> ws_;
  bool has_forward_ = false;
};

extern template class LmNetwork<float>;
extern template class LmNetwork<double>;

// The float network behind the Model interface (what fwp_model holds).
class LmModel final : public Model {
 public:
  // Validates the config; parameters are seeded by config.seed, or through
  // context->make_rng() when it is 0.
  LmModel(std::shared_ptr<Context> context, const LmConfig& config);

  LmNetwork<float>& network() { return net_; }
  const LmNetwork<float>& network() const { return net_; }
  const LmConfig& config() const { return net_.config(); }

  fwp_model_kind kind() const override { return FWP_MODEL_LANGUAGE; }
  ParameterList<float>& parameters() override { return net_.params(); }
  const ParameterList<float>& parameters() const override { return net_.params(); }
  void set_training(bool training) override { net_.set_training(training); }
  bool training() const override { return net_.training(); }
  void backward() override { net_.backward(); }
  nlohmann::json config_json() const override;
  Rng::State rng_state() const override { return net_.rng_state(); }
  void set_rng_state(const Rng::State& state) override { net_.set_rng_state(state); }
  void set_dropout_stream(uint64_t stream) override { net_.set_dropout_stream(stream); }
  std::vector<AttentionStateSpec> attention_state_specs() const override { return net_.state_specs(); }
  const std::shared_ptr<Context>& context() const override { return context_; }

 private:
  std::shared_ptr<Context> context_;
  LmNetwork<float> net_;
};

// The parameters LmNetwork declares for `config`, in its order (the registry's shapes).
std::vector<std::pair<std::string, std::vector<int64_t>>> lm_parameter_shapes(const LmConfig& config);

}  // namespace fwp
