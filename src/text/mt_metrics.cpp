#include "text/mt_metrics.h"

#include <cmath>
#include <string>
#include <unordered_map>

#include "core/error.h"
#include "text/word_tokenizer.h"

namespace fwp {

size_t invalid_utf8_offset(std::string_view text) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = byte(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    unsigned char low = 0x80, high = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3;
      if (c == 0xe0) low = 0xa0;   // no overlong 3-byte forms
      if (c == 0xed) high = 0x9f;  // no surrogates U+D800..U+DFFF
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4;
      if (c == 0xf0) low = 0x90;   // no overlong 4-byte forms
      if (c == 0xf4) high = 0x8f;  // nothing above U+10FFFF
    } else {
      return i;  // a continuation byte, an overlong 2-byte lead (C0, C1) or F5..FF
    }
    if (i + 1 >= text.size() || byte(i + 1) < low || byte(i + 1) > high) return i;
    for (size_t k = 2; k < length; ++k) {
      if (i + k >= text.size() || (byte(i + k) & 0xc0) != 0x80) return i;
    }
    i += length;
  }
  return std::string_view::npos;
}

void check_utf8(std::string_view text, const std::string& what) {
  const size_t bad = invalid_utf8_offset(text);
  require(bad == std::string_view::npos, FWP_ERR_INVALID_ARGUMENT,
          what + " is not valid UTF-8 (byte " + std::to_string(bad) + ")");
}

namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  size_t start = 0, hit;
  while ((hit = s.find(from, start)) != std::string::npos) {
    out.append(s, start, hit - start).append(to);
    start = hit + from.size();
  }
  out.append(s, start, std::string::npos);
  s.swap(out);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// The character class of 13a's first rule, [\{-\~\[-\` -\&\(-\+\:-\@\/]:
// ASCII symbols and punctuation except ' - . , (and the space, harmless).
bool is_13a_symbol(char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') || (c >= '(' && c <= '+') ||
         (c >= ':' && c <= '@') || c == '/';
}

// Python's ' '.join(line.split()).
std::string normalise_spaces(std::string_view line) {
  std::string out;
  for_each_word(line, [&](std::string_view word) {
    if (!out.empty()) out.push_back(' ');
    out.append(word);
  });
  return out;
}

// Python's str.rstrip(): the text without trailing whitespace.
std::string_view rstrip(std::string_view line) {
  size_t end = 0, i = 0;
  while (i < line.size()) {
    const size_t ws = whitespace_bytes(line.substr(i));
    if (ws > 0) {
      i += ws;
    } else {
      ++i;
      end = i;
    }
  }
  return line.substr(0, end);
}

std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  for_each_word(line, [&](std::string_view w) { words.push_back(w); });
  return words;
}

using NgramCounts = std::unordered_map<std::string, int64_t>;

// The n-grams of one order of a word list, keyed by the words joined with spaces (words hold no whitespace).
NgramCounts word_ngrams(const std::vector<std::string_view>& words, int n) {
  NgramCounts counts;
  if (static_cast<int64_t>(words.size()) < n) return counts;
  for (size_t i = 0; i + n <= words.size(); ++i) {
    std::string key(words[i]);
    for (int k = 1; k < n; ++k) key.append(" ").append(words[i + k]);
    ++counts[key];
  }
  return counts;
}

void check_inputs(const std::vector<std::string_view>& hypotheses,
                  const std::vector<std::vector<std::string_view>>& references) {
  require(!hypotheses.empty(), FWP_ERR_INVALID_ARGUMENT, "there must be at least one hypothesis");
  require(!references.empty(), FWP_ERR_INVALID_ARGUMENT, "there must be at least one reference stream");
  for (size_t i = 0; i < hypotheses.size(); ++i) check_utf8(hypotheses[i], "hypotheses[" + std::to_string(i) + "]");
  for (size_t r = 0; r < references.size(); ++r) {
    require(references[r].size() == hypotheses.size(), FWP_ERR_SHAPE_MISMATCH,
            "references[" + std::to_string(r) + "] has " + std::to_string(references[r].size()) +
                " lines but there are " + std::to_string(hypotheses.size()) + " hypotheses");
    for (size_t i = 0; i < references[r].size(); ++i) {
      check_utf8(references[r][i], "references[" + std::to_string(r) + "][" + std::to_string(i) + "]");
    }
  }
}

// ---- BLEU (sacrebleu metrics/bleu.py) ---------------------------------------------

// BLEU._preprocess_segment without lowercasing: rstrip, then the tokenizer.
std::string bleu_preprocess(std::string_view line, BleuTokenizer tokenizer) {
  const std::string_view stripped = rstrip(line);
  return tokenizer == BleuTokenizer::Mteval13a ? tokenize_13a(stripped) : std::string(stripped);
}

