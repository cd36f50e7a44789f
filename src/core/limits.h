// Size limits and overflow-checked size arithmetic: the one home for them.
// Every layer, model, data source and C entry point bounds its sizes here, so a
// product of sizes never overflows int64 and absurd requests fail before any
// allocation, with a message that names what was too large.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
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

// ceil(a / b) for a >= 0 and b >= 1, without forming a + b - 1 (which
// overflows for b near INT64_MAX).
inline int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

// The longest chunk of the chunkwise fast-weight algorithm (chunk_size), which
// is also the number of steps between two states saved for the backward. A
// chunk needs chunk^2 scratch elements per thread, so a larger chunk could never
// run, and the bound keeps every step count that adds a chunk far from overflow.
constexpr int64_t kMaxChunkSize = int64_t(1) << 16;

// Error(FWP_ERR_INVALID_ARGUMENT) naming `what` unless 0 <= chunk_size <=
// kMaxChunkSize (0 = the backend's default).
inline void check_chunk_size(int64_t chunk_size, const std::string& what) {
  if (chunk_size < 0 || chunk_size > kMaxChunkSize) {
    throw Error(FWP_ERR_INVALID_ARGUMENT, what + " must be in [0, " + std::to_string(kMaxChunkSize) +
                                              "] (0 = automatic) (got " + std::to_string(chunk_size) + ")");
  }
}

// Error(FWP_ERR_INVALID_ARGUMENT) naming `what` unless eps is finite and at
// least FLT_MIN, the smallest normal float. A smaller (subnormal) epsilon is
// read as 0 under flush-to-zero, which the thread pool's workers enable, and
// the division it guards then gives NaN or Inf.
inline void check_epsilon(double eps, const std::string& what) {
  if (!(std::isfinite(eps) && eps >= static_cast<double>(FLT_MIN))) {
    char got[32];
    std::snprintf(got, sizeof got, "%.9g", eps);  // to_string would print 1e-40 as 0.000000
    throw Error(FWP_ERR_INVALID_ARGUMENT, what + " must be finite and >= FLT_MIN (1.17549435e-38; subnormal values "
                                                 "flush to zero) (got " + got + ")");
  }
}

}  // namespace fwp
