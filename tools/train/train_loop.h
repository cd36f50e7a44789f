// The training driver shared by every `fwp` command: steps the task, evaluates
// every plan.eval_every steps and at the cap, applies the stopping rules,
// draws the progress line, appends the evaluation log, saves checkpoints, and
// stops cleanly on Ctrl-C or when the loss or gradient norm is not finite.
//
//   while not stopped and step < max_steps:
//     Ctrl-C seen?            -> save a checkpoint, stop: interrupted
//     task.train_step()       -> non-finite loss or grad norm? stop: non_finite, or
//                                with plan.skip_non_finite skip it (stop after
//                                plan.max_consecutive_skips in a row)
//     every eval_every steps and at the cap:
//       task.evaluate(); update best / patience; target, patience or cap reached?
//       save a checkpoint; append the evaluation log; progress line
#ifndef FWP_TOOLS_TRAIN_TRAIN_LOOP_H
#define FWP_TOOLS_TRAIN_TRAIN_LOOP_H

#include "checkpoint.h"
#include "eval_log.h"
#include "progress.h"
#include "train_state.h"
#include "training_task.h"

#include <nlohmann/json.hpp>

#include <string>

namespace fwp_cli {
namespace train {

/// Where a run's outputs go.
struct RunOutputs {
  Progress* progress = nullptr;  ///< Required (a disabled Progress prints nothing).
  EvalLog* eval_log = nullptr;   ///< Optional; appended at every evaluation when open.
  RunId run_id;                  ///< This run's identity columns in the evaluation log.
  std::string checkpoint;        ///< Saved at every evaluation and on Ctrl-C; "" = never.
  CheckpointFormat checkpoint_format;
};

/// How a run ended.
struct RunResult {
  TrainState state;       ///< state.stopped_by says why (one of stop::*).
  bool resumed = false;   ///< Whether it continued a checkpoint.
  int signal = 0;         ///< The signal, when stopped_by is stop::kInterrupted.
  std::string checkpoint; ///< The checkpoint holding the run's latest state ("" = none written).
  std::string failure;    ///< What went wrong, when stopped_by is stop::kNonFinite.
  nlohmann::json dist;    ///< {"dist": engine or "none", "world_size": N} (distributed.h dist_json()).
};

/// Trains `task` from `start` (a fresh TrainState, or one restored with
/// load_checkpoint()) until a stopping rule, the step cap, Ctrl-C or a
/// non-finite loss ends it. Throws RunError when a library call or a file fails.
RunResult run_training(TrainingTask& task, const TrainingPlan& plan, TrainState start, const RunOutputs& out);

/// The fields of --json every command reports for a run: final_eval_loss,
/// best_eval_loss, steps, evaluations, seconds, steps_per_second, stopped_by,
/// resumed, metrics (the last evaluation's), config (task.describe()),
/// fwp_version, dist and world_size (--dist: the engine or "none", and the
/// number of processes). Commands add their own fields (command, model, ...).
nlohmann::json result_json(const TrainingTask& task, const RunResult& result);

/// One line saying how the run ended, e.g. "<label>: final eval loss 0.000812
/// (best 0.000812) after 2400 steps in 12.3s; stopped: eval loss <= 0.001".
std::string summary_line(const TrainingTask& task, const TrainingPlan& plan, const RunResult& result);

/// What a command prints on stderr after Ctrl-C (also with --quiet): where the
/// run stopped and how to go on, e.g. "fwp: <label> stopped at step 120 by
/// SIGINT; saved to F; resume with: <resume>". `resume` (the command that
/// continues from result.checkpoint) is used only when a checkpoint was written.
std::string interrupted_notice(const TrainingTask& task, const RunResult& result, const std::string& resume);

}  // namespace train
}  // namespace fwp_cli

#endif  // FWP_TOOLS_TRAIN_TRAIN_LOOP_H
