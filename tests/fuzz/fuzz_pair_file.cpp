// Fuzz target for the pair-file reader (text/pair_file.h: the verified memory
// mapping) and the pair data source on top of it (data/pair_data.h,
// FWP_DATA_PARALLEL_TEXT).
//
// Each input is read as it is (the header checks) and with its checksum
// recomputed from its bytes, so that mutated ids, lengths and counts reach
// the checks behind the checksum. A finding: a status other than
// FWP_ERR_FORMAT (FWP_ERR_INVALID_ARGUMENT for a pair over a data source's
// budget), a crash, a sanitizer report, a hang, a huge allocation, or a file
// that opens but then yields an id outside its vocabulary, a batch over its
// budget, rows not built from the file's pairs, or an epoch that does not
// visit every pair exactly once.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/pair_data.h"
#include "fuzz_common.h"
#include "text/checksum.h"
#include "text/pair_file.h"
#include "text/word_tokenizer.h"

namespace {

const fuzz::TempFile& input_file() {
  static const fuzz::TempFile file("pair_file");
  return file;
}

// The input with its checksum made to match its bytes (text/pair_file.h:
// FNV-1a over the 32-bit words after the header, then header bytes [8, 112)).
std::string with_valid_checksum(const uint8_t* bytes, size_t size) {
  std::string file(reinterpret_cast<const char*>(bytes), size);
  std::vector<int32_t> words((size - fwp::kPairFileHeaderBytes) / 4);
  if (!words.empty()) std::memcpy(words.data(), file.data() + fwp::kPairFileHeaderBytes, words.size() * 4);
  uint64_t h = fwp::fnv1a_words(fwp::kFnvOffset, words.data(), words.size());
  h = fwp::fnv1a_bytes(h, file.data() + 8, 104);
  for (int i = 0; i < 8; ++i) file[112 + static_cast<size_t>(i)] = static_cast<char>(h >> (8 * i));
  return file;
}

// Reads the file every way the library does; true if the mapping accepted it.
bool read_all_ways(const std::string& file, const char* how) {
  input_file().write(file);
  const std::string& path = input_file().path();
  std::unique_ptr<fwp::MappedPairFile> mapped;
  if (!fuzz::accepts((std::string("MappedPairFile, ") + how).c_str(), {FWP_ERR_FORMAT},
                     [&] { mapped = std::make_unique<fwp::MappedPairFile>(path); })) {
    return false;
  }
  const fwp::PairFileInfo& info = mapped->info();
  const int64_t P = mapped->num_pairs(), V = info.vocab_size;
  fuzz::check(P >= 1 && fwp::kPairFileHeaderBytes + 4 * static_cast<uint64_t>(info.source_tokens + info.target_tokens) +
                                8 * static_cast<uint64_t>(P) ==
                            file.size(),
              "the mapping accepted a header that does not match the file");
  for (int64_t p = 0; p < P; ++p) {
    fuzz::check(mapped->source_length(p) >= 1 && mapped->target_length(p) >= 1, "the mapping accepted an empty side");
    for (int64_t k = 0; k < mapped->source_length(p); ++k) {
      fuzz::check(mapped->source(p)[k] >= 0 && mapped->source(p)[k] < V && mapped->source(p)[k] != info.pad_id,
                  "the mapping accepted a source id out of range");
    }
    for (int64_t k = 0; k < mapped->target_length(p); ++k) {
      fuzz::check(mapped->target(p)[k] >= 0 && mapped->target(p)[k] < V && mapped->target(p)[k] != info.pad_id,
                  "the mapping accepted a target id out of range");
    }
  }

  // The data source: a few budgets, one epoch and a bit, every row checked, state round trip.
  for (const auto& budget : {std::pair<int64_t, int64_t>{1, 0}, {24, 0}, {64, 3}}) {
    for (const bool shuffle : {true, false}) {
      fwp::PairDataOptions o;
      o.max_tokens = budget.first;
      o.max_sentences = budget.second;
      o.shuffle = shuffle;
      std::unique_ptr<fwp::PairData> data;
      if (!fuzz::accepts("PairData", {FWP_ERR_INVALID_ARGUMENT},
                         [&] { data = std::make_unique<fwp::PairData>(path, o); })) {
        fuzz::check(info.longest_source + 1 > o.max_tokens || info.longest_target + 1 > o.max_tokens,
                    "PairData refused a file whose pairs fit the budget");
        continue;
      }
      const int64_t K = data->batches_per_epoch();
      std::vector<int> seen(static_cast<size_t>(std::min<int64_t>(P, 4096)), 0);
      for (int64_t k = 0; k < std::min<int64_t>(K + 1, 64); ++k) {
        const fwp::PairBatchShape s = data->peek();
        const int64_t B = s.batch_size, S = s.source_length, T = s.target_length;
        fuzz::check(B >= 1 && B * std::max(S, T) <= o.max_tokens && (o.max_sentences == 0 || B <= o.max_sentences),
                    "PairData made a batch over its budget");
        std::vector<int32_t> x(static_cast<size_t>(B * S)), yi(static_cast<size_t>(B * T)), yo(yi.size());
        std::vector<int32_t> xl(static_cast<size_t>(B)), yl(xl.size());
        std::vector<int64_t> idx(xl.size());
        data->next(s, x.data(), xl.data(), yi.data(), yo.data(), yl.data(), idx.data());
        for (int64_t r = 0; r < B; ++r) {
          const int64_t p = idx[static_cast<size_t>(r)];
          fuzz::check(p >= 0 && p < P, "PairData gave a pair index outside the file");
          if (k < K && p < static_cast<int64_t>(seen.size())) ++seen[static_cast<size_t>(p)];
          const int64_t n = mapped->source_length(p), m = mapped->target_length(p);
          fuzz::check(xl[static_cast<size_t>(r)] == n + 1 && yl[static_cast<size_t>(r)] == m + 1 && n < S && m < T,
                      "PairData's lengths do not match the file");
          fuzz::check(std::equal(mapped->source(p), mapped->source(p) + n, x.begin() + r * S) &&
                          x[static_cast<size_t>(r * S + n)] == info.eos_id &&
                          yi[static_cast<size_t>(r * T)] == info.bos_id &&
                          std::equal(mapped->target(p), mapped->target(p) + m, yo.begin() + r * T) &&
                          yo[static_cast<size_t>(r * T + m)] == info.eos_id,
                      "PairData's rows are not the file's pair");
        }
      }
      if (K <= 64) {
        for (const int c : seen) fuzz::check(c == 1, "an epoch did not visit every pair exactly once");
      }
      const nlohmann::json state = data->state_json();
      data->check_state(state);
      data->restore_state(state);
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  fuzz::input_accepted = read_all_ways(std::string(reinterpret_cast<const char*>(bytes), size), "as it is");
  if (size >= fwp::kPairFileHeaderBytes && (size - fwp::kPairFileHeaderBytes) % 4 == 0) {
    fuzz::input_accepted |= read_all_ways(with_valid_checksum(bytes, size), "checksum recomputed");
  }
  return 0;
}

#ifdef FWP_FUZZ_REPLAY
// Seeds: a small parallel text encoded by a word vocabulary (with skipped
// lines and a length limit), and a one-pair file.
void write_seeds(const std::string& dir) {
  const fuzz::TempFile source("pair_file_seed_source"), target("pair_file_seed_target");
  source.write("a b c\nb c d a\n\nd a\na b c d e f g\nc\n");
  target.write("x y\nz\nx\n\ny z w v u\nw x\n");
  const auto word = fwp::WordTokenizer::train({source.path(), target.path()}, 1, 0);
  fwp::PairEncodeOptions o;
  o.max_source_tokens = 6;
  fwp::encode_pair_file(*word, source.path(), target.path(), dir + "/seed_valid_text.fwppairs", o);
  source.write("a\n");
  target.write("x\n");
  fwp::encode_pair_file(*word, source.path(), target.path(), dir + "/seed_valid_one_pair.fwppairs", {});
}
#endif
