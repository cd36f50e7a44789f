// The retrieval model's entry in the registry of model kinds (models/registry.h).
#pragma once

namespace fwp {

class ModelRegistry;

// Adds kind "retrieval": a RetrievalModel built from RetrievalConfig::from_json().
void register_retrieval_model(ModelRegistry& registry);

}  // namespace fwp
