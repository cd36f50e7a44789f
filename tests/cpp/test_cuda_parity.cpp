// CUDA vs CPU parity for every Backend<float> method (suite CudaParity*).
// Built only with FWP_HAVE_CUDA; every test that needs a GPU skips with a
// visible "no CUDA device" message when none is present (the development
// machines and CI have none: scripts/gpu-check.sh runs these on a lent GPU).
//
// Every GPU output is pre-poisoned with NaN, so a kernel that forgets an
// element fails; shapes are deliberately not multiples of the tile and chunk
// sizes. Tolerance: max |gpu - cpu| <= 1e-5 * max |cpu| over each tensor (the
// error relative to the tensor's scale, since element-wise relative errors are
// meaningless where values cancel to ~0). For the fast-weight op the failure
// message also gives both fp32 paths' distance to a float64 CPU reference, to
// tell a bug (large) from rounding (both paths comparable).
#include "core/backend.h"

#if FWP_HAVE_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../../cuda/cuda_backend.h"
#include "core/buffer.h"
#include "core/error.h"
#include "core/rng.h"
#include "cuda_test_util.h"

#if __has_include("nn/fast_weight_layer.h")
#include "nn/fast_weight_layer.h"
#define FWP_PARITY_HAVE_LAYER 1
#else
#define FWP_PARITY_HAVE_LAYER 0
#endif

namespace fwp {
namespace {

using cudatest::close_rel;
using cudatest::FVec;
using DVec = std::vector<double>;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kTol = 1e-5;

int cpu_threads() { return static_cast<int>(std::max(1u, std::min(8u, std::thread::hardware_concurrency()))); }

class CudaParity : public ::testing::Test {
 public:
  void SetUp() override {
    FWP_SKIP_OR_FAIL_WITHOUT_CUDA_DEVICE("CudaParity");  // fails instead under FWP_REQUIRE_CUDA=1
    gpu_ = make_cuda_backend(0);
    cpu_ = make_cpu_backend<float>(cpu_threads());
    cpud_ = make_cpu_backend<double>(cpu_threads());
  }

  Buffer<float> dev(const FVec& h) {
    Buffer<float> b(gpu_, static_cast<int64_t>(h.size()));
    if (!h.empty()) b.from_host(h.data(), static_cast<int64_t>(h.size()));
    return b;
  }
  // A device array full of NaN (what a kernel must overwrite).
  Buffer<float> poisoned(int64_t n) {
    Buffer<float> b(gpu_, n);
    if (n > 0) gpu_->fill(b.data(), kNaN, n);
    return b;
  }
  FVec host(const Buffer<float>& b) { return b.to_host(); }
  int32_t* dev_ints(const std::vector<int32_t>& h) {
    int32_t* p = gpu_->allocate_int(static_cast<int64_t>(h.size()));
    gpu_->upload_int(p, h.data(), static_cast<int64_t>(h.size()));
    int_buffers_.push_back(p);
    return p;
  }
  void TearDown() override {
    for (int32_t* p : int_buffers_) gpu_->deallocate_int(p);
  }

  std::shared_ptr<Backend<float>> gpu_, cpu_;
  std::shared_ptr<Backend<double>> cpud_;
  std::vector<int32_t*> int_buffers_;
};

float* ptr(FVec& v) { return v.empty() ? nullptr : v.data(); }
const float* ptr(const FVec& v) { return v.empty() ? nullptr : v.data(); }
float* ptr(Buffer<float>& b) { return b.empty() ? nullptr : b.data(); }

template <typename F>
void expect_status(fwp_status status, F&& f, const char* what) {
  try {
    f();
    ADD_FAILURE() << what << ": no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << what << ": " << e.what();
    EXPECT_NE(std::string(e.what()), "") << what;
  }
}

// ---- memory ---------------------------------------------------------------------------------------

TEST(CudaParityDevice, NoDeviceOrBadIndexIsADeviceError) {
  const int count = cuda_device_count();
  EXPECT_GE(count, 0);
  // Without a GPU, asking for device 0 must fail cleanly; with one, an index past the end must.
  expect_status(FWP_ERR_DEVICE, [&] { make_cuda_backend(count); }, "make_cuda_backend(count)");
  expect_status(FWP_ERR_DEVICE, [&] { make_cuda_backend(-1); }, "make_cuda_backend(-1)");
}

TEST_F(CudaParity, MemoryRoundTripsCopiesAndFills) {
  EXPECT_EQ(gpu_->device(), Device::Cuda);
  EXPECT_EQ(gpu_->allocate(0), nullptr);
  Rng rng(1);
  const FVec h = cudatest::normal(rng, 1001);
  Buffer<float> a = dev(h);
  EXPECT_EQ(host(a), h);
  Buffer<float> b = poisoned(1001);
  gpu_->copy(b.data(), a.data(), 1001);
  EXPECT_EQ(host(b), h);
  gpu_->fill(b.data() + 10, -2.5f, 991);
  FVec expect = h;
  std::fill(expect.begin() + 10, expect.end(), -2.5f);
  EXPECT_EQ(host(b), expect);
  gpu_->fill(b.data(), 0.0f, 1001);
  EXPECT_EQ(host(b), FVec(1001, 0.0f));
  std::vector<int32_t> ints = {3, -1, 7, 0};
  int32_t* di = dev_ints(ints);
  EXPECT_NE(di, nullptr);
  gpu_->synchronize();
}

TEST_F(CudaParity, HugeAllocationIsOutOfMemory) {
  expect_status(FWP_ERR_OUT_OF_MEMORY, [&] { gpu_->allocate(int64_t{1} << 45); }, "allocate(2^45 floats)");
  // The backend stays usable.
  Buffer<float> ok = dev(FVec{1.0f, 2.0f});
  EXPECT_EQ(host(ok), (FVec{1.0f, 2.0f}));
}

// ---- dense -----------------------------------------------------------------------------------------

TEST_F(CudaParity, GemmAllTransposesWithLeadingDimensions) {
  Rng rng(2);
  const int64_t M = 37, N = 29, K = 67;
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      for (float beta : {0.0f, 0.5f}) {
        const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
        const FVec A = cudatest::normal(rng, (ta ? K : M) * lda), B = cudatest::normal(rng, (tb ? N : K) * ldb);
        FVec C = cudatest::normal(rng, M * ldc);
        Buffer<float> dA = dev(A), dB = dev(B), dC = beta == 0.0f ? poisoned(M * ldc) : dev(C);
        gpu_->gemm(ta, tb, M, N, K, 1.5f, dA.data(), lda, dB.data(), ldb, beta, dC.data(), ldc);
        cpu_->gemm(ta, tb, M, N, K, 1.5f, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
        FVec got = host(dC);
        // Only the M x N block is defined (padding columns were NaN for beta = 0).
        FVec g2, r2;
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            g2.push_back(got[i * ldc + j]);
            r2.push_back(C[i * ldc + j]);
          }
        EXPECT_TRUE(close_rel(g2, r2, kTol)) << "ta=" << ta << " tb=" << tb << " beta=" << beta;
      }
    }
  }
}

