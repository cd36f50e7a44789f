// Pair files and the pair data source (issue 13, parallel data): encoding two
// line-aligned files (same ids as the tokenizer's encoding of each line, with
// the word level and SentencePiece), the special ids, the skip/error policies,
// unaligned and empty files, damaged files (every truncation and every
// flipped byte is FWP_ERR_FORMAT); the token-budget batches (within the
// budget, every pair once per epoch, rows built as documented), the seeded
// batch order, exact resume from a saved position, and file order for evaluation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/pair_data.h"
#include "temp_files.h"
#include "text/checksum.h"
#include "text/pair_file.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/word_tokenizer.h"

namespace fwp {
namespace {

using test::read_bytes;
using test::TempDir;
using test::write_bytes;

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

void write_text(const std::string& path, const std::string& text) { write_bytes(path, text); }

// num_lines random sentences of 1..max_words words from a small vocabulary (fixed seed).
std::string random_text(int num_lines, int max_words, unsigned seed) {
  std::mt19937 rng(seed);
  std::string text;
  for (int i = 0; i < num_lines; ++i) {
    const int n = 1 + static_cast<int>(rng() % static_cast<unsigned>(max_words));
    for (int w = 0; w < n; ++w) text += (w ? " w" : "w") + std::to_string(rng() % 23);
    text += "\n";
  }
  return text;
}

// The lines of a text (each without its "\n").
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// A corpus in a temporary directory with a word vocabulary trained on both sides.
struct Corpus {
  TempDir dir{"fwp_pairs"};
  std::string source = dir.file("train.src"), target = dir.file("train.tgt"), pairs = dir.file("train.pairs");
  std::unique_ptr<WordTokenizer> words;

