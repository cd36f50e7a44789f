#include "checkpoint.h"

#include "../cli_support.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>

namespace fwp_cli {
namespace train {

using json = nlohmann::json;

std::string read_checkpoint_user_metadata(const std::string& path) {
  // The safetensors format bounds its JSON header at 100 MB; so do we.
  constexpr uint64_t kMaxHeaderBytes = 100u * 1024u * 1024u;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RunError(fmt::format("cannot open checkpoint {}: {}", path, std::strerror(errno)));
  unsigned char size_bytes[8];
  if (!in.read(reinterpret_cast<char*>(size_bytes), sizeof size_bytes)) {
    throw RunError(fmt::format("{} is not a checkpoint: shorter than a safetensors header", path));
  }
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | size_bytes[i];  // little-endian
  if (header_size == 0 || header_size > kMaxHeaderBytes) {
    throw RunError(fmt::format("{} is not a checkpoint: implausible header size {}", path, header_size));
  }
  std::string header(static_cast<size_t>(header_size), '\0');
  if (!in.read(&header[0], static_cast<std::streamsize>(header_size))) {
    throw RunError(fmt::format("{} is not a checkpoint: truncated header", path));
  }
  const nlohmann::json parsed = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    throw RunError(fmt::format("{} is not a checkpoint: its header is not a JSON object", path));
  }
  const auto metadata = parsed.find("__metadata__");
  if (metadata == parsed.end() || !metadata->is_object()) {
    throw RunError(fmt::format("{} has no __metadata__ entry", path));
  }
  const auto user = metadata->find("user");
  if (user == metadata->end() || !user->is_string()) {
    throw RunError(fmt::format("{} was not written by the fwp program (no user metadata)", path));
  }
  return user->get<std::string>();
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
    metadata = json::parse(text);
    const std::string name = metadata.at("format").get<std::string>();
    if (name != format.name) throw std::runtime_error(fmt::format("its format is '{}', not '{}'", name, format.name));
    if (metadata.at("version").get<int>() != format.version) {
      throw std::runtime_error(fmt::format("unsupported version {} (this program reads version {})",
                                           metadata.at("version").dump(), format.version));
    }
  } catch (const std::exception& e) {
    throw RunError(fmt::format("{} was not written by '{}': {}", path, format.program, one_line(e.what())));
  }
  SavedRun saved;
  try {
    saved.config = metadata.at("config");
    saved.state = state_from_json(metadata.at("state"));
  } catch (const std::exception& e) {
    throw RunError(fmt::format("the metadata of {} is incomplete: {}", path, one_line(e.what())));
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
