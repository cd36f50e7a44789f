#include "core/rng.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace fwp {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Rng::reseed(uint64_t seed) {
  uint64_t x = seed;
  for (auto& w : s_) w = splitmix64(x);
  has_spare_ = false;
  spare_ = 0.0;
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

uint64_t Rng::below(uint64_t n) {
  if (n <= 1) return 0;
  // Rejection sampling: accept only values below the largest multiple of n.
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
  uint64_t r;
  do {
    r = next_u64();
  } while (r >= limit);
  return r % n;
}

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1;
  do {
    u1 = uniform();
  } while (u1 <= 0.0);
  const double u2 = uniform();
  const double radius = std::sqrt(-2.0 * std::log(u1));
  const double angle = 6.283185307179586476925 * u2;
  spare_ = radius * std::sin(angle);
  has_spare_ = true;
  return radius * std::cos(angle);
}

Rng Rng::split() {
  Rng child(0);
  uint64_t x = next_u64();
  for (auto& w : child.s_) w = splitmix64(x);
  return child;
}

Rng::State Rng::state() const {
  uint64_t spare_bits;
  std::memcpy(&spare_bits, &spare_, sizeof spare_bits);
  return {s_[0], s_[1], s_[2], s_[3], has_spare_ ? 1u : 0u, spare_bits};
}

std::string Rng::state_problem(const State& st) {
  if ((st[0] | st[1] | st[2] | st[3]) == 0) {
    return "the generator words are all zero (a state xoshiro256** never reaches: it would only draw zeros)";
  }
  if (st[4] > 1) return "the has_spare word must be 0 or 1 (got " + std::to_string(st[4]) + ")";
  double spare;
  std::memcpy(&spare, &st[5], sizeof spare);
  if (st[4] == 1 && !std::isfinite(spare)) return "the spare normal value is not finite";
  return "";
}

void Rng::set_state(const State& st) {
  const std::string problem = state_problem(st);
  require(problem.empty(), FWP_ERR_INVALID_ARGUMENT, "invalid random generator state: " + problem);
  for (int i = 0; i < 4; ++i) s_[i] = st[i];
  has_spare_ = st[4] != 0;
  std::memcpy(&spare_, &st[5], sizeof spare_);
}

}  // namespace fwp
