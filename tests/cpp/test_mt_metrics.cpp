// BLEU and chrF (text/mt_metrics.h, fwp/metrics.h) against the sacrebleu
// package: the scores and statistics of tests/fixtures/mt_metrics.json
// (made by tests/fixtures/make_bleu_fixtures.py) to 0.01, through the C API;
// the 13a tokenizer on tricky strings (expected outputs from sacrebleu's
// Tokenizer13a); UTF-8 validation; bad inputs.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "fwp/fwp.h"
#include "text/mt_metrics.h"

namespace {

using nlohmann::json;

json load_fixtures() {
  std::ifstream in(std::string(FWP_TEST_FIXTURES_DIR) + "/mt_metrics.json");
  EXPECT_TRUE(in) << "cannot open " << FWP_TEST_FIXTURES_DIR << "/mt_metrics.json";
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

// A case's texts as C arrays for the C API (the strings live in the case).
struct CCorpus {
  std::vector<std::string> hyp_text;
  std::vector<std::vector<std::string>> ref_text;
  std::vector<const char*> hyps;
  std::vector<std::vector<const char*>> ref_rows;
  std::vector<const char* const*> refs;

  explicit CCorpus(const json& c) {
    for (const auto& h : c["hypotheses"]) hyp_text.push_back(h.get<std::string>());
    for (const auto& stream : c["references"]) {
      ref_text.emplace_back();
      for (const auto& r : stream) ref_text.back().push_back(r.get<std::string>());
    }
    for (const auto& h : hyp_text) hyps.push_back(h.c_str());
    for (const auto& stream : ref_text) {
      ref_rows.emplace_back();
      for (const auto& r : stream) ref_rows.back().push_back(r.c_str());
    }
    for (const auto& row : ref_rows) refs.push_back(row.data());
  }
  int64_t n() const { return static_cast<int64_t>(hyps.size()); }
  int64_t num_refs() const { return static_cast<int64_t>(refs.size()); }
};

fwp_bleu_options bleu_options_of(const json& o) {
  fwp_bleu_options options;
  fwp_bleu_options_init(&options);
  if (o.contains("tokenize")) {
    EXPECT_EQ(o["tokenize"], "none");
    options.tokenize = FWP_BLEU_TOKENIZE_NONE;
  }
  if (o.contains("smooth_method")) {
    const std::string m = o["smooth_method"];
    options.smooth_method = m == "none"    ? FWP_BLEU_SMOOTH_NONE
                            : m == "floor" ? FWP_BLEU_SMOOTH_FLOOR
                            : m == "add-k" ? FWP_BLEU_SMOOTH_ADD_K
                                           : FWP_BLEU_SMOOTH_EXP;
  }
  if (o.contains("smooth_value")) options.smooth_value = o["smooth_value"].get<double>();
  if (o.contains("effective_order")) options.effective_order = o["effective_order"].get<bool>() ? 1 : 0;
  if (o.contains("max_ngram_order")) options.max_ngram_order = o["max_ngram_order"].get<int>();
  return options;
}

fwp_chrf_options chrf_options_of(const json& o) {
  fwp_chrf_options options;
  fwp_chrf_options_init(&options);
  if (o.contains("char_order")) options.char_order = o["char_order"].get<int>();
  if (o.contains("word_order")) options.word_order = o["word_order"].get<int>();
  if (o.contains("beta")) options.beta = o["beta"].get<double>();
  if (o.contains("whitespace")) options.whitespace = o["whitespace"].get<bool>() ? 1 : 0;
  if (o.contains("eps_smoothing")) options.eps_smoothing = o["eps_smoothing"].get<bool>() ? 1 : 0;
  return options;
}

TEST(MtMetrics, BleuMatchesSacrebleuFixtures) {
  const json fixtures = load_fixtures();
  ASSERT_GE(fixtures["cases"].size(), 13u);
  int checked = 0;
  for (const auto& c : fixtures["cases"]) {
    const CCorpus corpus(c);
    for (const auto& expected : c["bleu"]) {
      SCOPED_TRACE(c["name"].get<std::string>() + " BLEU " + expected["options"].dump());
      const fwp_bleu_options options = bleu_options_of(expected["options"]);
      fwp_bleu_result result;
      fwp_bleu_result_init(&result);
      ASSERT_EQ(fwp_bleu(corpus.hyps.data(), corpus.n(), corpus.refs.data(), corpus.num_refs(), &options, &result),
                FWP_OK)
          << fwp_last_error_message();
      EXPECT_NEAR(result.score, expected["score"].get<double>(), 0.01);
      EXPECT_NEAR(result.brevity_penalty, expected["bp"].get<double>(), 1e-9);
      EXPECT_NEAR(result.ratio, expected["ratio"].get<double>(), 1e-9);
      EXPECT_EQ(result.hyp_len, expected["sys_len"].get<int64_t>());
      EXPECT_EQ(result.ref_len, expected["ref_len"].get<int64_t>());
      const size_t order = expected["precisions"].size();
      for (size_t n = 0; n < order; ++n) {
        EXPECT_NEAR(result.precisions[n], expected["precisions"][n].get<double>(), 1e-9) << "order " << n + 1;
        // sacrebleu reports add-k's smoothed counts; fwp reports the raw ones.
        if (expected["options"].value("smooth_method", "") != "add-k" || n == 0) {
          EXPECT_EQ(result.counts[n], expected["counts"][n].get<int64_t>()) << "order " << n + 1;
          EXPECT_EQ(result.totals[n], expected["totals"][n].get<int64_t>()) << "order " << n + 1;
        }
      }
      for (size_t n = order; n < FWP_BLEU_MAX_NGRAM_ORDER; ++n) EXPECT_EQ(result.precisions[n], 0.0);
      ++checked;
    }
  }
  EXPECT_GE(checked, 100);
}

TEST(MtMetrics, ChrfMatchesSacrebleuFixtures) {
  const json fixtures = load_fixtures();
  int checked = 0;
  for (const auto& c : fixtures["cases"]) {
    const CCorpus corpus(c);
    for (const auto& expected : c["chrf"]) {
      SCOPED_TRACE(c["name"].get<std::string>() + " chrF " + expected["options"].dump());
      const fwp_chrf_options options = chrf_options_of(expected["options"]);
      fwp_chrf_result result;
      fwp_chrf_result_init(&result);
      ASSERT_EQ(fwp_chrf(corpus.hyps.data(), corpus.n(), corpus.refs.data(), corpus.num_refs(), &options, &result),
                FWP_OK)
          << fwp_last_error_message();
      EXPECT_NEAR(result.score, expected["score"].get<double>(), 0.01);
      ++checked;
    }
  }
  EXPECT_GE(checked, 70);
}

// The fixtures must exercise what they claim: two streams, an empty line, a zero 4-gram precision, BP < 1.
TEST(MtMetrics, FixturesCoverTheHardCases) {
  const json fixtures = load_fixtures();
  bool two_streams = false, empty_hyp = false, zero_4gram = false, short_bp = false, bible = false;
  for (const auto& c : fixtures["cases"]) {
    two_streams = two_streams || c["references"].size() >= 2;
    for (const auto& h : c["hypotheses"]) empty_hyp = empty_hyp || h.get<std::string>().empty();
    const json& bleu = c["bleu"][0];
    zero_4gram = zero_4gram || (bleu["counts"][3] == 0 && bleu["totals"][3] > 0 && bleu["score"] > 0);
    short_bp = short_bp || bleu["bp"].get<double>() < 1.0;
    bible = bible || c["hypotheses"].size() >= 300;
  }
  EXPECT_TRUE(two_streams && empty_hyp && zero_4gram && short_bp && bible);
}

TEST(MtMetrics, Tokenizer13aMatchesSacrebleu) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Hello, world!", "Hello , world !"},
      {"1,000.50 and 3.5", "1,000.50 and 3.5"},
      {"a..b", "a . . b"},
      {"x.,y", "x . , y"},
      {"1999-2000", "1999 - 2000"},
      {"well-known", "well-known"},
      {"'quoted' \"x\"", "'quoted' \" x \""},
      {"&amp;lt; &quot;a&quot; &gt;", "< \" a \" >"},
      {"end-\nline<skipped>", "endline"},
      {"\xc2\xbfQu\xc3\xa9? \xc2\xa1S\xc3\xad!", "\xc2\xbfQu\xc3\xa9 ? \xc2\xa1S\xc3\xad !"},  // ¿Qué? ¡Sí!
      {"\xc3\xa9l.", "\xc3\xa9l ."},                                                    // él.
      {"5.\xc3\xa9", "5 . \xc3\xa9"},                                                   // 5.é
      {"a,1", "a , 1"},
      {"1,a", "1 , a"},
      {"$5.00!", "$ 5.00 !"},
      {"e.g. U.S.A.", "e . g . U . S . A ."},
      {"x\xc2\xa0y\xe3\x80\x80z", "x y z"},  // U+00A0 and U+3000 are whitespace
      {"", ""},
      {"   ", ""},
      {"--", "--"},
      {"9-", "9 -"},
      {"a-9", "a-9"},
      {"(a)[b]{c}", "( a ) [ b ] { c }"},
  };
  for (const auto& [input, expected] : cases) EXPECT_EQ(fwp::tokenize_13a(input), expected) << input;
}

