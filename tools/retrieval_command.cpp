#include "retrieval_command.h"

#include "checkpoint_metadata.h"
#include "cli_support.h"
#include "sweep_table.h"

#include <fwp/fwp.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <utility>

#include <unistd.h>

namespace fwp_cli {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kCheckpointFormat = "fwp-cli-retrieval";
constexpr int kCheckpointFormatVersion = 1;
// Seed streams: the context (initial weights, FAVOR+ draws) takes --seed
// itself; training and evaluation data get their own derived seeds.
constexpr uint64_t kTrainDataStream = 1;
constexpr uint64_t kEvalDataStream = 2;

// ---- configuration of one run ---------------------------------------------------

/// The resolved configuration of one training run (one S).
struct RunConfig {
  int setting = 1;
  std::string phi;
  std::string rule;
  int64_t nu = 1;
  int64_t favor_m = 64;
  int64_t keys = 20;
  uint64_t seed = 1;
  int64_t batch = 32;
  double lr = 1e-3;
  int64_t eval_every = 100;
  int64_t eval_seqs = 20;
  int64_t patience = 11;
  double target_loss = 0.001;
  bool sum_norm = false;
  bool attn_norm = false;
  // Run control: may differ between a run and its resumption.
  int64_t max_steps = 100000;
  int threads = 0;
  std::string device = "cpu";
};

int64_t eval_queries(const RunConfig& cfg) { return std::min<int64_t>(cfg.keys, kMaxEvalQueries); }

bool default_sum_norm(const std::string& phi, const std::string& rule) {
  return phi != "softmax" && rule == "delta";
}
bool default_attn_norm(const std::string& phi, const std::string& rule) {
  return phi != "softmax" && rule == "sum";
}

/// The label of a model in tables and plots, e.g. "DPFP nu=2 sum"; never contains a comma.
std::string model_label(const RunConfig& cfg) {
  if (cfg.phi == "softmax") return "Softmax";
  std::string label;
  if (cfg.phi == "elu") {
    label = "Linear";
  } else if (cfg.phi == "favor") {
    label = fmt::format("FAVOR+ m={}", cfg.favor_m);
  } else {
    label = fmt::format("DPFP nu={}", cfg.nu);
  }
  label += " " + cfg.rule;
  // Name the normalisations only where they differ from the paper's choice for the rule.
  if (cfg.sum_norm != default_sum_norm(cfg.phi, cfg.rule)) label += cfg.sum_norm ? " +sum-norm" : " -sum-norm";
  if (cfg.attn_norm != default_attn_norm(cfg.phi, cfg.rule)) label += cfg.attn_norm ? " +attn-norm" : " -attn-norm";
  return label;
}

/// The settings that define a run: a resumed run must keep all of them.
json defining_json(const RunConfig& cfg) {
  json j = {{"setting", cfg.setting},     {"phi", cfg.phi},
            {"rule", cfg.rule},           {"keys", cfg.keys},
            {"seed", cfg.seed},           {"batch", cfg.batch},
            {"lr", cfg.lr},               {"eval_every", cfg.eval_every},
            {"eval_seqs", cfg.eval_seqs}, {"patience", cfg.patience},
            {"target_loss", cfg.target_loss}, {"sum_norm", cfg.sum_norm},
            {"attn_norm", cfg.attn_norm}};
  if (cfg.phi == "dpfp") j["nu"] = cfg.nu;
  if (cfg.phi == "favor") j["m"] = cfg.favor_m;
  return j;
}

/// The full configuration as reported in --json output and stored in checkpoints.
json config_json(const RunConfig& cfg) {
  json j = defining_json(cfg);
  j["model"] = model_label(cfg);
  j["eval_queries"] = eval_queries(cfg);
  j["max_steps"] = cfg.max_steps;
  j["threads"] = cfg.threads;
  j["device"] = cfg.device;
  return j;
}

RunConfig config_from_json(const json& j) {
  RunConfig cfg;
  cfg.setting = j.at("setting").get<int>();
  cfg.phi = j.at("phi").get<std::string>();
  cfg.rule = j.at("rule").get<std::string>();
  cfg.keys = j.at("keys").get<int64_t>();
  cfg.seed = j.at("seed").get<uint64_t>();
  cfg.batch = j.at("batch").get<int64_t>();
  cfg.lr = j.at("lr").get<double>();
  cfg.eval_every = j.at("eval_every").get<int64_t>();
  cfg.eval_seqs = j.at("eval_seqs").get<int64_t>();
  cfg.patience = j.at("patience").get<int64_t>();
  cfg.target_loss = j.at("target_loss").get<double>();
  cfg.sum_norm = j.at("sum_norm").get<bool>();
  cfg.attn_norm = j.at("attn_norm").get<bool>();
  if (cfg.phi == "dpfp") cfg.nu = j.at("nu").get<int64_t>();
  if (cfg.phi == "favor") cfg.favor_m = j.at("m").get<int64_t>();
  cfg.max_steps = j.at("max_steps").get<int64_t>();
  cfg.threads = j.at("threads").get<int>();
  cfg.device = j.at("device").get<std::string>();
  return cfg;
}

// ---- training state ---------------------------------------------------------

/// Where a run stands; stored in every checkpoint so a resumed run applies the
/// stopping rule exactly as an uninterrupted one would.
struct TrainState {
  int64_t step = 0;
  int64_t evaluations = 0;
  double best = std::numeric_limits<double>::infinity();
  int64_t evals_since_best = 0;
  double last_eval = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0.0;
  std::string stopped_by;  // "" while running, else "target", "patience" or "max_steps"
};

// JSON has no NaN or infinity: store them as null and read null back as NaN.
json finite_or_null(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }
double number_or_nan(const json& value) {
  return value.is_number() ? value.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

json state_json(const TrainState& s) {
  return {{"step", s.step},
          {"evaluations", s.evaluations},
          {"best_eval_loss", finite_or_null(s.best)},
          {"evals_since_best", s.evals_since_best},
          {"last_eval_loss", finite_or_null(s.last_eval)},
          {"seconds", s.seconds},
          {"stopped_by", s.stopped_by}};
}

TrainState state_from_json(const json& j) {
  TrainState s;
  s.step = j.at("step").get<int64_t>();
  s.evaluations = j.at("evaluations").get<int64_t>();
  s.best = number_or_nan(j.at("best_eval_loss"));
  if (std::isnan(s.best)) s.best = std::numeric_limits<double>::infinity();
  s.evals_since_best = j.at("evals_since_best").get<int64_t>();
  s.last_eval = number_or_nan(j.at("last_eval_loss"));
  s.seconds = j.at("seconds").get<double>();
  s.stopped_by = j.at("stopped_by").get<std::string>();
  return s;
}

std::string stop_reason_text(const RunConfig& cfg, const std::string& stopped_by) {
  if (stopped_by == "target") return fmt::format("eval loss <= {:g}", cfg.target_loss);
  if (stopped_by == "patience") return fmt::format("{} evaluations without improvement", cfg.patience);
  if (stopped_by == "max_steps") return fmt::format("step cap {} reached", cfg.max_steps);
  return "not finished";
}

// ---- progress display -----------------------------------------------------------

/// The progress line: redrawn in place with \r on a terminal, printed as plain
/// lines (one per evaluation) otherwise.
class Progress {
 public:
  Progress(bool enabled, FILE* stream)
      : enabled_(enabled), stream_(stream), tty_(enabled && ::isatty(::fileno(stream)) != 0) {}

  void start(const std::string& label, int64_t keys) {
    label_ = label;
    keys_ = keys;
    last_draw_ = Clock::now();
    drawn_ = false;
  }

  /// Called after every training step; draws at most a few times per second, on a terminal only.
  void step(const TrainState& s, int64_t max_steps, double train_loss, double rate) {
    if (!tty_) return;
    const auto now = Clock::now();
    if (drawn_ && std::chrono::duration<double>(now - last_draw_).count() < 0.25) return;
    draw(s, max_steps, train_loss, rate);
  }

  /// Called after every evaluation.
  void evaluation(const TrainState& s, int64_t max_steps, double train_loss, double rate) {
    if (!enabled_) return;
    if (tty_) {
      draw(s, max_steps, train_loss, rate);
    } else {
      std::fprintf(stream_, "%s\n", line(s, max_steps, train_loss, rate).c_str());
      std::fflush(stream_);
    }
  }

  /// Ends the run's progress display with a summary line.
  void finish(const std::string& summary) {
    if (!enabled_) return;
    if (tty_ && drawn_) std::fputs("\r\x1b[K", stream_);
    std::fprintf(stream_, "%s\n", summary.c_str());
    std::fflush(stream_);
  }

  void message(const std::string& text) {
    if (!enabled_) return;
    if (tty_ && drawn_) std::fputs("\r\x1b[K", stream_);
    drawn_ = false;
    std::fprintf(stream_, "%s\n", text.c_str());
    std::fflush(stream_);
  }

 private:
  std::string line(const TrainState& s, int64_t max_steps, double train_loss, double rate) const {
    const std::string eval = s.evaluations > 0 ? fmt::format("{:.6f}", s.last_eval) : std::string("-");
    const std::string best = std::isfinite(s.best) ? fmt::format("{:.6f}", s.best) : std::string("-");
    const double eta = rate > 0 ? static_cast<double>(max_steps - s.step) / rate
                                : std::numeric_limits<double>::quiet_NaN();
    return fmt::format("[{} S={}] step {}/{}  loss {:.5f}  eval {} (best {})  {:.1f} steps/s  ETA {}", label_,
                       keys_, s.step, max_steps, train_loss, eval, best, rate, format_duration(eta));
  }

  void draw(const TrainState& s, int64_t max_steps, double train_loss, double rate) {
    std::fprintf(stream_, "\r%s\x1b[K", line(s, max_steps, train_loss, rate).c_str());
    std::fflush(stream_);
    last_draw_ = Clock::now();
    drawn_ = true;
  }

  bool enabled_;
  FILE* stream_;
  bool tty_;
  std::string label_;
  int64_t keys_ = 0;
  Clock::time_point last_draw_;
  bool drawn_ = false;
};

// ---- --csv: one row per evaluation ----------------------------------------------

constexpr const char* kEvalCsvHeader = "keys,step,eval_loss,best,seconds";

/// The evaluation log of --csv: one row per evaluation of every run.
class EvalLog {
 public:
  ~EvalLog() {
    if (file_ != nullptr) std::fclose(file_);
  }

  /// Starts the log of fresh runs of the given values of S: earlier rows of those
  /// S are dropped (they belong to runs being replaced), rows of other S are kept,
  /// so several invocations can fill one log.
  void open_fresh(const std::string& path, const std::vector<int64_t>& keys) {
    open_keeping(path, [&keys](int64_t s, int64_t) {
      return std::find(keys.begin(), keys.end(), s) == keys.end();
    });
  }

  /// Continues a log after resuming S at `step`: rows of S past that step (written
  /// after the checkpoint was saved) are dropped so the log reads as one run.
  void open_resumed(const std::string& path, int64_t keys, int64_t step) {
    open_keeping(path, [keys, step](int64_t s, int64_t row_step) { return s != keys || row_step <= step; });
  }

  void append(int64_t keys, const TrainState& s) {
    if (file_ == nullptr) return;
    const std::string loss = std::isnan(s.last_eval) ? std::string("nan") : fmt::format("{:.8g}", s.last_eval);
    const std::string best = std::isfinite(s.best) ? fmt::format("{:.8g}", s.best) : std::string("nan");
    if (std::fprintf(file_, "%lld,%lld,%s,%s,%.3f\n", static_cast<long long>(keys),
                     static_cast<long long>(s.step), loss.c_str(), best.c_str(), s.seconds) < 0 ||
        std::fflush(file_) != 0) {
      throw RunError(fmt::format("cannot write {}: {}", path_, std::strerror(errno)));
    }
  }

 private:
  /// Rewrites the file keeping the rows for which keep(keys, step) holds, then opens it for appending.
  template <typename Keep>
  void open_keeping(const std::string& path, Keep keep) {
    path_ = path;
    std::string kept = std::string(kEvalCsvHeader) + "\n";
    if (file_exists(path)) {
      std::istringstream text(read_file(path));
      std::string line;
      bool header = true;
      while (std::getline(text, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (header) {
          header = false;
          if (line != kEvalCsvHeader) {
            throw RunError(fmt::format("{} is not an evaluation CSV of fwp retrieval (its header is not '{}')",
                                       path, kEvalCsvHeader));
          }
          continue;
        }
        if (line.empty()) continue;
        const std::vector<std::string> fields = split_csv_record(line);
        if (fields.size() != 5) throw RunError(fmt::format("{}: malformed row '{}'", path, line));
        if (keep(std::strtoll(fields[0].c_str(), nullptr, 10), std::strtoll(fields[1].c_str(), nullptr, 10))) {
          kept += line + "\n";
        }
      }
    }
    write_file_atomically(path, kept);
    reopen();
  }

  void reopen() {
    file_ = std::fopen(path_.c_str(), "a");
    if (file_ == nullptr) throw RunError(fmt::format("cannot open {}: {}", path_, std::strerror(errno)));
  }

  std::string path_;
  FILE* file_ = nullptr;
};

// ---- one training run -----------------------------------------------------------

struct RunResult {
  RunConfig config;
  TrainState state;
  bool resumed = false;
};

/// The model, optimizer and training data of one run, built from its config.
struct RunObjects {
  ContextPtr context;
  ModelPtr model;
  OptimizerPtr optimizer;
  DataPtr train_data;
  int64_t seq_len = 0;
};

fwp_feature_map feature_map_of(const std::string& phi) {
  if (phi == "elu") return FWP_FEATURE_MAP_ELU;
  if (phi == "favor") return FWP_FEATURE_MAP_FAVOR;
  if (phi == "softmax") return FWP_FEATURE_MAP_SOFTMAX;
  return FWP_FEATURE_MAP_DPFP;
}

RunObjects create_run_objects(const RunConfig& cfg) {
  RunObjects objects;

  fwp_context_config context_config;
  fwp_context_config_init(&context_config);
  context_config.device = cfg.device == "cuda" ? FWP_DEVICE_CUDA : FWP_DEVICE_CPU;
  context_config.num_threads = cfg.threads;
  context_config.seed = cfg.seed;
  fwp_context* context = nullptr;
  check_status(fwp_context_create(&context_config, &context), "creating the context");
  objects.context.reset(context);

  fwp_retrieval_config model_config;
  fwp_retrieval_config_init(&model_config);
  model_config.setting = cfg.setting;
  model_config.num_keys = cfg.keys;
  model_config.feature_map = feature_map_of(cfg.phi);
  model_config.dpfp_nu = cfg.nu;
  model_config.favor_features = cfg.favor_m;
  model_config.update_rule = cfg.rule == "delta" ? FWP_UPDATE_DELTA : FWP_UPDATE_SUM;
  model_config.sum_normalize = cfg.sum_norm ? 1 : 0;
  model_config.attn_normalize = cfg.attn_norm ? 1 : 0;
  fwp_model* model = nullptr;
  check_status(fwp_model_create_retrieval(context, &model_config, &model), "creating the retrieval model");
  objects.model.reset(model);

  fwp_optimizer_config optimizer_config;
  fwp_optimizer_config_init(&optimizer_config);
  optimizer_config.kind = FWP_OPTIMIZER_ADAM;
  optimizer_config.learning_rate = static_cast<float>(cfg.lr);
  fwp_optimizer* optimizer = nullptr;
  check_status(fwp_optimizer_create_for_model(model, &optimizer_config, &optimizer), "creating the optimizer");
  objects.optimizer.reset(optimizer);

  fwp_retrieval_data* data = nullptr;
  check_status(fwp_retrieval_data_create(cfg.setting, cfg.keys, mix_seed(cfg.seed, kTrainDataStream), &data),
               "creating the training data generator");
  objects.train_data.reset(data);
  check_status(fwp_retrieval_data_seq_len(data, &objects.seq_len), "reading the sequence length");
  return objects;
}

/// Buffers of one batch of sequences.
struct BatchBuffers {
  BatchBuffers(int64_t batch, int64_t seq_len, int64_t queries)
      : batch_size(batch), seq_len(seq_len), num_queries(queries),
        keys(static_cast<size_t>(batch * seq_len)), values(keys.size()),
        queries(static_cast<size_t>(batch * queries)), targets(this->queries.size()) {}

  void sample(fwp_retrieval_data* data, const char* what) {
    check_status(fwp_retrieval_data_sample(data, batch_size, num_queries, keys.data(), values.data(),
                                           queries.data(), targets.data()),
                 what);
  }

  fwp_retrieval_batch view() const {
    return fwp_retrieval_batch{batch_size, seq_len, num_queries, keys.data(), values.data(), queries.data(),
                               targets.data()};
  }

  int64_t batch_size, seq_len, num_queries;
  std::vector<int32_t> keys, values, queries, targets;
};

/// The evaluation of the paper: fresh sequences (their seed derived from the
/// run's seed and the step, so a resumed run sees the same ones), each queried
/// with every distinct key it holds, at most kMaxEvalQueries of them.
double evaluate(const RunConfig& cfg, RunObjects& objects, BatchBuffers& buffers, int64_t step) {
  fwp_retrieval_data* raw = nullptr;
  check_status(fwp_retrieval_data_create(cfg.setting, cfg.keys, mix_seed(cfg.seed, kEvalDataStream,
                                                                          static_cast<uint64_t>(step)),
                                          &raw),
               "creating the evaluation data generator");
  DataPtr eval_data(raw);
  buffers.sample(eval_data.get(), "drawing evaluation sequences");
  check_status(fwp_model_set_training(objects.model.get(), 0), "switching to evaluation mode");
  const fwp_retrieval_batch batch = buffers.view();
  float loss = 0.0f;
  const fwp_status status = fwp_retrieval_forward(objects.model.get(), &batch, &loss, nullptr, 0);
  check_status(status, fmt::format("evaluating at step {}", step).c_str());
  check_status(fwp_model_set_training(objects.model.get(), 1), "switching to training mode");
  return static_cast<double>(loss);
}

std::string checkpoint_user_metadata(const RunConfig& cfg, const TrainState& state) {
  const json metadata = {{"format", kCheckpointFormat},
                         {"version", kCheckpointFormatVersion},
                         {"fwp_version", fwp_version_string()},
                         {"config", config_json(cfg)},
                         {"state", state_json(state)}};
  return metadata.dump();
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

/// What one run writes besides its result.
struct RunOutputs {
  Progress* progress = nullptr;
  EvalLog* eval_log = nullptr;
  std::string checkpoint;  // "" = no checkpoints
};

/// Trains one configuration until the stopping rule or the step cap, starting
/// from `state` (fresh, or as restored from a checkpoint into `objects`).
TrainState train(const RunConfig& cfg, RunObjects& objects, TrainState state, const RunOutputs& out) {
  BatchBuffers train_batch(cfg.batch, objects.seq_len, 1);
  BatchBuffers eval_batch(cfg.eval_seqs, objects.seq_len, eval_queries(cfg));
  const std::string label = model_label(cfg);
  out.progress->start(label, cfg.keys);

  const auto session_start = Clock::now();
  const double seconds_before = state.seconds;
  const int64_t first_step = state.step;
  double loss_sum = 0.0;
  int64_t loss_count = 0;
  auto elapsed = [&]() { return std::chrono::duration<double>(Clock::now() - session_start).count(); };
  auto rate = [&]() {
    const double t = elapsed();
    return t > 0 ? static_cast<double>(state.step - first_step) / t : 0.0;
  };

  // A run stopped by its rule stays stopped; one stopped by the cap goes on if the cap was raised.
  if (state.stopped_by == "max_steps" && state.step < cfg.max_steps) state.stopped_by.clear();

  while (state.stopped_by.empty() && state.step < cfg.max_steps) {
    train_batch.sample(objects.train_data.get(), "drawing a training batch");
    const fwp_retrieval_batch batch = train_batch.view();
    float loss = 0.0f;
    check_status(fwp_model_zero_grad(objects.model.get()), "zeroing the gradients");
    check_status(fwp_retrieval_forward(objects.model.get(), &batch, &loss, nullptr, 0),
                 fmt::format("training forward at step {}", state.step + 1).c_str());
    check_status(fwp_model_backward(objects.model.get()),
                 fmt::format("training backward at step {}", state.step + 1).c_str());
    check_status(fwp_optimizer_step(objects.optimizer.get(), nullptr),
                 fmt::format("optimizer step {}", state.step + 1).c_str());
    ++state.step;
    loss_sum += loss;
    ++loss_count;
    const double train_loss = loss_sum / static_cast<double>(loss_count);

    const bool at_cap = state.step >= cfg.max_steps;
    if (state.step % cfg.eval_every != 0 && !at_cap) {
      out.progress->step(state, cfg.max_steps, train_loss, rate());
      continue;
    }

    // Evaluation and the paper's stopping rule.
    const double eval_loss = evaluate(cfg, objects, eval_batch, state.step);
    ++state.evaluations;
    state.last_eval = eval_loss;
    if (eval_loss < state.best) {
      state.best = eval_loss;
      state.evals_since_best = 0;
    } else {
      ++state.evals_since_best;
    }
    if (eval_loss <= cfg.target_loss) {
      state.stopped_by = "target";
    } else if (state.evals_since_best >= cfg.patience) {
      state.stopped_by = "patience";
    } else if (at_cap) {
      state.stopped_by = "max_steps";
    }
    state.seconds = seconds_before + elapsed();

    if (!out.checkpoint.empty()) {
      const std::string metadata = checkpoint_user_metadata(cfg, state);
      check_status(fwp_checkpoint_save(out.checkpoint.c_str(), objects.model.get(), objects.optimizer.get(),
                                       objects.train_data.get(), metadata.c_str()),
                   fmt::format("saving the checkpoint {}", out.checkpoint).c_str());
    }
    out.eval_log->append(cfg.keys, state);
    out.progress->evaluation(state, cfg.max_steps, train_loss, rate());
    loss_sum = 0.0;
    loss_count = 0;
  }
  if (state.stopped_by.empty()) state.stopped_by = "max_steps";  // resumed with a cap already passed
  return state;
}

// ---- reporting --------------------------------------------------------------------

SweepRow sweep_row_of(const RunResult& result) {
  SweepRow row;
  row.model = model_label(result.config);
  row.keys = result.config.keys;
  row.final_eval_loss = result.state.last_eval;
  row.best_eval_loss = std::isfinite(result.state.best) ? result.state.best : std::nan("");
  row.steps = result.state.step;
  row.seconds = result.state.seconds;
  row.setting = result.config.setting;
  row.stopped_by = result.state.stopped_by;
  row.seed = result.config.seed;
  return row;
}

json result_json(const RunResult& result) {
  const TrainState& s = result.state;
  return {{"command", "retrieval"},
          {"model", model_label(result.config)},
          {"keys", result.config.keys},
          {"final_eval_loss", finite_or_null(s.last_eval)},
          {"best_eval_loss", finite_or_null(s.best)},
          {"steps", s.step},
          {"evaluations", s.evaluations},
          {"seconds", s.seconds},
          {"steps_per_second", s.seconds > 0 ? static_cast<double>(s.step) / s.seconds : 0.0},
          {"stopped_by", s.stopped_by},
          {"resumed", result.resumed},
          {"config", config_json(result.config)},
          {"fwp_version", fwp_version_string()}};
}

std::string summary_line(const RunResult& result) {
  const TrainState& s = result.state;
  return fmt::format("{}, S={}: final eval loss {:.6f} (best {:.6f}) after {} steps in {}; stopped: {}",
                     model_label(result.config), result.config.keys, s.last_eval, s.best, s.step,
                     format_duration(s.seconds), stop_reason_text(result.config, s.stopped_by));
}

// ---- command-line validation ------------------------------------------------------

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
std::vector<RunConfig> fresh_configs(const RetrievalOptions& o, const std::vector<int64_t>& keys) {
  if (o.opt_nu->count() > 0 && o.phi != "dpfp") {
    throw UsageError(fmt::format("--nu applies only to --phi dpfp (got --phi {})", o.phi));
  }
  if (o.opt_m->count() > 0 && o.phi != "favor") {
    throw UsageError(fmt::format("--m applies only to --phi favor (got --phi {})", o.phi));
  }
  RunConfig base;
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
  std::vector<RunConfig> configs;
  for (int64_t s : keys) {
    RunConfig cfg = base;
    cfg.keys = s;
    configs.push_back(cfg);
  }
  return configs;
}

/// The configuration and state of a resumed run; flags that define the run
/// must agree with the checkpoint (or be left out). Throws UsageError / RunError.
std::pair<RunConfig, TrainState> resumed_config(const RetrievalOptions& o, const std::vector<int64_t>& keys) {
  if (keys.size() != 1) throw UsageError("--resume continues one run: give --keys a single S, not a range");
  json metadata;
  try {
    metadata = json::parse(read_checkpoint_user_metadata(o.resume));
    if (metadata.at("format").get<std::string>() != kCheckpointFormat) throw RunError("unknown format");
    if (metadata.at("version").get<int>() != kCheckpointFormatVersion) {
      throw RunError(fmt::format("unsupported version {}", metadata.at("version").dump()));
    }
  } catch (const RunError&) {
    throw;
  } catch (const std::exception& e) {
    throw RunError(fmt::format("{} was not written by 'fwp retrieval': {}", o.resume, one_line(e.what())));
  }
  RunConfig stored;
  TrainState state;
  try {
    stored = config_from_json(metadata.at("config"));
    state = state_from_json(metadata.at("state"));
  } catch (const std::exception& e) {
    throw RunError(fmt::format("the metadata of {} is incomplete: {}", o.resume, one_line(e.what())));
  }

  // What the command line says, for the flags that were given.
  RunConfig cli = fresh_configs(o, keys).front();
  const json given = defining_json(cli);
  const json kept = defining_json(stored);
  const std::pair<const char*, const CLI::Option*> flags[] = {
      {"setting", o.opt_setting},     {"phi", o.opt_phi},         {"rule", o.opt_rule},
      {"nu", o.opt_nu},               {"m", o.opt_m},             {"keys", o.opt_keys},
      {"seed", o.opt_seed},           {"batch", o.opt_batch},     {"lr", o.opt_lr},
      {"eval_every", o.opt_eval_every}, {"eval_seqs", o.opt_eval_seqs}, {"patience", o.opt_patience},
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
  return {stored, state};
}

}  // namespace

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

CLI::App* add_retrieval_command(CLI::App& app, RetrievalOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "retrieval",
      "Train the synthetic associative-retrieval model of the paper (section 6.1) with Adam until the eval "
      "loss reaches --target-loss, --patience evaluations pass without improvement, or --max-steps is "
      "reached; one run per value of --keys.");
  cmd->option_defaults()->always_capture_default();

  o.opt_setting = cmd->add_option("--setting", o.setting,
                                  "1: capacity (S pairs, keys without replacement); 2: update (2S pairs with "
                                  "replacement, the latest value counts)")
                      ->check(CLI::IsMember({1, 2}));
  o.opt_phi = cmd->add_option("--phi", o.phi,
                              "Feature map: elu (Linear Transformer), favor (FAVOR+), dpfp, or softmax "
                              "(softmax-attention baseline)")
                  ->check(CLI::IsMember({"elu", "favor", "dpfp", "softmax"}));
  o.opt_rule = cmd->add_option("--rule", o.rule, "Fast-weight update rule: sum or delta")
                   ->check(CLI::IsMember({"sum", "delta"}));
  o.opt_nu = cmd->add_option("--nu", o.nu, "DPFP order nu (d_dot = 2 * 64 * nu); only with --phi dpfp")
                 ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_m = cmd->add_option("--m", o.favor_m, "FAVOR+ random features m (d_dot = 2m); only with --phi favor")
                ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_keys = cmd->add_option("--keys", o.keys_spec,
                               "Number of keys S (2 <= S <= 100000), or an inclusive range A:B:STEP run one "
                               "after the other")
                   ->check(CLI::Validator(
                       [](std::string& text) { return parse_keys_spec(text, nullptr); }, "S|A:B:STEP"));
  o.opt_seed = cmd->add_option("--seed", o.seed,
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
  cmd->add_option("--max-steps", o.max_steps, "Training step cap")
      ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_batch = cmd->add_option("--batch", o.batch, "Training sequences per step")
                    ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_lr = cmd->add_option("--lr", o.lr, "Adam learning rate")
                 ->check(number_check<double>("a finite number > 0",
                                              [](double v) { return std::isfinite(v) && v > 0; }));
  cmd->add_option("--threads", o.threads, "CPU threads; 0 = all hardware threads")
      ->check(number_check<int>("an integer >= 0", [](int v) { return v >= 0; }));
  cmd->add_option("--device", o.device, "cpu, or cuda (needs a CUDA build and a GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  o.opt_eval_every = cmd->add_option("--eval-every", o.eval_every, "Evaluate every N training steps")
                         ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_eval_seqs =
      cmd->add_option("--eval-seqs", o.eval_seqs,
                      "Fresh sequences per evaluation, each queried with every distinct key it holds (at most "
                      "200 queries per sequence)")
          ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_patience = cmd->add_option("--patience", o.patience, "Stop after N evaluations without improvement")
                       ->check(number_check<int64_t>("an integer >= 1", [](int64_t v) { return v >= 1; }));
  o.opt_target_loss = cmd->add_option("--target-loss", o.target_loss, "Stop once the eval loss is <= X")
                          ->check(number_check<double>("a finite number >= 0",
                                                       [](double v) { return std::isfinite(v) && v >= 0; }));
  o.opt_sum_norm = cmd->add_flag("--sum-norm,!--no-sum-norm", o.sum_norm,
                                 "Sum-normalise phi of keys and queries (default: on for --rule delta, off "
                                 "for sum, as in the paper)")
                       ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  o.opt_attn_norm = cmd->add_flag("--attn-norm,!--no-attn-norm", o.attn_norm,
                                  "Divide the readout by z . phi(q) (default: on for --rule sum, off for delta, "
                                  "as in the paper)")
                        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--csv", o.csv,
                  "Write one row per evaluation to FILE: keys,step,eval_loss,best,seconds (rows of other S already "
                  "in FILE are kept, rows of the S being run are replaced)");
  cmd->add_option("--sweep-csv", o.sweep_csv,
                  "Merge one row per finished run into FILE: model,keys,final_eval_loss,best_eval_loss,steps,"
                  "seconds,setting,stopped_by,seed (a rerun replaces the row of the same model, setting and S)");
  cmd->add_option("--plot", o.plot,
                  "Render final eval loss vs S (one line per model) to FILE.png with gnuplot after each run; "
                  "with --sweep-csv it plots every row of that file");
  cmd->add_option("--checkpoint", o.checkpoint,
                  "Save model, optimizer, data and run state to FILE at every evaluation (with several S: "
                  "FILE with -S<n> before its extension)");
  cmd->add_option("--resume", o.resume,
                  "Continue the run saved in FILE exactly; its settings are kept, only --max-steps, --threads, "
                  "--device and the outputs may change; checkpoints go on to FILE unless --checkpoint is given")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--json", o.json,
                "Print one JSON object per run on stdout (progress then goes to stderr)");
  cmd->add_flag("--quiet", o.quiet, "No progress or summary lines");
  return cmd;
}

int run_retrieval_command(RetrievalOptions& o) {
  std::vector<int64_t> keys;
  const std::string keys_error = parse_keys_spec(o.keys_spec, &keys);
  if (!keys_error.empty()) throw UsageError("--keys: " + keys_error);

  std::vector<RunConfig> configs;
  TrainState resumed_state;
  const bool resuming = !o.resume.empty();
  if (resuming) {
    auto resumed = resumed_config(o, keys);
    configs.push_back(resumed.first);
    resumed_state = resumed.second;
  } else {
    configs = fresh_configs(o, keys);
  }

  // Check the outputs before spending time on training.
  std::string gnuplot;
  if (!o.plot.empty()) {
    gnuplot = find_in_path("gnuplot");
    if (gnuplot.empty()) {
      throw RunError("--plot needs gnuplot, which is not in PATH (install it, e.g. apt-get install gnuplot-nox)");
    }
  }
  if (!o.sweep_csv.empty()) read_sweep_csv(o.sweep_csv);  // a malformed file fails now, not after training

  FILE* progress_stream = o.json ? stderr : stdout;
  Progress progress(!o.quiet, progress_stream);
  EvalLog eval_log;
  if (!o.csv.empty()) {
    if (resuming) {
      eval_log.open_resumed(o.csv, configs.front().keys, resumed_state.step);
    } else {
      std::vector<int64_t> fresh_keys;
      for (const RunConfig& cfg : configs) fresh_keys.push_back(cfg.keys);
      eval_log.open_fresh(o.csv, fresh_keys);
    }
  }

  std::vector<SweepRow> plotted;  // this invocation's rows, for --plot without --sweep-csv
  const bool several = configs.size() > 1;
  for (const RunConfig& cfg : configs) {
    RunObjects objects = create_run_objects(cfg);
    TrainState state;
    RunOutputs outputs;
    outputs.progress = &progress;
    outputs.eval_log = &eval_log;
    outputs.checkpoint = checkpoint_path_for(o.checkpoint, cfg.keys, several);
    if (resuming) {
      check_status(fwp_checkpoint_load(o.resume.c_str(), objects.model.get(), objects.optimizer.get(),
                                       objects.train_data.get()),
                   fmt::format("loading the checkpoint {}", o.resume).c_str());
      int64_t optimizer_steps = 0;
      check_status(fwp_optimizer_get_step(objects.optimizer.get(), &optimizer_steps), "reading the step");
      if (optimizer_steps != resumed_state.step) {
        throw RunError(fmt::format("{} is inconsistent: its optimizer took {} steps, its run state says {}",
                                   o.resume, optimizer_steps, resumed_state.step));
      }
      state = resumed_state;
      if (outputs.checkpoint.empty()) outputs.checkpoint = o.resume;
      progress.message(fmt::format("resuming {}, S={} at step {} from {}", model_label(cfg), cfg.keys, state.step,
                                   o.resume));
    }

    RunResult result;
    result.config = cfg;
    result.resumed = resuming;
    result.state = train(cfg, objects, state, outputs);
    progress.finish(summary_line(result));
    if (o.json) {
      std::printf("%s\n", result_json(result).dump().c_str());
      std::fflush(stdout);
    }

    const SweepRow row = sweep_row_of(result);
    if (!o.sweep_csv.empty()) {
      std::vector<SweepRow> rows;
      // Concurrent invocations may share one table: merge under a lock so no row is lost.
      const FileLock lock(o.sweep_csv + ".lock");
      rows = read_sweep_csv(o.sweep_csv);
      merge_sweep_row(rows, row);
      write_sweep_csv(o.sweep_csv, rows);
      if (!o.plot.empty()) render_sweep_plot(gnuplot, o.plot, rows);
    } else {
      merge_sweep_row(plotted, row);
      if (!o.plot.empty()) render_sweep_plot(gnuplot, o.plot, plotted);
    }
  }
  return kExitOk;
}

}  // namespace fwp_cli
