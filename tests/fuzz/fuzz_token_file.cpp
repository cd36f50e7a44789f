// Fuzz target for the token-file readers (text/token_file.h: the verified
// memory mapping and read_token_range) and the token data source on top of
// them (data/token_data.h, FWP_DATA_TOKEN_FILE).
//
// Each input is read as it is (the header checks) and with its token count
// and checksum recomputed from its bytes, so that mutated ids reach the id
// checks and the data source. A finding: a status other than FWP_ERR_FORMAT
// (FWP_ERR_OUT_OF_RANGE for a range outside the file, FWP_ERR_INVALID_ARGUMENT
// for a file too short for the batch layout), a crash, a sanitizer report, a
// hang, a huge allocation, or a file that opens but then yields an id outside
// its vocabulary, targets that are not the next inputs, or a range read that
// differs from the mapping.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/token_data.h"
#include "fuzz_common.h"
#include "text/checksum.h"
#include "text/token_file.h"
#include "text/word_tokenizer.h"

namespace {

const fuzz::TempFile& input_file() {
  static const fuzz::TempFile file("token_file");
  return file;
}

void put_le(unsigned char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

// The input with the token count and checksum fields made to match its ids
// (text/token_file.h: FNV-1a over the ids, then V and N).
std::string with_valid_checksum(const uint8_t* bytes, size_t size) {
  std::string file(reinterpret_cast<const char*>(bytes), size);
  auto* h = reinterpret_cast<unsigned char*>(file.data());
  const uint64_t n = (size - fwp::kTokenFileHeaderBytes) / 4;
  put_le(h + 24, n, 8);
  std::vector<int32_t> ids(n);
  if (n > 0) std::memcpy(ids.data(), file.data() + fwp::kTokenFileHeaderBytes, n * 4);
  uint64_t sum = fwp::fnv1a_words(fwp::kFnvOffset, ids.data(), ids.size());
  sum = fwp::fnv1a_u64(fwp::fnv1a_u64(sum, get_le(h + 16, 8)), n);
  put_le(h + 32, sum, 8);
  return file;
}

// Reads the file every way the library does; true if the mapping accepted it.
bool read_all_ways(const std::string& file, const char* how) {
  input_file().write(file);
  const std::string& path = input_file().path();
  std::unique_ptr<fwp::MappedTokenFile> mapped;
  const bool ok = fuzz::accepts((std::string("MappedTokenFile, ") + how).c_str(), {FWP_ERR_FORMAT},
                                [&] { mapped = std::make_unique<fwp::MappedTokenFile>(path); });

  // A range read: [offset, offset + count) from the input's first bytes, some outside the file.
  const size_t k = file.size();
  const int64_t offset = k > 0 ? static_cast<unsigned char>(file[0]) % 24 : 0;
  const int64_t count = k > 1 ? static_cast<unsigned char>(file[1]) % 24 : 1;
  std::vector<int32_t> range(static_cast<size_t>(count));
  const bool range_ok = fuzz::accepts("read_token_range", {FWP_ERR_FORMAT, FWP_ERR_OUT_OF_RANGE},
                                      [&] { fwp::read_token_range(path, offset, range.data(), count); });
  if (!ok) return false;

  const fwp::TokenFileHeader& header = mapped->header();
  const int64_t V = header.vocab_size, N = header.num_tokens;
  fuzz::check(N >= 1 && V >= 1 && fwp::kTokenFileHeaderBytes + 4 * static_cast<uint64_t>(N) == file.size(),
              "the mapping accepted a header that does not match the file");
  for (int64_t i = 0; i < N; ++i) {
    fuzz::check(mapped->tokens()[i] >= 0 && mapped->tokens()[i] < V, "the mapping accepted an id out of range");
  }
  fuzz::check(range_ok == (offset + count <= N), "read_token_range disagrees with the mapping about the range");
  if (range_ok && count > 0) {
    fuzz::check(std::equal(range.begin(), range.end(), mapped->tokens() + offset),
                "read_token_range read other ids than the mapping");
  }

  // The data source: small layouts, two epochs' worth of segments, state round trip.
  for (const auto& layout : {std::pair<int64_t, int64_t>{1, 1}, {2, 3}, {3, 2}}) {
    const int64_t B = layout.first, T = layout.second;  // (structured bindings cannot be captured in C++17)
    std::unique_ptr<fwp::TokenData> data;
    if (!fuzz::accepts("TokenData", {FWP_ERR_INVALID_ARGUMENT},
                       [&] { data = std::make_unique<fwp::TokenData>(path, B, T); })) {
      fuzz::check(N / B < T + 1, "TokenData refused a file that holds a segment");
      continue;
    }
    std::vector<int32_t> x(static_cast<size_t>(B * T)), y(x.size());
    const int64_t steps = std::min<int64_t>(2 * data->segments_per_epoch() + 1, 16);
    for (int64_t s = 0; s < steps; ++s) {
      data->next(x.data(), y.data(), B * T);
      for (size_t i = 0; i < x.size(); ++i) {
        fuzz::check(x[i] >= 0 && x[i] < V && y[i] >= 0 && y[i] < V, "TokenData yielded an id out of range");
        if (i % static_cast<size_t>(T) + 1 < static_cast<size_t>(T)) {
          fuzz::check(y[i] == x[i + 1], "TokenData's targets are not the next inputs");
        }
      }
    }
    const nlohmann::json state = data->state_json();
    data->check_state(state);
    data->restore_state(state);
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  fuzz::input_accepted = read_all_ways(std::string(reinterpret_cast<const char*>(bytes), size), "as it is");
  if (size >= fwp::kTokenFileHeaderBytes) {
    fuzz::input_accepted |= read_all_ways(with_valid_checksum(bytes, size), "checksum recomputed");
  }
  return 0;
}

#ifdef FWP_FUZZ_REPLAY
// Seeds: a small text encoded by a word vocabulary, and a one-token file.
void write_seeds(const std::string& dir) {
  const fuzz::TempFile text("token_file_seed_text");
  text.write("a b c a b\nb c d\n\nd a\n a b c d e f g\n");
  const auto word = fwp::WordTokenizer::train({text.path()}, 1, 0);
  fwp::encode_token_file(*word, text.path(), dir + "/seed_valid_text.fwptokens");
  text.write("\n");
  fwp::encode_token_file(*word, text.path(), dir + "/seed_valid_one_token.fwptokens");
}
#endif
