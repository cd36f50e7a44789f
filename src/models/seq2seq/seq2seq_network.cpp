#include "models/seq2seq/seq2seq_network.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "core/error.h"
#include "core/limits.h"

namespace fwp {

namespace {
std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }
}  // namespace

// ---- building blocks ----------------------------------------------------------------------

// A residual sublayer around f: post-LN out = LN(x + dropout(f(x))), pre-LN
// out = x + dropout(f(LN(x))). Keeps its activations for the backward.
template <typename T>
struct Seq2SeqNetwork<T>::Residual {
  std::unique_ptr<LayerNorm<T>> norm;
  std::unique_ptr<Dropout<T>> drop;
  Buffer<T> normed;  // pre-LN: LN(x), f's input
  Buffer<T> fout;    // dropout(f(.))
  Buffer<T> sum;     // x + fout (the output with pre-LN)
  Buffer<T> out;     // post-LN: LN(sum)
  bool pre = false;

  // f(input, output) writes f of `rows` rows. Returns the sublayer's output (rows x d).
  template <class F>
  const T* forward(const std::shared_ptr<Backend<T>>& bp, ParameterList<T>& params, const T* x, int64_t rows,
                   int64_t d, Rng& rng, bool training, F&& f) {
    const int64_t n = rows * d;
    fout.resize(bp, n);
    sum.resize(bp, n);
    const T* in = x;
    if (pre) {
      normed.resize(bp, n);
      norm->forward(params, ConstView<T>(x, {rows, d}), TensorView<T>(normed.data(), {rows, d}));
      in = normed.data();
    }
    f(in, fout.data());
    drop->forward(ConstView<T>(fout.data(), {rows, d}), TensorView<T>(fout.data(), {rows, d}), rng, training);
    bp->copy(sum.data(), x, n);
    bp->axpy(n, T(1), fout.data(), sum.data());
    if (pre) return sum.data();
    out.resize(bp, n);
    norm->forward(params, ConstView<T>(sum.data(), {rows, d}), TensorView<T>(out.data(), {rows, d}));
    return out.data();
  }

  // dout -> dx (overwritten; dout and dx distinct). fb(input, dy, dinput, mode) is f's backward
  // (dy may be scribbled on). scratch_f, scratch_in: rows x d.
  template <class FB>
  void backward(const std::shared_ptr<Backend<T>>& bp, ParameterList<T>& params, const T* x, const T* dout, T* dx,
                int64_t rows, int64_t d, Buffer<T>& scratch_f, Buffer<T>& scratch_in, FB&& fb) {
    const int64_t n = rows * d;
    const TensorView<T> sf(scratch_f.data(), {rows, d});
    if (pre) {
      bp->copy(dx, dout, n);  // the residual path
      bp->copy(scratch_f.data(), dout, n);
      drop->backward(sf, sf);
      fb(normed.data(), scratch_f.data(), scratch_in.data(), InputGrad::Overwrite);
      norm->backward(params, ConstView<T>(x, {rows, d}), ConstView<T>(scratch_in.data(), {rows, d}),
                     TensorView<T>(dx, {rows, d}), InputGrad::Accumulate);
    } else {
      norm->backward(params, ConstView<T>(sum.data(), {rows, d}), ConstView<T>(dout, {rows, d}),
                     TensorView<T>(dx, {rows, d}), InputGrad::Overwrite);  // d(sum), also the residual path
      bp->copy(scratch_f.data(), dx, n);
      drop->backward(sf, sf);
      fb(x, scratch_f.data(), dx, InputGrad::Accumulate);
    }
  }
};

// The position-wise feed-forward block W2 dropout(relu(W1 x + b1)) + b2.
template <typename T>
struct FeedForwardPart {
  std::unique_ptr<Linear<T>> fc1, fc2;
  std::unique_ptr<Dropout<T>> drop_inner;
  Buffer<T> pre, act;  // [rows, d_ff]

