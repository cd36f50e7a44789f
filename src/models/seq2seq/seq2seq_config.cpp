#include "models/seq2seq/seq2seq_config.h"

#include <cmath>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "models/config_json.h"

namespace fwp {

namespace {
std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }
std::string got(double v) { return " (got " + std::to_string(v) + ")"; }
}  // namespace

NonCausalAttentionConfig Seq2SeqConfig::default_noncausal() {
  NonCausalAttentionConfig c;
  c.d_model = 1024;
  c.num_heads = 16;
  c.d_head = 64;
  c.softmax = false;
  c.feature_map = FeatureMap::Elu;
  c.sum_normalize = false;
  c.attn_normalize = true;
  c.scale_output = false;
  c.use_bias = false;
  return c;
}

FastWeightAttentionConfig Seq2SeqConfig::default_decoder() {
  FastWeightAttentionConfig c;
  c.d_model = 1024;
  c.num_heads = 16;
  c.d_head = 64;
  c.softmax = false;
  c.feature_map = FeatureMap::Elu;
  c.update_rule = UpdateRule::Sum;  // the paper's translation models use the sum rule only
  c.sum_normalize = false;
  c.attn_normalize = true;
  c.scale_output = false;
  c.use_bias = false;
  return c;
}

void Seq2SeqConfig::set_sizes(int64_t d_model, int64_t num_heads, int64_t d_head) {
  for (NonCausalAttentionConfig* c : {&encoder_attention, &cross_attention}) {
    c->d_model = d_model;
    c->num_heads = num_heads;
    c->d_head = d_head;
  }
  decoder_attention.d_model = d_model;
  decoder_attention.num_heads = num_heads;
  decoder_attention.d_head = d_head;
}

void Seq2SeqConfig::validate(const std::string& prefix) const {
  auto bad = [&](const std::string& field, const std::string& what) {
    throw Error(FWP_ERR_INVALID_ARGUMENT, prefix + field + " " + what);
  };
  if (vocab_size < 3 || vocab_size > kMaxLmVocab)
    bad("vocab_size", "must be in [3, " + std::to_string(kMaxLmVocab) + "]" + got(vocab_size));
  auto check_id = [&](const char* field, int32_t id) {
    if (id < 0 || id >= vocab_size)
      bad(field, "must be in [0, vocab_size = " + std::to_string(vocab_size) + ")" + got(int64_t{id}));
  };
  check_id("pad_id", pad_id);
  check_id("bos_id", bos_id);
  check_id("eos_id", eos_id);
  if (pad_id == eos_id || pad_id == bos_id) bad("pad_id", "must differ from bos_id and eos_id" + got(int64_t{pad_id}));
  // The beam search starts from bos and ends at eos: one id cannot be both.
  if (bos_id == eos_id) bad("bos_id", "must differ from eos_id" + got(int64_t{bos_id}));
  if (encoder_layers < 1 || encoder_layers > kMaxSeq2SeqLayers)
    bad("encoder_layers", "must be in [1, " + std::to_string(kMaxSeq2SeqLayers) + "]" + got(encoder_layers));
  if (decoder_layers < 1 || decoder_layers > kMaxSeq2SeqLayers)
    bad("decoder_layers", "must be in [1, " + std::to_string(kMaxSeq2SeqLayers) + "]" + got(decoder_layers));
  if (d_ff < 1 || d_ff > kMaxLmWidth) bad("d_ff", "must be in [1, " + std::to_string(kMaxLmWidth) + "]" + got(d_ff));
  if (!(dropout >= 0.0 && dropout < 1.0)) bad("dropout", "must be in [0, 1)" + got(dropout));
  if (!(label_smoothing >= 0.0 && label_smoothing < 1.0))
    bad("label_smoothing", "must be in [0, 1)" + got(label_smoothing));
  if (!(std::isfinite(init_std) && init_std > 0.0)) bad("init_std", "must be finite and > 0" + got(init_std));
  if (position != PositionEncoding::Sinusoidal && position != PositionEncoding::None)
    bad("position", "must be sinusoidal or none");
  encoder_attention.validate(prefix + "encoder_attention.");
  decoder_attention.validate(prefix + "decoder_attention.");
  cross_attention.validate(prefix + "cross_attention.");
  const int64_t d = d_model();
  if (d > kMaxLmWidth) bad("encoder_attention.d_model", "must be <= " + std::to_string(kMaxLmWidth) + got(d));
  if (decoder_attention.d_model != d)
    bad("decoder_attention.d_model", "must equal encoder_attention.d_model (" + std::to_string(d) + ")" +
                                         got(decoder_attention.d_model));
  if (cross_attention.d_model != d)
    bad("cross_attention.d_model",
        "must equal encoder_attention.d_model (" + std::to_string(d) + ")" + got(cross_attention.d_model));
}

