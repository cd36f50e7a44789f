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
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../../cuda/cuda_backend.h"
#include "core/backend.h"
#include "core/buffer.h"
#include "core/limits.h"

namespace fwp {

// Small kernels that break the rules, in selftest_kernels.cu (rewritten like cuda/*.cu).
void selftest_launch(const std::string& kernel, dim3 grid, dim3 block, size_t smem, float* x);
cudaError_t selftest_opt_in_big_shared(int bytes);

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
  // Integer ids on both backends (raw: Buffer is for T).
  struct Ids {
    std::shared_ptr<Backend<float>> eb, cb;
    int32_t *e = nullptr, *c = nullptr;
    ~Ids() {
      eb->deallocate_int(e);
      cb->deallocate_int(c);
    }
  };
  std::unique_ptr<Ids> ids(const std::vector<int32_t>& host) {
    auto p = std::make_unique<Ids>();
    p->eb = emu_;
    p->cb = cpu_;
    const int64_t n = static_cast<int64_t>(host.size());
    p->e = emu_->allocate_int(n);
    p->c = cpu_->allocate_int(n);
    emu_->upload_int(p->e, host.data(), n);
    cpu_->upload_int(p->c, host.data(), n);
    return p;
  }
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
  bool saved_states = false;  // forward saves states, backward recomputes from them
};

std::string fw_name(const FwCase& c) {
  return std::string(c.rule == UpdateRule::Delta ? "Delta" : "Sum") +
         (c.algo == Algorithm::Chunked ? "Chunked" : "Recurrent") + "_S" + std::to_string(c.shape.streams) + "T" +
         std::to_string(c.shape.steps) + "K" + std::to_string(c.shape.d_key) + "V" +
         std::to_string(c.shape.d_value) + "C" + std::to_string(c.chunk) + (c.with_q ? "" : "_noq") +
         (c.saved_states ? "_states" : "");
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
  // Saved states: with chunk_size > 0 the interval is chunk_size on both backends (the documented
  // contract), so the saved states compare too (with 0 each backend picks its own).
  const int64_t interval = emu_->fast_weight_state_interval(s, c.chunk);
  if (c.saved_states) {
    ASSERT_GT(c.chunk, 0);
    ASSERT_EQ(interval, cpu_->fast_weight_state_interval(s, c.chunk));
  }
  const int64_t n_states = (s.steps + interval - 1) / interval;
  auto states = output(s.streams * n_states * s.d_value * s.d_key);
  emu_->fast_weight_forward(c.rule, c.algo, c.chunk, s, c.with_q ? q.e() : nullptr, k.e(), v.e(), beta_e, w0.e(),
                            c.with_q ? out.e() : nullptr, u.e(), w1.e(), c.saved_states ? states.e() : nullptr);
  cpu_->fast_weight_forward(c.rule, c.algo, c.chunk, s, c.with_q ? q.c() : nullptr, k.c(), v.c(), beta_c, w0.c(),
                            c.with_q ? out.c() : nullptr, u.c(), w1.c(), c.saved_states ? states.c() : nullptr);
  if (c.saved_states) {
    EXPECT_TRUE(same(states)) << "states";
  }
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
                             dv.e(), c.rule == UpdateRule::Delta ? dbeta.e() : nullptr, dw0.e(),
                             c.saved_states ? states.e() : nullptr);
  cpu_->fast_weight_backward(c.rule, c.algo, c.chunk, s, c.with_q ? q.c() : nullptr, k.c(), v.c(), beta_c, u.c(),
                             w1.c(), c.with_q ? dout.c() : nullptr, dw1.c(), c.with_q ? dq.c() : nullptr, dk.c(),
                             dv.c(), c.rule == UpdateRule::Delta ? dbeta.c() : nullptr, dw0.c(),
                             c.saved_states ? states.c() : nullptr);
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
                      FwCase{UpdateRule::Delta, Algorithm::Chunked, {1, 10, 17, 6}, 3, true},
                      FwCase{UpdateRule::Delta, Algorithm::Recurrent, {1, 11, 9, 7}, 4, true, true},
                      FwCase{UpdateRule::Sum, Algorithm::Recurrent, {2, 9, 5, 3}, 2, true, true},
                      FwCase{UpdateRule::Delta, Algorithm::Chunked, {1, 11, 9, 7}, 4, true, true},
                      // T beyond one staging buffer (64 steps): the cp.async double buffering runs
                      FwCase{UpdateRule::Sum, Algorithm::Recurrent, {1, 70, 9, 11}, 0, true},
                      FwCase{UpdateRule::Delta, Algorithm::Recurrent, {1, 131, 5, 3}, 24, true, true},
                      // d_head 64 and 256 (one value tile of many rows; a large key tile per lane)
                      FwCase{UpdateRule::Delta, Algorithm::Recurrent, {1, 5, 64, 64}, 0, true},
                      FwCase{UpdateRule::Delta, Algorithm::Recurrent, {1, 3, 256, 3}, 0, true},
                      FwCase{UpdateRule::Delta, Algorithm::Chunked, {1, 5, 64, 20}, 2, true},
                      // d_value beyond one block's value rows (32 for d_key > 128): several value
                      // tiles, whose dq/dk/dbeta parts sum_value_tiles_kernel adds up
                      FwCase{UpdateRule::Delta, Algorithm::Recurrent, {1, 5, 130, 70}, 0, true},
                      FwCase{UpdateRule::Sum, Algorithm::Recurrent, {2, 6, 200, 45}, 0, false}),
    [](const ::testing::TestParamInfo<FwCase>& info) { return fw_name(info.param); });

// ---- feature maps and sum normalisation ---------------------------------------------------------
struct MapCase {
  FeatureMap kind;
  int64_t d_in, nu, m, rows;
};

class EmulatedFeatureMap : public Emulated, public ::testing::WithParamInterface<MapCase> {};