  void forward(const std::shared_ptr<Backend<T>>& bp, const ParameterList<T>& params, const T* x, T* y,
               int64_t rows, int64_t d, int64_t F, Rng& rng, bool training) {
    pre.resize(bp, rows * F);
    act.resize(bp, rows * F);
    fc1->forward(params, ConstView<T>(x, {rows, d}), TensorView<T>(pre.data(), {rows, F}));
    bp->relu_forward(pre.data(), act.data(), rows * F);
    drop_inner->forward(ConstView<T>(act.data(), {rows, F}), TensorView<T>(act.data(), {rows, F}), rng, training);
    fc2->forward(params, ConstView<T>(act.data(), {rows, F}), TensorView<T>(y, {rows, d}));
  }
  void backward(const std::shared_ptr<Backend<T>>& bp, ParameterList<T>& params, const T* x, const T* dy, T* dx,
                InputGrad mode, int64_t rows, int64_t d, int64_t F, Buffer<T>& dff) {
    dff.resize(bp, rows * F);
    const TensorView<T> g(dff.data(), {rows, F});
    fc2->backward(params, ConstView<T>(act.data(), {rows, F}), ConstView<T>(dy, {rows, d}), g, InputGrad::Overwrite);
    drop_inner->backward(g, g);
    bp->relu_backward(pre.data(), dff.data(), dff.data(), rows * F);
    fc1->backward(params, ConstView<T>(x, {rows, d}), g, TensorView<T>(dx, {rows, d}), mode);
  }
};

template <typename T>
struct Seq2SeqNetwork<T>::EncoderLayer {
  std::unique_ptr<NonCausalAttention<T>> attn;
  NonCausalAttentionWorkspace<T> aws;
  FeedForwardPart<T> ff;
  Residual attn_sub, ff_sub;
  const T* input = nullptr;  // of the last forward
  const T* mid = nullptr;    // the attention sublayer's output
};

template <typename T>
struct Seq2SeqNetwork<T>::DecoderLayer {
  std::unique_ptr<FastWeightAttention<T>> self_attn;
  FastWeightAttentionWorkspace<T> self_ws;
  std::unique_ptr<NonCausalAttention<T>> cross_attn;
  NonCausalAttentionWorkspace<T> cross_ws;
  FeedForwardPart<T> ff;
  Residual self_sub, cross_sub, ff_sub;
  const T* input = nullptr;
  const T* mid1 = nullptr;  // after self-attention
  const T* mid2 = nullptr;  // after cross-attention
};

template <typename T>
struct Seq2SeqNetwork<T>::Workspace {
  int64_t B = 0, S = 0, Tn = 0, tokens = 0;
  std::vector<int64_t> src_len, tgt_len;
  IdBuffer<T> src_ids, tgt_ids, targets;
  Buffer<T> enc_in, dec_in;          // embedded inputs
  Buffer<T> enc_final, dec_final;    // pre-LN: the stacks' final LayerNorm outputs
  const T* enc_out = nullptr;        // the encoder's output [B*S, d]
  const T* dec_out = nullptr;        // the decoder's output [B*T, d]
  Buffer<T> pe;                      // position encodings of this call
  Buffer<T> logits;                  // [B*T, V], then its gradient
  Buffer<T> log_probs;               // step(): [rows, V] row log-softmax of the logits
  Buffer<T> ga, gb, sf, si, dff;     // backward scratch
  Buffer<T> d_enc;                   // dLoss / d(encoder output)
};

// ---- construction -------------------------------------------------------------------------

