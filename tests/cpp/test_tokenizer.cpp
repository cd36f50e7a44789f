// Tokenizers: the word level's WikiText conventions (frequency order, the
// places of <eos> and <unk>, cut-offs, whitespace, invalid UTF-8, line ends),
// encode/decode round trips, tokenizer files (round trip; truncations, bit
// flips and hostile payloads are FWP_ERR_FORMAT), SentencePiece training,
// determinism and round trips, and the line reader under them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "temp_files.h"
#include "text/checksum.h"
#include "text/line_reader.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/tokenizer.h"
#include "text/word_tokenizer.h"

namespace fwp {
namespace {

using test::read_bytes;
using test::TempDir;
using test::write_bytes;

std::vector<std::string> vocabulary(const Tokenizer& t) {
  std::vector<std::string> v;
  for (int32_t i = 0; i < t.vocab_size(); ++i) v.push_back(t.id_to_token(i));
  return v;
}

std::unique_ptr<WordTokenizer> train_on(const TempDir& dir, const std::vector<std::string>& texts,
                                        int64_t min_count = 1, int64_t max_size = 0) {
  std::vector<std::string> paths;
  for (size_t i = 0; i < texts.size(); ++i) {
    paths.push_back(dir.file("train" + std::to_string(i) + ".txt"));
    write_bytes(paths.back(), texts[i]);
  }
  return WordTokenizer::train(paths, min_count, max_size);
}

template <typename F>
fwp_status status_of(F&& f) {
  try {
    f();
    return FWP_OK;
  } catch (const Error& e) {
    return e.status();
  }
}

template <typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- word level: the vocabulary --------------------------------------------------------------------------

TEST(WordTokenizer, IdsFollowFrequencyThenFirstOccurrenceWithEosFirstAndUnkLast) {
  TempDir dir("fwp_tok");
  // b x4 (first at 0), a x2 (first at 1), c x1, d x2 (first at 7, after a): ties by first occurrence.
  auto t = train_on(dir, {"b a b c\n\na b b d\nd\n"});
  EXPECT_EQ(vocabulary(*t), (std::vector<std::string>{"<eos>", "b", "a", "d", "c", "<unk>"}));
  EXPECT_EQ(t->eos_id(), 0);
  EXPECT_EQ(t->unk_id(), 5);  // no word was unknown: <unk> has count 0 and comes last
}

TEST(WordTokenizer, TiesAcrossFilesFollowTheOrderOfTheFiles) {
  TempDir dir("fwp_tok");
  auto t = train_on(dir, {"x y\n", "z y x\nz\n"});  // x, y, z twice each; first seen x, y, z
  EXPECT_EQ(vocabulary(*t), (std::vector<std::string>{"<eos>", "x", "y", "z", "<unk>"}));
}

TEST(WordTokenizer, UnkInTheTextTakesItsFrequencyPlaceAsInWikiText) {
  TempDir dir("fwp_tok");
  // WikiText spells unknown words "<unk>": it is counted like a word (here 2, first at index 1).
  auto t = train_on(dir, {"x <unk> <unk> y y y\n"});
  EXPECT_EQ(vocabulary(*t), (std::vector<std::string>{"<eos>", "y", "<unk>", "x"}));
  EXPECT_EQ(t->unk_id(), 2);
  EXPECT_EQ(t->encode("<unk> y\n", true), (std::vector<int32_t>{2, 1, 0}));
}

TEST(WordTokenizer, MinCountMovesRareWordsIntoUnk) {
  TempDir dir("fwp_tok");
  const std::string text = "a a b c c c d\n";  // c 3, a 2, b 1 (index 2), d 1 (index 6)
  auto t = train_on(dir, {text}, /*min_count=*/2);
  // <unk> counts b and d (2), first at index 2: after a (2, first at 0).
  EXPECT_EQ(vocabulary(*t), (std::vector<std::string>{"<eos>", "c", "a", "<unk>"}));
  EXPECT_EQ(t->encode("d c b\n", true), (std::vector<int32_t>{3, 1, 3, 0}));
}

TEST(WordTokenizer, MaxSizeCountsTheSpecialsAndKeepsTheMostFrequent) {
  TempDir dir("fwp_tok");
  const std::string text = "a a b c c c d\n";
  auto t = train_on(dir, {text}, 1, /*max_size=*/3);
  // Only c is kept; <unk> = a + b + d = 4 occurrences, more than c's 3.
  EXPECT_EQ(vocabulary(*t), (std::vector<std::string>{"<eos>", "<unk>", "c"}));
  auto two = train_on(dir, {text}, 1, 2);
  EXPECT_EQ(vocabulary(*two), (std::vector<std::string>{"<eos>", "<unk>"}));
  auto big = train_on(dir, {text}, 1, 100);
  EXPECT_EQ(big->vocab_size(), 6);
}

TEST(WordTokenizer, BadSettingsAndEmptyCorporaAreClearErrors) {
  TempDir dir("fwp_tok");
  write_bytes(dir.file("a.txt"), "a b\n");
  EXPECT_EQ(status_of([&] { WordTokenizer::train({dir.file("a.txt")}, 0, 0); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(message_of([&] { WordTokenizer::train({dir.file("a.txt")}, 0, 0); }).find("min_count"), std::string::npos);
  EXPECT_EQ(status_of([&] { WordTokenizer::train({dir.file("a.txt")}, 1, 1); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { WordTokenizer::train({dir.file("a.txt")}, 1, -1); }), FWP_ERR_INVALID_ARGUMENT);
  for (const std::string& empty : {std::string(), std::string("\n\n  \t\n"), std::string(" ")}) {
    write_bytes(dir.file("empty.txt"), empty);
    EXPECT_EQ(status_of([&] { WordTokenizer::train({dir.file("empty.txt")}, 1, 0); }), FWP_ERR_INVALID_ARGUMENT);
    EXPECT_NE(message_of([&] { WordTokenizer::train({dir.file("empty.txt")}, 1, 0); }).find("no words"),
              std::string::npos);
  }
  EXPECT_EQ(status_of([&] { WordTokenizer::train({dir.file("missing.txt")}, 1, 0); }), FWP_ERR_IO);
  EXPECT_EQ(status_of([&] { WordTokenizer::train({dir.path()}, 1, 0); }), FWP_ERR_IO);  // a directory
}

// ---- word level: encoding and decoding --------------------------------------------------------------------

TEST(WordTokenizer, EveryLineEndIsEosAndAddEosEndsTheLastLine) {
  TempDir dir("fwp_tok");
  auto t = train_on(dir, {"a b c\n"});
  const int32_t a = t->token_to_id("a"), b = t->token_to_id("b"), c = t->token_to_id("c");
  EXPECT_EQ(t->encode("", true), std::vector<int32_t>{});
  EXPECT_EQ(t->encode("", false), std::vector<int32_t>{});
  EXPECT_EQ(t->encode("a", false), (std::vector<int32_t>{a}));
  EXPECT_EQ(t->encode("a", true), (std::vector<int32_t>{a, 0}));
  EXPECT_EQ(t->encode("a\n", false), (std::vector<int32_t>{a, 0}));
  EXPECT_EQ(t->encode("a\n", true), (std::vector<int32_t>{a, 0}));
  // Blank lines are <eos> alone; "\r\n" and a lone "\r" end lines as in Python's text files.
  EXPECT_EQ(t->encode("a\n\n  \nb\r\nc\rb", true), (std::vector<int32_t>{a, 0, 0, 0, b, 0, c, 0, b, 0}));
  // The word <eos> is the token.
  EXPECT_EQ(t->encode("a <eos> b", false), (std::vector<int32_t>{a, 0, b}));
}

TEST(WordTokenizer, UnknownWordsAreUnk) {
  TempDir dir("fwp_tok");
  auto t = train_on(dir, {"the cat sat\n"});
  const int32_t unk = t->unk_id();
  EXPECT_EQ(t->encode("the zebra sat on", false),
            (std::vector<int32_t>{t->token_to_id("the"), unk, t->token_to_id("sat"), unk}));
  EXPECT_EQ(t->token_to_id("zebra"), -1);
  EXPECT_EQ(t->token_to_id("<unk>"), unk);
  EXPECT_EQ(t->token_to_id(""), -1);
  const std::vector<int32_t> ids = t->encode("the zebra\n", true);
  EXPECT_EQ(t->decode(ids.data(), ids.size()), "the <unk>\n");
}

TEST(WordTokenizer, DecodeOfEncodeIsTheWhitespaceNormalisedText) {
  TempDir dir("fwp_tok");
  std::mt19937 rng(5);
  const std::vector<std::string> words = {"the", "a", "cat", "<unk>", "ran", ",", ".", "naïve", "über", "x"};
  const std::vector<std::string> spaces = {" ", "  ", "\t", " \t ", "\v", "\f"};
  std::string text, normalised;
  for (int line = 0; line < 300; ++line) {
    const int n = static_cast<int>(rng() % 9);
    if (rng() % 3 == 0) text += spaces[rng() % spaces.size()];  // leading whitespace
    for (int i = 0; i < n; ++i) {
      const std::string& w = words[rng() % words.size()];
      text += w;
      normalised += w;
      if (i + 1 < n) {
        text += spaces[rng() % spaces.size()];
        normalised += " ";
      }
    }
    if (rng() % 3 == 0) text += spaces[rng() % spaces.size()];  // trailing whitespace
    text += (rng() % 4 == 0) ? "\r\n" : "\n";
    normalised += "\n";
  }
  auto t = train_on(dir, {text});
  const std::vector<int32_t> ids = t->encode(text, true);
  EXPECT_EQ(t->decode(ids.data(), ids.size()), normalised);
  for (int32_t id : ids) EXPECT_NE(id, -1);
}

TEST(WordTokenizer, SplitsAtTheWhitespaceOfPythonsStrSplit) {
  TempDir dir("fwp_tok");
  // U+00A0, U+2003, U+3000, U+0085 and the separator U+001F split; U+200B (zero-width space) does not.
  const std::string text = "a\xc2\xa0" "b\xe2\x80\x83" "c\xe3\x80\x80" "d\xc2\x85" "e\x1f" "f\xe2\x80\x8bg\n";
  auto t = train_on(dir, {text});
  EXPECT_EQ(vocabulary(*t),
            (std::vector<std::string>{"<eos>", "a", "b", "c", "d", "e", "f\xe2\x80\x8bg", "<unk>"}));
  EXPECT_EQ(whitespace_bytes("\xe2\x80\x8a"), 3u);  // U+200A: the last of U+2000..U+200A
  EXPECT_EQ(whitespace_bytes("\xe2\x80\x8b"), 0u);
  EXPECT_EQ(whitespace_bytes("\xe2\x80"), 0u);  // a truncated sequence is no space
}

TEST(WordTokenizer, InvalidUtf8IsKeptAsBytes) {
  TempDir dir("fwp_tok");
  const std::string odd = "ab\xff\xfe", lone = "\xc3";  // not UTF-8
  auto t = train_on(dir, {"x " + odd + " " + lone + " x\n"});
  const int32_t id = t->token_to_id(odd);
  ASSERT_GE(id, 0);
  EXPECT_EQ(t->id_to_token(id), odd);
  const std::string text = lone + " " + odd + "\n";
  const std::vector<int32_t> ids = t->encode(text, true);
  EXPECT_EQ(ids, (std::vector<int32_t>{t->token_to_id(lone), id, 0}));
  EXPECT_EQ(t->decode(ids.data(), ids.size()), text);
}

TEST(WordTokenizer, OverlongWordsAreNeverInTheVocabulary) {
  TempDir dir("fwp_tok");
  const std::string longest(FWP_MAX_WORD_BYTES, 'w'), too_long(FWP_MAX_WORD_BYTES + 1, 'v');
  auto t = train_on(dir, {longest + " " + too_long + " " + too_long + " a\n"});
  EXPECT_GE(t->token_to_id(longest), 0);
  EXPECT_EQ(t->token_to_id(too_long), -1);
  EXPECT_EQ(t->encode(too_long, false), (std::vector<int32_t>{t->unk_id()}));
  // Counted as <unk>: twice, so before the longest kept word and a (once each).
  EXPECT_EQ(vocabulary(*t), (std::vector<std::string>{"<eos>", "<unk>", longest, "a"}));
}

TEST(WordTokenizer, DecodeRejectsIdsOutsideTheVocabulary) {
  TempDir dir("fwp_tok");
  auto t = train_on(dir, {"a b\n"});
  const int32_t bad[] = {1, static_cast<int32_t>(t->vocab_size())};
  EXPECT_EQ(status_of([&] { t->decode(bad, 2); }), FWP_ERR_OUT_OF_RANGE);
  EXPECT_NE(message_of([&] { t->decode(bad, 2); }).find("ids[1]"), std::string::npos);
  const int32_t negative[] = {-1};
  EXPECT_EQ(status_of([&] { t->decode(negative, 1); }), FWP_ERR_OUT_OF_RANGE);
  EXPECT_EQ(t->decode(bad, 0), "");
}

// ---- tokenizer files --------------------------------------------------------------------------------------

TEST(TokenizerFile, WordVocabularyRoundTrip) {
  TempDir dir("fwp_tok");
  auto t = train_on(dir, {"the cat sat on the mat\nthe dog\n\xff odd\n"}, 1, 0);
  save_tokenizer(*t, dir.file("v.tok"));
  EXPECT_EQ(test::list_dir(dir.path()).size(), 2u) << "only the text and the tokenizer: no temporary file left";
  auto back = load_tokenizer(dir.file("v.tok"));
  EXPECT_EQ(back->kind(), FWP_TOKENIZER_WORD);
  EXPECT_EQ(vocabulary(*back), vocabulary(*t));
  EXPECT_EQ(back->unk_id(), t->unk_id());
  const std::string probe = "the odd zebra\n\xff";
  EXPECT_EQ(back->encode(probe, true), t->encode(probe, true));
}

// A damaged copy of a valid file is FWP_ERR_FORMAT, whatever the damage.
// Truncations to every length below 64 bytes, in the last 64 bytes and every
// `stride`-th one between; bit flips in every `stride`-th byte.
void expect_every_damage_is_a_format_error(const std::string& path, const std::string& good, size_t stride) {
  for (size_t n = 0; n < good.size(); n += (n < 64 || n + 64 >= good.size()) ? 1 : stride) {
    write_bytes(path, good.substr(0, n));
    EXPECT_EQ(status_of([&] { load_tokenizer(path); }), FWP_ERR_FORMAT) << "truncated to " << n << " bytes";
  }
  write_bytes(path, good + "x");
  EXPECT_EQ(status_of([&] { load_tokenizer(path); }), FWP_ERR_FORMAT) << "a trailing byte";
  for (size_t i = 0; i < good.size(); i += stride) {
    for (int bit = 0; bit < 8; bit += 3) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      write_bytes(path, bad);
      EXPECT_EQ(status_of([&] { load_tokenizer(path); }), FWP_ERR_FORMAT) << "byte " << i << " bit " << bit;
    }
  }
}

TEST(TokenizerFile, TruncationsAndBitFlipsAreFormatErrors) {
  TempDir dir("fwp_tok");
  auto t = train_on(dir, {"the cat sat on the mat\nthe dog <unk>\n"});
  save_tokenizer(*t, dir.file("v.tok"));
  const std::string good = read_bytes(dir.file("v.tok"));
  expect_every_damage_is_a_format_error(dir.file("bad.tok"), good, 1);
  write_bytes(dir.file("bad.tok"), good);
  EXPECT_NO_THROW(load_tokenizer(dir.file("bad.tok")));
}

// A tokenizer file around `payload` with a correct checksum: only the payload's own checks can refuse it.
std::string word_file(const std::string& payload) {
  std::string file = "FWPTOKNZ";
  const auto le = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) file.push_back(static_cast<char>(v >> (8 * i)));
  };
  le(1, 4);
  le(FWP_TOKENIZER_WORD, 4);
  le(payload.size(), 8);
  uint64_t h = fnv1a_u64(fnv1a_u64(kFnvOffset, FWP_TOKENIZER_WORD), payload.size());
  le(fnv1a_bytes(h, payload.data(), payload.size()), 8);
  return file + payload;
}

std::string word_payload(uint32_t size, uint32_t unk, const std::vector<std::string>& tokens) {
  std::string p;
  const auto le = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) p.push_back(static_cast<char>(v >> (8 * i)));
  };
  le(size);
  le(unk);
  for (const std::string& t : tokens) {
    le(static_cast<uint32_t>(t.size()));
    p += t;
  }
  return p;
}

TEST(TokenizerFile, HostilePayloadsWithValidChecksumsAreFormatErrors) {
  TempDir dir("fwp_tok");
  const std::string path = dir.file("h.tok");
  const auto load_status = [&](const std::string& payload) {
    write_bytes(path, word_file(payload));
    return status_of([&] { load_tokenizer(path); });
  };
  ASSERT_EQ(load_status(word_payload(3, 2, {"<eos>", "a", "<unk>"})), FWP_OK);
  // A huge count with a few bytes must fail before anything is reserved.
  EXPECT_EQ(load_status(word_payload(FWP_MAX_VOCAB_SIZE, 2, {"<eos>", "a", "<unk>"})), FWP_ERR_FORMAT);
  EXPECT_EQ(load_status(word_payload(0xffffffffu, 2, {"<eos>", "a", "<unk>"})), FWP_ERR_FORMAT);
  EXPECT_EQ(load_status(word_payload(1, 0, {"<eos>"})), FWP_ERR_FORMAT);
  EXPECT_EQ(load_status(word_payload(3, 3, {"<eos>", "a", "<unk>"})), FWP_ERR_FORMAT);   // unk id out of range
  EXPECT_EQ(load_status(word_payload(3, 0, {"<eos>", "a", "<unk>"})), FWP_ERR_FORMAT);   // unk on eos
  EXPECT_EQ(load_status(word_payload(3, 1, {"<eos>", "a", "<unk>"})), FWP_ERR_FORMAT);   // unk id names "a"
  EXPECT_EQ(load_status(word_payload(3, 2, {"a", "<eos>", "<unk>"})), FWP_ERR_FORMAT);   // eos not first
  EXPECT_EQ(load_status(word_payload(4, 3, {"<eos>", "a", "a", "<unk>"})), FWP_ERR_FORMAT);  // twice
  EXPECT_EQ(load_status(word_payload(4, 3, {"<eos>", "a", "<eos>", "<unk>"})), FWP_ERR_FORMAT);
  EXPECT_EQ(load_status(word_payload(3, 2, {"<eos>", "a b", "<unk>"})), FWP_ERR_FORMAT);  // whitespace
  EXPECT_EQ(load_status(word_payload(3, 2, {"<eos>", "a\xc2\xa0", "<unk>"})), FWP_ERR_FORMAT);
  EXPECT_EQ(load_status(word_payload(3, 2, {"<eos>", "", "<unk>"})), FWP_ERR_FORMAT);     // empty token
  EXPECT_EQ(load_status(word_payload(3, 2, {"<eos>", std::string(FWP_MAX_WORD_BYTES + 1, 'a'), "<unk>"})),
            FWP_ERR_FORMAT);
  EXPECT_EQ(load_status(word_payload(3, 2, {"<eos>", "a", "<unk>"}) + "z"), FWP_ERR_FORMAT);  // trailing bytes
  std::string cut = word_payload(3, 2, {"<eos>", "a", "<unk>"});
  cut.pop_back();
  EXPECT_EQ(load_status(cut), FWP_ERR_FORMAT);
  // Foreign files.
  write_bytes(path, "not a tokenizer at all, just some bytes");
  EXPECT_EQ(status_of([&] { load_tokenizer(path); }), FWP_ERR_FORMAT);
  EXPECT_EQ(status_of([&] { load_tokenizer(dir.file("missing.tok")); }), FWP_ERR_IO);
  EXPECT_EQ(status_of([&] { load_tokenizer(dir.path()); }), FWP_ERR_IO);
}

TEST(TokenizerFile, SaveIsAtomicAndFailsCleanly) {
  TempDir dir("fwp_tok");
  auto t = train_on(dir, {"a b\n"});
  save_tokenizer(*t, dir.file("v.tok"));
  const std::string before = read_bytes(dir.file("v.tok"));
  EXPECT_EQ(status_of([&] { save_tokenizer(*t, dir.file("no/such/dir/v.tok")); }), FWP_ERR_IO);
  EXPECT_EQ(status_of([&] { save_tokenizer(*t, ""); }), FWP_ERR_INVALID_ARGUMENT);
  auto other = train_on(dir, {"c d e\n"});
  save_tokenizer(*other, dir.file("v.tok"));
  EXPECT_NE(read_bytes(dir.file("v.tok")), before);
  EXPECT_EQ(vocabulary(*load_tokenizer(dir.file("v.tok"))), vocabulary(*other));
  EXPECT_EQ(test::list_dir(dir.path()).size(), 2u);  // the training text (written twice) and v.tok
}

// ---- line reading -----------------------------------------------------------------------------------------

TEST(LineReader, UniversalNewlinesAcrossChunkBoundaries) {
  TempDir dir("fwp_tok");
  const size_t chunk = size_t(1) << 20;  // the reader's chunk size
  const std::string first(chunk - 1, 'a');
  write_bytes(dir.file("t.txt"), first + "\r\nb\r\rc\n\nd");
  LineReader reader(dir.file("t.txt"), "text file", size_t(4) << 20);
  std::vector<std::string> lines;
  std::string line;
  while (reader.next(line)) lines.push_back(line);
  EXPECT_EQ(lines, (std::vector<std::string>{first, "b", "", "c", "", "d"}));
  EXPECT_EQ(reader.line_number(), 6);
  std::vector<std::string> in_memory;
  for_each_line(first + "\r\nb\r\rc\n\nd", [&](std::string_view l, bool) { in_memory.emplace_back(l); });
  EXPECT_EQ(in_memory, lines);
}

TEST(LineReader, OverlongLinesAreFormatErrorsNamingTheLine) {
  TempDir dir("fwp_tok");
  write_bytes(dir.file("t.txt"), "short\n" + std::string(100, 'x') + "\n");
  LineReader reader(dir.file("t.txt"), "text file", 50);
  std::string line;
  EXPECT_TRUE(reader.next(line));
  try {
    reader.next(line);
    ADD_FAILURE() << "accepted a 100-byte line with a 50-byte limit";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_FORMAT);
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

// ---- SentencePiece ----------------------------------------------------------------------------------------

// Text over a few hundred made-up words (enough distinct pieces for vocabularies of a few hundred).
std::string sample_text(int lines, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::string> syllables = {"the", "qui", "bro", "fox", "jum", "ov", "la", "zy", "do", "wh",
                                              "ps", "al", "pra", "is", "lor", "mer", "cy", "en", "du", "reth",
                                              "for", "ev", "an", "hi", "wor", "ks", "gre", "at", "na", "ïve"};
  std::vector<std::string> words;
  std::mt19937 word_rng(77);  // the same words for every seed
  for (int i = 0; i < 400; ++i) {
    std::string w;
    for (int k = 0, n = 1 + static_cast<int>(word_rng() % 3); k < n; ++k) w += syllables[word_rng() % syllables.size()];
    words.push_back(w);
  }
  std::string text;
  for (int i = 0; i < lines; ++i) {
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int j = 0; j < n; ++j) text += (j ? " " : "") + words[rng() % words.size()];
    text += ".\n";
  }
  return text;
}

// Restores the working directory at scope exit (before a TempDir it is in is removed).
class WorkingDirectory {
 public:
  explicit WorkingDirectory(const std::string& path) {
    if (!::getcwd(old_, sizeof old_)) throw std::runtime_error("getcwd failed");
    if (::chdir(path.c_str()) != 0) throw std::runtime_error("chdir failed: " + path);
  }
  ~WorkingDirectory() { (void)!::chdir(old_); }

