// `fwp lm`: the paper's language modelling (section 6.3) in four steps:
//   fwp lm prepare   text files -> tokenizer + token files in a data folder
//   fwp lm train     trains a model on the folder (the shared training driver)
//   fwp lm eval      perplexity of a checkpoint: segments, sliding window or carried state
//   fwp lm generate  text from a checkpoint, one token per step through a fwp_state
// This file holds the flags and what each step runs; the model as a training
// task is LmTask (lm_task.h), the loop, logs, checkpoints and Ctrl-C are the
// driver's (train/train_loop.h).
#include "cli_support.h"
#include "commands.h"
#include "lm_task.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/eval_log.h"
#include "train/gnuplot.h"
#include "train/interrupt.h"
#include "train/train_loop.h"

#include <fwp/fwp.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace fwp_cli {
namespace {

using json = nlohmann::json;

const train::CheckpointFormat kCheckpointFormat{"fwp-cli-lm", 1, "fwp lm train"};

/// Every flag of the four subcommands (the program parses once).
struct LmOptions {
  CLI::App* prepare = nullptr;
  CLI::App* train = nullptr;
  CLI::App* eval = nullptr;
  CLI::App* generate = nullptr;

  // prepare
  std::string train_text, valid_text, test_text, out;
  std::string tokenizer = "word";
  int64_t min_count = 1;
  int64_t max_vocab = 0;
  int64_t sp_vocab = 8000;

  // train (LmRunConfig fields, plus which were given)
  LmRunConfig run;
  std::string preset = "cpu-small";
  std::string cutoffs;
  std::string csv, plot, checkpoint, resume;
  std::string on_non_finite = train::kOnNonFiniteStop;  // --on-non-finite (train/train_state.h)
  std::string dist = train::kDistNone;                  // --dist (train/distributed.h)
  double dist_timeout = train::kDistTimeoutSeconds;     // --dist-timeout
  int64_t max_skips = 10;
  std::map<std::string, CLI::Option*> given;  ///< defining flags, to check against a resumed checkpoint

  // eval / generate
  std::string data, split = "valid", mode = "sliding";
  int64_t length = 0;
  int64_t max_tokens = 0;
  std::string prompt;
  int64_t new_tokens = 100;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  bool stop_at_eos = false;

  bool json = false;
  bool quiet = false;
};

LmOptions& options() {
  static LmOptions instance;
  return instance;
}

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
const auto kPositive = [](int64_t v) { return v >= 1; };
const auto kNonNegative = [](int64_t v) { return v >= 0; };

/// "20000,40000" -> {20000, 40000}; throws UsageError.
std::vector<int64_t> parse_cutoffs(const std::string& text) {
  std::vector<int64_t> values;
  if (text.empty()) return values;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, ',')) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(part.c_str(), &end, 10);
    if (part.empty() || end != part.c_str() + part.size() || errno == ERANGE || v < 1) {
      throw UsageError(fmt::format("--cutoffs: '{}' is not a comma-separated list of positive integers", text));
    }
    values.push_back(v);
  }
  return values;
}