template <typename T>
Seq2SeqNetwork<T>::Seq2SeqNetwork(const Seq2SeqConfig& config, std::shared_ptr<Backend<T>> backend, Rng rng)
    : config_(config), backend_(std::move(backend)), rng_(rng) {
  config_.validate("config->");
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "Seq2SeqNetwork needs a backend");
  const int64_t V = config_.vocab_size, d = config_.d_model(), F = config_.d_ff;
  const bool pre = config_.pre_norm;
  auto residual = [&](Residual& r, const std::string& norm_name) {
    r.norm = std::make_unique<LayerNorm<T>>(params_, backend_, norm_name, d);
    r.drop = std::make_unique<Dropout<T>>(backend_, config_.dropout, dropout_stream_);
    r.pre = pre;
  };
  auto feed_forward = [&](FeedForwardPart<T>& ff, const std::string& p) {
    ff.fc1 = std::make_unique<Linear<T>>(params_, backend_, p + "fc1", d, F, true);
    ff.fc2 = std::make_unique<Linear<T>>(params_, backend_, p + "fc2", F, d, true);
    ff.drop_inner = std::make_unique<Dropout<T>>(backend_, config_.dropout, dropout_stream_);
  };
  // Declaration order is the parameter order (names follow fairseq's).
  embedding_ = std::make_unique<Embedding<T>>(params_, backend_, "embedding", V, d);
  for (int64_t l = 0; l < config_.encoder_layers; ++l) {
    const std::string p = "encoder.layers." + std::to_string(l) + ".";
    auto layer = std::make_unique<EncoderLayer>();
    layer->attn = std::make_unique<NonCausalAttention<T>>(params_, backend_, p + "self_attn.", config_.encoder_attention);
    residual(layer->attn_sub, p + "self_attn_layer_norm");
    feed_forward(layer->ff, p);
    residual(layer->ff_sub, p + "final_layer_norm");
    encoder_.push_back(std::move(layer));
  }
  if (pre) encoder_norm_ = std::make_unique<LayerNorm<T>>(params_, backend_, "encoder.layer_norm", d);
  for (int64_t l = 0; l < config_.decoder_layers; ++l) {
    const std::string p = "decoder.layers." + std::to_string(l) + ".";
    auto layer = std::make_unique<DecoderLayer>();
    layer->self_attn =
        std::make_unique<FastWeightAttention<T>>(params_, backend_, p + "self_attn.", config_.decoder_attention);
    residual(layer->self_sub, p + "self_attn_layer_norm");
    layer->cross_attn =
        std::make_unique<NonCausalAttention<T>>(params_, backend_, p + "encoder_attn.", config_.cross_attention);
    residual(layer->cross_sub, p + "encoder_attn_layer_norm");
    feed_forward(layer->ff, p);
    residual(layer->ff_sub, p + "final_layer_norm");
    decoder_.push_back(std::move(layer));
  }
  if (pre) decoder_norm_ = std::make_unique<LayerNorm<T>>(params_, backend_, "decoder.layer_norm", d);
  if (!config_.tie_embeddings) {
    params_.declare("output.weight", {V, d});
    out_weight_ = params_.size() - 1;
  }
  params_.allocate(backend_);

  // Init in declaration order: N(0, init_std^2) weights (attentions by their own init_std), zero biases,
  // unit LayerNorm gains.
  embedding_->init_normal(params_, rng_, config_.init_std);
  for (auto& layer : encoder_) {
    layer->attn->init(params_, rng_);
    layer->attn_sub.norm->init(params_);
    layer->ff.fc1->init_normal(params_, rng_, config_.init_std);
    layer->ff.fc2->init_normal(params_, rng_, config_.init_std);
    layer->ff_sub.norm->init(params_);
  }
  if (encoder_norm_) encoder_norm_->init(params_);
  for (auto& layer : decoder_) {
    layer->self_attn->init(params_, rng_);
    layer->self_sub.norm->init(params_);
    layer->cross_attn->init(params_, rng_);
    layer->cross_sub.norm->init(params_);
    layer->ff.fc1->init_normal(params_, rng_, config_.init_std);
    layer->ff.fc2->init_normal(params_, rng_, config_.init_std);
    layer->ff_sub.norm->init(params_);
  }
  if (decoder_norm_) decoder_norm_->init(params_);
  if (out_weight_ >= 0) {
    Parameter<T>& w = params_[out_weight_];
    std::vector<T> host(static_cast<size_t>(w.numel()));
    for (T& v : host) v = static_cast<T>(rng_.normal() * config_.init_std);
    w.value.from_host(host.data(), w.numel());
  }
  src_dropout_ = std::make_unique<Dropout<T>>(backend_, config_.dropout, dropout_stream_);
  tgt_dropout_ = std::make_unique<Dropout<T>>(backend_, config_.dropout, dropout_stream_);
  loss_ = std::make_unique<CrossEntropyLoss<T>>(backend_);
  loss_->set_label_smoothing(config_.label_smoothing);
  ws_ = std::make_unique<Workspace>();
}

template <typename T>
Seq2SeqNetwork<T>::~Seq2SeqNetwork() = default;

template <typename T>
const T* Seq2SeqNetwork<T>::output_weight() const {
  return params_[out_weight_ >= 0 ? out_weight_ : embedding_->weight_index()].value.data();
}

template <typename T>
Parameter<T>& Seq2SeqNetwork<T>::output_parameter() {
  return params_[out_weight_ >= 0 ? out_weight_ : embedding_->weight_index()];
}

// ---- checks -------------------------------------------------------------------------------

template <typename T>
void Seq2SeqNetwork<T>::check_ids(const int32_t* ids, int64_t count, const char* what) const {
  require(ids != nullptr, FWP_ERR_NULL_POINTER, std::string(what) + " must not be NULL");
  const int64_t V = config_.vocab_size;
  for (int64_t i = 0; i < count; ++i) {
    if (ids[i] < 0 || ids[i] >= V) {
      throw Error(FWP_ERR_OUT_OF_RANGE, std::string(what) + "[" + std::to_string(i) + "] must be in [0, " +
                                            std::to_string(V) + ")" + got(ids[i]));
    }
  }
}

