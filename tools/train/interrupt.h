// Ctrl-C for training runs. While an InterruptScope exists, SIGINT and SIGTERM
// only set a flag; the training loop sees it between two steps, saves a
// checkpoint (when it has a path) and stops, and the command exits with
// 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report
// a process killed by that signal. The handler is one-shot: a second Ctrl-C
// kills the program at once (checkpoints are written to a temporary file and
// renamed, so the previous one survives even that).
#ifndef FWP_TOOLS_TRAIN_INTERRUPT_H
#define FWP_TOOLS_TRAIN_INTERRUPT_H

#include <string>

namespace fwp_cli {
namespace train {

/// Installs the handlers for its lifetime; scopes nest (the outermost installs
/// and restores). Not thread-safe: create scopes on the main thread only.
class InterruptScope {
 public:
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;
};

/// The signal that asked the program to stop (SIGINT or SIGTERM), or 0. Once
/// set it stays set: a Ctrl-C ends the whole invocation, not just one run.
int interrupt_signal();

/// Forgets a signal seen; for tests that provoke one and go on.
void clear_interrupt();

/// The exit code of a program stopped by `signal`: 128 + signal.
int interrupted_exit_code(int signal);

/// "SIGINT", "SIGTERM" or "signal <n>", for messages.
std::string signal_name(int signal);

}  // namespace train
}  // namespace fwp_cli

#endif  // FWP_TOOLS_TRAIN_INTERRUPT_H