  Corpus(const std::string& source_text, const std::string& target_text) {
    write_text(source, source_text);
    write_text(target, target_text);
    words = WordTokenizer::train({source, target}, 1, 0);
  }
  PairFileInfo encode(const PairEncodeOptions& options = {}) {
    return encode_pair_file(*words, source, target, pairs, options);
  }
};

// Recomputes the checksum of pair-file bytes from the layout in text/pair_file.h
// (independently of the writer), so that a test can change fields behind the checksum.
void fix_checksum(std::string& f) {
  auto* b = reinterpret_cast<const unsigned char*>(f.data());
  const auto le = [&](size_t at) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(b[at + i]) << (8 * i);
    return v;
  };
  const uint64_t pairs = le(48), ids = le(56) + le(64);
  std::vector<int32_t> words((f.size() - 120) / 4);
  std::memcpy(words.data(), f.data() + 120, words.size() * 4);
  ASSERT_EQ(words.size(), ids + 2 * pairs);
  uint64_t h = fnv1a_words(kFnvOffset, words.data(), words.size());  // ids, then the length table
  h = fnv1a_bytes(h, f.data() + 8, 104);
  for (int i = 0; i < 8; ++i) f[112 + i] = static_cast<char>(h >> (8 * i));
}

TEST(PairFile, RoundTripWithWordTokenizer) {
  const std::string src = random_text(40, 9, 1), tgt = random_text(40, 11, 2);
  Corpus c(src, tgt);
  const PairFileInfo written = c.encode();
  const MappedPairFile file(c.pairs);
  const auto src_lines = lines_of(src), tgt_lines = lines_of(tgt);
  ASSERT_EQ(file.num_pairs(), 40);
  int64_t ns = 0, nt = 0;
  for (int64_t i = 0; i < 40; ++i) {
    std::vector<int32_t> want_s, want_t;
    c.words->encode_line(src_lines[i], want_s);
    c.words->encode_line(tgt_lines[i], want_t);
    EXPECT_EQ(std::vector<int32_t>(file.source(i), file.source(i) + file.source_length(i)), want_s) << i;
    EXPECT_EQ(std::vector<int32_t>(file.target(i), file.target(i) + file.target_length(i)), want_t) << i;
    ns += static_cast<int64_t>(want_s.size());
    nt += static_cast<int64_t>(want_t.size());
  }
  const PairFileInfo& info = file.info();
  const int64_t V = c.words->vocab_size();
  // The word level has no <pad>/<bos>: they are added after its vocabulary.
  EXPECT_EQ(info.tokenizer_vocab_size, V);
  EXPECT_EQ(info.vocab_size, V + 2);
  EXPECT_EQ(info.pad_id, V);
  EXPECT_EQ(info.bos_id, V + 1);
  EXPECT_EQ(info.eos_id, c.words->eos_id());
  EXPECT_EQ(info.unk_id, c.words->unk_id());
  EXPECT_EQ(info.source_tokens, ns);
  EXPECT_EQ(info.target_tokens, nt);
  EXPECT_EQ(info.lines, 40);
  EXPECT_EQ(info.skipped_empty + info.skipped_too_long, 0);
  EXPECT_EQ(written.checksum, info.checksum);
  EXPECT_EQ(written.longest_source, info.longest_source);
  EXPECT_EQ(written.longest_target, info.longest_target);
  EXPECT_EQ(read_bytes(c.pairs).size(), 120 + 4 * static_cast<size_t>(ns + nt) + 8 * 40);
}

TEST(PairFile, RoundTripWithSentencePiece) {
  if (!sentencepiece_available()) GTEST_SKIP() << "no SentencePiece in this build";
  const std::string src = "the house is small\nthe cat sat on the mat\na small house\nthe mat is red\n";
  const std::string tgt = "la casa es pequena\nel gato se sento en la alfombra\nuna casa pequena\nla alfombra es roja\n";
  TempDir dir("fwp_pairs_sp");
  write_text(dir.file("s"), src);
  write_text(dir.file("t"), tgt);
  for (const bool pad_bos : {false, true}) {
    SentencePieceOptions o;
    o.bpe = true;
    o.vocab_size = 60;
    o.pad_bos = pad_bos;
    const auto sp = train_sentencepiece({dir.file("s"), dir.file("t")}, o);
    const PairFileInfo info = encode_pair_file(*sp, dir.file("s"), dir.file("t"), dir.file("p"), {});
    const MappedPairFile file(dir.file("p"));
    const auto sl = lines_of(src), tl = lines_of(tgt);
    for (int64_t i = 0; i < 4; ++i) {
      std::vector<int32_t> s, t;
      sp->encode_line(sl[i], s);
      sp->encode_line(tl[i], t);
      EXPECT_EQ(std::vector<int32_t>(file.source(i), file.source(i) + file.source_length(i)), s);
      EXPECT_EQ(std::vector<int32_t>(file.target(i), file.target(i) + file.target_length(i)), t);
    }
    EXPECT_EQ(info.eos_id, 0);
    EXPECT_EQ(info.unk_id, 1);
    if (pad_bos) {
      // Trained with pad_bos: the tokenizer's own ids, nothing added; decoding drops them.
      EXPECT_EQ(sp->pad_id(), 2);
      EXPECT_EQ(sp->bos_id(), 3);
      EXPECT_EQ(info.pad_id, 2);
      EXPECT_EQ(info.bos_id, 3);
      EXPECT_EQ(info.vocab_size, sp->vocab_size());
      std::vector<int32_t> ids = {3};
      sp->encode_line("the cat", ids);
      ids.push_back(2);
      ids.push_back(0);
      EXPECT_EQ(sp->decode(ids.data(), ids.size()), "the cat\n");
      // A saved and loaded tokenizer keeps them.
      save_tokenizer(*sp, dir.file("tok"));
      const auto loaded = load_tokenizer(dir.file("tok"));
      EXPECT_EQ(loaded->pad_id(), 2);
      EXPECT_EQ(loaded->bos_id(), 3);
    } else {
      EXPECT_EQ(sp->pad_id(), -1);
      EXPECT_EQ(sp->bos_id(), -1);
      EXPECT_EQ(info.pad_id, sp->vocab_size());
      EXPECT_EQ(info.bos_id, sp->vocab_size() + 1);
      EXPECT_EQ(info.vocab_size, sp->vocab_size() + 2);
    }
  }
}

TEST(PairFile, EmptyLinePolicy) {
  Corpus c("a b\n\nc\n   \nd e\n", "x\ny z\nw\nv\n\n");
  PairEncodeOptions o;
  const PairFileInfo info = c.encode(o);  // lines 2, 4 (blank source) and 5 (empty target) skipped
  EXPECT_EQ(info.num_pairs, 2);
  EXPECT_EQ(info.skipped_empty, 3);
  EXPECT_EQ(info.lines, 5);
  EXPECT_EQ(MappedPairFile(c.pairs).info().skipped_empty, 3);
  o.empty = PairPolicy::kError;
  std::remove(c.pairs.c_str());
  const std::string msg = message_of([&] { c.encode(o); });
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("source sentence is empty"), std::string::npos) << msg;
  EXPECT_EQ(status_of([&] { c.encode(o); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_FALSE(std::ifstream(c.pairs).good()) << "a refused corpus must leave no file";
}

TEST(PairFile, TooLongPolicy) {
  Corpus c("a\na b c d\na b\na\n", "x y\nx\nx y z w v\nx\n");
  PairEncodeOptions o;
  o.max_source_tokens = 3;
  o.max_target_tokens = 4;
  const PairFileInfo info = c.encode(o);
  EXPECT_EQ(info.num_pairs, 2);
  EXPECT_EQ(info.skipped_too_long, 2);
  EXPECT_EQ(info.longest_source, 1);
  EXPECT_EQ(info.max_source_tokens, 3);
  o.too_long = PairPolicy::kError;
  const std::string msg = message_of([&] { c.encode(o); });
  EXPECT_NE(msg.find("line 2: the source sentence has 4 tokens, more than max_source_tokens = 3"), std::string::npos)
      << msg;
  o.max_source_tokens = 0;  // no limit on the source: the target of line 3 is next
  const std::string msg2 = message_of([&] { c.encode(o); });
  EXPECT_NE(msg2.find("line 3: the target sentence has 5 tokens"), std::string::npos) << msg2;
  o.max_target_tokens = -1;
  EXPECT_EQ(status_of([&] { c.encode(o); }), FWP_ERR_INVALID_ARGUMENT);
  // Every pair skipped: nothing to write.
  write_text(c.source, "a b\n");
  write_text(c.target, "x y\n");
  o = PairEncodeOptions{};
  o.max_source_tokens = 1;
  EXPECT_NE(message_of([&] { c.encode(o); }).find("no pair is left"), std::string::npos);
}

TEST(PairFile, UnalignedAndEmptyFiles) {
  Corpus c("a\nb\nc\n", "x\ny\n");
  const std::string msg = message_of([&] { c.encode(); });
  EXPECT_NE(msg.find("has 3 lines"), std::string::npos) << msg;
  EXPECT_NE(msg.find("has 2"), std::string::npos) << msg;
  EXPECT_EQ(status_of([&] { c.encode(); }), FWP_ERR_INVALID_ARGUMENT);
  // Unaligned is an error even when the extra lines would be skipped as empty.
  write_text(c.target, "x\ny\n\n\n");
  EXPECT_NE(message_of([&] { c.encode(); }).find("has 4"), std::string::npos);
  write_text(c.source, "");
  write_text(c.target, "");
  EXPECT_NE(message_of([&] { c.encode(); }).find("empty"), std::string::npos);
  EXPECT_EQ(status_of([&] { c.encode(); }), FWP_ERR_INVALID_ARGUMENT);
  // The pair file must not be a text file.
  EXPECT_EQ(status_of([&] { encode_pair_file(*c.words, c.source, c.target, c.source, {}); }),
            FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { encode_pair_file(*c.words, c.source, c.dir.file("missing"), c.pairs, {}); }),
            FWP_ERR_IO);
}

TEST(PairFile, EveryTruncationAndFlippedByteIsAFormatError) {
  Corpus c("a b\nc\nd e f\n", "x\ny z\nw\n");
  c.encode();
  const std::string good = read_bytes(c.pairs);
  const std::string path = c.dir.file("damaged");
  for (size_t n = 0; n < good.size(); ++n) {
    write_bytes(path, good.substr(0, n));
    ASSERT_EQ(status_of([&] { MappedPairFile f(path); }), FWP_ERR_FORMAT) << "truncated to " << n << " bytes";
  }
  write_bytes(path, good + std::string(4, '\0'));
  EXPECT_EQ(status_of([&] { MappedPairFile f(path); }), FWP_ERR_FORMAT);
  for (size_t i = 0; i < good.size(); ++i) {
    for (const unsigned char mask : {0x01, 0x80}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      write_bytes(path, bad);
      ASSERT_EQ(status_of([&] { MappedPairFile f(path); }), FWP_ERR_FORMAT) << "byte " << i << " ^ " << int(mask);
    }
  }
  write_bytes(path, good);
  EXPECT_EQ(status_of([&] { MappedPairFile f(path); }), FWP_OK);
}

TEST(PairFile, DamageBehindAValidChecksumIsRefused) {
  Corpus c("a b\nc\n", "x\ny z\n");
  const PairFileInfo info = c.encode();
  const std::string good = read_bytes(c.pairs);
  const std::string path = c.dir.file("damaged");
  const auto refused = [&](std::string bytes, const char* what) {
    fix_checksum(bytes);
    write_bytes(path, bytes);
    const std::string msg = message_of([&] { MappedPairFile f(path); });
    EXPECT_EQ(status_of([&] { MappedPairFile f(path); }), FWP_ERR_FORMAT) << what;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  };
  const auto put32 = [](std::string& f, size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) f[at + i] = static_cast<char>(v >> (8 * i));
  };
  std::string f = good;
  put32(f, 120, static_cast<uint32_t>(info.vocab_size));  // the first id
  refused(f, "outside the vocabulary");
  f = good;
  put32(f, 120, static_cast<uint32_t>(info.pad_id));
  refused(f, "the pad id");
  f = good;
  put32(f, 36, static_cast<uint32_t>(info.pad_id));  // bos = pad
  refused(f, "not all different");
  f = good;
  const size_t table = f.size() - 16;
  put32(f, table, 0);  // pair 0: empty source
  put32(f, table + 4, 4);  // its target takes the 2 ids back (sum unchanged)
  refused(f, "empty side");
  f = good;
  put32(f, table, 1);  // source lengths no longer sum to the header's count
  put32(f, table + 4, 3);
  refused(f, "length table sums");
  f = good;
  put32(f, 72, 7);  // line count
  refused(f, "line count");
  f = good;
  f[8] = 2;  // version
  refused(f, "format version 2");
}

// A corpus of many pairs of varied lengths, encoded.
struct BatchCorpus : Corpus {
  BatchCorpus() : Corpus(random_text(300, 14, 3), random_text(300, 17, 4)) { encode(); }
};

struct Batch {
  PairBatchShape shape;
  std::vector<int32_t> source, source_lengths, target_input, target_output, target_lengths;
  std::vector<int64_t> pairs;
  bool operator==(const Batch& o) const {
    return shape.batch_size == o.shape.batch_size && shape.source_length == o.shape.source_length &&
           shape.target_length == o.shape.target_length && source == o.source && target_input == o.target_input &&
           target_output == o.target_output && source_lengths == o.source_lengths &&
           target_lengths == o.target_lengths && pairs == o.pairs;
  }
};

Batch next_batch(PairData& data) {
  Batch b;
  b.shape = data.peek();
  const size_t B = static_cast<size_t>(b.shape.batch_size);
  b.source.assign(B * static_cast<size_t>(b.shape.source_length), -7);
  b.target_input.assign(B * static_cast<size_t>(b.shape.target_length), -7);
  b.target_output = b.target_input;
  b.source_lengths.assign(B, -7);
  b.target_lengths.assign(B, -7);
  b.pairs.assign(B, -7);
  data.next(b.shape, b.source.data(), b.source_lengths.data(), b.target_input.data(), b.target_output.data(),
            b.target_lengths.data(), b.pairs.data());
  return b;
}

// Checks one batch against the file: rows built as documented, within the budget.
void check_batch(const Batch& b, const MappedPairFile& f, const PairDataOptions& o) {
  const int64_t B = b.shape.batch_size, S = b.shape.source_length, T = b.shape.target_length;
  ASSERT_GE(B, 1);
  EXPECT_LE(B * std::max(S, T), o.max_tokens);
  if (o.max_sentences > 0) {
    EXPECT_LE(B, o.max_sentences);
  }
  const PairFileInfo& i = f.info();
  int64_t longest_s = 0, longest_t = 0;
  for (int64_t r = 0; r < B; ++r) {
    const int64_t p = b.pairs[r], n = f.source_length(p), m = f.target_length(p);
    longest_s = std::max(longest_s, n + 1);
    longest_t = std::max(longest_t, m + 1);
    EXPECT_EQ(b.source_lengths[r], n + 1);
    EXPECT_EQ(b.target_lengths[r], m + 1);
    for (int64_t s = 0; s < S; ++s) {
      const int32_t want = s < n ? f.source(p)[s] : s == n ? i.eos_id : i.pad_id;
      ASSERT_EQ(b.source[r * S + s], want) << "row " << r << " position " << s;
    }
    for (int64_t t = 0; t < T; ++t) {
      const int32_t in = t == 0 ? i.bos_id : t <= m ? f.target(p)[t - 1] : i.pad_id;
      const int32_t out = t < m ? f.target(p)[t] : t == m ? i.eos_id : i.pad_id;
      ASSERT_EQ(b.target_input[r * T + t], in) << "row " << r << " position " << t;
      ASSERT_EQ(b.target_output[r * T + t], out) << "row " << r << " position " << t;
    }
  }
  EXPECT_EQ(S, longest_s);
  EXPECT_EQ(T, longest_t);
}

TEST(PairData, BatchesRespectTheBudgetAndCoverEveryPairOncePerEpoch) {
  BatchCorpus c;
  for (const bool shuffle : {true, false}) {
    for (const auto& [max_tokens, max_sentences] : std::vector<std::pair<int64_t, int64_t>>{
             {18, 0}, {64, 0}, {200, 0}, {200, 5}, {100000, 0}, {100000, 1}}) {
      PairDataOptions o;
      o.max_tokens = max_tokens;
      o.max_sentences = max_sentences;
      o.shuffle = shuffle;
      PairData data(c.pairs, o);
      const int64_t K = data.batches_per_epoch();
      for (int64_t epoch = 0; epoch < 2; ++epoch) {
        std::vector<int> seen(300, 0);
        for (int64_t k = 0; k < K; ++k) {
          EXPECT_EQ(data.epoch(), epoch);
          EXPECT_EQ(data.batch(), k);
          const Batch b = next_batch(data);
          check_batch(b, data.file(), o);
          for (const int64_t p : b.pairs) ++seen[static_cast<size_t>(p)];
          EXPECT_LE(b.shape.batch_size, data.max_shape().batch_size);
          EXPECT_LE(b.shape.source_length, data.max_shape().source_length);
          EXPECT_LE(b.shape.target_length, data.max_shape().target_length);
        }
        EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 300) << "max_tokens " << max_tokens;
      }
      EXPECT_EQ(data.epoch(), 2);
      if (max_sentences == 1) {
        EXPECT_EQ(K, 300);
      }
      if (max_tokens == 100000 && max_sentences == 0) {
        EXPECT_EQ(K, 1);
      }
    }
  }
}

