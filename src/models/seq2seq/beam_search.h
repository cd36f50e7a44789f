// Beam search and greedy decoding for sequence-to-sequence models, generic
// over a step decoder (no model here: the seq2seq model implements
// StepDecoder and its translate function calls these).
//
// Rows. The decoder holds one state per row. At the start it holds one row
// per sentence (row i = sentence i, nothing fed yet). Each step the search
// feeds every row its last token (bos first) and reads the log-probabilities
// of the next token; it then calls reorder() with, for every new row, the old
// row it continues (a gather: a row may be copied into several new rows, and
// rows of finished hypotheses and finished sentences are dropped), so the
// number of rows grows to the beam after the first step and shrinks as
// sentences finish. reorder() is only called when the rows change.
//
// Scores follow fairseq's SequenceGenerator: hypotheses are ranked while open
// by the sum of their log-probabilities; a finished hypothesis (eos chosen)
// scores sum / length^length_penalty, its length counting the eos. Tokens are
// never <pad> or <bos>; eos is refused before min_length tokens and forced
// after max_length = floor(max_len_a * source_length + max_len_b) tokens, so
// every hypothesis has between min_length and max_length tokens before its
// eos.
//
// Each step, per sentence, the candidates (open hypothesis, next token) are
// ranked by their sum (ties: lower row, then lower token). An eos candidate
// among the first beam_size of the ranking finishes a hypothesis; the first
// beam_size candidates that are not eos stay open. Stopping rules:
//   kBeamFinished (fairseq's, the default): a sentence is done as soon as it
//     has beam_size finished hypotheses, even if an open one could still beat
//     them (fairseq's early_stop; with length penalty > 0 a longer open
//     hypothesis may score better in the end).
//   kNoBetterOpen: a sentence is done when it has n_best finished
//     hypotheses and no open hypothesis can reach a score above the
//     n_best-th best of them (with n_best = beam_size: "beam finished
//     hypotheses that no open one can beat"). Log-probabilities are <= 0, so
//     an open hypothesis of sum s with L tokens can at best keep s and
//     finish with a length (eos counted) in [L + 1, max_length + 1]: its
//     bound is s / max((L+1)^p, (max_length+1)^p). So the result is the one
//     this beam would give run to max length, in fewer steps; with a beam
//     wide enough to prune nothing it is exactly the n best sequences of an
//     exhaustive search.
// A sentence is also done when no open hypothesis is left (every one reached
// max_length and had to end). Finished hypotheses beyond beam_size are kept
// (they can only help); the n_best best by score are returned, ties by the
// order they finished.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fwp {
namespace seq2seq {

// What a sequence-to-sequence model gives the search: one decoding step for
// many rows at once, and a gather of its per-row state.
class StepDecoder {
 public:
  virtual ~StepDecoder() = default;
  // Size of the output vocabulary: every token id is below it.
  virtual int64_t vocab_size() const = 0;
  // Feeds last_tokens[r] to row r (r < rows, the current number of rows),
  // advances every row by one position and writes the log-probabilities of
  // the next token to out[r * vocab_size() + t]. Values must be <= 0 or
  // -inf (a token that cannot come); NaN or +inf is an error.
  virtual void log_probs(const int32_t* last_tokens, int64_t rows, float* out) = 0;
  // Makes the state of new row i a copy of old row parent_rows[i], for
  // i < rows (the new number of rows); every per-row state moves: fast
  // weights, key/value caches, cross-attention states, positions.
  virtual void reorder(const int64_t* parent_rows, int64_t rows) = 0;
};

enum class StopRule { kBeamFinished, kNoBetterOpen };

struct BeamSearchOptions {
  int64_t beam_size = 4;        // >= 1
  int64_t n_best = 1;           // hypotheses returned per sentence, in [1, beam_size]
  double length_penalty = 1.0;  // p in sum / length^p; finite (0: raw sum; < 0 favours short outputs)
  double max_len_a = 0.0;       // max_length = floor(a * source_length + b); a finite and >= 0
  double max_len_b = 200.0;     // finite; every max_length must be >= min_length
  int64_t min_length = 1;       // >= 0: tokens before eos at least
  StopRule stop = StopRule::kBeamFinished;
  int32_t bos_id = -1;  // fed first, never generated; in [0, vocab)
  int32_t eos_id = -1;  // ends a hypothesis; in [0, vocab)
  int32_t pad_id = -1;  // never generated; in [0, vocab), or -1 for a vocabulary without one
};

struct Hypothesis {
  std::vector<int32_t> tokens;  // the generated tokens, without bos and the final eos
  double log_prob = 0.0;        // sum of the log-probabilities, the eos included
  double score = 0.0;           // log_prob / (tokens.size() + 1)^length_penalty
};

// Throws Error(FWP_ERR_INVALID_ARGUMENT) naming the bad field after `prefix`
// (the C API passes "search->", the name its caller knows).
void validate_search_options(const BeamSearchOptions& options, int64_t vocab_size,
                             const std::string& prefix = "beam search: ");

// The token limit of a sentence: floor(a * source_length + b). Throws
// Error(FWP_ERR_INVALID_ARGUMENT) when below min_length, negative, or too large.
int64_t max_output_length(const BeamSearchOptions& options, int64_t source_length);

// Beam search over the sentences whose source lengths are given (one row
// per sentence in `decoder` at the start). Returns, per sentence, its n_best
// hypotheses, best first (fewer only when the search finished fewer: a tiny
// vocabulary or max length). Throws Error(FWP_ERR_INVALID_ARGUMENT) for bad
// options, source lengths < 0, or log-probabilities that are NaN or +inf or
// leave a sentence with no finite candidate.
std::vector<std::vector<Hypothesis>> beam_search(StepDecoder& decoder, const std::vector<int64_t>& source_lengths,
                                                 const BeamSearchOptions& options);

// Greedy decoding: the most likely allowed token each step (lowest id among
// ties), with the same rules for pad, bos, min_length and max_length; one
// row per sentence throughout (finished sentences' rows are dropped by
// reorder()). beam_size, n_best and stop are not used. The same output as
// beam_search with beam_size 1 and kBeamFinished, without the ranking.
std::vector<Hypothesis> greedy_search(StepDecoder& decoder, const std::vector<int64_t>& source_lengths,
                                      const BeamSearchOptions& options);

}  // namespace seq2seq
}  // namespace fwp