template <typename T>
std::vector<int64_t> Seq2SeqNetwork<T>::check_lengths(const int32_t* lengths, int64_t batch, int64_t max_length,
                                                      const char* what) const {
  require(lengths != nullptr, FWP_ERR_NULL_POINTER, std::string(what) + " must not be NULL");
  std::vector<int64_t> out(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    if (lengths[b] < 1 || lengths[b] > max_length) {
      throw Error(FWP_ERR_INVALID_ARGUMENT, std::string(what) + "[" + std::to_string(b) + "] must be in [1, " +
                                            std::to_string(max_length) + "]" + got(lengths[b]));
    }
    out[static_cast<size_t>(b)] = lengths[b];
  }
  return out;
}

// ---- embeddings ---------------------------------------------------------------------------

// The sinusoidal encoding of position p (as the language model's, Vaswani et
// al.): [sin(p f_0) .. sin(p f_{h-1}), cos(p f_0) .. cos(p f_{h-1})], f_i =
// 1 / 10000^(2i / d). (fairseq's table uses 1 / 10000^(i / (h - 1)) and
// starts at pad + 1; the difference is a fixed reparametrisation.)
template <typename T>
static void sinusoid_row(int64_t position, int64_t d, T* out) {
  const int64_t half = (d + 1) / 2;
  const double p = static_cast<double>(position);
  for (int64_t i = 0; i < half; ++i) {
    const double f = 1.0 / std::pow(10000.0, static_cast<double>(2 * i) / static_cast<double>(d));
    out[i] = static_cast<T>(std::sin(p * f));
    if (half + i < d) out[half + i] = static_cast<T>(std::cos(p * f));
  }
}

// N rows: with `positions` empty, batch sequences of N / batch tokens at positions 0, 1, ... (the
// encoding rows are computed once and added to every sequence); otherwise row r at positions[r].
template <typename T>
void Seq2SeqNetwork<T>::embed(const IdBuffer<T>& ids, int64_t N, int64_t batch, const std::vector<int64_t>& positions,
                              Buffer<T>& out, Dropout<T>& drop, bool training) {
  const int64_t d = config_.d_model();
  out.resize(backend_, N * d);
  const TensorView<T> view(out.data(), {N, d});
  embedding_->forward(params_, ids.view({N}), view);
  backend_->scale(N * d, static_cast<T>(std::sqrt(static_cast<double>(d))), out.data());
  if (config_.position == PositionEncoding::Sinusoidal) {
    const int64_t rows = positions.empty() ? N / batch : N;
    std::vector<T> host(static_cast<size_t>(rows * d));
    for (int64_t r = 0; r < rows; ++r)
      sinusoid_row(positions.empty() ? r : positions[static_cast<size_t>(r)], d, host.data() + r * d);
    Buffer<T>& pe = ws_->pe;
    pe.resize(backend_, rows * d);
    pe.from_host(host.data(), rows * d);
    backend_->add_bias(out.data(), pe.data(), N / rows, rows * d);  // the same rows for every sequence
  }
  drop.forward(ConstView<T>(out.data(), {N, d}), view, rng_, training);
}

template <typename T>
void Seq2SeqNetwork<T>::embed_backward(const IdBuffer<T>& ids, Buffer<T>& grad, Dropout<T>& drop) {
  const int64_t d = config_.d_model(), N = grad.size() / d;
  const TensorView<T> g(grad.data(), {N, d});
  drop.backward(g, g);
  backend_->scale(N * d, static_cast<T>(std::sqrt(static_cast<double>(d))), grad.data());
  embedding_->backward(params_, ids.view({N}), g);
}

// ---- forward ------------------------------------------------------------------------------

