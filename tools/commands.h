// The subcommands of `fwp`. Each command lives in its own file
// (tools/<name>_command.cpp) and gives two functions: one that adds its flags
// to its CLI11 subcommand (binding them to options the file keeps), and one
// that runs it after a successful parse and returns the exit code. fwp_main.cpp
// lists them in its command table; adding a command means adding its file, its
// two declarations here and one row there. Training commands build a
// train::TrainingTask and hand it to the driver in tools/train/.
#ifndef FWP_TOOLS_COMMANDS_H
#define FWP_TOOLS_COMMANDS_H

#include <CLI/CLI.hpp>

namespace fwp_cli {

/// One row of the command table.
struct Command {
  const char* name;                    ///< `fwp <name>`
  const char* help;                    ///< One paragraph for `fwp --help` and `fwp <name> --help`.
  void (*add_options)(CLI::App& app);  ///< Adds the command's flags to its subcommand.
  int (*run)();                        ///< Runs it; throws UsageError (exit 2) or RunError (exit 1).
};

// `fwp retrieval` (retrieval_command.cpp): the paper's associative-retrieval experiments.
void add_retrieval_options(CLI::App& app);
int run_retrieval();

}  // namespace fwp_cli

#endif  // FWP_TOOLS_COMMANDS_H