TEST(MtMetrics, Utf8Validation) {
  EXPECT_EQ(fwp::invalid_utf8_offset("plain ascii"), std::string_view::npos);
  EXPECT_EQ(fwp::invalid_utf8_offset("\xc2\xbf\xe2\x82\xac\xf0\x9f\x98\x80"), std::string_view::npos);
  EXPECT_EQ(fwp::invalid_utf8_offset("ab\xff"), 2u);           // never a UTF-8 byte
  EXPECT_EQ(fwp::invalid_utf8_offset("a\x80"), 1u);            // lone continuation byte
  EXPECT_EQ(fwp::invalid_utf8_offset("\xc3"), 0u);             // truncated
  EXPECT_EQ(fwp::invalid_utf8_offset("\xc0\xaf"), 0u);         // overlong '/'
  EXPECT_EQ(fwp::invalid_utf8_offset("\xe0\x80\xaf"), 0u);     // overlong 3-byte
  EXPECT_EQ(fwp::invalid_utf8_offset("\xed\xa0\x80"), 0u);     // surrogate U+D800
  EXPECT_EQ(fwp::invalid_utf8_offset("\xf4\x90\x80\x80"), 0u); // above U+10FFFF
  EXPECT_EQ(fwp::invalid_utf8_offset("x\xe2\x82"), 1u);        // truncated 3-byte
}

