// `fwp mt`: machine translation (paper section 6.2). Each step is a
// subcommand with its own options struct and run function below, dispatched
// by run_mt():
//   fwp mt score   BLEU and chrF of a hypothesis file against reference files
// (prepare, train and translate are added here the same way.)
#include "cli_support.h"
#include "commands.h"

#include <fwp/fwp.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
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

/// Every subcommand of `fwp mt` (the program parses once).
struct MtOptions {
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

}  // namespace

void add_mt_options(CLI::App& app) {
  MtOptions& o = options();
  o = MtOptions{};  // a new parser starts from the defaults (tests parse many times)
  app.require_subcommand(1);

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
  if (o.score->parsed()) return run_score(o.score_options);
  throw UsageError("fwp mt needs a subcommand: score");
}

}  // namespace fwp_cli