TEST_F(CudaParity, BiasAxpyScale) {
  Rng rng(3);
  const int64_t rows = 1300, cols = 45;  // more rows than one partial-sum chunk
  FVec y = cudatest::normal(rng, rows * cols), bias = cudatest::normal(rng, cols);
  FVec dbias = cudatest::normal(rng, cols), x = cudatest::normal(rng, rows * cols);
  Buffer<float> dy = dev(y), db = dev(bias), ddb = dev(dbias), dx = dev(x);
  gpu_->add_bias(dy.data(), db.data(), rows, cols);
  cpu_->add_bias(y.data(), bias.data(), rows, cols);
  EXPECT_TRUE(close_rel(host(dy), y, kTol)) << "add_bias";
  gpu_->bias_grad_accumulate(ddb.data(), dx.data(), rows, cols);
  cpu_->bias_grad_accumulate(dbias.data(), x.data(), rows, cols);
  EXPECT_TRUE(close_rel(host(ddb), dbias, kTol)) << "bias_grad_accumulate (accumulates)";
  gpu_->axpy(rows * cols, -0.75f, dx.data(), dy.data());
  cpu_->axpy(rows * cols, -0.75f, x.data(), y.data());
  EXPECT_TRUE(close_rel(host(dy), y, kTol)) << "axpy";
  gpu_->scale(rows * cols, 3.0f, dy.data());
  cpu_->scale(rows * cols, 3.0f, y.data());
  EXPECT_TRUE(close_rel(host(dy), y, kTol)) << "scale";
}

TEST_F(CudaParity, SplitMergeHeadsAndSigmoid) {
  Rng rng(4);
  const int64_t B = 3, T = 67, H = 5, D = 7;
  const FVec x = cudatest::normal(rng, B * T * H * D, 4.0);
  FVec split(x.size()), merged(x.size());
  Buffer<float> dx = dev(x), ds = poisoned(B * T * H * D), dm = poisoned(B * T * H * D);
  gpu_->split_heads(dx.data(), ds.data(), B, T, H, D);
  cpu_->split_heads(x.data(), split.data(), B, T, H, D);
  EXPECT_EQ(host(ds), split);
  gpu_->merge_heads(ds.data(), dm.data(), B, T, H, D);
  cpu_->merge_heads(split.data(), merged.data(), B, T, H, D);
  EXPECT_EQ(host(dm), merged);
  EXPECT_EQ(merged, x);
  FVec y(x.size()), g = cudatest::normal(rng, B * T * H * D), dxx(x.size());
  Buffer<float> dy = poisoned(B * T * H * D), dg = dev(g), dd = poisoned(B * T * H * D);
  gpu_->sigmoid_forward(dx.data(), dy.data(), B * T * H * D);
  cpu_->sigmoid_forward(x.data(), y.data(), B * T * H * D);
  EXPECT_TRUE(close_rel(host(dy), y, kTol)) << "sigmoid";
  gpu_->sigmoid_backward(dy.data(), dg.data(), dd.data(), B * T * H * D);
  cpu_->sigmoid_backward(y.data(), g.data(), dxx.data(), B * T * H * D);
  EXPECT_TRUE(close_rel(host(dd), dxx, kTol)) << "sigmoid backward";
}

// ---- feature maps ------------------------------------------------------------------------------------

TEST_F(CudaParity, FeatureMapsForwardBackward) {
  Rng rng(5);
  const int64_t rows = 301, d = 24;
  FVec x = cudatest::normal(rng, rows * d);
  x[5] = 0.0f;
  Buffer<float> dx_in = dev(x);
  struct Spec {
    FeatureMap kind;
    int64_t nu, m;
  };
  for (const Spec sp : {Spec{FeatureMap::Elu, 1, 0}, Spec{FeatureMap::Dpfp, 1, 0}, Spec{FeatureMap::Dpfp, 2, 0},
                        Spec{FeatureMap::Dpfp, 3, 0}, Spec{FeatureMap::Favor, 1, 40}}) {
    FeatureMapSpec spec{sp.kind, d, sp.nu, sp.m};
    const int64_t dout = spec.d_out();
    SCOPED_TRACE(testing::Message() << "kind " << int(sp.kind) << " nu " << sp.nu << " m " << sp.m);
    FVec R = sp.kind == FeatureMap::Favor ? cudatest::normal(rng, sp.m * d, 0.3) : FVec();
    FVec xs = x;
    if (sp.kind == FeatureMap::Favor) {
      for (auto& e : xs) e *= 0.3f;
    }
    Buffer<float> dR = dev(R), dxs = dev(xs);
    FVec phi(size_t(rows * dout)), g = cudatest::normal(rng, rows * dout), gx(size_t(rows * d));
    Buffer<float> dphi = poisoned(rows * dout), dg = dev(g), dgx = poisoned(rows * d);
    cpu_->feature_map_forward(spec, ptr(R), xs.data(), phi.data(), rows);
    gpu_->feature_map_forward(spec, ptr(dR), dxs.data(), dphi.data(), rows);
    EXPECT_TRUE(close_rel(host(dphi), phi, kTol)) << "forward";
    cpu_->feature_map_backward(spec, ptr(R), xs.data(), phi.data(), g.data(), gx.data(), rows);
    gpu_->feature_map_backward(spec, ptr(dR), dxs.data(), dphi.data(), dg.data(), dgx.data(), rows);
    EXPECT_TRUE(close_rel(host(dgx), gx, kTol)) << "backward";
  }
}

