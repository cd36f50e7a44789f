// The translation network of issue 13 (paper section 6.2): fairseq's
// Transformer encoder-decoder with each attention kind chosen separately
// (models/seq2seq/seq2seq_config.h), written against Backend<T> as
// models/lm/lm_model.h is (float and double on the CPU, float on CUDA).
//
//   encoder:  e_0 = dropout(sqrt(d) * E[x] + pe)
//             N x [self-attention (non-causal, padded keys masked) + FFN]
//   decoder:  h_0 = dropout(sqrt(d) * E[y_in] + pe)
//             M x [causal self-attention (target lengths) + cross-attention
//                  over the encoder output (source lengths) + FFN]
//   logits  = h_M E^T (tied; W_out^T untied), no bias
//   loss    = label-smoothed cross-entropy (fairseq's) summed over the scored
//             targets: positions t < tgt_length[b] whose target is not pad.
// Sublayers are residual, post-LN (the paper: out = LN(x + dropout(f(x))))
// or pre-LN (out = x + dropout(f(LN(x))), and a final LayerNorm per stack).
// FFN: W2 dropout(relu(W1 x + b1)) + b2.
//
// Padding: inputs are right-padded ([B][S], [B][T]) with lengths. Padded
// keys never enter any attention and padded targets are not scored, so the
// valid positions' outputs equal those of the unpadded pairs, and every
// padded position's gradient is zero (so a padded batch's loss and
// gradients are the sums of its pairs').
//
// Incremental decoding (for the beam search): encode() runs the encoder once
// and computes every decoder layer's cross-attention memory; step() feeds one
// target token per row and returns log-probabilities; reorder() makes row r
// a copy of row parent[r] in every state (self and cross), which also expands
// B sentences into B * beam rows.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/id_buffer.h"
#include "core/rng.h"
#include "models/seq2seq/seq2seq_config.h"
#include "nn/attention_state.h"
#include "nn/cross_entropy_loss.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/fast_weight_attention.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/noncausal_attention.h"
#include "nn/parameter.h"

namespace fwp {

// One padded batch of pairs (host arrays), as data/pair_data.h gives them:
// src [B][S] = x + eos, tgt_in [B][T] = bos + y, tgt_out [B][T] = y + eos,
// each right-padded with pad; lengths B entries in [1, S] / [1, T].
struct Seq2SeqBatch {
  const int32_t* src = nullptr;
  const int32_t* src_lengths = nullptr;
  const int32_t* tgt_in = nullptr;
  const int32_t* tgt_out = nullptr;
  const int32_t* tgt_lengths = nullptr;
  int64_t batch = 0, src_length = 0, tgt_length = 0;
};

// What a forward returns: sums over the scored targets (natural log).
struct Seq2SeqLoss {
  double loss_sum = 0.0;  // label-smoothed (what backward differentiates)
  double nll_sum = 0.0;   // -log p(target), unsmoothed
  int64_t tokens = 0;     // scored targets
};

// The decoder's state during incremental decoding, one row per hypothesis.
template <typename T>
struct Seq2SeqDecodeState {
  std::vector<AttentionState<T>> self;        // per decoder layer: the causal self-attention's memory
  std::vector<CrossAttentionState<T>> cross;  // per decoder layer: the encoder output's memory
  std::vector<int64_t> positions;             // host, per row: the target position of the next step
  // The encoder output [sentences][S][d] and source lengths of encode() (one
  // row per SENTENCE; reorder() does not touch them).
  Buffer<T> encoder_out;
  std::vector<int64_t> src_lengths;
  int64_t sentences = 0, src_length = 0;

  int64_t rows() const { return static_cast<int64_t>(positions.size()); }
};

template <typename T>
class Seq2SeqNetwork {
 public:
  // Validates the config; parameters drawn from `rng`, kept for dropout and FAVOR+ redraws.
  Seq2SeqNetwork(const Seq2SeqConfig& config, std::shared_ptr<Backend<T>> backend, Rng rng);
  ~Seq2SeqNetwork();
  Seq2SeqNetwork(const Seq2SeqNetwork&) = delete;
  Seq2SeqNetwork& operator=(const Seq2SeqNetwork&) = delete;

  const Seq2SeqConfig& config() const { return config_; }
  const std::shared_ptr<Backend<T>>& backend() const { return backend_; }
  ParameterList<T>& params() { return params_; }
  const ParameterList<T>& params() const { return params_; }
  bool training() const { return training_; }
  void set_training(bool training) { training_ = training; }

