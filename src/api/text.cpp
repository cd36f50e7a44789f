// C API of tokenizers and token files (fwp/text.h).
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "api/checks.h"
#include "api/guard.h"
#include "api/handles.h"
#include "core/error.h"
#include "fwp/fwp.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/token_file.h"
#include "text/tokenizer.h"
#include "text/word_tokenizer.h"

namespace {

using fwp::Error;
using fwp::api::check_not_null;

const fwp::Tokenizer& tokenizer_of(const fwp_tokenizer* tokenizer) {
  check_not_null(tokenizer, "tokenizer");
  return *tokenizer->impl;
}

// The file names of a training call: num_paths >= 1 non-NULL, non-empty strings.
std::vector<std::string> path_list(const char* const* paths, int64_t num_paths) {
  check_not_null(paths, "paths");
  fwp::api::check_positive(num_paths, "num_paths");
  // Bounded so that a garbage count fails here instead of reading far past the array.
  fwp::require(num_paths <= 1 << 20, FWP_ERR_INVALID_ARGUMENT,
               "num_paths must be at most 2^20 (got " + std::to_string(num_paths) + ")");
  std::vector<std::string> list;
  for (int64_t i = 0; i < num_paths; ++i) {
    const std::string name = "paths[" + std::to_string(i) + "]";
    check_not_null(paths[i], name.c_str());
    fwp::require(paths[i][0] != '\0', FWP_ERR_INVALID_ARGUMENT, name + " must not be empty");
    list.emplace_back(paths[i]);
  }
  return list;
}

fwp_tokenizer* new_handle(std::unique_ptr<fwp::Tokenizer> impl) {
  auto handle = std::make_unique<fwp_tokenizer>();
  handle->impl = std::move(impl);
  return handle.release();
}

}  // namespace

extern "C" {

FWP_API void fwp_word_tokenizer_config_init(fwp_word_tokenizer_config* config) {
  if (!config) return;
  *config = fwp_word_tokenizer_config{};
  config->struct_size = sizeof(fwp_word_tokenizer_config);
  config->min_count = 1;
  config->max_size = 0;
}

FWP_API void fwp_sentencepiece_config_init(fwp_sentencepiece_config* config) {
  if (!config) return;
  *config = fwp_sentencepiece_config{};
  config->struct_size = sizeof(fwp_sentencepiece_config);
  config->model_type = FWP_SENTENCEPIECE_UNIGRAM;
  config->vocab_size = 8000;
  config->character_coverage = 1.0f;
  config->byte_fallback = 0;
  config->num_threads = 1;
  config->max_sentence_length = 16384;
  config->verbose = 0;
  config->pad_bos = 0;
}

FWP_API int fwp_tokenizer_sentencepiece_available(void) { return fwp::sentencepiece_available() ? 1 : 0; }

FWP_API fwp_status fwp_tokenizer_train_word(const char* const* paths, int64_t num_paths,
                                            const fwp_word_tokenizer_config* config, fwp_tokenizer** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    const std::vector<std::string> files = path_list(paths, num_paths);
    check_not_null(config, "config");
    const fwp_word_tokenizer_config c =
        fwp::api::read_config(*config, fwp_word_tokenizer_config_init, "config");
    *out = new_handle(fwp::WordTokenizer::train(files, c.min_count, c.max_size));
  });
}