TEST_F(CudaParity, SumNormalizeInPlaceAndAliased) {
  Rng rng(6);
  const int64_t rows = 77, d = 100;
  FVec phi = cudatest::uniform(rng, rows * d, 0.0, 1.0);
  std::fill(phi.begin(), phi.begin() + d, 0.0f);  // an all-zero row
  const FVec g = cudatest::normal(rng, rows * d);
  FVec out(phi.size()), dphi(phi.size());
  cpu_->sum_normalize_forward(phi.data(), out.data(), rows, d, 1e-6f);
  cpu_->sum_normalize_backward(phi.data(), g.data(), dphi.data(), rows, d, 1e-6f);
  Buffer<float> dp = dev(phi), dout = poisoned(rows * d), dgrad = dev(g);
  gpu_->sum_normalize_forward(dp.data(), dout.data(), rows, d, 1e-6f);
  EXPECT_TRUE(close_rel(host(dout), out, kTol));
  gpu_->sum_normalize_backward(dp.data(), dgrad.data(), dgrad.data(), rows, d, 1e-6f);  // dphi aliases dout
  EXPECT_TRUE(close_rel(host(dgrad), dphi, kTol));
  gpu_->sum_normalize_forward(dp.data(), dp.data(), rows, d, 1e-6f);  // out aliases phi
  EXPECT_TRUE(close_rel(host(dp), out, kTol));
}

// ---- the fast-weight op ---------------------------------------------------------------------------------

struct FwCase {
  int64_t S, T, dk, dv;
  bool delta;
  Algorithm algo;
  int64_t chunk = 0;
  bool with_q = true, with_state_in = true, with_d_out = true, with_d_state_out = true;
  bool alias_state = false;  // state_out == state_in, d_state_in == d_state_out
};

std::string describe(const FwCase& c) {
  const char* algo = c.algo == Algorithm::Auto ? "auto" : c.algo == Algorithm::Recurrent ? "recurrent" : "chunked";
  return "S=" + std::to_string(c.S) + " T=" + std::to_string(c.T) + " dk=" + std::to_string(c.dk) +
         " dv=" + std::to_string(c.dv) + (c.delta ? " delta " : " sum ") + algo + " C=" + std::to_string(c.chunk) +
         (c.with_q ? "" : " no-q") + (c.with_state_in ? "" : " no-state-in") + (c.with_d_out ? "" : " no-dout") +
         (c.with_d_state_out ? "" : " no-dstate") + (c.alias_state ? " aliased" : "");
}

template <typename T>
std::vector<T> conv(const FVec& v) {
  return std::vector<T>(v.begin(), v.end());
}

// |gpu - cpu_f| <= kTol * max|cpu_f|; on failure also reports both paths' error against float64.
::testing::AssertionResult fw_close(const FVec& gpu, const FVec& cpu_f, const DVec& cpu_d) {
  auto r = close_rel(gpu, cpu_f, kTol);
  if (r) return r;
  double scale = 1e-30;
  for (double x : cpu_d) scale = std::max(scale, std::fabs(x));
  return r << "; vs float64: gpu " << cudatest::max_abs_diff(gpu, cpu_d) / scale << ", cpu fp32 "
           << cudatest::max_abs_diff(cpu_f, cpu_d) / scale << " (relative to max |ref|)";
}

// The query array a case passes (empty: no query).
const FVec& q_or(const FwCase& c, const FVec& q) {
  static const FVec none;
  return c.with_q ? q : none;
}

