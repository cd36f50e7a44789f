// `fwp retrieval`: trains the paper's synthetic associative-retrieval model
// (section 6.1) for one number of keys S or a sweep over a range of them, and
// records evaluation losses, a sweep table with its plot, and checkpoints.
// This file says only what is retrieval-specific: the flags, how they become a
// RetrievalConfig per S, and the sweep over S. The model, its batches and the
// paper's evaluation are RetrievalTask (retrieval_task.h); the training loop,
// stopping rules, logs, checkpoints, resuming and Ctrl-C are the driver's
// (train/train_loop.h).
#include "cli_support.h"
#include "commands.h"
#include "retrieval_sweep.h"
#include "retrieval_task.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/eval_log.h"
#include "train/gnuplot.h"
#include "train/interrupt.h"
#include "train/train_loop.h"

#include <fwp/fwp.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace fwp_cli {
namespace {

using json = nlohmann::json;

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
  int64_t eval_pairs = 0;  ///< 0: the paper's length for the setting (paper_eval_pairs()).
  int64_t patience = 11;
  double target_loss = 0.001;
  bool sum_norm = false;   ///< Meaningful only where opt_sum_norm was given.
  bool attn_norm = false;  ///< Meaningful only where opt_attn_norm was given.
  std::string csv;
  std::string sweep_csv;
  std::string plot;
  std::string checkpoint;
  std::string resume;
  bool skip_done = false;  ///< --skip-done: S values with a finished row in --sweep-csv are not run again
  std::string on_non_finite = train::kOnNonFiniteStop;
  int64_t max_skips = 10;
  std::string dist = train::kDistNone;  ///< --dist (train/distributed.h)
  double dist_timeout = train::kDistTimeoutSeconds;  ///< --dist-timeout
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
  CLI::Option* opt_eval_pairs = nullptr;
  CLI::Option* opt_patience = nullptr;
  CLI::Option* opt_target_loss = nullptr;
  CLI::Option* opt_sum_norm = nullptr;
  CLI::Option* opt_attn_norm = nullptr;
};

/// The options CLI11 fills while parsing (the program parses once).
RetrievalOptions& options() {
  static RetrievalOptions instance;
  return instance;
}

const train::CheckpointFormat kCheckpointFormat{"fwp-cli-retrieval", 1, "fwp retrieval"};

/// Parses "S" or an inclusive range "A:B:STEP" into the values of S.
/// Returns an empty string on success, else a one-line reason.
std::string parse_keys_spec(const std::string& spec, std::vector<int64_t>* keys) {
  auto parse_int = [](const std::string& text, int64_t* value) {
    if (text.empty()) return false;
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (end != text.c_str() + text.size() || errno == ERANGE) return false;
    *value = v;
    return true;
  };
  // Bounds S so a typo cannot request an absurd model; the paper goes to S = 600.
  constexpr int64_t kMaxKeys = 100000;
  std::vector<std::string> parts;
  std::stringstream stream(spec);
  std::string part;
  while (std::getline(stream, part, ':')) parts.push_back(part);
  if (!spec.empty() && spec.back() == ':') parts.emplace_back();
  std::vector<int64_t> values;
  if (parts.size() == 1) {
    int64_t s = 0;
    if (!parse_int(parts[0], &s)) return fmt::format("'{}' is not a number of keys S or a range A:B:STEP", spec);
    if (s < 2 || s > kMaxKeys) return fmt::format("S = {} is out of range (2 <= S <= {})", s, kMaxKeys);
    values.push_back(s);
  } else if (parts.size() == 3) {
    int64_t a = 0, b = 0, step = 0;
    if (!parse_int(parts[0], &a) || !parse_int(parts[1], &b) || !parse_int(parts[2], &step)) {
      return fmt::format("'{}' is not a range A:B:STEP of integers", spec);
    }
    if (a < 2 || b > kMaxKeys) return fmt::format("range {} leaves 2 <= S <= {}", spec, kMaxKeys);
    if (b < a) return fmt::format("range {} is empty: its end {} is below its start {}", spec, b, a);
    if (step < 1) return fmt::format("range {} needs a STEP >= 1", spec);
    for (int64_t s = a; s <= b; s += step) values.push_back(s);
  } else {
    return fmt::format("'{}' is not a number of keys S or a range A:B:STEP", spec);
  }
  if (keys != nullptr) *keys = std::move(values);
  return std::string();
}

