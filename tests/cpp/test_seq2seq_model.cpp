// The translation model's kind (models/seq2seq/seq2seq_model.h, seq2seq_kind.h)
// and the config JSON it shares with the language model (models/config_json.h):
// seq2seq_parameter_shapes() and the registry's shapes against the network's
// parameters for many configs; Seq2SeqConfig's JSON round trip and every
// missing, mistyped or bad member; the LM's JSON after the move to the shared
// attention code (same members, same values, round trip).
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/error.h"
#include "core/context.h"
#include "core/rng.h"
#include "models/lm/lm_config.h"
#include "models/registry.h"
#include "models/seq2seq/seq2seq_config.h"
#include "models/seq2seq/seq2seq_model.h"
#include "models/seq2seq/seq2seq_network.h"

namespace fwp {
namespace {

// A small model: vocabulary 11, d_model 8, 2 heads of 4, d_ff 12, 2 + 3 layers.
Seq2SeqConfig small() {
  Seq2SeqConfig c;
  c.vocab_size = 11;
  c.encoder_layers = 2;
  c.decoder_layers = 3;
  c.set_sizes(8, 2, 4);
  c.d_ff = 12;
  c.dropout = 0.0;
  return c;
}

void make_softmax(NonCausalAttentionConfig& a) {
  a.softmax = true;
  a.attn_normalize = false;
  a.sum_normalize = false;
  a.scale_output = false;
}

// Named variations, each away from small() in the places the shapes depend on.
std::vector<std::pair<std::string, Seq2SeqConfig>> variations() {
  std::vector<std::pair<std::string, Seq2SeqConfig>> v;
  v.push_back({"default", small()});
  Seq2SeqConfig c = small();
  c.tie_embeddings = false;
  v.push_back({"untied", c});
  c = small();
  c.pre_norm = true;
  v.push_back({"pre-norm", c});
  c.tie_embeddings = false;
  c.position = PositionEncoding::None;
  v.push_back({"pre-norm untied", c});
  c = small();
  c.encoder_attention.feature_map = FeatureMap::Favor;
  c.encoder_attention.favor_features = 5;
  v.push_back({"favor encoder", c});
  c = small();
  c.cross_attention.feature_map = FeatureMap::Favor;
  c.cross_attention.favor_features = 7;
  v.push_back({"favor cross", c});
  c = small();
  c.decoder_attention.feature_map = FeatureMap::Favor;
  c.decoder_attention.favor_features = 3;
  v.push_back({"favor decoder", c});
  c = small();
  c.decoder_attention.update_rule = UpdateRule::Delta;
  c.decoder_attention.sum_normalize = true;
  v.push_back({"delta decoder", c});
  c.decoder_attention.use_bias = true;
  c.decoder_attention.feature_map = FeatureMap::Favor;
  v.push_back({"delta favor decoder with biases", c});
  c = small();
  make_softmax(c.encoder_attention);
  make_softmax(c.cross_attention);
  c.decoder_attention.softmax = true;
  c.decoder_attention.attn_normalize = false;
  c.decoder_attention.sum_normalize = false;
  v.push_back({"softmax", c});
  c = small();
  c.encoder_attention.use_bias = true;
  v.push_back({"encoder biases", c});
  c = small();
  c.cross_attention.use_bias = true;
  c.cross_attention.feature_map = FeatureMap::Dpfp;
  c.cross_attention.dpfp_nu = 2;
  v.push_back({"cross biases, dpfp", c});
  c = small();
  c.decoder_attention.use_bias = true;
  v.push_back({"decoder biases", c});
  c = small();
  // Heads and widths differ per kind.
  c.encoder_attention.num_heads = 4;
  c.encoder_attention.d_head = 3;
  c.cross_attention.num_heads = 1;
  c.cross_attention.d_head = 6;
  c.decoder_attention.num_heads = 3;
  c.decoder_attention.d_head = 2;
  v.push_back({"mixed head shapes", c});
  return v;
}

TEST(Seq2SeqModelKind, ParameterShapesAreTheNetworksParameters) {
  for (const auto& [name, c] : variations()) {
    SCOPED_TRACE(name);
    const Seq2SeqNetwork<float> net(c, make_cpu_backend<float>(1), Rng(3));
    const auto shapes = seq2seq_parameter_shapes(c);
    const auto registry = ModelRegistry::builtin().parameter_shapes(c.to_json());
    ASSERT_EQ(static_cast<int64_t>(shapes.size()), net.params().size());
    ASSERT_EQ(registry.size(), shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      const auto& p = net.params()[static_cast<int64_t>(i)];
      EXPECT_EQ(shapes[i].first, p.name) << "parameter " << i;
      EXPECT_EQ(shapes[i].second, p.shape) << p.name;
      EXPECT_EQ(registry[i].name, p.name);
      EXPECT_EQ(registry[i].shape, p.shape) << p.name;
    }
  }
}

// The model the registry builds from a JSON config is a Seq2SeqModel of that config.
TEST(Seq2SeqModelKind, RegistryCreatesTheModel) {
  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = 1;
  auto ctx = std::make_shared<Context>(cc);
  Seq2SeqConfig c = small();
  c.tie_embeddings = false;
  const auto model = ModelRegistry::builtin().create(ctx, c.to_json());
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->kind(), FWP_MODEL_SEQ2SEQ);
  EXPECT_EQ(model->config_json(), c.to_json());
  auto* s = dynamic_cast<Seq2SeqModel*>(model.get());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->config().to_json(), c.to_json());
  EXPECT_TRUE(model->attention_state_specs().empty());  // no fwp_state
  // backward before any forward.
  try {
    model->backward();
    ADD_FAILURE() << "backward without a forward";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_BAD_STATE);
  }
}