TEST(PairData, ShuffledBatchesGroupSimilarLengths) {
  BatchCorpus c;
  PairDataOptions o;
  o.max_tokens = 64;
  PairData sorted(c.pairs, o);
  o.shuffle = false;
  PairData in_order(c.pairs, o);
  // Grouping by length pads less, so it needs fewer batches for the same budget.
  EXPECT_LT(sorted.batches_per_epoch(), in_order.batches_per_epoch());
}

std::vector<std::vector<int64_t>> epoch_orders(const std::string& path, uint64_t seed, int epochs) {
  PairDataOptions o;
  o.max_tokens = 48;
  o.seed = seed;
  PairData data(path, o);
  std::vector<std::vector<int64_t>> orders;
  for (int e = 0; e < epochs; ++e) {
    std::vector<int64_t> firsts;
    for (int64_t k = 0; k < data.batches_per_epoch(); ++k) firsts.push_back(next_batch(data).pairs[0]);
    orders.push_back(firsts);
  }
  return orders;
}

TEST(PairData, SameSeedSameOrderOtherSeedOtherOrder) {
  BatchCorpus c;
  const auto a = epoch_orders(c.pairs, 7, 3), b = epoch_orders(c.pairs, 7, 3), d = epoch_orders(c.pairs, 8, 3);
  ASSERT_GT(a[0].size(), 10u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a[0], d[0]);
  EXPECT_NE(a[0], a[1]) << "each epoch has its own order";
  EXPECT_NE(a[1], a[2]);
  // The same batches in another order.
  auto s0 = a[0], s1 = a[1], sd = d[0];
  std::sort(s0.begin(), s0.end());
  std::sort(s1.begin(), s1.end());
  std::sort(sd.begin(), sd.end());
  EXPECT_EQ(s0, s1);
  EXPECT_EQ(s0, sd);
  // reset(e) gives epoch e's order again.
  PairDataOptions o;
  o.max_tokens = 48;
  o.seed = 7;
  PairData data(c.pairs, o);
  data.reset(2);
  EXPECT_EQ(next_batch(data).pairs[0], a[2][0]);
  EXPECT_EQ(status_of([&] { data.reset(-1); }), FWP_ERR_INVALID_ARGUMENT);
}

