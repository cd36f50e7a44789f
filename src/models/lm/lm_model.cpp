#include "models/lm/lm_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/context.h"
#include "core/error.h"
#include "core/limits.h"

namespace fwp {

namespace {

std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }

// Restores a network's training flag when an evaluation leaves (also by an exception).
template <typename Net>
class TrainingFlagGuard {
 public:
  explicit TrainingFlagGuard(Net& net) : net_(net), saved_(net.training()) { net_.set_training(false); }
  ~TrainingFlagGuard() { net_.set_training(saved_); }
  TrainingFlagGuard(const TrainingFlagGuard&) = delete;
  TrainingFlagGuard& operator=(const TrainingFlagGuard&) = delete;

 private:
  Net& net_;
  bool saved_;
};

// Rows of windows evaluated together (bounded so one call's activations stay small).
int64_t rows_per_call(int64_t length) { return std::max<int64_t>(1, std::min<int64_t>(32, 16384 / length)); }

}  // namespace

// ---- the blocks and the activations ---------------------------------------------------------

template <typename T>
struct LmNetwork<T>::Block {
  std::unique_ptr<FastWeightAttention<T>> attn;
  std::unique_ptr<LayerNorm<T>> norm1, norm2;
  std::unique_ptr<Linear<T>> ff1, ff2;
  std::unique_ptr<Dropout<T>> drop_attn, drop_inner, drop_out;
  FastWeightAttentionWorkspace<T> aws;
  // Activations of the last forward ([N, d] unless noted; N = B * T):
  Buffer<T> n1;        // pre-LN: LN1(x), the attention's input
  Buffer<T> a;         // dropout(attn(.))
  Buffer<T> s1;        // x + a (post-LN: LN1's input; pre-LN: h')
  Buffer<T> h1;        // post-LN: LN1(s1)
  Buffer<T> n2;        // pre-LN: LN2(h'), the feed-forward input
  Buffer<T> ff_pre;    // [N, d_ff] W1 . + b1
  Buffer<T> ff_act;    // [N, d_ff] dropout(relu(ff_pre))
  Buffer<T> f;         // dropout(W2 ff_act + b2)
  Buffer<T> s2;        // post-LN: h1 + f (LN2's input)
};

template <typename T>
struct LmNetwork<T>::Workspace {
  int64_t batch = 0, length = 0, tail = 0, scored = 0;
  IdBuffer<T> ids, targets;  // targets of the scored rows
  std::vector<Buffer<T>> hs; // [L + 1] block inputs/outputs, [N, d]
  Buffer<T> final_out;       // pre-LN: the final LayerNorm's output
  Buffer<T> selected;        // the hidden rows scored when not every position is
  Buffer<T> logits;          // [R, V], then its gradient
  Buffer<T> pe;              // [T, d] position encodings of this call
  CrossEntropyLoss<T>* loss = nullptr;
  std::unique_ptr<CrossEntropyLoss<T>> loss_module;
  Buffer<T> lse, row_loss;   // step: log-sum-exp per row
  Buffer<T> g, d1, d2, dff;  // backward scratch
};

