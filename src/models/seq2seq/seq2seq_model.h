// The translation model behind the Model interface (what fwp_model holds for
// kind FWP_MODEL_SEQ2SEQ): the float Seq2SeqNetwork, the scale of the
// pending backward (1 / scored tokens of the last forward: the mean
// label-smoothed loss, fairseq's normalisation), and translation through the
// beam search (models/seq2seq/beam_search.h) over the network's incremental
// decoder (network_decoder.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/model.h"
#include "models/seq2seq/beam_search.h"
#include "models/seq2seq/seq2seq_network.h"

namespace fwp {

class Seq2SeqModel final : public Model {
 public:
  // Validates the config; parameters seeded by config.seed, or through
  // context->make_rng() when it is 0.
  Seq2SeqModel(std::shared_ptr<Context> context, const Seq2SeqConfig& config);

  Seq2SeqNetwork<float>& network() { return net_; }
  const Seq2SeqNetwork<float>& network() const { return net_; }
  const Seq2SeqConfig& config() const { return net_.config(); }

  // Training forward; backward() then differentiates loss_sum / tokens.
  Seq2SeqLoss forward(const Seq2SeqBatch& batch);
  // Drops a pending backward: the C API calls it before its own checks, so a call refused there
  // leaves no older activations for fwp_model_backward, as one refused by the network does not.
  void forget_forward() { pending_ = false; }

  fwp_model_kind kind() const override { return FWP_MODEL_SEQ2SEQ; }
  ParameterList<float>& parameters() override { return net_.params(); }
  const ParameterList<float>& parameters() const override { return net_.params(); }
  void set_training(bool training) override { net_.set_training(training); }
  bool training() const override { return net_.training(); }
  void backward() override;
  nlohmann::json config_json() const override;
  Rng::State rng_state() const override { return net_.rng_state(); }
  void set_rng_state(const Rng::State& state) override { net_.set_rng_state(state); }
  void set_dropout_stream(uint64_t stream) override { net_.set_dropout_stream(stream); }
  const std::shared_ptr<Context>& context() const override { return context_; }

 private:
  std::shared_ptr<Context> context_;
  Seq2SeqNetwork<float> net_;
  double backward_scale_ = 0.0;
  bool pending_ = false;  // a forward() whose backward has not run (and was not forgotten)
};

// Translates B padded source sentences (src [B][S] with lengths) by beam
// search (beam_size > 1) or greedy decoding (beam_size 1), in evaluation
// mode (the training flag is restored). options.bos/eos/pad ids are taken
// from the network's config. Returns each sentence's n_best hypotheses,
// best first. Throws Error for bad ids, lengths or options.
template <typename T>
std::vector<std::vector<seq2seq::Hypothesis>> translate(Seq2SeqNetwork<T>& network, const int32_t* src,
                                                        const int32_t* src_lengths, int64_t batch, int64_t src_length,
                                                        seq2seq::BeamSearchOptions options);

// The parameters Seq2SeqNetwork declares for `config`, in its order (the registry's shapes).
std::vector<std::pair<std::string, std::vector<int64_t>>> seq2seq_parameter_shapes(const Seq2SeqConfig& config);

}  // namespace fwp
