// Tests of the CPU backend's non-recurrent ops against the plain double
// references in ops_reference.h, with central-difference gradient checks of
// every backward. Most tests run in double; a few also check float.
#include <gtest/gtest.h>

#include <algorithm>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "ops/cpu_backend.h"
#include "ops/favor_projection.h"
#include "ops_reference.h"

namespace fwp {
namespace {

using opsref::gradient_error;
using opsref::max_abs;
using opsref::max_abs_diff;
using opsref::normal_vector;
using opsref::numeric_gradient;
using opsref::uniform_vector;
using opsref::Vec;

std::shared_ptr<Backend<double>> cpu(int threads = 1) { return make_cpu_backend<double>(threads); }

std::vector<float> to_float(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }
Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// Keeps test inputs away from DPFP's relu kink at 0, where the finite
// differences would straddle two pieces.
Vec away_from_zero(Vec x, double margin = 0.05) {
  for (auto& v : x) {
    if (std::fabs(v) < margin) v = v < 0 ? v - margin : v + margin;
  }
  return x;
}

// ================================ memory ==========================================

TEST(OpsMemory, AllocationIsAlignedAndZeroSizeIsNull) {
  auto be = cpu();
  EXPECT_EQ(be->allocate(0), nullptr);
  EXPECT_EQ(be->allocate_int(0), nullptr);
  for (int64_t n : {1, 3, 17, 1000}) {
    double* p = be->allocate(n);
    int32_t* pi = be->allocate_int(n);
    ASSERT_NE(p, nullptr);
    ASSERT_NE(pi, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(pi) % 64, 0u);
    be->deallocate(p);
    be->deallocate_int(pi);
  }
  be->deallocate(nullptr);
  be->deallocate_int(nullptr);
}

TEST(OpsMemory, HugeAllocationThrowsOutOfMemory) {
  auto be = make_cpu_backend<float>(1);
  // 2^55 bytes is far beyond any address space: the allocator must fail.
  try {
    be->allocate(int64_t{1} << 53);
    FAIL() << "allocation of 2^55 bytes succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_OUT_OF_MEMORY);
  }
  // A negative count is a bug in the caller.
  try {
    be->allocate(-1);
    FAIL() << "negative allocation succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_INTERNAL);
  }
  // A count whose byte size overflows size_t.
  try {
    be->allocate(std::numeric_limits<int64_t>::max() / 2);
    FAIL() << "overflowing allocation succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_OUT_OF_MEMORY);
  }
}

TEST(OpsMemory, UploadDownloadCopyFill) {
  auto be = cpu(2);
  Rng rng(1);
  const int64_t n = 1000003;  // large enough for the parallel fill, odd length
  const Vec host = normal_vector(rng, n);
  double* a = be->allocate(n);
  double* b = be->allocate(n);
  be->upload(a, host.data(), n);
  be->copy(b, a, n);
  Vec back(static_cast<size_t>(n));
  be->download(back.data(), b, n);
  EXPECT_EQ(back, host);

  // Overlapping ranges (one memmove; the disjoint copies above are split over the threads).
  be->copy(b + 1, b, n - 1);
  be->download(back.data(), b, n);
  EXPECT_EQ(back[0], host[0]);
  EXPECT_TRUE(std::equal(host.begin(), host.end() - 1, back.begin() + 1));

  be->fill(a, 2.5, n);
  be->download(back.data(), a, n);
  for (double v : back) ASSERT_EQ(v, 2.5);

  std::vector<int32_t> ids = {3, -1, 7, 42, 0};
  int32_t* pi = be->allocate_int(5);
  be->upload_int(pi, ids.data(), 5);
  EXPECT_EQ(std::vector<int32_t>(pi, pi + 5), ids);  // CPU memory is host memory
  be->deallocate_int(pi);
  be->deallocate(a);
  be->deallocate(b);
}

// ================================ gemm ==========================================

struct GemmCase {
  int64_t M, N, K;
  int threads;
};

class OpsGemm : public ::testing::TestWithParam<GemmCase> {};

TEST_P(OpsGemm, MatchesNaiveForAllTransposesAndBetas) {
  const GemmCase c = GetParam();
  auto be = cpu(c.threads);
  Rng rng(7 + c.M * 131 + c.N * 17 + c.K);
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      // Padded leading dimensions catch stride mistakes.
      const int64_t a_rows = ta ? c.K : c.M, a_cols = ta ? c.M : c.K;
      const int64_t b_rows = tb ? c.N : c.K, b_cols = tb ? c.K : c.N;
      const int64_t lda = a_cols + 3, ldb = b_cols + 1, ldc = c.N + 2;
      const Vec A = normal_vector(rng, a_rows * lda);
      const Vec B = normal_vector(rng, b_rows * ldb);
      const Vec C0 = normal_vector(rng, c.M * ldc);
      for (double beta : {0.0, 1.0, -0.5}) {
        const double alpha = beta == 1.0 ? 1.0 : -1.25;
        Vec expect = C0, got = C0;
        if (beta == 0.0) {
          // beta == 0 must not read C: NaN there may not leak into the result.
          for (int64_t i = 0; i < c.M; ++i) {
            for (int64_t j = 0; j < c.N; ++j) got[i * ldc + j] = std::numeric_limits<double>::quiet_NaN();
          }
        }
        opsref::gemm(ta, tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, expect.data(), ldc);
        be->gemm(ta, tb, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, got.data(), ldc);
        double err = 0.0;
        for (int64_t i = 0; i < c.M; ++i) {
          for (int64_t j = 0; j < c.N; ++j) {
            ASSERT_TRUE(std::isfinite(got[i * ldc + j])) << "ta=" << ta << " tb=" << tb << " beta=" << beta;
            err = std::max(err, std::fabs(got[i * ldc + j] - expect[i * ldc + j]));
          }
          // The padding between rows is never written.
          for (int64_t j = c.N; j < ldc; ++j) ASSERT_EQ(got[i * ldc + j], C0[i * ldc + j]);
        }
        EXPECT_LT(err, 1e-11 * std::max<int64_t>(c.K, 1)) << "ta=" << ta << " tb=" << tb << " beta=" << beta;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, OpsGemm,
                         ::testing::Values(GemmCase{1, 1, 1, 1}, GemmCase{37, 29, 13, 1}, GemmCase{5, 3, 0, 1},
                                           GemmCase{130, 67, 90, 2},   // row split
                                           GemmCase{4, 400, 256, 4},   // few rows: column split
                                           GemmCase{301, 129, 65, 3}, GemmCase{64, 64, 64, 2}));

TEST(OpsGemmFloat, MatchesDoubleReference) {
  auto be = make_cpu_backend<float>(2);
  Rng rng(3);
  const int64_t M = 97, N = 75, K = 300;
  const Vec A = normal_vector(rng, K * M), B = normal_vector(rng, N * K);
  Vec expect(static_cast<size_t>(M * N));
  opsref::gemm(true, true, M, N, K, 0.5, A.data(), M, B.data(), K, 0.0, expect.data(), N);
  std::vector<float> got(static_cast<size_t>(M * N), std::numeric_limits<float>::quiet_NaN());
  const auto Af = to_float(A), Bf = to_float(B);
  be->gemm(true, true, M, N, K, 0.5f, Af.data(), M, Bf.data(), K, 0.0f, got.data(), N);
  // Float accumulation over K = 300 terms of size ~1: error ~ sqrt(K) * 6e-8 * |terms|.
  EXPECT_LT(max_abs_diff(to_double(got), expect), 2e-4);
}

TEST(OpsGemm, ThreadCountDoesNotChangeTheResultBeyondRounding) {
  Rng rng(5);
  const int64_t M = 200, N = 150, K = 120;
  const Vec A = normal_vector(rng, M * K), B = normal_vector(rng, K * N);
  Vec c1(static_cast<size_t>(M * N)), c2(static_cast<size_t>(M * N));
  cpu(1)->gemm(false, false, M, N, K, 1.0, A.data(), K, B.data(), N, 0.0, c1.data(), N);
  cpu(2)->gemm(false, false, M, N, K, 1.0, A.data(), K, B.data(), N, 0.0, c2.data(), N);
  EXPECT_LT(max_abs_diff(c1, c2), 1e-12);
}

// Products large enough to be cut into several parts per thread (row parts
// when C has many rows, column parts when it has many columns), for every
// transpose and with beta != 0, against the reference loop (opsref::gemm).
TEST(OpsGemm, ProductsCutIntoManyPartsMatchAPlainLoop) {
  struct Shape {
    int64_t M, N, K;
  };
  Rng rng(17);
  for (const Shape sh : {Shape{2100, 40, 16}, Shape{20, 2200, 16}, Shape{3000, 70, 24}}) {
    for (const bool ta : {false, true}) {
      for (const bool tb : {false, true}) {
        const Vec A = normal_vector(rng, sh.M * sh.K), B = normal_vector(rng, sh.K * sh.N);
        const Vec C0 = normal_vector(rng, sh.M * sh.N);
        const int64_t lda = ta ? sh.M : sh.K, ldb = tb ? sh.K : sh.N;
        const double alpha = 0.75, beta = -0.5;
        Vec want = C0;
        opsref::gemm(ta, tb, sh.M, sh.N, sh.K, alpha, A.data(), lda, B.data(), ldb, beta, want.data(), sh.N);
        for (const int threads : {1, 2, 3, 4}) {
          Vec got = C0;
          cpu(threads)->gemm(ta, tb, sh.M, sh.N, sh.K, alpha, A.data(), lda, B.data(), ldb, beta, got.data(), sh.N);
          EXPECT_LT(max_abs_diff(got, want), 1e-11)
              << sh.M << "x" << sh.N << "x" << sh.K << " ta " << ta << " tb " << tb << " threads " << threads;
        }
      }
    }
  }
}

// ================================ bias, axpy, scale ===================================

TEST(OpsLinear, AddBiasAndBiasGradAccumulate) {
  for (int threads : {1, 2}) {
    auto be = cpu(threads);
    Rng rng(11);
    const int64_t rows = 5000, cols = 13;
    const Vec y0 = normal_vector(rng, rows * cols), bias = normal_vector(rng, cols);
    Vec y = y0;
    be->add_bias(y.data(), bias.data(), rows, cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(y[r * cols + c], y0[r * cols + c] + bias[c]);
    }
    const Vec start = normal_vector(rng, cols);
    Vec dbias = start;
    be->bias_grad_accumulate(dbias.data(), y0.data(), rows, cols);
    for (int64_t c = 0; c < cols; ++c) {
      double expect = start[c];
      for (int64_t r = 0; r < rows; ++r) expect += y0[r * cols + c];
      EXPECT_NEAR(dbias[c], expect, 1e-10) << "column " << c << ", threads " << threads;
    }
  }
}

TEST(OpsLinear, AxpyAndScale) {
  for (int threads : {1, 2}) {
    auto be = cpu(threads);
    Rng rng(13);
    const int64_t n = 100001;
    const Vec x = normal_vector(rng, n), y0 = normal_vector(rng, n);
    Vec y = y0;
    be->axpy(n, -0.75, x.data(), y.data());
    // Tolerance relative to the operands, not the result: y0 - 0.75 x may nearly
    // cancel, and a fused multiply-add (compiler's choice) rounds once, not twice.
    auto tol = [&](int64_t i) { return 4e-16 * (std::abs(y0[i]) + std::abs(0.75 * x[i])); };
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], y0[i] - 0.75 * x[i], tol(i));
    be->scale(n, 3.0, y.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], 3.0 * (y0[i] - 0.75 * x[i]), 4.0 * tol(i));
  }
}