template <typename T>
LmNetwork<T>::LmNetwork(const LmConfig& config, std::shared_ptr<Backend<T>> backend, Rng rng)
    : config_(config), backend_(std::move(backend)), rng_(rng) {
  config_.validate("config->");
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "LmNetwork needs a backend");
  const int64_t V = config_.vocab_size, d = config_.d_model();
  // Declaration order is the checkpoint format (lm_parameter_shapes() mirrors it).
  if (config_.adaptive()) {
    adaptive_input_ = std::make_unique<AdaptiveInput<T>>(params_, backend_, "embedding", V, d, config_.cutoffs,
                                                         config_.div_val);
  } else {
    embedding_ = std::make_unique<Embedding<T>>(params_, backend_, "embedding", V, d);
  }
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    auto b = std::make_unique<Block>();
    b->attn = std::make_unique<FastWeightAttention<T>>(params_, backend_, p + "attn.", config_.attention);
    b->norm1 = std::make_unique<LayerNorm<T>>(params_, backend_, p + "norm1", d);
    b->ff1 = std::make_unique<Linear<T>>(params_, backend_, p + "ff.linear1", d, config_.d_ff, true);
    b->ff2 = std::make_unique<Linear<T>>(params_, backend_, p + "ff.linear2", config_.d_ff, d, true);
    b->norm2 = std::make_unique<LayerNorm<T>>(params_, backend_, p + "norm2", d);
    b->drop_attn = std::make_unique<Dropout<T>>(backend_, config_.dropout, dropout_stream_);
    b->drop_inner = std::make_unique<Dropout<T>>(backend_, config_.dropout, dropout_stream_);
    b->drop_out = std::make_unique<Dropout<T>>(backend_, config_.dropout, dropout_stream_);
    blocks_.push_back(std::move(b));
  }
  if (config_.pre_norm) final_norm_ = std::make_unique<LayerNorm<T>>(params_, backend_, "final_norm", d);
  if (adaptive_input_) {
    adaptive_softmax_ = std::make_unique<AdaptiveSoftmax<T>>(
        params_, backend_, "output", V, d, config_.cutoffs, config_.div_val,
        config_.tie_embeddings ? adaptive_input_.get() : nullptr, config_.tie_projections());
  } else {
    if (!config_.tie_embeddings) {
      params_.declare("output.weight", {V, d});
      out_weight_ = params_.size() - 1;
    }
    params_.declare("output.bias", {V});
    out_bias_ = params_.size() - 1;
  }
  params_.allocate(backend_);

  // Init in declaration order: N(0, init_std^2) weights (the attention with
  // its own init_std; adaptive projections N(0, 0.01^2) as the authors'
  // proj_init_std), zero biases, unit LayerNorm gains.
  if (adaptive_input_)
    adaptive_input_->init_normal(params_, rng_, config_.init_std);
  else
    embedding_->init_normal(params_, rng_, config_.init_std);
  for (auto& b : blocks_) {
    b->attn->init(params_, rng_);
    b->norm1->init(params_);
    b->ff1->init_normal(params_, rng_, config_.init_std);
    b->ff2->init_normal(params_, rng_, config_.init_std);
    b->norm2->init(params_);
  }
  if (final_norm_) final_norm_->init(params_);
  if (adaptive_softmax_) {
    adaptive_softmax_->init_normal(params_, rng_, config_.init_std);
  } else {
    if (out_weight_ >= 0) {
      Parameter<T>& w = params_[out_weight_];
      std::vector<T> host(static_cast<size_t>(w.numel()));
      for (T& v : host) v = static_cast<T>(rng_.normal() * config_.init_std);
      w.value.from_host(host.data(), w.numel());
    }
    params_[out_bias_].value.zero();
  }
  input_dropout_ = std::make_unique<Dropout<T>>(backend_, config_.dropout, dropout_stream_);
  ws_ = std::make_unique<Workspace>();
  ws_->loss_module = std::make_unique<CrossEntropyLoss<T>>(backend_);
  ws_->loss = ws_->loss_module.get();
}

template <typename T>
LmNetwork<T>::~LmNetwork() = default;

template <typename T>
std::vector<AttentionStateSpec> LmNetwork<T>::state_specs() const {
  return std::vector<AttentionStateSpec>(static_cast<size_t>(config_.num_layers), config_.attention.state_spec());
}

template <typename T>
void LmNetwork<T>::check_states(const States& states, int64_t batch) const {
  require(static_cast<int64_t>(states.size()) == config_.num_layers, FWP_ERR_SHAPE_MISMATCH,
          "state holds " + std::to_string(states.size()) + " attention layers where this language model has " +
              std::to_string(config_.num_layers) + " (a state of another model?)");
  const AttentionStateSpec spec = config_.attention.state_spec();
  for (size_t l = 0; l < states.size(); ++l) {
    states[l].check_spec(spec, "layer " + std::to_string(l) + " of the state");
    require(states[l].backend() == backend_, FWP_ERR_CONTEXT_MISMATCH,
            "the state lives on another device than the model");
    if (batch > 0 && !states[l].empty())
      require(states[l].batch() == batch, FWP_ERR_SHAPE_MISMATCH,
              "batch must equal the state's batch (" + std::to_string(states[l].batch()) + ")" + got(batch));
  }
}

template <typename T>
void LmNetwork<T>::check_ids(const int32_t* ids, int64_t count, const char* what, bool allow_negative) const {
  const int64_t V = config_.vocab_size;
  for (int64_t i = 0; i < count; ++i) {
    const int32_t id = ids[i];
    if (id >= V || (id < 0 && !allow_negative)) {
      throw Error(FWP_ERR_OUT_OF_RANGE, std::string(what) + "[" + std::to_string(i) + "] must be " +
                                            (allow_negative ? "negative (not scored) or " : "") + "in [0, " +
                                            std::to_string(V) + ")" + got(id));
    }
  }
}