TEST(MtMetrics, IdenticalTextsScore100) {
  const std::vector<std::string_view> text = {"En el principio cri\xc3\xb3 Dios los cielos.",
                                                 "\xc2\xbf" "D\xc3\xb3nde est\xc3\xa1 el ni\xc3\xb1o?"};
  EXPECT_DOUBLE_EQ(fwp::corpus_bleu(text, {text}, {}).score, 100.0);
  EXPECT_DOUBLE_EQ(fwp::corpus_chrf(text, {text}, {}).score, 100.0);
}

TEST(MtMetrics, BadInputsThrowWithTheirName) {
  const std::vector<std::string_view> hyps = {"a b", "c \xff"};
  const std::vector<std::string_view> refs = {"a b", "c d"};
  try {
    fwp::corpus_bleu(hyps, {refs}, {});
    FAIL() << "no error for invalid UTF-8";
  } catch (const fwp::Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("hypotheses[1] is not valid UTF-8 (byte 2)"), std::string::npos) << e.what();
  }
  try {
    fwp::corpus_chrf(refs, {refs, hyps}, {});
    FAIL() << "no error for invalid UTF-8";
  } catch (const fwp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("references[1][1]"), std::string::npos) << e.what();
  }
  const std::vector<std::string_view> one = {"a"};
  EXPECT_THROW(fwp::corpus_bleu(one, {refs}, {}), fwp::Error);  // stream longer than the hypotheses
  EXPECT_THROW(fwp::corpus_bleu({}, {{}}, {}), fwp::Error);      // no sentence
  EXPECT_THROW(fwp::corpus_bleu(one, {}, {}), fwp::Error);       // no reference stream
  fwp::BleuOptions bad_order;
  bad_order.max_ngram_order = 5;
  EXPECT_THROW(fwp::corpus_bleu(one, {one}, bad_order), fwp::Error);
  fwp::ChrfOptions no_order;
  no_order.char_order = 0;
  EXPECT_THROW(fwp::corpus_chrf(one, {one}, no_order), fwp::Error);
  fwp::ChrfOptions bad_beta;
  bad_beta.beta = -1;
  EXPECT_THROW(fwp::corpus_chrf(one, {one}, bad_beta), fwp::Error);
}

