// Beam search and greedy decoding over a StepDecoder (beam_search.h has the
// rules; this file follows them step by step).
#include "models/seq2seq/beam_search.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace fwp {
namespace seq2seq {
namespace {

// Far above any sentence a model translates; keeps lengths and rows in range.
constexpr int64_t kMaxOutputLength = int64_t{1} << 20;
constexpr int64_t kMaxBeamSize = int64_t{1} << 16;


// An open hypothesis: one decoder row.
struct OpenHypothesis {
  int64_t sentence = 0;
  std::vector<int32_t> tokens;
  double log_prob = 0.0;
};

// A finished hypothesis with its finishing order (ties in score keep it).
struct FinishedHypothesis {
  Hypothesis hypothesis;
  int64_t order = 0;
};

// (open row, next token) and the sum it would have.
struct Candidate {
  double log_prob;
  int64_t row;
  int32_t token;
};

bool ranks_before(const Candidate& a, const Candidate& b) {
  if (a.log_prob != b.log_prob) return a.log_prob > b.log_prob;
  if (a.row != b.row) return a.row < b.row;
  return a.token < b.token;
}

double length_normalised(double log_prob, int64_t tokens_with_eos, double length_penalty) {
  return log_prob / std::pow(static_cast<double>(tokens_with_eos), length_penalty);
}

// Whether `token` may follow a hypothesis of `length` tokens in a sentence of
// at most `max_length`.
bool allowed(int32_t token, int64_t length, int64_t max_length, const BeamSearchOptions& o) {
  if (token == o.pad_id || token == o.bos_id) return false;
  if (length >= max_length) return token == o.eos_id;  // forced end
  if (token == o.eos_id) return length >= o.min_length;
  return true;
}

// Checks one row of the decoder's output: no NaN, no +inf, nothing above 0.
void check_log_probs(const float* values, int64_t vocab, int64_t row) {
  for (int64_t t = 0; t < vocab; ++t) {
    const float v = values[t];
    if (std::isnan(v) || v > 0.0f) {
      throw Error(FWP_ERR_INVALID_ARGUMENT, "beam search: the decoder gave log-probability " + std::to_string(v) +
                                                " for token " + std::to_string(t) + " of row " + std::to_string(row) +
                                                " (must be <= 0 or -inf)");
    }
  }
}

void check_sources(const std::vector<int64_t>& source_lengths) {
  for (size_t i = 0; i < source_lengths.size(); ++i) {
    require(source_lengths[i] >= 0, FWP_ERR_INVALID_ARGUMENT,
            "beam search: source length of sentence " + std::to_string(i) + " must be >= 0 (got " +
                std::to_string(source_lengths[i]) + ")");
  }
}

[[noreturn]] void no_candidate(int64_t sentence, int64_t length) {
  throw Error(FWP_ERR_INVALID_ARGUMENT, "beam search: sentence " + std::to_string(sentence) + " has no token with a "
                                            "finite log-probability after " + std::to_string(length) +
                                            " tokens (the allowed ones are all -inf)");
}

}  // namespace

void validate_search_options(const BeamSearchOptions& o, int64_t vocab_size, const std::string& prefix) {
  const auto field = [&](const char* name) { return prefix + name; };
  require(vocab_size >= 1, FWP_ERR_INVALID_ARGUMENT,
          field("vocab_size") + " must be >= 1 (got " + std::to_string(vocab_size) + ")");
  require(o.beam_size >= 1 && o.beam_size <= kMaxBeamSize, FWP_ERR_INVALID_ARGUMENT,
          field("beam_size") + " must be in [1, " + std::to_string(kMaxBeamSize) + "] (got " +
              std::to_string(o.beam_size) + ")");
  require(o.n_best >= 1 && o.n_best <= o.beam_size, FWP_ERR_INVALID_ARGUMENT,
          field("n_best") + " must be in [1, beam_size = " + std::to_string(o.beam_size) + "] (got " +
              std::to_string(o.n_best) + ")");
  require(std::isfinite(o.length_penalty), FWP_ERR_INVALID_ARGUMENT, field("length_penalty") + " must be finite");
  require(std::isfinite(o.max_len_a) && o.max_len_a >= 0.0, FWP_ERR_INVALID_ARGUMENT,
          field("max_len_a") + " must be finite and >= 0 (got " + std::to_string(o.max_len_a) + ")");
  require(std::isfinite(o.max_len_b), FWP_ERR_INVALID_ARGUMENT, field("max_len_b") + " must be finite");
  require(o.min_length >= 0 && o.min_length <= kMaxOutputLength, FWP_ERR_INVALID_ARGUMENT,
          field("min_length") + " must be in [0, " + std::to_string(kMaxOutputLength) + "] (got " +
              std::to_string(o.min_length) + ")");
  require(o.stop == StopRule::kBeamFinished || o.stop == StopRule::kNoBetterOpen, FWP_ERR_INVALID_ARGUMENT,
          field("stop") + " is not a stopping rule");
  const auto in_vocab = [&](int32_t id) { return id >= 0 && id < vocab_size; };
  require(in_vocab(o.bos_id), FWP_ERR_INVALID_ARGUMENT,
          field("bos_id") + " must be in [0, " + std::to_string(vocab_size) + ") (got " + std::to_string(o.bos_id) +
              ")");
  require(in_vocab(o.eos_id), FWP_ERR_INVALID_ARGUMENT,
          field("eos_id") + " must be in [0, " + std::to_string(vocab_size) + ") (got " + std::to_string(o.eos_id) +
              ")");
  require(o.pad_id == -1 || in_vocab(o.pad_id), FWP_ERR_INVALID_ARGUMENT,
          field("pad_id") + " must be -1 or in [0, " + std::to_string(vocab_size) + ") (got " +
              std::to_string(o.pad_id) + ")");
  require(o.bos_id != o.eos_id && o.pad_id != o.eos_id && o.pad_id != o.bos_id, FWP_ERR_INVALID_ARGUMENT,
          field("bos_id, eos_id and pad_id") + " must differ");
}

int64_t max_output_length(const BeamSearchOptions& o, int64_t source_length) {
  const double limit = std::floor(o.max_len_a * static_cast<double>(source_length) + o.max_len_b);
  require(limit >= static_cast<double>(o.min_length) && limit <= static_cast<double>(kMaxOutputLength),
          FWP_ERR_INVALID_ARGUMENT,
          "beam search: max length floor(max_len_a * " + std::to_string(source_length) + " + max_len_b) = " +
              std::to_string(limit) + " must be in [min_length = " + std::to_string(o.min_length) + ", " +
              std::to_string(kMaxOutputLength) + "]");
  return static_cast<int64_t>(limit);
}

std::vector<std::vector<Hypothesis>> beam_search(StepDecoder& decoder, const std::vector<int64_t>& source_lengths,
                                                 const BeamSearchOptions& o) {
  const int64_t vocab = decoder.vocab_size();
  validate_search_options(o, vocab);
  check_sources(source_lengths);
  const auto sentences = static_cast<int64_t>(source_lengths.size());
  std::vector<int64_t> max_length(source_lengths.size());
  for (int64_t s = 0; s < sentences; ++s) max_length[s] = max_output_length(o, source_lengths[s]);

  std::vector<std::vector<FinishedHypothesis>> finished(source_lengths.size());
  int64_t finish_order = 0;
  // The rows, grouped by sentence in sentence order; one per sentence at the start.
  std::vector<OpenHypothesis> rows(source_lengths.size());
  for (int64_t s = 0; s < sentences; ++s) rows[s].sentence = s;

  std::vector<int32_t> last_tokens;
  std::vector<float> log_probs;
  std::vector<Candidate> candidates;
  std::vector<Candidate> best_of_row;
  std::vector<OpenHypothesis> next_rows;
  std::vector<int64_t> parents;
  std::vector<double> scores;
  const auto width = static_cast<size_t>(o.beam_size);
  while (!rows.empty()) {
    const auto row_count = static_cast<int64_t>(rows.size());
    last_tokens.resize(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) last_tokens[r] = rows[r].tokens.empty() ? o.bos_id : rows[r].tokens.back();
    log_probs.resize(rows.size() * static_cast<size_t>(vocab));  // the decoder writes every entry
    decoder.log_probs(last_tokens.data(), row_count, log_probs.data());

    next_rows.clear();
    parents.clear();
    for (int64_t first = 0; first < row_count;) {
      const int64_t sentence = rows[first].sentence;
      int64_t end = first;
      while (end < row_count && rows[end].sentence == sentence) ++end;
      const auto length = static_cast<int64_t>(rows[first].tokens.size());  // the same for all rows of a sentence

      // At most beam_size rows can end, so the first 2 * beam_size candidates hold beam_size that go
      // on, if there are. Those are among the 2 * beam_size best of each row (within a row the
      // ranking is by sum, then token, as below), so each row gives only those: one pass over the
      // vocabulary keeping the best few, instead of a sort of rows x vocabulary.
      candidates.clear();
      const size_t keep = 2 * width;
      for (int64_t r = first; r < end; ++r) {
        const float* row_values = log_probs.data() + r * vocab;
        check_log_probs(row_values, vocab, r);
        const double base = rows[r].log_prob;
        best_of_row.clear();  // sorted best first; at most `keep`
        for (int32_t t = 0; t < vocab; ++t) {
          const float v = row_values[t];
          if (v == -std::numeric_limits<float>::infinity()) continue;
          const double sum = base + static_cast<double>(v);
          if (best_of_row.size() == keep && !(sum > best_of_row.back().log_prob)) continue;  // ties: the lower token came first
          if (!allowed(t, length, max_length[sentence], o)) continue;
          if (best_of_row.size() == keep) best_of_row.pop_back();
          auto at = best_of_row.end();
          while (at != best_of_row.begin() && sum > (at - 1)->log_prob) --at;
          best_of_row.insert(at, Candidate{sum, r, t});
        }
        candidates.insert(candidates.end(), best_of_row.begin(), best_of_row.end());
      }
      const size_t ranked = std::min(candidates.size(), 2 * width);
      std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(ranked), candidates.end(),
                        ranks_before);

      auto& done_list = finished[sentence];
      const size_t kept_from = next_rows.size();
      for (size_t i = 0; i < ranked; ++i) {
        const Candidate& c = candidates[i];
        const OpenHypothesis& parent = rows[c.row];
        if (c.token == o.eos_id) {
          if (i >= width) continue;  // only an eos among the beam's best ends a hypothesis
          FinishedHypothesis f;
          f.hypothesis.tokens = parent.tokens;
          f.hypothesis.log_prob = c.log_prob;
          f.hypothesis.score = length_normalised(c.log_prob, length + 1, o.length_penalty);
          f.order = finish_order++;
          done_list.push_back(std::move(f));
        } else if (next_rows.size() - kept_from < width) {
          OpenHypothesis h;
          h.sentence = sentence;
          h.tokens = parent.tokens;
          h.tokens.push_back(c.token);
          h.log_prob = c.log_prob;
          next_rows.push_back(std::move(h));
          parents.push_back(c.row);
        }
      }
      if (done_list.empty() && next_rows.size() == kept_from) no_candidate(sentence, length);

      // Is the sentence done? Then its open rows go.
      bool done = next_rows.size() == kept_from;
      if (!done && o.stop == StopRule::kBeamFinished) {
        done = static_cast<int64_t>(done_list.size()) >= o.beam_size;
      } else if (!done && static_cast<int64_t>(done_list.size()) >= o.n_best) {
        scores.clear();
        for (const auto& f : done_list) scores.push_back(f.hypothesis.score);
        std::nth_element(scores.begin(), scores.begin() + (o.n_best - 1), scores.end(), std::greater<double>());
        const double nth_best = scores[static_cast<size_t>(o.n_best - 1)];
        // The best an open hypothesis can still score: its sum (log-probabilities are <= 0) at the most
        // favourable finishing length in [length + 2, max_length + 1] (eos counted).
        const double shortest = std::pow(static_cast<double>(length + 2), o.length_penalty);
        const double longest = std::pow(static_cast<double>(max_length[sentence] + 1), o.length_penalty);
        const double divisor = std::max(shortest, longest);
        double best_open = -std::numeric_limits<double>::infinity();
        for (size_t k = kept_from; k < next_rows.size(); ++k) {
          best_open = std::max(best_open, next_rows[k].log_prob / divisor);
        }
        done = nth_best >= best_open;
      }
      if (done) {
        next_rows.resize(kept_from);
        parents.resize(kept_from);
      }
      first = end;
    }

    bool same_rows = static_cast<int64_t>(parents.size()) == row_count;
    for (size_t i = 0; same_rows && i < parents.size(); ++i) same_rows = parents[i] == static_cast<int64_t>(i);
    if (!parents.empty() && !same_rows) decoder.reorder(parents.data(), static_cast<int64_t>(parents.size()));
    rows.swap(next_rows);
  }

