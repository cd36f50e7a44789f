#include "models/retrieval/retrieval_kind.h"

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "models/registry.h"
#include "models/retrieval/retrieval_model.h"

namespace fwp {

namespace {

// What RetrievalNetwork's constructor declares, in its order (a test compares
// the two for every kind of layer).
std::vector<ParameterShape> retrieval_parameter_shapes(const nlohmann::json& config) {
  const RetrievalConfig c = RetrievalConfig::from_json(config);  // validated, so no size below overflows
  const int64_t S = c.num_keys, E = c.embedding_dim(), dh = c.d_head;
  std::vector<ParameterShape> shapes = {{"key_embedding", {S, E}},
                                        {"k_proj.weight", {dh, S + E}},
                                        {"k_proj.bias", {dh}},
                                        {"q_proj.weight", {dh, E}},
                                        {"q_proj.bias", {dh}}};
  if (!c.softmax && c.update_rule == UpdateRule::Delta) {
    shapes.push_back({"beta_proj.weight", {1, S + E}});
    shapes.push_back({"beta_proj.bias", {1}});
  }
  if (!c.softmax && c.feature_map == FeatureMap::Favor) shapes.push_back({"favor.projection", {c.favor_features, dh}});
  return shapes;
}

}  // namespace

void register_retrieval_model(ModelRegistry& registry) {
  registry.add(
      "retrieval",
      [](const std::shared_ptr<Context>& context, const nlohmann::json& config) {
        // from_json() reports a bad config as FWP_ERR_FORMAT, as a file's content should be.
        const RetrievalConfig parsed = RetrievalConfig::from_json(config);
        return std::shared_ptr<Model>(std::make_shared<RetrievalModel>(context, parsed));
      },
      retrieval_parameter_shapes);
}

}  // namespace fwp
