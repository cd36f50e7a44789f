// The 64-bit checksums of the tokenizer and token files: FNV-1a, over bytes
// (tokenizer payloads) or over 32-bit words (token ids, one step per id so the
// data source can check a memory-mapped file quickly). Each step
// h = (h ^ x) * p is a bijection of h for odd p, so changing any one byte or
// id always changes the checksum; multi-word damage is caught with
// probability 1 - 2^-64 for practical purposes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fwp {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

inline uint64_t fnv1a_bytes(uint64_t h, const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}

inline uint64_t fnv1a_u64(uint64_t h, uint64_t value) {
  for (int i = 0; i < 8; ++i) h = (h ^ ((value >> (8 * i)) & 0xff)) * kFnvPrime;
  return h;
}

inline uint64_t fnv1a_words(uint64_t h, const int32_t* ids, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint32_t>(ids[i])) * kFnvPrime;
  return h;
}

}  // namespace fwp
