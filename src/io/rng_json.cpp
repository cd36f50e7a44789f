#include "io/rng_json.h"

#include <cerrno>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fwp {

nlohmann::json rng_state_to_json(const Rng::State& state) {
  nlohmann::json words = nlohmann::json::array();
  for (uint64_t w : state) words.push_back(std::to_string(w));
  return words;
}

Rng::State rng_state_from_json(const nlohmann::json& j, const std::string& what) {
  Rng::State state{};
  const std::string shape_error = what + " must be an array of " + std::to_string(state.size()) + " strings";
  require(j.is_array() && j.size() == state.size(), FWP_ERR_FORMAT, shape_error);
  for (size_t i = 0; i < state.size(); ++i) {
    require(j[i].is_string(), FWP_ERR_FORMAT, shape_error);
    const std::string& s = j[i].get_ref<const std::string&>();
    require(!s.empty() && s.size() <= 20 && s.find_first_not_of("0123456789") == std::string::npos, FWP_ERR_FORMAT,
            what + " holds a word that is not a decimal 64-bit number");
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    require(errno != ERANGE && end == s.c_str() + s.size(), FWP_ERR_FORMAT, what + " holds a word out of range");
    state[i] = static_cast<uint64_t>(v);
  }
  const std::string problem = Rng::state_problem(state);
  require(problem.empty(), FWP_ERR_FORMAT, what + " is not a valid generator state: " + problem);
  return state;
}

}  // namespace fwp
