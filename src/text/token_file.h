// Binary token files: a whole corpus encoded once, read by the token data
// source (memory-mapped) and by evaluation (ranges). Little-endian:
//   0  8 bytes  magic "FWPTOKEN"
//   8  u32      format version (1)
//   12 u32      bytes per id (4)
//   16 i64      vocabulary size V of the tokenizer that wrote it, in [1, 2^24]
//   24 i64      number of tokens N >= 1
//   32 u64      checksum: FNV-1a over the ids as 32-bit words, then V and N as
//               8 bytes each (text/checksum.h)
//   40 N x i32  the ids, each in [0, V)
// The file is exactly 40 + 4 N bytes. Opening a file for training verifies
// all of it (sizes, checksum, every id below V), so a damaged file is
// FWP_ERR_FORMAT at open and never an out-of-range embedding row later.
#pragma once

#include <cstdint>
#include <string>

#include "text/tokenizer.h"

namespace fwp {

constexpr uint64_t kTokenFileHeaderBytes = 40;

struct TokenFileHeader {
  int64_t vocab_size = 0;
  int64_t num_tokens = 0;
  uint64_t checksum = 0;
};

// Encodes a text file line by line (each line's ids, then <eos>) into a token
// file written atomically; returns the number of tokens.
// Error(FWP_ERR_INVALID_ARGUMENT) for a text without lines or for the text
// file as destination; FWP_ERR_IO / FWP_ERR_FORMAT from reading and writing.
int64_t encode_token_file(const Tokenizer& tokenizer, const std::string& text_path, const std::string& token_path);

// Reads count ids from token `offset` on, checking the header, the file size
// and each id read (not the whole file's checksum).
// Error(FWP_ERR_OUT_OF_RANGE) for a range outside [0, N).
void read_token_range(const std::string& path, int64_t offset, int32_t* out, int64_t count);

// A verified, read-only memory mapping of a token file.
class MappedTokenFile {
 public:
  // Maps and verifies the whole file: Error(FWP_ERR_IO) if it cannot be
  // opened or mapped, Error(FWP_ERR_FORMAT) naming the first problem.
  explicit MappedTokenFile(const std::string& path);
  ~MappedTokenFile();
  MappedTokenFile(const MappedTokenFile&) = delete;
  MappedTokenFile& operator=(const MappedTokenFile&) = delete;

  const TokenFileHeader& header() const { return header_; }
  const int32_t* tokens() const { return tokens_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  TokenFileHeader header_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const int32_t* tokens_ = nullptr;
};

}  // namespace fwp