void expect_same(const NonCausalAttentionConfig& a, const NonCausalAttentionConfig& b) {
  EXPECT_EQ(a.d_model, b.d_model);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.d_head, b.d_head);
  EXPECT_EQ(a.softmax, b.softmax);
  if (!a.softmax) {
    EXPECT_EQ(a.feature_map, b.feature_map);
  }
  EXPECT_EQ(a.dpfp_nu, b.dpfp_nu);
  EXPECT_EQ(a.favor_features, b.favor_features);
  EXPECT_EQ(a.sum_normalize, b.sum_normalize);
  EXPECT_EQ(a.attn_normalize, b.attn_normalize);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.scale_output, b.scale_output);
  EXPECT_EQ(a.use_bias, b.use_bias);
  EXPECT_EQ(a.init_std, b.init_std);
}

void expect_same(const FastWeightAttentionConfig& a, const FastWeightAttentionConfig& b) {
  EXPECT_EQ(a.d_model, b.d_model);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.d_head, b.d_head);
  EXPECT_EQ(a.softmax, b.softmax);
  if (!a.softmax) {
    EXPECT_EQ(a.feature_map, b.feature_map);
  }
  EXPECT_EQ(a.dpfp_nu, b.dpfp_nu);
  EXPECT_EQ(a.favor_features, b.favor_features);
  EXPECT_EQ(a.favor_redraw, b.favor_redraw);
  EXPECT_EQ(a.update_rule, b.update_rule);
  EXPECT_EQ(a.sum_normalize, b.sum_normalize);
  EXPECT_EQ(a.attn_normalize, b.attn_normalize);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.scale_output, b.scale_output);
  EXPECT_EQ(a.use_bias, b.use_bias);
  EXPECT_EQ(a.init_std, b.init_std);
  EXPECT_EQ(a.algorithm, b.algorithm);
  EXPECT_EQ(a.chunk_size, b.chunk_size);
}

// Every field but the seed (not stored).
void expect_same(const Seq2SeqConfig& a, const Seq2SeqConfig& b) {
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.pad_id, b.pad_id);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(a.encoder_layers, b.encoder_layers);
  EXPECT_EQ(a.decoder_layers, b.decoder_layers);
  EXPECT_EQ(a.d_ff, b.d_ff);
  EXPECT_EQ(a.dropout, b.dropout);
  EXPECT_EQ(a.label_smoothing, b.label_smoothing);
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  EXPECT_EQ(a.position, b.position);
  EXPECT_EQ(a.pre_norm, b.pre_norm);
  EXPECT_EQ(a.init_std, b.init_std);
  EXPECT_EQ(a.favor_redraw, b.favor_redraw);
  expect_same(a.encoder_attention, b.encoder_attention);
  expect_same(a.decoder_attention, b.decoder_attention);
  expect_same(a.cross_attention, b.cross_attention);
}

// Every field away from its default.
Seq2SeqConfig unusual() {
  Seq2SeqConfig c = small();
  c.vocab_size = 30;
  c.pad_id = 29;
  c.bos_id = 4;
  c.eos_id = 17;
  c.d_ff = 20;
  c.dropout = 0.125;
  c.label_smoothing = 0.3;
  c.tie_embeddings = false;
  c.position = PositionEncoding::None;
  c.pre_norm = true;
  c.init_std = 0.07;
  c.favor_redraw = false;
  c.seed = 42;
  c.encoder_attention.feature_map = FeatureMap::Favor;
  c.encoder_attention.favor_features = 9;
  c.encoder_attention.sum_normalize = true;
  c.encoder_attention.norm_eps = 1e-4;
  c.encoder_attention.init_std = 0.5;
  c.cross_attention.feature_map = FeatureMap::Dpfp;
  c.cross_attention.dpfp_nu = 3;
  c.cross_attention.attn_normalize = false;
  c.cross_attention.scale_output = true;
  c.cross_attention.use_bias = true;
  c.decoder_attention.feature_map = FeatureMap::Dpfp;
  c.decoder_attention.dpfp_nu = 2;
  c.decoder_attention.favor_redraw = false;
  c.decoder_attention.update_rule = UpdateRule::Delta;
  c.decoder_attention.sum_normalize = true;
  c.decoder_attention.algorithm = Algorithm::Chunked;
  c.decoder_attention.chunk_size = 16;
  c.decoder_attention.num_heads = 1;
  c.decoder_attention.d_head = 5;
  return c;
}

