// Shared helpers of the `fwp` command-line program: its error types (which
// decide the exit code), RAII owners for the C handles, and small formatting
// and file utilities. The program is an ordinary client of the public C API.
#ifndef FWP_TOOLS_CLI_SUPPORT_H
#define FWP_TOOLS_CLI_SUPPORT_H

#include <fwp/fwp.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fwp_cli {

/// Exit codes of the program. A run stopped by SIGINT or SIGTERM exits with
/// 128 + the signal number instead (train/interrupt.h).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  ///< A library call, a file or an external program failed, or a training diverged.
  kExitUsage = 2     ///< Bad command-line flags or values.
};

/// A flag or value the user gave is not acceptable (exit code 2).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Something failed while running: a library call, a file, gnuplot (exit code 1).
class RunError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Throws RunError with the library's last error message when `status` is not FWP_OK.
/// `what` names the call, e.g. "creating the model".
void check_status(fwp_status status, const char* what);

/// Like check_status(), for calls whose arguments come straight from the user
/// (their files, sizes and flags): a status that says the input is wrong
/// (invalid argument, out of range, bad format, unsupported, shape mismatch,
/// or out of memory for an absurd size)
/// throws UsageError (exit code 2); any other throws RunError.
void check_input_status(fwp_status status, const char* what);

struct ContextDeleter { void operator()(fwp_context* p) const { fwp_context_destroy(p); } };
struct ModelDeleter { void operator()(fwp_model* p) const { fwp_model_destroy(p); } };
struct OptimizerDeleter { void operator()(fwp_optimizer* p) const { fwp_optimizer_destroy(p); } };
struct DataDeleter { void operator()(fwp_retrieval_data* p) const { fwp_retrieval_data_destroy(p); } };

using ContextPtr = std::unique_ptr<fwp_context, ContextDeleter>;
using ModelPtr = std::unique_ptr<fwp_model, ModelDeleter>;
using OptimizerPtr = std::unique_ptr<fwp_optimizer, OptimizerDeleter>;
using DataPtr = std::unique_ptr<fwp_retrieval_data, DataDeleter>;

/// A context on `device` ("cpu" or "cuda") with `threads` CPU threads (0 = all)
/// and the given seed. Throws RunError.
ContextPtr create_context(const std::string& device, int threads, uint64_t seed = 0);

/// The number of trainable parameter elements of a model (fixed buffers such as
/// FAVOR+ projections not counted). Throws RunError.
int64_t count_trainable_parameters(const fwp_model* model);

/// "1h02m03s", "4m05s", "12.3s": a compact human-readable duration.
std::string format_duration(double seconds);

/// Replaces newlines and carriage returns by spaces so a message fits one line.
std::string one_line(std::string text);

/// Writes `contents` to `path` through a temporary file of its own
/// ("<path>.tmp.<pid>.<n>", created exclusively, so concurrent writers in any
/// threads and processes never share one), flushed to disk and renamed into
/// place: readers see the whole old or the whole new file. Throws RunError;
/// the temporary is then removed and a previous file at `path` is unchanged.
void write_file_atomically(const std::string& path, const std::string& contents);

/// A new, empty file "<path>.tmp.<pid>.<n>" created with O_EXCL (no other
/// writer, thread or process, ever gets the same one) and its open descriptor,
/// which the caller closes; the caller also renames or removes the file.
struct ExclusiveTemporary {
  std::string path;
  int fd = -1;
};
ExclusiveTemporary create_exclusive_temporary(const std::string& path);

/// Checks before any work is done that a file can be written at `path`: its
/// folder exists, is a folder and is writable, and `path` is not a folder or
/// another non-regular file. Throws UsageError naming `flag` (exit code 2).
void check_output_path(const std::string& flag, const std::string& path);

/// Reads a whole file; throws RunError if it cannot be read.
std::string read_file(const std::string& path);

/// Whether `path` names an existing file.
bool file_exists(const std::string& path);

/// Splits one CSV record into fields (double quotes may enclose a field and
/// "" inside them is a literal quote).
std::vector<std::string> split_csv_record(const std::string& line);

/// Quotes a CSV field when it contains a comma, a quote or a newline.
std::string csv_field(const std::string& field);

/// An exclusive advisory lock (flock) on a lock file, held for the object's lifetime.
/// Throws RunError if the lock file cannot be created.
class FileLock {
 public:
  explicit FileLock(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

/// The program as the user invoked it (argv[0], e.g. "fwp" or
/// "./build/tools/fwp"), for commands the program prints to be pasted back;
/// "fwp" until main() sets it.
void set_program_name(const std::string& name);
const std::string& program_name();

/// `word` as one word of a POSIX shell command: unchanged when it has only
/// safe characters, else in single quotes.
std::string shell_word(const std::string& word);

/// The full path of `program` found in PATH, or "" when it is not there.
std::string find_in_path(const std::string& program);

/// SplitMix64: derives independent 64-bit seeds from the user's seed.
uint64_t mix_seed(uint64_t seed, uint64_t stream, uint64_t index = 0);

}  // namespace fwp_cli

#endif  // FWP_TOOLS_CLI_SUPPORT_H
