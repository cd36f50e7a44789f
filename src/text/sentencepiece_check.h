// Checks of a serialized SentencePiece model (ModelProto) that SentencePiece
// itself does not make before it uses the model (issue 10, found by
// tests/fuzz/fuzz_tokenizer.cpp): its normalization tables.
//
// A NormalizerSpec (the model's normalizer_spec, field 3, and
// denormalizer_spec, field 5) may carry precompiled_charsmap (its field 2):
//   u32 T (little-endian), T bytes of a darts-clone double-array trie
//   (T / 4 32-bit units), then the normalized strings, each ended by NUL;
// the trie maps input prefixes to offsets into those strings. SentencePiece
// follows the trie's offsets and reads the strings with strlen without any
// bounds check, so a hostile table reads outside the model (a heap overflow).
// The check walks every node the trie can reach and requires every unit index
// and every string offset to lie inside the table, the trie to be whole
// 256-unit blocks (as darts-clone builds it), and the strings to end with NUL.
#pragma once

#include <string_view>

namespace fwp {

// Error(FWP_ERR_FORMAT) naming the problem if the serialized ModelProto's
// normalization tables are malformed (or the message cannot be parsed);
// returns normally for tables SentencePiece can use safely, and for none.
void check_sentencepiece_normalizers(std::string_view model_proto);

}  // namespace fwp