// ================================ layout ==========================================

TEST(OpsLayout, SplitAndMergeHeads) {
  const int64_t B = 3, T = 5, H = 4, D = 7;
  for (int threads : {1, 2}) {
    auto be = cpu(threads);
    Vec in(static_cast<size_t>(B * T * H * D));
    for (size_t i = 0; i < in.size(); ++i) in[i] = double(i);
    Vec split(in.size()), merged(in.size());
    be->split_heads(in.data(), split.data(), B, T, H, D);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t d = 0; d < D; ++d)
            ASSERT_EQ(split[((b * H + h) * T + t) * D + d], in[((b * T + t) * H + h) * D + d]);
    be->merge_heads(split.data(), merged.data(), B, T, H, D);
    EXPECT_EQ(merged, in);
  }
}

// ================================ sigmoid ==========================================

TEST(OpsSigmoid, ForwardAndBackward) {
  auto be = cpu(2);
  Rng rng(17);
  Vec x = normal_vector(rng, 40000, 4.0);
  // Saturation must give 0/1, never NaN.
  x[0] = 800.0;
  x[1] = -800.0;
  x[2] = 0.0;
  Vec y(x.size()), dx(x.size());
  be->sigmoid_forward(x.data(), y.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double exact = 1.0 / (1.0 + std::exp(-x[i]));
    ASSERT_NEAR(y[i], exact, 1e-15 + 1e-14 * exact) << x[i];
  }
  EXPECT_EQ(y[0], 1.0);
  EXPECT_GE(y[1], 0.0);  // exp underflows: 0 or a denormal
  EXPECT_LT(y[1], 1e-300);
  EXPECT_EQ(y[2], 0.5);
  const Vec dy = normal_vector(rng, int64_t(x.size()));
  be->sigmoid_backward(y.data(), dy.data(), dx.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(dx[i], dy[i] * y[i] * (1.0 - y[i]), 1e-15);

  // y may alias x.
  Vec inplace = x;
  be->sigmoid_forward(inplace.data(), inplace.data(), int64_t(x.size()));
  EXPECT_EQ(inplace, y);

  // Float: accurate relative to the value even deep in the tail (beta gates
  // and their gradients y (1 - y) are used there).
  auto bf = make_cpu_backend<float>(1);
  std::vector<float> xf, yf;
  for (int i = -8000; i <= 8000; ++i) xf.push_back(float(i) * 0.01f);
  yf.resize(xf.size());
  bf->sigmoid_forward(xf.data(), yf.data(), int64_t(xf.size()));
  double max_rel = 0.0;
  for (size_t i = 0; i < xf.size(); ++i) {
    const double exact = 1.0 / (1.0 + std::exp(-double(xf[i])));
    max_rel = std::max(max_rel, std::fabs(yf[i] - exact) / exact);
  }
  EXPECT_LT(max_rel, 5e-7);

  // Gradient check on a few points.
  const Vec xs = normal_vector(rng, 9, 2.0), w = normal_vector(rng, 9);
  auto f = [&](const Vec& in) {
    Vec out(in.size());
    be->sigmoid_forward(in.data(), out.data(), int64_t(in.size()));
    return out;
  };
  Vec ys = f(xs), g(9);
  be->sigmoid_backward(ys.data(), w.data(), g.data(), 9);
  EXPECT_LT(gradient_error(g, numeric_gradient(f, xs, w)), 1e-8);
}

// ================================ feature maps =====================================

FeatureMapSpec make_spec(FeatureMap kind, int64_t d, int64_t nu = 1, int64_t m = 0) {
  FeatureMapSpec s;
  s.kind = kind;
  s.d_in = d;
  s.nu = nu;
  s.m = m;
  return s;
}

// The reference phi of one row.
Vec reference_phi(const FeatureMapSpec& spec, const Vec& R, const Vec& x) {
  switch (spec.kind) {
    case FeatureMap::Elu: return opsref::elu_plus_one(x);
    case FeatureMap::Favor: return opsref::favor(R, spec.m, x);
    case FeatureMap::Dpfp: return opsref::dpfp(x, spec.nu);
  }
  return {};
}

struct FeatureCase {
  FeatureMap kind;
  int64_t d, nu, m, rows;
  int threads;
};

std::string feature_case_name(const ::testing::TestParamInfo<FeatureCase>& info) {
  const auto& c = info.param;
  const char* k = c.kind == FeatureMap::Elu ? "Elu" : c.kind == FeatureMap::Favor ? "Favor" : "Dpfp";
  return std::string(k) + "_d" + std::to_string(c.d) + "_nu" + std::to_string(c.nu) + "_m" + std::to_string(c.m) +
         "_rows" + std::to_string(c.rows) + "_t" + std::to_string(c.threads);
}

class OpsFeatureMap : public ::testing::TestWithParam<FeatureCase> {
 protected:
  void SetUp() override {
    const auto c = GetParam();
    spec = make_spec(c.kind, c.d, c.nu, c.m);
    Rng rng(100 + c.d * 7 + c.nu * 3 + c.m);
    if (c.kind == FeatureMap::Favor) {
      R.resize(static_cast<size_t>(c.m * c.d));
      draw_favor_projection<double>(rng, c.m, c.d, R.data());
    }
    // Small inputs keep FAVOR+'s exponentials moderate.
    const double scale = c.kind == FeatureMap::Favor ? 0.3 : 1.0;
    x = away_from_zero(normal_vector(rng, c.rows * c.d, scale), 0.05 * scale);
  }
  const double* proj() const { return R.empty() ? nullptr : R.data(); }
  FeatureMapSpec spec;
  Vec R, x;
};

TEST_P(OpsFeatureMap, ForwardMatchesReference) {
  const auto c = GetParam();
  auto be = cpu(c.threads);
  const int64_t d_out = spec.d_out();
  // One sentinel row past the end checks that exactly rows * d_out values are written.
  Vec phi(static_cast<size_t>((c.rows + 1) * d_out), -7.0);
  be->feature_map_forward(spec, proj(), x.data(), phi.data(), c.rows);
  double err = 0.0, scale = 0.0;
  for (int64_t r = 0; r < c.rows; ++r) {
    const Vec xr(x.begin() + r * c.d, x.begin() + (r + 1) * c.d);
    const Vec ref = reference_phi(spec, R, xr);
    ASSERT_EQ(int64_t(ref.size()), d_out);
    for (int64_t i = 0; i < d_out; ++i) {
      err = std::max(err, std::fabs(phi[r * d_out + i] - ref[i]));
      scale = std::max(scale, std::fabs(ref[i]));
    }
  }
  EXPECT_LT(err, 1e-13 * std::max(1.0, scale));
  for (int64_t i = c.rows * d_out; i < (c.rows + 1) * d_out; ++i) ASSERT_EQ(phi[i], -7.0);
}

TEST_P(OpsFeatureMap, BackwardMatchesFiniteDifferences) {
  const auto c = GetParam();
  auto be = cpu(c.threads);
  // Finite differences cost 2 forwards per input: check a few rows only.
  const int64_t rows = std::min<int64_t>(c.rows, 3);
  const int64_t d_out = spec.d_out();
  const Vec xs(x.begin(), x.begin() + rows * c.d);
  Rng rng(9);
  const Vec w = normal_vector(rng, rows * d_out);
  auto f = [&](const Vec& in) {
    Vec out(static_cast<size_t>(rows * d_out));
    be->feature_map_forward(spec, proj(), in.data(), out.data(), rows);
    return out;
  };
  const Vec phi = f(xs);
  Vec dx(xs.size(), std::numeric_limits<double>::quiet_NaN());
  be->feature_map_backward(spec, proj(), xs.data(), phi.data(), w.data(), dx.data(), rows);
  EXPECT_LT(gradient_error(dx, numeric_gradient(f, xs, w)), 1e-7);
}

TEST_P(OpsFeatureMap, MultiThreadedMatchesSingleThreaded) {
  const auto c = GetParam();
  const int64_t d_out = spec.d_out();
  Rng rng(21);
  const Vec dphi = normal_vector(rng, c.rows * d_out);
  Vec phi1(static_cast<size_t>(c.rows * d_out)), phi2 = phi1;
  Vec dx1(x.size()), dx2(x.size());
  auto be1 = cpu(1), be2 = cpu(2);
  be1->feature_map_forward(spec, proj(), x.data(), phi1.data(), c.rows);
  be2->feature_map_forward(spec, proj(), x.data(), phi2.data(), c.rows);
  be1->feature_map_backward(spec, proj(), x.data(), phi1.data(), dphi.data(), dx1.data(), c.rows);
  be2->feature_map_backward(spec, proj(), x.data(), phi2.data(), dphi.data(), dx2.data(), c.rows);
  EXPECT_LT(max_abs_diff(phi1, phi2), 1e-13 * std::max(1.0, max_abs(phi1)));
  EXPECT_LT(max_abs_diff(dx1, dx2), 1e-12 * std::max(1.0, max_abs(dx1)));
}

TEST_P(OpsFeatureMap, FloatMatchesDouble) {
  const auto c = GetParam();
  const int64_t d_out = spec.d_out();
  Rng rng(23);
  const Vec dphi = normal_vector(rng, c.rows * d_out);
  Vec phi(static_cast<size_t>(c.rows * d_out)), dx(x.size());
  auto be = cpu(c.threads);
  be->feature_map_forward(spec, proj(), x.data(), phi.data(), c.rows);
  be->feature_map_backward(spec, proj(), x.data(), phi.data(), dphi.data(), dx.data(), c.rows);

  auto bf = make_cpu_backend<float>(c.threads);
  const auto xf = to_float(x), Rf = to_float(R), dphif = to_float(dphi);
  std::vector<float> phif(phi.size()), dxf(dx.size());
  bf->feature_map_forward(spec, Rf.empty() ? nullptr : Rf.data(), xf.data(), phif.data(), c.rows);
  bf->feature_map_backward(spec, Rf.empty() ? nullptr : Rf.data(), xf.data(), phif.data(), dphif.data(),
                           dxf.data(), c.rows);
  // Single precision: relative 1e-5 of the largest magnitude (inputs were rounded too).
  EXPECT_LT(max_abs_diff(to_double(phif), phi), 2e-5 * std::max(1.0, max_abs(phi)));
  EXPECT_LT(max_abs_diff(to_double(dxf), dx), 2e-5 * std::max(1.0, max_abs(dx)) * std::sqrt(double(d_out)));
}

INSTANTIATE_TEST_SUITE_P(
    Ops, OpsFeatureMap,
    ::testing::Values(FeatureCase{FeatureMap::Elu, 7, 1, 0, 5, 1}, FeatureCase{FeatureMap::Elu, 64, 1, 0, 700, 2},
                      FeatureCase{FeatureMap::Favor, 8, 1, 12, 5, 1},
                      FeatureCase{FeatureMap::Favor, 5, 1, 3, 4, 1},       // m < d: one truncated block
                      FeatureCase{FeatureMap::Favor, 16, 1, 256, 150, 2},  // d_dot = 512
                      FeatureCase{FeatureMap::Dpfp, 5, 1, 0, 4, 1}, FeatureCase{FeatureMap::Dpfp, 5, 2, 0, 4, 1},
                      FeatureCase{FeatureMap::Dpfp, 5, 3, 0, 4, 1},
                      FeatureCase{FeatureMap::Dpfp, 1, 3, 0, 3, 1},  // roll by 2 = 2d wraps to the identity
                      FeatureCase{FeatureMap::Dpfp, 64, 4, 0, 300, 2}),  // d_dot = 512
    feature_case_name);

TEST(OpsFeatureMapSpec, OutputWidths) {
  EXPECT_EQ(make_spec(FeatureMap::Elu, 16).d_out(), 16);
  EXPECT_EQ(make_spec(FeatureMap::Favor, 16, 1, 64).d_out(), 128);
  for (int64_t nu : {1, 2, 3}) EXPECT_EQ(make_spec(FeatureMap::Dpfp, 16, nu).d_out(), 2 * 16 * nu);
}

TEST(OpsFeatureMapDpfp, NonNegativeWidthAndZeroAtZero) {
  auto be = cpu();
  Rng rng(31);
  const int64_t d = 9, rows = 50;
  const Vec x = normal_vector(rng, rows * d);
  for (int64_t nu : {1, 2, 3}) {
    const auto spec = make_spec(FeatureMap::Dpfp, d, nu);
    ASSERT_EQ(spec.d_out(), 2 * d * nu);
    Vec phi(static_cast<size_t>(rows * spec.d_out() + 1), -1.0);
    be->feature_map_forward(spec, nullptr, x.data(), phi.data(), rows);
    for (int64_t i = 0; i < rows * spec.d_out(); ++i) ASSERT_GE(phi[i], 0.0);
    EXPECT_EQ(phi.back(), -1.0);  // nothing past 2 d nu per row
    // Some entries must be positive: z_i z_{i-1} > 0 when neighbours share a sign.
    EXPECT_GT(max_abs(phi), 0.0);

    const Vec zeros(static_cast<size_t>(d), 0.0);
    Vec phi0(static_cast<size_t>(spec.d_out()), 1.0), dx0(static_cast<size_t>(d), 1.0);
    be->feature_map_forward(spec, nullptr, zeros.data(), phi0.data(), 1);
    for (double v : phi0) EXPECT_EQ(v, 0.0);
    const Vec dphi(phi0.size(), 1.0);
    be->feature_map_backward(spec, nullptr, zeros.data(), phi0.data(), dphi.data(), dx0.data(), 1);
    for (double v : dx0) EXPECT_EQ(v, 0.0);
  }
}

// ================================ FAVOR+ projection =====================================

double dot_rows(const Vec& R, int64_t d, int64_t a, int64_t b) {
  double s = 0.0;
  for (int64_t k = 0; k < d; ++k) s += R[a * d + k] * R[b * d + k];
  return s;
}

TEST(OpsFavorProjection, RowsOrthogonalWithinBlocksLastBlockTruncated) {
  Rng rng(41);
  const int64_t d = 16, m = 40;  // blocks of 16, 16 and 8 rows
  Vec R(static_cast<size_t>(m * d));
  draw_favor_projection<double>(rng, m, d, R.data());
  double max_in_block = 0.0, max_across = 0.0;
  for (int64_t a = 0; a < m; ++a) {
    for (int64_t b = a + 1; b < m; ++b) {
      const double cosine = dot_rows(R, d, a, b) / std::sqrt(dot_rows(R, d, a, a) * dot_rows(R, d, b, b));
      if (a / d == b / d) {
        max_in_block = std::max(max_in_block, std::fabs(cosine));
      } else {
        max_across = std::max(max_across, std::fabs(cosine));
      }
    }
  }
  EXPECT_LT(max_in_block, 1e-12);
  // Independent blocks are not orthogonal to each other.
  EXPECT_GT(max_across, 0.1);
}

TEST(OpsFavorProjection, DeterministicAndFloatMatchesDouble) {
  Rng r1(5), r2(5), r3(5);
  const int64_t m = 20, d = 6;
  Vec a(static_cast<size_t>(m * d)), b(a.size());
  std::vector<float> f(a.size());
  draw_favor_projection<double>(r1, m, d, a.data());
  draw_favor_projection<double>(r2, m, d, b.data());
  draw_favor_projection<float>(r3, m, d, f.data());
  EXPECT_EQ(a, b);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(f[i], a[i], 1e-6 * std::max(1.0, std::fabs(a[i])));
  // Generators left in the same state.
  EXPECT_EQ(r1.next_u64(), r3.next_u64());
}

TEST(OpsFavorProjection, RowsAreMarginallyStandardNormal) {
  // Each row is (Haar direction) * chi(d) length, i.e. N(0, I_d) marginally.
  Rng rng(43);
  const int64_t d = 4, m = 4 * 4000;
  Vec R(static_cast<size_t>(m * d));
  draw_favor_projection<double>(rng, m, d, R.data());
  // E|w|^2 = d with Var = 2d: the mean over m rows has sd sqrt(2d/m) = 0.022.
  double mean_sq = 0.0;
  for (int64_t r = 0; r < m; ++r) mean_sq += dot_rows(R, d, r, r);
  mean_sq /= double(m);
  EXPECT_NEAR(mean_sq, double(d), 0.15);
  // Without the sign correction of the QR factor the first row of every block
  // has a first coordinate of fixed sign (mean about -0.5 of its length here);
  // Haar directions have mean 0 (sd of the mean over 4000 blocks ~ 0.008).
  double mean_first = 0.0;
  const int64_t blocks = m / d;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t row = b * d;
    mean_first += R[row * d] / std::sqrt(dot_rows(R, d, row, row));
  }
  mean_first /= double(blocks);
  EXPECT_LT(std::fabs(mean_first), 0.05);
  // Every coordinate of every row averages to ~0 too.
  for (int64_t k = 0; k < d; ++k) {
    double mean = 0.0;
    for (int64_t r = 0; r < m; ++r) mean += R[r * d + k];
    EXPECT_LT(std::fabs(mean / double(m)), 0.05) << "coordinate " << k;
  }
}

