// The `fwp` command-line program: a client of the public C API (fwp.h) that
// runs the paper's experiments. Exit codes: 0 success, 1 a run failed (library
// call, file, gnuplot), 2 bad command-line flags or values. Errors are one line
// on stderr.
#include "cli_support.h"
#include "retrieval_command.h"

#include <fwp/fwp.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <string>

namespace {

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
  CLI::App app("fwp: fast weight programmers (linear transformers) from the command line.\n"
               "Runs the experiments of Schlag, Irie and Schmidhuber (ICML 2021) on the fwp library.",
               "fwp");
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text(), "Print the version of fwp and of its library, and exit");

  fwp_cli::RetrievalOptions retrieval_options;
  CLI::App* retrieval = fwp_cli::add_retrieval_command(app, retrieval_options);

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
    if (retrieval->parsed()) return fwp_cli::run_retrieval_command(retrieval_options);
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