void run_fast_weight_case(CudaParity& fx, Backend<float>& gpu, Backend<float>& cpu, Backend<double>& cpud,
                          const FwCase& c, uint64_t seed) {
  SCOPED_TRACE(describe(c));
  Rng rng(seed);
  const int64_t S = c.S, T = c.T, dk = c.dk, dv = c.dv;
  const FastWeightShape sh{S, T, dk, dv};
  const UpdateRule rule = c.delta ? UpdateRule::Delta : UpdateRule::Sum;
  // Sum-normalised keys and queries, as the layers feed them.
  const FVec k = cudatest::simplex_rows(rng, S * T, dk), q = cudatest::simplex_rows(rng, S * T, dk);
  const FVec v = cudatest::normal(rng, S * T * dv);
  const FVec beta = c.delta ? cudatest::uniform(rng, S * T, 0.05, 0.95) : FVec();
  const FVec s_in = c.with_state_in ? cudatest::normal(rng, S * dv * dk, 0.3) : FVec();
  const FVec d_out = (c.with_q && c.with_d_out) ? cudatest::normal(rng, S * T * dv) : FVec();
  const FVec d_s_out = c.with_d_state_out ? cudatest::normal(rng, S * dv * dk, 0.3) : FVec();

  // CPU references: float (same algorithm where it exists) and double.
  const Algorithm cpu_algo = c.algo == Algorithm::Chunked ? Algorithm::Chunked : Algorithm::Recurrent;
  FVec out(c.with_q ? size_t(S * T * dv) : 0), u(size_t(S * T * dv)), s_out(size_t(S * dv * dk));
  cpu.fast_weight_forward(rule, cpu_algo, c.chunk, sh, ptr(q_or(c, q)), k.data(), v.data(), ptr(beta), ptr(s_in),
                          ptr(out), u.data(), s_out.data());
  FVec dq(c.with_q ? k.size() : 0), dkk(k.size()), dvv(v.size()), db(beta.size()), ds_in(s_out.size());
  cpu.fast_weight_backward(rule, cpu_algo, c.chunk, sh, ptr(q_or(c, q)), k.data(), v.data(), ptr(beta), u.data(),
                           s_out.data(), ptr(d_out), ptr(d_s_out), ptr(dq), dkk.data(), dvv.data(), ptr(db),
                           ds_in.data());
  using D = std::vector<double>;
  D qd = conv<double>(q_or(c, q)), kd = conv<double>(k), vd = conv<double>(v), bd = conv<double>(beta);
  D sid = conv<double>(s_in), dod = conv<double>(d_out), dsd = conv<double>(d_s_out);
  D outd(out.size()), ud(u.size()), soutd(s_out.size());
  auto dp = [](D& x) { return x.empty() ? nullptr : x.data(); };
  cpud.fast_weight_forward(rule, Algorithm::Recurrent, 0, sh, dp(qd), kd.data(), vd.data(), dp(bd), dp(sid),
                           dp(outd), ud.data(), soutd.data());
  D dqd(dq.size()), dkd(dkk.size()), dvd(dvv.size()), dbd(db.size()), dsid(ds_in.size());
  cpud.fast_weight_backward(rule, Algorithm::Recurrent, 0, sh, dp(qd), kd.data(), vd.data(), dp(bd), ud.data(),
                            soutd.data(), dp(dod), dp(dsd), dp(dqd), dkd.data(), dvd.data(), dp(dbd), dsid.data());

  // GPU, outputs poisoned.
  Buffer<float> gq = fx.dev(q_or(c, q)), gk = fx.dev(k), gv = fx.dev(v), gb = fx.dev(beta);
  Buffer<float> gsin = fx.dev(s_in), gdo = fx.dev(d_out), gdsout = fx.dev(d_s_out);
  Buffer<float> gout = fx.poisoned(int64_t(out.size())), gu = fx.poisoned(S * T * dv);
  Buffer<float> gsout_own = fx.poisoned(S * dv * dk);
  float* gsout = c.alias_state && c.with_state_in ? gsin.data() : gsout_own.data();
  gpu.fast_weight_forward(rule, c.algo, c.chunk, sh, ptr(gq), gk.data(), gv.data(), ptr(gb), ptr(gsin), ptr(gout),
                          gu.data(), gsout);
  Buffer<float> gdq = fx.poisoned(int64_t(dq.size())), gdk = fx.poisoned(S * T * dk), gdv = fx.poisoned(S * T * dv);
  Buffer<float> gdb = fx.poisoned(int64_t(db.size())), gdsin_own = fx.poisoned(S * dv * dk);
  float* gdsin = c.alias_state && c.with_d_state_out ? gdsout.data() : gdsin_own.data();
  // The state buffer is read back before the backward may overwrite an aliased gradient.
  FVec g_sout(size_t(S * dv * dk));
  gpu.download(g_sout.data(), gsout, S * dv * dk);
  gpu.fast_weight_backward(rule, c.algo, c.chunk, sh, ptr(gq), gk.data(), gv.data(), ptr(gb), gu.data(), gsout,
                           ptr(gdo), ptr(gdsout), ptr(gdq), gdk.data(), gdv.data(), ptr(gdb), gdsin);
  FVec g_dsin(size_t(S * dv * dk));
  gpu.download(g_dsin.data(), gdsin, S * dv * dk);

  EXPECT_TRUE(fw_close(fx.host(gout), out, outd)) << "out";
  EXPECT_TRUE(fw_close(fx.host(gu), u, ud)) << "u";
  EXPECT_TRUE(fw_close(g_sout, s_out, soutd)) << "state_out";
  EXPECT_TRUE(fw_close(fx.host(gdq), dq, dqd)) << "dq";
  EXPECT_TRUE(fw_close(fx.host(gdk), dkk, dkd)) << "dk";
  EXPECT_TRUE(fw_close(fx.host(gdv), dvv, dvd)) << "dv";
  EXPECT_TRUE(fw_close(fx.host(gdb), db, dbd)) << "dbeta";
  EXPECT_TRUE(fw_close(g_dsin, ds_in, dsid)) << "d_state_in";
}

TEST_F(CudaParity, FastWeightShapesRulesAlgorithms) {
  uint64_t seed = 100;
  for (int64_t d : {16, 32, 64, 128, 256}) {
    for (int64_t T : {1, 67, 300}) {
      for (bool delta : {true, false}) {
        for (Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
          run_fast_weight_case(*this, *gpu_, *cpu_, *cpud_, FwCase{2, T, d, d, delta, algo}, ++seed);
        }
      }
    }
  }
}

TEST_F(CudaParity, FastWeightWideKeysAndValues) {
  uint64_t seed = 200;
  // DPFP nu = 2..3 gives wide keys; wide values need several value tiles.
  const FwCase cases[] = {
      {2, 67, 512, 64, true, Algorithm::Recurrent},  {2, 67, 512, 64, true, Algorithm::Chunked},
      {2, 67, 512, 64, false, Algorithm::Chunked},   {1, 40, 1024, 16, true, Algorithm::Recurrent},
      {1, 40, 1024, 16, true, Algorithm::Chunked},   {1, 67, 384, 32, true, Algorithm::Auto},
      {2, 45, 48, 300, true, Algorithm::Recurrent},  {2, 45, 48, 300, true, Algorithm::Chunked},
      {2, 45, 48, 300, false, Algorithm::Recurrent}, {3, 70, 17, 5, true, Algorithm::Recurrent},
      {3, 70, 17, 5, true, Algorithm::Chunked},      {1, 33, 256, 256, false, Algorithm::Auto},
  };
  for (const auto& c : cases) run_fast_weight_case(*this, *gpu_, *cpu_, *cpud_, c, ++seed);
}

TEST_F(CudaParity, FastWeightChunkSizesAndAuto) {
  uint64_t seed = 300;
  for (int64_t chunk : {1, 16, 100, 128}) {
    for (bool delta : {true, false}) {
      run_fast_weight_case(*this, *gpu_, *cpu_, *cpud_, FwCase{2, 259, 32, 24, delta, Algorithm::Chunked, chunk},
                           ++seed);
    }
  }
  for (int64_t T : {1, 67, 300, 1100}) {
    run_fast_weight_case(*this, *gpu_, *cpu_, *cpud_, FwCase{2, T, 64, 64, true, Algorithm::Auto}, ++seed);
  }
}