template <typename T>
void LmNetwork<T>::sinusoid_rows(int64_t first, int64_t count, std::vector<T>& out) const {
  // The authors' PositionalEmbedding: [sin(p f_0) .. sin(p f_{h-1}), cos(p f_0) .. cos(p f_{h-1})],
  // f_i = 1 / 10000^(2 i / d), h = d / 2. (For an odd d, which their code
  // cannot run, the sines take ceil(d / 2) columns and the cosines the rest.)
  const int64_t d = config_.d_model(), half = (d + 1) / 2;
  out.assign(static_cast<size_t>(count * d), T(0));
  for (int64_t r = 0; r < count; ++r) {
    const double p = static_cast<double>(first + r);
    for (int64_t i = 0; i < half; ++i) {
      const double f = 1.0 / std::pow(10000.0, static_cast<double>(2 * i) / static_cast<double>(d));
      out[static_cast<size_t>(r * d + i)] = static_cast<T>(std::sin(p * f));
      if (half + i < d) out[static_cast<size_t>(r * d + half + i)] = static_cast<T>(std::cos(p * f));
    }
  }
}

// ---- input and output layers (plain or adaptive) --------------------------------------------

template <typename T>
void LmNetwork<T>::input_forward(int64_t batch, int64_t length, int64_t position, bool training) {
  Workspace& ws = *ws_;
  const int64_t d = config_.d_model(), N = batch * length;
  Buffer<T>& h0 = ws.hs[0];
  const TensorView<T> h0_view(h0.data(), {N, d});
  if (adaptive_input_) {
    adaptive_input_->forward(params_, ws.ids.view({N}), h0_view);  // scaled by sqrt(d_model) inside
  } else {
    embedding_->forward(params_, ws.ids.view({N}), h0_view);
    // The authors' AdaptiveEmbedding scales by sqrt(d_proj) = sqrt(d_model).
    backend_->scale(N * d, static_cast<T>(std::sqrt(static_cast<double>(d))), h0.data());
  }
  if (config_.position == PositionEncoding::Sinusoidal) {
    std::vector<T> host;
    sinusoid_rows(position, length, host);
    ws.pe.resize(backend_, length * d);
    ws.pe.from_host(host.data(), length * d);
    backend_->add_bias(h0.data(), ws.pe.data(), batch, length * d);  // the same rows for every sequence
  }
  input_dropout_->forward(ConstView<T>(h0.data(), {N, d}), h0_view, rng_, training);
}

template <typename T>
void LmNetwork<T>::input_backward() {
  Workspace& ws = *ws_;
  const int64_t d = config_.d_model(), N = ws.batch * ws.length;
  const TensorView<T> g(ws.g.data(), {N, d});
  input_dropout_->backward(g, g);
  if (adaptive_input_) {
    adaptive_input_->backward(params_, ws.ids.view({N}), g);  // the scale is applied inside
    return;
  }
  backend_->scale(N * d, static_cast<T>(std::sqrt(static_cast<double>(d))), ws.g.data());
  embedding_->backward(params_, ws.ids.view({N}), g);
}

template <typename T>
double LmNetwork<T>::output_forward(const T* hidden, int64_t rows, std::vector<T>* row_losses) {
  Workspace& ws = *ws_;
  const int64_t d = config_.d_model();
  if (adaptive_softmax_) {
    // Only the head and each row's own tail cluster are computed: no [rows, V] logits.
    const double total = adaptive_softmax_->forward(params_, ConstView<T>(hidden, {rows, d}), ws.targets.view({rows}));
    if (row_losses) *row_losses = adaptive_softmax_->row_losses().to_host();
    return total;
  }
  const int64_t V = config_.vocab_size;
  ws.logits.resize(backend_, rows * V);
  const T* w = params_[out_weight_ >= 0 ? out_weight_ : embedding_->weight_index()].value.data();
  backend_->gemm(false, true, rows, V, d, T(1), hidden, d, w, d, T(0), ws.logits.data(), V);
  backend_->add_bias(ws.logits.data(), params_[out_bias_].value.data(), rows, V);
  const double total = ws.loss->forward(ConstView<T>(ws.logits.data(), {rows, V}), ws.targets.view({rows}));
  if (row_losses) *row_losses = ws.loss->row_losses().to_host();
  return total;
}

template <typename T>
void LmNetwork<T>::output_backward(const T* hidden, int64_t rows, T scale, T* dhidden) {
  Workspace& ws = *ws_;
  const int64_t d = config_.d_model();
  if (adaptive_softmax_) {
    adaptive_softmax_->backward(params_, scale, TensorView<T>(dhidden, {rows, d}));
    return;
  }
  const int64_t V = config_.vocab_size;
  ws.loss->backward(ConstView<T>(ws.logits.data(), {rows, V}), ws.targets.view({rows}), scale,
                    TensorView<T>(ws.logits.data(), {rows, V}));
  const T* dlogits = ws.logits.data();
  Parameter<T>& w = params_[out_weight_ >= 0 ? out_weight_ : embedding_->weight_index()];
  backend_->gemm(true, false, V, d, rows, T(1), dlogits, V, hidden, d, T(1), w.grad.data(), d);
  backend_->bias_grad_accumulate(params_[out_bias_].grad.data(), dlogits, rows, V);
  backend_->gemm(false, false, rows, d, V, T(1), dlogits, V, w.value.data(), d, T(0), dhidden, d);
}

