#include "models/lm/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"

namespace fwp {

namespace {

// splitmix64 (Steele, Lea & Flood 2014): one 64-bit output per call, any state valid.
uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

void validate_sampler(const SamplerSettings& s, const char* prefix) {
  const std::string p(prefix);
  require(std::isfinite(s.temperature) && s.temperature >= 0, FWP_ERR_INVALID_ARGUMENT,
          p + "temperature must be finite and >= 0 (got " + std::to_string(s.temperature) + ")");
  require(s.top_k >= 0, FWP_ERR_INVALID_ARGUMENT, p + "top_k must be >= 0 (got " + std::to_string(s.top_k) + ")");
  require(std::isfinite(s.top_p) && s.top_p > 0 && s.top_p <= 1, FWP_ERR_INVALID_ARGUMENT,
          p + "top_p must be in (0, 1] (got " + std::to_string(s.top_p) + ")");
}

int32_t sample_token(const float* log_probs, int64_t vocab, const SamplerSettings& s, uint64_t* rng_state) {
  require(vocab >= 1 && vocab <= (int64_t(1) << 31) - 1, FWP_ERR_INVALID_ARGUMENT,
          "vocab must be in [1, 2^31) (got " + std::to_string(vocab) + ")");
  int64_t best = -1;
  for (int64_t v = 0; v < vocab; ++v) {
    const float x = log_probs[v];
    require(!std::isnan(x) && x != INFINITY, FWP_ERR_INVALID_ARGUMENT,
            "log_probs[" + std::to_string(v) + "] is NaN or +infinity");
    if (x != -INFINITY && (best < 0 || x > log_probs[best])) best = v;
  }
  require(best >= 0, FWP_ERR_INVALID_ARGUMENT, "log_probs has no finite value: no token can be picked");
  if (s.temperature == 0) return static_cast<int32_t>(best);

  // Candidates in decreasing order of probability (ties: lower ids first).
  std::vector<int32_t> order;
  order.reserve(static_cast<size_t>(vocab));
  for (int64_t v = 0; v < vocab; ++v)
    if (log_probs[v] != -INFINITY) order.push_back(static_cast<int32_t>(v));
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return log_probs[a] > log_probs[b]; });
  if (s.top_k > 0 && static_cast<int64_t>(order.size()) > s.top_k) order.resize(static_cast<size_t>(s.top_k));
  // Softmax of log_probs / temperature over the candidates, in double.
  const double top = static_cast<double>(log_probs[order.front()]);
  std::vector<double> p(order.size());
  for (size_t i = 0; i < order.size(); ++i)
    p[i] = std::exp((static_cast<double>(log_probs[order[i]]) - top) / s.temperature);
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  if (s.top_p < 1) {
    double mass = 0;
    size_t keep = 0;
    while (keep < p.size()) {
      mass += p[keep++];
      if (mass >= s.top_p * total) break;
    }
    p.resize(keep);
    order.resize(keep);
  }
  const double kept = std::accumulate(p.begin(), p.end(), 0.0);
  // 53 random bits in [0, 1), scaled to the kept mass.
  const double u = static_cast<double>(splitmix64(rng_state) >> 11) * (1.0 / 9007199254740992.0) * kept;
  double acc = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    acc += p[i];
    if (u < acc) return order[i];
  }
  return order.back();  // u within rounding of the total
}

}  // namespace fwp
