// Generator states in JSON, as checkpoints store them: an array of the six
// words of Rng::State as decimal strings (JSON numbers above 2^53 lose their
// low bits in many readers, e.g. Python's json with floats, or JavaScript).
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/rng.h"

namespace fwp {

nlohmann::json rng_state_to_json(const Rng::State& state);

// Parses rng_state_to_json()'s output. Error(FWP_ERR_FORMAT) naming `what`
// (e.g. "model_rng") for anything else, including a state the generator can
// never be in (Rng::state_problem(), e.g. all zeros).
Rng::State rng_state_from_json(const nlohmann::json& j, const std::string& what);

}  // namespace fwp