template <typename T>
void LmNetwork<T>::output_log_probs(const T* hidden, int64_t rows, T* log_probs) {
  Workspace& ws = *ws_;
  const auto& bp = backend_;
  const int64_t d = config_.d_model(), V = config_.vocab_size;
  ws.logits.resize(bp, rows * V);
  if (adaptive_softmax_) {
    // Shortlist: the head's log-softmax; a tail word: its cluster's head log-prob + the tail's log-softmax.
    adaptive_softmax_->log_probs(params_, ConstView<T>(hidden, {rows, d}), TensorView<T>(ws.logits.data(), {rows, V}));
    backend_->download(log_probs, ws.logits.data(), rows * V);
    return;
  }
  const T* w = params_[out_weight_ >= 0 ? out_weight_ : embedding_->weight_index()].value.data();
  backend_->gemm(false, true, rows, V, d, T(1), hidden, d, w, d, T(0), ws.logits.data(), V);
  backend_->add_bias(ws.logits.data(), params_[out_bias_].value.data(), rows, V);
  // log p = logit - logsumexp(logits); the cross-entropy op computes the latter (targets: any valid id).
  const std::vector<int32_t> zeros(static_cast<size_t>(rows), 0);
  ws.targets.upload(bp, zeros.data(), rows);
  ws.lse.resize(bp, rows);
  ws.row_loss.resize(bp, rows);
  backend_->cross_entropy_forward(ws.logits.data(), ws.targets.data(), ws.row_loss.data(), ws.lse.data(), rows, V);
  backend_->download(log_probs, ws.logits.data(), rows * V);
  const std::vector<T> lse = ws.lse.to_host();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t v = 0; v < V; ++v) log_probs[r * V + v] -= lse[static_cast<size_t>(r)];
}

// ---- forward ------------------------------------------------------------------------------

template <typename T>
void LmNetwork<T>::blocks_forward(int64_t batch, int64_t length, States* states, bool training) {
  Workspace& ws = *ws_;
  Backend<T>& be = *backend_;
  const auto& bp = backend_;
  const int64_t d = config_.d_model(), F = config_.d_ff, N = batch * length;
  const bool step = states != nullptr && length == 0;  // see step(): one token, the attention's step
  const int64_t rows = step ? batch : N;
  const Shape x_shape = step ? Shape{batch, d} : Shape{batch, length, d};
  Rng* redraw = training && config_.attention.favor_redraw ? &rng_ : nullptr;
  for (size_t l = 0; l < blocks_.size(); ++l) {
    Block& b = *blocks_[l];
    const T* x = ws.hs[l].data();
    T* out = ws.hs[l + 1].data();
    auto view = [&](Buffer<T>& buf, int64_t cols) { return TensorView<T>(buf.data(), {rows, cols}); };
    auto resize = [&](Buffer<T>& buf, int64_t cols) { buf.resize(bp, rows * cols); };
    resize(b.a, d);
    resize(b.s1, d);
    resize(b.ff_pre, F);
    resize(b.ff_act, F);
    resize(b.f, d);
    const T* attn_in = x;
    if (config_.pre_norm) {
      resize(b.n1, d);
      b.norm1->forward(params_, ConstView<T>(x, {rows, d}), view(b.n1, d));
      attn_in = b.n1.data();
    }
    AttentionState<T>* st = states ? &(*states)[l] : nullptr;
    if (step) {
      b.attn->step(params_, ConstView<T>(attn_in, x_shape), *st, TensorView<T>(b.a.data(), x_shape), b.aws);
    } else {
      b.attn->forward(params_, ConstView<T>(attn_in, x_shape), st, st ? StateUpdate::Write : StateUpdate::Keep,
                      TensorView<T>(b.a.data(), x_shape), b.aws, redraw);
    }
    b.drop_attn->forward(view(b.a, d), view(b.a, d), rng_, training);
    be.copy(b.s1.data(), x, rows * d);
    be.axpy(rows * d, T(1), b.a.data(), b.s1.data());
    const T* ff_in = nullptr;
    if (config_.pre_norm) {
      resize(b.n2, d);
      b.norm2->forward(params_, view(b.s1, d), view(b.n2, d));
      ff_in = b.n2.data();
    } else {
      resize(b.h1, d);
      b.norm1->forward(params_, view(b.s1, d), view(b.h1, d));
      ff_in = b.h1.data();
    }
    b.ff1->forward(params_, ConstView<T>(ff_in, {rows, d}), view(b.ff_pre, F));
    be.relu_forward(b.ff_pre.data(), b.ff_act.data(), rows * F);
    b.drop_inner->forward(view(b.ff_act, F), view(b.ff_act, F), rng_, training);
    b.ff2->forward(params_, view(b.ff_act, F), view(b.f, d));
    b.drop_out->forward(view(b.f, d), view(b.f, d), rng_, training);
    if (config_.pre_norm) {
      be.copy(out, b.s1.data(), rows * d);
      be.axpy(rows * d, T(1), b.f.data(), out);
    } else {
      resize(b.s2, d);
      be.copy(b.s2.data(), ff_in, rows * d);
      be.axpy(rows * d, T(1), b.f.data(), b.s2.data());
      b.norm2->forward(params_, view(b.s2, d), TensorView<T>(out, {rows, d}));
    }
  }
}

