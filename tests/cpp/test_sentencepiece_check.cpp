// The normalization-table check of SentencePiece models
// (text/sentencepiece_check.h; issue 10: fuzz_tokenizer found a model whose
// table made SentencePiece read outside the heap). Synthetic ModelProto
// messages: only the normalizer fields matter to the check.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "text/sentencepiece_check.h"

namespace fwp {
namespace {

using namespace std::string_literals;

std::string varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}

// A length-delimited field.
std::string field(int number, const std::string& bytes) {
  return varint(uint64_t(number) << 3 | 2) + varint(bytes.size()) + bytes;
}

// A precompiled charsmap: the trie's units, then the strings.
std::string charsmap(const std::vector<uint32_t>& units, const std::string& strings) {
  std::string out;
  const uint32_t trie_bytes = static_cast<uint32_t>(units.size() * 4);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(trie_bytes >> (8 * i)));
  for (const uint32_t u : units) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(u >> (8 * i)));
  }
  return out + strings;
}

// A model with a normalizer (field 3) and optionally a denormalizer (field 5).
std::string model(const std::string& normalizer_map, const std::string& denormalizer_map = "") {
  std::string m = field(1, "a piece message") + field(3, field(1, "nmt_nfkc") + field(2, normalizer_map));
  if (!denormalizer_map.empty()) m += field(5, field(2, denormalizer_map));
  return m;
}

// A trie of one 256-unit block mapping the byte 'a' (root base 0, child 'a'
// with a leaf whose value, at 'a' ^ 1, is `value`).
std::vector<uint32_t> one_key_trie(uint32_t value) {
  std::vector<uint32_t> units(256, 0xFFFFFFFFu & ~0xFFu);  // labels that match no byte
  units[0] = 0;                                              // root: offset 0, base 0
  units['a'] = 'a' | (1u << 8) | (1u << 10);                 // label 'a', leaf, offset 1: base 'a' ^ 1
  units['a' ^ 1] = (1u << 31) | value;                       // the value unit
  return units;
}

void expect_refused(const std::string& m, const std::string& part) {
  try {
    check_sentencepiece_normalizers(m);
    FAIL() << "accepted; expected a refusal mentioning '" << part << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_FORMAT);
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(SentencePieceCheck, AWellFormedTableAndNoTableAreAccepted) {
  EXPECT_NO_THROW(check_sentencepiece_normalizers(model(charsmap(one_key_trie(2), "x\0yz\0"s))));
  EXPECT_NO_THROW(check_sentencepiece_normalizers(model("")));
  EXPECT_NO_THROW(check_sentencepiece_normalizers(field(1, "no normalizer at all")));
}

TEST(SentencePieceCheck, AValueOutsideTheStringsIsRefused) {
  expect_refused(model(charsmap(one_key_trie(5), "x\0yz\0"s)), "value pointing outside its strings");
}

TEST(SentencePieceCheck, ANodeOutsideTheTrieIsRefused) {
  std::vector<uint32_t> units = one_key_trie(0);
  units['a'] = 'a' | (1u << 8) | (4096u << 10);  // base far beyond the 256 units
  expect_refused(model(charsmap(units, "x\0"s)), "node pointing outside the trie");
}

TEST(SentencePieceCheck, BrokenLayoutsAreRefused) {
  expect_refused(model("\x01\x02"), "shorter than its 4-byte size");
  std::vector<uint32_t> partial_block(100, 0);
  expect_refused(model(charsmap(partial_block, "x\0"s)), "not whole 256-unit blocks");
  std::string no_strings = charsmap(one_key_trie(0), "");
  expect_refused(model(no_strings), "no room for its strings");
  std::string trie_past_end = charsmap(one_key_trie(0), "x\0"s);
  trie_past_end[1] = 0x10;  // 4096 bytes of trie in a 1030-byte table
  expect_refused(model(trie_past_end), "no room for its strings");
  expect_refused(model(charsmap(one_key_trie(0), "xy")), "do not end with NUL");
}

TEST(SentencePieceCheck, TheDenormalizerIsCheckedToo) {
  const std::string good = charsmap(one_key_trie(0), "x\0"s);
  expect_refused(model(good, charsmap(one_key_trie(9), "x\0"s)), "denormalizer");
}

TEST(SentencePieceCheck, TheLastOfRepeatedSpecsIsTheOneChecked) {
  // Protocol buffers merge a repeated message field: its last charsmap is the one used.
  const std::string good = charsmap(one_key_trie(0), "x\0"s);
  const std::string evil = charsmap(one_key_trie(7), "x\0"s);
  EXPECT_NO_THROW(check_sentencepiece_normalizers(model(evil) + field(3, field(2, good))));
  expect_refused(model(good) + field(3, field(1, "only a name")) + field(3, field(2, evil)), "outside its strings");
}

TEST(SentencePieceCheck, MalformedMessagesAreRefused) {
  expect_refused(std::string("\x1a\x80", 2), "not a well-formed");           // field 3, truncated length
  expect_refused(field(3, std::string("\x12\x05" "ab", 4)), "not a well-formed");  // charsmap longer than its spec
  expect_refused(std::string("\x0b", 1), "not a well-formed");               // a group
}

}  // namespace
}  // namespace fwp
