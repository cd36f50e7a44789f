#include "models/lm/lm_config.h"

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/limits.h"
#include "models/config_json.h"

namespace fwp {

namespace {

template <typename V>
std::string got(V v) {
  std::ostringstream os;
  os << v;
  return " (got " + os.str() + ")";
}

}  // namespace

void LmConfig::validate(const std::string& prefix) const {
  require(vocab_size >= 2 && vocab_size <= kMaxLmVocab, FWP_ERR_INVALID_ARGUMENT,
          prefix + "vocab_size must be in [2, " + std::to_string(kMaxLmVocab) + "]" + got(vocab_size));
  require(num_layers >= 1 && num_layers <= kMaxLmLayers, FWP_ERR_INVALID_ARGUMENT,
          prefix + "num_layers must be in [1, " + std::to_string(kMaxLmLayers) + "]" + got(num_layers));
  require(attention.d_model <= kMaxLmWidth, FWP_ERR_INVALID_ARGUMENT,
          prefix + "attention.d_model must be <= " + std::to_string(kMaxLmWidth) + got(attention.d_model));
  attention.validate(prefix + "attention.");
  require(d_ff >= 1 && d_ff <= kMaxLmWidth, FWP_ERR_INVALID_ARGUMENT,
          prefix + "d_ff must be in [1, " + std::to_string(kMaxLmWidth) + "]" + got(d_ff));
  checked_mul(vocab_size, attention.d_model, prefix + "vocab_size * d_model (the embedding table)");
  require(std::isfinite(dropout) && dropout >= 0 && dropout < 1, FWP_ERR_INVALID_ARGUMENT,
          prefix + "dropout must be in [0, 1)" + got(dropout));
  require(std::isfinite(attn_dropout) && attn_dropout >= 0 && attn_dropout < 1, FWP_ERR_INVALID_ARGUMENT,
          prefix + "attn_dropout must be in [0, 1)" + got(attn_dropout));
  // The attention module has no dropout on its weights; the paper's scripts
  // run with dropatt 0, so only that is accepted rather than ignoring a value.
  require(attn_dropout == 0, FWP_ERR_UNSUPPORTED,
          prefix + "attn_dropout must be 0: attention dropout is not built in yet" + got(attn_dropout));
  require(std::isfinite(init_std) && init_std >= 0, FWP_ERR_INVALID_ARGUMENT,
          prefix + "init_std must be finite and >= 0" + got(init_std));
  require(div_val >= 1, FWP_ERR_INVALID_ARGUMENT, prefix + "div_val must be >= 1" + got(div_val));
  require(static_cast<int64_t>(cutoffs.size()) <= kMaxLmCutoffs, FWP_ERR_INVALID_ARGUMENT,
          prefix + "cutoffs: at most " + std::to_string(kMaxLmCutoffs) + " are allowed" + got(cutoffs.size()));
  int64_t previous = 0;
  for (size_t i = 0; i < cutoffs.size(); ++i) {
    if (cutoffs[i] <= previous && i > 0) {
      throw Error(FWP_ERR_INVALID_ARGUMENT, prefix + "cutoffs[" + std::to_string(i) +
                                                "] must be greater than cutoffs[" + std::to_string(i - 1) + "] (" +
                                                std::to_string(previous) + "): cutoffs are strictly increasing" +
                                                got(cutoffs[i]));
    }
    require(cutoffs[i] > 0 && cutoffs[i] < vocab_size, FWP_ERR_INVALID_ARGUMENT,
            prefix + "cutoffs[" + std::to_string(i) + "] must be in (0, vocab_size = " + std::to_string(vocab_size) +
                ")" + got(cutoffs[i]));
    previous = cutoffs[i];
  }
  // The last cluster's table is d_model / div_val^K wide (the authors' integer
  // division); it must keep at least one column.
  int64_t width = attention.d_model;
  for (size_t k = 0; k < cutoffs.size() && width >= 1; ++k) width /= div_val;
  require(width >= 1, FWP_ERR_INVALID_ARGUMENT,
          prefix + "div_val is too large for d_model " + std::to_string(attention.d_model) + " and " +
              std::to_string(cutoffs.size()) + " cutoffs: the last cluster's width d_model / div_val^" +
              std::to_string(cutoffs.size()) + " would be 0 (use a smaller div_val or fewer cutoffs)" +
              got(div_val));
}

nlohmann::json LmConfig::to_json() const {
  nlohmann::json j;
  j["kind"] = "lm";
  j["vocab_size"] = vocab_size;
  j["num_layers"] = num_layers;
  j["attention"] = causal_attention_to_json(attention);
  j["d_ff"] = d_ff;
  j["dropout"] = dropout;
  j["attn_dropout"] = attn_dropout;
  j["position"] = position == PositionEncoding::Sinusoidal ? "sinusoidal" : "none";
  j["pre_norm"] = pre_norm;
  j["tie_embeddings"] = tie_embeddings;
  j["cutoffs"] = cutoffs;
  j["div_val"] = div_val;
  j["init_std"] = init_std;
  // No seed: it only draws the initial parameters, which a checkpoint holds
  // (with the generator's state), and a model of any seed loads any file.
  return j;
}

LmConfig LmConfig::from_json(const nlohmann::json& root) {
  const JsonConfigReader r("language model config");

  if (r.text(root, "kind") != "lm") r.fail("kind must be \"lm\"");
  LmConfig c;
  c.vocab_size = r.integer(root, "vocab_size");
  c.num_layers = r.integer(root, "num_layers");
  c.attention = causal_attention_from_json(r.member(root, "attention"), r);
  c.d_ff = r.integer(root, "d_ff");
  c.dropout = r.number(root, "dropout");
  c.attn_dropout = r.number(root, "attn_dropout");
  const std::string pos = r.text(root, "position");
  if (pos == "sinusoidal") {
    c.position = PositionEncoding::Sinusoidal;
  } else if (pos == "none") {
    c.position = PositionEncoding::None;
  } else {
    r.fail("unknown position '" + pos + "'");
  }
  c.pre_norm = r.boolean(root, "pre_norm");
  c.tie_embeddings = r.boolean(root, "tie_embeddings");
  const auto& cut = r.member(root, "cutoffs");
  if (!cut.is_array() || static_cast<int64_t>(cut.size()) > kMaxLmCutoffs)
    r.fail("member 'cutoffs' must be an array of at most " + std::to_string(kMaxLmCutoffs) + " integers");
  for (const auto& v : cut) {
    if (!v.is_number_integer()) r.fail("member 'cutoffs' must hold integers");
    c.cutoffs.push_back(v.get<int64_t>());
  }
  c.div_val = r.integer(root, "div_val");
  c.init_std = r.number(root, "init_std");
  try {
    c.validate();
  } catch (const Error& e) {
    r.fail(e.what());
  }
  return c;
}

}  // namespace fwp
