#include "text/pair_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "io/atomic_file.h"
#include "text/checksum.h"
#include "text/line_reader.h"

// The ids and lengths are stored little-endian and mapped directly.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pair files are read in place: little-endian hosts only");

namespace fwp {
namespace {

constexpr char kMagic[8] = {'F', 'W', 'P', 'P', 'A', 'I', 'R', 'S'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kIdBytes = 4;
constexpr uint64_t kChecksumOffset = 112;
constexpr size_t kChunkIds = size_t(1) << 16;
// Bounds every count of a header before any arithmetic (2^40: far above any corpus).
constexpr uint64_t kMaxCount = uint64_t(1) << 40;

void put_le(unsigned char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

Error bad(const std::string& path, const std::string& what) {
  return Error(FWP_ERR_FORMAT, "pair file '" + path + "': " + what);
}

std::string str(int64_t v) { return std::to_string(v); }

// The checksum of a file: ids, the length table, then the header fields.
uint64_t pair_checksum(uint64_t ids_hash, const uint32_t* lengths, size_t num_lengths, const unsigned char* header) {
  uint64_t h = ids_hash;
  for (size_t i = 0; i < num_lengths; ++i) h = (h ^ lengths[i]) * kFnvPrime;
  return fnv1a_bytes(h, header + 8, kChecksumOffset - 8);
}

void write_header(unsigned char* h, const PairFileInfo& info) {
  std::memcpy(h, kMagic, 8);
  put_le(h + 8, kFormatVersion, 4);
  put_le(h + 12, kIdBytes, 4);
  put_le(h + 16, static_cast<uint64_t>(info.vocab_size), 8);
  put_le(h + 24, static_cast<uint64_t>(info.tokenizer_vocab_size), 8);
  put_le(h + 32, static_cast<uint32_t>(info.pad_id), 4);
  put_le(h + 36, static_cast<uint32_t>(info.bos_id), 4);
  put_le(h + 40, static_cast<uint32_t>(info.eos_id), 4);
  put_le(h + 44, static_cast<uint32_t>(info.unk_id), 4);
  put_le(h + 48, static_cast<uint64_t>(info.num_pairs), 8);
  put_le(h + 56, static_cast<uint64_t>(info.source_tokens), 8);
  put_le(h + 64, static_cast<uint64_t>(info.target_tokens), 8);
  put_le(h + 72, static_cast<uint64_t>(info.lines), 8);
  put_le(h + 80, static_cast<uint64_t>(info.skipped_empty), 8);
  put_le(h + 88, static_cast<uint64_t>(info.skipped_too_long), 8);
  put_le(h + 96, static_cast<uint64_t>(info.max_source_tokens), 8);
  put_le(h + 104, static_cast<uint64_t>(info.max_target_tokens), 8);
}

// Parses and checks the header fields against each other and the file size
// (not the ids, lengths or checksum).
PairFileInfo parse_header(const unsigned char* h, uint64_t file_bytes, const std::string& path) {
  if (std::memcmp(h, kMagic, 8) != 0) throw bad(path, "not an fwp pair file (no magic \"FWPPAIRS\")");
  const uint64_t version = get_le(h + 8, 4);
  if (version != kFormatVersion) {
    throw bad(path, "format version " + std::to_string(version) + ", this library reads version " +
                        std::to_string(kFormatVersion));
  }
  const uint64_t id_bytes = get_le(h + 12, 4);
  if (id_bytes != kIdBytes) throw bad(path, std::to_string(id_bytes) + " bytes per id (only 4 is known)");
  // Every count is read unsigned and bounded first, so nothing below overflows.
  uint64_t field[10];
  const int offsets[10] = {16, 24, 48, 56, 64, 72, 80, 88, 96, 104};
  const char* names[10] = {"vocabulary size", "tokenizer vocabulary size", "pair count", "source token count",
                           "target token count", "line count", "empty-pair count", "too-long-pair count",
                           "max source tokens", "max target tokens"};
  for (int i = 0; i < 10; ++i) {
    field[i] = get_le(h + offsets[i], 8);
    if (field[i] > kMaxCount) throw bad(path, std::string("the ") + names[i] + " " + std::to_string(field[i]) + " is absurd");
  }
  PairFileInfo info;
  info.vocab_size = static_cast<int64_t>(field[0]);
  info.tokenizer_vocab_size = static_cast<int64_t>(field[1]);
  info.num_pairs = static_cast<int64_t>(field[2]);
  info.source_tokens = static_cast<int64_t>(field[3]);
  info.target_tokens = static_cast<int64_t>(field[4]);
  info.lines = static_cast<int64_t>(field[5]);
  info.skipped_empty = static_cast<int64_t>(field[6]);
  info.skipped_too_long = static_cast<int64_t>(field[7]);
  info.max_source_tokens = static_cast<int64_t>(field[8]);
  info.max_target_tokens = static_cast<int64_t>(field[9]);
  info.pad_id = static_cast<int32_t>(get_le(h + 32, 4));
  info.bos_id = static_cast<int32_t>(get_le(h + 36, 4));
  info.eos_id = static_cast<int32_t>(get_le(h + 40, 4));
  info.unk_id = static_cast<int32_t>(get_le(h + 44, 4));
  info.checksum = get_le(h + kChecksumOffset, 8);

  const int64_t V = info.vocab_size;
  if (V < 1 || V > kMaxVocabSize) {
    throw bad(path, "vocabulary size " + str(V) + " is outside [1, " + str(kMaxVocabSize) + "]");
  }
  if (info.tokenizer_vocab_size < 1 || info.tokenizer_vocab_size > V) {
    throw bad(path, "tokenizer vocabulary size " + str(info.tokenizer_vocab_size) + " is outside [1, " + str(V) + "]");
  }
  const int32_t specials[4] = {info.pad_id, info.bos_id, info.eos_id, info.unk_id};
  const char* special_names[4] = {"pad", "bos", "eos", "unk"};
  for (int i = 0; i < 4; ++i) {
    if (specials[i] < 0 || specials[i] >= V) {
      throw bad(path, std::string("the ") + special_names[i] + " id " + std::to_string(specials[i]) +
                          " is outside the vocabulary [0, " + str(V) + ")");
    }
  }
  if (info.pad_id == info.bos_id || info.pad_id == info.eos_id || info.bos_id == info.eos_id) {
    throw bad(path, "the pad, bos and eos ids (" + str(info.pad_id) + ", " + str(info.bos_id) + ", " +
                        str(info.eos_id) + ") are not all different");
  }
  if (info.num_pairs < 1) throw bad(path, "the header announces no pairs");
  if (info.source_tokens < info.num_pairs || info.target_tokens < info.num_pairs) {
    throw bad(path, "the header announces " + str(info.source_tokens) + " source and " + str(info.target_tokens) +
                        " target tokens for " + str(info.num_pairs) + " pairs (each side has at least one token)");
  }
  if (info.lines != info.num_pairs + info.skipped_empty + info.skipped_too_long) {
    throw bad(path, "the header's line count " + str(info.lines) + " is not the " + str(info.num_pairs) +
                        " pairs plus the " + str(info.skipped_empty + info.skipped_too_long) + " skipped");
  }
  // Counts are below 2^40, so this cannot overflow.
  const uint64_t expected = kPairFileHeaderBytes + kIdBytes * static_cast<uint64_t>(info.source_tokens + info.target_tokens) +
                            8 * static_cast<uint64_t>(info.num_pairs);
  if (file_bytes != expected) {
    throw bad(path, "the header announces " + str(info.num_pairs) + " pairs of " + str(info.source_tokens) + " + " +
                        str(info.target_tokens) + " tokens (" + std::to_string(expected) + " bytes) but the file has " +
                        std::to_string(file_bytes) + " bytes");
  }
  return info;
}

// Counts the lines of a text file (the first pass that finds unaligned files before any encoding).
int64_t count_lines(const std::string& path, const char* what) {
  LineReader reader(path, what, kMaxLineBytes);
  std::string line;
  int64_t n = 0;
  while (reader.next(line)) ++n;
  return n;
}

}  // namespace

PairSpecials pair_specials(const Tokenizer& tokenizer) {
  PairSpecials s;
  s.vocab_size = tokenizer.vocab_size();
  s.eos_id = tokenizer.eos_id();
  s.unk_id = tokenizer.unk_id();
  s.pad_id = tokenizer.pad_id() >= 0 ? tokenizer.pad_id() : static_cast<int32_t>(s.vocab_size++);
  s.bos_id = tokenizer.bos_id() >= 0 ? tokenizer.bos_id() : static_cast<int32_t>(s.vocab_size++);
  require(s.vocab_size <= kMaxVocabSize, FWP_ERR_INVALID_ARGUMENT,
          "the tokenizer's vocabulary of " + str(tokenizer.vocab_size()) +
              " leaves no room for the pad and bos ids below " + str(kMaxVocabSize));
  return s;
}

PairFileInfo encode_pair_file(const Tokenizer& tokenizer, const std::string& source_path,
                              const std::string& target_path, const std::string& pair_path,
                              const PairEncodeOptions& options) {
  require(!source_path.empty() && !target_path.empty() && !pair_path.empty(), FWP_ERR_INVALID_ARGUMENT,
          "paths must not be empty");
  require(options.max_source_tokens >= 0, FWP_ERR_INVALID_ARGUMENT,
          "max_source_tokens must be >= 0 (0: no limit; got " + str(options.max_source_tokens) + ")");
  require(options.max_target_tokens >= 0, FWP_ERR_INVALID_ARGUMENT,
          "max_target_tokens must be >= 0 (0: no limit; got " + str(options.max_target_tokens) + ")");
  for (const std::string* text : {&source_path, &target_path}) {
    require(pair_path != *text && !same_file(pair_path, *text), FWP_ERR_INVALID_ARGUMENT,
            "pair_path names a text file itself ('" + pair_path + "')");
  }
  const int64_t source_lines = count_lines(source_path, "source file");
  const int64_t target_lines = count_lines(target_path, "target file");
  require(source_lines == target_lines, FWP_ERR_INVALID_ARGUMENT,
          "the files are not line-aligned: the source file '" + source_path + "' has " + str(source_lines) +
              " lines, the target file '" + target_path + "' has " + str(target_lines));
  require(source_lines > 0, FWP_ERR_INVALID_ARGUMENT,
          "the source and target files ('" + source_path + "', '" + target_path + "') are empty (no lines)");

  const PairSpecials specials = pair_specials(tokenizer);
  PairFileInfo info;
  info.vocab_size = specials.vocab_size;
  info.tokenizer_vocab_size = tokenizer.vocab_size();
  info.pad_id = specials.pad_id;
  info.bos_id = specials.bos_id;
  info.eos_id = specials.eos_id;
  info.unk_id = specials.unk_id;
  info.max_source_tokens = options.max_source_tokens;
  info.max_target_tokens = options.max_target_tokens;

  LineReader source(source_path, "source file", kMaxLineBytes);
  LineReader target(target_path, "target file", kMaxLineBytes);
  AtomicFileWriter out(pair_path);
  unsigned char header[kPairFileHeaderBytes] = {};
  out.write(header, sizeof header);  // completed at the end

  uint64_t ids_hash = kFnvOffset;
  std::vector<uint32_t> lengths;
  std::vector<int32_t> pending, source_ids, target_ids;
  const auto flush = [&] {
    ids_hash = fnv1a_words(ids_hash, pending.data(), pending.size());
    out.write(pending.data(), pending.size() * sizeof(int32_t));
    pending.clear();
  };
  std::string source_line, target_line;
  while (source.next(source_line)) {
    require(target.next(target_line), FWP_ERR_IO, "the target file '" + target_path + "' shrank while read");
    ++info.lines;
    source_ids.clear();
    target_ids.clear();
    tokenizer.encode_line(source_line, source_ids);
    tokenizer.encode_line(target_line, target_ids);
    const int64_t ns = static_cast<int64_t>(source_ids.size()), nt = static_cast<int64_t>(target_ids.size());
    if (ns == 0 || nt == 0) {
      require(options.empty == PairPolicy::kSkip, FWP_ERR_INVALID_ARGUMENT,
              "line " + str(info.lines) + ": the " + (ns == 0 ? "source" : "target") +
                  " sentence is empty (no tokens); the empty-line policy is 'error' (set it to skip such pairs)");
      ++info.skipped_empty;
      continue;
    }
    const bool source_long = options.max_source_tokens > 0 && ns > options.max_source_tokens;
    const bool target_long = options.max_target_tokens > 0 && nt > options.max_target_tokens;
    if (source_long || target_long) {
      require(options.too_long == PairPolicy::kSkip, FWP_ERR_INVALID_ARGUMENT,
              "line " + str(info.lines) + ": the " +
                  (source_long ? "source sentence has " + str(ns) + " tokens, more than max_source_tokens = " +
                                     str(options.max_source_tokens)
                               : "target sentence has " + str(nt) + " tokens, more than max_target_tokens = " +
                                     str(options.max_target_tokens)) +
                  "; the too-long policy is 'error' (set it to skip such pairs)");
      ++info.skipped_too_long;
      continue;
    }
    // A line is at most 64 MiB, so its ids fit a u32 length.
    lengths.push_back(static_cast<uint32_t>(ns));
    lengths.push_back(static_cast<uint32_t>(nt));
    info.source_tokens += ns;
    info.target_tokens += nt;
    ++info.num_pairs;
    pending.insert(pending.end(), source_ids.begin(), source_ids.end());
    pending.insert(pending.end(), target_ids.begin(), target_ids.end());
    if (pending.size() >= kChunkIds) flush();
  }
  require(!target.next(target_line), FWP_ERR_IO, "the target file '" + target_path + "' grew while read");
  flush();
  require(info.num_pairs > 0, FWP_ERR_INVALID_ARGUMENT,
          "no pair is left of the " + str(info.lines) + " lines (" + str(info.skipped_empty) + " skipped as empty, " +
              str(info.skipped_too_long) + " as too long)");
  for (size_t i = 0; i < lengths.size(); i += 2) {
    info.longest_source = std::max<int64_t>(info.longest_source, lengths[i]);
    info.longest_target = std::max<int64_t>(info.longest_target, lengths[i + 1]);
  }

  out.write(lengths.data(), lengths.size() * sizeof(uint32_t));
  write_header(header, info);
  info.checksum = pair_checksum(ids_hash, lengths.data(), lengths.size(), header);
  put_le(header + kChecksumOffset, info.checksum, 8);
  out.write_at(0, header, sizeof header);
  out.commit();
  return info;
}

MappedPairFile::MappedPairFile(const std::string& path) : path_(path) {
  uint64_t file_bytes = 0;
  const int fd = open_regular_file(path, "pair file", &file_bytes);
  unsigned char h[kPairFileHeaderBytes];
  if (file_bytes < kPairFileHeaderBytes || !read_exact_at(fd, h, sizeof h, 0)) {
    ::close(fd);
    throw bad(path, "too short for the " + std::to_string(kPairFileHeaderBytes) + "-byte header (" +
                        std::to_string(file_bytes) + " bytes)");
  }
  try {
    info_ = parse_header(h, file_bytes, path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  map_bytes_ = static_cast<size_t>(file_bytes);
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int mmap_errno = errno;
  ::close(fd);  // the mapping keeps the file
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw Error(FWP_ERR_IO, "cannot map pair file '" + path + "': " + std::strerror(mmap_errno));
  }
  try {
    const auto* base = static_cast<const unsigned char*>(map_);
    const size_t num_ids = static_cast<size_t>(info_.source_tokens + info_.target_tokens);
    const size_t num_pairs = static_cast<size_t>(info_.num_pairs);
    ids_ = reinterpret_cast<const int32_t*>(base + kPairFileHeaderBytes);
    lengths_ = reinterpret_cast<const uint32_t*>(base + kPairFileHeaderBytes + kIdBytes * num_ids);
    if (pair_checksum(fnv1a_words(kFnvOffset, ids_, num_ids), lengths_, 2 * num_pairs, base) != info_.checksum) {
      throw bad(path, "checksum mismatch (the file is damaged)");
    }
    // Lengths: each >= 1 and (summed in 64 bits) equal to the announced counts.
    starts_.resize(num_pairs);
    int64_t source_sum = 0, target_sum = 0, start = 0;
    for (size_t i = 0; i < num_pairs; ++i) {
      const int64_t ns = lengths_[2 * i], nt = lengths_[2 * i + 1];
      if (ns < 1 || nt < 1) throw bad(path, "pair " + std::to_string(i) + " has an empty side");
      if (info_.max_source_tokens > 0 && ns > info_.max_source_tokens) {
        throw bad(path, "pair " + std::to_string(i) + " has " + str(ns) + " source tokens, more than the file's limit " +
                            str(info_.max_source_tokens));
      }
      if (info_.max_target_tokens > 0 && nt > info_.max_target_tokens) {
        throw bad(path, "pair " + std::to_string(i) + " has " + str(nt) + " target tokens, more than the file's limit " +
                            str(info_.max_target_tokens));
      }
      source_sum += ns;
      target_sum += nt;
      starts_[i] = start;
      start += ns + nt;
      info_.longest_source = std::max(info_.longest_source, ns);
      info_.longest_target = std::max(info_.longest_target, nt);
    }
    if (source_sum != info_.source_tokens || target_sum != info_.target_tokens) {
      throw bad(path, "the length table sums to " + str(source_sum) + " source and " + str(target_sum) +
                          " target tokens, the header announces " + str(info_.source_tokens) + " and " +
                          str(info_.target_tokens));
    }
    for (size_t i = 0; i < num_ids; ++i) {
      if (ids_[i] < 0 || ids_[i] >= info_.vocab_size || ids_[i] == info_.pad_id) {
        throw bad(path, "id " + std::to_string(i) + " is " + std::to_string(ids_[i]) +
                            (ids_[i] == info_.pad_id ? ", the pad id" : ", outside the vocabulary [0, " +
                                                                             str(info_.vocab_size) + ")"));
      }
    }
  } catch (...) {
    ::munmap(map_, map_bytes_);
    map_ = nullptr;
    throw;
  }
}

MappedPairFile::~MappedPairFile() {
  if (map_) ::munmap(map_, map_bytes_);
}

}  // namespace fwp
