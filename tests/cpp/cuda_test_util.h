// Helpers shared by the CUDA test files (test_cuda_tiles.cpp, test_cuda_parity*.cpp):
// seeded random inputs, a relative comparison that names the worst element, and
// the FWP_REQUIRE_CUDA switch.
//
// FWP_REQUIRE_CUDA=1 (scripts/gpu-check.sh sets it) says "this run is on a GPU
// machine and must exercise the GPU". Then
//   - FWP_SKIP_OR_FAIL_WITHOUT_CUDA_DEVICE (the parity fixtures' SetUp) fails a
//     test that would otherwise skip for want of a device, with the reason the
//     CUDA runtime gives (no driver, driver too old, no device node, ...);
//   - a global test environment, registered by including this header, fails the
//     run at set-up when the build has no CUDA backend or no device is visible,
//     and at tear-down when any test of the run was skipped, for whatever reason.
// So a run that did not really execute the kernels cannot exit 0. Without the
// variable (development machines, CI) the GPU tests skip visibly as before.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/rng.h"

#if FWP_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace fwp {
namespace cudatest {

// True when FWP_REQUIRE_CUDA is set to anything but "" or "0".
inline bool cuda_required() {
  const char* v = std::getenv("FWP_REQUIRE_CUDA");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

// Why no CUDA device can be used, in words (empty when one can).
inline std::string why_no_cuda_device() {
#if FWP_HAVE_CUDA
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it: later tests start from a clean runtime state
    return std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
           ")";
  }
  if (count < 1) return "cudaGetDeviceCount reports 0 devices";
  return "";
#else
  return "this build has no CUDA backend (FWP_HAVE_CUDA=0: configure with -DFWP_ENABLE_CUDA=ON)";
#endif
}

// The global environment behind FWP_REQUIRE_CUDA (see the top of this file).
class RequireCudaEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!cuda_required()) return;
    const std::string why = why_no_cuda_device();
    if (!why.empty()) ADD_FAILURE() << "FWP_REQUIRE_CUDA is set but no CUDA device can be used: " << why;
  }
  void TearDown() override {
    if (!cuda_required()) return;
    std::vector<std::string> skipped;
    const ::testing::UnitTest* unit = ::testing::UnitTest::GetInstance();
    for (int i = 0; i < unit->total_test_suite_count(); ++i) {
      const ::testing::TestSuite* suite = unit->GetTestSuite(i);
      for (int j = 0; j < suite->total_test_count(); ++j) {
        const ::testing::TestInfo* test = suite->GetTestInfo(j);
        if (test->should_run() && test->result()->Skipped()) {
          skipped.push_back(std::string(suite->name()) + "." + test->name());
        }
      }
    }
    if (skipped.empty()) return;
    std::ostringstream names;
    for (size_t i = 0; i < skipped.size() && i < 10; ++i) names << "\n  " << skipped[i];
    if (skipped.size() > 10) names << "\n  ... and " << skipped.size() - 10 << " more";
    ADD_FAILURE() << "FWP_REQUIRE_CUDA is set and " << skipped.size()
                  << " test(s) skipped; on a GPU machine every test must run:" << names.str();
  }
};

// Registered once per test binary, however many files include this header.
inline const bool kRequireCudaEnvironmentRegistered =
    (::testing::AddGlobalTestEnvironment(new RequireCudaEnvironment), true);

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

#if FWP_HAVE_CUDA
// In a GPU test fixture's SetUp: without a usable device, skip (visibly), or
// fail when FWP_REQUIRE_CUDA is set. `suite` is a string literal naming the suite.
#define FWP_SKIP_OR_FAIL_WITHOUT_CUDA_DEVICE(suite)                                                         \
  do {                                                                                                      \
    if (::fwp::cuda_device_count() < 1) {                                                                   \
      if (::fwp::cudatest::cuda_required()) {                                                               \
        FAIL() << "FWP_REQUIRE_CUDA is set but " suite " found no CUDA device: "                            \
               << ::fwp::cudatest::why_no_cuda_device();                                                    \
      }                                                                                                     \
      GTEST_SKIP() << "no CUDA device: " suite " needs a GPU (run scripts/gpu-check.sh on a GPU machine)"; \
    }                                                                                                       \
  } while (0)
#endif
