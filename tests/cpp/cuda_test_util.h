// Helpers shared by the CUDA test files (test_cuda_tiles.cpp, test_cuda_parity.cpp):
// seeded random inputs and a relative comparison that names the worst element.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "core/rng.h"

namespace fwp {
namespace cudatest {

using FVec = std::vector<float>;

inline FVec normal(Rng& rng, int64_t n, double scale = 1.0) {
  FVec v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(scale * rng.normal());
  return v;
}

inline FVec uniform(Rng& rng, int64_t n, double lo, double hi) {
  FVec v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(lo + (hi - lo) * rng.uniform());
  return v;
}

// Rows of width d made non-negative and summing to 1 (sum-normalised keys, as the
// delta rule uses them: every step is then a contraction).
inline FVec simplex_rows(Rng& rng, int64_t rows, int64_t d) {
  FVec v = uniform(rng, rows * d, 0.0, 1.0);
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0.0;
    for (int64_t j = 0; j < d; ++j) s += v[r * d + j];
    for (int64_t j = 0; j < d; ++j) v[r * d + j] = static_cast<float>(v[r * d + j] / s);
  }
  return v;
}

// Rows of width d scaled to unit L2 norm.
inline FVec unit_rows(Rng& rng, int64_t rows, int64_t d) {
  FVec v = normal(rng, rows * d);
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0.0;
    for (int64_t j = 0; j < d; ++j) s += double(v[r * d + j]) * v[r * d + j];
    const double inv = s > 0 ? 1.0 / std::sqrt(s) : 0.0;
    for (int64_t j = 0; j < d; ++j) v[r * d + j] = static_cast<float>(v[r * d + j] * inv);
  }
  return v;
}

template <typename A, typename B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (!(d <= m)) m = d;  // NaN propagates
  }
  return m;
}

// Checks max_i |got_i - ref_i| <= rtol * max(max_i |ref_i|, floor): the error
// relative to the size of the reference tensor (an element-wise relative
// error is meaningless for entries that cancel to ~0). Any NaN fails.
template <typename A, typename B>
::testing::AssertionResult close_rel(const std::vector<A>& got, const std::vector<B>& ref, double rtol,
                                     double floor = 1e-30) {
  if (got.size() != ref.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " vs reference " << ref.size();
  }
  double scale = floor;
  for (const auto& x : ref) scale = std::max(scale, std::fabs(double(x)));
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]);
    const double d = std::fabs(g - double(ref[i]));
    if (!std::isfinite(g) || !(d <= worst)) {
      if (!std::isfinite(g)) {
        return ::testing::AssertionFailure() << "non-finite value " << g << " at " << i << " (reference "
                                             << double(ref[i]) << ")";
      }
      worst = d;
      at = i;
    }
  }
  if (worst <= rtol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max |got - ref| = " << worst << " at " << at << " (got "
                                       << double(got[at]) << ", ref " << double(ref[at]) << "), allowed "
                                       << rtol << " * " << scale << " = " << rtol * scale;
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

template <typename T>
std::vector<T> cast_vec(const FVec& v) {
  return std::vector<T>(v.begin(), v.end());
}

}  // namespace cudatest
}  // namespace fwp
