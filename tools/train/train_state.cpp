#include "train_state.h"

#include <fmt/format.h>

#include <cmath>

namespace fwp_cli {
namespace train {

using json = nlohmann::json;

json finite_or_null(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }

namespace {
double number_or_nan(const json& value) {
  return value.is_number() ? value.get<double>() : std::numeric_limits<double>::quiet_NaN();
}
}  // namespace

json state_to_json(const TrainState& s) {
  return {{"step", s.step},
          {"evaluations", s.evaluations},
          {"best_eval_loss", finite_or_null(s.best)},
          {"evals_since_best", s.evals_since_best},
          {"last_eval_loss", finite_or_null(s.last_eval)},
          {"seconds", s.seconds},
          {"skipped_steps", s.skipped_steps},
          {"consecutive_skips", s.consecutive_skips},
          {"stopped_by", s.stopped_by}};
}

TrainState state_from_json(const json& j) {
  TrainState s;
  s.step = j.at("step").get<int64_t>();
  s.evaluations = j.at("evaluations").get<int64_t>();
  s.best = number_or_nan(j.at("best_eval_loss"));
  if (std::isnan(s.best)) s.best = std::numeric_limits<double>::infinity();
  s.evals_since_best = j.at("evals_since_best").get<int64_t>();
  s.last_eval = number_or_nan(j.at("last_eval_loss"));
  s.seconds = j.at("seconds").get<double>();
  s.stopped_by = j.at("stopped_by").get<std::string>();
  // Absent from checkpoints written before --on-non-finite skip existed: none skipped.
  s.skipped_steps = j.value("skipped_steps", int64_t{0});
  s.consecutive_skips = j.value("consecutive_skips", int64_t{0});
  return s;
}

std::string stop_reason_text(const TrainingPlan& plan, const std::string& stopped_by) {
  if (stopped_by == stop::kTarget) return fmt::format("eval loss <= {:g}", plan.target_loss);
  if (stopped_by == stop::kPatience) return fmt::format("{} evaluations without improvement", plan.patience);
  if (stopped_by == stop::kMaxSteps) return fmt::format("step cap {} reached", plan.max_steps);
  if (stopped_by == stop::kInterrupted) return "interrupted";
  if (stopped_by == stop::kNonFinite) {
    return plan.skip_non_finite
               ? fmt::format("the training diverged ({} steps in a row with a non-finite loss or gradient)",
                             plan.max_consecutive_skips)
               : "the training diverged (non-finite loss or gradient)";
  }
  return "not finished";
}

}  // namespace train
}  // namespace fwp_cli
