// JSON for model configs: a strict reader (every member present and of its
// type, errors as FWP_ERR_FORMAT naming the config and member) and the
// attention configs that several model kinds embed (the language model's
// causal attention; the translation model's causal and non-causal ones).
// Checkpoints store these objects, so their member names are a file format.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include <nlohmann/json_fwd.hpp>

#include "nn/fast_weight_attention.h"
#include "nn/noncausal_attention.h"

namespace fwp {

class JsonConfigReader {
 public:
  // `what` names the config in messages, e.g. "language model config".
  explicit JsonConfigReader(std::string what) : what_(std::move(what)) {}

  [[noreturn]] void fail(const std::string& message) const;
  // A reader for the object member `name` whose messages say where they are
  // ("translation model config, cross_attention: member 'd_model' is missing").
  JsonConfigReader within(const char* name) const { return JsonConfigReader(what_ + ", " + name); }
  const nlohmann::json& member(const nlohmann::json& j, const char* name) const;
  // The member `name`, which must be a JSON object.
  const nlohmann::json& object(const nlohmann::json& j, const char* name) const;
  int64_t integer(const nlohmann::json& j, const char* name) const;
  double number(const nlohmann::json& j, const char* name) const;
  bool boolean(const nlohmann::json& j, const char* name) const;
  std::string text(const nlohmann::json& j, const char* name) const;

 private:
  std::string what_;
};

// "elu", "favor", "dpfp" (or "softmax" for the attention's softmax flag).
const char* feature_map_json_name(bool softmax, FeatureMap map);

nlohmann::json causal_attention_to_json(const FastWeightAttentionConfig& c);
FastWeightAttentionConfig causal_attention_from_json(const nlohmann::json& j, const JsonConfigReader& reader);

nlohmann::json noncausal_attention_to_json(const NonCausalAttentionConfig& c);
NonCausalAttentionConfig noncausal_attention_from_json(const nlohmann::json& j, const JsonConfigReader& reader);

}  // namespace fwp
