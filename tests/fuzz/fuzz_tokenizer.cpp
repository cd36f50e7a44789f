// Fuzz target for the tokenizer file reader (text/tokenizer.h load_tokenizer,
// which fwp_tokenizer_load calls): the word vocabulary payload and the
// SentencePiece model payload.
//
// Each input is read twice: as it is (the header checks), and with the
// payload-size and checksum fields recomputed, so that a mutated payload
// reaches the payload parsers (WordTokenizer::from_payload and SentencePiece's
// model loader) instead of stopping at the checksum. A finding: a status other
// than FWP_ERR_FORMAT (or FWP_ERR_UNSUPPORTED for a SentencePiece file in a
// build without it), a crash, a sanitizer report, a hang, a huge allocation,
// or a tokenizer that loads but then misbehaves: every id decodes, a text
// encodes into ids inside the vocabulary, and saving then loading it again
// gives the same payload.
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "text/checksum.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/tokenizer.h"
#include "text/word_tokenizer.h"

namespace {

constexpr size_t kHeaderBytes = 32;

const fuzz::TempFile& input_file() {
  static const fuzz::TempFile file("tokenizer");
  return file;
}
const fuzz::TempFile& resaved_file() {
  static const fuzz::TempFile file("tokenizer_resaved");
  return file;
}

void put_le(unsigned char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint32_t get_le32(const unsigned char* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// The input with its payload size and checksum made to match its payload
// (text/tokenizer.h: the checksum covers kind, size and payload).
std::string with_valid_checksum(const uint8_t* bytes, size_t size) {
  std::string file(reinterpret_cast<const char*>(bytes), size);
  auto* h = reinterpret_cast<unsigned char*>(file.data());
  const uint64_t payload_bytes = size - kHeaderBytes;
  put_le(h + 16, payload_bytes, 8);
  uint64_t sum = fwp::fnv1a_u64(fwp::kFnvOffset, get_le32(h + 12));
  sum = fwp::fnv1a_u64(sum, payload_bytes);
  sum = fwp::fnv1a_bytes(sum, file.data() + kHeaderBytes, payload_bytes);
  put_le(h + 24, sum, 8);
  return file;
}

// What a loaded tokenizer must do with any text: ids inside the vocabulary,
// every id decodable, and a save + load that gives the same tokenizer.
void exercise(const fwp::Tokenizer& t, std::string_view text) {
  const int64_t V = t.vocab_size();
  fuzz::check(V >= 2 && V <= fwp::kMaxVocabSize, "vocabulary size " + std::to_string(V) + " out of range");
  fuzz::check(t.eos_id() >= 0 && t.eos_id() < V && t.unk_id() >= 0 && t.unk_id() < V, "special ids out of range");
  const std::vector<int32_t> ids = t.encode(text, true);
  for (const int32_t id : ids) fuzz::check(id >= 0 && id < V, "encode gave id " + std::to_string(id));
  (void)t.decode(ids.data(), ids.size());
  // Every id of a small vocabulary (the first 4096 of a large one) decodes.
  std::vector<int32_t> all;
  for (int32_t id = 0; id < V && id < 4096; ++id) all.push_back(id);
  (void)t.decode(all.data(), all.size());
  for (const int32_t id : all) (void)t.token_to_id(t.id_to_token(id));

  fwp::save_tokenizer(t, resaved_file().path());
  const std::unique_ptr<fwp::Tokenizer> again = fwp::load_tokenizer(resaved_file().path());
  fuzz::check(again->kind() == t.kind() && again->payload() == t.payload(),
              "a saved tokenizer loads as another tokenizer");
}

// Loads a file and exercises the tokenizer; true if it loaded (or is a
// SentencePiece file that only a build without SentencePiece refuses).
bool load_and_exercise(const char* where, const std::string& file, std::string_view text) {
  input_file().write(file);
  std::unique_ptr<fwp::Tokenizer> t;
  const bool ok = fuzz::accepts(where, {FWP_ERR_FORMAT}, [&] {
    try {
      t = fwp::load_tokenizer(input_file().path());
    } catch (const fwp::Error& e) {
      if (e.status() != FWP_ERR_UNSUPPORTED || fwp::sentencepiece_available()) throw;
    }
  });
  if (ok && t) exercise(*t, text);
  return ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const std::string raw(reinterpret_cast<const char*>(bytes), size);
  // A short text to encode: the input's last bytes (arbitrary bytes, lines and words).
  const std::string_view text = std::string_view(raw).substr(size > 64 ? size - 64 : 0);
  fuzz::input_accepted = load_and_exercise("load_tokenizer (the input as it is)", raw, text);
  if (size >= kHeaderBytes) {
    fuzz::input_accepted |=
        load_and_exercise("load_tokenizer (checksum recomputed)", with_valid_checksum(bytes, size), text);
  }
  return 0;
}

#ifdef FWP_FUZZ_REPLAY
// Seeds: a word vocabulary and (where SentencePiece is built) a unigram and a BPE model, trained on a small text.
void write_seeds(const std::string& dir) {
  const fuzz::TempFile text("tokenizer_seed_text");
  std::string corpus;
  for (int i = 0; i < 40; ++i) {
    corpus += "the quick brown fox " + std::to_string(i % 7) + " jumps over the lazy dog\n";
    corpus += " = heading = \n\xc3\xa9t\xc3\xa9 caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 <unk> @-@ 1 @,@ 000\n";
  }
  text.write(corpus);
  const auto word = fwp::WordTokenizer::train({text.path()}, 1, 0);
  fwp::save_tokenizer(*word, dir + "/seed_valid_word.fwptok");
  if (fwp::sentencepiece_available()) {
    fwp::SentencePieceOptions o;
    o.vocab_size = 47;
    const auto unigram = fwp::train_sentencepiece({text.path()}, o);
    fwp::save_tokenizer(*unigram, dir + "/seed_valid_unigram.fwptok");
    o.bpe = true;
    const auto bpe = fwp::train_sentencepiece({text.path()}, o);
    fwp::save_tokenizer(*bpe, dir + "/seed_valid_bpe.fwptok");
  }
}
#endif
