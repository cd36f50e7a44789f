// The argument parser of `fwp`: the command table (commands.h) as a CLI11 app,
// built apart from main() so that tests and the fuzz target
// (tests/fuzz/fuzz_cli.cpp) parse command lines in-process without running a
// command. Building the app resets every command's options to their defaults,
// so one process can build and parse many times.
#ifndef FWP_TOOLS_CLI_APP_H
#define FWP_TOOLS_CLI_APP_H

#include <CLI/CLI.hpp>

#include <memory>
#include <utility>
#include <vector>

#include "commands.h"

namespace fwp_cli {

/// The parser and, for each command of the table, its subcommand.
struct CommandLine {
  std::unique_ptr<CLI::App> app;
  std::vector<std::pair<const Command*, CLI::App*>> subcommands;

  /// The command the last successful parse selected, or nullptr.
  const Command* chosen() const;
};

/// Builds the parser of every command (options back at their defaults).
CommandLine make_command_line();

}  // namespace fwp_cli

#endif  // FWP_TOOLS_CLI_APP_H
