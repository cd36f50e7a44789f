#include "models/seq2seq/seq2seq_model.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "core/context.h"
#include "core/error.h"
#include "models/seq2seq/network_decoder.h"

namespace fwp {

namespace {
// Checks run before the network is built, so a rejected config does not advance the context's generator.
std::shared_ptr<Context> checked(std::shared_ptr<Context> context, const Seq2SeqConfig& config) {
  require(context != nullptr, FWP_ERR_NULL_POINTER, "ctx must not be NULL");
  config.validate("config->");
  return context;
}
}  // namespace

Seq2SeqModel::Seq2SeqModel(std::shared_ptr<Context> context, const Seq2SeqConfig& config)
    : context_(checked(std::move(context), config)),
      net_(config, context_->backend(), config.seed != 0 ? Rng(config.seed) : context_->make_rng()) {}

Seq2SeqLoss Seq2SeqModel::forward(const Seq2SeqBatch& batch) {
  backward_scale_ = 0.0;
  pending_ = false;
  const Seq2SeqLoss loss = net_.forward(batch);
  backward_scale_ = 1.0 / static_cast<double>(loss.tokens);
  pending_ = true;
  return loss;
}

nlohmann::json Seq2SeqModel::config_json() const { return net_.config().to_json(); }

void Seq2SeqModel::backward() {
  require(pending_ && net_.has_forward(), FWP_ERR_BAD_STATE,
          "fwp_model_backward needs an fwp_seq2seq_forward first (one backward per forward)");
  pending_ = false;
  net_.backward(backward_scale_);
}

template <typename T>
std::vector<std::vector<seq2seq::Hypothesis>> translate(Seq2SeqNetwork<T>& network, const int32_t* src,
                                                        const int32_t* src_lengths, int64_t batch, int64_t src_length,
                                                        seq2seq::BeamSearchOptions options) {
  const Seq2SeqConfig& c = network.config();
  options.bos_id = c.bos_id;
  options.eos_id = c.eos_id;
  options.pad_id = c.pad_id;
  seq2seq::validate_search_options(options, c.vocab_size);
  std::vector<int64_t> lengths(static_cast<size_t>(batch > 0 ? batch : 0));
  for (int64_t b = 0; b < batch; ++b) {
    lengths[static_cast<size_t>(b)] = src_lengths[b];
    seq2seq::max_output_length(options, src_lengths[b]);  // every limit checked before any work
  }
  const bool was_training = network.training();
  network.set_training(false);
  try {
    seq2seq::NetworkStepDecoder<T> decoder(network, network.encode(src, src_lengths, batch, src_length));
    std::vector<std::vector<seq2seq::Hypothesis>> out;
    if (options.beam_size == 1) {
      for (auto& h : seq2seq::greedy_search(decoder, lengths, options)) out.push_back({std::move(h)});
    } else {
      out = seq2seq::beam_search(decoder, lengths, options);
    }
    network.set_training(was_training);
    return out;
  } catch (...) {
    network.set_training(was_training);
    throw;
  }
}

template std::vector<std::vector<seq2seq::Hypothesis>> translate<float>(Seq2SeqNetwork<float>&, const int32_t*,
                                                                        const int32_t*, int64_t, int64_t,
                                                                        seq2seq::BeamSearchOptions);
template std::vector<std::vector<seq2seq::Hypothesis>> translate<double>(Seq2SeqNetwork<double>&, const int32_t*,
                                                                         const int32_t*, int64_t, int64_t,
                                                                         seq2seq::BeamSearchOptions);

std::vector<std::pair<std::string, std::vector<int64_t>>> seq2seq_parameter_shapes(const Seq2SeqConfig& c) {
  const int64_t V = c.vocab_size, d = c.d_model(), F = c.d_ff;
  std::vector<std::pair<std::string, std::vector<int64_t>>> s;
  auto linear = [&](const std::string& name, int64_t in, int64_t out, bool bias) {
    s.push_back({name + ".weight", {out, in}});
    if (bias) s.push_back({name + ".bias", {out}});
  };
  auto norm = [&](const std::string& name) {
    s.push_back({name + ".weight", {d}});
    s.push_back({name + ".bias", {d}});
  };
  // q, k, v, (beta), out projections, then a FAVOR+ projection: the attention modules' order.
  auto attention = [&](const std::string& p, int64_t heads, int64_t d_head, bool bias, bool delta, bool favor,
                       int64_t favor_features) {
    const int64_t P = heads * d_head;
    linear(p + "q_proj", d, P, bias);
    linear(p + "k_proj", d, P, bias);
    linear(p + "v_proj", d, P, bias);
    if (delta) linear(p + "beta_proj", d, heads, bias);
    linear(p + "out_proj", P, d, bias);
    if (favor) s.push_back({p + "favor.projection", {favor_features, d_head}});
  };
  auto noncausal = [&](const std::string& p, const NonCausalAttentionConfig& a) {
    attention(p, a.num_heads, a.d_head, a.use_bias, false, !a.softmax && a.feature_map == FeatureMap::Favor,
              a.favor_features);
  };
  auto feed_forward = [&](const std::string& p) {
    linear(p + "fc1", d, F, true);
    linear(p + "fc2", F, d, true);
  };
  s.push_back({"embedding.weight", {V, d}});
  for (int64_t l = 0; l < c.encoder_layers; ++l) {
    const std::string p = "encoder.layers." + std::to_string(l) + ".";
    noncausal(p + "self_attn.", c.encoder_attention);
    norm(p + "self_attn_layer_norm");
    feed_forward(p);
    norm(p + "final_layer_norm");
  }
  if (c.pre_norm) norm("encoder.layer_norm");
  const FastWeightAttentionConfig& da = c.decoder_attention;
  for (int64_t l = 0; l < c.decoder_layers; ++l) {
    const std::string p = "decoder.layers." + std::to_string(l) + ".";
    attention(p + "self_attn.", da.num_heads, da.d_head, da.use_bias, !da.softmax && da.update_rule == UpdateRule::Delta,
              !da.softmax && da.feature_map == FeatureMap::Favor, da.favor_features);
    norm(p + "self_attn_layer_norm");
    noncausal(p + "encoder_attn.", c.cross_attention);
    norm(p + "encoder_attn_layer_norm");
    feed_forward(p);
    norm(p + "final_layer_norm");
  }
  if (c.pre_norm) norm("decoder.layer_norm");
  if (!c.tie_embeddings) s.push_back({"output.weight", {V, d}});
  return s;
}

}  // namespace fwp