template <typename T>
const T* Seq2SeqNetwork<T>::encoder_forward(int64_t B, int64_t S, const std::vector<int64_t>& src_len,
                                            bool training) {
  Workspace& ws = *ws_;
  const int64_t d = config_.d_model(), F = config_.d_ff, N = B * S;
  embed(ws.src_ids, N, B, {}, ws.enc_in, *src_dropout_, training);
  Rng* redraw = training && config_.favor_redraw ? &rng_ : nullptr;
  const T* x = ws.enc_in.data();
  for (auto& lp : encoder_) {
    EncoderLayer& layer = *lp;
    layer.input = x;
    layer.mid = layer.attn_sub.forward(backend_, params_, x, N, d, rng_, training, [&](const T* in, T* y) {
      layer.attn->forward_self(params_, ConstView<T>(in, {B, S, d}), src_len, TensorView<T>(y, {B, S, d}),
                               layer.aws, redraw);
    });
    x = layer.ff_sub.forward(backend_, params_, layer.mid, N, d, rng_, training, [&](const T* in, T* y) {
      layer.ff.forward(backend_, params_, in, y, N, d, F, rng_, training);
    });
  }
  if (encoder_norm_) {
    ws.enc_final.resize(backend_, N * d);
    encoder_norm_->forward(params_, ConstView<T>(x, {N, d}), TensorView<T>(ws.enc_final.data(), {N, d}));
    x = ws.enc_final.data();
  }
  ws.enc_out = x;
  return x;
}

template <typename T>
const T* Seq2SeqNetwork<T>::decoder_forward(int64_t B, int64_t Tn, const std::vector<int64_t>& tgt_len,
                                            const T* enc, int64_t S, const std::vector<int64_t>& src_len,
                                            bool training) {
  Workspace& ws = *ws_;
  const int64_t d = config_.d_model(), F = config_.d_ff, N = B * Tn;
  embed(ws.tgt_ids, N, B, {}, ws.dec_in, *tgt_dropout_, training);
  Rng* redraw_self = training && config_.decoder_attention.favor_redraw ? &rng_ : nullptr;
  Rng* redraw_cross = training && config_.favor_redraw ? &rng_ : nullptr;
  const T* x = ws.dec_in.data();
  for (auto& lp : decoder_) {
    DecoderLayer& layer = *lp;
    layer.input = x;
    layer.mid1 = layer.self_sub.forward(backend_, params_, x, N, d, rng_, training, [&](const T* in, T* y) {
      layer.self_attn->forward(params_, ConstView<T>(in, {B, Tn, d}), nullptr, StateUpdate::Keep,
                               TensorView<T>(y, {B, Tn, d}), layer.self_ws, redraw_self, tgt_len);
    });
    layer.mid2 = layer.cross_sub.forward(backend_, params_, layer.mid1, N, d, rng_, training, [&](const T* in, T* y) {
      layer.cross_attn->forward(params_, ConstView<T>(in, {B, Tn, d}), tgt_len, ConstView<T>(enc, {B, S, d}),
                                src_len, TensorView<T>(y, {B, Tn, d}), layer.cross_ws, redraw_cross);
    });
    x = layer.ff_sub.forward(backend_, params_, layer.mid2, N, d, rng_, training, [&](const T* in, T* y) {
      layer.ff.forward(backend_, params_, in, y, N, d, F, rng_, training);
    });
  }
  if (decoder_norm_) {
    ws.dec_final.resize(backend_, N * d);
    decoder_norm_->forward(params_, ConstView<T>(x, {N, d}), TensorView<T>(ws.dec_final.data(), {N, d}));
    x = ws.dec_final.data();
  }
  ws.dec_out = x;
  return x;
}

template <typename T>
Seq2SeqLoss Seq2SeqNetwork<T>::forward(const Seq2SeqBatch& batch, T* logits_out) {
  has_forward_ = false;  // also when a check fails: a backward must not use older activations
  const int64_t B = batch.batch, S = batch.src_length, Tn = batch.tgt_length;
  require(B >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(B));
  require(S >= 1, FWP_ERR_INVALID_ARGUMENT, "src_length must be >= 1" + got(S));
  require(Tn >= 1, FWP_ERR_INVALID_ARGUMENT, "tgt_length must be >= 1" + got(Tn));
  const int64_t d = config_.d_model(), V = config_.vocab_size;
  const int64_t Ns = checked_mul(B, S, "batch * src_length"), Nt = checked_mul(B, Tn, "batch * tgt_length");
  checked_mul(std::max(Ns, Nt), std::max({d, config_.d_ff, V}), "batch * length * max(d_model, d_ff, vocab_size)");
  check_ids(batch.src, Ns, "src");
  check_ids(batch.tgt_in, Nt, "tgt_in");
  check_ids(batch.tgt_out, Nt, "tgt_out");
  Workspace& ws = *ws_;
  ws.src_len = check_lengths(batch.src_lengths, B, S, "src_lengths");
  ws.tgt_len = check_lengths(batch.tgt_lengths, B, Tn, "tgt_lengths");
  // Scored: inside the target's length and not pad.
  std::vector<int32_t> targets(static_cast<size_t>(Nt), -1);
  int64_t tokens = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < ws.tgt_len[static_cast<size_t>(b)]; ++t) {
      const int32_t id = batch.tgt_out[b * Tn + t];
      if (id == config_.pad_id) continue;
      targets[static_cast<size_t>(b * Tn + t)] = id;
      ++tokens;
    }
  }
  require(tokens > 0, FWP_ERR_INVALID_ARGUMENT, "tgt_out has no target to score (all pad within tgt_lengths)");
  ws.B = B;
  ws.S = S;
  ws.Tn = Tn;
  ws.tokens = tokens;
  ws.src_ids.upload(backend_, batch.src, Ns);
  ws.tgt_ids.upload(backend_, batch.tgt_in, Nt);
  ws.targets.upload(backend_, targets.data(), Nt);

  const bool training = training_;
  const T* enc = encoder_forward(B, S, ws.src_len, training);
  const T* hidden = decoder_forward(B, Tn, ws.tgt_len, enc, S, ws.src_len, training);
  ws.logits.resize(backend_, Nt * V);
  backend_->gemm(false, true, Nt, V, d, T(1), hidden, d, output_weight(), d, T(0), ws.logits.data(), V);
  if (logits_out) backend_->download(logits_out, ws.logits.data(), Nt * V);
  Seq2SeqLoss result;
  result.loss_sum = loss_->forward(ConstView<T>(ws.logits.data(), {Nt, V}), ws.targets.view({Nt}));
  result.nll_sum = loss_->last_nll_sum();
  result.tokens = tokens;
  has_forward_ = true;
  return result;
}

