// The subcommands of `fwp`. Each command lives in its own file
// (tools/<name>_command.cpp) and gives two functions: one that adds its flags
// to its CLI11 subcommand (binding them to options the file keeps), and one
// that runs it after a successful parse and returns the exit code. cli_app.cpp
// lists them in its command table; adding a command means adding its file, its
// two declarations here and one row there.
//
// A training command (retrieval_command.cpp is the example) has three parts:
//   1. a train::TrainingTask (train/training_task.h): describe() its config,
//      objects() (model, optimizer, data source), train_step() and evaluate()
//      (loss plus named metrics such as perplexity or BLEU);
//   2. its flags, turned into that task's config and a train::TrainingPlan;
//   3. run(): build the task (or read_saved_run() + load_checkpoint() for
//      --resume), call train::run_training(), report result_json() and
//      summary_line(), and after Ctrl-C return train::interrupted_exit_code().
// The loop, stopping rules, progress, evaluation log, checkpoints and signals
// are the driver's; a command does not touch them.
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

// `fwp lm` (lm_command.cpp): language modelling (section 6.3): prepare, train, eval, generate.
void add_lm_options(CLI::App& app);
int run_lm();

// `fwp mt` (mt_command.cpp): machine translation (section 6.2): prepare, score.
void add_mt_options(CLI::App& app);
int run_mt();

}  // namespace fwp_cli

#endif  // FWP_TOOLS_COMMANDS_H
