#include "cli_app.h"

#include <fwp/fwp.h>

#include <fmt/format.h>

#include <string>

namespace fwp_cli {
namespace {

const Command kCommands[] = {
    {"retrieval",
     "Train the synthetic associative-retrieval model of the paper (section 6.1) with Adam until the eval loss "
     "reaches --target-loss, --patience evaluations pass without improvement, or --max-steps is reached; one run "
     "per value of --keys.",
     add_retrieval_options, run_retrieval},
    {"lm",
     "Language modelling (section 6.3): `fwp lm prepare` makes a data folder from text files, `fwp lm train` trains "
     "a model on it, `fwp lm eval` reports perplexity (segments, sliding window or carried state) and `fwp lm "
     "generate` continues a prompt.",
     add_lm_options, run_lm},
    {"mt",
     "Machine translation (section 6.2): `fwp mt prepare` trains a joint SentencePiece model and encodes a "
     "parallel corpus into pair files, `fwp mt score` reports BLEU and chrF (sacreBLEU's definitions) of a "
     "hypothesis file against reference files.",
     add_mt_options, run_mt},
};

// The exit-code paragraph of `fwp --help` and of every subcommand's help.
constexpr const char* kExitCodesHelp =
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

}  // namespace

const Command* CommandLine::chosen() const {
  for (const auto& entry : subcommands) {
    if (entry.second->parsed()) return entry.first;
  }
  return nullptr;
}

CommandLine make_command_line() {
  CommandLine cl;
  cl.app = std::make_unique<CLI::App>(
      "fwp: fast weight programmers (linear transformers) from the command line.\n"
      "Runs the experiments of Schlag, Irie and Schmidhuber (ICML 2021) on the fwp library.",
      "fwp");
  CLI::App& app = *cl.app;
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text(), "Print the version of fwp and of its library, and exit");
  app.footer(kExitCodesHelp);
  for (const Command& command : kCommands) {
    CLI::App* sub = app.add_subcommand(command.name, command.help);
    sub->footer(kExitCodesHelp);
    command.add_options(*sub);
    cl.subcommands.emplace_back(&command, sub);
  }
  return cl;
}

}  // namespace fwp_cli
