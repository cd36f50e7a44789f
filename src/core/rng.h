// A small, portable, seedable random number generator (xoshiro256**).
// We do not use <random> distributions because their output differs between
// standard libraries; checkpoints store the four state words so that a resumed
// run draws exactly the numbers an uninterrupted run would have drawn.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace fwp {

class Rng {
 public:
  explicit Rng(uint64_t seed = 42) { reseed(seed); }

  void reseed(uint64_t seed);
  uint64_t next_u64();
  // Uniform in [0, 1) with 53 random bits.
  double uniform();
  // Uniform integer in [0, n), n >= 1, without modulo bias.
  uint64_t below(uint64_t n);
  // Standard normal (Box-Muller; the spare value is cached and part of the state).
  double normal();
  // An independent generator for a sub-object (e.g. one layer of a model).
  Rng split();

  using State = std::array<uint64_t, 6>;  // 4 xoshiro words, has_spare, spare bits
  State state() const;
  // Why `s` is not a state this generator can be in, or "" if it is one:
  // the four xoshiro words are never all zero (from zero the generator only
  // ever returns zero, and below() or normal() would loop forever), has_spare
  // is 0 or 1, and a spare value is finite.
  static std::string state_problem(const State& s);
  // Error(FWP_ERR_INVALID_ARGUMENT) with state_problem()'s reason, the
  // generator unchanged, for a state it cannot be in.
  void set_state(const State& s);

 private:
  std::array<uint64_t, 4> s_{};
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace fwp
