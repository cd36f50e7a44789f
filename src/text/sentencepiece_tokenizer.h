// SentencePiece subword tokenizers (Debian's libsentencepiece), behind the
// Tokenizer interface. Built only where CMake found the library
// (FWP_HAVE_SENTENCEPIECE); elsewhere these functions throw
// Error(FWP_ERR_UNSUPPORTED).
//
// Our models reserve id 0 for "<eos>" (a control piece: every line end) and
// id 1 for "<unk>"; there is no <s> or <pad>. Training reads the files line by
// line through a SentenceIterator and returns the model proto in memory, so
// nothing is written to disk. The payload in a tokenizer file is the
// serialized SentencePiece ModelProto.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer.h"

namespace fwp {

// Whether this build has SentencePiece.
bool sentencepiece_available();

struct SentencePieceOptions {
  bool bpe = false;  // else unigram
  int64_t vocab_size = 8000;
  float character_coverage = 1.0f;
  bool byte_fallback = false;
  int32_t num_threads = 1;
  int64_t max_sentence_length = 16384;
  bool verbose = false;
  bool pad_bos = false;  // also <pad> (id 2) and <bos> (id 3), for translation
};

// Trains on the lines of the files; Error(FWP_ERR_INVALID_ARGUMENT) with
// SentencePiece's message when it refuses the text or the options.
std::unique_ptr<Tokenizer> train_sentencepiece(const std::vector<std::string>& paths,
                                               const SentencePieceOptions& options);
// Builds a tokenizer from a serialized model; Error(FWP_ERR_FORMAT) if it is
// not a model of ours (ids 0 and 1 "<eos>" and "<unk>").
std::unique_ptr<Tokenizer> sentencepiece_from_payload(std::string_view payload);

}  // namespace fwp
