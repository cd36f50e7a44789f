// `fwp mt`: machine translation (paper section 6.2). Each step is a
// subcommand with its own options struct and run function below, dispatched
// by run_mt():
//   fwp mt prepare  a parallel corpus -> joint SentencePiece model + pair files in a data folder
//   fwp mt train      the translation model on a data folder (the shared training driver)
//   fwp mt translate  source lines (stdin or a file) -> translations, by beam search or greedy
//   fwp mt score      BLEU and chrF of a hypothesis file against reference files
// The model, the training task and the Translator are in mt_task.h.
#include "cli_support.h"
#include "commands.h"
#include "mt_task.h"
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
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fwp_cli {
namespace {

using json = nlohmann::json;

/// The flags of `fwp mt score`.
struct ScoreOptions {
  std::string hyp;
  std::vector<std::string> refs;
  bool json = false;
};

/// The flags of `fwp mt prepare`.
struct PrepareOptions {
  std::string train_src, train_tgt, valid_src, valid_tgt, test_src, test_tgt;
  std::string corpus, src_lang, tgt_lang;
  std::string out;
  int64_t vocab_size = 8000;
  std::string model_type = "bpe";
  int64_t max_len = 256;
  bool json = false;
  bool quiet = false;
};

const train::CheckpointFormat kCheckpointFormat{"fwp-cli-mt", 1, "fwp mt train"};

/// The flags of `fwp mt train`.
struct TrainOptions {
  MtRunConfig run;
  std::string attn;  ///< --attn: all three kinds at once
  std::string csv, plot, checkpoint, resume;
  std::string on_non_finite = train::kOnNonFiniteStop;
  int64_t max_skips = 10;
  std::string dist = train::kDistNone;  ///< --dist (train/distributed.h)
  double dist_timeout = train::kDistTimeoutSeconds;  ///< --dist-timeout
  std::map<std::string, CLI::Option*> given;  ///< defining flags, to check against a resumed checkpoint
  bool json = false;
  bool quiet = false;
};

/// The flags of `fwp mt translate`.
struct TranslateOptions {
  std::string checkpoint, data, input = "-", output = "-";
  SearchSettings search;
  int threads = 0;
  std::string device = "cpu";
  bool quiet = false;
};

/// Every subcommand of `fwp mt` (the program parses once).
struct MtOptions {
  CLI::App* prepare = nullptr;
  PrepareOptions prepare_options;
  CLI::App* train = nullptr;
  TrainOptions train_options;
  CLI::App* translate = nullptr;
  TranslateOptions translate_options;
  CLI::App* score = nullptr;
  ScoreOptions score_options;
};

MtOptions& options() {
  static MtOptions instance;
  return instance;
}

int run_score(const ScoreOptions& o) {
  const std::vector<std::string> hyps = read_lines("--hyp", o.hyp);
  if (hyps.empty()) throw UsageError(fmt::format("--hyp {}: the file has no lines", o.hyp));
  std::vector<std::vector<std::string>> refs;
  for (const std::string& path : o.refs) {
    refs.push_back(read_lines("--ref", path));
    if (refs.back().size() != hyps.size()) {
      throw UsageError(fmt::format("--ref {} has {} lines but --hyp {} has {}: the files must be line aligned", path,
                                   refs.back().size(), o.hyp, hyps.size()));
    }
  }
  std::vector<const char*> hyp_ptrs;
  for (const auto& h : hyps) hyp_ptrs.push_back(h.c_str());
  std::vector<std::vector<const char*>> ref_rows(refs.size());
  std::vector<const char* const*> ref_ptrs;
  for (size_t r = 0; r < refs.size(); ++r) {
    for (const auto& line : refs[r]) ref_rows[r].push_back(line.c_str());
    ref_ptrs.push_back(ref_rows[r].data());
  }
  const auto n = static_cast<int64_t>(hyps.size());
  const auto num_refs = static_cast<int64_t>(refs.size());

  fwp_bleu_result bleu;
  fwp_bleu_result_init(&bleu);
  check_input_status(fwp_bleu(hyp_ptrs.data(), n, ref_ptrs.data(), num_refs, nullptr, &bleu), "computing BLEU");
  fwp_chrf_result chrf;
  fwp_chrf_result_init(&chrf);
  check_input_status(fwp_chrf(hyp_ptrs.data(), n, ref_ptrs.data(), num_refs, nullptr, &chrf), "computing chrF");

  // sacrebleu's signatures, with fwp's version in place of sacrebleu's (the definitions are sacrebleu 2.x's).
  const std::string bleu_signature =
      fmt::format("nrefs:{}|case:mixed|eff:no|tok:13a|smooth:exp|fwp:{}", num_refs, fwp_version_string());
  const std::string chrf_signature =
      fmt::format("nrefs:{}|case:mixed|eff:yes|nc:6|nw:0|space:no|fwp:{}", num_refs, fwp_version_string());
  if (o.json) {
    json out;
    out["bleu"] = bleu.score;
    out["chrf"] = chrf.score;
    out["sentences"] = n;
    out["num_refs"] = num_refs;
    out["bleu_signature"] = bleu_signature;
    out["chrf_signature"] = chrf_signature;
    out["bleu_details"] = {
        {"precisions", std::vector<double>(bleu.precisions, bleu.precisions + FWP_BLEU_MAX_NGRAM_ORDER)},
        {"counts", std::vector<int64_t>(bleu.counts, bleu.counts + FWP_BLEU_MAX_NGRAM_ORDER)},
        {"totals", std::vector<int64_t>(bleu.totals, bleu.totals + FWP_BLEU_MAX_NGRAM_ORDER)},
        {"bp", bleu.brevity_penalty},
        {"ratio", bleu.ratio},
        {"hyp_len", bleu.hyp_len},
        {"ref_len", bleu.ref_len}};
    std::printf("%s\n", out.dump().c_str());
    return kExitOk;
  }
  // The layout of sacrebleu's text output.
  std::printf("BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)\n", bleu.score,
              bleu.precisions[0], bleu.precisions[1], bleu.precisions[2], bleu.precisions[3], bleu.brevity_penalty,
              bleu.ratio, static_cast<long long>(bleu.hyp_len), static_cast<long long>(bleu.ref_len));
  std::printf("  signature: %s\n", bleu_signature.c_str());
  std::printf("chrF2 = %.2f\n", chrf.score);
  std::printf("  signature: %s\n", chrf_signature.c_str());
  return kExitOk;
}


// ---- prepare ----------------------------------------------------------------------

/// One split's two files and the flags that named them.
struct SplitFiles {
  std::string name;  // train, valid, test
  std::string source, target;
  std::string source_flag, target_flag;
};

bool is_folder(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// The six input files, from --corpus or the file flags; throws UsageError.
std::vector<SplitFiles> prepare_inputs(const PrepareOptions& o) {
  const bool any_file = !(o.train_src.empty() && o.train_tgt.empty() && o.valid_src.empty() && o.valid_tgt.empty() &&
                          o.test_src.empty() && o.test_tgt.empty());
  std::vector<SplitFiles> splits;
  if (!o.corpus.empty()) {
    if (any_file) {
      throw UsageError("--corpus names the files itself: give either --corpus or the six --train-src ... --test-tgt "
                       "files, not both");
    }
    if (o.src_lang.empty() || o.tgt_lang.empty()) {
      throw UsageError("--corpus needs --src-lang and --tgt-lang (the file suffixes, e.g. en and es)");
    }
    if (o.src_lang == o.tgt_lang) throw UsageError("--src-lang and --tgt-lang must differ");
    if (!is_folder(o.corpus)) throw UsageError(fmt::format("--corpus {}: not a folder", o.corpus));
    for (const char* split : {"train", "valid", "test"}) {
      const std::string base = o.corpus + "/" + split + ".";
      splits.push_back({split, base + o.src_lang, base + o.tgt_lang, "--corpus", "--corpus"});
    }
  } else {
    if (!o.src_lang.empty() || !o.tgt_lang.empty()) throw UsageError("--src-lang and --tgt-lang go with --corpus");
    splits = {{"train", o.train_src, o.train_tgt, "--train-src", "--train-tgt"},
              {"valid", o.valid_src, o.valid_tgt, "--valid-src", "--valid-tgt"},
              {"test", o.test_src, o.test_tgt, "--test-src", "--test-tgt"}};
    for (const SplitFiles& split : splits) {
      if (split.source.empty()) throw UsageError(fmt::format("{} is required (or --corpus DIR)", split.source_flag));
      if (split.target.empty()) throw UsageError(fmt::format("{} is required (or --corpus DIR)", split.target_flag));
    }
  }
  for (const SplitFiles& split : splits) {
    for (const auto& file : {std::make_pair(split.source_flag, split.source),
                             std::make_pair(split.target_flag, split.target)}) {
      if (!file_exists(file.second)) throw UsageError(fmt::format("{} {}: no such file", file.first, file.second));
    }
  }
  return splits;
}

/// The number of lines of a file as read_lines() splits them, read in blocks
/// (a training file may be large); throws RunError if it cannot be read.
int64_t count_lines(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw RunError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  std::vector<char> block(1 << 20);
  int64_t lines = 0;
  bool open_line = false, after_cr = false;
  for (size_t got; (got = std::fread(block.data(), 1, block.size(), file.get())) > 0;) {
    for (size_t i = 0; i < got; ++i) {
      const char c = block[i];
      if (c == '\n' && after_cr) {
        after_cr = false;  // the "\n" of "\r\n": the line was counted at the "\r"
        continue;
      }
      after_cr = c == '\r';
      if (c == '\n' || c == '\r') {
        ++lines;
        open_line = false;
      } else {
        open_line = true;
      }
    }
  }
  if (std::ferror(file.get())) throw RunError(fmt::format("cannot read {}", path));
  return lines + (open_line ? 1 : 0);
}

/// Lines with one "\n" after each: the normalised text of an evaluation side.
std::string joined_lines(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  return text;
}

int run_prepare(const PrepareOptions& o) {
  const std::vector<SplitFiles> splits = prepare_inputs(o);
  // Valid and test are read here first (aligned, UTF-8), since every one of
  // their pairs is kept and their text is copied: BLEU is on all of them.
  std::vector<std::vector<std::string>> eval_sources, eval_targets;
  for (size_t i = 1; i < splits.size(); ++i) {
    const SplitFiles& split = splits[i];
    eval_sources.push_back(read_lines(split.source_flag, split.source));
    eval_targets.push_back(read_lines(split.target_flag, split.target));
    const auto& sources = eval_sources.back();
    const auto& targets = eval_targets.back();
    if (sources.size() != targets.size()) {
      throw UsageError(fmt::format("{}: {} has {} lines but {} has {}: the files must be line aligned", split.name,
                                   split.source, sources.size(), split.target, targets.size()));
    }
    if (sources.empty()) throw UsageError(fmt::format("{}: {} and {} have no lines", split.name, split.source,
                                                      split.target));
    // A blank line has no tokens: its pair could be neither kept nor left out. Said here, before any work.
    for (size_t n = 0; n < sources.size(); ++n) {
      const auto blank = [](const std::string& line) { return line.find_first_not_of(" \t\f\v") == std::string::npos; };
      if (blank(sources[n]) || blank(targets[n])) {
        throw UsageError(fmt::format("{}: line {} of {} is empty; every {} pair is kept (BLEU is on all of them), so "
                                     "remove the pair from both files",
                                     split.name, n + 1, blank(sources[n]) ? split.source : split.target, split.name));
      }
    }
  }
  // The training files too, before the (slow) SentencePiece training.
  const int64_t train_source_lines = count_lines(splits[0].source);
  const int64_t train_target_lines = count_lines(splits[0].target);
  if (train_source_lines != train_target_lines) {
    throw UsageError(fmt::format("train: {} has {} lines but {} has {}: the files must be line aligned",
                                 splits[0].source, train_source_lines, splits[0].target, train_target_lines));
  }
  if (train_source_lines == 0) {
    throw UsageError(fmt::format("train: {} and {} have no lines", splits[0].source, splits[0].target));
  }
  if (file_exists(o.out) && !is_folder(o.out)) throw UsageError(fmt::format("--out {}: not a folder", o.out));
  if (!is_folder(o.out) && ::mkdir(o.out.c_str(), 0777) != 0) {
    throw UsageError(fmt::format("--out {}: cannot create the folder ({})", o.out, std::strerror(errno)));
  }
  const MtDataFiles files{o.out};
  check_output_path("--out", files.tokenizer());

  // One SentencePiece model on the training text of both languages (the shared vocabulary), with <pad> and <bos>.
  fwp_sentencepiece_config config;
  fwp_sentencepiece_config_init(&config);
  config.model_type = o.model_type == "bpe" ? FWP_SENTENCEPIECE_BPE : FWP_SENTENCEPIECE_UNIGRAM;
  config.vocab_size = o.vocab_size;
  config.pad_bos = 1;
  config.num_threads = 1;  // the model depends on the thread count: one, so a folder is the same on every machine
  const char* train_paths[] = {splits[0].source.c_str(), splits[0].target.c_str()};
  fwp_tokenizer* raw = nullptr;
  check_input_status(
      fwp_tokenizer_train_sentencepiece(train_paths, 2, &config, &raw),
      fmt::format("training the SentencePiece model on {} and {}", splits[0].source, splits[0].target).c_str());
  const std::unique_ptr<fwp_tokenizer, decltype(&fwp_tokenizer_destroy)> tokenizer(raw, &fwp_tokenizer_destroy);
  check_status(fwp_tokenizer_save(tokenizer.get(), files.tokenizer().c_str()), "saving the tokenizer");

  int64_t vocab_size = 0;
  int32_t pad = 0, bos = 0, eos = 0, unk = 0;
  check_status(fwp_pair_special_ids(tokenizer.get(), &vocab_size, &pad, &bos, &eos, &unk), "reading special ids");
  json report = {{"command", "mt prepare"},
                 {"model_type", o.model_type},
                 {"max_len", o.max_len},
                 {"vocab_size", vocab_size},
                 {"special_ids", {{"pad", pad}, {"bos", bos}, {"eos", eos}, {"unk", unk}}}};
  int64_t skipped = 0, tokens = 0;
  for (size_t i = 0; i < splits.size(); ++i) {
    const SplitFiles& split = splits[i];
    fwp_pair_encode_config encode;
    fwp_pair_encode_config_init(&encode);
    if (i == 0) {
      // Training pairs with a side over --max-len or empty are left out and counted.
      encode.max_source_tokens = o.max_len;
      encode.max_target_tokens = o.max_len;
      encode.too_long = FWP_PAIR_SKIP;
      encode.empty_lines = FWP_PAIR_SKIP;
    } else {
      // Valid and test keep every pair: no length limit (decoding takes any length); an empty side is an error.
      encode.empty_lines = FWP_PAIR_ERROR;
    }
    fwp_pair_info info;
    std::memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    check_input_status(fwp_pair_file_encode(tokenizer.get(), split.source.c_str(), split.target.c_str(),
                                            files.pairs(split.name).c_str(), &encode, &info),
                       fmt::format("encoding the {} pairs of {} and {}", split.name, split.source, split.target)
                           .c_str());
    report[split.name] = {{"pairs", info.num_pairs},
                          {"lines", info.lines},
                          {"skipped_empty", info.skipped_empty},
                          {"skipped_too_long", info.skipped_too_long},
                          {"source_tokens", info.source_tokens},
                          {"target_tokens", info.target_tokens},
                          {"longest_source", info.longest_source},
                          {"longest_target", info.longest_target},
                          {"source", split.source},
                          {"target", split.target}};
    skipped += info.skipped_empty + info.skipped_too_long;
    tokens += info.source_tokens + info.target_tokens;
    if (i > 0) {
      // Nothing was skipped, so these lines are the pair file's pairs in order.
      write_file_atomically(files.text(split.name, "source"), joined_lines(eval_sources[i - 1]));
      write_file_atomically(files.text(split.name, "target"), joined_lines(eval_targets[i - 1]));
    }
  }
  report["skipped"] = skipped;
  report["tokens"] = tokens;
  write_file_atomically(files.manifest(), report.dump(2) + "\n");
  report["out"] = o.out;  // printed, not stored: the folder's files do not depend on where it is
  if (o.json) {
    std::printf("%s\n", report.dump().c_str());
  } else if (!o.quiet) {
    std::printf("fwp mt prepare: %s vocabulary of %lld; pairs: train %lld (%lld skipped), valid %lld, test %lld; "
                "%lld tokens -> %s\n",
                o.model_type.c_str(), static_cast<long long>(vocab_size),
                static_cast<long long>(report["train"]["pairs"].get<int64_t>()), static_cast<long long>(skipped),
                static_cast<long long>(report["valid"]["pairs"].get<int64_t>()),
                static_cast<long long>(report["test"]["pairs"].get<int64_t>()), static_cast<long long>(tokens),
                o.out.c_str());
  }
  return kExitOk;
}


// ---- train ------------------------------------------------------------------------

bool is_given(const TrainOptions& o, const char* name) { return o.given.at(name)->count() > 0; }

MtRunConfig fresh_run_config(const TrainOptions& o) {
  MtRunConfig cfg = o.run;
  const MtRunConfig flags = o.run;  // the values the flags wrote (defaults where not given)
  apply_mt_training_preset(cfg.preset, &cfg);
  // Flags given on the command line win over the preset.
  if (is_given(o, "max_tokens")) cfg.max_tokens = flags.max_tokens;
  if (is_given(o, "lr")) cfg.lr = flags.lr;
  if (is_given(o, "warmup")) cfg.warmup = flags.warmup;
  if (is_given(o, "dropout")) cfg.dropout = flags.dropout;
  if (!o.attn.empty()) {
    for (const char* kind : {"encoder_attn", "decoder_attn", "cross_attn"}) {
      if (is_given(o, kind)) {
        throw UsageError(fmt::format("--attn sets all three attentions: give it or --{}, not both",
                                     std::string(kind).replace(std::string(kind).find('_'), 1, "-")));
      }
    }
    cfg.encoder_attn = cfg.decoder_attn = cfg.cross_attn = o.attn;
  }
  cfg.data = o.run.data;
  const MtDataFiles files{cfg.data};
  fwp_tokenizer* tokenizer = nullptr;
  check_input_status(fwp_tokenizer_load(files.tokenizer().c_str(), &tokenizer),
                     fmt::format("loading {}", files.tokenizer()).c_str());
  const TokenizerPtr owned(tokenizer);
  check_status(fwp_pair_special_ids(tokenizer, &cfg.vocab, nullptr, nullptr, nullptr, nullptr),
               "reading the vocabulary size");
  cfg.tokenizer = tokenizer_fingerprint("--data", files.tokenizer());
  resolve_mt_model_preset(&cfg);
  return cfg;
}

std::pair<MtRunConfig, train::SavedRun> resumed_run_config(const TrainOptions& o) {
  const train::SavedRun saved = train::read_saved_run(o.resume, kCheckpointFormat);
  MtRunConfig stored;
  try {
    stored = mt_config_from_json(saved.config);
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
  if (!o.attn.empty()) throw UsageError(fmt::format("--attn cannot change on --resume (the run keeps {}'s)", o.resume));
  if (!o.run.data.empty()) stored.data = o.run.data;  // the same files, moved: the data source checks them
  stored.max_steps = o.run.max_steps;
  stored.threads = o.run.threads;
  stored.device = o.run.device;
  return {stored, saved};
}

std::string resume_command(const TrainOptions& o, const MtRunConfig& cfg, const std::string& checkpoint) {
  std::string command = fmt::format("{} mt train --resume {} --max-steps {}", shell_word(program_name()),
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

void check_data_folder(const std::string& folder) {
  const MtDataFiles files{folder};
  if (!is_folder(folder)) throw UsageError(fmt::format("--data {}: not a folder (make one with `fwp mt prepare`)", folder));
  for (const std::string& path : {files.tokenizer(), files.pairs("train"), files.pairs("valid"),
                                  files.text("valid", "target")}) {
    if (!file_exists(path)) {
      throw UsageError(fmt::format("--data {}: {} is missing (make the folder with `fwp mt prepare`)", folder, path));
    }
  }
}

int run_train_in_group(const TrainOptions& o, train::Distributed& dist);

int run_train(const TrainOptions& o) {
  train::Distributed dist(o.dist, o.dist_timeout);
  return dist.guard([&] { return run_train_in_group(o, dist); });
}

int run_train_in_group(const TrainOptions& o, train::Distributed& dist) {
  const bool resuming = !o.resume.empty();
  MtRunConfig cfg;
  train::SavedRun saved;
  if (resuming) {
    auto stored = resumed_run_config(o);
    cfg = stored.first;
    saved = stored.second;
  } else {
    if (o.run.data.empty()) throw UsageError("--data is required (a folder made by `fwp mt prepare`)");
    check_data_folder(o.run.data);
    cfg = fresh_run_config(o);
  }
  check_data_folder(cfg.data);
  if (!o.csv.empty()) check_output_path("--csv", o.csv);
  if (!o.plot.empty()) {
    check_output_path("--plot", o.plot);
    if (o.csv.empty()) throw UsageError("--plot draws the evaluation log: give --csv FILE too");
  }
  if (!o.checkpoint.empty()) check_output_path("--checkpoint", o.checkpoint);
  if (resuming && o.checkpoint.empty()) check_output_path("--resume", o.resume);
  const std::string gnuplot = o.plot.empty() ? std::string() : train::find_gnuplot("--plot");

  MtTask task(cfg, dist);
  // With --dist only rank 0 prints and writes; the others train silently.
  const bool root = dist.is_root();
  train::Progress progress(!o.quiet && root, o.json ? stderr : stdout);
  train::EvalLog eval_log;
  const std::vector<std::string> id_columns = {"model"};
  const train::RunId run_id = {mt_model_label(cfg)};
  const std::vector<std::string> metrics = {"ppl", "bleu", "chrf", "lr"};
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
    progress.message(fmt::format("--dist {}: {} process{}, each training on its part of every batch of <= {} tokens",
                                 dist.engine(), dist.world_size(), dist.world_size() == 1 ? "" : "es", cfg.max_tokens));
  }
  if (resuming) {
    start = saved.state;
    if (outputs.checkpoint.empty()) outputs.checkpoint = o.resume;
    progress.message(fmt::format("resuming {} at step {} from {}", task.label(), start.step, o.resume));
  } else {
    progress.message(fmt::format("{}: {} parameters, {} + {} layers, d_model {}, {} heads of {}, d_ff {}, vocab {}, "
                                 "batches of <= {} tokens",
                                 task.label(), task.num_parameters(), cfg.encoder_layers, cfg.decoder_layers,
                                 cfg.d_model, cfg.heads, cfg.d_head, cfg.d_ff, cfg.vocab, cfg.max_tokens));
  }

  train::TrainingPlan plan = mt_training_plan(cfg);
  plan.skip_non_finite = o.on_non_finite == train::kOnNonFiniteSkip;
  plan.max_consecutive_skips = o.max_skips;
  train::RunResult result = train::run_training(task, plan, start, outputs);
  result.resumed = resuming;
  dist.leave();  // while the task's context lives; nothing below communicates
  progress.message(train::summary_line(task, plan, result));
  if (!o.plot.empty() && result.state.evaluations > 0 && root) {
    train::render_eval_curves(gnuplot, o.plot, o.csv,
                              {"bleu", "Translation: validation BLEU (greedy)", "valid BLEU", false});
  }
  if (o.json && root) {
    json line = train::result_json(task, result);
    line["command"] = "mt train";
    line["model"] = mt_model_label(cfg);
    line["parameters"] = task.num_parameters();
    line["valid_ppl"] = train::finite_or_null(std::exp(result.state.last_eval));
    const double seconds = result.state.seconds;
    line["train_tokens"] = task.tokens_seen();
    line["tokens_per_second"] = seconds > 0 ? static_cast<double>(task.tokens_seen()) / seconds : 0.0;
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

// ---- translate --------------------------------------------------------------------

int run_translate(const TranslateOptions& o) {
  if (!file_exists(o.checkpoint)) throw UsageError(fmt::format("--checkpoint {}: no such file", o.checkpoint));
  const MtDataFiles files{o.data};
  if (!file_exists(files.tokenizer())) {
    throw UsageError(fmt::format("--data {}: {} is missing (the folder `fwp mt prepare` made for the model)", o.data,
                                 files.tokenizer()));
  }
  if (o.output != "-") check_output_path("--output", o.output);
  // Read the input first: a bad line is reported before any model is loaded.
  std::vector<std::string> lines;
  if (o.input == "-") {
    const std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    lines = split_lines(text, "standard input");
  } else {
    lines = read_lines("--input", o.input);
  }
  const ContextPtr context = create_context(o.device, o.threads);
  fwp_model* model = nullptr;
  check_input_status(fwp_model_load(context.get(), o.checkpoint.c_str(), &model),
                     fmt::format("loading {}", o.checkpoint).c_str());
  const ModelPtr owned_model(model);
  fwp_model_kind kind = FWP_MODEL_RETRIEVAL;
  check_status(fwp_model_get_kind(model, &kind), "reading the model kind");
  if (kind != FWP_MODEL_SEQ2SEQ) throw UsageError(fmt::format("--checkpoint {} holds no translation model", o.checkpoint));
  fwp_tokenizer* tokenizer = nullptr;
  check_input_status(fwp_tokenizer_load(files.tokenizer().c_str(), &tokenizer),
                     fmt::format("loading {}", files.tokenizer()).c_str());
  const TokenizerPtr owned_tokenizer(tokenizer);
  const Translator translator(model, tokenizer, o.search);  // checks the vocabulary and special ids
  // A checkpoint of `fwp mt train` names its tokenizer: one of the same vocabulary made from other text
  // would pass the Translator's checks and give nonsense. (A model saved otherwise has no such record.)
  std::string trained_with;
  try {
    trained_with = mt_config_from_json(train::read_saved_run(o.checkpoint, kCheckpointFormat).config).tokenizer;
  } catch (const std::exception&) {
    // Not a checkpoint of `fwp mt train` (or of an earlier one): nothing to compare.
  }
  if (!trained_with.empty() && trained_with != tokenizer_fingerprint("--data", files.tokenizer())) {
    throw UsageError(fmt::format("--data {}: {} is not the tokenizer the model of {} was trained with", o.data,
                                 files.tokenizer(), o.checkpoint));
  }
  std::vector<std::vector<int32_t>> sources;
  for (size_t i = 0; i < lines.size(); ++i) sources.push_back(translator.encode(lines[i], static_cast<int64_t>(i) + 1));
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> hyps = translator.translate(sources);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string text;
  for (const std::string& h : hyps) text += h + "\n";
  if (o.output == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  } else {
    write_file_atomically(o.output, text);
  }
  if (!o.quiet) {
    std::fprintf(stderr, "translated %zu sentences in %.1fs (%.1f sentences/s, beam %lld)\n", hyps.size(), seconds,
                 seconds > 0 ? static_cast<double>(hyps.size()) / seconds : 0.0,
                 static_cast<long long>(o.search.beam));
  }
  return kExitOk;
}

}  // namespace

void add_mt_options(CLI::App& app) {
  MtOptions& o = options();
  o = MtOptions{};  // a new parser starts from the defaults (tests parse many times)
  app.require_subcommand(1);

  o.prepare = app.add_subcommand(
      "prepare", "Train one SentencePiece model (with <pad> and <bos>) on the training text of both languages and "
                 "encode the train, valid and test pairs into a data folder: tokenizer.fwptok, "
                 "{train,valid,test}.pairs, {valid,test}.{source,target}.txt (the untokenised text, one line per "
                 "pair; target = the BLEU references) and prepare.json. Training pairs with a side over --max-len "
                 "tokens or empty are skipped and counted; valid and test pairs are all kept (no length limit; an "
                 "empty line is an error), so BLEU is on every test sentence. The same inputs give byte-identical "
                 "files.");
  PrepareOptions& p = o.prepare_options;
  o.prepare->option_defaults()->always_capture_default();
  o.prepare->add_option("--train-src", p.train_src, "Training source text, one sentence per line");
  o.prepare->add_option("--train-tgt", p.train_tgt, "Training target text, line aligned with --train-src");
  o.prepare->add_option("--valid-src", p.valid_src, "Validation source text");
  o.prepare->add_option("--valid-tgt", p.valid_tgt, "Validation target text");
  o.prepare->add_option("--test-src", p.test_src, "Test source text");
  o.prepare->add_option("--test-tgt", p.test_tgt, "Test target text");
  o.prepare->add_option("--corpus", p.corpus,
                        "Instead of the six files: a folder with {train,valid,test}.SRC and .TGT (e.g. the Bible "
                        "corpus of scripts/make-bible-corpus.py)");
  o.prepare->add_option("--src-lang", p.src_lang, "With --corpus: the source file suffix (e.g. en)");
  o.prepare->add_option("--tgt-lang", p.tgt_lang, "With --corpus: the target file suffix (e.g. es)");
  o.prepare->add_option("--out", p.out, "The data folder to write (created if missing)")->required();
  o.prepare->add_option("--vocab-size", p.vocab_size,
                        "Size of the shared SentencePiece vocabulary (<eos>, <unk>, <pad>, <bos> included)")
      ->check(CLI::Range(int64_t{5}, int64_t{1} << 24));
  o.prepare->add_option("--model-type", p.model_type, "SentencePiece model: bpe (as the paper) or unigram")
      ->check(CLI::IsMember({"bpe", "unigram"}));
  o.prepare->add_option("--max-len", p.max_len,
                        "Longest training sentence in tokens (each side, without eos); longer pairs are skipped")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  o.prepare->add_flag("--json", p.json,
                      "Print one JSON object: vocab_size, special_ids, per split (train, valid, test) pairs, lines, "
                      "skipped_empty, skipped_too_long, source_tokens, target_tokens, longest_source, "
                      "longest_target; skipped and tokens over all splits");
  o.prepare->add_flag("--quiet", p.quiet, "Print nothing");

  o.train = app.add_subcommand(
      "train", "Train the translation model on a data folder of `fwp mt prepare`: a preset (cpu-small, base, "
               "paper-big) with any size overridden, the attention of each kind chosen (--attn for all three, as "
               "the paper), Adam (0.9, 0.98) with fairseq's inverse-square-root schedule, batches of at most "
               "--max-tokens tokens. Every --eval-every steps: valid loss and perplexity over all valid pairs, "
               "greedy BLEU and chrF of the first --bleu-sentences valid sentences; checkpoints, exact --resume, "
               "Ctrl-C saves.");
  TrainOptions& t = o.train_options;
  MtRunConfig& r = t.run;
  CLI::App* tr = o.train;
  tr->option_defaults()->always_capture_default();
  auto given = [&](const char* name, CLI::Option* option) { t.given[name] = option; };
  const auto kinds = CLI::IsMember({"softmax", "elu", "favor", "dpfp"});
  given("data", tr->add_option("--data", r.data, "The data folder (fwp mt prepare)"));
  given("preset", tr->add_option("--preset", r.preset, "Model and training preset: cpu-small, base or paper-big")
                      ->check(CLI::IsMember({"cpu-small", "base", "paper-big"})));
  tr->add_option("--attn", t.attn, "Every attention (encoder, decoder, cross): softmax (Transformer), elu (Linear), "
                                   "favor (Performer) or dpfp")
      ->check(kinds);
  given("encoder_attn", tr->add_option("--encoder-attn", r.encoder_attn, "Encoder self-attention kind")->check(kinds));
  given("decoder_attn", tr->add_option("--decoder-attn", r.decoder_attn, "Decoder self-attention kind")->check(kinds));
  given("cross_attn", tr->add_option("--cross-attn", r.cross_attn, "Decoder-encoder attention kind")->check(kinds));
  given("decoder_rule", tr->add_option("--decoder-rule", r.decoder_rule,
                                       "Fast-weight rule of the decoder self-attention: sum (the paper) or delta")
                            ->check(CLI::IsMember({"sum", "delta"})));
  given("nu", tr->add_option("--nu", r.dpfp_nu, "DPFP order nu")->check(CLI::Range(int64_t{1}, int64_t{64})));
  given("m", tr->add_option("--m", r.favor_m, "FAVOR+ random features per head")
                 ->check(CLI::Range(int64_t{1}, int64_t{1} << 16)));
  given("encoder_layers", tr->add_option("--encoder-layers", r.encoder_layers, "Encoder layers (default: the preset's)")
                              ->check(CLI::Range(int64_t{1}, int64_t{1024})));
  given("decoder_layers", tr->add_option("--decoder-layers", r.decoder_layers, "Decoder layers (default: the preset's)")
                              ->check(CLI::Range(int64_t{1}, int64_t{1024})));
  given("d_model", tr->add_option("--d-model", r.d_model, "Model width")->check(CLI::Range(int64_t{1}, int64_t{65536})));
  given("heads", tr->add_option("--heads", r.heads, "Attention heads")->check(CLI::Range(int64_t{1}, int64_t{4096})));
  given("d_head", tr->add_option("--d-head", r.d_head, "Width per head")->check(CLI::Range(int64_t{1}, int64_t{4096})));
  given("d_ff", tr->add_option("--d-ff", r.d_ff, "Feed-forward width")->check(CLI::Range(int64_t{1}, int64_t{65536})));
  given("dropout", tr->add_option("--dropout", r.dropout, "Dropout (default: the preset's)")
                       ->check(CLI::Range(0.0, 0.999)));
  given("label_smoothing", tr->add_option("--label-smoothing", r.label_smoothing, "Label smoothing epsilon")
                               ->check(CLI::Range(0.0, 0.999)));
  given("pre_norm", tr->add_flag("--pre-norm", r.pre_norm, "LayerNorm before each sublayer (the paper: after)"));
  given("tie", tr->add_flag("--tie,!--no-tie", r.tie, "One embedding table for source, target and output"));
  given("max_tokens", tr->add_option("--max-tokens", r.max_tokens, "Token budget of a batch (default: the preset's)")
                          ->check(CLI::Range(int64_t{1}, int64_t{1} << 30)));
  given("lr", tr->add_option("--lr", r.lr, "Peak learning rate (default: the preset's)")->check(CLI::PositiveNumber));
  given("warmup", tr->add_option("--warmup", r.warmup, "Warm-up steps of the inverse-square-root schedule")
                      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40)));
  given("clip", tr->add_option("--clip", r.clip, "Clip the global gradient norm to X (0 = off)")
                    ->check(CLI::Range(0.0, 1e30)));
  given("seed", tr->add_option("--seed", r.seed, "Seed of the initial weights, dropout, FAVOR+ draws and batch order"));
  given("eval_every", tr->add_option("--eval-every", r.eval_every, "Evaluate every N steps")
                          ->check(CLI::Range(int64_t{1}, int64_t{1} << 40)));
  given("bleu_sentences", tr->add_option("--bleu-sentences", r.bleu_sentences,
                                         "Valid sentences translated (greedy) for BLEU at each evaluation; 0 = all")
                              ->check(CLI::Range(int64_t{0}, int64_t{1} << 40)));
  given("patience", tr->add_option("--patience", r.patience, "Stop after N evaluations without a lower valid loss "
                                                             "(0 = never)")
                        ->check(CLI::Range(int64_t{0}, int64_t{1} << 40)));
  tr->add_option("--max-steps", r.max_steps, "Training steps")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  tr->add_option("--threads", r.threads, "CPU threads; 0 = all hardware threads")->check(CLI::Range(0, 4096));
  tr->add_option("--device", r.device, "cpu, or cuda (needs a CUDA build and a GPU)");
  tr->add_option("--csv", t.csv, "Append one row per evaluation to FILE (model,step,eval_loss,best,seconds,ppl,bleu,"
                                 "chrf,lr)");
  tr->add_option("--plot", t.plot, "Draw the valid BLEU of every model in --csv to FILE.png");
  tr->add_option("--checkpoint", t.checkpoint, "Save model, optimizer and data position at every evaluation and on "
                                               "Ctrl-C (atomically)");
  tr->add_option("--resume", t.resume, "Continue the run saved in FILE exactly")->check(CLI::ExistingFile);
  tr->add_option("--on-non-finite", t.on_non_finite,
                 "stop: end the run at a NaN/inf loss or gradient (exit 1); skip: leave that step's update out")
      ->check(CLI::IsMember({train::kOnNonFiniteStop, train::kOnNonFiniteSkip}));
  tr->add_option("--max-skips", t.max_skips, "With --on-non-finite skip: stop at this many skipped steps in a row")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  train::add_dist_options(*tr, t.dist, t.dist_timeout, "--max-tokens budgets the global batch, which the processes split");
  tr->add_flag("--json", t.json, "Print one JSON object on stdout (progress goes to stderr)");
  tr->add_flag("--quiet", t.quiet, "No progress or summary lines");

  o.translate = app.add_subcommand(
      "translate", "Translate source lines (standard input, or --input FILE) with a checkpoint of `fwp mt train`, one "
                   "output line per input line, by beam search (--beam N) or greedy (--beam 1); the O(1)-per-token "
                   "decoding of fast-weight layers, a key/value cache for softmax ones");
  TranslateOptions& x = o.translate_options;
  CLI::App* tx = o.translate;
  tx->option_defaults()->always_capture_default();
  tx->add_option("--checkpoint", x.checkpoint, "A checkpoint of `fwp mt train`")->required();
  tx->add_option("--data", x.data, "The data folder the model was trained on (its tokenizer)")->required();
  tx->add_option("--input", x.input, "Source text, one sentence per line; - = standard input");
  tx->add_option("--output", x.output, "Where the translations go (written atomically); - = standard output");
  tx->add_option("--beam", x.search.beam, "Beam size; 1 = greedy")->check(CLI::Range(int64_t{1}, int64_t{1024}));
  tx->add_option("--lenpen", x.search.length_penalty, "Length penalty: finished hypotheses score log p / length^X")
      ->check(CLI::Range(-100.0, 100.0));
  tx->add_option("--max-len-a", x.search.max_len_a, "Output length limit a * source tokens + b: a")
      ->check(CLI::Range(0.0, 1000.0));
  tx->add_option("--max-len-b", x.search.max_len_b, "Output length limit: b")->check(CLI::Range(0.0, 100000.0));
  tx->add_option("--batch-size", x.search.batch_sentences, "Sentences translated together")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  tx->add_option("--threads", x.threads, "CPU threads; 0 = all hardware threads")->check(CLI::Range(0, 4096));
  tx->add_option("--device", x.device, "cpu, or cuda (needs a CUDA build and a GPU)");
  tx->add_flag("--quiet", x.quiet, "No timing line on standard error");

  o.score = app.add_subcommand("score", "BLEU (sacreBLEU's defaults: 13a tokens, exp smoothing, case-sensitive) and "
                                        "chrF (character 6-grams, beta 2) of a hypothesis file against one or more "
                                        "line-aligned reference files (UTF-8, one sentence per line)");
  ScoreOptions& s = o.score_options;
  o.score->add_option("--hyp", s.hyp, "The system's translations, one per line")->required();
  o.score->add_option("--ref", s.refs, "A reference file with as many lines as --hyp; repeat for several references")
      ->required()
      ->take_all()
      ->allow_extra_args(false);
  o.score->add_flag("--json", s.json,
                    "Print one JSON object: bleu, chrf, sentences, num_refs, the signatures and bleu_details "
                    "(precisions, counts, totals, bp, ratio, hyp_len, ref_len)");
}

int run_mt() {
  MtOptions& o = options();
  if (o.prepare->parsed()) return run_prepare(o.prepare_options);
  if (o.train->parsed()) return run_train(o.train_options);
  if (o.translate->parsed()) return run_translate(o.translate_options);
  if (o.score->parsed()) return run_score(o.score_options);
  throw UsageError("fwp mt needs a subcommand: prepare, train, translate or score");
}

}  // namespace fwp_cli