 private:
  char old_[4096];
};

TEST(SentencePiece, TrainSaveLoadEncodeDecodeRoundTrip) {
  if (!sentencepiece_available()) GTEST_SKIP() << "built without SentencePiece";
  TempDir dir("fwp_sp");
  write_bytes(dir.file("train.txt"), sample_text(2000, 1));
  for (bool bpe : {false, true}) {
    SCOPED_TRACE(bpe ? "bpe" : "unigram");
    SentencePieceOptions o;
    o.bpe = bpe;
    o.vocab_size = 300;
    auto t = train_sentencepiece({dir.file("train.txt")}, o);
    EXPECT_EQ(t->kind(), FWP_TOKENIZER_SENTENCEPIECE);
    EXPECT_EQ(t->vocab_size(), 300);
    EXPECT_EQ(t->id_to_token(t->eos_id()), "<eos>");
    EXPECT_EQ(t->id_to_token(t->unk_id()), "<unk>");
    EXPECT_EQ(t->token_to_id("<unk>"), t->unk_id());
    EXPECT_EQ(t->token_to_id("no such piece"), -1);

    // Held-out lines of the same kind of text: every character is known, so decoding reproduces them.
    const std::string text = sample_text(5, 99) + "\n" + "the lazy fox";
    const std::vector<int32_t> ids = t->encode(text, true);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), t->eos_id()), 7);
    EXPECT_EQ(ids.back(), t->eos_id());
    EXPECT_EQ(std::count(ids.begin(), ids.end(), t->unk_id()), 0);
    EXPECT_EQ(t->decode(ids.data(), ids.size()), text + "\n");
    // Whitespace is normalised as SentencePiece does (collapsed, stripped).
    const std::vector<int32_t> spaced = t->encode("  the   lazy  fox \n", false);
    EXPECT_EQ(t->decode(spaced.data(), spaced.size()), "the lazy fox\n");

    save_tokenizer(*t, dir.file("sp.tok"));
    auto back = load_tokenizer(dir.file("sp.tok"));
    EXPECT_EQ(back->kind(), FWP_TOKENIZER_SENTENCEPIECE);
    EXPECT_EQ(vocabulary(*back), vocabulary(*t));
    EXPECT_EQ(back->encode(text, true), ids);
  }
}