TEST_P(EmulatedFeatureMap, ForwardAndBackwardMatchCpu) {
  const MapCase c = GetParam();
  FeatureMapSpec spec;
  spec.kind = c.kind;
  spec.d_in = c.d_in;
  spec.nu = c.nu;
  spec.m = c.m;
  const int64_t d_out = spec.d_out();
  auto x = input(random_vec(c.rows * c.d_in, 11, -1.5f, 1.5f));
  auto proj = input(random_vec(std::max<int64_t>(c.m, 1) * c.d_in, 12, -0.5f, 0.5f));
  const bool favor = c.kind == FeatureMap::Favor;
  auto phi = output(c.rows * d_out);
  emu_->feature_map_forward(spec, favor ? proj.e() : nullptr, x.e(), phi.e(), c.rows);
  cpu_->feature_map_forward(spec, favor ? proj.c() : nullptr, x.c(), phi.c(), c.rows);
  EXPECT_TRUE(same(phi)) << "phi";
  auto dphi = input(random_vec(c.rows * d_out, 13));
  auto dx = output(c.rows * c.d_in);
  emu_->feature_map_backward(spec, favor ? proj.e() : nullptr, x.e(), phi.e(), dphi.e(), dx.e(), c.rows);
  cpu_->feature_map_backward(spec, favor ? proj.c() : nullptr, x.c(), phi.c(), dphi.c(), dx.c(), c.rows);
  EXPECT_TRUE(same(dx)) << "dx";

  auto normed = output(c.rows * d_out), dnorm = output(c.rows * d_out);
  emu_->sum_normalize_forward(phi.e(), normed.e(), c.rows, d_out, 1e-6f);
  cpu_->sum_normalize_forward(phi.c(), normed.c(), c.rows, d_out, 1e-6f);
  EXPECT_TRUE(same(normed)) << "sum_normalize";
  emu_->sum_normalize_backward(phi.e(), dphi.e(), dnorm.e(), c.rows, d_out, 1e-6f);
  cpu_->sum_normalize_backward(phi.c(), dphi.c(), dnorm.c(), c.rows, d_out, 1e-6f);
  EXPECT_TRUE(same(dnorm)) << "sum_normalize_backward";
}

INSTANTIATE_TEST_SUITE_P(Maps, EmulatedFeatureMap,
                         ::testing::Values(MapCase{FeatureMap::Elu, 13, 1, 0, 5},
                                           MapCase{FeatureMap::Dpfp, 7, 2, 0, 3},
                                           MapCase{FeatureMap::Favor, 9, 1, 11, 4},
                                           MapCase{FeatureMap::Favor, 70, 1, 37, 2}),
                         [](const ::testing::TestParamInfo<MapCase>& info) {
                           const MapCase& c = info.param;
                           const char* kind = c.kind == FeatureMap::Elu ? "Elu" : c.kind == FeatureMap::Dpfp ? "Dpfp" : "Favor";
                           return std::string(kind) + "_d" + std::to_string(c.d_in) + "_rows" + std::to_string(c.rows);
                         });

// ---- attention normalisation ---------------------------------------------------------------------
TEST_F(Emulated, AttnNormMatchesCpu) {
  const FastWeightShape s{3, 11, 7, 5};
  const int64_t nk = s.streams * s.steps * s.d_key, nv = s.streams * s.steps * s.d_value;
  const int64_t nz = s.streams * s.d_key, nd = s.streams * s.steps;
  auto q = input(random_vec(nk, 21, 0.1f, 1.0f));
  auto k = input(random_vec(nk, 22, 0.1f, 1.0f));
  auto z = input(random_vec(nz, 23, 0.1f, 1.0f));
  auto o = input(random_vec(nv, 24));
  for (bool with_z : {false, true}) {
    SCOPED_TRACE(with_z ? "z_in given" : "no z_in");
    auto y = output(nv), denom = output(nd), z_out = output(nz);
    emu_->attn_norm_forward(s, q.e(), k.e(), with_z ? z.e() : nullptr, o.e(), 1e-5f, y.e(), denom.e(), z_out.e());
    cpu_->attn_norm_forward(s, q.c(), k.c(), with_z ? z.c() : nullptr, o.c(), 1e-5f, y.c(), denom.c(), z_out.c());
    EXPECT_TRUE(same(y)) << "y";
    EXPECT_TRUE(same(denom)) << "denom";
    EXPECT_TRUE(same(z_out)) << "z_out";
    auto dy = input(random_vec(nv, 25));
    auto d_o = output(nv), dq = output(nk), dk = output(nk), dz = output(nz);
    emu_->attn_norm_backward(s, q.e(), k.e(), with_z ? z.e() : nullptr, y.e(), denom.e(), dy.e(), d_o.e(), dq.e(),
                             dk.e(), with_z ? dz.e() : nullptr);
    cpu_->attn_norm_backward(s, q.c(), k.c(), with_z ? z.c() : nullptr, y.c(), denom.c(), dy.c(), d_o.c(), dq.c(),
                             dk.c(), with_z ? dz.c() : nullptr);
    EXPECT_TRUE(same(d_o)) << "d_o";
    EXPECT_TRUE(same(dq)) << "dq";
    EXPECT_TRUE(same(dk)) << "dk";
    if (with_z) {
      EXPECT_TRUE(same(dz)) << "d_z_in";
    }
  }
}

// ---- softmax attention (causal, decoding, cross) ------------------------------------------------
struct AttnCase {
  int64_t streams, steps, d;
};

class EmulatedSoftmaxAttention : public Emulated, public ::testing::WithParamInterface<AttnCase> {};