/// A CLI11 validator from a predicate on the parsed number.
template <typename T, typename Pred>
CLI::Validator number_check(const char* description, Pred pred) {
  return CLI::Validator(
      [description, pred](std::string& text) -> std::string {
        T value{};
        if (!CLI::detail::lexical_cast(text, value) || !pred(value)) {
          return fmt::format("'{}' is not {}", text, description);
        }
        return std::string();
      },
      "");
}

/// The per-S configurations of a fresh (not resumed) invocation; throws UsageError.
std::vector<RetrievalConfig> fresh_configs(const RetrievalOptions& o, const std::vector<int64_t>& keys) {
  if (o.opt_nu->count() > 0 && o.phi != "dpfp") {
    throw UsageError(fmt::format("--nu applies only to --phi dpfp (got --phi {})", o.phi));
  }
  if (o.opt_m->count() > 0 && o.phi != "favor") {
    throw UsageError(fmt::format("--m applies only to --phi favor (got --phi {})", o.phi));
  }
  RetrievalConfig base;
  base.setting = o.setting;
  base.phi = o.phi;
  base.rule = o.rule;
  base.nu = o.nu;
  base.favor_m = o.favor_m;
  base.seed = o.seed;
  base.batch = o.batch;
  base.lr = o.lr;
  base.eval_every = o.eval_every;
  base.eval_seqs = o.eval_seqs;
  base.patience = o.patience;
  base.target_loss = o.target_loss;
  base.max_steps = o.max_steps;
  base.threads = o.threads;
  base.device = o.device;
  base.sum_norm = o.opt_sum_norm->count() > 0 ? o.sum_norm : default_sum_norm(o.phi, o.rule);
  base.attn_norm = o.opt_attn_norm->count() > 0 ? o.attn_norm : default_attn_norm(o.phi, o.rule);
  if (o.phi == "softmax") {
    if (o.rule != "sum") {
      throw UsageError("--phi softmax is softmax attention, which has no fast-weight update rule: drop --rule delta");
    }
    if (base.sum_norm || base.attn_norm) {
      throw UsageError("--phi softmax is softmax attention: --sum-norm and --attn-norm do not apply");
    }
  }
  std::vector<RetrievalConfig> configs;
  for (int64_t s : keys) {
    RetrievalConfig cfg = base;
    cfg.keys = s;
    cfg.eval_pairs = o.eval_pairs == 0 ? paper_eval_pairs(o.setting, s) : o.eval_pairs;
    // Setting 1 sequences hold every key once; setting 2 draws with replacement, any length.
    // (On --resume the setting is the checkpoint's, and a changed length is refused as a conflict.)
    if (o.resume.empty() && o.setting == 1 && cfg.eval_pairs != s) {
      throw UsageError(fmt::format("--eval-pairs {} does not fit setting 1, whose sequences hold every key once: "
                                   "give 0 or S = {}",
                                   o.eval_pairs, s));
    }
    configs.push_back(cfg);
  }
  return configs;
}

