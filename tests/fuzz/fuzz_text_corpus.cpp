// Fuzz target for the text readers behind `fwp lm prepare`
// (fwp_tokenizer_train_word and fwp_token_file_encode): the bounded line
// reader (text/line_reader.h), the word vocabulary's training
// (text/word_tokenizer.h) and the token-file encoder (text/token_file.h).
//
// Each input is a text file. The line reader, with a read chunk of 1..64
// bytes (so that lines, "\r\n" pairs and long-line limits straddle chunk
// ends) must give the same lines as the in-memory splitter, or refuse the
// first line over its limit with FWP_ERR_FORMAT. A word vocabulary trained on
// the text must save and load unchanged, the token file encoded with it must
// pass the mapping's checks and hold the ids of encoding the text in memory,
// and decoding those ids and encoding the result again must give them back.
// A finding: any other status, a crash, a sanitizer report, a hang or a huge
// allocation.
#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "text/line_reader.h"
#include "text/token_file.h"
#include "text/tokenizer.h"
#include "text/word_tokenizer.h"

namespace {

const fuzz::TempFile& text_file() {
  static const fuzz::TempFile file("text");
  return file;
}
const fuzz::TempFile& token_file() {
  static const fuzz::TempFile file("text_tokens");
  return file;
}
const fuzz::TempFile& tokenizer_file() {
  static const fuzz::TempFile file("text_tokenizer");
  return file;
}

// The line reader against the in-memory splitter.
void check_lines(std::string_view text, size_t chunk_bytes, size_t max_line_bytes) {
  std::vector<std::string> expected;
  fwp::for_each_line(text, [&](std::string_view line, bool) { expected.emplace_back(line); });
  fwp::LineReader reader(text_file().path(), "text file", max_line_bytes, chunk_bytes);
  std::string line;
  size_t n = 0;
  for (;;) {
    bool more = false;
    const bool ok = fuzz::accepts("LineReader::next", {FWP_ERR_FORMAT}, [&] { more = reader.next(line); });
    if (!ok) {
      // Refused: the next expected line must be the first one over the limit.
      fuzz::check(n < expected.size() && expected[n].size() > max_line_bytes,
                  "LineReader refused line " + std::to_string(n + 1) + ", which is within the limit");
      return;
    }
    if (!more) break;
    fuzz::check(n < expected.size(), "LineReader read more lines than the text has");
    fuzz::check(expected[n].size() <= max_line_bytes, "LineReader accepted a line over its limit");
    fuzz::check(line == expected[n], "LineReader read line " + std::to_string(n + 1) + " differently");
    fuzz::check(reader.line_number() == static_cast<int64_t>(n + 1), "LineReader's line number is wrong");
    ++n;
  }
  fuzz::check(n == expected.size(), "LineReader read fewer lines than the text has");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(bytes), size);
  text_file().write(bytes, size);
  // Chunk and line limit from the first byte (the text keeps it: it is text too).
  const unsigned char b0 = size > 0 ? bytes[0] : 0;
  check_lines(text, 1 + b0 % 64, 8 + b0 / 4);
  check_lines(text, 1u << 20, fwp::kMaxLineBytes);

  std::unique_ptr<fwp::WordTokenizer> words;
  fuzz::input_accepted =
      fuzz::accepts("WordTokenizer::train", {FWP_ERR_INVALID_ARGUMENT},
                    [&] { words = fwp::WordTokenizer::train({text_file().path()}, 1 + b0 % 3, b0 % 5 == 0 ? 0 : 2 + b0 % 7); });
  if (!fuzz::input_accepted) {
    // Only a text without words is refused.
    bool has_word = false;
    fwp::for_each_line(text, [&](std::string_view line, bool) {
      fwp::for_each_word(line, [&](std::string_view) { has_word = true; });
    });
    fuzz::check(!has_word, "WordTokenizer::train refused a text with words");
    return 0;
  }
  fwp::save_tokenizer(*words, tokenizer_file().path());
  const std::unique_ptr<fwp::Tokenizer> loaded = fwp::load_tokenizer(tokenizer_file().path());
  fuzz::check(loaded->payload() == words->payload(), "a trained vocabulary does not load unchanged");

  const int64_t count = fwp::encode_token_file(*words, text_file().path(), token_file().path());
  const fwp::MappedTokenFile mapped(token_file().path());  // verifies ids, sizes and checksum
  const std::vector<int32_t> ids = words->encode(text, true);
  fuzz::check(count == static_cast<int64_t>(ids.size()) && mapped.header().num_tokens == count,
              "the token file holds another number of tokens than encoding the text");
  fuzz::check(std::equal(ids.begin(), ids.end(), mapped.tokens()), "the token file holds other ids");
  const std::string decoded = words->decode(ids.data(), ids.size());
  fuzz::check(words->encode(decoded, true) == ids, "decoding then encoding changes the ids");
  return 0;
}

#ifdef FWP_FUZZ_REPLAY
// The seeds are plain texts committed in tests/fuzz/corpus/text_corpus/.
void write_seeds(const std::string&) {}
#endif