template <typename T>
double LmNetwork<T>::run(const int32_t* inputs, const int32_t* targets, int64_t batch, int64_t length,
                         States* states, bool keep_for_backward, int64_t scored_tail, T* token_losses) {
  has_forward_ = false;  // also when a check below fails: a backward must not use older activations
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(batch));
  require(length >= 1, FWP_ERR_INVALID_ARGUMENT, "length must be >= 1" + got(length));
  const int64_t V = config_.vocab_size, d = config_.d_model();
  const int64_t N = checked_mul(batch, length, "batch * length");
  checked_mul(N, std::max(d, config_.d_ff), "batch * length * max(d_model, d_ff)");
  const int64_t tail = std::min(scored_tail, length), R = batch * tail;
  checked_mul(R, V, "the scored positions * vocab_size (the logits)");
  check_ids(inputs, N, "inputs", false);
  check_ids(targets, N, "targets", true);
  if (states) {
    check_states(*states, batch);
    // Softmax attention cannot continue a cache in a forward (the module refuses); say so before any layer runs.
    if (config_.attention.softmax && !(*states)[0].empty() && (*states)[0].length() > 0) {
      throw Error(FWP_ERR_UNSUPPORTED,
                  "a softmax-attention language model cannot continue a state in a forward (its key/value cache "
                  "holds " + std::to_string((*states)[0].length()) +
                      " positions): reset the state, or continue token by token with fwp_lm_step");
    }
  }
  // Targets of the scored rows (the last `tail` positions of each row).
  std::vector<int32_t> scored_targets(static_cast<size_t>(R));
  int64_t scored = 0;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < tail; ++t) {
      const int32_t id = targets[b * length + length - tail + t];
      scored_targets[static_cast<size_t>(b * tail + t)] = id < 0 ? -1 : id;
      scored += id >= 0 ? 1 : 0;
    }
  }
  require(scored > 0, FWP_ERR_INVALID_ARGUMENT, "targets are all negative: the loss needs at least one target");

  Workspace& ws = *ws_;
  const auto& bp = backend_;
  ws.ids.upload(bp, inputs, N);
  ws.targets.upload(bp, scored_targets.data(), R);
  ws.hs.resize(blocks_.size() + 1);
  for (Buffer<T>& h : ws.hs) h.resize(bp, N * d);
  ws.batch = batch;
  ws.length = length;
  ws.tail = tail;
  ws.scored = scored;

  const bool training = training_ && keep_for_backward;
  input_forward(batch, length, states && !(*states)[0].empty() ? (*states)[0].position() : 0, training);
  blocks_forward(batch, length, states, training);
  const T* hidden = ws.hs.back().data();
  if (final_norm_) {
    ws.final_out.resize(bp, N * d);
    final_norm_->forward(params_, ConstView<T>(hidden, {N, d}), TensorView<T>(ws.final_out.data(), {N, d}));
    hidden = ws.final_out.data();
  }
  if (tail < length) {
    ws.selected.resize(bp, R * d);
    for (int64_t b = 0; b < batch; ++b)
      backend_->copy(ws.selected.data() + b * tail * d, hidden + (b * length + length - tail) * d, tail * d);
    hidden = ws.selected.data();
  }
  std::vector<T> rows;
  const double total = output_forward(hidden, R, token_losses ? &rows : nullptr);
  if (token_losses) {
    std::fill(token_losses, token_losses + N, T(0));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < tail; ++t)
        token_losses[b * length + length - tail + t] = rows[static_cast<size_t>(b * tail + t)];
  }
  has_forward_ = keep_for_backward;
  return total / static_cast<double>(scored);
}

template <typename T>
double LmNetwork<T>::forward(const int32_t* inputs, const int32_t* targets, int64_t batch, int64_t length,
                             States* states, T* token_losses) {
  return run(inputs, targets, batch, length, states, true, length, token_losses);
}

