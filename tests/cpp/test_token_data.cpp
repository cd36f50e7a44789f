// Token files and the token data source: encoding a text file (same ids as
// encoding the text in memory, streamed, atomic), the file layout, damaged
// files and ids outside the vocabulary (FWP_ERR_FORMAT at open), ranges; the
// data source's streams and segments against a brute-force reading of the
// authors' LMOrderedIterator, epochs, and exact resume through checkpoints
// (refused for another file or layout without any change).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/handles.h"
#include "core/error.h"
#include "data/token_data.h"
#include "fwp/fwp.h"
#include "temp_files.h"
#include "text/checksum.h"
#include "text/token_file.h"
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

// A token file written from the layout in token_file.h (independently of the writer).
std::string token_file_bytes(const std::vector<int32_t>& ids, int64_t vocab_size) {
  std::string f = "FWPTOKEN";
  const auto le = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) f.push_back(static_cast<char>(v >> (8 * i)));
  };
  le(1, 4);
  le(4, 4);
  le(static_cast<uint64_t>(vocab_size), 8);
  le(ids.size(), 8);
  uint64_t h = fnv1a_words(kFnvOffset, ids.data(), ids.size());
  h = fnv1a_u64(fnv1a_u64(h, static_cast<uint64_t>(vocab_size)), ids.size());
  le(h, 8);
  for (int32_t id : ids) le(static_cast<uint32_t>(id), 4);
  return f;
}

std::vector<int32_t> iota_ids(int64_t n) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  return ids;
}

// ---- token files ------------------------------------------------------------------------------------------

TEST(TokenFile, EncodingAFileGivesTheIdsOfTheTextAndTheDocumentedLayout) {
  TempDir dir("fwp_tf");
  const std::string text = "the cat sat\n\n  on the\tmat \r\nthe end";  // last line without a terminator
  write_bytes(dir.file("a.txt"), text);
  auto tok = WordTokenizer::train({dir.file("a.txt")}, 1, 0);
  const std::vector<int32_t> expected = tok->encode(text, /*add_eos=*/true);
  EXPECT_EQ(encode_token_file(*tok, dir.file("a.txt"), dir.file("a.ids")), static_cast<int64_t>(expected.size()));
  EXPECT_EQ(read_bytes(dir.file("a.ids")), token_file_bytes(expected, tok->vocab_size()));
  EXPECT_EQ(test::list_dir(dir.path()).size(), 2u) << "no temporary file left";

  MappedTokenFile mapped(dir.file("a.ids"));
  EXPECT_EQ(mapped.header().vocab_size, tok->vocab_size());
  ASSERT_EQ(mapped.header().num_tokens, static_cast<int64_t>(expected.size()));
  EXPECT_EQ(std::vector<int32_t>(mapped.tokens(), mapped.tokens() + expected.size()), expected);

  std::vector<int32_t> part(3, -9);
  read_token_range(dir.file("a.ids"), 2, part.data(), 3);
  EXPECT_EQ(part, std::vector<int32_t>(expected.begin() + 2, expected.begin() + 5));
  read_token_range(dir.file("a.ids"), static_cast<int64_t>(expected.size()), part.data(), 0);  // empty range at the end
  EXPECT_EQ(status_of([&] { read_token_range(dir.file("a.ids"), -1, part.data(), 1); }), FWP_ERR_OUT_OF_RANGE);
  EXPECT_EQ(status_of([&] { read_token_range(dir.file("a.ids"), 1, part.data(), -1); }), FWP_ERR_OUT_OF_RANGE);
  EXPECT_EQ(status_of([&] {
              read_token_range(dir.file("a.ids"), static_cast<int64_t>(expected.size()) - 2, part.data(), 3);
            }),
            FWP_ERR_OUT_OF_RANGE);
}

TEST(TokenFile, LargeTextsAreStreamedInChunks) {
  TempDir dir("fwp_tf");
  std::mt19937 rng(3);
  std::string text;
  for (int line = 0; line < 40000; ++line) {
    for (int w = 0; w < 5; ++w) text += "w" + std::to_string(rng() % 500) + " ";
    text += "\n";
  }
  write_bytes(dir.file("big.txt"), text);
  auto tok = WordTokenizer::train({dir.file("big.txt")}, 1, 0);
  const std::vector<int32_t> expected = tok->encode(text, true);
  ASSERT_GT(expected.size(), size_t(1) << 17);  // several of the writer's chunks
  encode_token_file(*tok, dir.file("big.txt"), dir.file("big.ids"));
  EXPECT_EQ(read_bytes(dir.file("big.ids")), token_file_bytes(expected, tok->vocab_size()));
}

