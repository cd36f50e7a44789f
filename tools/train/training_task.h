// What a command supplies to the training driver (train_loop.h): its model,
// optimizer and data source, one training step and one evaluation. Everything
// else -- the loop, stopping rules, progress line, evaluation log, checkpoints,
// resuming and Ctrl-C -- is the driver's, shared by every `fwp` command.
#ifndef FWP_TOOLS_TRAIN_TRAINING_TASK_H
#define FWP_TOOLS_TRAIN_TRAINING_TASK_H

#include <fwp/fwp.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace fwp_cli {
namespace train {

/// What one training step reports. A non-finite value stops the run.
struct StepResult {
  double loss = 0.0;       ///< Training loss of the step's batch (the global batch's, with --dist).
  double grad_norm = 0.0;  ///< Global gradient L2 norm before clipping (NaN if the step was refused).
  double tokens = 0.0;     ///< Tokens of the step's (global) batch, for tokens/s; 0 = not counted.
};

/// A named number of an evaluation besides its loss, e.g. {"perplexity", 35.2}
/// or {"bleu", 27.1}. Names are CSV column names: lower case, no commas.
struct Metric {
  std::string name;
  double value = 0.0;
};

/// What one evaluation reports.
struct Evaluation {
  double loss = 0.0;            ///< The number the stopping rules watch; lower is better.
  std::vector<Metric> metrics;  ///< Same names in the same order at every evaluation of a run.
};

class Distributed;  // distributed.h

/// The library objects of a run, owned by the task. The driver saves and loads
/// them together in checkpoints. (The checkpoint API of fwp.h takes the
/// retrieval generator as its data source; a task without one passes NULL.)
struct TrainingObjects {
  fwp_model* model = nullptr;
  fwp_optimizer* optimizer = nullptr;
  fwp_retrieval_data* data = nullptr;
  fwp_state* state = nullptr;  // memory carried across steps, saved with the checkpoint (NULL: none)
  /// The group of processes training the model (--dist), NULL or inactive for
  /// one process: the driver agrees with it on Ctrl-C and the stopping rules,
  /// and writes outputs on rank 0 only.
  Distributed* dist = nullptr;
};

/// One training run of a command: a model being trained on a data source.
/// Methods throw RunError (cli_support.h) when a library call fails.
class TrainingTask {
 public:
  virtual ~TrainingTask() = default;

  /// Names the run in progress and summary lines, e.g. "DPFP nu=1 sum S=20".
  virtual std::string label() const = 0;

  /// The run's configuration as JSON: stored in checkpoints (a command
  /// rebuilds the task from it to resume) and reported by --json.
  virtual nlohmann::json describe() const = 0;

  /// The model, optimizer and data source; valid for the task's lifetime.
  virtual TrainingObjects objects() = 0;

  /// Takes training step number `step` (1-based): draws a batch, computes the
  /// loss and gradients and updates the parameters (see take_optimizer_step()).
  /// Where the loss is not finite it may skip the update and report it.
  virtual StepResult train_step(int64_t step) = 0;

  /// Evaluates the model after `step` training steps. Must not disturb the
  /// training data stream, so that a resumed run matches an uninterrupted one.
  virtual Evaluation evaluate(int64_t step) = 0;
};

/// The optimizer step every task ends its train_step() with: returns the global
/// gradient norm, or NaN (parameters unchanged) when the library refuses a
/// non-finite gradient, so that the driver stops the run with a clear message.
/// Throws RunError for any other failure.
double take_optimizer_step(fwp_optimizer* optimizer, int64_t step);

}  // namespace train
}  // namespace fwp_cli

#endif  // FWP_TOOLS_TRAIN_TRAINING_TASK_H