FWP_API fwp_status fwp_tokenizer_train_sentencepiece(const char* const* paths, int64_t num_paths,
                                                     const fwp_sentencepiece_config* config, fwp_tokenizer** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    const std::vector<std::string> files = path_list(paths, num_paths);
    check_not_null(config, "config");
    const fwp_sentencepiece_config c = fwp::api::read_config(*config, fwp_sentencepiece_config_init, "config");
    const int32_t model = fwp::api::enum_value(c.model_type);
    if (model != FWP_SENTENCEPIECE_UNIGRAM && model != FWP_SENTENCEPIECE_BPE) {
      throw Error(FWP_ERR_OUT_OF_RANGE, "config->model_type must be FWP_SENTENCEPIECE_UNIGRAM or "
                                        "FWP_SENTENCEPIECE_BPE (got " + std::to_string(model) + ")");
    }
    fwp::require(c.vocab_size >= 3 && c.vocab_size <= fwp::kMaxVocabSize, FWP_ERR_INVALID_ARGUMENT,
                 "config->vocab_size must be in [3, " + std::to_string(fwp::kMaxVocabSize) + "] (got " +
                     std::to_string(c.vocab_size) + ")");
    // SentencePiece's own range (it refuses anything else).
    fwp::require(c.character_coverage >= 0.98f && c.character_coverage <= 1.0f, FWP_ERR_INVALID_ARGUMENT,
                 "config->character_coverage must be in [0.98, 1] (got " + std::to_string(c.character_coverage) +
                     ")");
    fwp::api::check_flag(c.byte_fallback, "config->byte_fallback");
    fwp::require(c.num_threads >= 1 && c.num_threads <= 128, FWP_ERR_INVALID_ARGUMENT,
                 "config->num_threads must be in [1, 128] (got " + std::to_string(c.num_threads) + ")");
    fwp::require(c.max_sentence_length >= 1 && c.max_sentence_length <= (int64_t(1) << 26), FWP_ERR_INVALID_ARGUMENT,
                 "config->max_sentence_length must be in [1, 2^26] (got " + std::to_string(c.max_sentence_length) +
                     ")");
    fwp::api::check_flag(c.verbose, "config->verbose");
    fwp::api::check_flag(c.pad_bos, "config->pad_bos");
    fwp::require(!c.pad_bos || c.vocab_size >= 5, FWP_ERR_INVALID_ARGUMENT,
                 "config->vocab_size must be >= 5 with pad_bos (4 special ids and a piece; got " +
                     std::to_string(c.vocab_size) + ")");
    if (!fwp::sentencepiece_available()) {
      throw Error(FWP_ERR_UNSUPPORTED,
                  "this build of fwp has no SentencePiece (install libsentencepiece-dev and reconfigure)");
    }
    fwp::SentencePieceOptions options;
    options.bpe = model == FWP_SENTENCEPIECE_BPE;
    options.vocab_size = c.vocab_size;
    options.character_coverage = c.character_coverage;
    options.byte_fallback = c.byte_fallback != 0;
    options.num_threads = c.num_threads;
    options.max_sentence_length = c.max_sentence_length;
    options.verbose = c.verbose != 0;
    options.pad_bos = c.pad_bos != 0;
    *out = new_handle(fwp::train_sentencepiece(files, options));
  });
}

FWP_API fwp_status fwp_tokenizer_save(const fwp_tokenizer* tokenizer, const char* path) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Tokenizer& tok = tokenizer_of(tokenizer);
    check_not_null(path, "path");
    fwp::save_tokenizer(tok, path);
  });
}

FWP_API fwp_status fwp_tokenizer_load(const char* path, fwp_tokenizer** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    check_not_null(path, "path");
    *out = new_handle(fwp::load_tokenizer(path));
  });
}

FWP_API void fwp_tokenizer_destroy(fwp_tokenizer* tokenizer) { delete tokenizer; }

FWP_API fwp_status fwp_tokenizer_get_kind(const fwp_tokenizer* tokenizer, fwp_tokenizer_kind* kind) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Tokenizer& tok = tokenizer_of(tokenizer);
    check_not_null(kind, "kind");
    *kind = tok.kind();
  });
}

FWP_API fwp_status fwp_tokenizer_vocab_size(const fwp_tokenizer* tokenizer, int64_t* vocab_size) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Tokenizer& tok = tokenizer_of(tokenizer);
    check_not_null(vocab_size, "vocab_size");
    *vocab_size = tok.vocab_size();
  });
}

FWP_API fwp_status fwp_tokenizer_eos_id(const fwp_tokenizer* tokenizer, int32_t* id) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Tokenizer& tok = tokenizer_of(tokenizer);
    check_not_null(id, "id");
    *id = tok.eos_id();
  });
}

FWP_API fwp_status fwp_tokenizer_unk_id(const fwp_tokenizer* tokenizer, int32_t* id) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Tokenizer& tok = tokenizer_of(tokenizer);
    check_not_null(id, "id");
    *id = tok.unk_id();
  });
}

FWP_API fwp_status fwp_tokenizer_token_to_id(const fwp_tokenizer* tokenizer, const char* token, size_t length,
                                             int32_t* id) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Tokenizer& tok = tokenizer_of(tokenizer);
    if (length > 0) check_not_null(token, "token");
    check_not_null(id, "id");
    *id = tok.token_to_id(length > 0 ? std::string_view(token, length) : std::string_view());
  });
}

