// C API of the translation metrics (fwp/metrics.h): argument checks, then text/mt_metrics.h.
#include <string>
#include <string_view>
#include <vector>

#include "api/checks.h"
#include "api/guard.h"
#include "core/error.h"
#include "fwp/fwp.h"
#include "text/mt_metrics.h"

namespace {

using fwp::Error;
using fwp::api::check_not_null;

constexpr int64_t kMaxSentences = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxReferenceStreams = 1024;

struct Corpus {
  std::vector<std::string_view> hypotheses;
  std::vector<std::vector<std::string_view>> references;
};

// The texts as views, after checking the counts and every pointer (UTF-8 is checked by the metric).
Corpus read_corpus(const char* const* hypotheses, int64_t num_sentences, const char* const* const* references,
                   int64_t num_refs) {
  check_not_null(hypotheses, "hypotheses");
  check_not_null(references, "references");
  fwp::require(num_sentences >= 1 && num_sentences <= kMaxSentences, FWP_ERR_INVALID_ARGUMENT,
               "num_sentences must be in [1, 2^31) (got " + std::to_string(num_sentences) + ")");
  fwp::require(num_refs >= 1 && num_refs <= kMaxReferenceStreams, FWP_ERR_INVALID_ARGUMENT,
               "num_refs must be in [1, 1024] (got " + std::to_string(num_refs) + ")");
  Corpus corpus;
  corpus.hypotheses.reserve(static_cast<size_t>(num_sentences));
  for (int64_t i = 0; i < num_sentences; ++i) {
    check_not_null(hypotheses[i], ("hypotheses[" + std::to_string(i) + "]").c_str());
    corpus.hypotheses.emplace_back(hypotheses[i]);
  }
  corpus.references.resize(static_cast<size_t>(num_refs));
  for (int64_t r = 0; r < num_refs; ++r) {
    const std::string stream = "references[" + std::to_string(r) + "]";
    check_not_null(references[r], stream.c_str());
    corpus.references[r].reserve(static_cast<size_t>(num_sentences));
    for (int64_t i = 0; i < num_sentences; ++i) {
      check_not_null(references[r][i], (stream + "[" + std::to_string(i) + "]").c_str());
      corpus.references[r].emplace_back(references[r][i]);
    }
  }
  return corpus;
}

fwp::BleuOptions bleu_options(const fwp_bleu_options* user) {
  fwp_bleu_options o;
  fwp_bleu_options_init(&o);
  if (user) o = fwp::api::read_config(*user, fwp_bleu_options_init, "options");
  fwp::BleuOptions options;
  const int32_t tokenize = fwp::api::enum_value(o.tokenize);
  switch (tokenize) {
    case FWP_BLEU_TOKENIZE_13A: options.tokenizer = fwp::BleuTokenizer::Mteval13a; break;
    case FWP_BLEU_TOKENIZE_NONE: options.tokenizer = fwp::BleuTokenizer::None; break;
    default:
      throw Error(FWP_ERR_OUT_OF_RANGE, "options->tokenize must be FWP_BLEU_TOKENIZE_13A or "
                                        "FWP_BLEU_TOKENIZE_NONE (got " + std::to_string(tokenize) + ")");
  }
  const int32_t smooth = fwp::api::enum_value(o.smooth_method);
  switch (smooth) {
    case FWP_BLEU_SMOOTH_EXP: options.smoothing = fwp::BleuSmoothing::Exp; break;
    case FWP_BLEU_SMOOTH_NONE: options.smoothing = fwp::BleuSmoothing::None; break;
    case FWP_BLEU_SMOOTH_FLOOR: options.smoothing = fwp::BleuSmoothing::Floor; break;
    case FWP_BLEU_SMOOTH_ADD_K: options.smoothing = fwp::BleuSmoothing::AddK; break;
    default:
      throw Error(FWP_ERR_OUT_OF_RANGE, "options->smooth_method must be one of FWP_BLEU_SMOOTH_EXP, _NONE, _FLOOR, "
                                        "_ADD_K (got " + std::to_string(smooth) + ")");
  }
  fwp::require(std::isfinite(o.smooth_value), FWP_ERR_INVALID_ARGUMENT,
               "options->smooth_value must be finite (negative for the method's default)");
  options.smooth_value = o.smooth_value;
  fwp::require(o.max_ngram_order >= 1 && o.max_ngram_order <= FWP_BLEU_MAX_NGRAM_ORDER, FWP_ERR_INVALID_ARGUMENT,
               "options->max_ngram_order must be in [1, " + std::to_string(FWP_BLEU_MAX_NGRAM_ORDER) + "] (got " +
                   std::to_string(o.max_ngram_order) + ")");
  options.max_ngram_order = o.max_ngram_order;
  fwp::api::check_flag(o.effective_order, "options->effective_order");
  options.effective_order = o.effective_order == 1;
  return options;
}

fwp::ChrfOptions chrf_options(const fwp_chrf_options* user) {
  fwp_chrf_options o;
  fwp_chrf_options_init(&o);
  if (user) o = fwp::api::read_config(*user, fwp_chrf_options_init, "options");
  const auto order_ok = [](int32_t v) { return v >= 0 && v <= FWP_CHRF_MAX_ORDER; };
  fwp::require(order_ok(o.char_order), FWP_ERR_INVALID_ARGUMENT,
               "options->char_order must be in [0, " + std::to_string(FWP_CHRF_MAX_ORDER) + "] (got " +
                   std::to_string(o.char_order) + ")");
  fwp::require(order_ok(o.word_order), FWP_ERR_INVALID_ARGUMENT,
               "options->word_order must be in [0, " + std::to_string(FWP_CHRF_MAX_ORDER) + "] (got " +
                   std::to_string(o.word_order) + ")");
  fwp::require(o.char_order + o.word_order >= 1, FWP_ERR_INVALID_ARGUMENT,
               "options->char_order + options->word_order must be at least 1");
  fwp::require(std::isfinite(o.beta) && o.beta >= 0, FWP_ERR_INVALID_ARGUMENT,
               "options->beta must be finite and >= 0 (got " + std::to_string(o.beta) + ")");
  fwp::api::check_flag(o.whitespace, "options->whitespace");
  fwp::api::check_flag(o.eps_smoothing, "options->eps_smoothing");
  fwp::ChrfOptions options;
  options.char_order = o.char_order;
  options.word_order = o.word_order;
  options.beta = o.beta;
  options.whitespace = o.whitespace == 1;
  options.eps_smoothing = o.eps_smoothing == 1;
  return options;
}

}  // namespace