TEST(OpsFavorProjection, KernelEstimateIsUnbiased) {
  // With rows w ~ N(0, I), E[phi(q).phi(k)] = exp(q.k) exactly. Each antithetic
  // pair contributes cosh(w.u) exp(-(|q|^2 + |k|^2)/2), u = q + k, whose relative
  // variance is 2 sinh^2(|u|^2 / 2); the mean over m independent pairs has
  // relative sd sqrt(2 sinh^2(|u|^2/2) / m). Orthogonal rows lower that
  // variance further (Choromanski et al. 2021, Thm. 2), so 5 such sd is a safe bound.
  const int64_t d = 16, m = 8192;
  Rng rng(2024);
  Vec R(static_cast<size_t>(m * d));
  draw_favor_projection<double>(rng, m, d, R.data());
  const auto spec = make_spec(FeatureMap::Favor, d, 1, m);
  auto be = cpu(2);
  for (int pair = 0; pair < 6; ++pair) {
    Vec q = normal_vector(rng, d), k = normal_vector(rng, d);
    const double nq = 0.3 + 0.1 * pair, nk = 0.5;
    const double q_norm = std::sqrt(dot_rows(q, d, 0, 0));
    const double k_norm = std::sqrt(dot_rows(k, d, 0, 0));
    for (auto& v : q) v *= nq / q_norm;
    for (auto& v : k) v *= nk / k_norm;
    Vec x = q;
    x.insert(x.end(), k.begin(), k.end());
    Vec phi(static_cast<size_t>(2 * 2 * m));
    be->feature_map_forward(spec, R.data(), x.data(), phi.data(), 2);
    double estimate = 0.0, qk = 0.0, uu = 0.0;
    for (int64_t i = 0; i < 2 * m; ++i) estimate += phi[i] * phi[2 * m + i];
    for (int64_t i = 0; i < d; ++i) {
      qk += q[i] * k[i];
      uu += (q[i] + k[i]) * (q[i] + k[i]);
    }
    const double exact = std::exp(qk);
    const double rel_sd = std::sqrt(2.0 * std::pow(std::sinh(uu / 2.0), 2) / double(m));
    EXPECT_LT(std::fabs(estimate / exact - 1.0), 5.0 * rel_sd)
        << "pair " << pair << ": estimate " << estimate << " vs exp(q.k) " << exact;
  }
}