TEST_P(EmulatedSoftmaxAttention, CausalForwardBackwardAndDecodeMatchCpu) {
  const AttnCase c = GetParam();
  const int64_t n = c.streams * c.steps * c.d, nr = c.streams * c.steps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
  auto q = input(random_vec(n, 31)), k = input(random_vec(n, 32)), v = input(random_vec(n, 33));
  auto out = output(n), lse = output(nr);
  emu_->softmax_attention_forward(c.streams, c.steps, c.d, q.e(), k.e(), v.e(), scale, out.e(), lse.e());
  cpu_->softmax_attention_forward(c.streams, c.steps, c.d, q.c(), k.c(), v.c(), scale, out.c(), lse.c());
  EXPECT_TRUE(same(out)) << "out";
  EXPECT_TRUE(same(lse)) << "lse";
  auto dout = input(random_vec(n, 34));
  auto dq = output(n), dk = output(n), dv = output(n);
  emu_->softmax_attention_backward(c.streams, c.steps, c.d, q.e(), k.e(), v.e(), out.e(), lse.e(), dout.e(), scale,
                                   dq.e(), dk.e(), dv.e());
  cpu_->softmax_attention_backward(c.streams, c.steps, c.d, q.c(), k.c(), v.c(), out.c(), lse.c(), dout.c(), scale,
                                   dq.c(), dk.c(), dv.c());
  EXPECT_TRUE(same(dq, 2e-5)) << "dq";
  EXPECT_TRUE(same(dk, 2e-5)) << "dk";
  EXPECT_TRUE(same(dv, 2e-5)) << "dv";

  // Decoding: the cache is [streams, capacity = steps, d]; attend to its first length - 1 entries.
  const int64_t length = std::max<int64_t>(1, c.steps - 1);
  auto q1 = input(random_vec(c.streams * c.d, 35));
  auto dec = output(c.streams * c.d);
  emu_->softmax_attention_decode(c.streams, length, c.steps, c.d, q1.e(), k.e(), v.e(), scale, dec.e());
  cpu_->softmax_attention_decode(c.streams, length, c.steps, c.d, q1.c(), k.c(), v.c(), scale, dec.c());
  EXPECT_TRUE(same(dec)) << "decode";
}

TEST_P(EmulatedSoftmaxAttention, CrossForwardBackwardMatchCpu) {
  const AttnCase c = GetParam();
  const int64_t queries = c.steps, keys = c.steps + 4, dv_width = c.d + 3;
  const float scale = 0.5f;
  auto q = input(random_vec(c.streams * queries * c.d, 41));
  auto k = input(random_vec(c.streams * keys * c.d, 42));
  auto v = input(random_vec(c.streams * keys * dv_width, 43));
  auto out = output(c.streams * queries * dv_width), lse = output(c.streams * queries);
  emu_->cross_attention_forward(c.streams, queries, keys, c.d, dv_width, q.e(), k.e(), v.e(), scale, out.e(), lse.e());
  cpu_->cross_attention_forward(c.streams, queries, keys, c.d, dv_width, q.c(), k.c(), v.c(), scale, out.c(), lse.c());
  EXPECT_TRUE(same(out)) << "out";
  EXPECT_TRUE(same(lse)) << "lse";
  auto dout = input(random_vec(c.streams * queries * dv_width, 44));
  auto dq = output(c.streams * queries * c.d), dk = output(c.streams * keys * c.d);
  auto dv = output(c.streams * keys * dv_width);
  emu_->cross_attention_backward(c.streams, queries, keys, c.d, dv_width, q.e(), k.e(), v.e(), out.e(), lse.e(),
                                 dout.e(), scale, dq.e(), dk.e(), dv.e());
  cpu_->cross_attention_backward(c.streams, queries, keys, c.d, dv_width, q.c(), k.c(), v.c(), out.c(), lse.c(),
                                 dout.c(), scale, dq.c(), dk.c(), dv.c());
  EXPECT_TRUE(same(dq, 2e-5)) << "dq";
  EXPECT_TRUE(same(dk, 2e-5)) << "dk";
  EXPECT_TRUE(same(dv, 2e-5)) << "dv";
}

INSTANTIATE_TEST_SUITE_P(Shapes, EmulatedSoftmaxAttention,
                         ::testing::Values(AttnCase{2, 13, 7}, AttnCase{1, 37, 40}, AttnCase{1, 5, 65}),
                         [](const ::testing::TestParamInfo<AttnCase>& info) {
                           const AttnCase& c = info.param;
                           return "S" + std::to_string(c.streams) + "T" + std::to_string(c.steps) + "D" +
                                  std::to_string(c.d);
                         });

// ---- padded_attention.cu: masks, whole-sequence memory, masked softmax attention -----------------
struct PaddedCase {
  int64_t batch, groups, queries, keys, d;
};

class EmulatedPaddedAttention : public Emulated, public ::testing::WithParamInterface<PaddedCase> {};