// sacrebleu's my_log: log, with log(0) floored to -9999999999.
double floored_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

// BLEU.compute_bleu from the corpus sums.
BleuScore compute_bleu(const int64_t* correct, const int64_t* total, int64_t sys_len, int64_t ref_len,
                       const BleuOptions& o) {
  BleuScore s;
  const int order = o.max_ngram_order;
  for (int n = 0; n < order; ++n) {
    s.counts[n] = correct[n];
    s.totals[n] = total[n];
  }
  s.hyp_len = sys_len;
  s.ref_len = ref_len;
  s.ratio = ref_len ? static_cast<double>(sys_len) / static_cast<double>(ref_len) : 0.0;
  s.brevity_penalty = 1.0;
  if (sys_len < ref_len) {
    s.brevity_penalty =
        sys_len > 0 ? std::exp(1.0 - static_cast<double>(ref_len) / static_cast<double>(sys_len)) : 0.0;
  }
  bool any_match = false;
  for (int n = 0; n < order; ++n) any_match = any_match || correct[n] != 0;
  if (!any_match) return s;  // score 0, precisions 0 (sacrebleu's early stop)

  double smooth_value = o.smooth_value;
  if (smooth_value < 0) smooth_value = o.smoothing == BleuSmoothing::Floor ? 0.1 : 1.0;
  double smooth_mteval = 1.0;
  int effective_order = order;
  for (int n = 1; n <= order; ++n) {
    double c = static_cast<double>(correct[n - 1]), t = static_cast<double>(total[n - 1]);
    if (o.smoothing == BleuSmoothing::AddK && n > 1) {
      c += smooth_value;
      t += smooth_value;
    }
    if (t == 0) break;
    if (o.effective_order) effective_order = n;
    if (c == 0) {
      if (o.smoothing == BleuSmoothing::Exp) {
        smooth_mteval *= 2;
        s.precisions[n - 1] = 100.0 / (smooth_mteval * t);
      } else if (o.smoothing == BleuSmoothing::Floor) {
        s.precisions[n - 1] = 100.0 * smooth_value / t;
      }
    } else {
      s.precisions[n - 1] = 100.0 * c / t;
    }
  }
  double log_sum = 0;
  for (int n = 0; n < effective_order; ++n) log_sum += floored_log(s.precisions[n]);
  s.score = s.brevity_penalty * std::exp(log_sum / effective_order);
  return s;
}

// ---- chrF (sacrebleu metrics/chrf.py) ----------------------------------------------

// Byte offsets of the code points of valid UTF-8 text, plus its size at the end.
std::vector<size_t> code_point_starts(std::string_view text) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) starts.push_back(i);
  }
  starts.push_back(text.size());
  return starts;
}

// helpers.extract_all_char_ngrams: n-grams of code points, whitespace removed unless kept.
std::vector<NgramCounts> char_ngrams(std::string_view line, int max_order, bool keep_whitespace) {
  std::string text;
  if (keep_whitespace) {
    text.assign(line);
  } else {
    for_each_word(line, [&](std::string_view w) { text.append(w); });
  }
  const std::vector<size_t> starts = code_point_starts(text);
  const size_t length = starts.size() - 1;
  std::vector<NgramCounts> all(max_order);
  for (int n = 1; n <= max_order; ++n) {
    for (size_t i = 0; i + n <= length; ++i) ++all[n - 1][text.substr(starts[i], starts[i + n] - starts[i])];
  }
  return all;
}

