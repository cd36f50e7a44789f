#include "models/lm/lm_config.h"

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/limits.h"

namespace fwp {

namespace {

template <typename V>
std::string got(V v) {
  std::ostringstream os;
  os << v;
  return " (got " + os.str() + ")";
}

const char* feature_map_name(const FastWeightAttentionConfig& c) {
  if (c.softmax) return "softmax";
  switch (c.feature_map) {
    case FeatureMap::Elu: return "elu";
    case FeatureMap::Favor: return "favor";
    case FeatureMap::Dpfp: return "dpfp";
  }
  return "unknown";
}

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::Auto: return "auto";
    case Algorithm::Recurrent: return "recurrent";
    case Algorithm::Chunked: return "chunked";
  }
  return "unknown";
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
  nlohmann::json a;
  a["d_model"] = attention.d_model;
  a["num_heads"] = attention.num_heads;
  a["d_head"] = attention.d_head;
  a["feature_map"] = feature_map_name(attention);
  a["dpfp_nu"] = attention.dpfp_nu;
  a["favor_features"] = attention.favor_features;
  a["favor_redraw"] = attention.favor_redraw;
  a["update_rule"] = attention.update_rule == UpdateRule::Delta ? "delta" : "sum";
  a["sum_normalize"] = attention.sum_normalize;
  a["attn_normalize"] = attention.attn_normalize;
  a["norm_eps"] = attention.norm_eps;
  a["scale_output"] = attention.scale_output;
  a["use_bias"] = attention.use_bias;
  a["init_std"] = attention.init_std;
  a["algorithm"] = algorithm_name(attention.algorithm);
  a["chunk_size"] = attention.chunk_size;

  nlohmann::json j;
  j["kind"] = "lm";
  j["vocab_size"] = vocab_size;
  j["num_layers"] = num_layers;
  j["attention"] = a;
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
  auto fail = [](const std::string& what) { throw Error(FWP_ERR_FORMAT, "language model config: " + what); };
  auto member = [&](const nlohmann::json& j, const char* name) -> const nlohmann::json& {
    if (!j.is_object()) fail("not a JSON object");
    const auto it = j.find(name);
    if (it == j.end()) fail(std::string("member '") + name + "' is missing");
    return *it;
  };
  auto integer = [&](const nlohmann::json& j, const char* name) -> int64_t {
    const auto& v = member(j, name);
    if (!v.is_number_integer()) fail(std::string("member '") + name + "' must be an integer");
    return v.get<int64_t>();
  };
  auto number = [&](const nlohmann::json& j, const char* name) -> double {
    const auto& v = member(j, name);
    if (!v.is_number()) fail(std::string("member '") + name + "' must be a number");
    return v.get<double>();
  };
  auto boolean = [&](const nlohmann::json& j, const char* name) -> bool {
    const auto& v = member(j, name);
    if (!v.is_boolean()) fail(std::string("member '") + name + "' must be true or false");
    return v.get<bool>();
  };
  auto text = [&](const nlohmann::json& j, const char* name) -> std::string {
    const auto& v = member(j, name);
    if (!v.is_string()) fail(std::string("member '") + name + "' must be a string");
    return v.get<std::string>();
  };

  if (text(root, "kind") != "lm") fail("kind must be \"lm\"");
  LmConfig c;
  c.vocab_size = integer(root, "vocab_size");
  c.num_layers = integer(root, "num_layers");
  const nlohmann::json& a = member(root, "attention");
  FastWeightAttentionConfig& at = c.attention;
  at.d_model = integer(a, "d_model");
  at.num_heads = integer(a, "num_heads");
  at.d_head = integer(a, "d_head");
  const std::string fm = text(a, "feature_map");
  at.softmax = false;
  if (fm == "elu") {
    at.feature_map = FeatureMap::Elu;
  } else if (fm == "favor") {
    at.feature_map = FeatureMap::Favor;
  } else if (fm == "dpfp") {
    at.feature_map = FeatureMap::Dpfp;
  } else if (fm == "softmax") {
    at.softmax = true;
  } else {
    fail("unknown feature_map '" + fm + "'");
  }
  at.dpfp_nu = integer(a, "dpfp_nu");
  at.favor_features = integer(a, "favor_features");
  at.favor_redraw = boolean(a, "favor_redraw");
  const std::string rule = text(a, "update_rule");
  if (rule == "delta") {
    at.update_rule = UpdateRule::Delta;
  } else if (rule == "sum") {
    at.update_rule = UpdateRule::Sum;
  } else {
    fail("unknown update_rule '" + rule + "'");
  }
  at.sum_normalize = boolean(a, "sum_normalize");
  at.attn_normalize = boolean(a, "attn_normalize");
  at.norm_eps = number(a, "norm_eps");
  at.scale_output = boolean(a, "scale_output");
  at.use_bias = boolean(a, "use_bias");
  at.init_std = number(a, "init_std");
  const std::string algo = text(a, "algorithm");
  if (algo == "auto") {
    at.algorithm = Algorithm::Auto;
  } else if (algo == "recurrent") {
    at.algorithm = Algorithm::Recurrent;
  } else if (algo == "chunked") {
    at.algorithm = Algorithm::Chunked;
  } else {
    fail("unknown algorithm '" + algo + "'");
  }
  at.chunk_size = integer(a, "chunk_size");
  c.d_ff = integer(root, "d_ff");
  c.dropout = number(root, "dropout");
  c.attn_dropout = number(root, "attn_dropout");
  const std::string pos = text(root, "position");
  if (pos == "sinusoidal") {
    c.position = PositionEncoding::Sinusoidal;
  } else if (pos == "none") {
    c.position = PositionEncoding::None;
  } else {
    fail("unknown position '" + pos + "'");
  }
  c.pre_norm = boolean(root, "pre_norm");
  c.tie_embeddings = boolean(root, "tie_embeddings");
  const auto& cut = member(root, "cutoffs");
  if (!cut.is_array() || static_cast<int64_t>(cut.size()) > kMaxLmCutoffs)
    fail("member 'cutoffs' must be an array of at most " + std::to_string(kMaxLmCutoffs) + " integers");
  for (const auto& v : cut) {
    if (!v.is_number_integer()) fail("member 'cutoffs' must hold integers");
    c.cutoffs.push_back(v.get<int64_t>());
  }
  c.div_val = integer(root, "div_val");
  c.init_std = number(root, "init_std");
  try {
    c.validate();
  } catch (const Error& e) {
    fail(e.what());
  }
  return c;
}

}  // namespace fwp