TEST(TokenFile, EmptyTextAndSamePathAreRefusedWithoutWriting) {
  TempDir dir("fwp_tf");
  write_bytes(dir.file("a.txt"), "a b\n");
  auto tok = WordTokenizer::train({dir.file("a.txt")}, 1, 0);
  write_bytes(dir.file("empty.txt"), "");
  EXPECT_EQ(status_of([&] { encode_token_file(*tok, dir.file("empty.txt"), dir.file("e.ids")); }),
            FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { encode_token_file(*tok, dir.file("a.txt"), dir.file("a.txt")); }),
            FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { encode_token_file(*tok, dir.file("a.txt"), dir.path() + "/./a.txt"); }),
            FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { encode_token_file(*tok, dir.file("missing.txt"), dir.file("m.ids")); }), FWP_ERR_IO);
  EXPECT_EQ(read_bytes(dir.file("a.txt")), "a b\n");
  EXPECT_EQ(test::list_dir(dir.path()).size(), 2u) << "nothing written by the refused calls";
  // Blank lines are tokens (<eos>): such a text is not empty.
  write_bytes(dir.file("blank.txt"), "\n\n");
  EXPECT_EQ(encode_token_file(*tok, dir.file("blank.txt"), dir.file("b.ids")), 2);
}

TEST(TokenFile, IdsOutsideTheVocabularyAreFormatErrorsAtOpen) {
  TempDir dir("fwp_tf");
  write_bytes(dir.file("t.ids"), token_file_bytes({0, 1, 2, 5, 1}, 5));  // 5 >= vocab 5, checksum valid
  EXPECT_EQ(status_of([&] { MappedTokenFile f(dir.file("t.ids")); }), FWP_ERR_FORMAT);
  std::vector<int32_t> out(5);
  EXPECT_EQ(status_of([&] { read_token_range(dir.file("t.ids"), 0, out.data(), 5); }), FWP_ERR_FORMAT);
  EXPECT_EQ(status_of([&] { read_token_range(dir.file("t.ids"), 0, out.data(), 3); }), FWP_OK);
  write_bytes(dir.file("n.ids"), token_file_bytes({0, -1, 2}, 5));
  EXPECT_EQ(status_of([&] { MappedTokenFile f(dir.file("n.ids")); }), FWP_ERR_FORMAT);
  EXPECT_EQ(status_of([&] { TokenData d(dir.file("n.ids"), 1, 1); }), FWP_ERR_FORMAT);
  write_bytes(dir.file("v.ids"), token_file_bytes({0, 1}, 0));
  EXPECT_EQ(status_of([&] { MappedTokenFile f(dir.file("v.ids")); }), FWP_ERR_FORMAT);
  write_bytes(dir.file("z.ids"), token_file_bytes({}, 5));  // no tokens
  EXPECT_EQ(status_of([&] { MappedTokenFile f(dir.file("z.ids")); }), FWP_ERR_FORMAT);
}

TEST(TokenFile, TruncationsAndBitFlipsAreFormatErrors) {
  TempDir dir("fwp_tf");
  const std::string good = token_file_bytes({3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9}, 10);
  const std::string path = dir.file("bad.ids");
  write_bytes(path, good);
  ASSERT_EQ(status_of([&] { MappedTokenFile f(path); }), FWP_OK);
  for (size_t n = 0; n < good.size(); ++n) {
    write_bytes(path, good.substr(0, n));
    EXPECT_EQ(status_of([&] { MappedTokenFile f(path); }), FWP_ERR_FORMAT) << "truncated to " << n;
  }
  for (const std::string& extra : {std::string("\0", 1), std::string(4, '\0')}) {
    write_bytes(path, good + extra);
    EXPECT_EQ(status_of([&] { MappedTokenFile f(path); }), FWP_ERR_FORMAT) << extra.size() << " trailing bytes";
  }
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      write_bytes(path, bad);
      EXPECT_EQ(status_of([&] { MappedTokenFile f(path); }), FWP_ERR_FORMAT) << "byte " << i << " bit " << bit;
    }
  }
  EXPECT_EQ(status_of([&] { MappedTokenFile f(dir.file("missing.ids")); }), FWP_ERR_IO);
  EXPECT_EQ(status_of([&] { MappedTokenFile f(dir.path()); }), FWP_ERR_IO);
}

