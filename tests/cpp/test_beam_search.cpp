// Beam search and greedy decoding (models/seq2seq/beam_search.h) with toy
// decoders written here: a decoder whose per-row state is a running hash of
// the tokens fed (so a wrong reorder() changes the log-probabilities it gives
// and hence the output), and a fixed Markov table. Checked: a beam wide
// enough to prune nothing == an exhaustive search over all sequences (every
// length penalty, min length, both stopping rules); beam 1 == greedy; a
// corrupted reorder is caught; the length penalty and the stopping rules
// choose as computed by hand; max/min lengths; a batch == each sentence
// alone; pad and bos never generated; bad options and bad decoder output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/seq2seq/beam_search.h"

namespace fwp {
namespace seq2seq {
namespace {

constexpr int32_t kEos = 0, kPad = 2, kBos = 3;  // 1 is <unk>, an ordinary token to the search

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t feed(uint64_t hash, int32_t token) {
  return splitmix(hash ^ (static_cast<uint64_t>(token) * 0x100000001b3ULL));
}

// The log-probabilities after a prefix whose running hash is `hash`: random
// logits in [0, spread), plus biases, log-softmaxed in double, as float.
struct Logits {
  int64_t vocab = 7;
  double spread = 4.0;
  double eos_bias = 0.0;      // > 0: ends early; < 0: runs to max length
  double special_bias = 0.0;  // added to pad and bos (they must still never come out)

  std::vector<float> log_probs(uint64_t hash) const {
    std::vector<double> logits(static_cast<size_t>(vocab));
    for (int64_t t = 0; t < vocab; ++t) {
      const uint64_t bits = splitmix(hash + static_cast<uint64_t>(t) * 0x632be59bd9b4e019ULL);
      logits[t] = spread * static_cast<double>(bits >> 11) / 9007199254740992.0;
    }
    logits[kEos] += eos_bias;
    logits[kPad] += special_bias;
    logits[kBos] += special_bias;
    const double top = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (double v : logits) sum += std::exp(v - top);
    const double log_sum = std::log(sum) + top;
    std::vector<float> out(static_cast<size_t>(vocab));
    for (int64_t t = 0; t < vocab; ++t) out[t] = std::min(0.0f, static_cast<float>(logits[t] - log_sum));
    return out;
  }
};

// Per-row state: the running hash of the sentence's seed and every token fed.
// It checks that the search keeps its row count in step with reorder().
class HashDecoder : public StepDecoder {
 public:
  HashDecoder(const Logits& logits, const std::vector<uint64_t>& sentence_seeds)
      : logits_(logits), hashes_(sentence_seeds) {}

  int64_t vocab_size() const override { return logits_.vocab; }

  void log_probs(const int32_t* last_tokens, int64_t rows, float* out) override {
    if (rows != static_cast<int64_t>(hashes_.size())) throw std::logic_error("log_probs: rows out of step");
    rows_per_call.push_back(rows);
    for (int64_t r = 0; r < rows; ++r) {
      hashes_[r] = feed(hashes_[r], last_tokens[r]);
      const std::vector<float> values = logits_.log_probs(hashes_[r]);
      std::copy(values.begin(), values.end(), out + r * logits_.vocab);
    }
  }

  void reorder(const int64_t* parent_rows, int64_t rows) override {
    ++reorders;
    std::vector<uint64_t> next(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) {
      if (parent_rows[i] < 0 || parent_rows[i] >= static_cast<int64_t>(hashes_.size())) {
        throw std::logic_error("reorder: parent out of range");
      }
      next[i] = hashes_[static_cast<size_t>(parent_rows[i])];
    }
    corrupt(next);
    hashes_.swap(next);
  }

  std::vector<int64_t> rows_per_call;
  int64_t reorders = 0;

 protected:
  virtual void corrupt(std::vector<uint64_t>&) {}

 private:
  Logits logits_;
  std::vector<uint64_t> hashes_;
};

// A decoder whose reorder swaps the first two new rows: a wrong gather.
class SwappingDecoder : public HashDecoder {
 public:
  using HashDecoder::HashDecoder;

