// Fuzz target for the `fwp` argument parser (tools/cli_app.h): the whole
// command table's CLI11 app with every command's flags, checks and
// validators (--keys ranges, enumerations, numeric bounds, ...), parsed
// in-process without running a command.
//
// An input is the arguments after "fwp", separated by NUL bytes (at most 64
// of them). A finding: an exception other than CLI11's parse errors (which
// include --help and --version) escaping the parse, a crash, a sanitizer
// report or a hang. A successful parse must have chosen a command.
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli_app.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  std::vector<std::string> args{"fwp"};
  size_t start = 0;
  for (size_t i = 0; i <= size && args.size() <= 64; ++i) {
    if (i == size || bytes[i] == '\0') {
      if (i > start || i < size) args.emplace_back(reinterpret_cast<const char*>(bytes) + start, i - start);
      start = i + 1;
    }
  }
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());

  fwp_cli::CommandLine command_line = fwp_cli::make_command_line();
  fuzz::input_accepted = false;
  try {
    command_line.app->parse(static_cast<int>(argv.size()), argv.data());
    fuzz::input_accepted = true;
  } catch (const CLI::ParseError&) {
    // A usage error (exit 2), or --help / --version (CLI11 reports them as parse "errors" too).
  } catch (const std::exception& e) {
    fuzz::finding(std::string("parsing threw a non-CLI11 exception: ") + e.what());
  }
  if (fuzz::input_accepted) fuzz::check(command_line.chosen() != nullptr, "a parse succeeded without a command");
  return 0;
}

#ifdef FWP_FUZZ_REPLAY
// The seeds are command lines committed in tests/fuzz/corpus/cli/.
void write_seeds(const std::string&) {}
#endif