FWP_API fwp_status fwp_tokenizer_id_to_token(const fwp_tokenizer* tokenizer, int32_t id, char* buffer,
                                             size_t capacity, size_t* length) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Tokenizer& tok = tokenizer_of(tokenizer);
    if (capacity > 0) check_not_null(buffer, "buffer");
    check_not_null(length, "length");
    if (id < 0 || id >= tok.vocab_size()) {
      throw Error(FWP_ERR_OUT_OF_RANGE, "id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                            std::to_string(tok.vocab_size()) + ")");
    }
    const std::string& token = tok.id_to_token(id);
    *length = token.size();
    if (capacity > 0) {
      const size_t n = std::min(token.size(), capacity - 1);
      std::memcpy(buffer, token.data(), n);
      buffer[n] = '\0';
    }
  });
}

FWP_API fwp_status fwp_tokenizer_encode(const fwp_tokenizer* tokenizer, const char* text, size_t length,
                                        int32_t add_eos, int32_t* ids, int64_t capacity, int64_t* count) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Tokenizer& tok = tokenizer_of(tokenizer);
    if (length > 0) check_not_null(text, "text");
    check_not_null(count, "count");
    fwp::api::check_flag(add_eos, "add_eos");
    fwp::require(capacity >= 0, FWP_ERR_INVALID_ARGUMENT,
                 "capacity must be >= 0 (got " + std::to_string(capacity) + ")");
    if (capacity > 0) check_not_null(ids, "ids");
    const std::vector<int32_t> encoded =
        tok.encode(length > 0 ? std::string_view(text, length) : std::string_view(), add_eos != 0);
    const int64_t n = static_cast<int64_t>(encoded.size());
    *count = n;
    if (ids == nullptr && capacity == 0) return;  // a size query
    if (capacity < n) {
      throw Error(FWP_ERR_SHAPE_MISMATCH, "capacity " + std::to_string(capacity) + " is too small for the " +
                                              std::to_string(n) + " ids of the text (*count holds the number)");
    }
    if (n > 0) std::memcpy(ids, encoded.data(), encoded.size() * sizeof(int32_t));
  });
}

FWP_API fwp_status fwp_tokenizer_decode(const fwp_tokenizer* tokenizer, const int32_t* ids, int64_t num_ids,
                                        char* text, size_t capacity, size_t* length) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Tokenizer& tok = tokenizer_of(tokenizer);
    check_not_null(length, "length");
    *length = 0;
    fwp::require(num_ids >= 0, FWP_ERR_INVALID_ARGUMENT, "num_ids must be >= 0 (got " + std::to_string(num_ids) + ")");
    fwp::require(num_ids <= fwp::kMaxElements, FWP_ERR_INVALID_ARGUMENT, "num_ids is too large");
    if (num_ids > 0) check_not_null(ids, "ids");
    if (capacity > 0) check_not_null(text, "text");
    const std::string decoded = tok.decode(ids, static_cast<size_t>(num_ids));
    *length = decoded.size();
    if (text == nullptr && capacity == 0) return;  // a size query
    if (capacity < decoded.size() + 1) {
      throw Error(FWP_ERR_SHAPE_MISMATCH, "capacity " + std::to_string(capacity) + " is too small for the " +
                                              std::to_string(decoded.size()) +
                                              " bytes of text and its NUL (*length holds the length)");
    }
    std::memcpy(text, decoded.data(), decoded.size());
    text[decoded.size()] = '\0';
  });
}

FWP_API fwp_status fwp_token_file_encode(const fwp_tokenizer* tokenizer, const char* text_path,
                                         const char* token_path, int64_t* num_tokens) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Tokenizer& tok = tokenizer_of(tokenizer);
    check_not_null(text_path, "text_path");
    check_not_null(token_path, "token_path");
    const int64_t n = fwp::encode_token_file(tok, text_path, token_path);
    if (num_tokens) *num_tokens = n;
  });
}

FWP_API fwp_status fwp_token_file_info(const char* path, int64_t* vocab_size, int64_t* num_tokens) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(path, "path");
    const fwp::MappedTokenFile file(path);
    if (vocab_size) *vocab_size = file.header().vocab_size;
    if (num_tokens) *num_tokens = file.header().num_tokens;
  });
}

FWP_API fwp_status fwp_token_file_read(const char* path, int64_t offset, int32_t* out, int64_t count) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(path, "path");
    if (count > 0) check_not_null(out, "out");
    fwp::read_token_range(path, offset, out, count);
  });
}

}  // extern "C"