// ---- the data source --------------------------------------------------------------------------------------

// The authors' LMOrderedIterator (data_utils.py) in plain loops: the batches
// of one epoch as (inputs, targets), [B][T] each, full-length batches only.
std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> reference_epoch(const std::vector<int32_t>& tokens,
                                                                                    int64_t B, int64_t T) {
  const int64_t n_step = static_cast<int64_t>(tokens.size()) / B;
  // data.view(bsz, -1).t(): column b is tokens[b * n_step, (b + 1) * n_step).
  const auto at = [&](int64_t row, int64_t b) { return tokens[static_cast<size_t>(b * n_step + row)]; };
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> batches;
  for (int64_t i = 0; i < n_step - 1; i += T) {  // get_fixlen_iter
    const int64_t seq_len = std::min(T, n_step - 1 - i);
    if (seq_len < T) break;  // the shorter last batch is the one not produced
    std::vector<int32_t> x(static_cast<size_t>(B * T)), y(static_cast<size_t>(B * T));
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) {
        x[static_cast<size_t>(b * T + t)] = at(i + t, b);
        y[static_cast<size_t>(b * T + t)] = at(i + 1 + t, b);
      }
    }
    batches.emplace_back(std::move(x), std::move(y));
  }
  return batches;
}

TEST(TokenData, StreamsAndSegmentsMatchTheAuthorsOrderedIterator) {
  TempDir dir("fwp_td");
  std::mt19937 rng(9);
  struct Case {
    int64_t n, B, T;
  };
  // Remainders N mod B, a stream whose segments fit exactly ((S - 1) mod T == 0), single streams and segments.
  for (const Case c : {Case{1000, 4, 7}, Case{1001, 4, 7}, Case{29, 4, 3}, Case{57, 8, 6}, Case{50, 1, 1},
                       Case{50, 1, 49}, Case{100, 3, 32}, Case{12, 2, 5}}) {
    SCOPED_TRACE("N=" + std::to_string(c.n) + " B=" + std::to_string(c.B) + " T=" + std::to_string(c.T));
    std::vector<int32_t> tokens(static_cast<size_t>(c.n));
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % 997);
    write_bytes(dir.file("t.ids"), token_file_bytes(tokens, 997));
    TokenData data(dir.file("t.ids"), c.B, c.T);
    const auto epoch = reference_epoch(tokens, c.B, c.T);
    ASSERT_FALSE(epoch.empty());
    EXPECT_EQ(data.segments_per_epoch(), static_cast<int64_t>(epoch.size()));
    EXPECT_EQ(data.stream_length(), c.n / c.B);
    EXPECT_EQ(data.vocab_size(), 997);
    EXPECT_EQ(data.num_tokens(), c.n);
    std::vector<int32_t> x(static_cast<size_t>(c.B * c.T)), y(x.size());
    for (int64_t e = 0; e < 3; ++e) {
      for (size_t s = 0; s < epoch.size(); ++s) {
        EXPECT_EQ(data.epoch(), e);
        EXPECT_EQ(data.segment(), static_cast<int64_t>(s));
        data.next(x.data(), y.data(), static_cast<int64_t>(x.size()));
        ASSERT_EQ(x, epoch[s].first) << "epoch " << e << " segment " << s;
        ASSERT_EQ(y, epoch[s].second) << "epoch " << e << " segment " << s;
      }
    }
    EXPECT_EQ(data.epoch(), 3);
    EXPECT_EQ(data.segment(), 0);
  }
}