bool is_directory(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// Checks that `folder` is a data folder of `fwp lm prepare`; throws UsageError.
void check_data_folder(const std::string& flag, const std::string& folder) {
  if (!is_directory(folder)) throw UsageError(fmt::format("{} {}: not a folder", flag, folder));
  const LmDataFiles files{folder};
  for (const std::string& file : {files.tokenizer(), files.split("train"), files.split("valid")}) {
    if (!file_exists(file)) {
      throw UsageError(fmt::format("{} {}: {} is missing (make the folder with `fwp lm prepare`)", flag, folder,
                                   file));
    }
  }
}

TokenizerPtr load_tokenizer(const std::string& path) {
  fwp_tokenizer* raw = nullptr;
  check_input_status(fwp_tokenizer_load(path.c_str(), &raw), fmt::format("loading the tokenizer {}", path).c_str());
  return TokenizerPtr(raw);
}

int64_t vocab_size_of(const fwp_tokenizer* tokenizer) {
  int64_t vocab = 0;
  check_status(fwp_tokenizer_vocab_size(tokenizer, &vocab), "reading the vocabulary size");
  return vocab;
}

// ---- prepare ----------------------------------------------------------------------

int run_prepare(const LmOptions& o) {
  for (const auto& input : {std::make_pair("--train", o.train_text), std::make_pair("--valid", o.valid_text),
                            std::make_pair("--test", o.test_text)}) {
    if (!input.second.empty() && !file_exists(input.second)) {
      throw UsageError(fmt::format("{} {}: no such file", input.first, input.second));
    }
  }
  if (!is_directory(o.out) && ::mkdir(o.out.c_str(), 0777) != 0) {
    throw UsageError(fmt::format("--out {}: cannot create the folder ({})", o.out, std::strerror(errno)));
  }
  const LmDataFiles files{o.out};
  check_output_path("--out", files.tokenizer());

  fwp_tokenizer* raw = nullptr;
  const char* paths[] = {o.train_text.c_str()};
  if (o.tokenizer == "word") {
    fwp_word_tokenizer_config config;
    fwp_word_tokenizer_config_init(&config);
    config.min_count = o.min_count;
    config.max_size = o.max_vocab;
    check_input_status(fwp_tokenizer_train_word(paths, 1, &config, &raw), "building the word vocabulary");
  } else {
    fwp_sentencepiece_config config;
    fwp_sentencepiece_config_init(&config);
    config.model_type = o.tokenizer == "bpe" ? FWP_SENTENCEPIECE_BPE : FWP_SENTENCEPIECE_UNIGRAM;
    config.vocab_size = o.sp_vocab;
    check_input_status(fwp_tokenizer_train_sentencepiece(paths, 1, &config, &raw), "training the SentencePiece model");
  }
  const TokenizerPtr tokenizer(raw);
  check_status(fwp_tokenizer_save(tokenizer.get(), files.tokenizer().c_str()), "saving the tokenizer");

  json report = {{"command", "lm prepare"}, {"out", o.out}, {"tokenizer", o.tokenizer},
                 {"vocab_size", vocab_size_of(tokenizer.get())}};
  for (const auto& split : {std::make_pair("train", o.train_text), std::make_pair("valid", o.valid_text),
                            std::make_pair("test", o.test_text)}) {
    if (split.second.empty()) continue;
    int64_t count = 0;
    check_input_status(fwp_token_file_encode(tokenizer.get(), split.second.c_str(), files.split(split.first).c_str(),
                                       &count),
                 fmt::format("encoding {}", split.second).c_str());
    report[std::string(split.first) + "_tokens"] = count;
    report[std::string(split.first) + "_source"] = split.second;
  }
  write_file_atomically(files.manifest(), report.dump(2) + "\n");
  if (o.json) {
    std::printf("%s\n", report.dump().c_str());
  } else if (!o.quiet) {
    std::printf("fwp lm prepare: %s vocabulary of %lld entries; train %lld tokens, valid %lld, test %lld -> %s\n",
                o.tokenizer.c_str(), static_cast<long long>(report["vocab_size"].get<int64_t>()),
                static_cast<long long>(report.value("train_tokens", int64_t{0})),
                static_cast<long long>(report.value("valid_tokens", int64_t{0})),
                static_cast<long long>(report.value("test_tokens", int64_t{0})), o.out.c_str());
  }
  return kExitOk;
}

// ---- train ------------------------------------------------------------------------

LmRunConfig fresh_run_config(const LmOptions& o) {
  LmRunConfig cfg = o.run;
  const LmRunConfig flags = o.run;  // values the flags wrote (defaults where not given)
  apply_training_preset(o.preset, &cfg);
  // Flags given on the command line win over the preset.
  auto given = [&](const char* name) { return o.given.at(name)->count() > 0; };
  if (given("batch")) cfg.batch = flags.batch;
  if (given("length")) cfg.length = flags.length;
  if (given("lr")) cfg.lr = flags.lr;
  if (given("warmup")) cfg.warmup = flags.warmup;
  if (given("clip")) cfg.clip = flags.clip;
  cfg.decay_steps = given("decay_steps") ? flags.decay_steps : cfg.max_steps;
  cfg.cutoffs = parse_cutoffs(o.cutoffs);
  if (cfg.phi == "softmax" && given("rule") && cfg.rule != "sum") {
    throw UsageError("--phi softmax is softmax attention, which has no fast-weight update rule: drop --rule");
  }
  if (cfg.phi == "softmax") cfg.rule = "sum";
  if (cfg.carry && cfg.phi == "softmax") {
    throw UsageError("--carry carries fast weights; softmax attention (--phi softmax) has none");
  }
  // The paper's normalisation: sum-normalised phi for the delta rule; the
  // authors' sum-rule LM layers use attention normalisation.
  if (!given("sum_norm")) cfg.sum_norm = cfg.rule == "delta";
  if (!given("attn_norm")) cfg.attn_norm = cfg.rule == "sum";
  // Without positional encoding the carried-memory model of the paper.
  if (!given("positions") && cfg.carry) cfg.positions = "none";
  cfg.data = o.data;
  const TokenizerPtr tokenizer = load_tokenizer(LmDataFiles{o.data}.tokenizer());
  cfg.vocab = vocab_size_of(tokenizer.get());
  resolve_model_preset(&cfg);
  return cfg;
}

std::pair<LmRunConfig, train::SavedRun> resumed_run_config(const LmOptions& o) {
  const train::SavedRun saved = train::read_saved_run(o.resume, kCheckpointFormat);
  LmRunConfig stored;
  try {
    stored = lm_config_from_json(saved.config);
  } catch (const std::exception& e) {
    throw RunError(fmt::format("the metadata of {} is incomplete: {}", o.resume, one_line(e.what())));
  }
  for (const auto& flag : o.given) {
    if (flag.second->count() > 0 && flag.first != "data") {
      throw UsageError(fmt::format("{} cannot change on --resume (the run keeps the settings of {}); only "
                                   "--max-steps, --threads, --device and the outputs may be given",
                                   flag.second->get_name(), o.resume));
    }
  }
  if (!o.data.empty() && o.data != stored.data) {
    stored.data = o.data;  // the same prepared files, moved: the data source checks they are the same tokens
  }
  stored.max_steps = o.run.max_steps;
  stored.threads = o.run.threads;
  stored.device = o.run.device;
  return {stored, saved};
}

std::string resume_command(const LmOptions& o, const LmRunConfig& cfg, const std::string& checkpoint) {
  std::string command = fmt::format("{} lm train --resume {} --max-steps {}", shell_word(program_name()),
                                    shell_word(checkpoint), cfg.max_steps);
  if (o.run.threads != 0) command += fmt::format(" --threads {}", o.run.threads);
  if (o.run.device != "cpu") command += " --device " + shell_word(o.run.device);
  if (!o.csv.empty()) command += " --csv " + shell_word(o.csv);
  if (!o.plot.empty()) command += " --plot " + shell_word(o.plot);
  if (o.json) command += " --json";
  if (o.quiet) command += " --quiet";
  command = train::group_command(command, o.dist, o.dist_timeout);
  return command;
}

int run_train_in_group(LmOptions& o, train::Distributed& dist);

int run_train(LmOptions& o) {
  train::Distributed dist(o.dist, o.dist_timeout);
  return dist.guard([&] { return run_train_in_group(o, dist); });
}

int run_train_in_group(LmOptions& o, train::Distributed& dist) {
  const bool resuming = !o.resume.empty();
  if (!resuming) {
    if (o.data.empty()) throw UsageError("--data is required (a folder made by `fwp lm prepare`)");
    check_data_folder("--data", o.data);
  }
  LmRunConfig cfg;
  train::SavedRun saved;
  if (resuming) {
    auto stored = resumed_run_config(o);
    cfg = stored.first;
    saved = stored.second;
    check_data_folder("--data", cfg.data);
  } else {
    cfg = fresh_run_config(o);
  }
  if (!o.csv.empty()) check_output_path("--csv", o.csv);
  if (!o.plot.empty()) {
    check_output_path("--plot", o.plot);
    if (o.csv.empty()) throw UsageError("--plot draws the evaluation log: give --csv FILE too");
  }
  if (!o.checkpoint.empty()) check_output_path("--checkpoint", o.checkpoint);
  if (resuming && o.checkpoint.empty()) check_output_path("--resume", o.resume);
  const std::string gnuplot = o.plot.empty() ? std::string() : train::find_gnuplot("--plot");

  LmTask task(cfg, dist);
  // With --dist only rank 0 prints and writes; the others train silently.
  const bool root = dist.is_root();
  train::Progress progress(!o.quiet && root, o.json ? stderr : stdout);
  train::EvalLog eval_log;
  const std::vector<std::string> id_columns = {"model"};
  const train::RunId run_id = {lm_model_label(cfg)};
  const std::vector<std::string> metrics = {"perplexity", "lr"};
  if (!o.csv.empty() && root) {
    if (resuming) {
      eval_log.open_resumed(o.csv, id_columns, metrics, run_id, saved.state.step);
    } else {
      eval_log.open_fresh(o.csv, id_columns, metrics, {run_id});
    }
  }
  train::RunOutputs outputs;
  outputs.progress = &progress;
  outputs.eval_log = &eval_log;
  outputs.run_id = run_id;
  outputs.checkpoint = o.checkpoint;
  outputs.checkpoint_format = kCheckpointFormat;
  train::TrainState start;
  const train::InterruptScope interrupt_scope;
  train::start_replicas(dist, task.objects(), resuming ? o.resume : std::string(), saved);
  if (dist.active()) {
    progress.message(fmt::format("--dist {}: {} process{}, {} of the batch of {} streams each", dist.engine(),
                                 dist.world_size(), dist.world_size() == 1 ? "" : "es", cfg.batch / dist.world_size(), cfg.batch));
  }
  if (resuming) {
    start = saved.state;
    if (outputs.checkpoint.empty()) outputs.checkpoint = o.resume;
    progress.message(fmt::format("resuming {} at step {} from {}", task.label(), start.step, o.resume));
  } else {
    progress.message(fmt::format("{}: {} parameters, {} layers, d_model {}, segments of {} x batch {}, vocab {}",
                                 task.label(), task.num_parameters(), cfg.layers, cfg.d_model, cfg.length,
                                 cfg.batch, cfg.vocab));
  }

  train::TrainingPlan plan = lm_training_plan(cfg);
  plan.skip_non_finite = o.on_non_finite == train::kOnNonFiniteSkip;
  plan.max_consecutive_skips = o.max_skips;
  train::RunResult result = train::run_training(task, plan, start, outputs);
  result.resumed = resuming;
  dist.leave();  // while the task's context lives; nothing below communicates
  progress.message(train::summary_line(task, plan, result));
  if (!o.plot.empty() && result.state.evaluations > 0 && root) {
    train::render_eval_curves(gnuplot, o.plot, o.csv, {"perplexity", "Language model: validation perplexity",
                                                       "valid perplexity (log scale)", true});
  }
  if (o.json && root) {
    json line = train::result_json(task, result);
    line["command"] = "lm train";
    line["model"] = lm_model_label(cfg);
    line["parameters"] = task.num_parameters();
    line["valid_ppl"] = train::finite_or_null(std::exp(result.state.last_eval));
    line["valid_tokens_scored"] = task.eval_token_count() - 1;
    const double seconds = result.state.seconds;
    line["tokens_per_second"] =
        seconds > 0 ? static_cast<double>(result.state.step * task.tokens_per_step()) / seconds : 0.0;
    std::printf("%s\n", line.dump().c_str());
    std::fflush(stdout);
  }
  if (result.state.stopped_by == train::stop::kNonFinite) {
    if (!root) return kExitFailure;  // every rank stopped at the same step; rank 0 says why
    throw RunError(result.failure);
  }
  if (result.state.stopped_by == train::stop::kInterrupted) {
    if (root) {
      const std::string notice = train::interrupted_notice(task, result, resume_command(o, cfg, result.checkpoint));
      std::fprintf(stderr, "%s\n", notice.c_str());
    }
    return train::interrupted_exit_code(result.signal);
  }
  return kExitOk;
}

// ---- eval and generate ------------------------------------------------------------

struct LoadedModel {
  ContextPtr context;
  ModelPtr model;
  fwp_lm_config config;
};

LoadedModel load_model(const std::string& checkpoint, int threads, const std::string& device) {
  if (!file_exists(checkpoint)) throw UsageError(fmt::format("--checkpoint {}: no such file", checkpoint));
  LoadedModel loaded;
  loaded.context = create_context(device, threads);
  fwp_context* context = loaded.context.get();
  fwp_model* model = nullptr;
  check_input_status(fwp_model_load(context, checkpoint.c_str(), &model), fmt::format("loading {}", checkpoint).c_str());
  loaded.model.reset(model);
  fwp_model_kind kind = FWP_MODEL_RETRIEVAL;
  check_status(fwp_model_get_kind(model, &kind), "reading the model kind");
  if (kind != FWP_MODEL_LANGUAGE) throw UsageError(fmt::format("--checkpoint {} holds no language model", checkpoint));
  fwp_lm_config_init(&loaded.config);
  check_status(fwp_lm_get_config(model, &loaded.config), "reading the model config");
  check_status(fwp_model_set_training(model, 0), "switching to evaluation mode");
  return loaded;
}

/// The model's vocabulary must be the data folder's.
void check_vocab(const LoadedModel& loaded, const fwp_tokenizer* tokenizer, const std::string& data) {
  const int64_t vocab = vocab_size_of(tokenizer);
  if (vocab != loaded.config.vocab_size) {
    throw UsageError(fmt::format("the checkpoint's model has a vocabulary of {} but {} has {}: not the data it was "
                                 "trained on",
                                 loaded.config.vocab_size, data, vocab));
  }
}

int run_eval(const LmOptions& o) {
  check_data_folder("--data", o.data);
  const LmDataFiles files{o.data};
  const std::string split_path = files.split(o.split);
  if (!file_exists(split_path)) throw UsageError(fmt::format("--split {}: {} is missing", o.split, split_path));
  LoadedModel loaded = load_model(o.checkpoint, o.run.threads, o.run.device);
  check_vocab(loaded, load_tokenizer(files.tokenizer()).get(), o.data);
  // The window defaults to the training segment length stored with the run.
  int64_t length = o.length;
  if (length == 0) {
    try {
      length = train::read_saved_run(o.checkpoint, kCheckpointFormat).config.at("length").get<int64_t>();
    } catch (const std::exception&) {
      throw UsageError("--length is required: the checkpoint does not say its training segment length");
    }
  }
  const std::vector<int32_t> tokens = read_token_file(split_path, o.max_tokens > 0 ? o.max_tokens : -1);
  const fwp_lm_eval_mode mode = o.mode == "segments" ? FWP_LM_EVAL_SEGMENTS
                                : o.mode == "carry"  ? FWP_LM_EVAL_CARRY
                                                     : FWP_LM_EVAL_SLIDING;
  double nll = 0.0;
  int64_t scored = 0;
  const auto started = std::chrono::steady_clock::now();
  check_input_status(fwp_lm_evaluate(loaded.model.get(), tokens.data(), static_cast<int64_t>(tokens.size()), mode, length,
                               &nll, &scored),
               "evaluating");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const double ppl = scored > 0 ? std::exp(nll / static_cast<double>(scored)) : std::nan("");
  if (o.json) {
    const json line = {{"command", "lm eval"}, {"split", o.split},   {"mode", o.mode},
                       {"length", length},     {"ppl", train::finite_or_null(ppl)},
                       {"nll", nll},           {"tokens", scored},  {"seconds", seconds},
                       {"checkpoint", o.checkpoint}};
    std::printf("%s\n", line.dump().c_str());
  } else {
    std::printf("%s %s (%s, window %lld): perplexity %.3f over %lld tokens in %s\n", o.checkpoint.c_str(),
                o.split.c_str(), o.mode.c_str(), static_cast<long long>(length), ppl,
                static_cast<long long>(scored), format_duration(seconds).c_str());
  }
  return kExitOk;
}

std::string decode(const fwp_tokenizer* tokenizer, const std::vector<int32_t>& ids) {
  std::string text(ids.size() * 8 + 16, '\0');
  size_t length = 0;
  fwp_status status = fwp_tokenizer_decode(tokenizer, ids.data(), static_cast<int64_t>(ids.size()), &text[0],
                                           text.size(), &length);
  if (status != FWP_OK && length + 1 > text.size()) {
    text.assign(length + 1, '\0');
    status = fwp_tokenizer_decode(tokenizer, ids.data(), static_cast<int64_t>(ids.size()), &text[0], text.size(),
                                  &length);
  }
  check_status(status, "decoding the generated tokens");
  text.resize(length);
  return text;
}

int run_generate(const LmOptions& o) {
  check_data_folder("--data", o.data);
  const LmDataFiles files{o.data};
  const TokenizerPtr tokenizer = load_tokenizer(files.tokenizer());
  LoadedModel loaded = load_model(o.checkpoint, o.run.threads, o.run.device);
  check_vocab(loaded, tokenizer.get(), o.data);

  std::vector<int32_t> prompt(o.prompt.size() + 2);
  int64_t count = 0;
  check_input_status(fwp_tokenizer_encode(tokenizer.get(), o.prompt.data(), o.prompt.size(), 0, prompt.data(),
                                    static_cast<int64_t>(prompt.size()), &count),
               "encoding the prompt");
  prompt.resize(static_cast<size_t>(count));
  int32_t eos = 0;
  check_status(fwp_tokenizer_eos_id(tokenizer.get(), &eos), "reading the <eos> id");
  if (prompt.empty()) prompt.push_back(eos);  // an empty prompt starts a new line

  fwp_state* raw_state = nullptr;
  check_status(fwp_state_create(loaded.model.get(), 1, &raw_state), "creating the generation state");
  const StatePtr state(raw_state);
  fwp_sampler_config sampler;
  fwp_sampler_config_init(&sampler);
  sampler.temperature = static_cast<float>(o.temperature);
  sampler.top_k = o.top_k;
  sampler.top_p = static_cast<float>(o.top_p);
  sampler.seed = o.run.seed;
  std::vector<int32_t> generated(static_cast<size_t>(o.new_tokens));
  int64_t produced = 0;
  const auto started = std::chrono::steady_clock::now();
  check_status(fwp_lm_generate(loaded.model.get(), state.get(), prompt.data(), static_cast<int64_t>(prompt.size()),
                               o.new_tokens, &sampler, o.stop_at_eos ? &eos : nullptr, o.stop_at_eos ? 1 : 0,
                               generated.data(), static_cast<int64_t>(generated.size()), &produced),
               "generating");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  generated.resize(static_cast<size_t>(produced));

  // One output line per <eos>: the tokenizer decodes the pieces between them.
  std::string text = o.prompt;
  std::vector<int32_t> piece;
  for (int32_t id : generated) {
    if (id == eos) {
      text += (text.empty() || text.back() == '\n' ? "" : " ") + decode(tokenizer.get(), piece) + "\n";
      piece.clear();
    } else {
      piece.push_back(id);
    }
  }
  if (!piece.empty()) text += (text.empty() || text.back() == '\n' ? "" : " ") + decode(tokenizer.get(), piece);
  if (o.json) {
    const json line = {{"command", "lm generate"}, {"prompt", o.prompt},      {"text", text},
                       {"tokens", produced},        {"seconds", seconds},
                       {"ms_per_token", produced > 0 ? 1000.0 * seconds / static_cast<double>(produced) : 0.0}};
    std::printf("%s\n", line.dump().c_str());
  } else {
    std::printf("%s\n", text.c_str());
  }
  return kExitOk;
}

void add_common(CLI::App* app, LmOptions& o) {
  app->add_option("--threads", o.run.threads, "CPU threads; 0 = all hardware threads")
      ->check(number_check<int>("an integer >= 0", [](int v) { return v >= 0; }));
  app->add_option("--device", o.run.device, "cpu, or cuda (needs a CUDA build and a GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app->add_flag("--json", o.json, "Print one JSON object on stdout (progress goes to stderr)");
  app->add_flag("--quiet", o.quiet, "No progress or summary lines");
}

}  // namespace

void add_lm_options(CLI::App& app) {
  LmOptions& o = options();
  o = LmOptions{};  // a new parser starts from the defaults (tests parse many times)
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();

  o.prepare = app.add_subcommand("prepare", "Build the vocabulary (or train a SentencePiece model) on --train and "
                                            "encode the text files into a data folder for `fwp lm train`");
  o.prepare->option_defaults()->always_capture_default();
  o.prepare->add_option("--train", o.train_text, "Training text (WikiText format: one paragraph per line)")
      ->required();
  o.prepare->add_option("--valid", o.valid_text, "Validation text")->required();
  o.prepare->add_option("--test", o.test_text, "Test text");
  o.prepare->add_option("--out", o.out, "The data folder to write (created if missing)")->required();
  o.prepare->add_option("--tokenizer", o.tokenizer,
                        "word (WikiText conventions: whitespace tokens, <eos> per line, <unk>), or a SentencePiece "
                        "model: bpe or unigram")
      ->check(CLI::IsMember({"word", "bpe", "unigram"}));
  o.prepare->add_option("--min-count", o.min_count, "word: words seen fewer times become <unk>")
      ->check(number_check<int64_t>("an integer >= 1", kPositive));
  o.prepare->add_option("--max-vocab", o.max_vocab, "word: keep at most N words (0 = all)")
      ->check(number_check<int64_t>("an integer >= 0", kNonNegative));
  o.prepare->add_option("--vocab-size", o.sp_vocab, "bpe/unigram: the SentencePiece vocabulary size")
      ->check(number_check<int64_t>("an integer >= 1", kPositive));
  o.prepare->add_flag("--json", o.json, "Print the counts as one JSON object");
  o.prepare->add_flag("--quiet", o.quiet, "Print nothing");

  CLI::App* t = o.train = app.add_subcommand(
      "train", "Train a language model on a prepared data folder with Adam (warm-up then cosine decay, clipping); "
               "evaluates on the validation split every --eval-every steps");
  t->option_defaults()->always_capture_default();
  LmRunConfig& r = o.run;
  auto given = [&](const char* key, CLI::Option* option) { o.given[key] = option; return option; };
  given("data", t->add_option("--data", o.data, "The data folder (fwp lm prepare)"));
  given("preset", t->add_option("--preset", o.preset,
                                "cpu-small (minutes on two CPU cores), paper-small or paper-medium (the paper's "
                                "16-layer models; segment length, batch and lr as the authors' scripts)")
                      ->check(CLI::IsMember({"cpu-small", "paper-small", "paper-medium"})));
  given("phi", t->add_option("--phi", r.phi, "Feature map: elu (Linear), favor (Performer), dpfp, or softmax "
                                              "(the Transformer baseline)")
                   ->check(CLI::IsMember({"elu", "favor", "dpfp", "softmax"})));
  given("rule", t->add_option("--rule", r.rule, "Fast-weight update rule: sum or delta")
                    ->check(CLI::IsMember({"sum", "delta"})));
  given("nu", t->add_option("--nu", r.dpfp_nu, "DPFP order nu")->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("m", t->add_option("--m", r.favor_m, "FAVOR+ random features per head")
                 ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("sum_norm", t->add_flag("--sum-norm,!--no-sum-norm", r.sum_norm,
                                "Sum-normalise phi (default: on for delta, off for sum)"));
  given("attn_norm", t->add_flag("--attn-norm,!--no-attn-norm", r.attn_norm,
                                 "Attention normalisation (default: on for sum, off for delta)"));
  given("layers", t->add_option("--layers", r.layers, "Layers (default: the preset's)")
                      ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("d_model", t->add_option("--d-model", r.d_model, "Model width")
                       ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("heads", t->add_option("--heads", r.heads, "Attention heads")
                     ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("d_head", t->add_option("--d-head", r.d_head, "Width per head")
                      ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("d_ff", t->add_option("--d-ff", r.d_ff, "Feed-forward width")
                    ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("dropout", t->add_option("--dropout", r.dropout, "Dropout on residual branches and the feed-forward")
                       ->check(CLI::Range(0.0, 0.95)));
  given("positions", t->add_option("--positions", r.positions,
                                   "sinusoidal, or none (default none with --carry, as the paper's carried-memory "
                                   "model)")
                         ->check(CLI::IsMember({"sinusoidal", "none"})));
  given("pre_norm", t->add_flag("--pre-norm", r.pre_norm, "LayerNorm before each block (the paper: after)"));
  given("tie", t->add_flag("--tie", r.tie, "Tie the input and output embeddings (adaptive: every cluster's table, "
                                          "and with --div-val > 1 the tail clusters' projections)"));
  given("cutoffs", t->add_option("--cutoffs", o.cutoffs,
                                 "Adaptive input + adaptive softmax cluster cutoffs over the frequency-sorted "
                                 "vocabulary, strictly increasing and below the vocabulary size, e.g. "
                                 "20000,40000,200000 (the paper's WikiText-103 models); empty (default): plain "
                                 "softmax"));
  given("div_val", t->add_option("--div-val", r.div_val,
                                 "Adaptive input/softmax: cluster k's embedding width is d_model / div_val^k, "
                                 "projected to d_model (default 1: no projections; > 1 also without --cutoffs)")
                       ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("batch", t->add_option("--batch", r.batch, "Parallel streams per step (default: the preset's)")
                     ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("length", t->add_option("--length", r.length, "Segment length (default: the preset's)")
                      ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("carry", t->add_flag("--carry", r.carry, "Carry the fast weights from one segment to the next (the paper's "
                                                 "carried-memory model)"));
  given("lr", t->add_option("--lr", r.lr, "Peak learning rate (default: the preset's)")
                  ->check(number_check<double>("a finite number > 0", [](double v) { return std::isfinite(v) && v > 0; })));
  given("warmup", t->add_option("--warmup", r.warmup, "Linear warm-up steps (default: the preset's)")
                      ->check(number_check<int64_t>("an integer >= 0", kNonNegative)));
  given("decay_steps", t->add_option("--decay-steps", r.decay_steps,
                                     "Step at which the cosine decay reaches 0 (default: --max-steps of the fresh "
                                     "run; kept on --resume)")
                           ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("clip", t->add_option("--clip", r.clip, "Clip the global gradient norm to X (0 = off; default 0.25)")
                    ->check(number_check<double>("a finite number >= 0", [](double v) { return std::isfinite(v) && v >= 0; })));
  given("seed", t->add_option("--seed", r.seed, "Seed of the initial weights, dropout and FAVOR+ draws"));
  given("eval_every", t->add_option("--eval-every", r.eval_every, "Evaluate every N steps")
                          ->check(number_check<int64_t>("an integer >= 1", kPositive)));
  given("eval_tokens", t->add_option("--eval-tokens", r.eval_tokens,
                                     "Validation tokens per evaluation (0 = the whole split)")
                           ->check(number_check<int64_t>("an integer >= 0", kNonNegative)));
  given("patience", t->add_option("--patience", r.patience, "Stop after N evaluations without improvement (0 = never)")
                        ->check(number_check<int64_t>("an integer >= 0", kNonNegative)));
  t->add_option("--max-steps", r.max_steps, "Training steps (the cosine decay reaches 0 at --decay-steps, by default here)")
      ->check(number_check<int64_t>("an integer >= 1", kPositive));
  t->add_option("--csv", o.csv, "Append one row per evaluation to FILE (model,step,eval_loss,best,seconds,perplexity,lr)");
  t->add_option("--plot", o.plot, "Draw the learning curves of every model in --csv to FILE.png");
  t->add_option("--checkpoint", o.checkpoint, "Save model, optimizer, data position and run state at every "
                                              "evaluation and on Ctrl-C");
  t->add_option("--resume", o.resume, "Continue the run saved in FILE exactly")->check(CLI::ExistingFile);
  t->add_option("--on-non-finite", o.on_non_finite,
                "A step with a NaN or infinite loss or gradient: stop the run (exit 1, naming the tensor) or skip it "
                "(no parameter changes) and go on")
      ->check(CLI::IsMember({train::kOnNonFiniteStop, train::kOnNonFiniteSkip}));
  t->add_option("--max-skips", o.max_skips, "With --on-non-finite skip: stop (exit 1) at this many skipped steps in a row")
      ->check(number_check<int64_t>("an integer >= 1", kPositive));
  train::add_dist_options(*t, o.dist, o.dist_timeout, "--batch must be a multiple of the number of processes");
  add_common(t, o);

  CLI::App* e = o.eval = app.add_subcommand("eval", "Perplexity of a checkpoint on a split of a data folder");
  e->option_defaults()->always_capture_default();
  e->add_option("--data", o.data, "The data folder (fwp lm prepare)")->required();
  e->add_option("--checkpoint", o.checkpoint, "A checkpoint of `fwp lm train`")->required();
  e->add_option("--split", o.split, "valid or test")->check(CLI::IsMember({"valid", "test"}));
  e->add_option("--mode", o.mode,
                "segments (independent segments), sliding (the authors' sliding window: each later window scores "
                "only its last token), or carry (every token once, the fast weights carried through the stream)")
      ->check(CLI::IsMember({"segments", "sliding", "carry"}));
  e->add_option("--length", o.length, "Window / segment length (default: the training segment length)")
      ->check(number_check<int64_t>("an integer >= 1", kPositive));
  e->add_option("--max-tokens", o.max_tokens, "Score only the first N tokens of the split (0 = all)")
      ->check(number_check<int64_t>("an integer >= 0", kNonNegative));
  add_common(e, o);

  CLI::App* g = o.generate = app.add_subcommand("generate", "Continue a prompt with a trained model");
  g->option_defaults()->always_capture_default();
  g->add_option("--data", o.data, "The data folder whose tokenizer the model was trained with")->required();
  g->add_option("--checkpoint", o.checkpoint, "A checkpoint of `fwp lm train`")->required();
  g->add_option("--prompt", o.prompt, "Text to continue (empty: start a new line)");
  g->add_option("--max-tokens", o.new_tokens, "Tokens to generate")
      ->check(number_check<int64_t>("an integer in [1, 1000000]", [](int64_t v) { return v >= 1 && v <= 1000000; }));
  g->add_option("--seed", o.run.seed, "Sampling seed");
  g->add_option("--temperature", o.temperature, "Sampling temperature (0 = greedy)")
      ->check(number_check<double>("a finite number >= 0", [](double v) { return std::isfinite(v) && v >= 0; }));
  g->add_option("--top-k", o.top_k, "Sample among the k most likely tokens (0 = all)")
      ->check(number_check<int64_t>("an integer >= 0", kNonNegative));
  g->add_option("--top-p", o.top_p, "Nucleus sampling: the smallest set with probability >= p (1 = all)")
      ->check(number_check<double>("a number in (0, 1]", [](double v) { return v > 0 && v <= 1; }));
  g->add_flag("--stop-at-eos", o.stop_at_eos, "Stop at the first end of line");
  add_common(g, o);
}

int run_lm() {
  LmOptions& o = options();
  if (o.prepare->parsed()) return run_prepare(o);
  if (o.train->parsed()) return run_train(o);
  if (o.eval->parsed()) return run_eval(o);
  if (o.generate->parsed()) return run_generate(o);
  throw UsageError("fwp lm needs a subcommand: prepare, train, eval or generate");
}

}  // namespace fwp_cli
