#include "models/retrieval/retrieval_kind.h"

#include <memory>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "models/registry.h"
#include "models/retrieval/retrieval_model.h"

namespace fwp {

void register_retrieval_model(ModelRegistry& registry) {
  registry.add("retrieval", [](const std::shared_ptr<Context>& context, const nlohmann::json& config) {
    // from_json() reports a bad config as FWP_ERR_FORMAT, as a file's content should be.
    const RetrievalConfig parsed = RetrievalConfig::from_json(config);
    return std::shared_ptr<Model>(std::make_shared<RetrievalModel>(context, parsed));
  });
}

}  // namespace fwp