// ================================ sum normalisation =====================================

TEST(OpsSumNormalize, ForwardBackwardAliasingAndZeros) {
  for (int threads : {1, 2}) {
    auto be = cpu(threads);
    Rng rng(51);
    const int64_t rows = 300, d = 24;
    const double eps = 1e-6;
    const Vec phi = uniform_vector(rng, rows * d, 0.01, 2.0);
    Vec out(phi.size());
    be->sum_normalize_forward(phi.data(), out.data(), rows, d, eps);
    for (int64_t r = 0; r < rows; ++r) {
      const Vec ref = opsref::sum_normalize(Vec(phi.begin() + r * d, phi.begin() + (r + 1) * d), eps);
      for (int64_t i = 0; i < d; ++i) ASSERT_NEAR(out[r * d + i], ref[i], 1e-15);
    }
    Vec in_place = phi;
    be->sum_normalize_forward(in_place.data(), in_place.data(), rows, d, eps);
    // Eigen's reductions depend on the data's alignment: equal up to rounding.
    EXPECT_LT(max_abs_diff(in_place, out), 1e-16);

    const Vec dout = normal_vector(rng, rows * d);
    Vec dphi(phi.size());
    be->sum_normalize_backward(phi.data(), dout.data(), dphi.data(), rows, d, eps);
    Vec alias = dout;
    be->sum_normalize_backward(phi.data(), alias.data(), alias.data(), rows, d, eps);
    EXPECT_LT(max_abs_diff(alias, dphi), 1e-14 * max_abs(dphi));

    const int64_t few = 4;
    auto f = [&](const Vec& in) {
      Vec o(in.size());
      be->sum_normalize_forward(in.data(), o.data(), few, d, eps);
      return o;
    };
    const Vec p(phi.begin(), phi.begin() + few * d), w(dout.begin(), dout.begin() + few * d);
    EXPECT_LT(gradient_error(Vec(dphi.begin(), dphi.begin() + few * d), numeric_gradient(f, p, w)), 1e-8);

    // An all-zero phi (DPFP at x = 0) gives finite zeros, forward and backward.
    const Vec zeros(static_cast<size_t>(2 * d), 0.0);
    Vec z_out(zeros.size(), 1.0), z_grad(zeros.size(), 1.0);
    be->sum_normalize_forward(zeros.data(), z_out.data(), 2, d, eps);
    for (double v : z_out) EXPECT_EQ(v, 0.0);
    const Vec g(zeros.size(), 1e-3);
    be->sum_normalize_backward(zeros.data(), g.data(), z_grad.data(), 2, d, eps);
    for (double v : z_grad) {
      EXPECT_TRUE(std::isfinite(v));
      EXPECT_NEAR(v, 1e-3 / eps, 1e-6);  // d out / d phi = 1 / eps there
    }
  }
}