nlohmann::json Seq2SeqConfig::to_json() const {
  nlohmann::json j;
  j["kind"] = "seq2seq";
  j["vocab_size"] = vocab_size;
  j["pad_id"] = pad_id;
  j["bos_id"] = bos_id;
  j["eos_id"] = eos_id;
  j["encoder_layers"] = encoder_layers;
  j["decoder_layers"] = decoder_layers;
  j["d_ff"] = d_ff;
  j["dropout"] = dropout;
  j["label_smoothing"] = label_smoothing;
  j["tie_embeddings"] = tie_embeddings;
  j["position"] = position == PositionEncoding::Sinusoidal ? "sinusoidal" : "none";
  j["pre_norm"] = pre_norm;
  j["init_std"] = init_std;
  j["favor_redraw"] = favor_redraw;
  j["encoder_attention"] = noncausal_attention_to_json(encoder_attention);
  j["decoder_attention"] = causal_attention_to_json(decoder_attention);
  j["cross_attention"] = noncausal_attention_to_json(cross_attention);
  // No seed: a checkpoint holds the parameters and the generator's state.
  return j;
}

Seq2SeqConfig Seq2SeqConfig::from_json(const nlohmann::json& root) {
  const JsonConfigReader r("translation model config");
  if (r.text(root, "kind") != "seq2seq") r.fail("kind must be \"seq2seq\"");
  auto id = [&](const char* name) {
    const int64_t v = r.integer(root, name);
    if (v < 0 || v > INT32_MAX) r.fail(std::string("member '") + name + "' is out of range");
    return static_cast<int32_t>(v);
  };
  Seq2SeqConfig c;
  c.vocab_size = r.integer(root, "vocab_size");
  c.pad_id = id("pad_id");
  c.bos_id = id("bos_id");
  c.eos_id = id("eos_id");
  c.encoder_layers = r.integer(root, "encoder_layers");
  c.decoder_layers = r.integer(root, "decoder_layers");
  c.d_ff = r.integer(root, "d_ff");
  c.dropout = r.number(root, "dropout");
  c.label_smoothing = r.number(root, "label_smoothing");
  c.tie_embeddings = r.boolean(root, "tie_embeddings");
  const std::string pos = r.text(root, "position");
  if (pos == "sinusoidal") {
    c.position = PositionEncoding::Sinusoidal;
  } else if (pos == "none") {
    c.position = PositionEncoding::None;
  } else {
    r.fail("unknown position '" + pos + "'");
  }
  c.pre_norm = r.boolean(root, "pre_norm");
  c.init_std = r.number(root, "init_std");
  c.favor_redraw = r.boolean(root, "favor_redraw");
  c.encoder_attention = noncausal_attention_from_json(r.object(root, "encoder_attention"), r.within("encoder_attention"));
  c.decoder_attention = causal_attention_from_json(r.object(root, "decoder_attention"), r.within("decoder_attention"));
  c.cross_attention = noncausal_attention_from_json(r.object(root, "cross_attention"), r.within("cross_attention"));
  try {
    c.validate();
  } catch (const Error& e) {
    r.fail(e.what());
  }
  return c;
}

}  // namespace fwp