TEST(Seq2SeqConfigJson, RoundTrips) {
  std::vector<std::pair<std::string, Seq2SeqConfig>> configs = variations();
  configs.push_back({"unusual", unusual()});
  Seq2SeqConfig big;  // the paper's defaults
  big.vocab_size = 32000;
  configs.push_back({"paper-big", big});
  for (const auto& [name, c] : configs) {
    SCOPED_TRACE(name);
    const nlohmann::json j = c.to_json();
    EXPECT_EQ(j.at("kind"), "seq2seq");
    EXPECT_FALSE(j.contains("seed"));
    const Seq2SeqConfig back = Seq2SeqConfig::from_json(j);
    expect_same(c, back);
    EXPECT_EQ(back.seed, 0u);
    EXPECT_EQ(back.to_json(), j);
    // Through text as a checkpoint stores it.
    EXPECT_EQ(Seq2SeqConfig::from_json(nlohmann::json::parse(j.dump())).to_json(), j);
  }
}

void expect_format_error(const nlohmann::json& j, const std::string& fragment, const std::string& what) {
  try {
    (void)Seq2SeqConfig::from_json(j);
    ADD_FAILURE() << what << ": accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_FORMAT) << what << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << what << ": " << e.what();
  }
  // The registry's shapes function reports the same (a checkpoint's config is read there first).
  try {
    (void)ModelRegistry::builtin().parameter_shapes(j);
    ADD_FAILURE() << what << ": shapes accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_FORMAT) << what << ": " << e.what();
  }
}

// A value of another JSON type than `v`.
nlohmann::json mistyped(const nlohmann::json& v) {
  if (v.is_string()) return 7;
  if (v.is_boolean()) return 1;
  if (v.is_number_integer()) return 1.5;
  if (v.is_number()) return "0.5";
  return "object";
}

// Every member, at the top and inside the three attention objects: missing, and of another type.
TEST(Seq2SeqConfigJson, EveryMissingOrMistypedMemberIsAFormatError) {
  const nlohmann::json good = unusual().to_json();
  int checked = 0;
  for (const auto& [key, value] : good.items()) {
    nlohmann::json j = good;
    j.erase(key);
    expect_format_error(j, key, "without " + key);
    j = good;
    j[key] = mistyped(value);
    expect_format_error(j, key, key + " mistyped");
    ++checked;
    if (!value.is_object()) continue;
    for (const auto& [inner, inner_value] : value.items()) {
      j = good;
      j[key].erase(inner);
      expect_format_error(j, inner, "without " + key + "." + inner);
      j = good;
      j[key][inner] = mistyped(inner_value);
      expect_format_error(j, inner, key + "." + inner + " mistyped");
      ++checked;
    }
  }
  EXPECT_EQ(checked, 18 + 12 + 16 + 12);  // the members of the format, as written today
  expect_format_error(nlohmann::json::array(), "object", "an array");
}

TEST(Seq2SeqConfigJson, BadValuesAreFormatErrors) {
  const nlohmann::json good = unusual().to_json();
  auto bad = [&](const std::string& fragment, const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = good;
    edit(j);
    expect_format_error(j, fragment, fragment);
  };
  bad("kind", [](nlohmann::json& j) { j["kind"] = "lm"; });
  bad("position", [](nlohmann::json& j) { j["position"] = "learned"; });
  bad("feature_map", [](nlohmann::json& j) { j["cross_attention"]["feature_map"] = "relu"; });
  bad("update_rule", [](nlohmann::json& j) { j["decoder_attention"]["update_rule"] = "oja"; });
  bad("algorithm", [](nlohmann::json& j) { j["decoder_attention"]["algorithm"] = "fast"; });
  bad("vocab_size", [](nlohmann::json& j) { j["vocab_size"] = 2; });
  bad("pad_id", [](nlohmann::json& j) { j["pad_id"] = -1; });
  bad("pad_id", [](nlohmann::json& j) { j["pad_id"] = int64_t{1} << 40; });
  bad("eos_id", [](nlohmann::json& j) { j["eos_id"] = 30; });
  bad("bos_id", [](nlohmann::json& j) { j["bos_id"] = 17; });  // == eos_id
  bad("encoder_layers", [](nlohmann::json& j) { j["encoder_layers"] = 0; });
  bad("decoder_layers", [](nlohmann::json& j) { j["decoder_layers"] = 5000; });
  bad("dropout", [](nlohmann::json& j) { j["dropout"] = 1.0; });
  bad("cross_attention.d_model", [](nlohmann::json& j) { j["cross_attention"]["d_model"] = 16; });
  bad("decoder_attention.d_model", [](nlohmann::json& j) { j["decoder_attention"]["d_model"] = 4; });
  bad("encoder_attention.num_heads", [](nlohmann::json& j) { j["encoder_attention"]["num_heads"] = 0; });
}

