// The registry of model kinds: kind name -> factory that builds a Model from a
// context and the config JSON that Model::config_json() wrote (its "kind"
// member names the kind). Loading a model from a checkpoint goes through it,
// so the checkpoint code knows no model.
//
// Each model folder provides a function that adds its kind (e.g.
// register_retrieval_model() in models/retrieval/retrieval_kind.h);
// ModelRegistry::builtin() calls them all. Registration is explicit rather
// than by static initialisers because the library is also linked as a static
// archive, from which the linker would drop an otherwise unreferenced
// registration object.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/model.h"

namespace fwp {

class Context;

// Builds a model of one kind from its config JSON with fresh parameters.
// Throws Error(FWP_ERR_FORMAT) for a config it cannot accept.
using ModelFactory =
    std::function<std::shared_ptr<Model>(const std::shared_ptr<Context>& context, const nlohmann::json& config)>;

// One parameter a config implies: its name and shape (every parameter is F32).
struct ParameterShape {
  std::string name;
  std::vector<int64_t> shape;
  bool operator==(const ParameterShape& o) const { return name == o.name && shape == o.shape; }
};
// The parameters, in the model's order, that the factory would allocate for
// `config`, computed without allocating anything, so a checkpoint's tensors
// are checked against its config before the model is built (a small file
// with a huge config must not cost memory). Throws Error(FWP_ERR_FORMAT) for
// a config the factory would reject.
using ParameterShapesFn = std::function<std::vector<ParameterShape>(const nlohmann::json& config)>;

class ModelRegistry {
 public:
  // The kinds this library builds in (retrieval, lm, seq2seq).
  static const ModelRegistry& builtin();

  // Adds a kind. Error(FWP_ERR_INVALID_ARGUMENT) for an empty name, a kind
  // added before, or an empty factory or shapes function.
  void add(const std::string& kind, ModelFactory factory, ParameterShapesFn shapes);

  bool contains(const std::string& kind) const { return factories_.count(kind) != 0; }
  // The registered kind names, sorted.
  std::vector<std::string> kinds() const;

  // Builds the model that `config` describes. Error(FWP_ERR_FORMAT) when the
  // config is not an object with a string "kind", when no such kind is
  // registered (the message lists the known ones), or from the factory.
  std::shared_ptr<Model> create(const std::shared_ptr<Context>& context, const nlohmann::json& config) const;
  // The parameters create() would allocate, with the same errors, allocating nothing.
  std::vector<ParameterShape> parameter_shapes(const nlohmann::json& config) const;

 private:
  struct Kind {
    ModelFactory factory;
    ParameterShapesFn shapes;
  };
  const Kind& find(const nlohmann::json& config) const;
  std::map<std::string, Kind> factories_;
};

}  // namespace fwp
