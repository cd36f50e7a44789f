// A second kind of data source for tests: it counts 0, 1, ..., period - 1, 0, ...
// Its config is the period, its state the next value. With it the tests show
// that checkpoints and the C API treat data sources through the DataSource
// interface alone, and reject a source of another kind or config.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/data_source.h"

namespace fwp::test_support {

class CounterSource final : public DataSource {
 public:
  explicit CounterSource(int64_t period) : period_(period) {}

  int64_t next() {
    const int64_t v = position_;
    position_ = (position_ + 1) % period_;
    return v;
  }
  int64_t position() const { return position_; }

  // Not a kind the public header names: only the generic code sees it.
  fwp_data_kind kind() const override { return static_cast<fwp_data_kind>(1000); }
  std::string kind_name() const override { return "counter"; }
  nlohmann::json config_json() const override { return {{"period", period_}}; }
  nlohmann::json state_json() const override { return {{"position", position_}}; }
  void check_state(const nlohmann::json& state) const override { (void)parse(state); }
  void restore_state(const nlohmann::json& state) override { position_ = parse(state); }

 private:
  int64_t parse(const nlohmann::json& state) const {
    require(state.is_object() && state.contains("position") && state["position"].is_number_integer(), FWP_ERR_FORMAT,
            "the counter's state needs an integer 'position'");
    const int64_t p = state["position"].get<int64_t>();
    require(p >= 0 && p < period_, FWP_ERR_FORMAT, "the counter's position " + std::to_string(p) + " is outside [0, " +
                                                       std::to_string(period_) + ")");
    return p;
  }

  int64_t period_;
  int64_t position_ = 0;
};

}  // namespace fwp::test_support
