#include "text/sentencepiece_check.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"

namespace fwp {
namespace {

Error bad(const std::string& what) { return Error(FWP_ERR_FORMAT, "the SentencePiece model " + what); }

// Protocol-buffer wire format, just enough to find length-delimited fields.
bool read_varint(std::string_view& in, uint64_t* value) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70 && !in.empty(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    v |= uint64_t(byte & 0x7f) << shift;
    if (byte < 0x80) {
      *value = v;
      return true;
    }
  }
  return false;
}

// Calls f(field, bytes) for each length-delimited field of a message; false if
// the message is malformed or holds groups (SentencePiece never writes them).
template <typename F>
bool for_each_bytes_field(std::string_view message, F&& f) {
  while (!message.empty()) {
    uint64_t key = 0, n = 0;
    if (!read_varint(message, &key) || (key >> 3) == 0) return false;
    switch (key & 7) {
      case 0:
        if (!read_varint(message, &n)) return false;
        break;
      case 1:
      case 5: {
        const size_t width = (key & 7) == 1 ? 8 : 4;
        if (message.size() < width) return false;
        message.remove_prefix(width);
        break;
      }
      case 2:
        if (!read_varint(message, &n) || n > message.size()) return false;
        f(key >> 3, message.substr(0, n));
        message.remove_prefix(n);
        break;
      default:
        return false;
    }
  }
  return true;
}

// darts-clone's unit fields (darts.h: DoubleArrayUnit).
bool has_leaf(uint32_t u) { return ((u >> 8) & 1) != 0; }
uint32_t value(uint32_t u) { return u & ((1u << 31) - 1); }
uint32_t label(uint32_t u) { return u & ((1u << 31) | 0xFF); }
uint32_t offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

void check_charsmap(std::string_view blob, const char* which) {
  if (blob.empty()) return;  // no table: no normalization
  const std::string where = std::string("'s ") + which + " table ";
  if (blob.size() < 4) throw bad(where + "is shorter than its 4-byte size");
  const uint32_t trie_bytes = uint32_t(static_cast<unsigned char>(blob[0])) |
                              uint32_t(static_cast<unsigned char>(blob[1])) << 8 |
                              uint32_t(static_cast<unsigned char>(blob[2])) << 16 |
                              uint32_t(static_cast<unsigned char>(blob[3])) << 24;
  if (trie_bytes == 0 || trie_bytes % 1024 != 0) {
    throw bad(where + "has a trie of " + std::to_string(trie_bytes) + " bytes, not whole 256-unit blocks");
  }
  if (trie_bytes >= blob.size() - 4) throw bad(where + "has a trie that leaves no room for its strings");
  const std::string_view strings = blob.substr(4 + trie_bytes);
  if (strings.back() != '\0') throw bad(where + "has strings that do not end with NUL");

  const size_t n = trie_bytes / 4;
  std::vector<uint32_t> units(n);
  std::memcpy(units.data(), blob.data() + 4, trie_bytes);  // little-endian, as SentencePiece reads it here
  // Every node a search can reach: from a node at `pos`, the children are
  // base ^ c (c = 0..255, base = pos ^ offset) whose label is c; a node with a
  // leaf has its value (a string offset) at base. Children stay inside base's
  // 256-unit block, so base < n keeps them inside the trie.
  std::vector<bool> seen(n, false);
  std::vector<size_t> stack{0};
  seen[0] = true;
  while (!stack.empty()) {
    const size_t pos = stack.back();
    stack.pop_back();
    const size_t base = pos ^ offset(units[pos]);
    if (base >= n) throw bad(where + "has a trie node pointing outside the trie");
    if (pos != 0 && has_leaf(units[pos]) && value(units[base]) >= strings.size()) {
      throw bad(where + "has a trie value pointing outside its strings");
    }
    for (uint32_t c = 0; c < 256; ++c) {
      const size_t child = base ^ c;
      if (label(units[child]) == c && !seen[child]) {
        seen[child] = true;
        stack.push_back(child);
      }
    }
  }
}

}  // namespace

void check_sentencepiece_normalizers(std::string_view model_proto) {
  // A message field that occurs more than once is merged, and in the merge
  // the last precompiled_charsmap wins: keep the last one of each spec.
  std::string_view charsmap[2];
  bool present[2] = {false, false};
  bool spec_ok = true;
  const bool ok = for_each_bytes_field(model_proto, [&](uint64_t field, std::string_view spec) {
    if (field != 3 && field != 5) return;
    const int which = field == 3 ? 0 : 1;
    spec_ok = spec_ok && for_each_bytes_field(spec, [&](uint64_t f, std::string_view bytes) {
                if (f != 2) return;
                charsmap[which] = bytes;
                present[which] = true;
              });
  });
  if (!ok || !spec_ok) throw bad("is not a well-formed protocol buffer message");
  if (present[0]) check_charsmap(charsmap[0], "normalizer");
  if (present[1]) check_charsmap(charsmap[1], "denormalizer");
}

}  // namespace fwp
