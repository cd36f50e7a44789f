#include "cli_support.h"

#include "io/atomic_file.h"

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fwp_cli {

void check_status(fwp_status status, const char* what) {
  if (status == FWP_OK) return;
  std::string message = fwp_last_error_message();
  if (message.empty()) message = fwp_status_string(status);
  throw RunError(fmt::format("{}: {}", what, one_line(message)));
}

int64_t count_trainable_parameters(const fwp_model* model) {
  int64_t count = 0, total = 0;
  check_status(fwp_model_num_params(model, &count), "counting the parameters");
  for (int64_t i = 0; i < count; ++i) {
    fwp_param_info info;
    check_status(fwp_model_param_info(model, i, &info), "reading a parameter");
    if (info.trainable) total += info.numel;
  }
  return total;
}

ContextPtr create_context(const std::string& device, int threads, uint64_t seed) {
  fwp_context_config config;
  fwp_context_config_init(&config);
  config.device = device == "cuda" ? FWP_DEVICE_CUDA : FWP_DEVICE_CPU;
  config.num_threads = threads;
  config.seed = seed;
  fwp_context* context = nullptr;
  check_status(fwp_context_create(&config, &context), "creating the context");
  return ContextPtr(context);
}

void check_input_status(fwp_status status, const char* what) {
  if (status == FWP_OK) return;
  std::string message = fwp_last_error_message();
  if (message.empty()) message = fwp_status_string(status);
  const std::string text = fmt::format("{}: {}", what, one_line(message));
  switch (status) {
    case FWP_ERR_INVALID_ARGUMENT:
    case FWP_ERR_OUT_OF_RANGE:
    case FWP_ERR_FORMAT:
    case FWP_ERR_UNSUPPORTED:
    case FWP_ERR_SHAPE_MISMATCH:
    case FWP_ERR_OUT_OF_MEMORY:  // an absurd size asked for by the user
      throw UsageError(text);
    default:
      throw RunError(text);
  }
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return fmt::format("{:.1f}s", seconds);
  const auto total = static_cast<int64_t>(seconds + 0.5);
  const int64_t h = total / 3600, m = (total % 3600) / 60, s = total % 60;
  if (h > 0) return fmt::format("{}h{:02}m{:02}s", h, m, s);
  return fmt::format("{}m{:02}s", m, s);
}

std::string one_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

ExclusiveTemporary create_exclusive_temporary(const std::string& path) {
  // The library's policy for temporaries of killed writers (io/atomic_file.h):
  // those of `path` whose process is dead are removed, so none accumulate.
  fwp::remove_stale_temporaries(path);
  // A name no other writer uses: the pid separates processes, the counter the
  // writes (and so the threads) of this one, and O_EXCL makes a leftover of a
  // crashed process whose pid was reused a retry, never a shared file.
  static std::atomic<uint64_t> counter{0};
  ExclusiveTemporary tmp;
  for (int attempt = 0; attempt < 100 && tmp.fd < 0; ++attempt) {
    tmp.path = fmt::format("{}.tmp.{}.{}", path, static_cast<long>(::getpid()), counter.fetch_add(1));
    tmp.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (tmp.fd < 0 && errno != EEXIST) break;
  }
  if (tmp.fd < 0) {
    throw RunError(fmt::format("cannot write {}: cannot create {}: {}", path, tmp.path, std::strerror(errno)));
  }
  return tmp;
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  const ExclusiveTemporary created = create_exclusive_temporary(path);
  const std::string& tmp = created.path;
  int fd = created.fd;
  // Any failure removes the temporary and leaves a previous file at `path` as it was.
  auto fail = [&](const char* what) {
    const std::string reason = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw RunError(fmt::format("cannot write {}: {} {}: {}", path, what, tmp, reason));
  };
  const char* data = contents.data();
  size_t left = contents.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("writing");
    data += n;
    left -= static_cast<size_t>(n);
  }
  // On disk before the rename, so a crash leaves the old file or the whole new one.
  if (::fsync(fd) != 0) fail("flushing");
  const int closing = fd;
  fd = -1;
  if (::close(closing) != 0) fail("closing");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("renaming");
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RunError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void check_output_path(const std::string& flag, const std::string& path) {
  if (path.empty()) throw UsageError(fmt::format("{} needs a file name", flag));
  const size_t slash = path.find_last_of('/');
  const std::string folder = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  if (slash + 1 == path.size()) throw UsageError(fmt::format("{} {}: names a folder, not a file", flag, path));
  struct stat info;
  if (::stat(folder.c_str(), &info) != 0) {
    const std::string reason =
        errno == ENOENT ? "does not exist" : fmt::format("cannot be used: {}", std::strerror(errno));
    throw UsageError(fmt::format("{} {}: the folder {} {}", flag, path, folder, reason));
  }
  if (!S_ISDIR(info.st_mode)) throw UsageError(fmt::format("{} {}: {} is not a folder", flag, path, folder));
  // The file is written through a temporary beside it, so the folder must be writable.
  if (::access(folder.c_str(), W_OK | X_OK) != 0) {
    throw UsageError(fmt::format("{} {}: the folder {} is not writable: {}", flag, path, folder,
                                 std::strerror(errno)));
  }
  if (::stat(path.c_str(), &info) == 0 && !S_ISREG(info.st_mode)) {
    throw UsageError(fmt::format("{} {}: exists and is not a regular file", flag, path));
  }
}

bool file_exists(const std::string& path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

std::vector<std::string> split_csv_record(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  return fields;
}

std::string csv_field(const std::string& field) {
  if (field.find_first_of(",\"\n") == std::string::npos) return field;
  std::string quoted = "\"";
  for (char c : field) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + '"';
}

FileLock::FileLock(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw RunError(fmt::format("cannot create the lock file {}: {}", path, std::strerror(errno)));
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      const std::string reason = std::strerror(errno);
      ::close(fd_);
      throw RunError(fmt::format("cannot lock {}: {}", path, reason));
    }
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

namespace {
std::string& program_name_storage() {
  static std::string name = "fwp";
  return name;
}
}  // namespace

void set_program_name(const std::string& name) { program_name_storage() = name; }

const std::string& program_name() { return program_name_storage(); }

std::string shell_word(const std::string& word) {
  const bool safe = !word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                            "0123456789_-+=.,/:@%") == std::string::npos;
  if (safe) return word;
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string find_in_path(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    return ::access(program.c_str(), X_OK) == 0 ? program : std::string();
  }
  const char* path = std::getenv("PATH");
  if (path == nullptr) return {};
  std::istringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + program;
    struct stat info;
    if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return {};
}

uint64_t mix_seed(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t z = seed ^ (stream * 0x9E3779B97F4A7C15ull) ^ (index * 0xD1B54A32D192ED03ull);
  for (int round = 0; round < 2; ++round) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
  }
  return z;
}

}  // namespace fwp_cli