TEST(SentencePiece, TrainingIsDeterministicAndLeavesNoFiles) {
  if (!sentencepiece_available()) GTEST_SKIP() << "built without SentencePiece";
  TempDir dir("fwp_sp");
  TempDir work("fwp_sp_cwd");
  write_bytes(dir.file("train.txt"), sample_text(1500, 2));
  {
    WorkingDirectory cwd(work.path());
    for (bool bpe : {false, true}) {
      SentencePieceOptions o;
      o.bpe = bpe;
      o.vocab_size = 200;
      o.num_threads = 2;
      const std::string a = train_sentencepiece({dir.file("train.txt")}, o)->payload();
      const std::string b = train_sentencepiece({dir.file("train.txt")}, o)->payload();
      EXPECT_EQ(a, b) << (bpe ? "bpe" : "unigram");
    }
  }
  EXPECT_TRUE(test::list_dir(work.path()).empty()) << "training wrote into the working directory";
  EXPECT_EQ(test::list_dir(dir.path()).size(), 1u);
}

TEST(SentencePiece, InvalidUtf8BecomesUnkAndBadSettingsAreRefused) {
  if (!sentencepiece_available()) GTEST_SKIP() << "built without SentencePiece";
  TempDir dir("fwp_sp");
  write_bytes(dir.file("train.txt"), sample_text(800, 3));
  SentencePieceOptions o;
  o.vocab_size = 100;
  auto t = train_sentencepiece({dir.file("train.txt")}, o);
  const std::vector<int32_t> ids = t->encode("the \xff\xfe fox", false);
  EXPECT_NE(std::find(ids.begin(), ids.end(), t->unk_id()), ids.end());
  const std::string back = t->decode(ids.data(), ids.size());
  EXPECT_EQ(back.find('\xff'), std::string::npos) << "the invalid bytes are not reproduced";
  EXPECT_NE(back.find("fox"), std::string::npos);

  o.vocab_size = 100000;  // more pieces than the text has
  EXPECT_EQ(status_of([&] { train_sentencepiece({dir.file("train.txt")}, o); }), FWP_ERR_INVALID_ARGUMENT);
  o.vocab_size = 100;
  write_bytes(dir.file("blank.txt"), "\n  \n");
  EXPECT_EQ(status_of([&] { train_sentencepiece({dir.file("blank.txt")}, o); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { train_sentencepiece({dir.file("missing.txt")}, o); }), FWP_ERR_IO);
  // Every line longer than max_sentence_length: nothing to train on (SentencePiece itself would abort).
  o.max_sentence_length = 3;
  EXPECT_EQ(status_of([&] { train_sentencepiece({dir.file("train.txt")}, o); }), FWP_ERR_INVALID_ARGUMENT);
}

// Settings at the edges give a model or a status; SentencePiece's own checks must never abort the process.
TEST(SentencePiece, EdgeSettingsNeverAbort) {
  if (!sentencepiece_available()) GTEST_SKIP() << "built without SentencePiece";
  TempDir dir("fwp_sp");
  write_bytes(dir.file("one.txt"), "a\n");
  write_bytes(dir.file("odd.txt"), "\xe2\x80\x8b \xef\xbb\xbf\n\xe2\x81\x87 x\nab\n");
  write_bytes(dir.file("train.txt"), sample_text(300, 5));
  int trained = 0;
  for (const char* file : {"one.txt", "odd.txt", "train.txt"}) {
    for (bool bpe : {false, true}) {
      for (int64_t vocab : {3, 4, 40, 200}) {
        for (float coverage : {0.98f, 1.0f}) {
          for (bool byte_fallback : {false, true}) {
            SentencePieceOptions o;
            o.bpe = bpe;
            o.vocab_size = vocab;
            o.character_coverage = coverage;
            o.byte_fallback = byte_fallback;
            const fwp_status s = status_of([&] {
              auto t = train_sentencepiece({dir.file(file)}, o);
              const std::vector<int32_t> ids = t->encode("ab x\n", true);
              (void)t->decode(ids.data(), ids.size());
            });
            EXPECT_TRUE(s == FWP_OK || s == FWP_ERR_INVALID_ARGUMENT)
                << file << " bpe=" << bpe << " vocab=" << vocab << " coverage=" << coverage << " status " << s;
            trained += s == FWP_OK;
          }
        }
      }
    }
  }
  EXPECT_GE(trained, 8) << "train.txt with 40 and 200 pieces gives a model";
}

TEST(SentencePiece, DamagedFilesAreFormatErrors) {
  if (!sentencepiece_available()) GTEST_SKIP() << "built without SentencePiece";
  TempDir dir("fwp_sp");
  write_bytes(dir.file("train.txt"), sample_text(500, 4));
  SentencePieceOptions o;
  o.vocab_size = 100;
  save_tokenizer(*train_sentencepiece({dir.file("train.txt")}, o), dir.file("sp.tok"));
  const std::string good = read_bytes(dir.file("sp.tok"));
  // The model holds SentencePiece's normalisation tables (about 240 kB): damage is sampled.
  expect_every_damage_is_a_format_error(dir.file("bad.tok"), good, 2003);
}

}  // namespace
}  // namespace fwp
