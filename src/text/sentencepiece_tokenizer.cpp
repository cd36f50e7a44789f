#include "text/sentencepiece_tokenizer.h"

#include "core/error.h"

#if FWP_HAVE_SENTENCEPIECE

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <exception>
#include <unordered_map>

#include "text/line_reader.h"
#include "text/sentencepiece_check.h"

namespace fwp {
namespace {

constexpr const char* kEos = "<eos>";
constexpr const char* kUnk = "<unk>";
constexpr const char* kPad = "<pad>";
constexpr const char* kBos = "<bos>";

// Feeds SentencePiece the lines of the files in order, one bounded line at a
// time. A read error ends the iteration (exceptions must not unwind through
// SentencePiece); error() hands it back after training returns.
class FileLines final : public sentencepiece::SentenceIterator {
 public:
  explicit FileLines(const std::vector<std::string>& paths) : paths_(paths) { advance(); }
  bool done() const override { return done_; }
  void Next() override { advance(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override {
    if (!error_) return {};
    return sentencepiece::util::Status(sentencepiece::util::StatusCode::kDataLoss, "reading the text failed");
  }
  std::exception_ptr error() const { return error_; }

 private:
  void advance() {
    try {
      next_line();
    } catch (...) {
      error_ = std::current_exception();
      done_ = true;
    }
  }
  void next_line() {
    for (;;) {
      if (!reader_) {
        if (next_path_ == paths_.size()) {
          done_ = true;
          return;
        }
        reader_ = std::make_unique<LineReader>(paths_[next_path_++], "text file", kMaxLineBytes);
      }
      if (reader_->next(line_)) return;
      reader_.reset();
    }
  }

  const std::vector<std::string>& paths_;
  size_t next_path_ = 0;
  std::unique_ptr<LineReader> reader_;
  std::string line_;
  bool done_ = false;
  std::exception_ptr error_;
};

// Whether SentencePiece will keep `line` as a training sentence for certain:
// at most max_bytes long (longer lines are skipped), without U+2047 (its
// reserved unknown mark: such lines are skipped), and with a character that
// normalisation cannot remove (ASCII letters, digits and punctuation, or a
// non-ASCII character outside the spaces, the format characters
// U+2000..U+206F, the variation selectors, U+FEFF and U+00AD).
bool is_training_sentence(std::string_view line, int64_t max_bytes) {
  if (static_cast<int64_t>(line.size()) > max_bytes) return false;
  if (line.find("\xe2\x81\x87") != std::string_view::npos) return false;
  bool visible = false;
  for (size_t i = 0; i < line.size() && !visible;) {
    const unsigned char c = static_cast<unsigned char>(line[i]);
    if (c < 0x80) {
      visible = c > 0x20 && c < 0x7f;
      ++i;
      continue;
    }
    const size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (n == 1 || i + n > line.size()) {  // not UTF-8: SentencePiece makes it U+FFFD, which stays
      visible = true;
      break;
    }
    uint32_t cp = c & (0xff >> (n + 1));
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(line[i + k]) & 0x3f);
    visible = cp >= 0xa0 && cp != 0xad && cp != 0x1680 && !(cp >= 0x2000 && cp <= 0x206f) && cp != 0x3000 &&
              !(cp >= 0xfe00 && cp <= 0xfe0f) && cp != 0xfeff;
    i += n;
  }
  return visible;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::string_view serialized) {
    check_sentencepiece_normalizers(serialized);  // SentencePiece trusts these tables (text/sentencepiece_check.h)
    const auto status = processor_.LoadFromSerializedProto(serialized);
    require(status.ok(), FWP_ERR_FORMAT, "not a SentencePiece model: " + status.ToString());
    const int size = processor_.GetPieceSize();
    require(size >= 3 && size <= kMaxVocabSize, FWP_ERR_FORMAT,
            "the SentencePiece vocabulary size " + std::to_string(size) + " is outside [3, " +
                std::to_string(kMaxVocabSize) + "]");
    require(processor_.eos_id() == 0 && processor_.IdToPiece(0) == kEos && processor_.unk_id() == 1 &&
                processor_.IdToPiece(1) == kUnk,
            FWP_ERR_FORMAT, "the SentencePiece model does not have <eos> at id 0 and <unk> at id 1");
    serialized_ = std::string(serialized);
  }

