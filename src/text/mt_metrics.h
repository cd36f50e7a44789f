// Corpus BLEU and chrF as the sacrebleu package (PyPI) computes them, for
// scoring machine translation (fwp/metrics.h is the C API). Texts are UTF-8;
// every function that takes texts checks them first and throws
// Error(FWP_ERR_INVALID_ARGUMENT) naming the first invalid one.
//
// Definitions follow sacrebleu 2.x (metrics/bleu.py, metrics/chrf.py,
// metrics/helpers.py, tokenizers/tokenizer_13a.py); the comments at each
// function say which step they reproduce. "Whitespace" is what Python's
// str.split() splits at (text/word_tokenizer.h: whitespace_bytes()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fwp {

// The byte offset of the first byte that is not valid UTF-8 as Python's
// strict decoder sees it (overlong forms, surrogates and code points above
// U+10FFFF are invalid), or std::string_view::npos if the text is valid.
size_t invalid_utf8_offset(std::string_view text);

// Throws Error(FWP_ERR_INVALID_ARGUMENT) "<what> is not valid UTF-8 (byte N)" if it is not.
void check_utf8(std::string_view text, const std::string& what);

// sacrebleu's "13a" tokenizer (mteval-v13a.pl's): drops "<skipped>", joins
// "-\n", turns newlines into spaces, decodes &quot; &amp; &lt; &gt; (in that
// order), splits off ASCII punctuation and symbols except ' - . ,; splits a
// period or comma off unless it is between digits; splits a dash off after a
// digit; then one space between tokens. The input must be valid UTF-8.
std::string tokenize_13a(std::string_view line);

constexpr int kBleuMaxNgramOrder = 4;

enum class BleuTokenizer { Mteval13a, None };
enum class BleuSmoothing { Exp, None, Floor, AddK };

struct BleuOptions {
  BleuTokenizer tokenizer = BleuTokenizer::Mteval13a;
  BleuSmoothing smoothing = BleuSmoothing::Exp;  // sacrebleu's default, mteval's "method 3"
  double smooth_value = -1;                      // floor and add-k; < 0: their defaults 0.1 and 1
  int max_ngram_order = kBleuMaxNgramOrder;      // 1..kBleuMaxNgramOrder
  bool effective_order = false;                  // leave out orders from the first without n-grams
};

struct BleuScore {
  double score = 0;                                // 0..100
  double precisions[kBleuMaxNgramOrder] = {};      // percent; orders above max_ngram_order stay 0
  double brevity_penalty = 0;
  double ratio = 0;                                // hyp_len / ref_len (0 if ref_len is 0)
  int64_t hyp_len = 0, ref_len = 0;                // tokens; ref_len sums the closest reference lengths
  int64_t counts[kBleuMaxNgramOrder] = {};         // matched n-grams of each order (before add-k)
  int64_t totals[kBleuMaxNgramOrder] = {};         // hypothesis n-grams of each order (before add-k)
};

// Corpus BLEU of hypotheses[i] against references[r][i] for every stream r
// (every stream as long as the hypotheses). Validates the options and the
// texts (Error(FWP_ERR_INVALID_ARGUMENT) naming "hypotheses[i]" or
// "references[r][i]").
BleuScore corpus_bleu(const std::vector<std::string_view>& hypotheses,
                      const std::vector<std::vector<std::string_view>>& references, const BleuOptions& options);

struct ChrfOptions {
  int char_order = 6;          // character n-grams 1..char_order (0..kChrfMaxOrder)
  int word_order = 0;          // word n-grams 1..word_order (0..kChrfMaxOrder); 2 is chrF++
  double beta = 2;             // recall weight, finite and >= 0
  bool whitespace = false;     // keep whitespace inside character n-grams (sacrebleu removes it)
  bool eps_smoothing = false;  // average the orders' F-scores with epsilon smoothing (chrF++.py's way)
};
constexpr int kChrfMaxOrder = 32;

struct ChrfScore {
  double score = 0;  // 0..100
};

// Corpus chrF, arguments and errors as corpus_bleu().
ChrfScore corpus_chrf(const std::vector<std::string_view>& hypotheses,
                      const std::vector<std::vector<std::string_view>>& references, const ChrfOptions& options);

}  // namespace fwp
