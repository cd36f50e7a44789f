// The `fwp` command-line program: a client of the public C API (fwp/fwp.h)
// that runs the paper's experiments, one subcommand per experiment, dispatched
// from the command table below (see commands.h). Exit codes: 0 success, 1 a run
// failed (library call, file, gnuplot, a diverged training), 2 bad command-line
// flags or values, 128 + N when stopped by signal N (130 for Ctrl-C, 143 for
// SIGTERM) after saving a checkpoint. Errors are one line on stderr.
#include "cli_support.h"
#include "commands.h"

#include <fwp/fwp.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace {

using fwp_cli::Command;

const Command kCommands[] = {
    {"retrieval",
     "Train the synthetic associative-retrieval model of the paper (section 6.1) with Adam until the eval loss "
     "reaches --target-loss, --patience evaluations pass without improvement, or --max-steps is reached; one run "
     "per value of --keys.",
     fwp_cli::add_retrieval_options, fwp_cli::run_retrieval},
    {"lm",
     "Language modelling (section 6.3): `fwp lm prepare` makes a data folder from text files, `fwp lm train` trains "
     "a model on it, `fwp lm eval` reports perplexity (segments, sliding window or carried state) and `fwp lm "
     "generate` continues a prompt.",
     fwp_cli::add_lm_options, fwp_cli::run_lm},
};

constexpr const char* kExitCodes =
    "Exit codes: 0 success; 1 a run failed (a library call, a file, gnuplot, or a training whose loss or gradient "
    "became NaN or infinite); 2 bad flags or values; 130 (SIGINT, Ctrl-C) or 143 (SIGTERM): stopped between two "
    "training steps after saving a checkpoint where --checkpoint or --resume names one (a second Ctrl-C ends the "
    "program at once).";

std::string version_text() {
  int32_t cuda_devices = 0;
  if (fwp_cuda_device_count(&cuda_devices) != FWP_OK) cuda_devices = 0;
  // The library is loaded at run time, so its version may differ from the header's.
  return fmt::format("fwp {} (built against fwp.h {}.{}.{}; CUDA backend: {}, CUDA devices: {})",
                     fwp_version_string(), FWP_VERSION_MAJOR, FWP_VERSION_MINOR,
                     FWP_VERSION_PATCH, fwp_cuda_is_built() ? "built" : "not built", cuda_devices);
}

void print_error(const std::string& message) {
  std::fprintf(stderr, "fwp: error: %s\n", fwp_cli::one_line(message).c_str());
  std::fflush(stderr);
}

}  // namespace

int main(int argc, char** argv) {
  // A reader that went away (gnuplot, `fwp ... | head`) is an error to report, not a reason to die.
  std::signal(SIGPIPE, SIG_IGN);
  if (argc > 0 && argv[0] != nullptr && argv[0][0] != '\0') fwp_cli::set_program_name(argv[0]);

  CLI::App app("fwp: fast weight programmers (linear transformers) from the command line.\n"
               "Runs the experiments of Schlag, Irie and Schmidhuber (ICML 2021) on the fwp library.",
               "fwp");
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text(), "Print the version of fwp and of its library, and exit");
  app.footer(kExitCodes);

  std::vector<std::pair<const Command*, CLI::App*>> subcommands;
  for (const Command& command : kCommands) {
    CLI::App* sub = app.add_subcommand(command.name, command.help);
    sub->footer(kExitCodes);
    command.add_options(*sub);
    subcommands.emplace_back(&command, sub);
  }

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
    for (const auto& entry : subcommands) {
      if (entry.second->parsed()) return entry.first->run();
    }
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
