// The word-level tokenizer of the WikiText conventions (fwp/text.h states
// them; the authors' utils/vocabulary.py with the wt103 settings: special
// <eos> first, no lower-casing, Counter.most_common order).
//
// Payload in a tokenizer file (text/tokenizer.h), little-endian:
//   u32 V (vocabulary size), u32 unk_id, then V times (u32 length, bytes).
// Id 0 is "<eos>", unk_id is "<unk>"; every token is 1..FWP_MAX_WORD_BYTES
// bytes without whitespace, and no token appears twice.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/tokenizer.h"

namespace fwp {

// Bytes of the whitespace character starting at text[0] (0 if it is none):
// ASCII whitespace, U+001C..U+001F and the Unicode spaces of Python's
// str.isspace() in UTF-8 (U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028,
// U+2029, U+202F, U+205F, U+3000).
size_t whitespace_bytes(std::string_view text);

// Calls f(word) for each whitespace-separated word of a line.
template <typename F>
void for_each_word(std::string_view line, F&& f) {
  size_t i = 0, start = 0;
  bool in_word = false;
  while (i < line.size()) {
    const size_t ws = whitespace_bytes(line.substr(i));
    if (ws > 0) {
      if (in_word) f(line.substr(start, i - start));
      in_word = false;
      i += ws;
    } else {
      if (!in_word) start = i;
      in_word = true;
      ++i;
    }
  }
  if (in_word) f(line.substr(start));
}

class WordTokenizer final : public Tokenizer {
 public:
  static constexpr const char* kEos = "<eos>";
  static constexpr const char* kUnk = "<unk>";

  // Counts the words of the files (read line by line, in order) and builds
  // the vocabulary: min_count >= 1, max_size 0 (no limit) or >= 2.
  // Error(FWP_ERR_INVALID_ARGUMENT) for files without a word or a vocabulary
  // over kMaxVocabSize; I/O and line errors from LineReader.
  static std::unique_ptr<WordTokenizer> train(const std::vector<std::string>& paths, int64_t min_count,
                                              int64_t max_size);
  // Parses and validates a payload; Error(FWP_ERR_FORMAT) naming the problem.
  static std::unique_ptr<WordTokenizer> from_payload(std::string_view payload);

  fwp_tokenizer_kind kind() const override { return FWP_TOKENIZER_WORD; }
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  int32_t eos_id() const override { return 0; }
  int32_t unk_id() const override { return unk_id_; }
  int32_t token_to_id(std::string_view token) const override;
  const std::string& id_to_token(int32_t id) const override { return tokens_[static_cast<size_t>(id)]; }
  void encode_line(std::string_view line, std::vector<int32_t>& out) const override;
  void decode_line(const int32_t* ids, size_t n, std::string& out) const override;
  std::string payload() const override;

 private:
  // tokens: the vocabulary in id order (tokens[0] == "<eos>", tokens[unk_id] == "<unk>"), already valid.
  WordTokenizer(std::vector<std::string> tokens, int32_t unk_id);

  std::vector<std::string> tokens_;
  int32_t unk_id_;
  // Keys view the strings of tokens_, which never change after construction.
  std::unordered_map<std::string_view, int32_t> ids_;
};

}  // namespace fwp