// ---- backward -----------------------------------------------------------------------------

template <typename T>
void LmNetwork<T>::backward() {
  require(has_forward_, FWP_ERR_BAD_STATE, "backward needs a forward first (one backward per forward)");
  has_forward_ = false;
  Workspace& ws = *ws_;
  Backend<T>& be = *backend_;
  const auto& bp = backend_;
  const int64_t d = config_.d_model(), F = config_.d_ff;
  const int64_t B = ws.batch, Tn = ws.length, N = B * Tn;
  ws.g.resize(bp, N * d);
  ws.d1.resize(bp, N * d);
  ws.d2.resize(bp, N * d);
  ws.dff.resize(bp, N * F);
  auto view = [&](Buffer<T>& buf, int64_t cols) { return TensorView<T>(buf.data(), {N, cols}); };

  // Loss and output layer (every position was scored: tail == length).
  const T scale = static_cast<T>(1.0 / static_cast<double>(ws.scored));
  const T* hidden = final_norm_ ? ws.final_out.data() : ws.hs.back().data();
  if (final_norm_) {
    output_backward(hidden, N, scale, ws.d1.data());
    final_norm_->backward(params_, view(ws.hs.back(), d), view(ws.d1, d), view(ws.g, d), InputGrad::Overwrite);
  } else {
    output_backward(hidden, N, scale, ws.g.data());
  }

  // ws.g holds dLoss/d(output of the block); each block leaves dLoss/d(its input) there.
  for (size_t li = blocks_.size(); li-- > 0;) {
    Block& b = *blocks_[li];
    const Shape x_shape{B, Tn, d};
    const ConstView<T> x(ws.hs[li].data(), {N, d});
    if (config_.pre_norm) {
      // out = s1 + f(LN2(s1)); s1 = x + drop(attn(LN1(x))).
      be.copy(ws.d1.data(), ws.g.data(), N * d);
      b.drop_out->backward(view(ws.d1, d), view(ws.d1, d));
      b.ff2->backward(params_, view(b.ff_act, F), view(ws.d1, d), view(ws.dff, F), InputGrad::Overwrite);
      b.drop_inner->backward(view(ws.dff, F), view(ws.dff, F));
      be.relu_backward(b.ff_pre.data(), ws.dff.data(), ws.dff.data(), N * F);
      b.ff1->backward(params_, view(b.n2, d), view(ws.dff, F), view(ws.d1, d), InputGrad::Overwrite);
      be.copy(ws.d2.data(), ws.g.data(), N * d);  // ds1: the residual path ...
      b.norm2->backward(params_, view(b.s1, d), view(ws.d1, d), view(ws.d2, d), InputGrad::Accumulate);
      be.copy(ws.d1.data(), ws.d2.data(), N * d);  // ... plus the feed-forward path
      b.drop_attn->backward(view(ws.d1, d), view(ws.d1, d));
      b.attn->backward(params_, ConstView<T>(b.n1.data(), x_shape), ConstView<T>(ws.d1.data(), x_shape),
                       TensorView<T>(ws.d1.data(), x_shape), InputGrad::Overwrite, b.aws);
      b.norm1->backward(params_, x, view(ws.d1, d), view(ws.d2, d), InputGrad::Accumulate);
    } else {
      // out = LN2(h1 + f(h1)); h1 = LN1(x + drop(attn(x))).
      b.norm2->backward(params_, view(b.s2, d), view(ws.g, d), view(ws.d1, d), InputGrad::Overwrite);
      be.copy(ws.d2.data(), ws.d1.data(), N * d);  // dh1 through the residual
      b.drop_out->backward(view(ws.d1, d), view(ws.d1, d));
      b.ff2->backward(params_, view(b.ff_act, F), view(ws.d1, d), view(ws.dff, F), InputGrad::Overwrite);
      b.drop_inner->backward(view(ws.dff, F), view(ws.dff, F));
      be.relu_backward(b.ff_pre.data(), ws.dff.data(), ws.dff.data(), N * F);
      b.ff1->backward(params_, view(b.h1, d), view(ws.dff, F), view(ws.d2, d), InputGrad::Accumulate);
      b.norm1->backward(params_, view(b.s1, d), view(ws.d2, d), view(ws.d1, d), InputGrad::Overwrite);
      be.copy(ws.d2.data(), ws.d1.data(), N * d);  // dx through the residual
      b.drop_attn->backward(view(ws.d1, d), view(ws.d1, d));
      b.attn->backward(params_, ConstView<T>(x.data(), x_shape), ConstView<T>(ws.d1.data(), x_shape),
                       TensorView<T>(ws.d2.data(), x_shape), InputGrad::Accumulate, b.aws);
    }
    std::swap(ws.g, ws.d2);
  }
  input_backward();
}

