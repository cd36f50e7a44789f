// Where a training run stands, and the rules that end it. The state is stored
// in every checkpoint so that a resumed run applies the stopping rules exactly
// as an uninterrupted one would.
#ifndef FWP_TOOLS_TRAIN_TRAIN_STATE_H
#define FWP_TOOLS_TRAIN_TRAIN_STATE_H

#include "training_task.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace fwp_cli {
namespace train {

/// How long a run trains and when it evaluates. The run stops at the first
/// evaluation whose loss is <= target_loss, after `patience` evaluations
/// without a new best, or after max_steps steps (always followed by a final
/// evaluation), whichever comes first.
///
/// A step whose loss or gradient is NaN or infinite changes no parameter (the
/// tasks skip the update of a broken loss, the library refuses a non-finite
/// gradient). With skip_non_finite false such a step stops the run
/// (stop::kNonFinite, naming the tensor); with it true the step is skipped:
/// it counts as a step (its batch is used up, schedules move on) but not in
/// the loss average, and the run stops only after max_consecutive_skips
/// skipped steps in a row.
struct TrainingPlan {
  int64_t max_steps = 100000;
  int64_t eval_every = 100;
  int64_t patience = 11;
  double target_loss = 0.001;
  bool skip_non_finite = false;       ///< --on-non-finite skip (default stop)
  int64_t max_consecutive_skips = 10;  ///< --max-skips: >= 1, used with skip_non_finite
};

/// The values of --on-non-finite, for the commands' flag checks.
constexpr const char* kOnNonFiniteStop = "stop";
constexpr const char* kOnNonFiniteSkip = "skip";

/// Why a run stopped; the strings are those of --json, CSV files and checkpoints.
namespace stop {
constexpr const char* kTarget = "target";          ///< eval loss <= target_loss
constexpr const char* kPatience = "patience";      ///< no new best for `patience` evaluations
constexpr const char* kMaxSteps = "max_steps";     ///< the step cap
constexpr const char* kInterrupted = "interrupted";  ///< SIGINT or SIGTERM (never stored: resuming continues)
constexpr const char* kNonFinite = "non_finite";   ///< the loss or gradient norm became NaN or infinite
}  // namespace stop

struct TrainState {
  int64_t step = 0;         ///< Training steps taken.
  int64_t evaluations = 0;  ///< Evaluations done.
  double best = std::numeric_limits<double>::infinity();  ///< Lowest eval loss so far.
  int64_t evals_since_best = 0;
  double last_eval = std::numeric_limits<double>::quiet_NaN();  ///< Loss of the latest evaluation.
  std::vector<Metric> last_metrics;  ///< Metrics of the latest evaluation (not stored in checkpoints).
  double seconds = 0.0;     ///< Wall time of training and evaluation, over all sessions.
  int64_t skipped_steps = 0;      ///< Steps skipped for a non-finite loss or gradient, over all sessions.
  int64_t consecutive_skips = 0;  ///< Skipped steps since the last good one.
  std::string stopped_by;   ///< "" while running, else one of stop::*.
};

/// The state as stored in checkpoints (NaN and infinity as null).
nlohmann::json state_to_json(const TrainState& state);
/// Reads a state back; throws nlohmann::json exceptions on missing fields.
TrainState state_from_json(const nlohmann::json& j);

/// A finite number, or null: JSON has no NaN or infinity.
nlohmann::json finite_or_null(double value);

/// One phrase for a stop reason, e.g. "11 evaluations without improvement".
std::string stop_reason_text(const TrainingPlan& plan, const std::string& stopped_by);

}  // namespace train
}  // namespace fwp_cli

#endif  // FWP_TOOLS_TRAIN_TRAIN_STATE_H
