// The backend ops the modules need (activation, layer_norm, cross_entropy
// families) on the CPU backend: forwards against plain double loops, every
// backward against central differences in double, float against double,
// aliasing and accumulate contracts, thread-count independence.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <functional>
#include <string>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/counter_hash.h"
#include "core/error.h"
#include "core/rng.h"
#include "ops_reference.h"

namespace fwp {
namespace {

using opsref::gradient_error;
using opsref::max_abs;
using opsref::max_abs_diff;
using opsref::normal_vector;
using opsref::numeric_gradient;
using opsref::Vec;

std::shared_ptr<Backend<double>> cpu(int threads = 1) { return make_cpu_backend<double>(threads); }
std::vector<float> to_float(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }
Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// ================================ activations ==========================================

double gelu_ref(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

// Inputs away from ReLU's kink, so the central differences stay on one side.
Vec activation_inputs(Rng& rng, int64_t n) {
  Vec x = normal_vector(rng, n, 2.0);
  for (auto& v : x)
    if (std::fabs(v) < 0.05) v += v < 0 ? -0.1 : 0.1;
  return x;
}

TEST(ModuleOpsActivation, ForwardMatchesFormulas) {
  auto be = cpu();
  Rng rng(1);
  const int64_t n = 257;
  const Vec x = activation_inputs(rng, n);
  Vec relu(n), gelu(n);
  be->relu_forward(x.data(), relu.data(), n);
  be->gelu_forward(x.data(), gelu.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(relu[i], x[i] > 0 ? x[i] : 0.0);
    EXPECT_NEAR(gelu[i], gelu_ref(x[i]), 1e-15 * std::max(1.0, std::fabs(x[i])));
  }
  // Known values: GELU(1) = Phi(1) = 0.8413447460685429..., GELU(-1) = -(1 - Phi(1)).
  const double one[2] = {1.0, -1.0};
  double out[2];
  be->gelu_forward(one, out, 2);
  EXPECT_NEAR(out[0], 0.8413447460685429, 1e-15);
  EXPECT_NEAR(out[1], -0.15865525393145707, 1e-15);
}

TEST(ModuleOpsActivation, BackwardMatchesCentralDifferences) {
  auto be = cpu();
  Rng rng(2);
  const int64_t n = 64;
  const Vec x = activation_inputs(rng, n);
  const Vec w = normal_vector(rng, n);
  for (bool gelu : {false, true}) {
    auto f = [&](const Vec& in) {
      Vec y(in.size());
      if (gelu) {
        be->gelu_forward(in.data(), y.data(), n);
      } else {
        be->relu_forward(in.data(), y.data(), n);
      }
      return y;
    };
    Vec dx(n);
    if (gelu) {
      be->gelu_backward(x.data(), w.data(), dx.data(), n);
    } else {
      be->relu_backward(x.data(), w.data(), dx.data(), n);
    }
    EXPECT_LT(gradient_error(dx, numeric_gradient(f, x, w)), 1e-8) << (gelu ? "gelu" : "relu");
  }
}

TEST(ModuleOpsActivation, InPlaceAndReluDerivativeAtZero) {
  auto be = cpu();
  Rng rng(3);
  const int64_t n = 100;
  const Vec x = activation_inputs(rng, n);
  const Vec dy = normal_vector(rng, n);
  for (bool gelu : {false, true}) {
    Vec y(n), y_in_place = x, dx(n), dx_in_place = dy;
    if (gelu) {
      be->gelu_forward(x.data(), y.data(), n);
      be->gelu_forward(y_in_place.data(), y_in_place.data(), n);
      be->gelu_backward(x.data(), dy.data(), dx.data(), n);
      be->gelu_backward(x.data(), dx_in_place.data(), dx_in_place.data(), n);
    } else {
      be->relu_forward(x.data(), y.data(), n);
      be->relu_forward(y_in_place.data(), y_in_place.data(), n);
      be->relu_backward(x.data(), dy.data(), dx.data(), n);
      be->relu_backward(x.data(), dx_in_place.data(), dx_in_place.data(), n);
    }
    EXPECT_EQ(y, y_in_place);
    EXPECT_EQ(dx, dx_in_place);
  }
  const double zero = 0.0, one = 1.0;
  double d = 5.0;
  be->relu_backward(&zero, &one, &d, 1);
  EXPECT_EQ(d, 0.0);
}

TEST(ModuleOpsActivation, FloatMatchesDoubleOnLargeArrays) {
  // Large enough for several threads' blocks.
  auto bd = cpu(2);
  auto bf = make_cpu_backend<float>(2);
  Rng rng(4);
  const int64_t n = 70001;
  const Vec x = normal_vector(rng, n, 3.0), dy = normal_vector(rng, n);
  const std::vector<float> xf = to_float(x), dyf = to_float(dy);
  Vec yd(n), dxd(n);
  std::vector<float> yf(n), dxf(n);
  bd->gelu_forward(x.data(), yd.data(), n);
  bf->gelu_forward(xf.data(), yf.data(), n);
  bd->gelu_backward(x.data(), dy.data(), dxd.data(), n);
  bf->gelu_backward(xf.data(), dyf.data(), dxf.data(), n);
  EXPECT_LT(max_abs_diff(to_double(yf), yd), 1e-5 * max_abs(yd));
  EXPECT_LT(max_abs_diff(to_double(dxf), dxd), 1e-5 * max_abs(dxd));
}

// ================================ layer norm ==========================================

struct LayerNormRef {
  Vec y, mean, rstd;
};

LayerNormRef layer_norm_ref(const Vec& x, const Vec& g, const Vec& b, double eps, int64_t rows, int64_t d) {
  LayerNormRef r{Vec(x.size()), Vec(rows), Vec(rows)};
  for (int64_t i = 0; i < rows; ++i) {
    double s = 0.0;
    for (int64_t c = 0; c < d; ++c) s += x[i * d + c];
    const double mu = s / d;
    double v = 0.0;
    for (int64_t c = 0; c < d; ++c) v += (x[i * d + c] - mu) * (x[i * d + c] - mu);
    const double inv = 1.0 / std::sqrt(v / d + eps);
    r.mean[i] = mu;
    r.rstd[i] = inv;
    for (int64_t c = 0; c < d; ++c) r.y[i * d + c] = (x[i * d + c] - mu) * inv * g[c] + b[c];
  }
  return r;
}

TEST(ModuleOpsLayerNorm, ForwardMatchesPlainLoop) {
  auto be = cpu(2);
  Rng rng(5);
  const int64_t rows = 13, d = 37;
  // An offset mean: the two-pass variance must not lose it.
  Vec x = normal_vector(rng, rows * d);
  for (auto& v : x) v += 100.0;
  const Vec g = normal_vector(rng, d), b = normal_vector(rng, d);
  Vec y(rows * d), mean(rows), rstd(rows);
  be->layer_norm_forward(x.data(), g.data(), b.data(), 1e-5, y.data(), mean.data(), rstd.data(), rows, d);
  const LayerNormRef ref = layer_norm_ref(x, g, b, 1e-5, rows, d);
  EXPECT_LT(max_abs_diff(y, ref.y), 1e-12);
  EXPECT_LT(max_abs_diff(mean, ref.mean), 1e-12);
  EXPECT_LT(max_abs_diff(rstd, ref.rstd), 1e-12);
}

TEST(ModuleOpsLayerNorm, BackwardMatchesCentralDifferences) {
  auto be = cpu();
  Rng rng(6);
  const int64_t rows = 5, d = 7;
  const double eps = 1e-5;
  const Vec x = normal_vector(rng, rows * d), g = normal_vector(rng, d), b = normal_vector(rng, d);
  const Vec w = normal_vector(rng, rows * d);
  auto run = [&](const Vec& xv, const Vec& gv, const Vec& bv) { return layer_norm_ref(xv, gv, bv, eps, rows, d).y; };
  Vec y(rows * d), mean(rows), rstd(rows), dx(rows * d, std::nan("")), dg(d, 0.0), db(d, 0.0);
  be->layer_norm_forward(x.data(), g.data(), b.data(), eps, y.data(), mean.data(), rstd.data(), rows, d);
  be->layer_norm_backward(x.data(), g.data(), mean.data(), rstd.data(), w.data(), 0.0, dx.data(), rows, d);
  be->layer_norm_param_grad_accumulate(x.data(), mean.data(), rstd.data(), w.data(), dg.data(), db.data(), rows, d);
  // The op's forward (not only the reference) is what the differences see.
  auto op = [&](const Vec& xv, const Vec& gv, const Vec& bv) {
    Vec out(rows * d), m(rows), r(rows);
    be->layer_norm_forward(xv.data(), gv.data(), bv.data(), eps, out.data(), m.data(), r.data(), rows, d);
    return out;
  };
  EXPECT_LT(gradient_error(dx, numeric_gradient([&](const Vec& v) { return op(v, g, b); }, x, w)), 1e-8);
  EXPECT_LT(gradient_error(dg, numeric_gradient([&](const Vec& v) { return op(x, v, b); }, g, w)), 1e-8);
  EXPECT_LT(gradient_error(db, numeric_gradient([&](const Vec& v) { return op(x, g, v); }, b, w)), 1e-8);
  EXPECT_LT(gradient_error(dx, numeric_gradient([&](const Vec& v) { return run(v, g, b); }, x, w)), 1e-8);
}

TEST(ModuleOpsLayerNorm, AccumulateAddsAndParamGradsAccumulate) {
  auto be = cpu();
  Rng rng(7);
  const int64_t rows = 4, d = 9;
  const Vec x = normal_vector(rng, rows * d), g = normal_vector(rng, d), b = normal_vector(rng, d);
  const Vec dy = normal_vector(rng, rows * d), prior = normal_vector(rng, rows * d);
  Vec y(rows * d), mean(rows), rstd(rows);
  be->layer_norm_forward(x.data(), g.data(), b.data(), 1e-5, y.data(), mean.data(), rstd.data(), rows, d);
  Vec dx(rows * d, std::nan(""));  // beta 0 must not read dx
  be->layer_norm_backward(x.data(), g.data(), mean.data(), rstd.data(), dy.data(), 0.0, dx.data(), rows, d);
  Vec acc = prior;
  be->layer_norm_backward(x.data(), g.data(), mean.data(), rstd.data(), dy.data(), 1.0, acc.data(), rows, d);
  for (int64_t i = 0; i < rows * d; ++i) EXPECT_NEAR(acc[i], prior[i] + dx[i], 1e-13);
  Vec dg1(d, 0.0), db1(d, 0.0), dg2(d, 1.0), db2(d, -2.0);
  be->layer_norm_param_grad_accumulate(x.data(), mean.data(), rstd.data(), dy.data(), dg1.data(), db1.data(), rows, d);
  be->layer_norm_param_grad_accumulate(x.data(), mean.data(), rstd.data(), dy.data(), dg2.data(), db2.data(), rows, d);
  for (int64_t c = 0; c < d; ++c) {
    EXPECT_NEAR(dg2[c], dg1[c] + 1.0, 1e-13);
    EXPECT_NEAR(db2[c], db1[c] - 2.0, 1e-13);
  }
}

TEST(ModuleOpsLayerNorm, FloatMatchesDoubleAndThreadsDoNotChangeTheResult) {
  Rng rng(8);
  const int64_t rows = 3000, d = 64;  // enough rows for several threads
  const Vec x = normal_vector(rng, rows * d), g = normal_vector(rng, d), b = normal_vector(rng, d);
  const Vec dy = normal_vector(rng, rows * d);
  auto run = [&](auto backend, auto scalar) {
    using S = decltype(scalar);
    const std::vector<S> xs(x.begin(), x.end()), gs(g.begin(), g.end()), bs(b.begin(), b.end()),
        dys(dy.begin(), dy.end());
    std::vector<S> y(rows * d), mean(rows), rstd(rows), dx(rows * d), dg(d, S(0)), db(d, S(0));
    backend->layer_norm_forward(xs.data(), gs.data(), bs.data(), S(1e-5), y.data(), mean.data(), rstd.data(), rows, d);
    backend->layer_norm_backward(xs.data(), gs.data(), mean.data(), rstd.data(), dys.data(), S(0), dx.data(), rows, d);
    backend->layer_norm_param_grad_accumulate(xs.data(), mean.data(), rstd.data(), dys.data(), dg.data(), db.data(),
                                              rows, d);
    std::vector<Vec> out;
    for (const auto* v : {&y, &dx, &dg, &db}) out.emplace_back(v->begin(), v->end());
    return out;
  };
  const auto ref = run(cpu(1), 0.0);
  const auto two = run(cpu(2), 0.0);
  const auto flt = run(make_cpu_backend<float>(2), 0.0f);
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_LT(max_abs_diff(two[i], ref[i]), 1e-10 * max_abs(ref[i])) << "output " << i;
    EXPECT_LT(max_abs_diff(flt[i], ref[i]), 2e-5 * max_abs(ref[i])) << "output " << i;
  }
}

// ================================ cross entropy ==========================================

TEST(ModuleOpsCrossEntropy, ForwardMatchesPlainLoopAndIgnoresNegativeTargets) {
  auto be = cpu(2);
  Rng rng(9);
  const int64_t rows = 6, classes = 11;
  Vec logits = normal_vector(rng, rows * classes, 3.0);
  // Row 2 has huge logits: exp would overflow without the max shift.
  for (int64_t c = 0; c < classes; ++c) logits[2 * classes + c] += 1000.0;
  const std::vector<int32_t> targets{3, 0, 10, -1, 7, -5};
  Vec loss(rows, std::nan("")), lse(rows, std::nan(""));
  be->cross_entropy_forward(logits.data(), targets.data(), loss.data(), lse.data(), rows, classes);
  for (int64_t r = 0; r < rows; ++r) {
    double m = -1e300;
    for (int64_t c = 0; c < classes; ++c) m = std::max(m, logits[r * classes + c]);
    double s = 0.0;
    for (int64_t c = 0; c < classes; ++c) s += std::exp(logits[r * classes + c] - m);
    const double ref_lse = m + std::log(s);
    EXPECT_NEAR(lse[r], ref_lse, 1e-12 * std::fabs(ref_lse)) << r;
    const double ref_loss = targets[r] < 0 ? 0.0 : ref_lse - logits[r * classes + targets[r]];
    EXPECT_NEAR(loss[r], ref_loss, 1e-10) << r;
    EXPECT_TRUE(std::isfinite(loss[r])) << r;
  }
  EXPECT_EQ(loss[3], 0.0);
  EXPECT_EQ(loss[5], 0.0);
}

TEST(ModuleOpsCrossEntropy, BackwardMatchesCentralDifferencesAndMayAliasTheLogits) {
  auto be = cpu();
  Rng rng(10);
  const int64_t rows = 4, classes = 6;
  const Vec logits = normal_vector(rng, rows * classes);
  const std::vector<int32_t> targets{1, -1, 5, 0};
  const double scale = 0.37;
  auto f = [&](const Vec& l) {
    Vec loss(rows), lse(rows);
    be->cross_entropy_forward(l.data(), targets.data(), loss.data(), lse.data(), rows, classes);
    return loss;
  };
  Vec loss(rows), lse(rows), dl(rows * classes, std::nan(""));
  be->cross_entropy_forward(logits.data(), targets.data(), loss.data(), lse.data(), rows, classes);
  be->cross_entropy_backward(logits.data(), targets.data(), lse.data(), scale, dl.data(), rows, classes);
  const Vec w(rows, scale);
  EXPECT_LT(gradient_error(dl, numeric_gradient(f, logits, w)), 1e-8);
  for (int64_t c = 0; c < classes; ++c) EXPECT_EQ(dl[1 * classes + c], 0.0);  // ignored row
  Vec in_place = logits;
  be->cross_entropy_backward(in_place.data(), targets.data(), lse.data(), scale, in_place.data(), rows, classes);
  // Same values up to rounding (vectorised exp may split the row differently by alignment).
  EXPECT_LT(max_abs_diff(in_place, dl), 1e-15);
}

TEST(ModuleOpsCrossEntropy, FloatMatchesDouble) {
  Rng rng(11);
  const int64_t rows = 300, classes = 1000;
  const Vec logits = normal_vector(rng, rows * classes, 4.0);
  std::vector<int32_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r) targets[r] = r % 7 == 0 ? -1 : static_cast<int32_t>(rng.below(classes));
  auto bd = cpu(2);
  auto bf = make_cpu_backend<float>(2);
  Vec loss(rows), lse(rows), dl(rows * classes);
  bd->cross_entropy_forward(logits.data(), targets.data(), loss.data(), lse.data(), rows, classes);
  bd->cross_entropy_backward(logits.data(), targets.data(), lse.data(), 1.0, dl.data(), rows, classes);
  const std::vector<float> lf = to_float(logits);
  std::vector<float> lossf(rows), lsef(rows), dlf(rows * classes);
  bf->cross_entropy_forward(lf.data(), targets.data(), lossf.data(), lsef.data(), rows, classes);
  bf->cross_entropy_backward(lf.data(), targets.data(), lsef.data(), 1.0f, dlf.data(), rows, classes);
  EXPECT_LT(max_abs_diff(to_double(lossf), loss), 1e-5 * max_abs(loss));
  EXPECT_LT(max_abs_diff(to_double(dlf), dl), 1e-5);
}

TEST(ModuleOpsCrossEntropy, TargetPastTheClassesIsAnInternalErrorOnTheCpu) {
  auto be = cpu();
  const Vec logits(2 * 3, 0.0);
  const std::vector<int32_t> targets{0, 3};
  Vec loss(2), lse(2);
  try {
    be->cross_entropy_forward(logits.data(), targets.data(), loss.data(), lse.data(), 2, 3);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_INTERNAL);
    EXPECT_NE(std::string(e.what()).find("target 3"), std::string::npos) << e.what();
  }
}