TEST_F(CudaParity, FastWeightOptionalArgumentsAndAliasing) {
  uint64_t seed = 400;
  for (Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
    for (bool delta : {true, false}) {
      for (int variant = 0; variant < 5; ++variant) {
        FwCase c{2, 67, 32, 20, delta, algo};
        c.with_q = variant != 0;
        c.with_state_in = variant != 1;
        c.with_d_out = variant != 2;
        c.with_d_state_out = variant != 3;
        c.alias_state = variant == 4;
        run_fast_weight_case(*this, *gpu_, *cpu_, *cpud_, c, ++seed);
      }
    }
  }
}

TEST_F(CudaParity, FastWeightZeroStepsPassesTheStateThrough) {
  const FastWeightShape sh{2, 0, 8, 4};
  Rng rng(9);
  const FVec s_in = cudatest::normal(rng, 2 * 4 * 8), d_s = cudatest::normal(rng, 2 * 4 * 8);
  Buffer<float> gs = dev(s_in), gout = poisoned(64), gd = dev(d_s), gdin = poisoned(64);
  gpu_->fast_weight_forward(UpdateRule::Delta, Algorithm::Auto, 0, sh, nullptr, nullptr, nullptr, nullptr, gs.data(),
                            nullptr, nullptr, gout.data());
  EXPECT_EQ(host(gout), s_in);
  gpu_->fast_weight_backward(UpdateRule::Delta, Algorithm::Auto, 0, sh, nullptr, nullptr, nullptr, nullptr, nullptr,
                             gout.data(), nullptr, gd.data(), nullptr, nullptr, nullptr, nullptr, gdin.data());
  EXPECT_EQ(host(gdin), d_s);
}

TEST_F(CudaParity, FastWeightUnsupportedShapesThrow) {
  const FastWeightShape big{1, 4, 2048, 8};
  Buffer<float> k = poisoned(4 * 2048), v = poisoned(32), b = poisoned(4), u = poisoned(32), s = poisoned(8 * 2048);
  expect_status(FWP_ERR_UNSUPPORTED,
                [&] {
                  gpu_->fast_weight_forward(UpdateRule::Delta, Algorithm::Recurrent, 0, big, nullptr, k.data(),
                                            v.data(), b.data(), nullptr, nullptr, u.data(), s.data());
                },
                "recurrent d_key 2048");
  const FastWeightShape sh{1, 300, 8, 8};
  Buffer<float> k2 = poisoned(300 * 8), v2 = poisoned(300 * 8), u2 = poisoned(300 * 8), s2 = poisoned(64);
  expect_status(FWP_ERR_UNSUPPORTED,
                [&] {
                  gpu_->fast_weight_forward(UpdateRule::Sum, Algorithm::Chunked, CudaBackend::kMaxChunkSize + 1, sh,
                                            nullptr, k2.data(), v2.data(), nullptr, nullptr, nullptr, u2.data(),
                                            s2.data());
                },
                "chunk size above the maximum");
}

// ---- attention normalisation --------------------------------------------------------------------------

TEST_F(CudaParity, AttnNormForwardBackward) {
  Rng rng(10);
  for (int64_t T : {1, 67, 300}) {
    for (bool with_z : {true, false}) {
      const int64_t S = 3, dk = 33, dv = 20;
      const FastWeightShape sh{S, T, dk, dv};
      const FVec q = cudatest::uniform(rng, S * T * dk, 0.0, 1.0), k = cudatest::uniform(rng, S * T * dk, 0.0, 1.0);
      const FVec z = with_z ? cudatest::uniform(rng, S * dk, 0.0, 1.0) : FVec();
      const FVec o = cudatest::normal(rng, S * T * dv), dy = cudatest::normal(rng, S * T * dv);
      FVec y(o.size()), den(size_t(S * T)), zo(size_t(S * dk)), d_o(o.size()), dq(q.size()), dkk(k.size()),
          dz(size_t(S * dk));
      cpu_->attn_norm_forward(sh, q.data(), k.data(), ptr(z), o.data(), 1e-6f, y.data(), den.data(), zo.data());
      cpu_->attn_norm_backward(sh, q.data(), k.data(), ptr(z), y.data(), den.data(), dy.data(), d_o.data(),
                               dq.data(), dkk.data(), dz.data());
      Buffer<float> gq = dev(q), gk = dev(k), gz = dev(z), go = dev(o), gdy = dev(dy);
      Buffer<float> gy = poisoned(S * T * dv), gden = poisoned(S * T), gzo = poisoned(S * dk);
      Buffer<float> gdq = poisoned(S * T * dk), gdk = poisoned(S * T * dk), gdz = poisoned(S * dk);
      gpu_->attn_norm_forward(sh, gq.data(), gk.data(), ptr(gz), go.data(), 1e-6f, gy.data(), gden.data(), gzo.data());
      SCOPED_TRACE(testing::Message() << "T=" << T << " z=" << with_z);
      EXPECT_TRUE(close_rel(host(gy), y, kTol)) << "y";
      EXPECT_TRUE(close_rel(host(gden), den, kTol)) << "denom";
      EXPECT_TRUE(close_rel(host(gzo), zo, kTol)) << "z_out";
      // d_o aliases dy, as the layer may do.
      gpu_->attn_norm_backward(sh, gq.data(), gk.data(), ptr(gz), gy.data(), gden.data(), gdy.data(), gdy.data(),
                               gdq.data(), gdk.data(), gdz.data());
      EXPECT_TRUE(close_rel(host(gdy), d_o, kTol)) << "d_o";
      EXPECT_TRUE(close_rel(host(gdq), dq, kTol)) << "dq";
      EXPECT_TRUE(close_rel(host(gdk), dkk, kTol)) << "dk";
      EXPECT_TRUE(close_rel(host(gdz), dz, kTol)) << "d_z_in";
    }
  }
}

// ---- softmax attention -----------------------------------------------------------------------------------