TEST(TokenData, TooShortFilesAndBadArgumentsAreRefused) {
  TempDir dir("fwp_td");
  write_bytes(dir.file("t.ids"), token_file_bytes(iota_ids(20), 20));
  EXPECT_NO_THROW(TokenData(dir.file("t.ids"), 2, 9));  // S = 10 = T + 1: one segment
  EXPECT_EQ(status_of([&] { TokenData(dir.file("t.ids"), 2, 10); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { TokenData(dir.file("t.ids"), 21, 1); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { TokenData(dir.file("t.ids"), 0, 1); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { TokenData(dir.file("t.ids"), 1, 0); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { TokenData(dir.file("t.ids"), int64_t(1) << 40, int64_t(1) << 40); }),
            FWP_ERR_INVALID_ARGUMENT);

  TokenData data(dir.file("t.ids"), 2, 4);
  std::vector<int32_t> x(8), y(8);
  EXPECT_EQ(status_of([&] { data.next(x.data(), y.data(), 7); }), FWP_ERR_SHAPE_MISMATCH);
  EXPECT_EQ(status_of([&] { data.next(nullptr, y.data(), 8); }), FWP_ERR_NULL_POINTER);
  EXPECT_EQ(status_of([&] { data.next(x.data(), nullptr, 8); }), FWP_ERR_NULL_POINTER);
  EXPECT_EQ(data.segment(), 0) << "failed calls do not move the source";
  data.next(x.data(), y.data(), 8);
  EXPECT_EQ(x, (std::vector<int32_t>{0, 1, 2, 3, 10, 11, 12, 13}));
  EXPECT_EQ(y, (std::vector<int32_t>{1, 2, 3, 4, 11, 12, 13, 14}));
}

TEST(TokenData, StatesAreCheckedBeforeTheyAreRestored) {
  TempDir dir("fwp_td");
  write_bytes(dir.file("t.ids"), token_file_bytes(iota_ids(100), 100));
  TokenData data(dir.file("t.ids"), 2, 4);  // S = 50: 12 segments
  EXPECT_EQ(data.kind(), FWP_DATA_TOKEN_FILE);
  EXPECT_EQ(data.kind_name(), "token_file");
  const nlohmann::json config = data.config_json();
  EXPECT_EQ(config["batch_size"], 2);
  EXPECT_EQ(config["segment_length"], 4);
  EXPECT_EQ(config["num_tokens"], 100);
  EXPECT_EQ(config["vocab_size"], 100);
  EXPECT_EQ(config["checksum"].get<std::string>().size(), 16u);
  data.restore_state({{"epoch", 7}, {"segment", 11}});
  EXPECT_EQ(data.state_json(), (nlohmann::json{{"epoch", 7}, {"segment", 11}}));
  const nlohmann::json before = data.state_json();
  for (const nlohmann::json& bad :
       {nlohmann::json::object(), nlohmann::json::array(), nlohmann::json{{"epoch", 0}},
        nlohmann::json{{"epoch", 0}, {"segment", 12}}, nlohmann::json{{"epoch", -1}, {"segment", 0}},
        nlohmann::json{{"epoch", 0}, {"segment", -1}}, nlohmann::json{{"epoch", 0.5}, {"segment", 0}},
        nlohmann::json{{"epoch", "0"}, {"segment", 0}},
        nlohmann::json{{"epoch", uint64_t(1) << 63}, {"segment", 0}}}) {
    EXPECT_EQ(status_of([&] { data.check_state(bad); }), FWP_ERR_FORMAT) << bad.dump();
    EXPECT_EQ(data.state_json(), before);
  }
}

// ---- checkpoints through the C API ----------------------------------------------------------------------

struct Batches {
  std::vector<int32_t> inputs, targets;
  bool operator==(const Batches& o) const { return inputs == o.inputs && targets == o.targets; }
};

Batches draw(fwp_data* data, int64_t count, int steps) {
  Batches all;
  std::vector<int32_t> x(static_cast<size_t>(count)), y(x.size());
  for (int i = 0; i < steps; ++i) {
    EXPECT_EQ(fwp_token_data_next(data, x.data(), y.data(), count), FWP_OK) << fwp_last_error_message();
    all.inputs.insert(all.inputs.end(), x.begin(), x.end());
    all.targets.insert(all.targets.end(), y.begin(), y.end());
  }
  return all;
}

fwp_data* open_source(const std::string& path, int64_t B, int64_t T) {
  fwp_token_data_config cfg;
  fwp_token_data_config_init(&cfg);
  cfg.batch_size = B;
  cfg.segment_length = T;
  fwp_data* data = nullptr;
  EXPECT_EQ(fwp_token_data_create(path.c_str(), &cfg, &data), FWP_OK) << fwp_last_error_message();
  return data;
}

TEST(TokenDataCheckpoint, ResumeIsExactAndOtherFilesOrLayoutsAreRefused) {
  TempDir dir("fwp_td");
  std::mt19937 rng(4);
  std::vector<int32_t> tokens(700);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % 50);
  write_bytes(dir.file("a.ids"), token_file_bytes(tokens, 50));
  std::vector<int32_t> other = tokens;
  other[350] = (other[350] + 1) % 50;  // same size and vocabulary, one token differs
  write_bytes(dir.file("b.ids"), token_file_bytes(other, 50));
  const int64_t B = 3, T = 10, count = B * T;  // S = 233: 23 segments an epoch

  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = 1;
  fwp_context* ctx = nullptr;
  ASSERT_EQ(fwp_context_create(&cc, &ctx), FWP_OK);
  fwp_retrieval_config rc;  // the checkpoint's model part; any model kind works
  fwp_retrieval_config_init(&rc);
  rc.num_keys = 4;
  rc.d_head = 8;
  fwp_model* model = nullptr;
  ASSERT_EQ(fwp_model_create_retrieval(ctx, &rc, &model), FWP_OK);

  // Uninterrupted: N + M batches, across an epoch boundary.
  const int N = 17, M = 12;
  fwp_data* straight = open_source(dir.file("a.ids"), B, T);
  const Batches first = draw(straight, count, N);
  const Batches expected = draw(straight, count, M);

  fwp_data* interrupted = open_source(dir.file("a.ids"), B, T);
  EXPECT_EQ(draw(interrupted, count, N), first);
  const std::string ckpt = dir.file("c.safetensors");
  ASSERT_EQ(fwp_checkpoint_save(ckpt.c_str(), model, nullptr, interrupted, nullptr), FWP_OK) << fwp_last_error_message();

  fwp_data* resumed = open_source(dir.file("a.ids"), B, T);
  ASSERT_EQ(fwp_checkpoint_load(ckpt.c_str(), model, nullptr, resumed), FWP_OK) << fwp_last_error_message();
  int64_t segment = -1, epoch = -1, per_epoch = -1;
  EXPECT_EQ(fwp_token_data_position(resumed, &segment), FWP_OK);
  EXPECT_EQ(fwp_token_data_epoch(resumed, &epoch), FWP_OK);
  EXPECT_EQ(fwp_token_data_segments_per_epoch(resumed, &per_epoch), FWP_OK);
  EXPECT_EQ(per_epoch, 23);
  EXPECT_EQ(epoch * per_epoch + segment, N);
  EXPECT_EQ(draw(resumed, count, M), expected);

  // Another file of the same size, or another layout of the same file: refused, nothing moves.
  const auto refused_unchanged = [&](fwp_data* source, const char* needle) {
    int64_t before = -1, after = -1;
    fwp_token_data_position(source, &before);
    EXPECT_EQ(fwp_checkpoint_load(ckpt.c_str(), model, nullptr, source), FWP_ERR_FORMAT);
    EXPECT_NE(std::string(fwp_last_error_message()).find(needle), std::string::npos) << fwp_last_error_message();
    fwp_token_data_position(source, &after);
    EXPECT_EQ(after, before);
  };
  fwp_data* wrong_file = open_source(dir.file("b.ids"), B, T);
  refused_unchanged(wrong_file, "another config");
  fwp_data* wrong_layout = open_source(dir.file("a.ids"), B + 1, T);
  refused_unchanged(wrong_layout, "another config");
  fwp_data* wrong_length = open_source(dir.file("a.ids"), B, T + 1);
  refused_unchanged(wrong_length, "another config");
  fwp_retrieval_data* generator = nullptr;
  ASSERT_EQ(fwp_retrieval_data_create(1, 4, 1, &generator), FWP_OK);
  EXPECT_EQ(fwp_checkpoint_load(ckpt.c_str(), model, nullptr, generator), FWP_ERR_FORMAT);
  EXPECT_NE(std::string(fwp_last_error_message()).find("'token_file' data source"), std::string::npos)
      << fwp_last_error_message();

  for (fwp_data* d : {straight, interrupted, resumed, wrong_file, wrong_layout, wrong_length}) fwp_data_destroy(d);
  fwp_retrieval_data_destroy(generator);
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
}

}  // namespace
}  // namespace fwp
