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

#include <memory>
#include <string>

namespace fwp_cli {
namespace train {

/// Names the checkpoints of one command, e.g. {"fwp-cli-retrieval", 1, "fwp retrieval"}.
struct CheckpointFormat {
  std::string name;     ///< Stored as metadata "format".
  int version = 1;      ///< Stored as metadata "version"; bump when the config's meaning changes.
  std::string program;  ///< For messages: "was not written by 'fwp retrieval'".
};

/// A checkpoint file opened once (read-only, non-blocking; regular files only,
/// so a FIFO or device fails at once). Everything a resume reads -- the run
/// metadata and, through the library, the tensors -- comes from this one open
/// file, so a save that replaces the path meanwhile cannot mix two versions.
class OpenCheckpoint {
 public:
  /// Throws RunError naming the file when it cannot be opened or is not a regular file.
  explicit OpenCheckpoint(const std::string& path);
  ~OpenCheckpoint();
  OpenCheckpoint(const OpenCheckpoint&) = delete;
  OpenCheckpoint& operator=(const OpenCheckpoint&) = delete;

  /// The path the user gave.
  const std::string& path() const { return path_; }
  /// A path that opens this same file whatever has happened to path() since
  /// ("/proc/self/fd/N"; path() itself where /proc is not mounted).
  const std::string& same_file_path() const { return same_file_path_; }
  /// `message` with same_file_path() replaced by path(), for the user.
  std::string for_user(std::string message) const;

 private:
  std::string path_;
  std::string same_file_path_;
  int fd_ = -1;
};

/// What a checkpoint says about its run.
struct SavedRun {
  nlohmann::json config;  ///< The task's configuration (TrainingTask::describe()).
  TrainState state;
  /// The file the metadata was read from; load_checkpoint() reads the tensors
  /// from it too (shared: a SavedRun may be copied).
  std::shared_ptr<const OpenCheckpoint> file;
};

/// Saves the objects with the run's metadata (atomically). `distributed`, when
/// not null, is stored as metadata "distributed" for information (the processes
/// that wrote it, e.g. {"dist": "mpi", "world_size": 2}); resuming does not need it.
/// Throws RunError.
void save_checkpoint(const std::string& path, const TrainingObjects& objects, const CheckpointFormat& format,
                     const nlohmann::json& config, const TrainState& state,
                     const nlohmann::json& distributed = nlohmann::json());

/// Reads the run's metadata only, so a command can rebuild its task from the
/// stored configuration. Throws RunError when the file is not a checkpoint of
/// this format and version.
SavedRun read_saved_run(const std::string& path, const CheckpointFormat& format);

/// Loads model, optimizer and data source into `objects` (built from the saved
/// configuration) from the file `saved` was read from (`path` is opened only
/// when `saved` holds no open file) and checks that the optimizer's step count
/// agrees with `saved.state`. Throws RunError.
void load_checkpoint(const std::string& path, const TrainingObjects& objects, const SavedRun& saved);

/// The "user" metadata string of a safetensors checkpoint (the C API has no
/// getter for it, so this reads the documented header with the library's
/// bounded reader, src/io/safetensors.h: one open, regular files only, a
/// FIFO refused at once, nesting and sizes limited). Throws RunError.
std::string read_checkpoint_user_metadata(const OpenCheckpoint& file);
/// The same, opening `path` for the call.
std::string read_checkpoint_user_metadata(const std::string& path);

}  // namespace train
}  // namespace fwp_cli

#endif  // FWP_TOOLS_TRAIN_CHECKPOINT_H
