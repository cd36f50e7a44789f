// Picking the next token from log-probabilities on the host (fwp_lm_sample):
// greedy, temperature, top-k and top-p (nucleus) sampling, seeded.
#pragma once

#include <cstdint>

namespace fwp {

struct SamplerSettings {
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off
};

// Throws Error(FWP_ERR_INVALID_ARGUMENT) naming prefix + the bad field.
void validate_sampler(const SamplerSettings& s, const char* prefix);

// The token for `log_probs` [vocab] (any logits; -inf excludes a token).
// Greedy: the largest value, the lowest id among ties; no draw. Otherwise
// p ~ exp(log_probs / temperature) restricted to the top_k largest (ties:
// lower ids first), then to the smallest prefix of the remaining tokens in
// decreasing order whose mass reaches top_p of their total (at least one
// token), and one uniform draw from *rng_state (splitmix64, advanced once).
// Throws Error(FWP_ERR_INVALID_ARGUMENT) for NaN or +inf values, or when no
// value is finite.
int32_t sample_token(const float* log_probs, int64_t vocab, const SamplerSettings& s, uint64_t* rng_state);

}  // namespace fwp