TEST(PairData, ResumeFromASavedStateGivesTheSameRemainingBatches) {
  BatchCorpus c;
  PairDataOptions o;
  o.max_tokens = 40;
  o.max_sentences = 6;
  o.seed = 12345;
  PairData run(c.pairs, o);
  const int64_t K = run.batches_per_epoch();
  for (const int64_t stop : {int64_t(0), K / 2, K - 1, K + 3}) {
    PairData a(c.pairs, o);
    for (int64_t k = 0; k < stop; ++k) next_batch(a);
    const nlohmann::json config = a.config_json(), state = nlohmann::json::parse(a.state_json().dump());
    PairData b(c.pairs, o);
    EXPECT_EQ(b.config_json(), config);
    b.check_state(state);
    b.restore_state(state);
    EXPECT_EQ(b.epoch(), a.epoch());
    EXPECT_EQ(b.batch(), a.batch());
    for (int64_t k = 0; k < K + 2; ++k) ASSERT_TRUE(next_batch(a) == next_batch(b)) << "stop " << stop << " k " << k;
  }
  // The config names what a state depends on.
  PairDataOptions other = o;
  other.seed = 1;
  EXPECT_NE(PairData(c.pairs, other).config_json(), run.config_json());
  // Bad states are refused without a change.
  for (const char* bad : {R"({"epoch":0})", R"({"epoch":-1,"batch":0})", R"({"epoch":0,"batch":100000})",
                          R"({"epoch":0,"batch":-1})", R"([1,2])", R"({"epoch":"0","batch":0})"}) {
    EXPECT_EQ(status_of([&] { run.check_state(nlohmann::json::parse(bad)); }), FWP_ERR_FORMAT) << bad;
  }
}