TEST_P(EmulatedPaddedAttention, MasksMemoryAndMaskedAttentionMatchCpu) {
  const PaddedCase c = GetParam();
  const int64_t S = c.batch * c.groups;
  // Lengths from 1 to keys (the last row unpadded), as a padded batch has them.
  std::vector<int32_t> lengths(static_cast<size_t>(c.batch));
  for (int64_t b = 0; b < c.batch; ++b) lengths[b] = static_cast<int32_t>(1 + (b * 5 + 2) % c.keys);
  lengths.back() = static_cast<int32_t>(c.keys);
  auto len = ids(lengths);

  auto x = input(random_vec(S * c.keys * c.d, 51));
  emu_->zero_padded_steps(x.e(), len->e, c.batch, c.groups, c.keys, c.d);
  cpu_->zero_padded_steps(x.c(), len->c, c.batch, c.groups, c.keys, c.d);
  EXPECT_TRUE(same(x, 0.0)) << "zero_padded_steps";

  const int64_t da = c.d, db = c.d + 5;
  auto a = input(random_vec(S * c.keys * da, 52)), b = input(random_vec(S * c.keys * db, 53));
  auto mem = output(S * da * db);
  emu_->outer_product_sum(S, c.keys, da, db, a.e(), b.e(), mem.e());
  cpu_->outer_product_sum(S, c.keys, da, db, a.c(), b.c(), mem.c());
  EXPECT_TRUE(same(mem)) << "outer_product_sum";
  auto dmem = input(random_vec(S * da * db, 54));
  auto da_out = output(S * c.keys * da), db_out = output(S * c.keys * db);
  emu_->outer_product_sum_backward(S, c.keys, da, db, a.e(), b.e(), dmem.e(), da_out.e(), db_out.e());
  cpu_->outer_product_sum_backward(S, c.keys, da, db, a.c(), b.c(), dmem.c(), da_out.c(), db_out.c());
  EXPECT_TRUE(same(da_out)) << "outer_product_sum_backward da";
  EXPECT_TRUE(same(db_out)) << "outer_product_sum_backward db";

  const float scale = 0.6f;
  auto q = input(random_vec(S * c.queries * c.d, 55));
  auto k = input(random_vec(S * c.keys * c.d, 56)), v = input(random_vec(S * c.keys * c.d, 57));
  auto out = output(S * c.queries * c.d), lse = output(S * c.queries);
  emu_->masked_attention_forward(S, c.groups, c.queries, c.keys, c.keys, c.d, q.e(), k.e(), v.e(), len->e, scale,
                                 out.e(), lse.e());
  cpu_->masked_attention_forward(S, c.groups, c.queries, c.keys, c.keys, c.d, q.c(), k.c(), v.c(), len->c, scale,
                                 out.c(), lse.c());
  EXPECT_TRUE(same(out)) << "masked forward out";
  EXPECT_TRUE(same(lse)) << "masked forward lse";
  auto dout = input(random_vec(S * c.queries * c.d, 58));
  auto dq = output(S * c.queries * c.d), dk = output(S * c.keys * c.d), dv = output(S * c.keys * c.d);
  emu_->masked_attention_backward(S, c.groups, c.queries, c.keys, c.d, q.e(), k.e(), v.e(), len->e, out.e(), lse.e(),
                                  dout.e(), scale, dq.e(), dk.e(), dv.e());
  cpu_->masked_attention_backward(S, c.groups, c.queries, c.keys, c.d, q.c(), k.c(), v.c(), len->c, out.c(), lse.c(),
                                  dout.c(), scale, dq.c(), dk.c(), dv.c());
  EXPECT_TRUE(same(dq, 2e-5)) << "masked dq";
  EXPECT_TRUE(same(dk, 2e-5)) << "masked dk";
  EXPECT_TRUE(same(dv, 2e-5)) << "masked dv";
  // Masked keys: exactly zero gradients on the emulated device too.
  const Vec dk_host = dk.emu.to_host();
  for (int64_t s = 0; s < S; ++s)
    for (int64_t i = lengths[s / c.groups] * c.d; i < c.keys * c.d; ++i)
      EXPECT_EQ(dk_host[(s * c.keys) * c.d + i], 0.0f) << "stream " << s;

  // A decoding step reads a cache wider than its filled part (key_stride > keys).
  const int64_t stride = c.keys + 3;
  auto kc = input(random_vec(S * stride * c.d, 59)), vc = input(random_vec(S * stride * c.d, 60));
  auto q1 = input(random_vec(S * c.d, 61));
  auto dec = output(S * c.d);
  emu_->masked_attention_forward(S, c.groups, 1, c.keys, stride, c.d, q1.e(), kc.e(), vc.e(), len->e, scale, dec.e(),
                                 nullptr);
  cpu_->masked_attention_forward(S, c.groups, 1, c.keys, stride, c.d, q1.c(), kc.c(), vc.c(), len->c, scale, dec.c(),
                                 nullptr);
  EXPECT_TRUE(same(dec)) << "masked decode";
}

INSTANTIATE_TEST_SUITE_P(Shapes, EmulatedPaddedAttention,
                         ::testing::Values(PaddedCase{3, 2, 5, 7, 3}, PaddedCase{2, 1, 1, 9, 40},
                                           PaddedCase{1, 3, 4, 2, 65}),
                         [](const ::testing::TestParamInfo<PaddedCase>& info) {
                           const PaddedCase& c = info.param;
                           return "B" + std::to_string(c.batch) + "G" + std::to_string(c.groups) + "Q" +
                                  std::to_string(c.queries) + "K" + std::to_string(c.keys) + "D" +
                                  std::to_string(c.d);
                         });

