// Size limits and overflow-checked size arithmetic: the one home for them.
// Every layer, model, data source and C entry point bounds its sizes here, so a
// product of sizes never overflows int64 and absurd requests fail before any
// allocation, with a message that names what was too large.
#pragma once

#include <cstdint>
#include <string>

#include "core/error.h"

namespace fwp {

// The largest number of elements one array argument or internal buffer may
// have (2^40). Larger requests are certainly mistakes (4 TiB of floats).
constexpr int64_t kMaxElements = int64_t(1) << 40;

// a * b for non-negative sizes; Error(FWP_ERR_INVALID_ARGUMENT) naming `what`
// when a factor is negative or the product exceeds kMaxElements (which also
// rules out int64 overflow).
inline int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  if (a < 0 || b < 0) throw Error(FWP_ERR_INVALID_ARGUMENT, what + " is negative");
  if (a != 0 && b > kMaxElements / a) {
    throw Error(FWP_ERR_INVALID_ARGUMENT, what + " is too large (more than 2^40 elements)");
  }
  return a * b;
}

inline int64_t checked_mul(int64_t a, int64_t b, int64_t c, const std::string& what) {
  return checked_mul(checked_mul(a, b, what), c, what);
}

inline int64_t checked_mul(int64_t a, int64_t b, int64_t c, int64_t d, const std::string& what) {
  return checked_mul(checked_mul(a, b, c, what), d, what);
}

// a + b for non-negative sizes, with the same bound.
inline int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  if (a < 0 || b < 0) throw Error(FWP_ERR_INVALID_ARGUMENT, what + " is negative");
  if (b > kMaxElements - a) {
    throw Error(FWP_ERR_INVALID_ARGUMENT, what + " is too large (more than 2^40 elements)");
  }
  return a + b;
}

}  // namespace fwp