bool is_ascii_punctuation(char c) {
  return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

// CHRF._remove_punctuation: a punctuation mark at the end of a word (else at its start) becomes its own word.
std::vector<std::string_view> chrf_words(std::string_view line) {
  std::vector<std::string_view> words;
  for_each_word(line, [&](std::string_view w) {
    const bool one_character = code_point_starts(w).size() == 2;
    if (one_character) {
      words.push_back(w);
    } else if (is_ascii_punctuation(w.back())) {
      words.push_back(w.substr(0, w.size() - 1));
      words.push_back(w.substr(w.size() - 1));
    } else if (is_ascii_punctuation(w.front())) {
      words.push_back(w.substr(0, 1));
      words.push_back(w.substr(1));
    } else {
      words.push_back(w);
    }
  });
  return words;
}

std::vector<NgramCounts> chrf_ngrams(std::string_view line, const ChrfOptions& o) {
  std::vector<NgramCounts> all = char_ngrams(line, o.char_order, o.whitespace);
  if (o.word_order > 0) {
    const std::vector<std::string_view> words = chrf_words(line);
    for (int n = 1; n <= o.word_order; ++n) all.push_back(word_ngrams(words, n));
  }
  return all;
}

// CHRF._compute_f_score over [hyp, ref, match] triples of every order.
double chrf_f_score(const std::vector<int64_t>& stats, const ChrfOptions& o) {
  const double eps = 1e-16;
  const int order = o.char_order + o.word_order;
  const double factor = o.beta * o.beta;
  double score = 0, avg_prec = 0, avg_rec = 0;
  int effective_order = 0;
  for (int i = 0; i < order; ++i) {
    const int64_t n_hyp = stats[3 * i], n_ref = stats[3 * i + 1], n_match = stats[3 * i + 2];
    const double prec = n_hyp > 0 ? static_cast<double>(n_match) / static_cast<double>(n_hyp) : eps;
    const double rec = n_ref > 0 ? static_cast<double>(n_match) / static_cast<double>(n_ref) : eps;
    const double denom = factor * prec + rec;
    score += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
    if (n_hyp > 0 && n_ref > 0) {
      avg_prec += prec;
      avg_rec += rec;
      ++effective_order;
    }
  }
  if (o.eps_smoothing) return 100 * score / order;
  if (effective_order == 0) {
    avg_prec = avg_rec = 0;
  } else {
    avg_prec /= effective_order;
    avg_rec /= effective_order;
  }
  if (avg_prec + avg_rec == 0) return 0.0;
  double f = (1 + factor) * avg_prec * avg_rec;
  f /= (factor * avg_prec) + avg_rec;
  return 100 * f;
}

}  // namespace

std::string tokenize_13a(std::string_view input) {
  std::string line(input);
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  line = " " + line + " ";

  // The four regular expressions of TokenizerRegexp, each applied as re.sub
  // does: left to right, a match consumes its characters. They look at ASCII
  // only, so working on UTF-8 bytes gives the same result as on characters
  // ([^0-9] matches the last byte of a multi-byte character where Python
  // matches the character, and no other rule can start inside one).
  std::string a;
  a.reserve(line.size() * 2);
  for (char c : line) {  // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> ' \1 '
    if (is_13a_symbol(c)) {
      a.push_back(' ');
      a.push_back(c);
      a.push_back(' ');
    } else {
      a.push_back(c);
    }
  }
  const auto period_or_comma = [](char c) { return c == '.' || c == ','; };
  std::string b;
  b.reserve(a.size() * 2);
  for (size_t i = 0; i < a.size();) {  // ([^0-9])([\.,]) -> '\1 \2 '
    if (i + 1 < a.size() && !is_digit(a[i]) && period_or_comma(a[i + 1])) {
      b.push_back(a[i]);
      b.push_back(' ');
      b.push_back(a[i + 1]);
      b.push_back(' ');
      i += 2;
    } else {
      b.push_back(a[i++]);
    }
  }
  std::string c;
  c.reserve(b.size() * 2);
  for (size_t i = 0; i < b.size();) {  // ([\.,])([^0-9]) -> ' \1 \2'
    if (i + 1 < b.size() && period_or_comma(b[i]) && !is_digit(b[i + 1])) {
      c.push_back(' ');
      c.push_back(b[i]);
      c.push_back(' ');
      c.push_back(b[i + 1]);
      i += 2;
    } else {
      c.push_back(b[i++]);
    }
  }
  std::string d;
  d.reserve(c.size() * 2);
  for (size_t i = 0; i < c.size();) {  // ([0-9])(-) -> '\1 \2 '
    if (i + 1 < c.size() && is_digit(c[i]) && c[i + 1] == '-') {
      d.push_back(c[i]);
      d.push_back(' ');
      d.push_back('-');
      d.push_back(' ');
      i += 2;
    } else {
      d.push_back(c[i++]);
    }
  }
  return normalise_spaces(d);
}