// The label-smoothed loss of a row in double, straight from the definition:
// -sum_c q_c log p_c with q = 1 - s on the target and s / (V - 1) elsewhere.
static double smoothed_reference(const double* l, int64_t classes, int32_t t, double s) {
  double m = -1e300;
  for (int64_t c = 0; c < classes; ++c) m = std::max(m, l[c]);
  double z = 0.0;
  for (int64_t c = 0; c < classes; ++c) z += std::exp(l[c] - m);
  double loss = 0.0;
  for (int64_t c = 0; c < classes; ++c) {
    const double q = c == t ? 1.0 - s : s / static_cast<double>(classes - 1);
    loss -= q * (l[c] - m - std::log(z));
  }
  return loss;
}

TEST(ModuleOpsCrossEntropy, SmoothedForwardMatchesTheDefinitionAndZeroSmoothingIsPlain) {
  auto be = cpu(2);
  Rng rng(12);
  const int64_t rows = 6, classes = 13;
  Vec logits = normal_vector(rng, rows * classes, 3.0);
  for (int64_t c = 0; c < classes; ++c) logits[2 * classes + c] += 1000.0;  // needs the max shift
  const std::vector<int32_t> targets{3, 0, 12, -1, 7, -5};
  for (double s : {0.0, 0.1, 0.5}) {
    Vec loss(rows, std::nan("")), nll(rows, std::nan("")), lse(rows, std::nan(""));
    be->smoothed_cross_entropy_forward(logits.data(), targets.data(), s, loss.data(), nll.data(), lse.data(), rows,
                                       classes);
    Vec plain(rows), plain_lse(rows);
    be->cross_entropy_forward(logits.data(), targets.data(), plain.data(), plain_lse.data(), rows, classes);
    for (int64_t r = 0; r < rows; ++r) {
      const double ref = targets[r] < 0 ? 0.0 : smoothed_reference(&logits[r * classes], classes, targets[r], s);
      EXPECT_NEAR(loss[r], ref, 1e-9 * std::max(1.0, std::fabs(ref))) << "s " << s << " row " << r;
      EXPECT_EQ(nll[r], plain[r]) << r;  // the unsmoothed loss, for perplexity
      EXPECT_EQ(lse[r], plain_lse[r]) << r;
      if (s == 0.0) {
        EXPECT_EQ(loss[r], plain[r]) << r;
      }
    }
    EXPECT_EQ(loss[3], 0.0);
    EXPECT_EQ(nll[5], 0.0);
  }
}