TEST(PairData, EvaluationOrderIsTheFileOrder) {
  BatchCorpus c;
  PairDataOptions o;
  o.max_tokens = 50;
  o.shuffle = false;
  PairData data(c.pairs, o);
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> order;
    for (int64_t k = 0; k < data.batches_per_epoch(); ++k) {
      const Batch b = next_batch(data);
      order.insert(order.end(), b.pairs.begin(), b.pairs.end());
    }
    std::vector<int64_t> want(300);
    for (int64_t i = 0; i < 300; ++i) want[static_cast<size_t>(i)] = i;
    EXPECT_EQ(order, want);
  }
}

TEST(PairData, RefusesBadSettingsShapesAndPairsOverTheBudget) {
  Corpus c("a b c d e f g\nb\n", "x\ny\n");
  c.encode();
  PairDataOptions o;
  o.max_tokens = 7;  // pair 0 needs 8 (7 tokens + eos)
  const std::string msg = message_of([&] { PairData d(c.pairs, o); });
  EXPECT_NE(msg.find("pair 0"), std::string::npos) << msg;
  EXPECT_EQ(status_of([&] { PairData d(c.pairs, o); }), FWP_ERR_INVALID_ARGUMENT);
  o.max_tokens = 8;
  PairData fits(c.pairs, o);
  EXPECT_EQ(fits.batches_per_epoch(), 2);
  o.max_tokens = 0;
  EXPECT_EQ(status_of([&] { PairData d(c.pairs, o); }), FWP_ERR_INVALID_ARGUMENT);
  o.max_tokens = 100;
  o.max_sentences = -1;
  EXPECT_EQ(status_of([&] { PairData d(c.pairs, o); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { PairData d(c.dir.file("missing"), PairDataOptions{}); }), FWP_ERR_IO);

  PairData data(c.pairs, PairDataOptions{});
  PairBatchShape wrong = data.peek();
  wrong.target_length += 1;
  std::vector<int32_t> buf(64);
  std::vector<int64_t> idx(8);
  EXPECT_EQ(status_of([&] {
              data.next(wrong, buf.data(), buf.data(), buf.data(), buf.data(), buf.data(), idx.data());
            }),
            FWP_ERR_SHAPE_MISMATCH);
  EXPECT_EQ(data.batch(), 0) << "nothing moves on failure";
}

}  // namespace
}  // namespace fwp
