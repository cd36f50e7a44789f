// `fwp retrieval`: trains the paper's synthetic associative-retrieval model
// (section 6.1) with its stopping rule, for one number of keys S or a range of
// them, and records evaluation losses, sweep tables, plots and checkpoints.
#ifndef FWP_TOOLS_RETRIEVAL_COMMAND_H
#define FWP_TOOLS_RETRIEVAL_COMMAND_H

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace fwp_cli {

/// Everything `fwp retrieval` is told on the command line.
struct RetrievalOptions {
  int setting = 1;
  std::string phi = "dpfp";
  std::string rule = "sum";
  int64_t nu = 1;
  int64_t favor_m = 64;
  std::string keys_spec = "20";
  uint64_t seed = 1;
  int64_t max_steps = 100000;
  int64_t batch = 32;
  double lr = 1e-3;
  int threads = 0;
  std::string device = "cpu";
  int64_t eval_every = 100;
  int64_t eval_seqs = 20;
  int64_t patience = 11;
  double target_loss = 0.001;
  bool sum_norm = false;   ///< Meaningful only where opt_sum_norm was given.
  bool attn_norm = false;  ///< Meaningful only where opt_attn_norm was given.
  std::string csv;
  std::string sweep_csv;
  std::string plot;
  std::string checkpoint;
  std::string resume;
  bool json = false;
  bool quiet = false;

  // The options themselves, to tell given flags from defaults after parsing.
  CLI::Option* opt_setting = nullptr;
  CLI::Option* opt_phi = nullptr;
  CLI::Option* opt_rule = nullptr;
  CLI::Option* opt_nu = nullptr;
  CLI::Option* opt_m = nullptr;
  CLI::Option* opt_keys = nullptr;
  CLI::Option* opt_seed = nullptr;
  CLI::Option* opt_batch = nullptr;
  CLI::Option* opt_lr = nullptr;
  CLI::Option* opt_eval_every = nullptr;
  CLI::Option* opt_eval_seqs = nullptr;
  CLI::Option* opt_patience = nullptr;
  CLI::Option* opt_target_loss = nullptr;
  CLI::Option* opt_sum_norm = nullptr;
  CLI::Option* opt_attn_norm = nullptr;
};

/// The largest number of queries per evaluation sequence (the paper's 200).
constexpr int64_t kMaxEvalQueries = 200;

/// Parses "S" or an inclusive range "A:B:STEP" into the values of S.
/// Returns an empty string on success, else a one-line reason.
std::string parse_keys_spec(const std::string& spec, std::vector<int64_t>* keys);

/// Adds the `retrieval` subcommand to `app`, bound to `options` (which must
/// outlive the parse). Returns the subcommand.
CLI::App* add_retrieval_command(CLI::App& app, RetrievalOptions& options);

/// Runs the subcommand after a successful parse. Returns the exit code; throws
/// UsageError for inconsistent flags and RunError for failures.
int run_retrieval_command(RetrievalOptions& options);

}  // namespace fwp_cli

#endif  // FWP_TOOLS_RETRIEVAL_COMMAND_H