template <typename T>
Seq2SeqLoss Seq2SeqNetwork<T>::evaluate(const Seq2SeqBatch& batch) {
  const bool was_training = training_;
  training_ = false;
  try {
    const Seq2SeqLoss loss = forward(batch);
    training_ = was_training;
    has_forward_ = false;
    return loss;
  } catch (...) {
    training_ = was_training;
    has_forward_ = false;
    throw;
  }
}

// ---- backward -----------------------------------------------------------------------------

template <typename T>
void Seq2SeqNetwork<T>::backward(double scale) {
  require(has_forward_, FWP_ERR_BAD_STATE, "backward needs a forward first (one backward per forward)");
  require(std::isfinite(scale), FWP_ERR_INVALID_ARGUMENT, "scale must be finite");
  has_forward_ = false;
  Workspace& ws = *ws_;
  const auto& bp = backend_;
  const int64_t d = config_.d_model(), F = config_.d_ff, V = config_.vocab_size;
  const int64_t B = ws.B, S = ws.S, Tn = ws.Tn, Ns = B * S, Nt = B * Tn, Nmax = std::max(Ns, Nt);
  for (Buffer<T>* buf : {&ws.ga, &ws.gb, &ws.sf, &ws.si}) buf->resize(bp, Nmax * d);

  // Output layer: logits = h W^T.
  loss_->backward(ConstView<T>(ws.logits.data(), {Nt, V}), ws.targets.view({Nt}), static_cast<T>(scale),
                  TensorView<T>(ws.logits.data(), {Nt, V}));
  Parameter<T>& w = output_parameter();
  backend_->gemm(true, false, V, d, Nt, T(1), ws.logits.data(), V, ws.dec_out, d, T(1), w.grad.data(), d);
  // ga, gb hold dLoss/d(activation) in turns; `g` is the current one.
  Buffer<T>* g = &ws.ga;
  Buffer<T>* next = &ws.gb;
  backend_->gemm(false, false, Nt, d, V, T(1), ws.logits.data(), V, w.value.data(), d, T(0), g->data(), d);
  if (decoder_norm_) {
    const T* x = decoder_.back()->ff_sub.sum.data();  // pre-LN: the last layer's output
    decoder_norm_->backward(params_, ConstView<T>(x, {Nt, d}), ConstView<T>(g->data(), {Nt, d}),
                            TensorView<T>(next->data(), {Nt, d}), InputGrad::Overwrite);
    std::swap(g, next);
  }

  ws.d_enc.resize(bp, Ns * d);
  ws.d_enc.zero();
  const T* enc = ws.enc_out;
  for (size_t li = decoder_.size(); li-- > 0;) {
    DecoderLayer& layer = *decoder_[li];
    layer.ff_sub.backward(bp, params_, layer.mid2, g->data(), next->data(), Nt, d, ws.sf, ws.si,
                          [&](const T* in, const T* dy, T* dx, InputGrad mode) {
                            layer.ff.backward(bp, params_, in, dy, dx, mode, Nt, d, F, ws.dff);
                          });
    std::swap(g, next);
    layer.cross_sub.backward(bp, params_, layer.mid1, g->data(), next->data(), Nt, d, ws.sf, ws.si,
                             [&](const T* in, const T* dy, T* dx, InputGrad mode) {
                               layer.cross_attn->backward(params_, ConstView<T>(in, {B, Tn, d}), ConstView<T>(enc, {B, S, d}),
                                                          ConstView<T>(dy, {B, Tn, d}), TensorView<T>(dx, {B, Tn, d}), mode,
                                                          TensorView<T>(ws.d_enc.data(), {B, S, d}),
                                                          InputGrad::Accumulate, layer.cross_ws);
                             });
    std::swap(g, next);
    layer.self_sub.backward(bp, params_, layer.input, g->data(), next->data(), Nt, d, ws.sf, ws.si,
                            [&](const T* in, const T* dy, T* dx, InputGrad mode) {
                              layer.self_attn->backward(params_, ConstView<T>(in, {B, Tn, d}),
                                                        ConstView<T>(dy, {B, Tn, d}), TensorView<T>(dx, {B, Tn, d}),
                                                        mode, layer.self_ws);
                            });
    std::swap(g, next);
  }
  // The target embedding's gradient (g: Nt rows; the buffers are Nmax rows).
  {
    Buffer<T> grad(bp, Nt * d);
    bp->copy(grad.data(), g->data(), Nt * d);
    embed_backward(ws.tgt_ids, grad, *tgt_dropout_);
  }

  // Encoder, from dLoss/d(encoder output).
  bp->copy(g->data(), ws.d_enc.data(), Ns * d);
  if (encoder_norm_) {
    const T* x = encoder_.back()->ff_sub.sum.data();
    encoder_norm_->backward(params_, ConstView<T>(x, {Ns, d}), ConstView<T>(g->data(), {Ns, d}),
                            TensorView<T>(next->data(), {Ns, d}), InputGrad::Overwrite);
    std::swap(g, next);
  }
  for (size_t li = encoder_.size(); li-- > 0;) {
    EncoderLayer& layer = *encoder_[li];
    layer.ff_sub.backward(bp, params_, layer.mid, g->data(), next->data(), Ns, d, ws.sf, ws.si,
                          [&](const T* in, const T* dy, T* dx, InputGrad mode) {
                            layer.ff.backward(bp, params_, in, dy, dx, mode, Ns, d, F, ws.dff);
                          });
    std::swap(g, next);
    layer.attn_sub.backward(bp, params_, layer.input, g->data(), next->data(), Ns, d, ws.sf, ws.si,
                            [&](const T* in, const T* dy, T* dx, InputGrad mode) {
                              layer.attn->backward_self(params_, ConstView<T>(in, {B, S, d}),
                                                        ConstView<T>(dy, {B, S, d}), TensorView<T>(dx, {B, S, d}),
                                                        mode, layer.aws);
                            });
    std::swap(g, next);
  }
  Buffer<T> grad(bp, Ns * d);
  bp->copy(grad.data(), g->data(), Ns * d);
  embed_backward(ws.src_ids, grad, *src_dropout_);
}

