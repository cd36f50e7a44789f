// Binary pair files: a line-aligned parallel corpus (a source and a target
// text file, the WMT convention) encoded once with one shared tokenizer, read
// by the pair data source (data/pair_data.h) through a verified memory
// mapping. Little-endian, docs/data.md has the same table:
//   0   8 bytes  magic "FWPPAIRS"
//   8   u32      format version (1)
//   12  u32      bytes per id (4)
//   16  i64      vocabulary size V of the model: every id and special id is below it
//   24  i64      vocabulary size of the tokenizer, in [1, V]; V minus it is the
//                number of special ids the encoder added (pad and bos, where the
//                tokenizer has none: see PairSpecials)
//   32  i32 pad id, 36 i32 bos id, 40 i32 eos id, 44 i32 unk id (each in [0, V);
//                pad, bos and eos pairwise different)
//   48  i64      number of pairs P >= 1
//   56  i64      source tokens Ns (sum of the source lengths)
//   64  i64      target tokens Nt
//   72  i64      lines read from each text file
//   80  i64      pairs skipped because a side was empty (no tokens)
//   88  i64      pairs skipped because a side was longer than the limit
//   96  i64      max source tokens the encoder allowed (0: no limit)
//   104 i64      max target tokens (0: no limit)
//   112 u64      checksum: FNV-1a (text/checksum.h) over the ids as 32-bit
//                words, then the length table as 32-bit words, then header
//                bytes [8, 112)
//   120 (Ns + Nt) x i32  the ids, pair by pair: source of pair 0, target of
//                pair 0, source of pair 1, ... (no bos/eos: the data source adds them)
//   then P x (u32 source length, u32 target length), each >= 1
// The file is exactly 120 + 4 (Ns + Nt) + 8 P bytes. Lines read = P + both
// skipped counts. Every id is in [0, V) and is not the pad id. Opening a file
// verifies all of it, so a damaged file is FWP_ERR_FORMAT at open.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace fwp {

constexpr uint64_t kPairFileHeaderBytes = 120;

// How the encoder treats a pair it cannot keep.
enum class PairPolicy { kSkip, kError };

struct PairEncodeOptions {
  int64_t max_source_tokens = 0;  // 0: no limit; counted without the bos/eos the data source adds
  int64_t max_target_tokens = 0;
  PairPolicy too_long = PairPolicy::kSkip;
  PairPolicy empty = PairPolicy::kSkip;
};

// Everything the header says, plus the longest sentences (found on reading).
struct PairFileInfo {
  int64_t vocab_size = 0;
  int64_t tokenizer_vocab_size = 0;
  int32_t pad_id = -1, bos_id = -1, eos_id = -1, unk_id = -1;
  int64_t num_pairs = 0;
  int64_t source_tokens = 0;
  int64_t target_tokens = 0;
  int64_t lines = 0;
  int64_t skipped_empty = 0;
  int64_t skipped_too_long = 0;
  int64_t max_source_tokens = 0;
  int64_t max_target_tokens = 0;
  int64_t longest_source = 0;
  int64_t longest_target = 0;
  uint64_t checksum = 0;
};

// The special ids of a tokenizer's pair files: its own <pad>/<bos> where it
// has them, else new ids after its vocabulary (pad = V_tok, then bos), so a
// word-level vocabulary and tokenizers trained without them work unchanged.
struct PairSpecials {
  int64_t vocab_size;  // V_tok + the ids added
  int32_t pad_id, bos_id, eos_id, unk_id;
};
PairSpecials pair_specials(const Tokenizer& tokenizer);

// Encodes two line-aligned text files into a pair file written atomically.
// Error(FWP_ERR_INVALID_ARGUMENT): different line counts (naming both), no
// pair left (an empty corpus, or every pair skipped), a limit < 0, a bad
// path, or a pair refused by an kError policy (naming the line and sizes);
// FWP_ERR_IO / FWP_ERR_FORMAT from reading and writing.
PairFileInfo encode_pair_file(const Tokenizer& tokenizer, const std::string& source_path,
                              const std::string& target_path, const std::string& pair_path,
                              const PairEncodeOptions& options);

// A verified, read-only memory mapping of a pair file.
class MappedPairFile {
 public:
  // Maps and verifies the whole file: Error(FWP_ERR_IO) if it cannot be
  // opened or mapped, Error(FWP_ERR_FORMAT) naming the first problem.
  explicit MappedPairFile(const std::string& path);
  ~MappedPairFile();
  MappedPairFile(const MappedPairFile&) = delete;
  MappedPairFile& operator=(const MappedPairFile&) = delete;

  const PairFileInfo& info() const { return info_; }
  const std::string& path() const { return path_; }
  int64_t num_pairs() const { return info_.num_pairs; }
  // Pair i < num_pairs(): its source and target ids (no bos/eos) and lengths.
  const int32_t* source(int64_t i) const { return ids_ + starts_[static_cast<size_t>(i)]; }
  const int32_t* target(int64_t i) const { return source(i) + source_length(i); }
  int64_t source_length(int64_t i) const { return lengths_[2 * static_cast<size_t>(i)]; }
  int64_t target_length(int64_t i) const { return lengths_[2 * static_cast<size_t>(i) + 1]; }

 private:
  std::string path_;
  PairFileInfo info_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const int32_t* ids_ = nullptr;
  const uint32_t* lengths_ = nullptr;
  std::vector<int64_t> starts_;  // index of each pair's first source id
};

}  // namespace fwp
