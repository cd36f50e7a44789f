#include "interrupt.h"

#include <csignal>

#include <signal.h>

namespace fwp_cli {
namespace train {
namespace {

volatile std::sig_atomic_t g_signal = 0;  // the only thing the handler touches
int g_scope_depth = 0;
struct sigaction g_previous_int;
struct sigaction g_previous_term;

extern "C" void on_stop_signal(int signal) { g_signal = signal; }

}  // namespace

InterruptScope::InterruptScope() {
  if (g_scope_depth++ > 0) return;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  // One-shot (a second signal takes the default action and ends the program);
  // restart interrupted system calls so file writes are not cut short.
  action.sa_flags = SA_RESETHAND | SA_RESTART;
  // Installed even where the parent ignores the signal (a script's background
  // jobs ignore SIGINT): stopping with a checkpoint is never worse than being killed.
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
}

InterruptScope::~InterruptScope() {
  if (--g_scope_depth > 0) return;
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
}

int interrupt_signal() { return static_cast<int>(g_signal); }

void clear_interrupt() { g_signal = 0; }

int interrupted_exit_code(int signal) { return 128 + signal; }

std::string signal_name(int signal) {
  if (signal == SIGINT) return "SIGINT";
  if (signal == SIGTERM) return "SIGTERM";
  return "signal " + std::to_string(signal);
}

}  // namespace train
}  // namespace fwp_cli
