#include "text/word_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "text/line_reader.h"

namespace fwp {

size_t whitespace_bytes(std::string_view t) {
  if (t.empty()) return 0;
  const auto b = [&](size_t i) { return static_cast<unsigned char>(t[i]); };
  const unsigned char c = b(0);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  if (c == 0xc2 && t.size() >= 2 && (b(1) == 0x85 || b(1) == 0xa0)) return 2;  // U+0085, U+00A0
  if (t.size() >= 3) {
    if (c == 0xe1 && b(1) == 0x9a && b(2) == 0x80) return 3;  // U+1680
    if (c == 0xe2 && b(1) == 0x80 &&
        ((b(2) >= 0x80 && b(2) <= 0x8a) || b(2) == 0xa8 || b(2) == 0xa9 || b(2) == 0xaf)) {
      return 3;  // U+2000..U+200A, U+2028, U+2029, U+202F
    }
    if (c == 0xe2 && b(1) == 0x81 && b(2) == 0x9f) return 3;  // U+205F
    if (c == 0xe3 && b(1) == 0x80 && b(2) == 0x80) return 3;  // U+3000
  }
  return 0;
}

namespace {

struct WordStats {
  int64_t count = 0;
  int64_t first = 0;  // index of the first occurrence among all words read
};

// Most frequent first; ties by first occurrence (Counter.most_common's order).
bool more_frequent(const WordStats& a, const WordStats& b) {
  return a.count != b.count ? a.count > b.count : a.first < b.first;
}

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads payload bytes in order; every read is bounded by what is left.
class PayloadReader {
 public:
  explicit PayloadReader(std::string_view data) : data_(data) {}
  uint32_t u32(const char* what) {
    need(4, what);
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return v;
  }
  std::string_view bytes(size_t n, const char* what) {
    need(n, what);
    std::string_view v = data_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  size_t left() const { return data_.size() - pos_; }

 private:
  void need(size_t n, const char* what) {
    if (left() < n) throw Error(FWP_ERR_FORMAT, std::string("the word vocabulary ends inside ") + what);
  }
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace

WordTokenizer::WordTokenizer(std::vector<std::string> tokens, int32_t unk_id)
    : tokens_(std::move(tokens)), unk_id_(unk_id) {
  ids_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], static_cast<int32_t>(i));
}

std::unique_ptr<WordTokenizer> WordTokenizer::train(const std::vector<std::string>& paths, int64_t min_count,
                                                    int64_t max_size) {
  require(min_count >= 1, FWP_ERR_INVALID_ARGUMENT,
          "config->min_count must be >= 1 (got " + std::to_string(min_count) + ")");
  require(max_size == 0 || max_size >= 2, FWP_ERR_INVALID_ARGUMENT,
          "config->max_size must be 0 (no limit) or >= 2 for <eos> and <unk> (got " + std::to_string(max_size) + ")");
  std::unordered_map<std::string, WordStats> counts;
  // <unk> collects the word "<unk>", words too long to keep, and (below) every word the cut-offs remove.
  WordStats unk{0, std::numeric_limits<int64_t>::max()};
  int64_t words_read = 0;
  std::string line;
  for (const std::string& path : paths) {
    LineReader reader(path, "text file", kMaxLineBytes);
    while (reader.next(line)) {
      for_each_word(line, [&](std::string_view word) {
        const int64_t index = words_read++;
        if (word == kEos) return;  // always id 0
        if (word == kUnk || word.size() > FWP_MAX_WORD_BYTES) {
          if (unk.count++ == 0) unk.first = index;
          return;
        }
        auto [it, inserted] = counts.try_emplace(std::string(word));
        if (inserted) it->second.first = index;
        ++it->second.count;
      });
    }
  }
  require(words_read > 0, FWP_ERR_INVALID_ARGUMENT, "the training text holds no words (empty or blank files)");

  std::vector<std::pair<std::string_view, WordStats>> ranked;
  ranked.reserve(counts.size());
  for (const auto& [word, stats] : counts) ranked.emplace_back(word, stats);
  std::sort(ranked.begin(), ranked.end(),
            [](const auto& a, const auto& b) { return more_frequent(a.second, b.second); });
  // Keep the most frequent words with count >= min_count, two places left for <eos> and <unk>.
  size_t kept = 0;
  while (kept < ranked.size() && ranked[kept].second.count >= min_count) ++kept;
  if (max_size > 0) kept = std::min(kept, static_cast<size_t>(max_size - 2));
  for (size_t i = kept; i < ranked.size(); ++i) {
    unk.first = std::min(unk.first, ranked[i].second.first);
    unk.count += ranked[i].second.count;
  }
  require(static_cast<int64_t>(kept) + 2 <= kMaxVocabSize, FWP_ERR_INVALID_ARGUMENT,
          "the text has " + std::to_string(kept) + " distinct words with count >= min_count, more than a " +
              "vocabulary of " + std::to_string(kMaxVocabSize) + " holds: set config->max_size");

  // <unk> goes where its count puts it; without any count, last.
  size_t unk_rank = kept;
  if (unk.count > 0) {
    unk_rank = 0;
    while (unk_rank < kept && more_frequent(ranked[unk_rank].second, unk)) ++unk_rank;
  }
  std::vector<std::string> tokens;
  tokens.reserve(kept + 2);
  tokens.emplace_back(kEos);
  for (size_t i = 0; i < kept; ++i) {
    if (i == unk_rank) tokens.emplace_back(kUnk);
    tokens.emplace_back(ranked[i].first);
  }
  if (unk_rank == kept) tokens.emplace_back(kUnk);
  return std::unique_ptr<WordTokenizer>(new WordTokenizer(std::move(tokens), static_cast<int32_t>(unk_rank + 1)));
}

std::unique_ptr<WordTokenizer> WordTokenizer::from_payload(std::string_view payload) {
  PayloadReader in(payload);
  const uint32_t size = in.u32("the vocabulary size");
  const uint32_t unk_id = in.u32("the <unk> id");
  require(size >= 2 && size <= kMaxVocabSize, FWP_ERR_FORMAT,
          "the word vocabulary size " + std::to_string(size) + " is outside [2, " + std::to_string(kMaxVocabSize) + "]");
  // Each token takes at least 5 bytes: the count is bounded by the payload before anything is reserved.
  require(size <= in.left() / 5, FWP_ERR_FORMAT,
          "the word vocabulary claims " + std::to_string(size) + " tokens but has only " +
              std::to_string(in.left()) + " bytes for them");
  require(unk_id >= 1 && unk_id < size, FWP_ERR_FORMAT,
          "the <unk> id " + std::to_string(unk_id) + " is outside [1, " + std::to_string(size) + ")");
  std::vector<std::string> tokens;
  tokens.reserve(size);
  std::unordered_map<std::string_view, uint32_t> seen;
  seen.reserve(size);
  for (uint32_t id = 0; id < size; ++id) {
    const uint32_t length = in.u32("a token length");
    require(length >= 1 && length <= FWP_MAX_WORD_BYTES, FWP_ERR_FORMAT,
            "token " + std::to_string(id) + " has length " + std::to_string(length) + ", outside [1, " +
                std::to_string(FWP_MAX_WORD_BYTES) + "]");
    tokens.emplace_back(in.bytes(length, "a token"));
  }
  require(in.left() == 0, FWP_ERR_FORMAT,
          "the word vocabulary has " + std::to_string(in.left()) + " bytes after its last token");
  for (uint32_t id = 0; id < size; ++id) {
    const std::string& t = tokens[id];
    for (size_t i = 0; i < t.size(); ++i) {
      require(whitespace_bytes(std::string_view(t).substr(i)) == 0, FWP_ERR_FORMAT,
              "token " + std::to_string(id) + " contains whitespace");
    }
    const bool is_eos = t == kEos, is_unk = t == kUnk;
    require(is_eos == (id == 0) && is_unk == (id == unk_id), FWP_ERR_FORMAT,
            "token " + std::to_string(id) + (is_eos || is_unk ? " is a special token out of its place"
                                                               : " should be <eos> or <unk>"));
    require(seen.emplace(t, id).second, FWP_ERR_FORMAT, "token " + std::to_string(id) + " appears twice");
  }
  return std::unique_ptr<WordTokenizer>(new WordTokenizer(std::move(tokens), static_cast<int32_t>(unk_id)));
}

int32_t WordTokenizer::token_to_id(std::string_view token) const {
  const auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

void WordTokenizer::encode_line(std::string_view line, std::vector<int32_t>& out) const {
  for_each_word(line, [&](std::string_view word) {
    const auto it = ids_.find(word);
    out.push_back(it == ids_.end() ? unk_id_ : it->second);
  });
}

void WordTokenizer::decode_line(const int32_t* ids, size_t n, std::string& out) const {
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out.push_back(' ');
    out += tokens_[static_cast<size_t>(ids[i])];
  }
}

std::string WordTokenizer::payload() const {
  std::string out;
  put_u32(out, static_cast<uint32_t>(tokens_.size()));
  put_u32(out, static_cast<uint32_t>(unk_id_));
  for (const std::string& t : tokens_) {
    put_u32(out, static_cast<uint32_t>(t.size()));
    out += t;
  }
  return out;
}

}  // namespace fwp
