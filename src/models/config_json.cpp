#include "models/config_json.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fwp {

void JsonConfigReader::fail(const std::string& message) const { throw Error(FWP_ERR_FORMAT, what_ + ": " + message); }

const nlohmann::json& JsonConfigReader::member(const nlohmann::json& j, const char* name) const {
  if (!j.is_object()) fail("not a JSON object");
  const auto it = j.find(name);
  if (it == j.end()) fail(std::string("member '") + name + "' is missing");
  return *it;
}

const nlohmann::json& JsonConfigReader::object(const nlohmann::json& j, const char* name) const {
  const auto& v = member(j, name);
  if (!v.is_object()) fail(std::string("member '") + name + "' must be an object");
  return v;
}

int64_t JsonConfigReader::integer(const nlohmann::json& j, const char* name) const {
  const auto& v = member(j, name);
  if (!v.is_number_integer()) fail(std::string("member '") + name + "' must be an integer");
  return v.get<int64_t>();
}

double JsonConfigReader::number(const nlohmann::json& j, const char* name) const {
  const auto& v = member(j, name);
  if (!v.is_number()) fail(std::string("member '") + name + "' must be a number");
  return v.get<double>();
}

bool JsonConfigReader::boolean(const nlohmann::json& j, const char* name) const {
  const auto& v = member(j, name);
  if (!v.is_boolean()) fail(std::string("member '") + name + "' must be true or false");
  return v.get<bool>();
}

std::string JsonConfigReader::text(const nlohmann::json& j, const char* name) const {
  const auto& v = member(j, name);
  if (!v.is_string()) fail(std::string("member '") + name + "' must be a string");
  return v.get<std::string>();
}

const char* feature_map_json_name(bool softmax, FeatureMap map) {
  if (softmax) return "softmax";
  switch (map) {
    case FeatureMap::Elu: return "elu";
    case FeatureMap::Favor: return "favor";
    case FeatureMap::Dpfp: return "dpfp";
  }
  return "unknown";
}

namespace {

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::Auto: return "auto";
    case Algorithm::Recurrent: return "recurrent";
    case Algorithm::Chunked: return "chunked";
  }
  return "unknown";
}

// The members both attention kinds have.
template <class Config>
void common_to_json(const Config& c, nlohmann::json& a) {
  a["d_model"] = c.d_model;
  a["num_heads"] = c.num_heads;
  a["d_head"] = c.d_head;
  a["feature_map"] = feature_map_json_name(c.softmax, c.feature_map);
  a["dpfp_nu"] = c.dpfp_nu;
  a["favor_features"] = c.favor_features;
  a["sum_normalize"] = c.sum_normalize;
  a["attn_normalize"] = c.attn_normalize;
  a["norm_eps"] = c.norm_eps;
  a["scale_output"] = c.scale_output;
  a["use_bias"] = c.use_bias;
  a["init_std"] = c.init_std;
}

template <class Config>
void common_from_json(const nlohmann::json& a, const JsonConfigReader& r, Config& c) {
  c.d_model = r.integer(a, "d_model");
  c.num_heads = r.integer(a, "num_heads");
  c.d_head = r.integer(a, "d_head");
  const std::string fm = r.text(a, "feature_map");
  c.softmax = false;
  if (fm == "elu") {
    c.feature_map = FeatureMap::Elu;
  } else if (fm == "favor") {
    c.feature_map = FeatureMap::Favor;
  } else if (fm == "dpfp") {
    c.feature_map = FeatureMap::Dpfp;
  } else if (fm == "softmax") {
    c.softmax = true;
  } else {
    r.fail("unknown feature_map '" + fm + "'");
  }
  c.dpfp_nu = r.integer(a, "dpfp_nu");
  c.favor_features = r.integer(a, "favor_features");
  c.sum_normalize = r.boolean(a, "sum_normalize");
  c.attn_normalize = r.boolean(a, "attn_normalize");
  c.norm_eps = r.number(a, "norm_eps");
  c.scale_output = r.boolean(a, "scale_output");
  c.use_bias = r.boolean(a, "use_bias");
  c.init_std = r.number(a, "init_std");
}

}  // namespace

nlohmann::json causal_attention_to_json(const FastWeightAttentionConfig& c) {
  nlohmann::json a;
  common_to_json(c, a);
  a["favor_redraw"] = c.favor_redraw;
  a["update_rule"] = c.update_rule == UpdateRule::Delta ? "delta" : "sum";
  a["algorithm"] = algorithm_name(c.algorithm);
  a["chunk_size"] = c.chunk_size;
  return a;
}

FastWeightAttentionConfig causal_attention_from_json(const nlohmann::json& a, const JsonConfigReader& r) {
  FastWeightAttentionConfig c;
  common_from_json(a, r, c);
  c.favor_redraw = r.boolean(a, "favor_redraw");
  const std::string rule = r.text(a, "update_rule");
  if (rule == "delta") {
    c.update_rule = UpdateRule::Delta;
  } else if (rule == "sum") {
    c.update_rule = UpdateRule::Sum;
  } else {
    r.fail("unknown update_rule '" + rule + "'");
  }
  const std::string algo = r.text(a, "algorithm");
  if (algo == "auto") {
    c.algorithm = Algorithm::Auto;
  } else if (algo == "recurrent") {
    c.algorithm = Algorithm::Recurrent;
  } else if (algo == "chunked") {
    c.algorithm = Algorithm::Chunked;
  } else {
    r.fail("unknown algorithm '" + algo + "'");
  }
  c.chunk_size = r.integer(a, "chunk_size");
  return c;
}

nlohmann::json noncausal_attention_to_json(const NonCausalAttentionConfig& c) {
  nlohmann::json a;
  common_to_json(c, a);
  return a;
}

NonCausalAttentionConfig noncausal_attention_from_json(const nlohmann::json& a, const JsonConfigReader& r) {
  NonCausalAttentionConfig c;
  common_from_json(a, r, c);
  return c;
}

}  // namespace fwp