TEST(ModuleOpsCrossEntropy, SmoothedBackwardMatchesCentralDifferencesAndMayAliasTheLogits) {
  auto be = cpu();
  Rng rng(14);
  const int64_t rows = 4, classes = 6;
  const Vec logits = normal_vector(rng, rows * classes);
  const std::vector<int32_t> targets{1, -1, 5, 0};
  const double scale = 0.37, s = 0.2;
  auto f = [&](const Vec& l) {
    Vec loss(rows), nll(rows), lse(rows);
    be->smoothed_cross_entropy_forward(l.data(), targets.data(), s, loss.data(), nll.data(), lse.data(), rows,
                                       classes);
    return loss;
  };
  Vec loss(rows), nll(rows), lse(rows), dl(rows * classes, std::nan(""));
  be->smoothed_cross_entropy_forward(logits.data(), targets.data(), s, loss.data(), nll.data(), lse.data(), rows,
                                     classes);
  be->smoothed_cross_entropy_backward(logits.data(), targets.data(), lse.data(), s, scale, dl.data(), rows, classes);
  EXPECT_LT(gradient_error(dl, numeric_gradient(f, logits, Vec(rows, scale))), 1e-8);
  for (int64_t c = 0; c < classes; ++c) EXPECT_EQ(dl[1 * classes + c], 0.0);  // ignored row
  Vec in_place = logits;
  be->smoothed_cross_entropy_backward(in_place.data(), targets.data(), lse.data(), s, scale, in_place.data(), rows,
                                      classes);
  EXPECT_LT(max_abs_diff(in_place, dl), 1e-15);
  // Smoothing 0: the plain backward.
  Vec plain(rows * classes), zero(rows * classes);
  be->cross_entropy_backward(logits.data(), targets.data(), lse.data(), scale, plain.data(), rows, classes);
  be->smoothed_cross_entropy_backward(logits.data(), targets.data(), lse.data(), 0.0, scale, zero.data(), rows,
                                      classes);
  EXPECT_LT(max_abs_diff(zero, plain), 1e-15);
}

