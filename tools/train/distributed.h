// Data-parallel training for the `fwp` training commands (--dist mpi|nccl):
// the one owner of the fwp_dist handle (fwp/distributed.h) and of the policy
// every task follows, so that lm, mt and retrieval behave alike.
//
//   command:  Distributed dist(--dist);          engine compiled in? (else exit 1)
//             dist.guard([&] { ... });           a rank that fails aborts the group
//   task:     context; dist.join(context);       the group, after the context
//             data; dist.shard(data);            rank r of N reads shard r of each global batch
//             model; start_replicas(...)         load --resume (carried state: own rows), sync_model
//   step:     forward on the shard;
//             loss = dist.reduce_step(...)       ONE sum per step: loss, its weight, tokens, Ctrl-C
//             non-finite global loss? every rank skips the update alike
//             backward; dist.average_gradients(model, weight); optimizer step
//   driver:   stops where dist.agreed_signal() says (every rank at the same step); evaluations
//             on every rank, rank 0's loss decides the stopping rules; checkpoints, logs, progress
//             and --json on rank 0 only (the carried state is gathered first: a collective).
//
// Without --dist the object is inactive and every call is the single-process
// arithmetic with no communication, so the runs are exactly those of before.
#ifndef FWP_TOOLS_TRAIN_DISTRIBUTED_H
#define FWP_TOOLS_TRAIN_DISTRIBUTED_H

#include "checkpoint.h"
#include "training_task.h"

#include <fwp/fwp.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace CLI {
class App;
}  // namespace CLI

namespace fwp_cli {
namespace train {

/// The values of --dist ("none", the default, is one process).
constexpr const char* kDistNone = "none";
constexpr const char* kDistMpi = "mpi";
constexpr const char* kDistNccl = "nccl";

/// The help text of --dist, shared by the commands.
extern const char* const kDistHelp;

/// The default of --dist-timeout (fwp_dist_config.timeout_seconds's default).
constexpr double kDistTimeoutSeconds = 600.0;

/// `command` (a resume command line) as a group runs it: "mpirun -np N <command>
/// --dist E" (and --dist-timeout when it is not the default); unchanged for "none".
std::string group_command(const std::string& command, const std::string& engine, double timeout_seconds);

/// Adds --dist and --dist-timeout to a training command; `batch_note` says what
/// the command's batch flag means with several processes.
void add_dist_options(CLI::App& app, std::string& engine, double& timeout_seconds, const std::string& batch_note);

class Distributed {
 public:
  /// `engine` is a --dist value ("" counts as none). Throws RunError (exit 1, as
  /// --device cuda in a build without CUDA) when this build lacks the engine,
  /// UsageError for an unknown name.
  /// `timeout_seconds` (>= 0, 0 = wait forever) bounds every collective: a rank
  /// that died or hangs makes the others fail after that long.
  explicit Distributed(const std::string& engine = kDistNone, double timeout_seconds = kDistTimeoutSeconds);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  /// Joins the group for the models of `context` (a collective); nothing
  /// without --dist. A handle joined before (the previous run of a sweep) is
  /// left first. Throws RunError.
  void join(fwp_context* context);
  /// Leaves the group (not a collective); call it while the run's context lives.
  void leave();

  /// Whether --dist was given (the engine name is then engine()).
  bool requested() const { return engine_ != kDistNone; }
  /// Whether a group is joined.
  bool active() const { return handle_ != nullptr; }
  const std::string& engine() const { return engine_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  /// Rank 0 prints, logs and saves; a single process is rank 0.
  bool is_root() const { return rank_ == 0; }

  /// Makes `data` give this rank's shard of every global batch. Throws RunError.
  void shard(fwp_data* data) const;
  /// A global batch of `global` rows as this rank's part; throws UsageError naming
  /// `flag` when the processes cannot share it equally.
  int64_t local_batch(const char* flag, int64_t global) const;

  /// The one collective of a training step, between forward and backward:
  /// returns the global mean loss sum_r loss_sum_r / sum_r weight_r (a single
  /// process: loss_sum / weight) and sums the tokens and the Ctrl-C flags.
  double reduce_step(double loss_sum, double weight, double tokens);
  /// The stop signal (SIGINT or SIGTERM) any rank had seen at the last
  /// reduce_step(), so every rank stops after the same step; 0 if none.
  int agreed_signal() const { return agreed_signal_; }
  /// The global tokens of the last reduce_step().
  double step_tokens() const { return step_tokens_; }

  /// Replaces the gradients by their weighted mean over the ranks; nothing
  /// without a group. Throws RunError.
  void average_gradients(fwp_model* model, double weight);
  /// Rank 0's value on every rank (the others' ignored), e.g. an evaluation loss
  /// that decides a stopping rule. The value itself without a group.
  double from_root(double value);

  /// Runs a command's body. Without a group (or with one process) an error
  /// propagates to main() as always; in a group of several it is printed as
  /// "fwp: rank R: error: ..." and the group is ended with fwp_dist_abort(), so
  /// that no rank waits for a collective the failed one never reaches.
  int guard(const std::function<int()>& body);

  /// The raw handle (NULL without a group).
  fwp_dist* handle() const { return handle_; }

 private:
  std::string engine_;
  double timeout_seconds_ = kDistTimeoutSeconds;
  fwp_dist* handle_ = nullptr;
  int rank_ = 0;
  int world_size_ = 1;
  int agreed_signal_ = 0;
  double step_tokens_ = 0.0;
};

/// The "dist" and "world_size" fields of --json and of a checkpoint's run metadata.
nlohmann::json dist_json(const Distributed* dist);

/// Loads a --resume checkpoint (when `saved` has one; `path` empty: a fresh
/// run) and makes every replica rank 0's (fwp_dist_sync_model). In a group a
/// carried state (objects.state, this rank's rows) is read whole and cut to
/// this rank's rows, so a run may resume with another number of processes.
/// Throws RunError.
void start_replicas(Distributed& dist, const TrainingObjects& objects, const std::string& path, const SavedRun& saved);

/// Saves a checkpoint of the group: the carried state is gathered into one of
/// the global batch (a collective: every rank calls this), and rank 0 writes.
/// Without a group: save_checkpoint(). Throws RunError.
void save_group_checkpoint(Distributed* dist, const std::string& path, const TrainingObjects& objects,
                           const CheckpointFormat& format, const nlohmann::json& config, const TrainState& state);

}  // namespace train
}  // namespace fwp_cli

#endif  // FWP_TOOLS_TRAIN_DISTRIBUTED_H