// ---- linear.cu, layout.cu, activation.cu, cuda_backend.cu (fill) -------------------------------
TEST_F(Emulated, LinearOpsMatchCpu) {
  const int64_t M = 5, N = 7, K = 3;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      SCOPED_TRACE(std::string("trans ") + (ta ? "T" : "N") + (tb ? "T" : "N"));
      auto a = input(random_vec(M * K * 2, 51)), b = input(random_vec(K * N * 2, 52));
      auto c = input(random_vec(M * N * 2, 53));
      const int64_t lda = ta ? M : K, ldb = tb ? K : N;
      emu_->gemm(ta, tb, M, N, K, 0.7f, a.e(), lda, b.e(), ldb, 0.3f, c.e(), N);
      cpu_->gemm(ta, tb, M, N, K, 0.7f, a.c(), lda, b.c(), ldb, 0.3f, c.c(), N);
      EXPECT_TRUE(same(c)) << "gemm";
      // gemm_batched is the CUDA backend's own (the chunkwise algorithm): batch g against a CPU gemm.
      static_cast<CudaBackend&>(*emu_).gemm_batched(ta, tb, M, N, K, 1.0f, a.e(), lda, M * K, b.e(), ldb, K * N,
                                                    0.0f, c.e(), N, M * N, 2);
      for (int64_t g = 0; g < 2; ++g) {
        cpu_->gemm(ta, tb, M, N, K, 1.0f, a.c() + g * M * K, lda, b.c() + g * K * N, ldb, 0.0f, c.c() + g * M * N, N);
      }
      EXPECT_TRUE(same(c)) << "gemm_batched";
    }
  }
  // K = 0: C = beta C (cuBLAS rejects the call; the backend must not make it).
  auto a = input(Vec(1, 0.0f)), b = input(Vec(1, 0.0f)), c = input(random_vec(M * N, 54));
  emu_->gemm(false, false, M, N, 0, 1.0f, a.e(), 0, b.e(), 0, 0.5f, c.e(), N);
  cpu_->gemm(false, false, M, N, 0, 1.0f, a.c(), 0, b.c(), 0, 0.5f, c.c(), N);
  EXPECT_TRUE(same(c)) << "gemm K = 0";

  const int64_t rows = 37, cols = 45;
  auto y = input(random_vec(rows * cols, 55)), bias = input(random_vec(cols, 56));
  emu_->add_bias(y.e(), bias.e(), rows, cols);
  cpu_->add_bias(y.c(), bias.c(), rows, cols);
  EXPECT_TRUE(same(y)) << "add_bias";
  auto db = input(random_vec(cols, 57));
  emu_->bias_grad_accumulate(db.e(), y.e(), rows, cols);
  cpu_->bias_grad_accumulate(db.c(), y.c(), rows, cols);
  EXPECT_TRUE(same(db)) << "bias_grad_accumulate";
  emu_->axpy(rows * cols, -0.25f, y.e(), y.e());
  cpu_->axpy(rows * cols, -0.25f, y.c(), y.c());
  emu_->scale(rows * cols, 1.5f, y.e());
  cpu_->scale(rows * cols, 1.5f, y.c());
  EXPECT_TRUE(same(y)) << "axpy, scale";
  emu_->fill(y.e(), 2.5f, 77);
  cpu_->fill(y.c(), 2.5f, 77);
  EXPECT_TRUE(same(y)) << "fill";
}

TEST_F(Emulated, LayoutAndActivationsMatchCpu) {
  const int64_t B = 2, T = 5, H = 3, D = 7, n = B * T * H * D;
  auto x = input(random_vec(n, 61, -3.0f, 3.0f));
  auto split = output(n), merged = output(n);
  emu_->split_heads(x.e(), split.e(), B, T, H, D);
  cpu_->split_heads(x.c(), split.c(), B, T, H, D);
  EXPECT_TRUE(same(split)) << "split_heads";
  emu_->merge_heads(split.e(), merged.e(), B, T, H, D);
  cpu_->merge_heads(split.c(), merged.c(), B, T, H, D);
  EXPECT_TRUE(same(merged)) << "merge_heads";
  auto dy = input(random_vec(n, 62));
  auto y = output(n), dx = output(n);
  emu_->sigmoid_forward(x.e(), y.e(), n);
  cpu_->sigmoid_forward(x.c(), y.c(), n);
  EXPECT_TRUE(same(y)) << "sigmoid";
  emu_->sigmoid_backward(y.e(), dy.e(), dx.e(), n);
  cpu_->sigmoid_backward(y.c(), dy.c(), dx.c(), n);
  EXPECT_TRUE(same(dx)) << "sigmoid_backward";
  emu_->relu_forward(x.e(), y.e(), n);
  cpu_->relu_forward(x.c(), y.c(), n);
  EXPECT_TRUE(same(y)) << "relu";
  emu_->relu_backward(x.e(), dy.e(), dx.e(), n);
  cpu_->relu_backward(x.c(), dy.c(), dx.c(), n);
  EXPECT_TRUE(same(dx)) << "relu_backward";
  emu_->gelu_forward(x.e(), y.e(), n);
  cpu_->gelu_forward(x.c(), y.c(), n);
  EXPECT_TRUE(same(y)) << "gelu";
  emu_->gelu_backward(x.e(), dy.e(), dx.e(), n);
  cpu_->gelu_backward(x.c(), dy.c(), dx.c(), n);
  EXPECT_TRUE(same(dx)) << "gelu_backward";
  auto d1 = output(n), d2 = output(n);
  emu_->dropout_forward(x.e(), d1.e(), n, 0.3, 1234);
  cpu_->dropout_forward(x.c(), d1.c(), n, 0.3, 1234);
  EXPECT_TRUE(same(d1)) << "dropout (same counter-based mask)";
  emu_->dropout_backward(dy.e(), d2.e(), n, 0.3, 1234);
  cpu_->dropout_backward(dy.c(), d2.c(), n, 0.3, 1234);
  EXPECT_TRUE(same(d2)) << "dropout_backward";
}

// ---- layer_norm.cu, cross_entropy.cu, loss.cu, embedding.cu, retrieval_ops.cu, optimizer_ops.cu --
TEST_F(Emulated, LayerNormMatchesCpu) {
  const int64_t rows = 13, d = 37;
  auto x = input(random_vec(rows * d, 71, -2.0f, 2.0f));
  auto gain = input(random_vec(d, 72, 0.5f, 1.5f)), bias = input(random_vec(d, 73));
  auto y = output(rows * d), mean = output(rows), rstd = output(rows);
  emu_->layer_norm_forward(x.e(), gain.e(), bias.e(), 1e-5f, y.e(), mean.e(), rstd.e(), rows, d);
  cpu_->layer_norm_forward(x.c(), gain.c(), bias.c(), 1e-5f, y.c(), mean.c(), rstd.c(), rows, d);
  EXPECT_TRUE(same(y)) << "y";
  EXPECT_TRUE(same(mean)) << "mean";
  EXPECT_TRUE(same(rstd)) << "rstd";
  auto dy = input(random_vec(rows * d, 74));
  auto dx = input(random_vec(rows * d, 75));
  emu_->layer_norm_backward(x.e(), gain.e(), mean.e(), rstd.e(), dy.e(), 1.0f, dx.e(), rows, d);
  cpu_->layer_norm_backward(x.c(), gain.c(), mean.c(), rstd.c(), dy.c(), 1.0f, dx.c(), rows, d);
  EXPECT_TRUE(same(dx)) << "dx (accumulated)";
  auto dg = input(random_vec(d, 76)), dbias = input(random_vec(d, 77));
  emu_->layer_norm_param_grad_accumulate(x.e(), mean.e(), rstd.e(), dy.e(), dg.e(), dbias.e(), rows, d);
  cpu_->layer_norm_param_grad_accumulate(x.c(), mean.c(), rstd.c(), dy.c(), dg.c(), dbias.c(), rows, d);
  EXPECT_TRUE(same(dg)) << "dgain";
  EXPECT_TRUE(same(dbias)) << "dbias";
}