/// The configuration and saved state of a resumed run; flags that define the
/// run must agree with the checkpoint (or be left out). Throws UsageError / RunError.
std::pair<RetrievalConfig, train::SavedRun> resumed_config(const RetrievalOptions& o,
                                                           const std::vector<int64_t>& keys) {
  if (keys.size() != 1) throw UsageError("--resume continues one run: give --keys a single S, not a range");
  const train::SavedRun saved = train::read_saved_run(o.resume, kCheckpointFormat);
  RetrievalConfig stored;
  try {
    stored = config_from_json(saved.config);
  } catch (const std::exception& e) {
    throw RunError(fmt::format("the metadata of {} is incomplete: {}", o.resume, one_line(e.what())));
  }

  // What the command line says, for the flags that were given.
  RetrievalConfig cli = fresh_configs(o, keys).front();
  const json given = defining_json(cli);
  const json kept = defining_json(stored);
  const std::pair<const char*, const CLI::Option*> flags[] = {
      {"setting", o.opt_setting},     {"phi", o.opt_phi},         {"rule", o.opt_rule},
      {"nu", o.opt_nu},               {"m", o.opt_m},             {"keys", o.opt_keys},
      {"seed", o.opt_seed},           {"batch", o.opt_batch},     {"lr", o.opt_lr},
      {"eval_every", o.opt_eval_every}, {"eval_seqs", o.opt_eval_seqs}, {"eval_pairs", o.opt_eval_pairs},
      {"patience", o.opt_patience},
      {"target_loss", o.opt_target_loss}, {"sum_norm", o.opt_sum_norm}, {"attn_norm", o.opt_attn_norm}};
  for (const auto& flag : flags) {
    if (flag.second->count() == 0) continue;
    const json mine = given.contains(flag.first) ? given.at(flag.first) : json(nullptr);
    const json theirs = kept.contains(flag.first) ? kept.at(flag.first) : json(nullptr);
    if (mine != theirs) {
      auto text = [](const json& value) {
        if (value.is_null()) return std::string("no such setting");
        return value.is_string() ? value.get<std::string>() : value.dump();
      };
      throw UsageError(fmt::format("{} {} conflicts with the checkpoint {}, which was trained with {}",
                                   flag.second->get_name(), text(mine), o.resume, text(theirs)));
    }
  }
  // Run control comes from the command line.
  stored.max_steps = o.max_steps;
  stored.threads = o.threads;
  stored.device = o.device;
  return {stored, saved};
}

/// Where the checkpoint of run S goes: FILE itself for a single S, else FILE
/// with "-S<n>" before its extension.
std::string checkpoint_path_for(const std::string& base, int64_t keys, bool several_runs) {
  if (base.empty() || !several_runs) return base;
  const size_t slash = base.find_last_of('/');
  const size_t dot = base.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == slash + 1) {
    return fmt::format("{}-S{}", base, keys);
  }
  return fmt::format("{}-S{}{}", base.substr(0, dot), keys, base.substr(dot));
}

/// The command that continues an interrupted run exactly: its checkpoint (which
/// keeps the run's settings), its step cap (taken from the command line on
/// --resume), and this invocation's outputs and machine settings.
std::string resume_command(const RetrievalOptions& o, const RetrievalConfig& cfg, const std::string& checkpoint) {
  std::string command = fmt::format("{} retrieval --resume {} --max-steps {}", shell_word(program_name()),
                                    shell_word(checkpoint), cfg.max_steps);
  if (o.threads != 0) command += fmt::format(" --threads {}", o.threads);
  if (o.device != "cpu") command += " --device " + shell_word(o.device);
  if (!o.csv.empty()) command += " --csv " + shell_word(o.csv);
  if (!o.sweep_csv.empty()) command += " --sweep-csv " + shell_word(o.sweep_csv);
  if (!o.plot.empty()) command += " --plot " + shell_word(o.plot);
  if (o.json) command += " --json";
  if (o.quiet) command += " --quiet";
  command = train::group_command(command, o.dist, o.dist_timeout);
  return command;
}

/// The evaluation log tells the runs of a sweep apart by S, and records the
/// evaluation length with them.
const std::vector<std::string> kEvalLogIdColumns = {"keys", "eval_pairs"};
train::RunId run_id(const RetrievalConfig& cfg) {
  return {std::to_string(cfg.keys), std::to_string(cfg.eval_pairs)};
}