// ---- incremental decoding -----------------------------------------------------------------

template <typename T>
Seq2SeqDecodeState<T> Seq2SeqNetwork<T>::encode(const int32_t* src, const int32_t* src_lengths, int64_t batch,
                                                int64_t src_length) {
  has_forward_ = false;
  require(batch >= 1, FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1" + got(batch));
  require(src_length >= 1, FWP_ERR_INVALID_ARGUMENT, "src_length must be >= 1" + got(src_length));
  const int64_t d = config_.d_model(), N = checked_mul(batch, src_length, "batch * src_length");
  checked_mul(N, std::max(d, config_.d_ff), "batch * src_length * max(d_model, d_ff)");
  check_ids(src, N, "src");
  Workspace& ws = *ws_;
  Seq2SeqDecodeState<T> state;
  state.src_lengths = check_lengths(src_lengths, batch, src_length, "src_lengths");
  state.sentences = batch;
  state.src_length = src_length;
  ws.src_ids.upload(backend_, src, N);
  const T* enc = encoder_forward(batch, src_length, state.src_lengths, false);
  state.encoder_out.resize(backend_, N * d);
  backend_->copy(state.encoder_out.data(), enc, N * d);
  for (auto& layer : decoder_) {
    state.self.emplace_back(backend_, config_.decoder_attention.state_spec(), batch);
    state.cross.push_back(layer->cross_attn->make_state());
    layer->cross_attn->begin(params_, ConstView<T>(state.encoder_out.data(), {batch, src_length, d}),
                             state.src_lengths, state.cross.back(), layer->cross_ws);
  }
  state.positions.assign(static_cast<size_t>(batch), 0);
  return state;
}

template <typename T>
void Seq2SeqNetwork<T>::step(const int32_t* tokens, Seq2SeqDecodeState<T>& state, T* log_probs) {
  has_forward_ = false;
  const int64_t rows = state.rows();
  require(rows >= 1 && state.self.size() == decoder_.size() && state.cross.size() == decoder_.size(),
          FWP_ERR_BAD_STATE, "the decode state was not made by this network's encode()");
  const int64_t d = config_.d_model(), F = config_.d_ff, V = config_.vocab_size;
  checked_mul(rows, std::max({d, F, V}), "rows * max(d_model, d_ff, vocab_size)");
  check_ids(tokens, rows, "tokens");
  Workspace& ws = *ws_;
  ws.tgt_ids.upload(backend_, tokens, rows);
  embed(ws.tgt_ids, rows, rows, state.positions, ws.dec_in, *tgt_dropout_, false);
  const T* x = ws.dec_in.data();
  for (size_t l = 0; l < decoder_.size(); ++l) {
    DecoderLayer& layer = *decoder_[l];
    x = layer.self_sub.forward(backend_, params_, x, rows, d, rng_, false, [&](const T* in, T* y) {
      layer.self_attn->step(params_, ConstView<T>(in, {rows, d}), state.self[l], TensorView<T>(y, {rows, d}),
                            layer.self_ws);
    });
    x = layer.cross_sub.forward(backend_, params_, x, rows, d, rng_, false, [&](const T* in, T* y) {
      layer.cross_attn->step(params_, ConstView<T>(in, {rows, d}), state.cross[l], TensorView<T>(y, {rows, d}),
                             layer.cross_ws);
    });
    x = layer.ff_sub.forward(backend_, params_, x, rows, d, rng_, false, [&](const T* in, T* y) {
      layer.ff.forward(backend_, params_, in, y, rows, d, F, rng_, false);
    });
  }
  if (decoder_norm_) {
    ws.dec_final.resize(backend_, rows * d);
    decoder_norm_->forward(params_, ConstView<T>(x, {rows, d}), TensorView<T>(ws.dec_final.data(), {rows, d}));
    x = ws.dec_final.data();
  }
  for (int64_t& p : state.positions) ++p;
  if (!log_probs) return;
  ws.logits.resize(backend_, rows * V);
  backend_->gemm(false, true, rows, V, d, T(1), x, d, output_weight(), d, T(0), ws.logits.data(), V);
  // Row log-softmax on the device (the adaptive-softmax op family's), then one download.
  ws.log_probs.resize(backend_, rows * V);
  backend_->log_softmax_rows(ws.logits.data(), rows, V, V, nullptr, 0, ws.log_probs.data(), V);
  backend_->download(log_probs, ws.log_probs.data(), rows * V);
}

template <typename T>
void Seq2SeqNetwork<T>::reorder(Seq2SeqDecodeState<T>& state, const int64_t* parents, int64_t count) const {
  require(parents != nullptr, FWP_ERR_NULL_POINTER, "parents must not be NULL");
  require(count >= 1, FWP_ERR_INVALID_ARGUMENT, "count must be >= 1" + got(count));
  const int64_t rows = state.rows();
  require(state.self.size() == decoder_.size() && state.cross.size() == decoder_.size(), FWP_ERR_BAD_STATE,
          "the decode state was not made by this network's encode()");
  for (int64_t r = 0; r < count; ++r) {
    if (parents[r] < 0 || parents[r] >= rows) {
      throw Error(FWP_ERR_OUT_OF_RANGE,
                  "parents[" + std::to_string(r) + "] must be in [0, " + std::to_string(rows) + ")" + got(parents[r]));
    }
  }
  for (auto& s : state.self) s.reorder(parents, count);
  for (auto& c : state.cross) c.reorder(parents, count);
  std::vector<int64_t> positions(static_cast<size_t>(count));
  for (int64_t r = 0; r < count; ++r) positions[static_cast<size_t>(r)] = state.positions[static_cast<size_t>(parents[r])];
  state.positions = std::move(positions);
}

template class Seq2SeqNetwork<float>;
template class Seq2SeqNetwork<double>;

}  // namespace fwp