TEST_F(Emulated, LossesMatchCpu) {
  const int64_t rows = 9, classes = 45;
  auto logits = input(random_vec(rows * classes, 81, -4.0f, 4.0f));
  auto targets = ids({3, 0, 44, -1, 7, 7, 12, 30, 1});
  auto loss = output(rows), lse = output(rows), dl = output(rows * classes);
  emu_->cross_entropy_forward(logits.e(), targets->e, loss.e(), lse.e(), rows, classes);
  cpu_->cross_entropy_forward(logits.c(), targets->c, loss.c(), lse.c(), rows, classes);
  EXPECT_TRUE(same(loss)) << "cross-entropy loss";
  EXPECT_TRUE(same(lse)) << "cross-entropy lse";
  emu_->cross_entropy_backward(logits.e(), targets->e, lse.e(), 0.5f, dl.e(), rows, classes);
  cpu_->cross_entropy_backward(logits.c(), targets->c, lse.c(), 0.5f, dl.c(), rows, classes);
  EXPECT_TRUE(same(dl)) << "cross-entropy dlogits";
  auto sloss = output(rows), snll = output(rows), slse = output(rows), sdl = output(rows * classes);
  emu_->smoothed_cross_entropy_forward(logits.e(), targets->e, 0.1f, sloss.e(), snll.e(), slse.e(), rows, classes);
  cpu_->smoothed_cross_entropy_forward(logits.c(), targets->c, 0.1f, sloss.c(), snll.c(), slse.c(), rows, classes);
  EXPECT_TRUE(same(sloss)) << "smoothed cross-entropy loss";
  EXPECT_TRUE(same(snll)) << "smoothed cross-entropy nll";
  EXPECT_TRUE(same(slse)) << "smoothed cross-entropy lse";
  emu_->smoothed_cross_entropy_backward(logits.e(), targets->e, slse.e(), 0.1f, 0.5f, sdl.e(), rows, classes);
  cpu_->smoothed_cross_entropy_backward(logits.c(), targets->c, slse.c(), 0.1f, 0.5f, sdl.c(), rows, classes);
  EXPECT_TRUE(same(sdl)) << "smoothed cross-entropy dlogits";
  auto mse = output(rows), dy = output(rows * classes);
  emu_->onehot_mse_forward(logits.e(), targets->e, mse.e(), rows, classes);
  cpu_->onehot_mse_forward(logits.c(), targets->c, mse.c(), rows, classes);
  EXPECT_TRUE(same(mse)) << "one-hot mse";
  emu_->onehot_mse_backward(logits.e(), targets->e, 0.25f, dy.e(), rows, classes);
  cpu_->onehot_mse_backward(logits.c(), targets->c, 0.25f, dy.c(), rows, classes);
  EXPECT_TRUE(same(dy)) << "one-hot mse backward";
}

TEST_F(Emulated, EmbeddingAndRetrievalOpsMatchCpu) {
  const int64_t vocab = 11, dim = 9, rows = 14;
  auto table = input(random_vec(vocab * dim, 91));
  auto id = ids({3, 3, 0, 10, -1, 5, 3, 9, 9, 1, 2, -1, 10, 4});
  auto out = output(rows * dim);
  emu_->embedding_gather(table.e(), id->e, out.e(), rows, dim);
  cpu_->embedding_gather(table.c(), id->c, out.c(), rows, dim);
  EXPECT_TRUE(same(out)) << "gather";
  auto dtable = input(random_vec(vocab * dim, 92));
  emu_->embedding_scatter_accumulate(dtable.e(), id->e, out.e(), rows, dim);
  cpu_->embedding_scatter_accumulate(dtable.c(), id->c, out.c(), rows, dim);
  EXPECT_TRUE(same(dtable)) << "scatter-add (repeated ids, padding)";
  auto classes = ids({0, 4, 2});
  auto x = input(random_vec(3 * 5, 93)), oh = output(3 * (6 + 5));
  emu_->onehot_concat(classes->e, x.e(), oh.e(), 3, 6, 5);
  cpu_->onehot_concat(classes->c, x.c(), oh.c(), 3, 6, 5);
  EXPECT_TRUE(same(oh)) << "onehot_concat";

  const FastWeightShape s{2, 5, 7, 6};
  auto xs = input(random_vec(s.streams * s.steps * s.d_key, 94)), sums = output(s.streams * s.d_key);
  emu_->step_sum(xs.e(), sums.e(), s.streams, s.steps, s.d_key);
  cpu_->step_sum(xs.c(), sums.c(), s.streams, s.steps, s.d_key);
  EXPECT_TRUE(same(sums)) << "step_sum";
  emu_->step_broadcast_accumulate(sums.e(), xs.e(), s.streams, s.steps, s.d_key);
  cpu_->step_broadcast_accumulate(sums.c(), xs.c(), s.streams, s.steps, s.d_key);
  EXPECT_TRUE(same(xs)) << "step_broadcast_accumulate";
  auto state = input(random_vec(s.streams * s.d_value * s.d_key, 95));
  auto z = input(random_vec(s.streams * s.d_key, 96, 0.5f, 1.0f));
  auto q = input(random_vec(s.streams * s.steps * s.d_key, 97, 0.1f, 1.0f));
  auto y = output(s.streams * s.steps * s.d_value), denom = output(s.streams * s.steps);
  emu_->fast_weight_readout_forward(s, state.e(), z.e(), q.e(), 1e-5f, y.e(), denom.e());
  cpu_->fast_weight_readout_forward(s, state.c(), z.c(), q.c(), 1e-5f, y.c(), denom.c());
  EXPECT_TRUE(same(y)) << "readout y";
  EXPECT_TRUE(same(denom)) << "readout denom";
  auto dy = input(random_vec(s.streams * s.steps * s.d_value, 98));
  auto dq = output(s.streams * s.steps * s.d_key), dstate = output(s.streams * s.d_value * s.d_key);
  auto dz = output(s.streams * s.d_key);
  emu_->fast_weight_readout_backward(s, state.e(), z.e(), q.e(), y.e(), denom.e(), dy.e(), dq.e(), dstate.e(), dz.e());
  cpu_->fast_weight_readout_backward(s, state.c(), z.c(), q.c(), y.c(), denom.c(), dy.c(), dq.c(), dstate.c(), dz.c());
  EXPECT_TRUE(same(dq)) << "readout dq";
  EXPECT_TRUE(same(dstate)) << "readout d_state";
  EXPECT_TRUE(same(dz)) << "readout d_z";
}