TEST(MtMetrics, CApiRefusesBadArguments) {
  const char* hyps[] = {"a b c d e", "f g h i j"};  // 4-grams exist, so identical texts score 100
  const char* const* refs[] = {hyps};
  fwp_bleu_result result;
  fwp_bleu_result_init(&result);
  EXPECT_EQ(fwp_bleu(hyps, 2, refs, 1, nullptr, &result), FWP_OK) << fwp_last_error_message();
  EXPECT_DOUBLE_EQ(result.score, 100.0);

  fwp_bleu_result untouched;
  fwp_bleu_result_init(&untouched);
  untouched.score = -7;
  EXPECT_EQ(fwp_bleu(hyps, 0, refs, 1, nullptr, &untouched), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fwp_last_error_message()).find("num_sentences"), std::string::npos);
  EXPECT_EQ(untouched.score, -7);
  EXPECT_EQ(fwp_bleu(hyps, 2, refs, 0, nullptr, &untouched), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fwp_bleu(nullptr, 2, refs, 1, nullptr, &untouched), FWP_ERR_NULL_POINTER);
  const char* with_null[] = {"a", nullptr};
  EXPECT_EQ(fwp_bleu(with_null, 2, refs, 1, nullptr, &untouched), FWP_ERR_NULL_POINTER);
  EXPECT_NE(std::string(fwp_last_error_message()).find("hypotheses[1]"), std::string::npos) << fwp_last_error_message();
  const char* bad_utf8[] = {"a", "\xe2\x82"};
  EXPECT_EQ(fwp_bleu(bad_utf8, 2, refs, 1, nullptr, &untouched), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fwp_last_error_message()).find("UTF-8"), std::string::npos) << fwp_last_error_message();
  EXPECT_EQ(untouched.score, -7);

  fwp_bleu_options options;
  fwp_bleu_options_init(&options);
  int32_t bad_enum = 9;
  std::memcpy(&options.smooth_method, &bad_enum, sizeof bad_enum);
  EXPECT_EQ(fwp_bleu(hyps, 2, refs, 1, &options, &result), FWP_ERR_OUT_OF_RANGE);
  fwp_bleu_options_init(&options);
  options.struct_size = 3;
  EXPECT_EQ(fwp_bleu(hyps, 2, refs, 1, &options, &result), FWP_ERR_INVALID_ARGUMENT);
  result.struct_size = 0;
  EXPECT_EQ(fwp_bleu(hyps, 2, refs, 1, nullptr, &result), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fwp_last_error_message()).find("result->struct_size"), std::string::npos) << fwp_last_error_message();

  fwp_chrf_result chrf;
  fwp_chrf_result_init(&chrf);
  fwp_chrf_options chrf_options;
  fwp_chrf_options_init(&chrf_options);
  chrf_options.whitespace = 2;
  EXPECT_EQ(fwp_chrf(hyps, 2, refs, 1, &chrf_options, &chrf), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fwp_chrf(hyps, 2, refs, 1, nullptr, nullptr), FWP_ERR_NULL_POINTER);
  EXPECT_EQ(fwp_chrf(hyps, 2, refs, 1, nullptr, &chrf), FWP_OK);
  EXPECT_DOUBLE_EQ(chrf.score, 100.0);
}

}  // namespace
