// The `fwp` command-line program: a client of the public C API (fwp/fwp.h)
// that runs the paper's experiments, one subcommand per experiment, dispatched
// from the command table (cli_app.cpp, commands.h). Exit codes: 0 success, 1 a run
// failed (library call, file, gnuplot, a diverged training), 2 bad command-line
// flags or values, 128 + N when stopped by signal N (130 for Ctrl-C, 143 for
// SIGTERM) after saving a checkpoint. Errors are one line on stderr.
#include "cli_support.h"
#include "cli_app.h"

#include <fwp/fwp.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

namespace {

void print_error(const std::string& message) {
  std::fprintf(stderr, "fwp: error: %s\n", fwp_cli::one_line(message).c_str());
  std::fflush(stderr);
}

}  // namespace

int main(int argc, char** argv) {
  // A reader that went away (gnuplot, `fwp ... | head`) is an error to report, not a reason to die.
  std::signal(SIGPIPE, SIG_IGN);
  if (argc > 0 && argv[0] != nullptr && argv[0][0] != '\0') fwp_cli::set_program_name(argv[0]);

  fwp_cli::CommandLine command_line = fwp_cli::make_command_line();
  CLI::App& app = *command_line.app;

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    print_error(e.what());
    return fwp_cli::kExitUsage;
  }

  try {
    if (const fwp_cli::Command* command = command_line.chosen()) return command->run();
    print_error("no subcommand given (see fwp --help)");
    return fwp_cli::kExitUsage;
  } catch (const fwp_cli::UsageError& e) {
    print_error(e.what());
    return fwp_cli::kExitUsage;
  } catch (const fwp_cli::RunError& e) {
    print_error(e.what());
    return fwp_cli::kExitFailure;
  } catch (const std::exception& e) {
    print_error(e.what());
    return fwp_cli::kExitFailure;
  }
}