// ================================ attention normalisation ================================

struct AttnNormData {
  FastWeightShape shape;
  Vec q, k, z_in, o;
};

AttnNormData make_attn_norm_data(Rng& rng, int64_t streams, int64_t steps, int64_t dk, int64_t dv) {
  AttnNormData a;
  a.shape = FastWeightShape{streams, steps, dk, dv};
  // Positive keys and queries (as after a feature map) keep every denominator > 0.
  a.q = uniform_vector(rng, streams * steps * dk, 0.1, 1.0);
  a.k = uniform_vector(rng, streams * steps * dk, 0.1, 1.0);
  a.z_in = uniform_vector(rng, streams * dk, 0.0, 2.0);
  a.o = normal_vector(rng, streams * steps * dv);
  return a;
}

TEST(OpsAttnNorm, ForwardMatchesReference) {
  Rng rng(61);
  const auto a = make_attn_norm_data(rng, 3, 17, 6, 5);
  const double eps = 1e-6;
  for (int threads : {1, 2}) {
    for (bool with_z : {false, true}) {
      auto be = cpu(threads);
      Vec ry, rden, rz;
      opsref::attn_norm(3, 17, 6, 5, a.q, a.k, with_z ? &a.z_in : nullptr, a.o, eps, ry, rden, rz);
      Vec y(ry.size()), den(rden.size()), z(rz.size());
      be->attn_norm_forward(a.shape, a.q.data(), a.k.data(), with_z ? a.z_in.data() : nullptr, a.o.data(), eps,
                            y.data(), den.data(), z.data());
      EXPECT_LT(max_abs_diff(y, ry), 1e-13);
      EXPECT_LT(max_abs_diff(den, rden), 1e-12);
      EXPECT_LT(max_abs_diff(z, rz), 1e-12);
      // y may alias o, and z_out may be omitted.
      Vec yo = a.o;
      be->attn_norm_forward(a.shape, a.q.data(), a.k.data(), with_z ? a.z_in.data() : nullptr, yo.data(), eps,
                            yo.data(), den.data(), nullptr);
      EXPECT_EQ(yo, y);
    }
  }
}