extern "C" {

FWP_API void fwp_bleu_options_init(fwp_bleu_options* options) {
  if (!options) return;
  *options = fwp_bleu_options{};
  options->struct_size = sizeof(fwp_bleu_options);
  options->tokenize = FWP_BLEU_TOKENIZE_13A;
  options->smooth_method = FWP_BLEU_SMOOTH_EXP;
  options->smooth_value = -1.0;
  options->max_ngram_order = FWP_BLEU_MAX_NGRAM_ORDER;
  options->effective_order = 0;
}

FWP_API void fwp_bleu_result_init(fwp_bleu_result* result) {
  if (!result) return;
  *result = fwp_bleu_result{};
  result->struct_size = sizeof(fwp_bleu_result);
}

FWP_API void fwp_chrf_options_init(fwp_chrf_options* options) {
  if (!options) return;
  *options = fwp_chrf_options{};
  options->struct_size = sizeof(fwp_chrf_options);
  options->char_order = 6;
  options->word_order = 0;
  options->beta = 2.0;
  options->whitespace = 0;
  options->eps_smoothing = 0;
}

FWP_API void fwp_chrf_result_init(fwp_chrf_result* result) {
  if (!result) return;
  *result = fwp_chrf_result{};
  result->struct_size = sizeof(fwp_chrf_result);
}

FWP_API fwp_status fwp_bleu(const char* const* hypotheses, int64_t num_sentences,
                            const char* const* const* references, int64_t num_refs,
                            const fwp_bleu_options* options, fwp_bleu_result* result) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(result, "result");
    // Checked before any work so that a bad struct fails fast.
    fwp::api::config_field_bytes<fwp_bleu_result>(result->struct_size, "result", {});
    const fwp::BleuOptions o = bleu_options(options);
    const Corpus corpus = read_corpus(hypotheses, num_sentences, references, num_refs);
    const fwp::BleuScore s = fwp::corpus_bleu(corpus.hypotheses, corpus.references, o);
    fwp_bleu_result out;
    fwp_bleu_result_init(&out);
    out.score = s.score;
    for (int n = 0; n < FWP_BLEU_MAX_NGRAM_ORDER; ++n) {
      out.precisions[n] = s.precisions[n];
      out.counts[n] = s.counts[n];
      out.totals[n] = s.totals[n];
    }
    out.brevity_penalty = s.brevity_penalty;
    out.ratio = s.ratio;
    out.hyp_len = s.hyp_len;
    out.ref_len = s.ref_len;
    fwp::api::write_config(result, out, "result");
  });
}

FWP_API fwp_status fwp_chrf(const char* const* hypotheses, int64_t num_sentences,
                            const char* const* const* references, int64_t num_refs,
                            const fwp_chrf_options* options, fwp_chrf_result* result) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(result, "result");
    fwp::api::config_field_bytes<fwp_chrf_result>(result->struct_size, "result", {});
    const fwp::ChrfOptions o = chrf_options(options);
    const Corpus corpus = read_corpus(hypotheses, num_sentences, references, num_refs);
    const fwp::ChrfScore s = fwp::corpus_chrf(corpus.hypotheses, corpus.references, o);
    fwp_chrf_result out;
    fwp_chrf_result_init(&out);
    out.score = s.score;
    fwp::api::write_config(result, out, "result");
  });
}

}  // extern "C"
