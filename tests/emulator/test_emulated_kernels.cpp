// CUDA kernels run on the CPU (issue 11): the CudaBackend of cuda/*.cu, compiled
// by the host compiler with the kernel emulator (emu_cuda.h), against the CPU
// backend on small odd shapes. Outputs are poisoned with NaN first, so a kernel
// that skips an element fails. Tolerance: max |emu - cpu| <= 1e-5 * max |cpu|
// per tensor (relative to its scale), as in tests/cpp/test_cuda_parity.cpp.
//
// Exempt from emulation (replaced by host loops in tests/emulator/fake, so the
// calls and their arguments are checked, not the library's kernels):
//   cuBLAS (cublasSgemm_64, cublasSgemmStridedBatched_64: linear.cu and the
//     chunkwise algorithm's products): NVIDIA's closed kernels;
//   CUB DeviceRadixSort (embedding.cu): library kernels, not the project's.
// No kernel of cuda/ uses tensor-core instructions (wmma/mma), atomics or
// cooperative groups.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../../cuda/cuda_backend.h"
#include "core/backend.h"
#include "core/buffer.h"

namespace fwp {
namespace {

using Vec = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Vec random_vec(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

// max |a - b| <= tol * max |b|; NaN anywhere fails.
::testing::AssertionResult close_rel(const Vec& emu, const Vec& cpu, double tol = 1e-5) {
  if (emu.size() != cpu.size()) return ::testing::AssertionFailure() << "size " << emu.size() << " vs " << cpu.size();
  double scale = 0.0, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (!std::isfinite(emu[i]) || !std::isfinite(cpu[i])) {
      return ::testing::AssertionFailure() << "non-finite at " << i << ": emu " << emu[i] << " cpu " << cpu[i];
    }
    scale = std::max(scale, std::fabs(static_cast<double>(cpu[i])));
    const double d = std::fabs(static_cast<double>(emu[i]) - cpu[i]);
    if (d > worst) worst = d, at = i;
  }
  if (worst <= tol * std::max(scale, 1e-30)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max |emu - cpu| = " << worst << " at " << at << " (emu " << emu[at]
                                       << ", cpu " << cpu[at] << "), scale " << scale;
}

// The same operation on both backends: inputs uploaded to each, outputs poisoned.
class Emulated : public ::testing::Test {
 protected:
  void SetUp() override {
    emu_ = std::make_shared<CudaBackend>(0);
    cpu_ = make_cpu_backend<float>(1);
  }
  struct Pair {
    Buffer<float> emu, cpu;
    float* e() { return emu.data(); }
    float* c() { return cpu.data(); }
  };
  Pair input(const Vec& host) {
    Pair p{Buffer<float>(emu_, static_cast<int64_t>(host.size())), Buffer<float>(cpu_, static_cast<int64_t>(host.size()))};
    p.emu.from_host(host.data(), static_cast<int64_t>(host.size()));
    p.cpu.from_host(host.data(), static_cast<int64_t>(host.size()));
    return p;
  }
  Pair output(int64_t n) { return input(Vec(static_cast<size_t>(n), kNaN)); }
  Pair zeros(int64_t n) { return input(Vec(static_cast<size_t>(n), 0.0f)); }
  static ::testing::AssertionResult same(const Pair& p, double tol = 1e-5) {
    return close_rel(p.emu.to_host(), p.cpu.to_host(), tol);
  }

  std::shared_ptr<Backend<float>> emu_, cpu_;
};

// ---- fast-weight recurrence -----------------------------------------------------------------
struct FwCase {
  UpdateRule rule;
  Algorithm algo;
  FastWeightShape shape;
  int64_t chunk;  // 0: the backend's default
  bool with_q;
};

std::string fw_name(const FwCase& c) {
  return std::string(c.rule == UpdateRule::Delta ? "Delta" : "Sum") +
         (c.algo == Algorithm::Chunked ? "Chunked" : "Recurrent") + "_S" + std::to_string(c.shape.streams) + "T" +
         std::to_string(c.shape.steps) + "K" + std::to_string(c.shape.d_key) + "V" +
         std::to_string(c.shape.d_value) + "C" + std::to_string(c.chunk) + (c.with_q ? "" : "_noq");
}

class EmulatedFastWeight : public Emulated, public ::testing::WithParamInterface<FwCase> {};

TEST_P(EmulatedFastWeight, ForwardAndBackwardMatchCpu) {
  const FwCase c = GetParam();
  const FastWeightShape s = c.shape;
  const int64_t nk = s.streams * s.steps * s.d_key, nv = s.streams * s.steps * s.d_value;
  const int64_t nw = s.streams * s.d_value * s.d_key, nb = s.streams * s.steps;
  // Keys of modest norm keep the delta rule stable (as sum-normalised features would).
  auto q = input(random_vec(nk, 1, -0.5f, 0.5f));
  auto k = input(random_vec(nk, 2, 0.0f, 2.0f / static_cast<float>(s.d_key)));
  auto v = input(random_vec(nv, 3));
  auto beta = input(random_vec(nb, 4, 0.1f, 0.9f));
  auto w0 = input(random_vec(nw, 5, -0.3f, 0.3f));
  auto out = output(nv), u = output(nv), w1 = output(nw);
  const float* beta_e = c.rule == UpdateRule::Delta ? beta.e() : nullptr;
  const float* beta_c = c.rule == UpdateRule::Delta ? beta.c() : nullptr;
  emu_->fast_weight_forward(c.rule, c.algo, c.chunk, s, c.with_q ? q.e() : nullptr, k.e(), v.e(), beta_e, w0.e(),
                            c.with_q ? out.e() : nullptr, u.e(), w1.e());
  cpu_->fast_weight_forward(c.rule, c.algo, c.chunk, s, c.with_q ? q.c() : nullptr, k.c(), v.c(), beta_c, w0.c(),
                            c.with_q ? out.c() : nullptr, u.c(), w1.c());
  if (c.with_q) {
    EXPECT_TRUE(same(out)) << "out";
  }
  EXPECT_TRUE(same(u)) << "u";
  EXPECT_TRUE(same(w1)) << "state_out";

  auto dout = input(random_vec(nv, 6));
  auto dw1 = input(random_vec(nw, 7, -0.5f, 0.5f));
  auto dq = output(nk), dk = output(nk), dv = output(nv), dbeta = output(nb), dw0 = output(nw);
  // Each backend differentiates its own forward (same values within tolerance).
  emu_->fast_weight_backward(c.rule, c.algo, c.chunk, s, c.with_q ? q.e() : nullptr, k.e(), v.e(), beta_e, u.e(),
                             w1.e(), c.with_q ? dout.e() : nullptr, dw1.e(), c.with_q ? dq.e() : nullptr, dk.e(),
                             dv.e(), c.rule == UpdateRule::Delta ? dbeta.e() : nullptr, dw0.e());
  cpu_->fast_weight_backward(c.rule, c.algo, c.chunk, s, c.with_q ? q.c() : nullptr, k.c(), v.c(), beta_c, u.c(),
                             w1.c(), c.with_q ? dout.c() : nullptr, dw1.c(), c.with_q ? dq.c() : nullptr, dk.c(),
                             dv.c(), c.rule == UpdateRule::Delta ? dbeta.c() : nullptr, dw0.c());
  if (c.with_q) {
    EXPECT_TRUE(same(dq, 2e-5)) << "dq";
  }
  EXPECT_TRUE(same(dk, 2e-5)) << "dk";
  EXPECT_TRUE(same(dv, 2e-5)) << "dv";
  if (c.rule == UpdateRule::Delta) {
    EXPECT_TRUE(same(dbeta, 2e-5)) << "dbeta";
  }
  EXPECT_TRUE(same(dw0, 2e-5)) << "d_state_in";
}

// Odd shapes: T not a multiple of the chunk or of the staging length, d_key and
// d_value not multiples of the lane tiles, partial warps.
INSTANTIATE_TEST_SUITE_P(
    Shapes, EmulatedFastWeight,
    ::testing::Values(FwCase{UpdateRule::Sum, Algorithm::Recurrent, {2, 13, 9, 11}, 0, true},
                      FwCase{UpdateRule::Delta, Algorithm::Recurrent, {2, 13, 9, 11}, 0, true},
                      FwCase{UpdateRule::Delta, Algorithm::Recurrent, {1, 7, 33, 5}, 0, false},
                      FwCase{UpdateRule::Sum, Algorithm::Chunked, {2, 13, 9, 11}, 4, true},
                      FwCase{UpdateRule::Delta, Algorithm::Chunked, {2, 13, 9, 11}, 4, true},
                      FwCase{UpdateRule::Delta, Algorithm::Chunked, {1, 10, 17, 6}, 3, true}),
    [](const ::testing::TestParamInfo<FwCase>& info) { return fw_name(info.param); });

}  // namespace
}  // namespace fwp
