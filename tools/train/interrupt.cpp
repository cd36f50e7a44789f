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
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
  // A signal the parent chose to ignore (e.g. SIGINT of a background job in a
  // script, or under nohup) stays ignored.
  if (g_previous_int.sa_handler == SIG_IGN) sigaction(SIGINT, &g_previous_int, nullptr);
  if (g_previous_term.sa_handler == SIG_IGN) sigaction(SIGTERM, &g_previous_term, nullptr);
}

InterruptScope::~InterruptScope() {
  if (--g_scope_depth > 0) return;
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
}

int interrupt_signal() { return static_cast<int>(g_signal); }

void clear_interrupt() { g_signal = 0; }

int interrupted_exit_code(int signal) { return 128 + signal; }

}  // namespace train
}  // namespace fwp_cli