  fwp_tokenizer_kind kind() const override { return FWP_TOKENIZER_SENTENCEPIECE; }
  int64_t vocab_size() const override { return processor_.GetPieceSize(); }
  int32_t eos_id() const override { return 0; }
  int32_t unk_id() const override { return 1; }
  // SentencePiece answers -1 for a symbol the model was trained without.
  int32_t bos_id() const override { return processor_.bos_id(); }
  int32_t pad_id() const override { return processor_.pad_id(); }
  int32_t token_to_id(std::string_view token) const override {
    const int id = processor_.PieceToId(token);
    // PieceToId answers <unk>'s id for pieces it does not have.
    return id == unk_id() && token != kUnk ? -1 : id;
  }
  const std::string& id_to_token(int32_t id) const override { return processor_.IdToPiece(id); }
  void encode_line(std::string_view line, std::vector<int32_t>& out) const override {
    std::vector<int> ids;
    const auto status = processor_.Encode(line, &ids);
    require(status.ok(), FWP_ERR_INTERNAL, "SentencePiece could not encode a line: " + status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }
  void decode_line(const int32_t* ids, size_t n, std::string& out) const override {
    std::string text;
    const auto status = processor_.Decode(std::vector<int>(ids, ids + n), &text);
    require(status.ok(), FWP_ERR_INTERNAL, "SentencePiece could not decode: " + status.ToString());
    out += text;
  }
  std::string payload() const override { return serialized_; }

 private:
  sentencepiece::SentencePieceProcessor processor_;
  std::string serialized_;
};

}  // namespace

bool sentencepiece_available() { return true; }

std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string>& paths,
                                               const SentencePieceOptions& o) {
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", o.bpe ? "bpe" : "unigram"},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"character_coverage", std::to_string(o.character_coverage)},
      {"byte_fallback", o.byte_fallback ? "true" : "false"},
      {"num_threads", std::to_string(o.num_threads)},
      {"max_sentence_length", std::to_string(o.max_sentence_length)},
      {"eos_id", "0"},
      {"unk_id", "1"},
      // <pad> and <bos> only when asked: models trained before they existed, and
      // language models, keep ids 2.. for learned pieces.
      {"pad_id", o.pad_bos ? "2" : "-1"},
      {"bos_id", o.pad_bos ? "3" : "-1"},
      {"eos_piece", kEos},
      {"unk_piece", kUnk},
      {"pad_piece", kPad},
      {"bos_piece", kBos},
      // Quiet unless asked: SentencePiece logs every step at INFO; errors come back as statuses.
      {"minloglevel", o.verbose ? "0" : "3"},
  };
  // SentencePiece aborts the process (a failed CHECK) when no sentence is
  // left to train on, so a first pass makes sure there is one; it also
  // reports unreadable files before training starts.
  bool any_sentence = false;
  std::string line;
  for (size_t f = 0; f < paths.size() && !any_sentence; ++f) {
    LineReader reader(paths[f], "text file", kMaxLineBytes);
    while (!any_sentence && reader.next(line)) any_sentence = is_training_sentence(line, o.max_sentence_length);
  }
  require(any_sentence, FWP_ERR_INVALID_ARGUMENT,
          "the training text holds no line SentencePiece can train on (the files are empty or blank, or every "
          "line is longer than max_sentence_length = " + std::to_string(o.max_sentence_length) + " bytes)");

  FileLines lines(paths);
  std::string serialized;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &serialized);
  if (lines.error()) std::rethrow_exception(lines.error());  // a read error, named as such
  require(status.ok(), FWP_ERR_INVALID_ARGUMENT, "SentencePiece refused to train: " + status.ToString());
  return std::make_unique<SentencePieceTokenizer>(serialized);
}

std::unique_ptr<Tokenizer> sentencepiece_from_payload(std::string_view payload) {
  return std::make_unique<SentencePieceTokenizer>(payload);
}

}  // namespace fwp

#else  // no SentencePiece in this build

namespace fwp {
namespace {
[[noreturn]] void unsupported() {
  throw Error(FWP_ERR_UNSUPPORTED,
              "this build of fwp has no SentencePiece (install libsentencepiece-dev and reconfigure)");
}
}  // namespace

bool sentencepiece_available() { return false; }
std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string>&, const SentencePieceOptions&) {
  unsupported();
}
std::unique_ptr<Tokenizer> sentencepiece_from_payload(std::string_view) { unsupported(); }

}  // namespace fwp

#endif
