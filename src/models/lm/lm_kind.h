// The language model's entry in the registry of model kinds (models/registry.h).
#pragma once

namespace fwp {

class ModelRegistry;

// Adds kind "lm": an LmModel built from LmConfig::from_json().
void register_lm_model(ModelRegistry& registry);

}  // namespace fwp