TEST_F(Emulated, OptimizerOpsMatchCpu) {
  const int64_t n = 1000;
  auto param = input(random_vec(n, 101)), grad = input(random_vec(n, 102));
  auto m = input(random_vec(n, 103, -0.1f, 0.1f)), v = input(random_vec(n, 104, 0.0f, 0.1f));
  AdamStepParams adam;
  adam.lr = 1e-2;
  emu_->adam_update(adam, n, param.e(), grad.e(), m.e(), v.e());
  cpu_->adam_update(adam, n, param.c(), grad.c(), m.c(), v.c());
  EXPECT_TRUE(same(param)) << "adam param";
  EXPECT_TRUE(same(m)) << "adam m";
  EXPECT_TRUE(same(v)) << "adam v";
  SgdStepParams sgd;
  auto mom = input(random_vec(n, 105));
  emu_->sgd_update(sgd, n, param.e(), grad.e(), mom.e());
  cpu_->sgd_update(sgd, n, param.c(), grad.c(), mom.c());
  EXPECT_TRUE(same(param)) << "sgd param";
  EXPECT_TRUE(same(mom)) << "sgd momentum";
}

// sum_squares launches a fixed grid (1024 blocks of 256 threads on the GPU: a summation order
// that does not depend on n). Emulated, the grid is 16 blocks (FWP_SUM_SQUARES_BLOCKS in
// emulator.cmake; 1024 took two minutes), and n spans several passes of the grid-stride loop.
TEST_F(Emulated, SumSquaresOverSeveralGridPassesMatchesCpu) {
  const int64_t n = 3 * 16 * 256 + 1001;
  auto x = input(random_vec(n, 106));
  const double e = emu_->sum_squares(x.e(), n), c = cpu_->sum_squares(x.c(), n);
  EXPECT_NEAR(e, c, 1e-6 * c);
}

// ---- adaptive_softmax.cu ------------------------------------------------------------------------
TEST_F(Emulated, AdaptivePartitionAndBlockLogSoftmax) {
  AdaptiveBounds b;
  b.clusters = 3;
  const int64_t bounds[] = {0, 7, 40, 101};
  for (int k = 0; k <= 3; ++k) b.bounds[k] = bounds[k];
  const int64_t n = 1100, head_cols = 7 + 2;  // two chunks of 1024 rows, the second partial
  std::mt19937 rng(107);
  std::vector<int32_t> host(static_cast<size_t>(n));
  for (auto& id : host) id = rng() % 10 == 0 ? -1 : static_cast<int32_t>(rng() % 101);
  auto ids = this->ids(host);
  auto rows = this->ids(std::vector<int32_t>(host.size(), -9)), local = this->ids(std::vector<int32_t>(host.size(), -9)),
       head = this->ids(std::vector<int32_t>(host.size(), -9));
  int64_t ce[3], cc[3];
  emu_->adaptive_partition(ids->e, n, b, rows->e, local->e, head->e, head_cols, ce);
  cpu_->adaptive_partition(ids->c, n, b, rows->c, local->c, head->c, head_cols, cc);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(ce[k], cc[k]) << "cluster " << k;
  // Both backends keep device ints in host memory here.
  EXPECT_EQ(std::vector<int32_t>(rows->e, rows->e + n), std::vector<int32_t>(rows->c, rows->c + n));
  EXPECT_EQ(std::vector<int32_t>(local->e, local->e + n), std::vector<int32_t>(local->c, local->c + n));
  EXPECT_EQ(std::vector<int32_t>(head->e, head->e + n), std::vector<int32_t>(head->c, head->c + n));

  const int64_t r = 5, cols = 300, write_cols = 290, ldo = 301;
  auto logits = input(random_vec(r * cols, 108, -4.0f, 4.0f)), base = input(random_vec(r * 3, 109));
  auto out = output(r * ldo);
  emu_->log_softmax_rows(logits.e(), r, cols, write_cols, base.e() + 1, 3, out.e(), ldo);
  cpu_->log_softmax_rows(logits.c(), r, cols, write_cols, base.c() + 1, 3, out.c(), ldo);
  const Vec e = out.emu.to_host(), c = out.cpu.to_host();
  Vec eb, cb;
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < ldo; ++j) {
      if (j < write_cols) {
        eb.push_back(e[i * ldo + j]);
        cb.push_back(c[i * ldo + j]);
      } else {
        EXPECT_TRUE(std::isnan(e[i * ldo + j])) << "written past the block at " << i << "," << j;
      }
    }
  EXPECT_TRUE(close_rel(eb, cb));
}

