#include "checkpoint.h"

#include "../cli_support.h"

#include "core/error.h"        // fwp::Error, thrown by the two readers below
#include "io/bounded_json.h"    // the library's own readers, compiled into the program
#include "io/safetensors.h"     // (tools/CMakeLists.txt: fwp_cli_io)

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <stdexcept>

namespace fwp_cli {
namespace train {

using json = nlohmann::json;

std::string read_checkpoint_user_metadata(const std::string& path) {
  // The library's reader: one non-blocking open of a regular file (a FIFO or
  // device is refused, never waited on), every size bounded by the file's
  // before anything is allocated, the header JSON nesting-limited, and file
  // content quoted in messages only as short excerpts.
  try {
    const fwp::SafetensorsReader reader(path);
    const std::string* user = reader.find_metadata("user");
    if (user == nullptr) throw RunError(fmt::format("{} was not written by the fwp program (no user metadata)", path));
    return *user;
  } catch (const fwp::Error& e) {
    // Its messages name the file and say what is wrong with it.
    throw RunError(fmt::format("cannot read the checkpoint: {}", one_line(e.what())));
  }
}

void save_checkpoint(const std::string& path, const TrainingObjects& objects, const CheckpointFormat& format,
                     const json& config, const TrainState& state) {
  const json metadata = {{"format", format.name},
                         {"version", format.version},
                         {"fwp_version", fwp_version_string()},
                         {"config", config},
                         {"state", state_to_json(state)}};
  check_status(fwp_checkpoint_save(path.c_str(), objects.model, objects.optimizer, objects.data,
                                   metadata.dump().c_str()),
               fmt::format("saving the checkpoint {}", path).c_str());
}

SavedRun read_saved_run(const std::string& path, const CheckpointFormat& format) {
  const std::string text = read_checkpoint_user_metadata(path);  // its errors name the file already
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
  try {
    saved.config = metadata.at("config");
    saved.state = state_from_json(metadata.at("state"));
  } catch (const std::exception& e) {
    throw RunError(fmt::format("the metadata of {} is incomplete: {}", path, fwp::excerpt(one_line(e.what()), 200)));
  }
  return saved;
}

void load_checkpoint(const std::string& path, const TrainingObjects& objects, const SavedRun& saved) {
  check_status(fwp_checkpoint_load(path.c_str(), objects.model, objects.optimizer, objects.data),
               fmt::format("loading the checkpoint {}", path).c_str());
  int64_t optimizer_steps = 0;
  check_status(fwp_optimizer_get_step(objects.optimizer, &optimizer_steps), "reading the optimizer's step");
  if (optimizer_steps != saved.state.step) {
    throw RunError(fmt::format("{} is inconsistent: its optimizer took {} steps, its run state says {}", path,
                               optimizer_steps, saved.state.step));
  }
}

}  // namespace train
}  // namespace fwp_cli
