// Checkpoints of training runs. A checkpoint is the library's safetensors file
// (fwp/checkpoint.h: model, optimizer, data source) whose "user" metadata holds
// what the program needs to continue: the command's format name and version,
// the task's configuration and the driver's TrainState. Resuming loads all of
// it and continues bit for bit as if never interrupted.
#ifndef FWP_TOOLS_TRAIN_CHECKPOINT_H
#define FWP_TOOLS_TRAIN_CHECKPOINT_H

#include "train_state.h"
#include "training_task.h"

#include <nlohmann/json.hpp>

#include <string>

namespace fwp_cli {
namespace train {

/// Names the checkpoints of one command, e.g. {"fwp-cli-retrieval", 1, "fwp retrieval"}.
struct CheckpointFormat {
  std::string name;     ///< Stored as metadata "format".
  int version = 1;      ///< Stored as metadata "version"; bump when the config's meaning changes.
  std::string program;  ///< For messages: "was not written by 'fwp retrieval'".
};

/// What a checkpoint says about its run.
struct SavedRun {
  nlohmann::json config;  ///< The task's configuration (TrainingTask::describe()).
  TrainState state;
};

/// Saves the objects with the run's metadata (atomically). Throws RunError.
void save_checkpoint(const std::string& path, const TrainingObjects& objects, const CheckpointFormat& format,
                     const nlohmann::json& config, const TrainState& state);

/// Reads the run's metadata only, so a command can rebuild its task from the
/// stored configuration. Throws RunError when the file is not a checkpoint of
/// this format and version.
SavedRun read_saved_run(const std::string& path, const CheckpointFormat& format);

/// Loads model, optimizer and data source from `path` into `objects` (built
/// from the saved configuration) and checks that the optimizer's step count
/// agrees with `saved.state`. Throws RunError.
void load_checkpoint(const std::string& path, const TrainingObjects& objects, const SavedRun& saved);

/// The "user" metadata string of a safetensors checkpoint (the C API has no
/// getter for it, so this reads the documented header with the library's
/// bounded reader, src/io/safetensors.h: one open, regular files only, a
/// FIFO refused at once, nesting and sizes limited). Throws RunError.
std::string read_checkpoint_user_metadata(const std::string& path);

}  // namespace train
}  // namespace fwp_cli

#endif  // FWP_TOOLS_TRAIN_CHECKPOINT_H
