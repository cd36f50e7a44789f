#include "checkpoint_metadata.h"

#include "cli_support.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>

namespace fwp_cli {

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
    throw RunError(fmt::format("{} was not written by 'fwp retrieval' (no user metadata)", path));
  }
  return user->get<std::string>();
}

}  // namespace fwp_cli