  // Checks the batch (shapes, lengths, ids; Error naming the field), runs the
  // network and keeps what backward() needs. logits (nullable, host [B*T*V])
  // receives every target position's logits.
  Seq2SeqLoss forward(const Seq2SeqBatch& batch, T* logits = nullptr);
  // Adds scale * d(loss_sum of the last forward)/d(parameters) to the
  // gradients (scale = 1 / tokens for the mean). BAD_STATE without a forward
  // since the last backward (one backward per forward).
  void backward(double scale);
  bool has_forward() const { return has_forward_; }
  // The loss of a batch in evaluation mode (no dropout, fixed FAVOR+
  // projections), keeping nothing for a backward; the training flag is kept.
  Seq2SeqLoss evaluate(const Seq2SeqBatch& batch);

  // The generator of dropout masks and FAVOR+ redraws (checkpoints save it).
  Rng::State rng_state() const { return rng_.state(); }
  void set_rng_state(const Rng::State& state) { rng_.set_state(state); }
  // Mixed into every dropout seed (Model::set_dropout_stream()); 0 = none.
  void set_dropout_stream(uint64_t stream) { *dropout_stream_ = stream; }

  // ---- incremental decoding (evaluation mode: no dropout, fixed FAVOR+ projections) ----
  // src [B][S] with lengths: one row per sentence, positions 0.
  Seq2SeqDecodeState<T> encode(const int32_t* src, const int32_t* src_lengths, int64_t batch, int64_t src_length);
  // tokens [rows] (the previous token of each row; bos first): log_probs host [rows][V]
  // (nullable); every state advances by one token.
  void step(const int32_t* tokens, Seq2SeqDecodeState<T>& state, T* log_probs);
  // Row r becomes row parent[r] of every state (count rows after; parents in [0, rows)).
  void reorder(Seq2SeqDecodeState<T>& state, const int64_t* parents, int64_t count) const;

 private:
  struct Residual;
  struct EncoderLayer;
  struct DecoderLayer;
  struct Workspace;

  void check_ids(const int32_t* ids, int64_t count, const char* what) const;
  std::vector<int64_t> check_lengths(const int32_t* lengths, int64_t batch, int64_t max_length,
                                     const char* what) const;
  // sqrt(d) * E[ids] + pe then dropout, into out [N, d]: positions empty = `batch` sequences from
  // position 0, else one position per row.
  void embed(const IdBuffer<T>& ids, int64_t N, int64_t batch, const std::vector<int64_t>& positions, Buffer<T>& out,
             Dropout<T>& drop, bool training);
  void embed_backward(const IdBuffer<T>& ids, Buffer<T>& grad, Dropout<T>& drop);
  // Runs the encoder over ws.src_ids; leaves the output in ws.enc_out (or the final norm's).
  const T* encoder_forward(int64_t B, int64_t S, const std::vector<int64_t>& src_len, bool training);
  const T* decoder_forward(int64_t B, int64_t Tn, const std::vector<int64_t>& tgt_len, const T* enc,
                           int64_t S, const std::vector<int64_t>& src_len, bool training);
  const T* output_weight() const;
  Parameter<T>& output_parameter();

  Seq2SeqConfig config_;
  std::shared_ptr<Backend<T>> backend_;
  Rng rng_;
  std::shared_ptr<uint64_t> dropout_stream_ = std::make_shared<uint64_t>(0);
  bool training_ = true;
  ParameterList<T> params_;
  std::unique_ptr<Embedding<T>> embedding_;
  std::vector<std::unique_ptr<EncoderLayer>> encoder_;
  std::vector<std::unique_ptr<DecoderLayer>> decoder_;
  std::unique_ptr<LayerNorm<T>> encoder_norm_, decoder_norm_;  // pre-LN only
  int64_t out_weight_ = -1;                                     // untied only
  std::unique_ptr<Dropout<T>> src_dropout_, tgt_dropout_;
  std::unique_ptr<CrossEntropyLoss<T>> loss_;
  std::unique_ptr<Workspace> ws_;
  bool has_forward_ = false;
};

extern template class Seq2SeqNetwork<float>;
extern template class Seq2SeqNetwork<double>;

}  // namespace fwp