SweepRow sweep_row_of(const RetrievalConfig& cfg, const train::TrainState& s) {
  SweepRow row;
  row.model = model_label(cfg);
  row.keys = cfg.keys;
  row.final_eval_loss = s.last_eval;
  row.best_eval_loss = std::isfinite(s.best) ? s.best : std::nan("");
  row.steps = s.step;
  row.seconds = s.seconds;
  row.setting = cfg.setting;
  row.stopped_by = s.stopped_by;
  row.seed = cfg.seed;
  row.eval_pairs = cfg.eval_pairs;
  return row;
}

}  // namespace

void add_retrieval_options(CLI::App& app) {
  RetrievalOptions& o = options();
  o = RetrievalOptions{};  // a new parser starts from the defaults (tests parse many times)
  app.option_defaults()->always_capture_default();

  o.opt_setting = app.add_option("--setting", o.setting,
                                  "1: capacity (S pairs, keys without replacement); 2: update (2S pairs with "
                                  "replacement, the latest value counts)")
                      ->check(CLI::IsMember({1, 2}));
  o.opt_phi = app.add_option("--phi", o.phi,
                              "Feature map: elu (Linear Transformer), favor (FAVOR+), dpfp, or softmax "
                              "(softmax-attention baseline)")
                  ->check(CLI::IsMember({"elu", "favor", "dpfp", "softmax"}));
  o.opt_rule = app.add_option("--rule", o.rule, "Fast-weight update rule: sum or delta")
                   ->check(CLI::IsMember({"sum", "delta"}));
  o.opt_nu = app.add_option("--nu", o.nu, "DPFP order nu (d_dot = 2 * 64 * nu); only with --phi dpfp")
                 ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_m = app.add_option("--m", o.favor_m, "FAVOR+ random features m (d_dot = 2m); only with --phi favor")
                ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_keys = app.add_option("--keys", o.keys_spec,
                               "Number of keys S (2 <= S <= 100000), or an inclusive range A:B:STEP run one "
                               "after the other")
                   ->check(CLI::Validator(
                       [](std::string& text) { return parse_keys_spec(text, nullptr); }, "S|A:B:STEP"));
  o.opt_seed = app.add_option("--seed", o.seed,
                               "Seed of the initial weights and FAVOR+ draws; the training and evaluation "
                               "data seeds are derived from it")
                 ->check(CLI::Validator(
                     [](std::string& text) {
                       // CLI11 would wrap "-1" and saturate overflows; seeds must be exact.
                       errno = 0;
                       const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
                       if (digits) std::strtoull(text.c_str(), nullptr, 10);
                       return digits && errno != ERANGE ? std::string()
                                                        : fmt::format("'{}' is not an integer in [0, 2^64)", text);
                     },
                     ""));
  app.add_option("--max-steps", o.max_steps, "Training step cap")
      ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_batch = app.add_option("--batch", o.batch, "Training sequences per step")
                    ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_lr = app.add_option("--lr", o.lr, "Adam learning rate")
                 ->check(number_check<double>("a finite number > 0",
                                              [](double v) { return std::isfinite(v) && v > 0; }));
  app.add_option("--threads", o.threads, "CPU threads; 0 = all hardware threads")
      ->check(number_check<int>("an integer >= 0", [](int v) { return v >= 0; }));
  app.add_option("--device", o.device, "cpu, or cuda (needs a CUDA build and a GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  o.opt_eval_every = app.add_option("--eval-every", o.eval_every, "Evaluate every N training steps")
                         ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_eval_seqs =
      app.add_option("--eval-seqs", o.eval_seqs,
                      "Fresh sequences per evaluation, each queried with every distinct key it holds (at most "
                      "200 queries per sequence)")
          ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_eval_pairs =
      app.add_option("--eval-pairs", o.eval_pairs,
                      "Pairs per evaluation sequence; 0 = the paper's S (setting 2 trains on 2S pairs but the "
                      "paper evaluates on S); setting 1 takes only 0 or S")
          ->check(number_check<int64_t>("an integer in [0, 131072]",
                                        [](int64_t v) { return v >= 0 && v <= 131072; }));
  o.opt_patience = app.add_option("--patience", o.patience, "Stop after N evaluations without improvement")
                       ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_target_loss = app.add_option("--target-loss", o.target_loss, "Stop once the eval loss is <= X")
                          ->check(number_check<double>("a finite number >= 0",
                                                       [](double v) { return std::isfinite(v) && v >= 0; }));
  o.opt_sum_norm = app.add_flag("--sum-norm,!--no-sum-norm", o.sum_norm,
                                 "Sum-normalise phi of keys and queries (default: on for --rule delta, off "
                                 "for sum, as in the paper)")
                       ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  o.opt_attn_norm = app.add_flag("--attn-norm,!--no-attn-norm", o.attn_norm,
                                  "Divide the readout by z . phi(q) (default: on for --rule sum, off for delta, "
                                  "as in the paper)")
                        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--csv", o.csv,
                  "Write one row per evaluation to FILE: keys,step,eval_loss,best,seconds (rows of other S already "
                  "in FILE are kept, rows of the S being run are replaced)");
  app.add_option("--sweep-csv", o.sweep_csv,
                  "Merge one row per finished run into FILE: model,keys,final_eval_loss,best_eval_loss,steps,"
                  "seconds,setting,stopped_by,seed (a rerun replaces the row of the same model, setting and S)");
  app.add_option("--plot", o.plot,
                  "Render final eval loss vs S (one line per model) to FILE.png with gnuplot after each run; "
                  "with --sweep-csv it plots every row of that file");
  app.add_option("--checkpoint", o.checkpoint,
                  "Save model, optimizer, data and run state to FILE at every evaluation and on Ctrl-C (with several S: "
                  "FILE with -S<n> before its extension)");
  app.add_option("--resume", o.resume,
                  "Continue the run saved in FILE exactly; its settings are kept, only --max-steps, --threads, "
                  "--device and the outputs may change; checkpoints go on to FILE unless --checkpoint is given")
      ->check(CLI::ExistingFile);
  app.add_flag("--skip-done", o.skip_done,
               "With --sweep-csv: leave out the values of S whose run is already in FILE (same model, setting, "
               "seed and evaluation length, and not stopped by a step cap below --max-steps), so that rerunning an "
               "interrupted sweep runs only what is missing");
  app.add_option("--on-non-finite", o.on_non_finite,
                 "What a step with a NaN or infinite loss or gradient does: stop the run (exit 1, naming the "
                 "tensor) or skip the step (no parameter changes) and go on")
      ->check(CLI::IsMember({train::kOnNonFiniteStop, train::kOnNonFiniteSkip}));
  app.add_option("--max-skips", o.max_skips,
                 "With --on-non-finite skip: stop the run (exit 1) at this many skipped steps in a row")
      ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  train::add_dist_options(app, o.dist, o.dist_timeout, "--batch must be a multiple of the number of processes");
  app.add_flag("--json", o.json,
                "Print one JSON object per run on stdout (progress then goes to stderr)");
  app.add_flag("--quiet", o.quiet, "No progress or summary lines");
}