TEST_F(CudaParity, SoftmaxAttentionForwardBackward) {
  Rng rng(11);
  for (int64_t T : {1, 67, 300}) {
    for (int64_t d : {16, 64, 200}) {
      const int64_t S = 3;
      const float scale = 1.0f / std::sqrt(float(d));
      const FVec q = cudatest::normal(rng, S * T * d, 1.5), k = cudatest::normal(rng, S * T * d, 1.5);
      const FVec v = cudatest::normal(rng, S * T * d), dout = cudatest::normal(rng, S * T * d);
      FVec out(q.size()), lse(size_t(S * T)), dq(q.size()), dk(q.size()), dv(q.size());
      cpu_->softmax_attention_forward(S, T, d, q.data(), k.data(), v.data(), scale, out.data(), lse.data());
      cpu_->softmax_attention_backward(S, T, d, q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(),
                                       scale, dq.data(), dk.data(), dv.data());
      Buffer<float> gq = dev(q), gk = dev(k), gv = dev(v), gdo = dev(dout);
      Buffer<float> go = poisoned(S * T * d), gl = poisoned(S * T), gdq = poisoned(S * T * d),
                    gdk = poisoned(S * T * d), gdv = poisoned(S * T * d);
      gpu_->softmax_attention_forward(S, T, d, gq.data(), gk.data(), gv.data(), scale, go.data(), gl.data());
      gpu_->softmax_attention_backward(S, T, d, gq.data(), gk.data(), gv.data(), go.data(), gl.data(), gdo.data(),
                                       scale, gdq.data(), gdk.data(), gdv.data());
      SCOPED_TRACE(testing::Message() << "T=" << T << " d=" << d);
      EXPECT_TRUE(close_rel(host(go), out, kTol)) << "out";
      EXPECT_TRUE(close_rel(host(gl), lse, kTol)) << "lse";
      EXPECT_TRUE(close_rel(host(gdq), dq, kTol)) << "dq";
      EXPECT_TRUE(close_rel(host(gdk), dk, kTol)) << "dk";
      EXPECT_TRUE(close_rel(host(gdv), dv, kTol)) << "dv";
    }
  }
}

TEST_F(CudaParity, SoftmaxAttentionDecode) {
  Rng rng(12);
  const int64_t S = 4, capacity = 700, d = 48;
  const FVec kc = cudatest::normal(rng, S * capacity * d), vc = cudatest::normal(rng, S * capacity * d);
  const FVec q = cudatest::normal(rng, S * d);
  Buffer<float> gk = dev(kc), gv = dev(vc), gq = dev(q);
  for (int64_t length : {0, 1, 255, 300, 700}) {
    FVec out(size_t(S * d));
    cpu_->softmax_attention_decode(S, length, capacity, d, q.data(), kc.data(), vc.data(), 0.3f, out.data());
    Buffer<float> go = poisoned(S * d);
    gpu_->softmax_attention_decode(S, length, capacity, d, gq.data(), gk.data(), gv.data(), 0.3f, go.data());
    EXPECT_TRUE(close_rel(host(go), out, kTol)) << "length " << length;
  }
}

TEST_F(CudaParity, CrossAttentionForwardBackward) {
  Rng rng(13);
  struct Case {
    int64_t S, nq, nk, d, dv;
    bool with_dv;
  };
  for (const Case c : {Case{2, 5, 70, 16, 13, true}, Case{3, 40, 33, 64, 300, true}, Case{2, 1, 1, 8, 8, false},
                       Case{2, 33, 129, 130, 20, false}, Case{2, 3, 0, 8, 5, true}}) {
    SCOPED_TRACE(testing::Message() << "nq=" << c.nq << " nk=" << c.nk << " d=" << c.d << " dv=" << c.dv);
    const FVec q = cudatest::normal(rng, c.S * c.nq * c.d), k = cudatest::normal(rng, c.S * c.nk * c.d);
    const FVec v = cudatest::normal(rng, c.S * c.nk * c.dv), dout = cudatest::normal(rng, c.S * c.nq * c.dv);
    FVec out(size_t(c.S * c.nq * c.dv)), lse(size_t(c.S * c.nq)), dq(q.size()), dk(k.size()), dv(v.size());
    cpu_->cross_attention_forward(c.S, c.nq, c.nk, c.d, c.dv, q.data(), k.data(), v.data(), 0.25f, out.data(),
                                  lse.data());
    cpu_->cross_attention_backward(c.S, c.nq, c.nk, c.d, c.dv, q.data(), k.data(), v.data(), out.data(), lse.data(),
                                   dout.data(), 0.25f, dq.data(), ptr(dk), c.with_dv ? ptr(dv) : nullptr);
    Buffer<float> gq = dev(q), gk = dev(k), gv = dev(v), gdo = dev(dout);
    Buffer<float> go = poisoned(c.S * c.nq * c.dv), gl = poisoned(c.S * c.nq), gdq = poisoned(c.S * c.nq * c.d),
                  gdk = poisoned(c.S * c.nk * c.d), gdv = poisoned(c.S * c.nk * c.dv);
    gpu_->cross_attention_forward(c.S, c.nq, c.nk, c.d, c.dv, gq.data(), ptr(gk), ptr(gv), 0.25f, go.data(),
                                  gl.data());
    EXPECT_TRUE(close_rel(host(go), out, kTol)) << "out";
    const FVec got_lse = host(gl);
    if (c.nk == 0) {
      for (float x : got_lse) EXPECT_TRUE(std::isinf(x) && x < 0) << "lse of an empty row";
    } else {
      EXPECT_TRUE(close_rel(got_lse, lse, kTol)) << "lse";
    }
    gpu_->cross_attention_backward(c.S, c.nq, c.nk, c.d, c.dv, gq.data(), ptr(gk), ptr(gv), go.data(), gl.data(),
                                   gdo.data(), 0.25f, gdq.data(), ptr(gdk), c.with_dv ? ptr(gdv) : nullptr);
    EXPECT_TRUE(close_rel(host(gdq), dq, kTol)) << "dq";
    EXPECT_TRUE(close_rel(host(gdk), dk, kTol)) << "dk";
    if (c.with_dv) {
      EXPECT_TRUE(close_rel(host(gdv), dv, kTol)) << "dv";
    }
  }
}

// ---- model and optimizer ops --------------------------------------------------------------------------