// ---- the language model's config, now written by the shared attention code ----------------------

TEST(LmConfigJson, MembersAndValuesAreUnchanged) {
  LmConfig c;
  c.vocab_size = 100;
  c.num_layers = 3;
  c.attention.d_model = 32;
  c.attention.num_heads = 4;
  c.attention.d_head = 8;
  c.attention.feature_map = FeatureMap::Favor;
  c.attention.favor_features = 12;
  c.attention.favor_redraw = false;
  c.attention.algorithm = Algorithm::Chunked;
  c.attention.chunk_size = 32;
  c.attention.use_bias = true;
  c.d_ff = 64;
  c.dropout = 0.25;
  c.pre_norm = true;
  c.tie_embeddings = true;
  c.cutoffs = {20, 50};
  c.div_val = 2;
  c.init_std = 0.05;
  // What the LM's own JSON code (before the shared attention code) wrote for this config.
  const nlohmann::json want = nlohmann::json::parse(R"({
    "kind": "lm", "vocab_size": 100, "num_layers": 3,
    "attention": {"d_model": 32, "num_heads": 4, "d_head": 8, "feature_map": "favor", "dpfp_nu": 1,
                  "favor_features": 12, "favor_redraw": false, "update_rule": "delta", "sum_normalize": true,
                  "attn_normalize": false, "norm_eps": 1e-6, "scale_output": true, "use_bias": true,
                  "init_std": 0.02, "algorithm": "chunked", "chunk_size": 32},
    "d_ff": 64, "dropout": 0.25, "attn_dropout": 0.0, "position": "sinusoidal", "pre_norm": true,
    "tie_embeddings": true, "cutoffs": [20, 50], "div_val": 2, "init_std": 0.05})");
  const nlohmann::json j = c.to_json();
  EXPECT_EQ(j, want) << j.dump();
  EXPECT_EQ(j.dump(), want.dump());
  // Member sets, spelled out (a renamed member breaks every saved checkpoint).
  std::vector<std::string> keys, attention_keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  for (const auto& [k, v] : j.at("attention").items()) attention_keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"attention", "attn_dropout", "cutoffs", "d_ff", "div_val", "dropout",
                                            "init_std", "kind", "num_layers", "position", "pre_norm",
                                            "tie_embeddings", "vocab_size"}));
  EXPECT_EQ(attention_keys,
            (std::vector<std::string>{"algorithm", "attn_normalize", "chunk_size", "d_head", "d_model", "dpfp_nu",
                                      "favor_features", "favor_redraw", "feature_map", "init_std", "norm_eps",
                                      "num_heads", "scale_output", "sum_normalize", "update_rule", "use_bias"}));
}

TEST(LmConfigJson, RoundTripsAndReportsMissingAttentionMembers) {
  for (bool softmax : {false, true}) {
    LmConfig c;
    c.vocab_size = 50;
    c.num_layers = 2;
    c.attention.d_model = 16;
    c.attention.num_heads = 2;
    c.attention.d_head = 8;
    if (softmax) {
      c.attention.softmax = true;
      c.attention.update_rule = UpdateRule::Sum;
      c.attention.sum_normalize = false;
      c.attention.scale_output = false;
    } else {
      c.attention.feature_map = FeatureMap::Elu;
      c.attention.update_rule = UpdateRule::Sum;
      c.attention.attn_normalize = true;
    }
    c.position = PositionEncoding::None;
    const nlohmann::json j = c.to_json();
    const LmConfig back = LmConfig::from_json(j);
    expect_same(c.attention, back.attention);
    EXPECT_EQ(back.to_json(), j);
    for (const auto& [k, v] : j.at("attention").items()) {
      nlohmann::json m = j;
      m["attention"].erase(k);
      try {
        (void)LmConfig::from_json(m);
        ADD_FAILURE() << "accepted without attention." << k;
      } catch (const Error& e) {
        EXPECT_EQ(e.status(), FWP_ERR_FORMAT);
        const std::string what = e.what();
        EXPECT_NE(what.find(k), std::string::npos) << what;
        EXPECT_NE(what.find("language model config"), std::string::npos) << what;
      }
    }
  }
}

}  // namespace
}  // namespace fwp