namespace {

int run_retrieval_in_group(RetrievalOptions& o, train::Distributed& dist);

}  // namespace

int run_retrieval() {
  RetrievalOptions& o = options();
  train::Distributed dist(o.dist, o.dist_timeout);
  return dist.guard([&] { return run_retrieval_in_group(o, dist); });
}

namespace {

int run_retrieval_in_group(RetrievalOptions& o, train::Distributed& dist) {
  std::vector<int64_t> keys;
  const std::string keys_error = parse_keys_spec(o.keys_spec, &keys);
  if (!keys_error.empty()) throw UsageError("--keys: " + keys_error);

  std::vector<RetrievalConfig> configs;
  train::SavedRun resumed;
  const bool resuming = !o.resume.empty();
  if (resuming) {
    auto stored = resumed_config(o, keys);
    configs.push_back(stored.first);
    resumed = stored.second;
  } else {
    configs = fresh_configs(o, keys);
  }

  // Check the outputs before spending time on training: every file this run
  // will write must have a writable folder now, not fail after hours of steps.
  const bool several = configs.size() > 1;
  if (!o.csv.empty()) check_output_path("--csv", o.csv);
  if (!o.sweep_csv.empty()) check_output_path("--sweep-csv", o.sweep_csv);
  if (!o.plot.empty()) check_output_path("--plot", o.plot);
  if (!o.checkpoint.empty()) {
    for (const RetrievalConfig& cfg : configs) {
      check_output_path("--checkpoint", checkpoint_path_for(o.checkpoint, cfg.keys, several));
    }
  } else if (resuming) {
    check_output_path("--resume", o.resume);  // a resumed run saves back to its checkpoint
  }
  const std::string gnuplot = o.plot.empty() ? std::string() : train::find_gnuplot("--plot");
  if (o.skip_done && o.sweep_csv.empty()) throw UsageError("--skip-done needs --sweep-csv (the table of finished runs)");
  if (o.skip_done && resuming) throw UsageError("--skip-done and --resume do not go together");
  // With --dist, which process is rank 0 is known only once a run has joined
  // the group, so the --skip-done notice waits for open_outputs().
  std::string skip_notice;
  if (!o.sweep_csv.empty()) {
    const std::vector<SweepRow> done = read_sweep_csv(o.sweep_csv);  // a malformed file fails now, not after training
    if (o.skip_done) {
      std::vector<RetrievalConfig> missing;
      std::vector<std::string> skipped;
      for (const RetrievalConfig& cfg : configs) {
        if (finished_row(done, model_label(cfg), cfg.setting, cfg.keys, cfg.seed, cfg.eval_pairs, cfg.max_steps)) {
          skipped.push_back(std::to_string(cfg.keys));
        } else {
          missing.push_back(cfg);
        }
      }
      if (!skipped.empty() && !o.quiet) {
        std::string list;
        for (const std::string& k : skipped) list += (list.empty() ? "" : ", ") + k;
        skip_notice = fmt::format("fwp retrieval: --skip-done: S = {} already in {}\n", list, o.sweep_csv);
      }
      configs = missing;
    }
  }

  // With --dist the rank is known once the first run has joined the group:
  // only rank 0 prints and writes, the others train silently.
  std::unique_ptr<train::Progress> progress_owner;
  train::EvalLog eval_log;
  auto open_outputs = [&]() {
    const bool root = dist.is_root();
    if (root) std::fputs(skip_notice.c_str(), o.json ? stderr : stdout);
    progress_owner = std::make_unique<train::Progress>(!o.quiet && root, o.json ? stderr : stdout);
    if (o.csv.empty() || !root) return;
    if (resuming) {
      eval_log.open_resumed(o.csv, kEvalLogIdColumns, {}, run_id(configs.front()), resumed.state.step);
    } else {
      std::vector<train::RunId> fresh_runs;
      for (const RetrievalConfig& cfg : configs) fresh_runs.push_back(run_id(cfg));
      eval_log.open_fresh(o.csv, kEvalLogIdColumns, {}, fresh_runs);
    }
  };
  if (!dist.requested()) open_outputs();  // as always: before the first run
  // Nothing left to run: no group is joined, so every process of a --dist job says it.
  if (configs.empty() && !progress_owner) std::fputs(skip_notice.c_str(), o.json ? stderr : stdout);

  const train::InterruptScope interrupt_scope;  // Ctrl-C ends the sweep after saving the current run
  std::vector<SweepRow> plotted;  // this invocation's rows, for --plot without --sweep-csv
  int stop_signal = 0;
  for (const RetrievalConfig& cfg : configs) {
    // The run before finished as Ctrl-C came (a group: as it agreed at its last step).
    stop_signal = dist.requested() ? dist.agreed_signal() : train::interrupt_signal();
    if (stop_signal != 0) break;
    RetrievalTask task(cfg, dist);  // with --dist: a new group for the run's context
    if (!progress_owner) open_outputs();
    train::Progress& progress = *progress_owner;
    const bool root = dist.is_root();
    train::RunOutputs outputs;
    outputs.progress = &progress;
    outputs.eval_log = &eval_log;
    outputs.run_id = run_id(cfg);
    outputs.checkpoint = checkpoint_path_for(o.checkpoint, cfg.keys, several);
    outputs.checkpoint_format = kCheckpointFormat;
    train::TrainState start;
    train::start_replicas(dist, task.objects(), resuming ? o.resume : std::string(), resumed);
    if (resuming) {
      start = resumed.state;
      if (outputs.checkpoint.empty()) outputs.checkpoint = o.resume;
      progress.message(fmt::format("resuming {} at step {} from {}", task.label(), start.step, o.resume));
    }

    train::TrainingPlan plan = training_plan(cfg);
    plan.skip_non_finite = o.on_non_finite == train::kOnNonFiniteSkip;
    plan.max_consecutive_skips = o.max_skips;
    train::RunResult result = train::run_training(task, plan, start, outputs);
    result.resumed = resuming;
    stop_signal = result.signal;
    dist.leave();  // while the run's context lives; nothing below communicates
    progress.message(train::summary_line(task, plan, result));
    if (o.json && root) {
      json line = train::result_json(task, result);
      line["command"] = "retrieval";
      line["model"] = model_label(cfg);
      line["keys"] = cfg.keys;
      std::printf("%s\n", line.dump().c_str());
      std::fflush(stdout);
    }
    if (result.state.stopped_by == train::stop::kNonFinite) {
      if (!root) return kExitFailure;  // every rank stopped at the same step; rank 0 says why
      throw RunError(result.failure);
    }
    if (!root) continue;  // the sweep table and plot are rank 0's; a stop is agreed on at the next run
    if (result.state.stopped_by == train::stop::kInterrupted) {
      // Always said (also with --quiet): where the run stopped and how to go on.
      std::string notice = train::interrupted_notice(task, result, resume_command(o, cfg, result.checkpoint));
      if (&cfg != &configs.back()) {
        notice += fmt::format(" (the sweep's values of S after {} were not run{})", cfg.keys,
                              o.sweep_csv.empty() ? "" : "; the same command with --skip-done runs only those missing");
      }
      std::fprintf(stderr, "%s\n", notice.c_str());
      std::fflush(stderr);
      break;  // an unfinished run has no sweep row
    }

    const SweepRow row = sweep_row_of(cfg, result.state);
    if (!o.sweep_csv.empty()) {
      // Concurrent invocations may share one table: merge under a lock so no row is lost.
      const FileLock lock(o.sweep_csv + ".lock");
      std::vector<SweepRow> rows = read_sweep_csv(o.sweep_csv);
      merge_sweep_row(rows, row);
      write_sweep_csv(o.sweep_csv, rows);
      if (!o.plot.empty()) render_sweep_plot(gnuplot, o.plot, rows, cfg.target_loss);
    } else {
      merge_sweep_row(plotted, row);
      if (!o.plot.empty()) render_sweep_plot(gnuplot, o.plot, plotted, cfg.target_loss);
    }
  }
  if (!dist.requested()) stop_signal = train::interrupt_signal();
  return stop_signal != 0 ? train::interrupted_exit_code(stop_signal) : kExitOk;
}

}  // namespace

}  // namespace fwp_cli