TEST(ModuleOpsCrossEntropy, SmoothingOutsideItsRangeIsAnInternalError) {
  auto be = cpu();
  const Vec logits(2 * 3, 0.0);
  const std::vector<int32_t> targets{0, 2};
  Vec loss(2), nll(2), lse(2), dl(6);
  for (double s : {-0.1, 1.0, std::nan("")}) {
    EXPECT_THROW(be->smoothed_cross_entropy_forward(logits.data(), targets.data(), s, loss.data(), nll.data(),
                                                    lse.data(), 2, 3),
                 Error)
        << s;
    EXPECT_THROW(be->smoothed_cross_entropy_backward(logits.data(), targets.data(), lse.data(), s, 1.0, dl.data(), 2,
                                                     3),
                 Error)
        << s;
  }
  // One class: nothing to spread the smoothing over.
  EXPECT_THROW(be->smoothed_cross_entropy_forward(logits.data(), targets.data(), 0.1, loss.data(), nll.data(),
                                                  lse.data(), 1, 1),
               Error);
}

// ================================ dropout ==========================================

TEST(ModuleOpsDropout, CounterHashIsSplitMix64) {
  // SplitMix64 seeded with 0 starts 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F.
  EXPECT_EQ(counter_hash(0, 0), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(counter_hash(0, 1), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(counter_hash(0, 2), 0x06C45D188009454Full);
  EXPECT_EQ(dropout_threshold(0.0), 0u);
  EXPECT_EQ(dropout_threshold(0.5), 1u << 23);
}

TEST(ModuleOpsDropout, RateScaleDeterminismAndThreads) {
  Rng rng(20);
  const int64_t n = 200001;
  const double p = 0.3;
  const Vec x = normal_vector(rng, n);
  Vec y1(n), y2(n), y_other(n);
  cpu(1)->dropout_forward(x.data(), y1.data(), n, p, 1234);
  cpu(2)->dropout_forward(x.data(), y2.data(), n, p, 1234);
  cpu(2)->dropout_forward(x.data(), y_other.data(), n, p, 1235);
  EXPECT_EQ(y1, y2);  // the mask does not depend on the thread count
  int64_t dropped = 0, differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (y1[i] == 0.0) {
      ++dropped;
    } else {
      EXPECT_EQ(y1[i], x[i] * (1.0 / (1.0 - p))) << i;
    }
    differ += (y1[i] == 0.0) != (y_other[i] == 0.0);
  }
  const double rate = double(dropped) / n, sigma = std::sqrt(p * (1 - p) / n);
  EXPECT_NEAR(rate, p, 5 * sigma);
  // Another seed gives another mask: two independent masks differ in 2 p (1 - p) of the places.
  EXPECT_NEAR(double(differ) / n, 2 * p * (1 - p), 0.01);
  // Float drops exactly the same elements.
  auto bf = make_cpu_backend<float>(2);
  const std::vector<float> xf = to_float(x);
  std::vector<float> yf(n);
  bf->dropout_forward(xf.data(), yf.data(), n, p, 1234);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(yf[i] == 0.0f, y1[i] == 0.0) << i;
}

TEST(ModuleOpsDropout, BackwardUsesTheSameMaskInPlaceAndZeroRateIsIdentity) {
  auto be = cpu(2);
  Rng rng(21);
  const int64_t n = 5000;
  const Vec x = normal_vector(rng, n), dy = normal_vector(rng, n);
  Vec y(n), dx(n);
  be->dropout_forward(x.data(), y.data(), n, 0.5, 99);
  be->dropout_backward(dy.data(), dx.data(), n, 0.5, 99);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(dx[i] == 0.0, y[i] == 0.0) << i;
    if (y[i] != 0.0) {
      EXPECT_EQ(dx[i], 2.0 * dy[i]);
    }
  }
  Vec in_place = x;
  be->dropout_forward(in_place.data(), in_place.data(), n, 0.5, 99);
  EXPECT_EQ(in_place, y);
  Vec same(n);
  be->dropout_forward(x.data(), same.data(), n, 0.0, 99);
  EXPECT_EQ(same, x);
}