  std::vector<std::vector<Hypothesis>> results(source_lengths.size());
  for (int64_t s = 0; s < sentences; ++s) {
    auto& list = finished[s];
    std::stable_sort(list.begin(), list.end(), [](const FinishedHypothesis& a, const FinishedHypothesis& b) {
      return a.hypothesis.score > b.hypothesis.score;  // stable: earlier finished first among ties
    });
    const size_t count = std::min(list.size(), static_cast<size_t>(o.n_best));
    for (size_t i = 0; i < count; ++i) results[s].push_back(std::move(list[i].hypothesis));
  }
  return results;
}

std::vector<Hypothesis> greedy_search(StepDecoder& decoder, const std::vector<int64_t>& source_lengths,
                                      const BeamSearchOptions& o) {
  const int64_t vocab = decoder.vocab_size();
  validate_search_options(o, vocab);
  check_sources(source_lengths);
  const auto sentences = static_cast<int64_t>(source_lengths.size());
  std::vector<int64_t> max_length(source_lengths.size());
  for (int64_t s = 0; s < sentences; ++s) max_length[s] = max_output_length(o, source_lengths[s]);

  std::vector<Hypothesis> results(source_lengths.size());
  std::vector<int64_t> active(source_lengths.size());  // row r decodes sentence active[r]
  std::iota(active.begin(), active.end(), int64_t{0});
  std::vector<int32_t> last_tokens;
  std::vector<float> log_probs;
  std::vector<int64_t> parents;
  std::vector<int64_t> still_active;
  while (!active.empty()) {
    const auto rows = static_cast<int64_t>(active.size());
    last_tokens.resize(active.size());
    for (size_t r = 0; r < active.size(); ++r) {
      const auto& tokens = results[active[r]].tokens;
      last_tokens[r] = tokens.empty() ? o.bos_id : tokens.back();
    }
    log_probs.assign(active.size() * static_cast<size_t>(vocab), 0.0f);
    decoder.log_probs(last_tokens.data(), rows, log_probs.data());

    parents.clear();
    still_active.clear();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t sentence = active[r];
      Hypothesis& h = results[sentence];
      const float* row_values = log_probs.data() + r * vocab;
      check_log_probs(row_values, vocab, r);
      const auto length = static_cast<int64_t>(h.tokens.size());
      int32_t best = -1;
      for (int32_t t = 0; t < vocab; ++t) {
        if (row_values[t] == -std::numeric_limits<float>::infinity()) continue;
        if (!allowed(t, length, max_length[sentence], o)) continue;
        if (best < 0 || row_values[t] > row_values[best]) best = t;  // strict: the lowest id among ties
      }
      if (best < 0) no_candidate(sentence, length);
      h.log_prob += static_cast<double>(row_values[best]);
      if (best == o.eos_id) {
        h.score = length_normalised(h.log_prob, length + 1, o.length_penalty);
      } else {
        h.tokens.push_back(best);
        parents.push_back(r);
        still_active.push_back(sentence);
      }
    }
    if (!parents.empty() && static_cast<int64_t>(parents.size()) != rows) {
      decoder.reorder(parents.data(), static_cast<int64_t>(parents.size()));
    }
    active.swap(still_active);
  }
  return results;
}

}  // namespace seq2seq
}  // namespace fwp