 protected:
  void corrupt(std::vector<uint64_t>& rows) override {
    if (rows.size() >= 2) std::swap(rows[0], rows[1]);
  }
};

// Every sequence a sentence can produce, scored from the prefix hashes
// directly (no state, no reorder), best first: the n best are the answer.
std::vector<Hypothesis> exhaustive(const Logits& logits, uint64_t seed, int64_t max_length,
                                   const BeamSearchOptions& o) {
  std::vector<Hypothesis> all;
  std::vector<int32_t> prefix;
  std::function<void(uint64_t, double)> walk = [&](uint64_t hash, double log_prob) {
    const std::vector<float> values = logits.log_probs(hash);
    const auto length = static_cast<int64_t>(prefix.size());
    if (length >= o.min_length && values[kEos] != -std::numeric_limits<float>::infinity()) {
      Hypothesis h;
      h.tokens = prefix;
      h.log_prob = log_prob + static_cast<double>(values[kEos]);
      h.score = h.log_prob / std::pow(static_cast<double>(length + 1), o.length_penalty);
      all.push_back(h);
    }
    if (length >= max_length) return;
    for (int32_t t = 0; t < logits.vocab; ++t) {
      if (t == kEos || t == kPad || t == kBos) continue;
      prefix.push_back(t);
      walk(feed(hash, t), log_prob + static_cast<double>(values[t]));
      prefix.pop_back();
    }
  };
  walk(feed(seed, kBos), 0.0);
  std::stable_sort(all.begin(), all.end(), [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
  return all;
}

BeamSearchOptions base_options() {
  BeamSearchOptions o;
  o.bos_id = kBos;
  o.eos_id = kEos;
  o.pad_id = kPad;
  return o;
}

std::string show(const std::vector<int32_t>& tokens) {
  std::string text = "[";
  for (int32_t t : tokens) text += std::to_string(t) + " ";
  return text + "]";
}

void expect_same(const Hypothesis& a, const Hypothesis& b, const std::string& where) {
  EXPECT_EQ(a.tokens, b.tokens) << where << ": " << show(a.tokens) << " vs " << show(b.tokens);
  EXPECT_EQ(a.log_prob, b.log_prob) << where;
  EXPECT_EQ(a.score, b.score) << where;
}

const std::vector<uint64_t> kSeeds = {11, 22, 33, 44};
const std::vector<int64_t> kSources = {0, 3, 1, 2};  // max lengths 1, 4, 2, 3 with a = 1, b = 1

TEST(BeamSearch, WideBeamEqualsExhaustiveSearch) {
  // kNoBetterOpen stops as soon as its bound allows (n_best 1, long outputs
  // likely: a bound too tight would stop before the best); kBeamFinished never
  // stops early with a beam this wide.
  for (const auto& setting : {std::make_pair(0.0, 6), std::make_pair(-1.5, 1), std::make_pair(1.0, 2)})
  for (StopRule stop : {StopRule::kBeamFinished, StopRule::kNoBetterOpen}) {
    Logits logits;  // 7 tokens: eos, unk, pad, bos and 3 more: 4 may follow each prefix
    logits.eos_bias = setting.first;
    for (double penalty : {0.0, 1.0, 0.6, 2.0, -0.5}) {
      for (int64_t min_length : {0, 1, 2}) {
        BeamSearchOptions o = base_options();
        o.beam_size = 2000;  // > every candidate count (4 * 4^3 at the last step): nothing is pruned
        o.n_best = setting.second;
        o.length_penalty = penalty;
        o.min_length = min_length;
        o.max_len_a = 1.0;
        o.max_len_b = 1.0;
        o.stop = stop;
        std::vector<int64_t> sources = kSources;
        if (min_length == 2) sources[0] = 1;  // max length 1 would be below min length
        HashDecoder decoder(logits, kSeeds);
        const auto results = beam_search(decoder, sources, o);
        ASSERT_EQ(results.size(), kSeeds.size());
        for (size_t s = 0; s < kSeeds.size(); ++s) {
          const auto expected = exhaustive(logits, kSeeds[s], max_output_length(o, sources[s]), o);
          const size_t n = std::min<size_t>(expected.size(), static_cast<size_t>(o.n_best));
          ASSERT_EQ(results[s].size(), n);
          for (size_t k = 0; k < n; ++k) {
            expect_same(results[s][k], expected[k],
                        "sentence " + std::to_string(s) + " rank " + std::to_string(k) + " penalty " +
                            std::to_string(penalty) + " min " + std::to_string(min_length));
          }
        }
      }
    }
  }
}

TEST(BeamSearch, NoBetterOpenStopsEarlyAndStaysExact) {
  // A beam that prunes nothing, but sentences long enough that the bound lets
  // the search stop before max length: still the exhaustive answer, in fewer steps.
  Logits logits;
  logits.eos_bias = 3.0;  // short sentences are likely: the finished ones soon beat every bound
  BeamSearchOptions o = base_options();
  o.beam_size = 3;
  o.n_best = 3;
  o.length_penalty = 0.0;
  o.max_len_b = 6.0;
  o.stop = StopRule::kNoBetterOpen;
  HashDecoder decoder(logits, {5});
  const auto results = beam_search(decoder, {0}, o);
  // With length penalty 0 the bound is the open sum itself, so stopping is exact for any beam.
  BeamSearchOptions wide = o;
  wide.beam_size = 20000;
  HashDecoder wide_decoder(logits, {5});
  const auto wide_results = beam_search(wide_decoder, {0}, wide);
  const auto expected = exhaustive(logits, 5, 6, o);
  ASSERT_EQ(results[0].size(), 3u);
  ASSERT_EQ(wide_results[0].size(), 3u);
  for (size_t k = 0; k < 3; ++k) expect_same(wide_results[0][k], expected[k], "wide rank " + std::to_string(k));
  EXPECT_LT(wide_decoder.rows_per_call.size(), 7u) << "the bound never stopped the search before max length";
  // The narrow beam may prune, but its best cannot beat the exhaustive best.
  EXPECT_LE(results[0][0].score, expected[0].score);
}

TEST(BeamSearch, BeamOneEqualsGreedy) {
  Logits logits;
  logits.vocab = 40;
  logits.spread = 6.0;
  const std::vector<uint64_t> seeds = {1, 2, 3, 4, 5, 6, 7};
  const std::vector<int64_t> sources = {3, 9, 1, 14, 6, 0, 20};
  for (double penalty : {0.0, 1.0}) {
    BeamSearchOptions o = base_options();
    o.beam_size = 1;
    o.length_penalty = penalty;
    o.max_len_a = 1.5;
    o.max_len_b = 4.0;
    HashDecoder beam_decoder(logits, seeds);
    HashDecoder greedy_decoder(logits, seeds);
    const auto beam = beam_search(beam_decoder, sources, o);
    const auto greedy = greedy_search(greedy_decoder, sources, o);
    ASSERT_EQ(greedy.size(), seeds.size());
    size_t lengths = 0;
    for (size_t s = 0; s < seeds.size(); ++s) {
      ASSERT_EQ(beam[s].size(), 1u);
      expect_same(beam[s][0], greedy[s], "sentence " + std::to_string(s));
      lengths += greedy[s].tokens.size();
    }
    EXPECT_GT(lengths, seeds.size()) << "the outputs should not all be empty";
    EXPECT_EQ(beam_decoder.rows_per_call, greedy_decoder.rows_per_call);
  }
}

TEST(BeamSearch, WrongReorderChangesTheOutput) {
  // The same search with a decoder whose reorder() swaps two rows: the state
  // no longer matches the hypotheses, and the exhaustive answer is missed.
  Logits logits;
  BeamSearchOptions o = base_options();
  o.beam_size = 2000;
  o.n_best = 6;
  o.max_len_a = 1.0;
  o.max_len_b = 1.0;
  HashDecoder good(logits, kSeeds);
  SwappingDecoder bad(logits, kSeeds);
  const auto right = beam_search(good, kSources, o);
  const auto wrong = beam_search(bad, kSources, o);
  EXPECT_GT(good.reorders, 0);
  bool differs = false;
  for (size_t s = 0; s < kSeeds.size(); ++s) {
    for (size_t k = 0; k < right[s].size() && k < wrong[s].size(); ++k) {
      differs = differs || right[s][k].log_prob != wrong[s][k].log_prob || right[s][k].tokens != wrong[s][k].tokens;
    }
  }
  EXPECT_TRUE(differs) << "a wrong reorder went unnoticed";
  // Greedy as well: sentences finish at different steps and their rows are compacted.
  Logits many;
  many.vocab = 30;
  const std::vector<uint64_t> seeds = {9, 8, 7, 6};
  const std::vector<int64_t> sources = {1, 10, 2, 10};
  HashDecoder greedy_good(many, seeds);
  SwappingDecoder greedy_bad(many, seeds);
  o.beam_size = 1;
  o.n_best = 1;
  const auto g_right = greedy_search(greedy_good, sources, o);
  const auto g_wrong = greedy_search(greedy_bad, sources, o);
  EXPECT_GT(greedy_good.reorders, 0) << "no sentence finished early: the test does not reorder";
  bool greedy_differs = false;
  for (size_t s = 0; s < seeds.size(); ++s) greedy_differs = greedy_differs || g_right[s].tokens != g_wrong[s].tokens;
  EXPECT_TRUE(greedy_differs);
}

// A fixed Markov table: the next token's log-probability given the last one.
class MarkovDecoder : public StepDecoder {
 public:
  explicit MarkovDecoder(std::vector<std::vector<float>> table) : table_(std::move(table)) {}
  int64_t vocab_size() const override { return static_cast<int64_t>(table_.size()); }
  void log_probs(const int32_t* last_tokens, int64_t rows, float* out) override {
    for (int64_t r = 0; r < rows; ++r) {
      const auto& row = table_[static_cast<size_t>(last_tokens[r])];
      std::copy(row.begin(), row.end(), out + r * vocab_size());
    }
  }
  void reorder(const int64_t*, int64_t) override {}

 private:
  std::vector<std::vector<float>> table_;
};

// From bos: eos 0.6, token 4 0.4; after 4: eos 0.9, token 4 0.1.
// [] scores log 0.6 = -0.51 at any penalty; [4] has sum log 0.4 + log 0.9 =
// -1.02 over 2 tokens: worse with penalty 0 (-1.02), better with 2 (-0.255).
MarkovDecoder length_choice_decoder() {
  const float never = -std::numeric_limits<float>::infinity();
  std::vector<std::vector<float>> table(5, std::vector<float>(5, never));
  table[kBos][kEos] = std::log(0.6f);
  table[kBos][4] = std::log(0.4f);
  table[4][kEos] = std::log(0.9f);
  table[4][4] = std::log(0.1f);
  return MarkovDecoder(table);
}

TEST(BeamSearch, LengthPenaltyChoosesAsComputed) {
  BeamSearchOptions o = base_options();
  o.beam_size = 2;
  o.min_length = 0;  // [] may come
  o.max_len_b = 3.0;
  o.length_penalty = 0.0;
  MarkovDecoder decoder = length_choice_decoder();
  auto best = beam_search(decoder, {0}, o)[0][0];
  EXPECT_TRUE(best.tokens.empty());
  EXPECT_DOUBLE_EQ(best.score, std::log(0.6f));
  o.length_penalty = 2.0;
  best = beam_search(decoder, {0}, o)[0][0];
  EXPECT_EQ(best.tokens, std::vector<int32_t>({4}));
  EXPECT_DOUBLE_EQ(best.log_prob, static_cast<double>(std::log(0.4f)) + static_cast<double>(std::log(0.9f)));
  EXPECT_DOUBLE_EQ(best.score, best.log_prob / 4.0);
  // Greedy takes eos first whatever the penalty.
  EXPECT_TRUE(greedy_search(decoder, {0}, o)[0].tokens.empty());
}

TEST(BeamSearch, StoppingRulesDiffer) {
  // Beam 1, penalty 2: fairseq's rule stops at the first finished hypothesis
  // ([]); the bound sees that the open [4] may still win, and it does.
  BeamSearchOptions o = base_options();
  o.beam_size = 1;
  o.min_length = 0;
  o.max_len_b = 3.0;
  o.length_penalty = 2.0;
  MarkovDecoder decoder = length_choice_decoder();
  o.stop = StopRule::kBeamFinished;
  EXPECT_TRUE(beam_search(decoder, {0}, o)[0][0].tokens.empty());
  o.stop = StopRule::kNoBetterOpen;
  EXPECT_EQ(beam_search(decoder, {0}, o)[0][0].tokens, std::vector<int32_t>({4}));
}

// Log-probabilities by step (every row is at the same step): after bos, eos
// -1 and token 4 -4.5; then token 4 -0.01 and eos -5; after 4 tokens eos -0.01.
class ByStepDecoder : public StepDecoder {
 public:
  int64_t vocab_size() const override { return 5; }
  void log_probs(const int32_t*, int64_t rows, float* out) override {
    const float never = -std::numeric_limits<float>::infinity();
    std::vector<float> values(5, never);
    if (step_ == 0) {
      values[kEos] = -1.0f;
      values[4] = -4.5f;
    } else if (step_ < 4) {
      values[kEos] = -5.0f;
      values[4] = -0.01f;
    } else {
      values[kEos] = -0.01f;
    }
    ++step_;
    for (int64_t r = 0; r < rows; ++r) std::copy(values.begin(), values.end(), out + r * 5);
  }
  void reorder(const int64_t*, int64_t) override {}

 private:
  int64_t step_ = 0;
};

TEST(BeamSearch, NoBetterOpenBoundCountsTheLongestFinish) {
  // Penalty 2: [] scores -1. The open [4] has sum -4.5; finishing next step
  // it could score at best -4.5 / 3^2 = -0.5, but after 4 tokens it scores
  // (-4.5 - 0.03 - 0.01) / 5^2 = -0.18: the bound must take the longest finish.
  BeamSearchOptions o = base_options();
  o.beam_size = 1;
  o.min_length = 0;
  o.max_len_b = 4.0;
  o.length_penalty = 2.0;
  o.stop = StopRule::kNoBetterOpen;
  ByStepDecoder decoder;
  const auto best = beam_search(decoder, {0}, o)[0][0];
  EXPECT_EQ(best.tokens, std::vector<int32_t>({4, 4, 4, 4}));
  o.stop = StopRule::kBeamFinished;
  ByStepDecoder fairseq_decoder;
  EXPECT_TRUE(beam_search(fairseq_decoder, {0}, o)[0][0].tokens.empty());
}

TEST(BeamSearch, MinAndMaxLengthRespected) {
  const std::vector<uint64_t> seeds = {3, 1, 4, 1, 5};
  const std::vector<int64_t> sources = {2, 7, 0, 12, 5};
  for (double eos_bias : {8.0, -8.0}) {  // eos almost sure: min length binds; almost never: max length binds
    Logits logits;
    logits.vocab = 12;
    logits.eos_bias = eos_bias;
    BeamSearchOptions o = base_options();
    o.beam_size = 3;
    o.n_best = 3;
    o.min_length = 2;
    o.max_len_a = 0.5;
    o.max_len_b = 2.0;
    HashDecoder decoder(logits, seeds);
    const auto beam = beam_search(decoder, sources, o);
    HashDecoder greedy_decoder(logits, seeds);
    const auto greedy = greedy_search(greedy_decoder, sources, o);
    for (size_t s = 0; s < seeds.size(); ++s) {
      const int64_t max_length = static_cast<int64_t>(std::floor(0.5 * sources[s] + 2.0));
      const int64_t expected_length = eos_bias > 0 ? 2 : max_length;
      ASSERT_EQ(beam[s].size(), 3u);
      for (const auto& h : beam[s]) EXPECT_EQ(static_cast<int64_t>(h.tokens.size()), expected_length) << s;
      EXPECT_EQ(static_cast<int64_t>(greedy[s].tokens.size()), expected_length) << s;
    }
    // Sentences of different max length finish at different steps: the rows shrink.
    if (eos_bias < 0) {
      EXPECT_EQ(greedy_decoder.rows_per_call.front(), 5);
      EXPECT_EQ(greedy_decoder.rows_per_call.back(), 1);
      EXPECT_EQ(decoder.rows_per_call.back(), 3);
    }
  }
}

TEST(BeamSearch, BatchEqualsEachSentenceAlone) {
  Logits logits;
  logits.vocab = 25;
  logits.spread = 5.0;
  const std::vector<uint64_t> seeds = {101, 202, 303, 404, 505, 606};
  const std::vector<int64_t> sources = {4, 0, 11, 7, 2, 9};
  BeamSearchOptions o = base_options();
  o.beam_size = 4;
  o.n_best = 2;
  o.length_penalty = 1.0;
  o.max_len_a = 1.2;
  o.max_len_b = 3.0;
  for (StopRule stop : {StopRule::kBeamFinished, StopRule::kNoBetterOpen}) {
    o.stop = stop;
    HashDecoder batch_decoder(logits, seeds);
    const auto batch = beam_search(batch_decoder, sources, o);
    HashDecoder greedy_batch_decoder(logits, seeds);
    const auto greedy_batch = greedy_search(greedy_batch_decoder, sources, o);
    for (size_t s = 0; s < seeds.size(); ++s) {
      HashDecoder alone_decoder(logits, {seeds[s]});
      const auto alone = beam_search(alone_decoder, {sources[s]}, o);
      ASSERT_EQ(batch[s].size(), alone[0].size());
      for (size_t k = 0; k < alone[0].size(); ++k) {
        expect_same(batch[s][k], alone[0][k], "sentence " + std::to_string(s));
      }
      HashDecoder greedy_alone_decoder(logits, {seeds[s]});
      expect_same(greedy_batch[s], greedy_search(greedy_alone_decoder, {sources[s]}, o)[0],
                  "greedy " + std::to_string(s));
    }
  }
}

TEST(BeamSearch, NeverGeneratesPadOrBos) {
  Logits logits;
  logits.vocab = 9;
  logits.special_bias = 20.0;  // pad and bos would win every step
  BeamSearchOptions o = base_options();
  o.beam_size = 3;
  o.n_best = 3;
  o.max_len_b = 6.0;
  HashDecoder decoder(logits, {1, 2});
  HashDecoder greedy_decoder(logits, {1, 2});
  auto results = beam_search(decoder, {0, 0}, o);
  results.push_back(greedy_search(greedy_decoder, {0, 0}, o));
  for (const auto& list : results) {
    for (const auto& h : list) {
      for (int32_t t : h.tokens) {
        EXPECT_NE(t, kPad);
        EXPECT_NE(t, kBos);
        EXPECT_NE(t, kEos);
      }
    }
  }
}

TEST(BeamSearch, EmptyBatchAndZeroMaxLength) {
  Logits logits;
  BeamSearchOptions o = base_options();
  HashDecoder decoder(logits, {});
  EXPECT_TRUE(beam_search(decoder, {}, o).empty());
  EXPECT_TRUE(greedy_search(decoder, {}, o).empty());
  EXPECT_TRUE(decoder.rows_per_call.empty());
  o.min_length = 0;
  o.max_len_b = 0.0;  // only eos may come
  HashDecoder one(logits, {7});
  const auto results = beam_search(one, {5}, o);
  ASSERT_EQ(results[0].size(), 1u);
  EXPECT_TRUE(results[0][0].tokens.empty());
  EXPECT_EQ(results[0][0].log_prob, static_cast<double>(logits.log_probs(feed(7, kBos))[kEos]));
}

// Expects fwp::Error(FWP_ERR_INVALID_ARGUMENT) whose message contains `needle`.
template <typename Call>
void expect_invalid(Call call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one about " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(BeamSearch, BadOptionsAreClearErrors) {
  Logits logits;
  const auto check = [&](const std::function<void(BeamSearchOptions&)>& change, const std::string& needle) {
    BeamSearchOptions o = base_options();
    change(o);
    HashDecoder decoder(logits, {1});
    expect_invalid([&] { beam_search(decoder, {3}, o); }, needle);
    HashDecoder greedy_decoder(logits, {1});
    expect_invalid([&] { greedy_search(greedy_decoder, {3}, o); }, needle);
  };
  check([](BeamSearchOptions& o) { o.beam_size = 0; }, "beam_size");
  check([](BeamSearchOptions& o) { o.n_best = 5; }, "n_best");
  check([](BeamSearchOptions& o) { o.n_best = 0; }, "n_best");
  check([](BeamSearchOptions& o) { o.length_penalty = std::nan(""); }, "length_penalty");
  check([](BeamSearchOptions& o) { o.max_len_a = -1.0; }, "max_len_a");
  check([](BeamSearchOptions& o) { o.max_len_b = std::numeric_limits<double>::infinity(); }, "max_len_b");
  check([](BeamSearchOptions& o) { o.min_length = -1; }, "min_length");
  check([](BeamSearchOptions& o) { o.bos_id = 7; }, "bos_id");
  check([](BeamSearchOptions& o) { o.eos_id = -1; }, "eos_id");
  check([](BeamSearchOptions& o) { o.pad_id = 9; }, "pad_id");
  check([](BeamSearchOptions& o) { o.pad_id = kEos; }, "must differ");
  check([](BeamSearchOptions& o) { o.stop = static_cast<StopRule>(7); }, "stop");
  check([](BeamSearchOptions& o) { o.min_length = 5; o.max_len_b = 4.0; }, "max length");
  // A source length below 0.
  BeamSearchOptions o = base_options();
  HashDecoder decoder(logits, {1});
  expect_invalid([&] { beam_search(decoder, {-1}, o); }, "source length");
}

// A decoder that gives fixed values for every row.
class ConstantDecoder : public StepDecoder {
 public:
  explicit ConstantDecoder(std::vector<float> values) : values_(std::move(values)) {}
  int64_t vocab_size() const override { return static_cast<int64_t>(values_.size()); }
  void log_probs(const int32_t*, int64_t rows, float* out) override {
    for (int64_t r = 0; r < rows; ++r) std::copy(values_.begin(), values_.end(), out + r * vocab_size());
  }
  void reorder(const int64_t*, int64_t) override {}

 private:
  std::vector<float> values_;
};

TEST(BeamSearch, BadDecoderOutputIsAnError) {
  const float inf = std::numeric_limits<float>::infinity();
  BeamSearchOptions o = base_options();
  for (const auto& values : {std::vector<float>{-1, -1, -1, -1, std::nanf("")}, std::vector<float>{-1, -1, -1, -1, inf},
                             std::vector<float>{-1, -1, -1, -1, 0.5f}}) {
    ConstantDecoder decoder(values);
    expect_invalid([&] { beam_search(decoder, {2}, o); }, "log-probability");
    expect_invalid([&] { greedy_search(decoder, {2}, o); }, "log-probability");
  }
  // Only pad and bos are possible: no allowed token has a finite log-probability.
  ConstantDecoder stuck({-inf, -inf, -0.5f, -1.0f, -inf});
  expect_invalid([&] { beam_search(stuck, {2}, o); }, "no token");
  expect_invalid([&] { greedy_search(stuck, {2}, o); }, "no token");
}

}  // namespace
}  // namespace seq2seq
}  // namespace fwp