TEST(OpsAttnNorm, BackwardMatchesFiniteDifferences) {
  Rng rng(63);
  const int64_t S = 2, T = 9, dk = 4, dv = 3;
  const auto a = make_attn_norm_data(rng, S, T, dk, dv);
  const double eps = 1e-3;
  auto be = cpu(2);
  const Vec w = normal_vector(rng, S * T * dv);
  Vec y(static_cast<size_t>(S * T * dv)), den(static_cast<size_t>(S * T));
  be->attn_norm_forward(a.shape, a.q.data(), a.k.data(), a.z_in.data(), a.o.data(), eps, y.data(), den.data(),
                        nullptr);
  Vec d_o(a.o.size()), dq(a.q.size()), dk_(a.k.size()), dz(a.z_in.size());
  be->attn_norm_backward(a.shape, a.q.data(), a.k.data(), a.z_in.data(), y.data(), den.data(), w.data(),
                         d_o.data(), dq.data(), dk_.data(), dz.data());

  // y as a function of one input at a time.
  auto y_of = [&](const Vec& q, const Vec& k, const Vec& z, const Vec& o) {
    Vec out(y.size()), dn(den.size());
    be->attn_norm_forward(a.shape, q.data(), k.data(), z.data(), o.data(), eps, out.data(), dn.data(), nullptr);
    return out;
  };
  EXPECT_LT(gradient_error(dq, numeric_gradient([&](const Vec& v) { return y_of(v, a.k, a.z_in, a.o); }, a.q, w)),
            1e-7);
  EXPECT_LT(gradient_error(dk_, numeric_gradient([&](const Vec& v) { return y_of(a.q, v, a.z_in, a.o); }, a.k, w)),
            1e-7);
  EXPECT_LT(gradient_error(dz, numeric_gradient([&](const Vec& v) { return y_of(a.q, a.k, v, a.o); }, a.z_in, w)),
            1e-7);
  EXPECT_LT(gradient_error(d_o, numeric_gradient([&](const Vec& v) { return y_of(a.q, a.k, a.z_in, v); }, a.o, w)),
            1e-7);

  // Without z_in: the gradient of a zero initial state is still reported, and
  // d_z_in may be omitted.
  Vec y0(y.size()), den0(den.size()), dz0(dz.size()), dq0(dq.size()), dk0(dk_.size()), do0(d_o.size());
  be->attn_norm_forward(a.shape, a.q.data(), a.k.data(), nullptr, a.o.data(), eps, y0.data(), den0.data(), nullptr);
  be->attn_norm_backward(a.shape, a.q.data(), a.k.data(), nullptr, y0.data(), den0.data(), w.data(), do0.data(),
                         dq0.data(), dk0.data(), dz0.data());
  const Vec zero_z(a.z_in.size(), 0.0);
  EXPECT_LT(gradient_error(dz0, numeric_gradient([&](const Vec& v) { return y_of(a.q, a.k, v, a.o); }, zero_z, w)),
            1e-7);
  EXPECT_LT(gradient_error(dq0, numeric_gradient([&](const Vec& v) { return y_of(v, a.k, zero_z, a.o); }, a.q, w)),
            1e-7);
  Vec dq1(dq.size()), dk1(dk_.size()), do1(d_o.size());
  be->attn_norm_backward(a.shape, a.q.data(), a.k.data(), nullptr, y0.data(), den0.data(), w.data(), do1.data(),
                         dq1.data(), dk1.data(), nullptr);
  EXPECT_EQ(dq1, dq0);
  EXPECT_EQ(dk1, dk0);
  EXPECT_EQ(do1, do0);
}