BleuScore corpus_bleu(const std::vector<std::string_view>& hypotheses,
                      const std::vector<std::vector<std::string_view>>& references, const BleuOptions& options) {
  require(options.max_ngram_order >= 1 && options.max_ngram_order <= kBleuMaxNgramOrder, FWP_ERR_INVALID_ARGUMENT,
          "max_ngram_order must be in [1, " + std::to_string(kBleuMaxNgramOrder) + "] (got " +
              std::to_string(options.max_ngram_order) + ")");
  require(std::isfinite(options.smooth_value), FWP_ERR_INVALID_ARGUMENT, "smooth_value must be finite");
  check_inputs(hypotheses, references);
  const int order = options.max_ngram_order;
  int64_t correct[kBleuMaxNgramOrder] = {}, total[kBleuMaxNgramOrder] = {};
  int64_t sys_len = 0, ref_len = 0;
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    // BLEU._extract_reference_info: each n-gram's largest count in any reference.
    std::vector<NgramCounts> ref_max(order);
    std::vector<int64_t> ref_lens;
    for (const auto& stream : references) {
      const std::string ref = bleu_preprocess(stream[i], options.tokenizer);
      const std::vector<std::string_view> words = split_words(ref);
      ref_lens.push_back(static_cast<int64_t>(words.size()));
      for (int n = 1; n <= order; ++n) {
        for (const auto& [ngram, count] : word_ngrams(words, n)) {
          int64_t& best = ref_max[n - 1][ngram];
          if (count > best) best = count;
        }
      }
    }
    const std::string hyp = bleu_preprocess(hypotheses[i], options.tokenizer);
    const std::vector<std::string_view> words = split_words(hyp);
    const int64_t hyp_len = static_cast<int64_t>(words.size());
    // BLEU._get_closest_ref_len: the closest length, the shorter one on a tie.
    int64_t closest_diff = -1, closest_len = -1;
    for (int64_t len : ref_lens) {
      const int64_t diff = len > hyp_len ? len - hyp_len : hyp_len - len;
      if (closest_diff == -1 || diff < closest_diff) {
        closest_diff = diff;
        closest_len = len;
      } else if (diff == closest_diff && len < closest_len) {
        closest_len = len;
      }
    }
    sys_len += hyp_len;
    ref_len += closest_len;
    for (int n = 1; n <= order; ++n) {
      for (const auto& [ngram, count] : word_ngrams(words, n)) {
        total[n - 1] += count;
        const auto hit = ref_max[n - 1].find(ngram);
        if (hit != ref_max[n - 1].end()) correct[n - 1] += count < hit->second ? count : hit->second;
      }
    }
  }
  return compute_bleu(correct, total, sys_len, ref_len, options);
}

ChrfScore corpus_chrf(const std::vector<std::string_view>& hypotheses,
                      const std::vector<std::vector<std::string_view>>& references, const ChrfOptions& options) {
  const auto order_in_range = [](int v) { return v >= 0 && v <= kChrfMaxOrder; };
  require(order_in_range(options.char_order), FWP_ERR_INVALID_ARGUMENT,
          "char_order must be in [0, " + std::to_string(kChrfMaxOrder) + "] (got " +
              std::to_string(options.char_order) + ")");
  require(order_in_range(options.word_order), FWP_ERR_INVALID_ARGUMENT,
          "word_order must be in [0, " + std::to_string(kChrfMaxOrder) + "] (got " +
              std::to_string(options.word_order) + ")");
  require(options.char_order + options.word_order >= 1, FWP_ERR_INVALID_ARGUMENT,
          "char_order + word_order must be at least 1");
  require(std::isfinite(options.beta) && options.beta >= 0, FWP_ERR_INVALID_ARGUMENT,
          "beta must be finite and >= 0 (got " + std::to_string(options.beta) + ")");
  check_inputs(hypotheses, references);
  const size_t orders = static_cast<size_t>(options.char_order + options.word_order);
  std::vector<int64_t> sums(3 * orders, 0);
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    const std::vector<NgramCounts> hyp = chrf_ngrams(hypotheses[i], options);
    // CHRF._compute_segment_statistics: the statistics of the reference with the best F-score (the first on a tie).
    std::vector<int64_t> best;
    double best_f = -1.0;
    for (const auto& stream : references) {
      const std::vector<NgramCounts> ref = chrf_ngrams(stream[i], options);
      std::vector<int64_t> stats(3 * orders, 0);
      for (size_t n = 0; n < orders; ++n) {
        int64_t hyp_count = 0, ref_count = 0, match = 0;
        for (const auto& [ngram, count] : hyp[n]) {
          hyp_count += count;
          const auto hit = ref[n].find(ngram);
          if (hit != ref[n].end()) match += count < hit->second ? count : hit->second;
        }
        for (const auto& entry : ref[n]) ref_count += entry.second;
        stats[3 * n] = ref[n].empty() ? 0 : hyp_count;  // sacrebleu counts no hypothesis n-grams then
        stats[3 * n + 1] = ref_count;
        stats[3 * n + 2] = match;
      }
      const double f = chrf_f_score(stats, options);
      if (f > best_f) {
        best_f = f;
        best = stats;
      }
    }
    for (size_t k = 0; k < sums.size(); ++k) sums[k] += best[k];
  }
  ChrfScore score;
  score.score = chrf_f_score(sums, options);
  return score;
}

}  // namespace fwp
