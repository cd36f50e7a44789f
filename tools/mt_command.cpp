// `fwp mt`: machine translation (paper section 6.2). Each step is a
// subcommand with its own options struct and run function below, dispatched
// by run_mt():
//   fwp mt prepare  a parallel corpus -> joint SentencePiece model + pair files in a data folder
//   fwp mt score    BLEU and chrF of a hypothesis file against reference files
// (train and translate are added here the same way.)
#include "cli_support.h"
#include "commands.h"

#include <fwp/fwp.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
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

/// Every subcommand of `fwp mt` (the program parses once).
struct MtOptions {
  CLI::App* prepare = nullptr;
  PrepareOptions prepare_options;
  CLI::App* score = nullptr;
  ScoreOptions score_options;
};

MtOptions& options() {
  static MtOptions instance;
  return instance;
}

/// Where `text` stops being UTF-8 (byte offset), or npos. The library checks
/// too; this lets the message name the file and line.
size_t invalid_utf8_at(const std::string& text) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = byte(i);
    size_t length = 1;
    unsigned char low = 0x80, high = 0xbf;  // range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3;
      low = c == 0xe0 ? 0xa0 : 0x80;   // overlong
      high = c == 0xed ? 0x9f : 0xbf;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4;
      low = c == 0xf0 ? 0x90 : 0x80;   // overlong
      high = c == 0xf4 ? 0x8f : 0xbf;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + 1 >= text.size() || byte(i + 1) < low || byte(i + 1) > high) return i;
    for (size_t k = 2; k < length; ++k) {
      if (i + k >= text.size() || (byte(i + k) & 0xc0) != 0x80) return i;
    }
    i += length;
  }
  return std::string::npos;
}

/// The lines of a UTF-8 text file, as Python reads text files: lines end at
/// "\n", "\r\n" or "\r"; a final line end adds no empty line. A missing file
/// or invalid UTF-8 is a usage error (exit code 2) naming the flag, file and line.
std::vector<std::string> read_lines(const std::string& flag, const std::string& path) {
  if (!file_exists(path)) throw UsageError(fmt::format("{} {}: no such file", flag, path));
  const std::string text = read_file(path);
  std::vector<std::string> lines;
  std::string line;
  bool open_line = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n' || c == '\r') {
      lines.push_back(line);
      line.clear();
      open_line = false;
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else {
      line.push_back(c);
      open_line = true;
    }
  }
  if (open_line) lines.push_back(line);
  for (size_t n = 0; n < lines.size(); ++n) {
    const size_t bad = invalid_utf8_at(lines[n]);
    if (bad != std::string::npos) {
      throw UsageError(fmt::format("{} {}: line {} is not valid UTF-8 (byte {} of the line)", flag, path, n + 1,
                                   bad + 1));
    }
  }
  return lines;
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

/// The files of a data folder of `fwp mt prepare`.
struct MtDataFiles {
  std::string folder;
  std::string tokenizer() const { return folder + "/tokenizer.fwptok"; }
  std::string pairs(const std::string& split) const { return folder + "/" + split + ".pairs"; }
  /// The untokenised text of a valid/test side, one line per pair of the pair file; `side` is "source" or
  /// "target" (the target text is the BLEU reference).
  std::string text(const std::string& split, const std::string& side) const {
    return folder + "/" + split + "." + side + ".txt";
  }
  std::string manifest() const { return folder + "/prepare.json"; }
};

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
  if (o.score->parsed()) return run_score(o.score_options);
  throw UsageError("fwp mt needs a subcommand: prepare or score");
}

}  // namespace fwp_cli