TEST(OpsAttnNorm, AllZeroInputsGiveFiniteZeros) {
  auto be = cpu();
  const FastWeightShape shape{2, 5, 3, 4};
  const double eps = 1e-6;
  const Vec q(30, 0.0), k(30, 0.0), o(40, 0.0);
  Vec y(40, 1.0), den(10, 1.0), z(6, 1.0);
  be->attn_norm_forward(shape, q.data(), k.data(), nullptr, o.data(), eps, y.data(), den.data(), z.data());
  for (double v : y) EXPECT_EQ(v, 0.0);
  for (double v : den) EXPECT_EQ(v, eps);
  for (double v : z) EXPECT_EQ(v, 0.0);
  const Vec dy(40, 1.0);
  Vec d_o(40), dq(30, 1.0), dk(30, 1.0), dz(6, 1.0);
  be->attn_norm_backward(shape, q.data(), k.data(), nullptr, y.data(), den.data(), dy.data(), d_o.data(),
                         dq.data(), dk.data(), dz.data());
  for (double v : d_o) EXPECT_DOUBLE_EQ(v, 1.0 / eps);  // large but finite
  for (double v : dq) EXPECT_EQ(v, 0.0);
  for (double v : dk) EXPECT_EQ(v, 0.0);
  for (double v : dz) EXPECT_EQ(v, 0.0);
}

// ================================ softmax attention =====================================

struct SoftmaxData {
  int64_t S, T, d;
  Vec q, k, v;
};

SoftmaxData make_softmax_data(Rng& rng, int64_t S, int64_t T, int64_t d) {
  return SoftmaxData{S, T, d, normal_vector(rng, S * T * d), normal_vector(rng, S * T * d),
                     normal_vector(rng, S * T * d)};
}

