#include "checkpoint.h"

#include "../cli_support.h"

#include "core/error.h"        // fwp::Error, thrown by the two readers below
#include "io/bounded_json.h"    // the library's own readers, compiled into the program
#include "io/safetensors.h"     // (tools/CMakeLists.txt: fwp_cli_io)

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace fwp_cli {
namespace train {

using json = nlohmann::json;

OpenCheckpoint::OpenCheckpoint(const std::string& path) : path_(path), same_file_path_(path) {
  // O_NONBLOCK: opening a FIFO without a writer must not wait (it is refused below).
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) {
    throw RunError(fmt::format("cannot read the checkpoint: cannot open '{}' for reading: {}", path,
                               std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw RunError(fmt::format(
        "cannot read the checkpoint: '{}' is not a regular file (a directory, FIFO, socket or device)", path));
  }
  // Opening /proc/self/fd/N opens the file this descriptor refers to, even
  // after the path was renamed over or removed. The library's reader and
  // fwp_checkpoint_load() take paths, so this is how they read this file.
  const std::string by_descriptor = "/proc/self/fd/" + std::to_string(fd_);
  if (::access(by_descriptor.c_str(), R_OK) == 0) same_file_path_ = by_descriptor;
}

OpenCheckpoint::~OpenCheckpoint() { ::close(fd_); }

std::string OpenCheckpoint::for_user(std::string message) const {
  if (same_file_path_ == path_) return message;
  for (size_t at = message.find(same_file_path_); at != std::string::npos;
       at = message.find(same_file_path_, at + path_.size())) {
    message.replace(at, same_file_path_.size(), path_);
  }
  return message;
}

std::string read_checkpoint_user_metadata(const OpenCheckpoint& file) {
  // The library's reader: every size bounded by the file's before anything is
  // allocated, the header JSON nesting-limited, and file content quoted in
  // messages only as short excerpts.
  try {
    const fwp::SafetensorsReader reader(file.same_file_path());
    const std::string* user = reader.find_metadata("user");
    if (user == nullptr) {
      throw RunError(fmt::format("{} was not written by the fwp program (no user metadata)", file.path()));
    }
    return *user;
  } catch (const fwp::Error& e) {
    // Its messages name the file and say what is wrong with it.
    throw RunError(fmt::format("cannot read the checkpoint: {}", file.for_user(one_line(e.what()))));
  }
}

std::string read_checkpoint_user_metadata(const std::string& path) {
  return read_checkpoint_user_metadata(OpenCheckpoint(path));
}

void save_checkpoint(const std::string& path, const TrainingObjects& objects, const CheckpointFormat& format,
                     const json& config, const TrainState& state, const json& distributed) {
  json metadata = {{"format", format.name},
                   {"version", format.version},
                   {"fwp_version", fwp_version_string()},
                   {"config", config},
                   {"state", state_to_json(state)}};
  if (!distributed.is_null()) metadata["distributed"] = distributed;
  check_status(fwp_checkpoint_save_with_state(path.c_str(), objects.model, objects.optimizer, objects.data,
                                              objects.state, metadata.dump().c_str()),
               fmt::format("saving the checkpoint {}", path).c_str());
}

SavedRun read_saved_run(const std::string& path, const CheckpointFormat& format) {
  auto file = std::make_shared<const OpenCheckpoint>(path);
  const std::string text = read_checkpoint_user_metadata(*file);  // its errors name the file already
  json metadata;
  try {
    // Bounded like the header itself: the user string is file content too.
    metadata = fwp::parse_file_json(text, "its run metadata");
    const std::string name = metadata.at("format").get<std::string>();
    if (name != format.name) throw std::runtime_error(fmt::format("its format is '{}', not '{}'", name, format.name));
    if (metadata.at("version").get<int>() != format.version) {
      throw std::runtime_error(fmt::format("unsupported version {} (this program reads version {})",
                                           metadata.at("version").dump(), format.version));
    }
  } catch (const std::exception& e) {
    throw RunError(
        fmt::format("{} was not written by '{}': {}", path, format.program, fwp::excerpt(one_line(e.what()), 200)));
  }
  SavedRun saved;
  saved.file = file;
  try {
    saved.config = metadata.at("config");
    saved.state = state_from_json(metadata.at("state"));
  } catch (const std::exception& e) {
    throw RunError(fmt::format("the metadata of {} is incomplete: {}", path, fwp::excerpt(one_line(e.what()), 200)));
  }
  return saved;
}

void load_checkpoint(const std::string& path, const TrainingObjects& objects, const SavedRun& saved) {
  const std::shared_ptr<const OpenCheckpoint> file = saved.file ? saved.file : std::make_shared<OpenCheckpoint>(path);
  const fwp_status status =
      fwp_checkpoint_load_with_state(file->same_file_path().c_str(), objects.model, objects.optimizer, objects.data,
                                     objects.state);
  if (status != FWP_OK) {
    std::string message = fwp_last_error_message();
    if (message.empty()) message = fwp_status_string(status);
    throw RunError(fmt::format("loading the checkpoint {}: {}", path, file->for_user(one_line(message))));
  }
  // The step count is checked as well: with no /proc (two opens) it catches a
  // file replaced between reading the metadata and the tensors.
  int64_t optimizer_steps = 0;
  check_status(fwp_optimizer_get_step(objects.optimizer, &optimizer_steps), "reading the optimizer's step");
  if (optimizer_steps != saved.state.step) {
    throw RunError(fmt::format("{} is inconsistent: its optimizer took {} steps, its run state says {}", path,
                               optimizer_steps, saved.state.step));
  }
}

}  // namespace train
}  // namespace fwp_cli