TEST_F(CudaParity, EmbeddingOneHotAndStepSums) {
  Rng rng(14);
  const int64_t vocab = 50, dim = 70, rows = 1000;
  const FVec table = cudatest::normal(rng, vocab * dim), g = cudatest::normal(rng, rows * dim);
  std::vector<int32_t> ids(static_cast<size_t>(rows));
  for (auto& id : ids) id = static_cast<int32_t>(rng.below(vocab + 3)) - 3;  // some -1..-3: padding
  ids[0] = 7;
  ids[1] = 7;  // repeats add up
  const int32_t* gids = dev_ints(ids);
  FVec out(size_t(rows * dim));
  cpu_->embedding_gather(table.data(), ids.data(), out.data(), rows, dim);
  Buffer<float> gt = dev(table), gout = poisoned(rows * dim), gg = dev(g);
  gpu_->embedding_gather(gt.data(), gids, gout.data(), rows, dim);
  EXPECT_EQ(host(gout), out) << "gather";
  FVec dtable = cudatest::normal(rng, vocab * dim);
  Buffer<float> gdt = dev(dtable);
  cpu_->embedding_scatter_accumulate(dtable.data(), ids.data(), g.data(), rows, dim);
  gpu_->embedding_scatter_accumulate(gdt.data(), gids, gg.data(), rows, dim);
  EXPECT_EQ(host(gdt), dtable) << "scatter-add (same order of additions: bitwise equal)";

  const int64_t classes = 9, d = 4;
  std::vector<int32_t> cls(static_cast<size_t>(rows));
  for (auto& c : cls) c = static_cast<int32_t>(rng.below(classes));
  const int32_t* gcls = dev_ints(cls);
  const FVec x = cudatest::normal(rng, rows * d);
  Buffer<float> gx = dev(x), goh = poisoned(rows * (classes + d)), goh0 = poisoned(rows * classes);
  FVec oh(size_t(rows * (classes + d))), oh0(size_t(rows * classes));
  cpu_->onehot_concat(cls.data(), x.data(), oh.data(), rows, classes, d);
  gpu_->onehot_concat(gcls, gx.data(), goh.data(), rows, classes, d);
  EXPECT_EQ(host(goh), oh);
  cpu_->onehot_concat(cls.data(), nullptr, oh0.data(), rows, classes, 0);
  gpu_->onehot_concat(gcls, nullptr, goh0.data(), rows, classes, 0);
  EXPECT_EQ(host(goh0), oh0);

  const int64_t S = 6, T = 67, w = 21;
  const FVec xs = cudatest::normal(rng, S * T * w), vs = cudatest::normal(rng, S * w);
  FVec ssum(size_t(S * w)), xb = xs;
  cpu_->step_sum(xs.data(), ssum.data(), S, T, w);
  cpu_->step_broadcast_accumulate(vs.data(), xb.data(), S, T, w);
  Buffer<float> gxs = dev(xs), gss = poisoned(S * w), gvs = dev(vs);
  gpu_->step_sum(gxs.data(), gss.data(), S, T, w);
  EXPECT_TRUE(close_rel(host(gss), ssum, kTol)) << "step_sum";
  gpu_->step_broadcast_accumulate(gvs.data(), gxs.data(), S, T, w);
  EXPECT_TRUE(close_rel(host(gxs), xb, kTol)) << "step_broadcast_accumulate";
}

TEST_F(CudaParity, FastWeightReadout) {
  Rng rng(15);
  for (bool with_z : {true, false}) {
    const int64_t S = 4, nq = 37, dk = 40, dv = 19;
    const FastWeightShape sh{S, nq, dk, dv};
    const FVec W = cudatest::normal(rng, S * dv * dk), q = cudatest::uniform(rng, S * nq * dk, 0.0, 1.0);
    const FVec z = with_z ? cudatest::uniform(rng, S * dk, 0.5, 1.0) : FVec();
    const FVec dy = cudatest::normal(rng, S * nq * dv);
    FVec y(size_t(S * nq * dv)), den(with_z ? size_t(S * nq) : 0), dq(q.size()), dW(W.size()), dz(z.size());
    cpu_->fast_weight_readout_forward(sh, W.data(), ptr(z), q.data(), 1e-6f, y.data(), ptr(den));
    cpu_->fast_weight_readout_backward(sh, W.data(), ptr(z), q.data(), y.data(), ptr(den), dy.data(), dq.data(),
                                       dW.data(), ptr(dz));
    Buffer<float> gW = dev(W), gq = dev(q), gz = dev(z), gdy = dev(dy);
    Buffer<float> gy = poisoned(S * nq * dv), gden = poisoned(int64_t(den.size())), gdq = poisoned(S * nq * dk),
                  gdW = poisoned(S * dv * dk), gdz = poisoned(int64_t(dz.size()));
    gpu_->fast_weight_readout_forward(sh, gW.data(), ptr(gz), gq.data(), 1e-6f, gy.data(), ptr(gden));
    gpu_->fast_weight_readout_backward(sh, gW.data(), ptr(gz), gq.data(), gy.data(), ptr(gden), gdy.data(),
                                       gdq.data(), gdW.data(), ptr(gdz));
    SCOPED_TRACE(testing::Message() << "z=" << with_z);
    EXPECT_TRUE(close_rel(host(gy), y, kTol)) << "y";
    EXPECT_TRUE(close_rel(host(gden), den, kTol)) << "denom";
    EXPECT_TRUE(close_rel(host(gdq), dq, kTol)) << "dq";
    EXPECT_TRUE(close_rel(host(gdW), dW, kTol)) << "d_state";
    EXPECT_TRUE(close_rel(host(gdz), dz, kTol)) << "d_z";
  }
}

TEST_F(CudaParity, OneHotMseLossAndGradient) {
  Rng rng(16);
  const int64_t rows = 300, classes = 37;
  const FVec y = cudatest::normal(rng, rows * classes, 0.3);
  std::vector<int32_t> t(static_cast<size_t>(rows));
  for (auto& x : t) x = static_cast<int32_t>(rng.below(classes + 1)) - 1;  // -1 = padding
  const int32_t* gt = dev_ints(t);
  FVec loss(static_cast<size_t>(rows)), dy(y.size());
  cpu_->onehot_mse_forward(y.data(), t.data(), loss.data(), rows, classes);
  cpu_->onehot_mse_backward(y.data(), t.data(), 0.125f, dy.data(), rows, classes);
  Buffer<float> gy = dev(y), gl = poisoned(rows), gdy = poisoned(rows * classes);
  gpu_->onehot_mse_forward(gy.data(), gt, gl.data(), rows, classes);
  gpu_->onehot_mse_backward(gy.data(), gt, 0.125f, gdy.data(), rows, classes);
  EXPECT_TRUE(close_rel(host(gl), loss, kTol));
  EXPECT_TRUE(close_rel(host(gdy), dy, kTol));
}