TEST(OpsSoftmaxAttention, ForwardMatchesReference) {
  Rng rng(71);
  // 150 steps: three query blocks, the last one partial.
  const auto a = make_softmax_data(rng, 3, 150, 8);
  const double scale = 1.0 / std::sqrt(8.0);
  Vec rout, rlse;
  opsref::softmax_attention(a.S, a.T, a.d, a.q, a.k, a.v, scale, rout, rlse);
  for (int threads : {1, 2}) {
    auto be = cpu(threads);
    Vec out(rout.size()), lse(rlse.size());
    be->softmax_attention_forward(a.S, a.T, a.d, a.q.data(), a.k.data(), a.v.data(), scale, out.data(), lse.data());
    EXPECT_LT(max_abs_diff(out, rout), 1e-13);
    EXPECT_LT(max_abs_diff(lse, rlse), 1e-13);
  }
}

TEST(OpsSoftmaxAttention, LargeScoresStayFinite) {
  Rng rng(73);
  const auto a = make_softmax_data(rng, 2, 70, 4);
  const double scale = 200.0;  // scores in the hundreds: exp would overflow without the max shift
  Vec rout, rlse, out(a.q.size()), lse(static_cast<size_t>(a.S * a.T));
  opsref::softmax_attention(a.S, a.T, a.d, a.q, a.k, a.v, scale, rout, rlse);
  auto bf = make_cpu_backend<float>(1);
  const auto qf = to_float(a.q), kf = to_float(a.k), vf = to_float(a.v);
  std::vector<float> outf(out.size()), lsef(lse.size());
  bf->softmax_attention_forward(a.S, a.T, a.d, qf.data(), kf.data(), vf.data(), float(scale), outf.data(),
                                lsef.data());
  for (float x : outf) ASSERT_TRUE(std::isfinite(x));
  for (float x : lsef) ASSERT_TRUE(std::isfinite(x));
  cpu()->softmax_attention_forward(a.S, a.T, a.d, a.q.data(), a.k.data(), a.v.data(), scale, out.data(),
                                   lse.data());
  EXPECT_LT(max_abs_diff(out, rout), 1e-10);
}

TEST(OpsSoftmaxAttention, BackwardMatchesFiniteDifferences) {
  Rng rng(75);
  // 70 steps: two query blocks, so cross-block dK/dV accumulation is covered.
  const auto a = make_softmax_data(rng, 2, 70, 3);
  const double scale = 0.7;
  const Vec w = normal_vector(rng, a.S * a.T * a.d);
  // The finite differences run single-threaded (thousands of small calls); the
  // backward under test runs with 1 and 2 threads.
  auto reference_be = cpu(1);
  auto out_of = [&](const Vec& q, const Vec& k, const Vec& v) {
    Vec out(q.size()), lse(static_cast<size_t>(a.S * a.T));
    reference_be->softmax_attention_forward(a.S, a.T, a.d, q.data(), k.data(), v.data(), scale, out.data(),
                                            lse.data());
    return out;
  };
  const Vec num_dq = numeric_gradient([&](const Vec& x) { return out_of(x, a.k, a.v); }, a.q, w);
  const Vec num_dk = numeric_gradient([&](const Vec& x) { return out_of(a.q, x, a.v); }, a.k, w);
  const Vec num_dv = numeric_gradient([&](const Vec& x) { return out_of(a.q, a.k, x); }, a.v, w);
  for (int threads : {1, 2}) {
    auto be = cpu(threads);
    Vec out(a.q.size()), lse(static_cast<size_t>(a.S * a.T));
    be->softmax_attention_forward(a.S, a.T, a.d, a.q.data(), a.k.data(), a.v.data(), scale, out.data(), lse.data());
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Vec dq(a.q.size(), nan), dk(a.k.size(), nan), dv(a.v.size(), nan);
    be->softmax_attention_backward(a.S, a.T, a.d, a.q.data(), a.k.data(), a.v.data(), out.data(), lse.data(),
                                   w.data(), scale, dq.data(), dk.data(), dv.data());
    EXPECT_LT(gradient_error(dq, num_dq), 1e-7) << threads << " threads";
    EXPECT_LT(gradient_error(dk, num_dk), 1e-7) << threads << " threads";
    EXPECT_LT(gradient_error(dv, num_dv), 1e-7) << threads << " threads";
  }
}

TEST(OpsSoftmaxAttention, DecodeEqualsForwardRows) {
  Rng rng(77);
  const int64_t S = 3, T = 40, d = 16, capacity = 64;
  const auto a = make_softmax_data(rng, S, T, d);
  const double scale = 0.25;
  auto be = cpu(2);
  Vec out(a.q.size()), lse(static_cast<size_t>(S * T));
  be->softmax_attention_forward(S, T, d, a.q.data(), a.k.data(), a.v.data(), scale, out.data(), lse.data());
  // Caches hold the keys/values of each stream in the first T of `capacity` slots;
  // the unused tail is NaN, which decoding must never touch.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Vec kc(static_cast<size_t>(S * capacity * d), nan), vc(kc.size(), nan);
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t t = 0; t < T * d; ++t) {
      kc[s * capacity * d + t] = a.k[s * T * d + t];
      vc[s * capacity * d + t] = a.v[s * T * d + t];
    }
  }
  for (int64_t t : {int64_t{0}, int64_t{5}, T - 1}) {
    Vec qt(static_cast<size_t>(S * d)), dec(static_cast<size_t>(S * d));
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t c = 0; c < d; ++c) qt[s * d + c] = a.q[(s * T + t) * d + c];
    }
    be->softmax_attention_decode(S, t + 1, capacity, d, qt.data(), kc.data(), vc.data(), scale, dec.data());
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t c = 0; c < d; ++c) {
        ASSERT_NEAR(dec[s * d + c], out[(s * T + t) * d + c], 1e-13) << "step " << t << " stream " << s;
      }
    }
  }
}

}  // namespace
}  // namespace fwp
