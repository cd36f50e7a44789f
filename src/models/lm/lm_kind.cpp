#include "models/lm/lm_kind.h"

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/lm/lm_model.h"
#include "models/registry.h"

namespace fwp {

void register_lm_model(ModelRegistry& registry) {
  registry.add(
      "lm",
      [](const std::shared_ptr<Context>& context, const nlohmann::json& config) {
        // from_json() reports a bad config as FWP_ERR_FORMAT, as a file's content should be.
        return std::shared_ptr<Model>(std::make_shared<LmModel>(context, LmConfig::from_json(config)));
      },
      [](const nlohmann::json& config) {
        std::vector<ParameterShape> shapes;
        for (auto& s : lm_parameter_shapes(LmConfig::from_json(config))) shapes.push_back({s.first, s.second});
        return shapes;
      });
}

}  // namespace fwp