// ---- recurrent use ------------------------------------------------------------------------

template <typename T>
void LmNetwork<T>::step(const int32_t* tokens, int64_t batch, States& states, T* log_probs) {
  has_forward_ = false;
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(batch));
  const int64_t V = config_.vocab_size, d = config_.d_model();
  checked_mul(batch, std::max({d, config_.d_ff, V}), "batch * max(d_model, d_ff, vocab_size)");
  check_ids(tokens, batch, "tokens", false);
  check_states(states, batch);
  Workspace& ws = *ws_;
  const auto& bp = backend_;
  ws.ids.upload(bp, tokens, batch);
  ws.hs.resize(blocks_.size() + 1);
  for (Buffer<T>& h : ws.hs) h.resize(bp, batch * d);
  ws.batch = batch;
  ws.length = 1;
  input_forward(batch, 1, states[0].empty() ? 0 : states[0].position(), false);
  blocks_forward(batch, 0, &states, false);  // length 0: the attention's step
  const T* hidden = ws.hs.back().data();
  if (final_norm_) {
    ws.final_out.resize(bp, batch * d);
    final_norm_->forward(params_, ConstView<T>(hidden, {batch, d}), TensorView<T>(ws.final_out.data(), {batch, d}));
    hidden = ws.final_out.data();
  }
  if (log_probs) output_log_probs(hidden, batch, log_probs);
}

template <typename T>
void LmNetwork<T>::prefill(const int32_t* inputs, int64_t batch, int64_t length, States& states) {
  has_forward_ = false;
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(batch));
  require(length >= 1, FWP_ERR_INVALID_ARGUMENT, "length must be >= 1" + got(length));
  const int64_t d = config_.d_model();
  const int64_t N = checked_mul(batch, length, "batch * length");
  checked_mul(N, std::max(d, config_.d_ff), "batch * length * max(d_model, d_ff)");
  check_ids(inputs, N, "inputs", false);
  check_states(states, batch);
  require(!config_.attention.softmax || states[0].empty() || states[0].length() == 0, FWP_ERR_UNSUPPORTED,
          "a softmax-attention language model feeds a prompt only into an empty state (reset it, or use steps)");
  Workspace& ws = *ws_;
  ws.ids.upload(backend_, inputs, N);
  ws.hs.resize(blocks_.size() + 1);
  for (Buffer<T>& h : ws.hs) h.resize(backend_, N * d);
  ws.batch = batch;
  ws.length = length;
  input_forward(batch, length, states[0].empty() ? 0 : states[0].position(), false);
  blocks_forward(batch, length, &states, false);
}

// ---- evaluation ---------------------------------------------------------------------------

template <typename T>
LmEvalResult LmNetwork<T>::evaluate(const int32_t* tokens, int64_t count, LmEvalMode mode, int64_t length) {
  has_forward_ = false;
  require(count >= 2, FWP_ERR_INVALID_ARGUMENT, "count must be >= 2 (a token and its successor)" + got(count));
  require(length >= 1, FWP_ERR_INVALID_ARGUMENT, "length must be >= 1" + got(length));
  check_ids(tokens, count, "tokens", false);
  TrainingFlagGuard<LmNetwork<T>> eval_mode(*this);
  const int64_t P = count - 1;  // predictions: token i + 1 from tokens 0..i
  LmEvalResult result;
  auto add = [&](double mean, int64_t scored) {
    result.total_nll += mean * static_cast<double>(scored);
    result.scored += scored;
  };
  std::vector<int32_t> in, tg;
  if (mode == LmEvalMode::Segments || mode == LmEvalMode::Carry) {
    if (mode == LmEvalMode::Carry) {
      require(!config_.attention.softmax, FWP_ERR_UNSUPPORTED,
              "carry mode needs fast-weight layers: a softmax-attention forward cannot continue its key/value "
              "cache (evaluate softmax models with segments or a sliding window)");
      States states;
      for (const AttentionStateSpec& spec : state_specs()) states.emplace_back(backend_, spec, 1);
      for (int64_t start = 0; start < P; start += length) {
        const int64_t n = std::min(length, P - start);
        add(run(tokens + start, tokens + start + 1, 1, n, &states, false, n, nullptr), n);
      }
      return result;
    }
    // Independent segments: full ones batched, then the shorter last one.
    const int64_t full = P / length, G = rows_per_call(length);
    for (int64_t s0 = 0; s0 < full; s0 += G) {
      const int64_t rows = std::min(G, full - s0);
      in.resize(static_cast<size_t>(rows * length));
      tg.resize(in.size());
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t start = (s0 + r) * length;
        std::copy(tokens + start, tokens + start + length, in.begin() + r * length);
        std::copy(tokens + start + 1, tokens + start + 1 + length, tg.begin() + r * length);
      }
      add(run(in.data(), tg.data(), rows, length, nullptr, false, length, nullptr), rows * length);
    }
    const int64_t rest = P - full * length;
    if (rest > 0) add(run(tokens + full * length, tokens + full * length + 1, 1, rest, nullptr, false, rest, nullptr), rest);
    return result;
  }
  // Sliding window (the authors' eval_sliding_window.py): the first window
  // scores all its positions; the window starting at s >= 1 (tokens s .. s +
  // length - 1) scores only its last position, the prediction of token s +
  // length. Every window starts from zero; windows are batched and only the
  // scored rows reach the output layer.
  const int64_t first = std::min(length, P);
  add(run(tokens, tokens + 1, 1, first, nullptr, false, first, nullptr), first);
  const int64_t windows = P - first, G = rows_per_call(length);
  for (int64_t w0 = 0; w0 < windows; w0 += G) {
    const int64_t rows = std::min(G, windows - w0);
    in.resize(static_cast<size_t>(rows * length));
    tg.assign(in.size(), -1);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t start = 1 + w0 + r;
      std::copy(tokens + start, tokens + start + length, in.begin() + r * length);
      tg[static_cast<size_t>(r * length + length - 1)] = tokens[start + length];
    }
    add(run(in.data(), tg.data(), rows, length, nullptr, false, 1, nullptr), rows);
  }
  return result;
}