// ---- the emulator itself: what it must catch ----------------------------------------------------
// The CUDA backend checks chunk_size itself (src/core/limits.h), like the CPU
// backend, whoever calls it: near INT64_MAX the chunk count would overflow.
TEST_F(Emulated, FastWeightRefusesChunkSizesBeyondTheLimit) {
  FastWeightShape s{};
  s.streams = 1;
  s.steps = 10;
  s.d_key = 4;
  s.d_value = 4;
  auto k = input(Vec(40, 0.1f)), v = input(Vec(40, 0.2f)), beta = input(Vec(10, 0.5f));
  auto u = output(40), w1 = output(16);
  for (int64_t chunk : {std::numeric_limits<int64_t>::max(), kMaxChunkSize + 1, int64_t(-1)}) {
    EXPECT_THROW(emu_->fast_weight_state_interval(s, chunk), Error) << chunk;
    for (Algorithm algo : {Algorithm::Chunked, Algorithm::Recurrent}) {
      EXPECT_THROW(emu_->fast_weight_forward(UpdateRule::Delta, algo, chunk, s, nullptr, k.e(), v.e(), beta.e(),
                                             nullptr, nullptr, u.e(), w1.e(), nullptr),
                   Error)
          << chunk;
    }
  }
  EXPECT_EQ(emu_->fast_weight_state_interval(s, kMaxChunkSize), kMaxChunkSize);
}

TEST(EmulatorSelfTest, WarpShuffleSumsTheWarp) {
  std::vector<float> x(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  selftest_launch("shuffle_sum", 1, 64, 0, x.data());
  EXPECT_EQ(x[0], 496.0f);    // 0 + ... + 31
  EXPECT_EQ(x[40], 1520.0f);  // 32 + ... + 63
}

TEST(EmulatorSelfTest, StaticSharedMemoryStartsAsNaN) {
  std::vector<float> x(64, 0.0f);
  selftest_launch("read_shared_unwritten", 1, 64, 0, x.data());
  EXPECT_TRUE(std::isnan(x[1])) << "thread 1 reads the never-written slot 0";
  EXPECT_EQ(x[2], 1.0f);
}

TEST(EmulatorSelfTest, SharedMemoryAbove48KiBNeedsTheOptIn) {
  std::vector<float> x(32);
  const size_t bytes = 64 * 1024;
  selftest_launch("big_shared", 1, 32, bytes, x.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  ASSERT_EQ(selftest_opt_in_big_shared(static_cast<int>(bytes)), cudaSuccess);
  selftest_launch("big_shared", 1, 32, bytes, x.data());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(EmulatorSelfTest, SharedMemoryOptInIsBoundedByTheArchitecture) {
  std::vector<float> x(32);
  const size_t bytes = 200 * 1024;  // above sm_80's 163 KiB, below sm_90's 227 KiB
  ASSERT_EQ(selftest_opt_in_big_shared(static_cast<int>(bytes)), cudaSuccess);
  selftest_launch("big_shared", 1, 32, bytes, x.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue) << "sm_80";
  setenv("FWP_EMU_ARCH", "90", 1);
  selftest_launch("big_shared", 1, 32, bytes, x.data());
  const cudaError_t on_sm90 = cudaGetLastError();
  unsetenv("FWP_EMU_ARCH");
  EXPECT_EQ(on_sm90, cudaSuccess) << "sm_90";
}

TEST(EmulatorSelfTest, LaunchLimitsAreChecked) {
  std::vector<float> x(2048);
  selftest_launch("shuffle_sum", 1, 1056, 0, x.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration) << "1056 threads per block";
  selftest_launch("shuffle_sum", dim3(1, 70000), 32, 0, x.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration) << "grid.y above 65535";
  selftest_launch("shuffle_sum", 0, 32, 0, x.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration) << "empty grid";
}

TEST(EmulatorDeathTest, DivergentBarrierIsADeadlock) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<float> x(32);
  EXPECT_DEATH(
      {
        setenv("FWP_EMU_WATCHDOG_S", "1", 1);
        selftest_launch("divergent_barrier", 1, 32, 0, x.data());
      },
      "deadlock");
}

TEST(EmulatorDeathTest, DivergentShuffleIsADeadlock) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<float> x(32);
  EXPECT_DEATH(
      {
        setenv("FWP_EMU_WATCHDOG_S", "1", 1);
        selftest_launch("divergent_shuffle", 1, 32, 0, x.data());
      },
      "deadlock");
}

// Appends "test Suite.Name passed|failed|skipped" to the launch log after each
// test, so that the coverage check knows whether the whole suite ran.
class LaunchLogListener : public ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo& info) override {
    const auto* r = info.result();
    const char* outcome = r->Skipped() ? "skipped" : r->Passed() ? "passed" : "failed";
    fwp_emu::append_to_launch_log(std::string("test ") + info.test_suite_name() + "." + info.name() + " " + outcome);
  }
};

}  // namespace
}  // namespace fwp

// The launch log of tests/emulator/check_kernel_coverage.py: FWP_EMU_LAUNCH_LOG,
// else the build tree's file (CMake's FWP_EMU_DEFAULT_LAUNCH_LOG); empty = none.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const char* env = std::getenv("FWP_EMU_LAUNCH_LOG");
#ifdef FWP_EMU_DEFAULT_LAUNCH_LOG
  const std::string log = env ? env : FWP_EMU_DEFAULT_LAUNCH_LOG;
#else
  const std::string log = env ? env : "";
#endif
  fwp_emu::set_launch_log(log);
  if (!log.empty()) ::testing::UnitTest::GetInstance()->listeners().Append(new fwp::LaunchLogListener);
  return RUN_ALL_TESTS();
}
