// Tokenizers behind fwp_tokenizer (fwp/text.h): the word-level vocabulary of
// the WikiText conventions (text/word_tokenizer.h) and SentencePiece subwords
// (text/sentencepiece_tokenizer.h), one interface for both.
//
// What every kind shares is the treatment of lines: a text is cut into lines
// as the authors' toolkit reads files (text/line_reader.h), each line is
// encoded on its own, and every line end becomes the <eos> token. Decoding
// turns <eos> back into "\n" and each run of other ids between them into one
// line of text.
//
// Tokenizer files (fwp_tokenizer_save/load), all integers little-endian:
//   0  8 bytes  magic "FWPTOKNZ"
//   8  u32      format version (1)
//   12 u32      kind (fwp_tokenizer_kind)
//   16 u64      payload bytes P (the file is exactly 32 + P bytes)
//   24 u64      checksum: FNV-1a over kind, P and the payload (text/checksum.h)
//   32 P bytes  the kind's payload (WordTokenizer / SentencePieceTokenizer::payload())
// Loading checks every field and the checksum before the payload is parsed,
// and bounds every size by the file's size, so a damaged or hostile file is
// FWP_ERR_FORMAT and never a large allocation.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fwp/text.h"

namespace fwp {

// Longest line a tokenizer reads from a file (text/line_reader.h).
constexpr size_t kMaxLineBytes = size_t(64) << 20;
// Largest vocabulary of any kind (ids are int32; 2^24 is far above any corpus's need).
constexpr int64_t kMaxVocabSize = int64_t(1) << 24;
// Largest tokenizer file accepted (a 2^24-word vocabulary of long words fits).
constexpr uint64_t kMaxTokenizerFileBytes = uint64_t(1) << 31;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual fwp_tokenizer_kind kind() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual int32_t unk_id() const = 0;
  // <bos> and <pad> for sequence-to-sequence data (text/pair_file.h), or -1
  // when the vocabulary has none (word level; SentencePiece models trained
  // without them, which is every model before pad_bos existed).
  virtual int32_t bos_id() const { return -1; }
  virtual int32_t pad_id() const { return -1; }
  // The id of a token of the vocabulary (exact bytes), or -1 if there is none.
  virtual int32_t token_to_id(std::string_view token) const = 0;
  // The token of an id in [0, vocab_size()).
  virtual const std::string& id_to_token(int32_t id) const = 0;

  // Appends the ids of one line (no line terminator inside, no <eos>).
  virtual void encode_line(std::string_view line, std::vector<int32_t>& out) const = 0;
  // Appends the text of one line: ids in [0, vocab_size()), none of them <eos>.
  virtual void decode_line(const int32_t* ids, size_t n, std::string& out) const = 0;

  // The kind's part of a tokenizer file.
  virtual std::string payload() const = 0;

  // Encodes a whole text: each line's ids, then <eos> for every line end. With
  // add_eos, a last line without a terminator is ended too (so a text encodes
  // as the same text in a file does); an empty text has no lines.
  std::vector<int32_t> encode(std::string_view text, bool add_eos) const;
  // Decodes ids (each must be in range; Error(FWP_ERR_OUT_OF_RANGE) naming the
  // first that is not): <eos> -> "\n", each run of other ids -> decode_line().
  std::string decode(const int32_t* ids, size_t n) const;
};

// Writes a tokenizer file atomically (temporary file + rename).
void save_tokenizer(const Tokenizer& tokenizer, const std::string& path);
// Reads and validates a tokenizer file: Error(FWP_ERR_IO) if it cannot be
// read, Error(FWP_ERR_FORMAT) naming the problem if it is not a valid file,
// Error(FWP_ERR_UNSUPPORTED) for a SentencePiece file in a build without SentencePiece.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace fwp
