#include "text/token_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "io/atomic_file.h"
#include "text/checksum.h"
#include "text/line_reader.h"

// The ids are stored little-endian and mapped as int32 directly.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token files are read in place: little-endian hosts only");

namespace fwp {
namespace {

constexpr char kMagic[8] = {'F', 'W', 'P', 'T', 'O', 'K', 'E', 'N'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kIdBytes = 4;
constexpr size_t kChunkIds = size_t(1) << 16;

void put_le(unsigned char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

uint64_t finish_checksum(uint64_t ids_hash, int64_t vocab_size, int64_t num_tokens) {
  return fnv1a_u64(fnv1a_u64(ids_hash, static_cast<uint64_t>(vocab_size)), static_cast<uint64_t>(num_tokens));
}

Error bad(const std::string& path, const std::string& what) {
  return Error(FWP_ERR_FORMAT, "token file '" + path + "': " + what);
}

// Parses the 40 header bytes and checks them against the file size.
TokenFileHeader parse_header(const unsigned char* h, uint64_t file_bytes, const std::string& path) {
  if (std::memcmp(h, kMagic, 8) != 0) throw bad(path, "not an fwp token file (no magic \"FWPTOKEN\")");
  const uint64_t version = get_le(h + 8, 4);
  if (version != kFormatVersion) {
    throw bad(path, "format version " + std::to_string(version) + ", this library reads version " +
                        std::to_string(kFormatVersion));
  }
  const uint64_t id_bytes = get_le(h + 12, 4);
  if (id_bytes != kIdBytes) throw bad(path, std::to_string(id_bytes) + " bytes per id (only 4 is known)");
  TokenFileHeader header;
  header.vocab_size = static_cast<int64_t>(get_le(h + 16, 8));
  header.num_tokens = static_cast<int64_t>(get_le(h + 24, 8));
  header.checksum = get_le(h + 32, 8);
  if (header.vocab_size < 1 || header.vocab_size > kMaxVocabSize) {
    throw bad(path, "vocabulary size " + std::to_string(header.vocab_size) + " is outside [1, " +
                        std::to_string(kMaxVocabSize) + "]");
  }
  const uint64_t room = (file_bytes - kTokenFileHeaderBytes) / kIdBytes;
  if (header.num_tokens < 1 || static_cast<uint64_t>(header.num_tokens) != room ||
      (file_bytes - kTokenFileHeaderBytes) % kIdBytes != 0) {
    throw bad(path, "the header announces " + std::to_string(header.num_tokens) + " tokens but the file has " +
                        std::to_string(file_bytes - kTokenFileHeaderBytes) + " bytes for ids (" +
                        std::to_string(kIdBytes) + " each, at least one)");
  }
  return header;
}

// Opens a token file and reads its header; the caller closes the descriptor.
int open_token_file(const std::string& path, TokenFileHeader* header, uint64_t* file_bytes) {
  const int fd = open_regular_file(path, "token file", file_bytes);
  unsigned char h[kTokenFileHeaderBytes];
  if (*file_bytes < kTokenFileHeaderBytes || !read_exact_at(fd, h, sizeof h, 0)) {
    ::close(fd);
    throw bad(path, "too short for the " + std::to_string(kTokenFileHeaderBytes) + "-byte header (" +
                        std::to_string(*file_bytes) + " bytes)");
  }
  try {
    *header = parse_header(h, *file_bytes, path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  return fd;
}

// Index of the first id outside [0, vocab_size), or n if all are inside.
size_t first_bad_id(const int32_t* ids, size_t n, int64_t vocab_size) {
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) return i;
  }
  return n;
}

}  // namespace

int64_t encode_token_file(const Tokenizer& tokenizer, const std::string& text_path, const std::string& token_path) {
  require(!text_path.empty() && !token_path.empty(), FWP_ERR_INVALID_ARGUMENT, "paths must not be empty");
  require(text_path != token_path && !same_file(text_path, token_path), FWP_ERR_INVALID_ARGUMENT,
          "token_path names the text file itself ('" + token_path + "')");
  LineReader text(text_path, "text file", kMaxLineBytes);  // opened first: a missing text writes nothing
  AtomicFileWriter out(token_path);
  unsigned char header[kTokenFileHeaderBytes] = {};
  out.write(header, sizeof header);  // completed at the end

  const int64_t vocab_size = tokenizer.vocab_size();
  uint64_t hash = kFnvOffset;
  int64_t count = 0;
  std::vector<int32_t> ids;
  std::string line;
  const auto flush = [&] {
    hash = fnv1a_words(hash, ids.data(), ids.size());
    out.write(ids.data(), ids.size() * sizeof(int32_t));
    count += static_cast<int64_t>(ids.size());
    ids.clear();
  };
  while (text.next(line)) {
    tokenizer.encode_line(line, ids);
    ids.push_back(tokenizer.eos_id());
    if (ids.size() >= kChunkIds) flush();
  }
  flush();
  require(count > 0, FWP_ERR_INVALID_ARGUMENT, "the text file '" + text_path + "' is empty (no lines to encode)");

  std::memcpy(header, kMagic, 8);
  put_le(header + 8, kFormatVersion, 4);
  put_le(header + 12, kIdBytes, 4);
  put_le(header + 16, static_cast<uint64_t>(vocab_size), 8);
  put_le(header + 24, static_cast<uint64_t>(count), 8);
  put_le(header + 32, finish_checksum(hash, vocab_size, count), 8);
  out.write_at(0, header, sizeof header);
  out.commit();
  return count;
}

void read_token_range(const std::string& path, int64_t offset, int32_t* out, int64_t count) {
  TokenFileHeader header;
  uint64_t file_bytes = 0;
  const int fd = open_token_file(path, &header, &file_bytes);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (offset < 0 || count < 0 || offset > header.num_tokens || count > header.num_tokens - offset) {
    throw Error(FWP_ERR_OUT_OF_RANGE, "tokens [" + std::to_string(offset) + ", " + std::to_string(offset) + " + " +
                                          std::to_string(count) + ") are outside the file's [0, " +
                                          std::to_string(header.num_tokens) + ")");
  }
  if (count == 0) return;
  if (!read_exact_at(fd, out, static_cast<size_t>(count) * sizeof(int32_t),
                     kTokenFileHeaderBytes + static_cast<uint64_t>(offset) * kIdBytes)) {
    throw bad(path, "the file shrank while read");
  }
  const size_t i = first_bad_id(out, static_cast<size_t>(count), header.vocab_size);
  if (i < static_cast<size_t>(count)) {
    throw bad(path, "token " + std::to_string(offset + static_cast<int64_t>(i)) + " has id " + std::to_string(out[i]) +
                        ", outside the vocabulary [0, " + std::to_string(header.vocab_size) + ")");
  }
}

MappedTokenFile::MappedTokenFile(const std::string& path) : path_(path) {
  uint64_t file_bytes = 0;
  const int fd = open_token_file(path, &header_, &file_bytes);
  map_bytes_ = static_cast<size_t>(file_bytes);
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int mmap_errno = errno;
  ::close(fd);  // the mapping keeps the file
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw Error(FWP_ERR_IO, "cannot map token file '" + path + "': " + std::strerror(mmap_errno));
  }
  tokens_ = reinterpret_cast<const int32_t*>(static_cast<const char*>(map_) + kTokenFileHeaderBytes);
  try {
    const size_t n = static_cast<size_t>(header_.num_tokens);
    const size_t i = first_bad_id(tokens_, n, header_.vocab_size);
    if (i < n) {
      throw bad(path, "token " + std::to_string(i) + " has id " + std::to_string(tokens_[i]) +
                          ", outside the vocabulary [0, " + std::to_string(header_.vocab_size) + ")");
    }
    if (finish_checksum(fnv1a_words(kFnvOffset, tokens_, n), header_.vocab_size, header_.num_tokens) !=
        header_.checksum) {
      throw bad(path, "checksum mismatch (the file is damaged)");
    }
  } catch (...) {
    ::munmap(map_, map_bytes_);
    throw;
  }
}

MappedTokenFile::~MappedTokenFile() {
  if (map_) ::munmap(map_, map_bytes_);
}

}  // namespace fwp
