// A stateless, counter-based random bit source: hash(seed, index) gives 64
// well-mixed bits for every element index, so a dropout mask needs no stored
// state, is recomputed exactly in the backward, does not depend on the thread
// count, and is the same on the CPU and on the GPU (this header compiles for
// both; cuda/dropout.cu and src/ops/dropout.cpp call the same function).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FWP_HOST_DEVICE __host__ __device__
#else
#define FWP_HOST_DEVICE
#endif

namespace fwp {

// SplitMix64's finaliser applied to seed + (index + 1) * golden ratio: the
// sequence SplitMix64 would produce from `seed` at position index.
FWP_HOST_DEVICE inline uint64_t counter_hash(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Dropout keeps element `index` iff its top 24 hash bits, read as an integer
// in [0, 2^24), are >= threshold = dropout_threshold(p): probability 1 - p up
// to 2^-24.
constexpr double kDropoutResolution = 16777216.0;  // 2^24
inline uint32_t dropout_threshold(double p) { return static_cast<uint32_t>(p * kDropoutResolution + 0.5); }
FWP_HOST_DEVICE inline bool dropout_keep(uint64_t seed, uint64_t index, uint32_t threshold) {
  return static_cast<uint32_t>(counter_hash(seed, index) >> 40) >= threshold;
}

}  // namespace fwp
