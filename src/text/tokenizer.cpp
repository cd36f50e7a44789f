#include "text/tokenizer.h"

#include <unistd.h>

#include <cstring>

#include "core/error.h"
#include "io/atomic_file.h"
#include "text/checksum.h"
#include "text/line_reader.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/word_tokenizer.h"

namespace fwp {

static_assert(kMaxVocabSize == FWP_MAX_VOCAB_SIZE, "text.h states the vocabulary bound");

namespace {

constexpr char kMagic[8] = {'F', 'W', 'P', 'T', 'O', 'K', 'N', 'Z'};
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kHeaderBytes = 32;

void put_le(unsigned char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

uint64_t tokenizer_checksum(uint32_t kind, uint64_t payload_bytes, const std::string& payload) {
  uint64_t h = fnv1a_u64(kFnvOffset, kind);
  h = fnv1a_u64(h, payload_bytes);
  return fnv1a_bytes(h, payload.data(), payload.size());
}

// Closes a descriptor at scope exit.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_eos) const {
  std::vector<int32_t> ids;
  for_each_line(text, [&](std::string_view line, bool terminated) {
    encode_line(line, ids);
    if (terminated || add_eos) ids.push_back(eos_id());
  });
  return ids;
}

std::string Tokenizer::decode(const int32_t* ids, size_t n) const {
  const int64_t size = vocab_size();
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= size) {
      throw Error(FWP_ERR_OUT_OF_RANGE, "ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                                            " is outside the vocabulary [0, " + std::to_string(size) + ")");
    }
  }
  std::string text;
  size_t start = 0;
  for (size_t i = 0; i <= n; ++i) {
    if (i == n || ids[i] == eos_id()) {
      decode_line(ids + start, i - start, text);
      if (i < n) text.push_back('\n');
      start = i + 1;
    }
  }
  return text;
}

void save_tokenizer(const Tokenizer& tokenizer, const std::string& path) {
  const std::string payload = tokenizer.payload();
  const uint32_t kind = static_cast<uint32_t>(tokenizer.kind());
  unsigned char header[kHeaderBytes];
  std::memcpy(header, kMagic, 8);
  put_le(header + 8, kFormatVersion, 4);
  put_le(header + 12, kind, 4);
  put_le(header + 16, payload.size(), 8);
  put_le(header + 24, tokenizer_checksum(kind, payload.size(), payload), 8);
  AtomicFileWriter file(path);
  file.write(header, sizeof header);
  file.write(payload.data(), payload.size());
  file.commit();
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  uint64_t file_bytes = 0;
  const int fd = open_regular_file(path, "tokenizer file", &file_bytes);
  FdCloser closer{fd};
  const auto bad = [&](const std::string& what) { return Error(FWP_ERR_FORMAT, "tokenizer file '" + path + "': " + what); };
  unsigned char header[kHeaderBytes];
  if (file_bytes < kHeaderBytes || !read_exact_at(fd, header, sizeof header, 0)) {
    throw bad("too short for the " + std::to_string(kHeaderBytes) + "-byte header (" + std::to_string(file_bytes) +
              " bytes)");
  }
  if (std::memcmp(header, kMagic, 8) != 0) throw bad("not an fwp tokenizer file (no magic \"FWPTOKNZ\")");
  const uint64_t version = get_le(header + 8, 4);
  if (version != kFormatVersion) {
    throw bad("format version " + std::to_string(version) + ", this library reads version " +
              std::to_string(kFormatVersion));
  }
  const uint64_t kind = get_le(header + 12, 4);
  if (kind != FWP_TOKENIZER_WORD && kind != FWP_TOKENIZER_SENTENCEPIECE) {
    throw bad("unknown tokenizer kind " + std::to_string(kind));
  }
  const uint64_t payload_bytes = get_le(header + 16, 8);
  if (file_bytes > kMaxTokenizerFileBytes) throw bad("larger than " + std::to_string(kMaxTokenizerFileBytes) + " bytes");
  if (payload_bytes != file_bytes - kHeaderBytes) {
    throw bad("the header announces " + std::to_string(payload_bytes) + " payload bytes but the file has " +
              std::to_string(file_bytes - kHeaderBytes));
  }
  std::string payload(payload_bytes, '\0');  // bounded by the file's real size
  if (!read_exact_at(fd, payload.data(), payload.size(), kHeaderBytes)) throw bad("the file shrank while read");
  if (tokenizer_checksum(static_cast<uint32_t>(kind), payload_bytes, payload) != get_le(header + 24, 8)) {
    throw bad("checksum mismatch (the file is damaged)");
  }
  try {
    if (kind == FWP_TOKENIZER_WORD) return WordTokenizer::from_payload(payload);
    return sentencepiece_from_payload(payload);
  } catch (const Error& e) {
    if (e.status() == FWP_ERR_FORMAT) throw bad(e.what());
    throw;
  }
}

}  // namespace fwp