TEST_F(CudaParity, SumSquaresAdamSgd) {
  Rng rng(17);
  const int64_t n = 300001;
  const FVec x = cudatest::normal(rng, n);
  Buffer<float> gx = dev(x);
  const double ref = cpu_->sum_squares(x.data(), n);
  EXPECT_NEAR(gpu_->sum_squares(gx.data(), n), ref, 1e-12 * ref) << "sum_squares (double accumulation)";
  EXPECT_EQ(gpu_->sum_squares(gx.data(), 0), 0.0);

  for (bool decoupled : {false, true}) {
    AdamStepParams hp;
    hp.lr = 3e-3;
    hp.weight_decay = 0.01;
    hp.decoupled_weight_decay = decoupled;
    hp.bias_correction1 = 1.0 - std::pow(hp.beta1, 3);
    hp.bias_correction2 = 1.0 - std::pow(hp.beta2, 3);
    hp.grad_scale = 0.5;
    FVec p = cudatest::normal(rng, 5000), g = cudatest::normal(rng, 5000), m = cudatest::normal(rng, 5000, 0.1);
    FVec v = cudatest::uniform(rng, 5000, 0.0, 0.01);
    Buffer<float> gp = dev(p), gg = dev(g), gm = dev(m), gv = dev(v);
    cpu_->adam_update(hp, 5000, p.data(), g.data(), m.data(), v.data());
    gpu_->adam_update(hp, 5000, gp.data(), gg.data(), gm.data(), gv.data());
    EXPECT_TRUE(close_rel(host(gp), p, kTol)) << "adam param, decoupled=" << decoupled;
    EXPECT_TRUE(close_rel(host(gm), m, kTol)) << "adam m";
    EXPECT_TRUE(close_rel(host(gv), v, kTol)) << "adam v";
  }
  for (double momentum : {0.0, 0.9}) {
    SgdStepParams hp;
    hp.lr = 0.1;
    hp.momentum = momentum;
    hp.weight_decay = 0.001;
    hp.grad_scale = 2.0;
    FVec p = cudatest::normal(rng, 5000), g = cudatest::normal(rng, 5000);
    FVec buf = momentum != 0.0 ? cudatest::normal(rng, 5000) : FVec();
    Buffer<float> gp = dev(p), gg = dev(g), gb = dev(buf);
    cpu_->sgd_update(hp, 5000, p.data(), g.data(), ptr(buf));
    gpu_->sgd_update(hp, 5000, gp.data(), gg.data(), ptr(gb));
    EXPECT_TRUE(close_rel(host(gp), p, kTol)) << "sgd param, momentum=" << momentum;
    if (momentum != 0.0) {
      EXPECT_TRUE(close_rel(host(gb), buf, kTol)) << "sgd buffer";
    }
  }
}

// ---- a whole layer ---------------------------------------------------------------------------------------

#if FWP_PARITY_HAVE_LAYER
TEST_F(CudaParity, FastWeightLayerForwardBackward) {
  struct LayerCase {
    const char* name;
    FastWeightLayerConfig cfg;
  };
  std::vector<LayerCase> cases;
  {
    FastWeightLayerConfig c;
    c.d_model = 32;
    c.num_heads = 4;
    c.d_head = 8;
    cases.push_back({"dpfp delta (default)", c});
    c.algorithm = Algorithm::Chunked;
    c.chunk_size = 16;
    cases.push_back({"dpfp delta chunked", c});
    c = FastWeightLayerConfig{};
    c.d_model = 32;
    c.num_heads = 2;
    c.d_head = 16;
    c.feature_map = FeatureMap::Elu;
    c.update_rule = UpdateRule::Sum;
    c.sum_normalize = false;
    c.attn_normalize = true;
    c.use_bias = true;
    cases.push_back({"elu sum attn-norm bias", c});
    c = FastWeightLayerConfig{};
    c.d_model = 32;
    c.num_heads = 2;
    c.d_head = 16;
    c.feature_map = FeatureMap::Favor;
    c.favor_features = 24;
    cases.push_back({"favor delta", c});
    c = FastWeightLayerConfig{};
    c.d_model = 32;
    c.num_heads = 4;
    c.d_head = 8;
    c.softmax = true;
    cases.push_back({"softmax", c});
  }
  const int64_t B = 3, T = 37;
  for (auto& lc : cases) {
    SCOPED_TRACE(lc.name);
    FastWeightLayer<float> lcpu(lc.cfg, cpu_, Rng(77)), lgpu(lc.cfg, gpu_, Rng(77));
    Rng rng(78);
    const FVec x = cudatest::normal(rng, B * T * lc.cfg.d_model), dy = cudatest::normal(rng, B * T * lc.cfg.d_model);
    FVec yc(x.size()), yg(x.size()), dxc(x.size()), dxg(x.size(), kNaN);
    lcpu.forward(x.data(), B, T, yc.data());
    lgpu.forward(x.data(), B, T, yg.data());
    EXPECT_TRUE(close_rel(yg, yc, kTol)) << "layer output";
    lcpu.backward(dy.data(), B, T, dxc.data());
    lgpu.backward(dy.data(), B, T, dxg.data());
    EXPECT_TRUE(close_rel(dxg, dxc, kTol)) << "layer input gradient";
    ASSERT_EQ(lcpu.params().size(), lgpu.params().size());
    for (int64_t i = 0; i < lcpu.params().size(); ++i) {
      const auto& pc = lcpu.params()[i];
      const auto& pg = lgpu.params()[i];
      EXPECT_TRUE(close_rel(pg.value.to_host(), pc.value.to_host(), kTol)) << pc.name << " value";
      EXPECT_TRUE(close_rel(pg.grad.to_host(), pc.grad.to_host(), kTol)) << pc.name << " grad";
    }
  }
}
#endif

}  // namespace
}  // namespace fwp

#endif  // FWP_HAVE_CUDA
