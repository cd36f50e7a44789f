#include "models/registry.h"

#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "models/lm/lm_kind.h"
#include "models/retrieval/retrieval_kind.h"
#include "models/seq2seq/seq2seq_kind.h"

namespace fwp {

const ModelRegistry& ModelRegistry::builtin() {
  // Built once, on first use (thread-safe), and never changed afterwards.
  static const ModelRegistry registry = [] {
    ModelRegistry r;
    register_retrieval_model(r);
    register_lm_model(r);
    register_seq2seq_model(r);
    return r;
  }();
  return registry;
}

void ModelRegistry::add(const std::string& kind, ModelFactory factory, ParameterShapesFn shapes) {
  require(!kind.empty(), FWP_ERR_INVALID_ARGUMENT, "a model kind name must not be empty");
  require(static_cast<bool>(factory), FWP_ERR_INVALID_ARGUMENT, "the factory of model kind '" + kind + "' is empty");
  require(static_cast<bool>(shapes), FWP_ERR_INVALID_ARGUMENT,
          "the parameter shapes function of model kind '" + kind + "' is empty");
  require(!contains(kind), FWP_ERR_INVALID_ARGUMENT, "model kind '" + kind + "' is registered twice");
  factories_.emplace(kind, Kind{std::move(factory), std::move(shapes)});
}

std::vector<std::string> ModelRegistry::kinds() const {
  std::vector<std::string> names;
  for (const auto& entry : factories_) names.push_back(entry.first);
  return names;
}

const ModelRegistry::Kind& ModelRegistry::find(const nlohmann::json& config) const {
  require(config.is_object(), FWP_ERR_FORMAT, "the model config is not a JSON object");
  const auto kind = config.find("kind");
  require(kind != config.end() && kind->is_string(), FWP_ERR_FORMAT, "the model config has no string 'kind'");
  const std::string& name = kind->get_ref<const std::string&>();
  const auto it = factories_.find(name);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& entry : factories_) known += (known.empty() ? "'" : ", '") + entry.first + "'";
    throw Error(FWP_ERR_FORMAT, "unknown model kind '" + name + "' (this library knows " +
                                    (known.empty() ? std::string("none") : known) + ")");
  }
  return it->second;
}

std::shared_ptr<Model> ModelRegistry::create(const std::shared_ptr<Context>& context,
                                             const nlohmann::json& config) const {
  return find(config).factory(context, config);
}

std::vector<ParameterShape> ModelRegistry::parameter_shapes(const nlohmann::json& config) const {
  return find(config).shapes(config);
}

}  // namespace fwp