// ================================ unsupported defaults ==========================================

// Memory only: every module op must report FWP_ERR_UNSUPPORTED by name.
class MemoryOnly final : public Backend<float> {
 public:
  Device device() const override { return Device::Cuda; }
  float* allocate(int64_t n) override { return n > 0 ? new float[static_cast<size_t>(n)] : nullptr; }
  void deallocate(float* p) noexcept override { delete[] p; }
  int32_t* allocate_int(int64_t n) override { return n > 0 ? new int32_t[static_cast<size_t>(n)] : nullptr; }
  void deallocate_int(int32_t* p) noexcept override { delete[] p; }
  void upload(float* d, const float* s, int64_t n) override { std::copy(s, s + n, d); }
  void download(float* d, const float* s, int64_t n) override { std::copy(s, s + n, d); }
  void upload_int(int32_t* d, const int32_t* s, int64_t n) override { std::copy(s, s + n, d); }
  void copy(float* d, const float* s, int64_t n) override { std::copy(s, s + n, d); }
  void fill(float* d, float v, int64_t n) override { std::fill(d, d + n, v); }
  void synchronize() override {}
};

TEST(ModuleOpsFamilies, MissingModuleOpsReportUnsupported) {
  MemoryOnly be;
  float a[4] = {1, 2, 3, 4}, b[4] = {}, c[4] = {};
  const int32_t t[2] = {0, 1};
  auto expect = [](const std::function<void()>& f, const std::string& op) {
    try {
      f();
      ADD_FAILURE() << op << " did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), FWP_ERR_UNSUPPORTED) << op;
      EXPECT_EQ(std::string(e.what()), "the " + op + " op is not supported on the CUDA backend");
    }
  };
  expect([&] { be.relu_forward(a, b, 4); }, "relu_forward");
  expect([&] { be.relu_backward(a, b, c, 4); }, "relu_backward");
  expect([&] { be.gelu_forward(a, b, 4); }, "gelu_forward");
  expect([&] { be.gelu_backward(a, b, c, 4); }, "gelu_backward");
  expect([&] { be.layer_norm_forward(a, a, a, 1e-5f, b, c, c, 2, 2); }, "layer_norm_forward");
  expect([&] { be.layer_norm_backward(a, a, a, a, a, 0.0f, b, 2, 2); }, "layer_norm_backward");
  expect([&] { be.layer_norm_param_grad_accumulate(a, a, a, a, b, c, 2, 2); }, "layer_norm_param_grad_accumulate");
  expect([&] { be.cross_entropy_forward(a, t, b, c, 2, 2); }, "cross_entropy_forward");
  expect([&] { be.cross_entropy_backward(a, t, a, 1.0f, b, 2, 2); }, "cross_entropy_backward");
  expect([&] { be.smoothed_cross_entropy_forward(a, t, 0.1f, b, c, c, 2, 2); }, "smoothed_cross_entropy_forward");
  expect([&] { be.smoothed_cross_entropy_backward(a, t, a, 0.1f, 1.0f, b, 2, 2); },
         "smoothed_cross_entropy_backward");
  expect([&] { be.dropout_forward(a, b, 4, 0.1, 1); }, "dropout_forward");
  expect([&] { be.dropout_backward(a, b, 4, 0.1, 1); }, "dropout_backward");
}

}  // namespace
}  // namespace fwp