template class LmNetwork<float>;
template class LmNetwork<double>;

// ---- parameter shapes -----------------------------------------------------------------------

std::vector<std::pair<std::string, std::vector<int64_t>>> lm_parameter_shapes(const LmConfig& c) {
  const int64_t V = c.vocab_size, d = c.d_model(), F = c.d_ff;
  const FastWeightAttentionConfig& a = c.attention;
  const int64_t P = a.num_heads * a.d_head;
  const bool delta = !a.softmax && a.update_rule == UpdateRule::Delta;
  std::vector<std::pair<std::string, std::vector<int64_t>>> s;
  if (c.adaptive()) {
    for (auto& p : AdaptiveInput<float>::parameter_shapes("embedding", V, d, c.cutoffs, c.div_val))
      s.push_back({p.name, p.shape});
  } else {
    s.push_back({"embedding.weight", {V, d}});
  }
  auto linear = [&](const std::string& name, int64_t in, int64_t out, bool bias) {
    s.push_back({name + ".weight", {out, in}});
    if (bias) s.push_back({name + ".bias", {out}});
  };
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    linear(p + "attn.q_proj", d, P, a.use_bias);
    linear(p + "attn.k_proj", d, P, a.use_bias);
    linear(p + "attn.v_proj", d, P, a.use_bias);
    if (delta) linear(p + "attn.beta_proj", d, a.num_heads, a.use_bias);
    linear(p + "attn.out_proj", P, d, a.use_bias);
    if (!a.softmax && a.feature_map == FeatureMap::Favor) s.push_back({p + "attn.favor.projection", {a.favor_features, a.d_head}});
    s.push_back({p + "norm1.weight", {d}});
    s.push_back({p + "norm1.bias", {d}});
    linear(p + "ff.linear1", d, F, true);
    linear(p + "ff.linear2", F, d, true);
    s.push_back({p + "norm2.weight", {d}});
    s.push_back({p + "norm2.bias", {d}});
  }
  if (c.pre_norm) {
    s.push_back({"final_norm.weight", {d}});
    s.push_back({"final_norm.bias", {d}});
  }
  if (c.adaptive()) {
    for (auto& p : AdaptiveSoftmax<float>::parameter_shapes("output", V, d, c.cutoffs, c.div_val, c.tie_embeddings,
                                                            c.tie_projections()))
      s.push_back({p.name, p.shape});
    return s;
  }
  if (!c.tie_embeddings) s.push_back({"output.weight", {V, d}});
  s.push_back({"output.bias", {V}});
  return s;
}

// ---- Model adapter ------------------------------------------------------------------------

namespace {
// Checks run before the network is built, so a rejected config does not advance the context's generator.
std::shared_ptr<Context> checked(std::shared_ptr<Context> context, const LmConfig& config) {
  require(context != nullptr, FWP_ERR_NULL_POINTER, "ctx must not be NULL");
  config.validate("config->");
  return context;
}
}  // namespace

LmModel::LmModel(std::shared_ptr<Context> context, const LmConfig& config)
    : context_(checked(std::move(context), config)),
      net_(config, context_->backend(), config.seed != 0 ? Rng(config.seed) : context_->make_rng()) {}

nlohmann::json LmModel::config_json() const { return net_.config().to_json(); }

}  // namespace fwp
