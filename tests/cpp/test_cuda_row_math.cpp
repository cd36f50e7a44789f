// CPU checks of the module kernels' arithmetic (suite CudaTilesRowMath): the
// __host__ __device__ functions of cuda/row_math.cuh, compiled by g++ and
// driven as cuda/activation.cu, cuda/layer_norm.cu and cuda/cross_entropy.cu
// drive them (a row split over 32 lanes whose partial sums are then
// combined), compared with the CPU backend in double precision. What is left
// for a GPU run (test_cuda_parity_modules.cpp) is the thread mapping itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "../../cuda/row_math.cuh"
#include "core/backend.h"
#include "core/rng.h"
#include "cuda_test_util.h"

namespace fwp {
namespace {

using cudatest::close_rel;
using cudatest::FVec;
using DVec = std::vector<double>;

constexpr int kLanes = 32;

std::shared_ptr<Backend<double>> cpu_d() { return make_cpu_backend<double>(1); }

// Sum of f(c) over a row as a warp computes it: lane l sums c = l, l + 32, ...,
// then the 32 partials are combined (the xor-shuffle order does not matter for
// the tolerance used here).
template <typename F>
float lane_sum(int64_t d, F&& f) {
  float partial[kLanes] = {};
  for (int64_t c = 0; c < d; ++c) partial[c % kLanes] += f(c);
  float total = 0.0f;
  for (float p : partial) total += p;
  return total;
}

TEST(CudaTilesRowMath, ActivationsMatchTheCpuBackend) {
  Rng rng(1);
  const int64_t n = 1000;
  FVec x = cudatest::normal(rng, n, 3.0);
  x[0] = 0.0f;
  const FVec dy = cudatest::normal(rng, n);
  const DVec xd = cudatest::to_double(x), dyd = cudatest::to_double(dy);
  auto be = cpu_d();
  DVec relu(n), drelu(n), gelu(n), dgelu(n);
  be->relu_forward(xd.data(), relu.data(), n);
  be->relu_backward(xd.data(), dyd.data(), drelu.data(), n);
  be->gelu_forward(xd.data(), gelu.data(), n);
  be->gelu_backward(xd.data(), dyd.data(), dgelu.data(), n);
  FVec r(n), dr(n), g(n), dg(n);
  for (int64_t i = 0; i < n; ++i) {
    r[i] = rowmath::relu(x[i]);
    dr[i] = rowmath::relu_grad(x[i], dy[i]);
    g[i] = rowmath::gelu(x[i]);
    dg[i] = rowmath::gelu_grad(x[i], dy[i]);
  }
  EXPECT_TRUE(close_rel(r, relu, 1e-7));
  EXPECT_TRUE(close_rel(dr, drelu, 1e-7));
  EXPECT_TRUE(close_rel(g, gelu, 1e-6));
  EXPECT_TRUE(close_rel(dg, dgelu, 1e-6));
  EXPECT_EQ(rowmath::relu_grad(0.0f, 1.0f), 0.0f);
}

TEST(CudaTilesRowMath, LayerNormRowsMatchTheCpuBackend) {
  Rng rng(2);
  const int64_t rows = 7, d = 77;  // not a multiple of 32
  FVec x = cudatest::normal(rng, rows * d);
  for (int64_t c = 0; c < d; ++c) x[c] += 50.0f;  // a row with a large mean
  const FVec gain = cudatest::normal(rng, d), bias = cudatest::normal(rng, d), dy = cudatest::normal(rng, rows * d);
  const FVec prior = cudatest::normal(rng, rows * d);
  const float eps = 1e-5f;
  // Reference in double.
  auto be = cpu_d();
  const DVec xd = cudatest::to_double(x), gd = cudatest::to_double(gain), bd = cudatest::to_double(bias),
             dyd = cudatest::to_double(dy), priord = cudatest::to_double(prior);
  DVec y(rows * d), mean(rows), rstd(rows), dx(rows * d), acc = priord, dg(d, 0.0), db(d, 0.0);
  be->layer_norm_forward(xd.data(), gd.data(), bd.data(), eps, y.data(), mean.data(), rstd.data(), rows, d);
  be->layer_norm_backward(xd.data(), gd.data(), mean.data(), rstd.data(), dyd.data(), 0.0, dx.data(), rows, d);
  be->layer_norm_backward(xd.data(), gd.data(), mean.data(), rstd.data(), dyd.data(), 1.0, acc.data(), rows, d);
  // The kernels' way.
  FVec yf(rows * d), meanf(rows), rstdf(rows), dxf(rows * d), accf = prior;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * d;
    const float mu = rowmath::layer_norm_mean(lane_sum(d, [&](int64_t c) { return xr[c]; }), d);
    const float inv = rowmath::layer_norm_rstd(lane_sum(d, [&](int64_t c) { return (xr[c] - mu) * (xr[c] - mu); }), d, eps);
    meanf[r] = mu;
    rstdf[r] = inv;
    for (int64_t c = 0; c < d; ++c) yf[r * d + c] = rowmath::layer_norm_apply(xr[c], mu, inv, gain[c], bias[c]);
    const float* dyr = dy.data() + r * d;
    const float sum_g = lane_sum(d, [&](int64_t c) { return dyr[c] * gain[c]; });
    const float sum_gx = lane_sum(d, [&](int64_t c) { return dyr[c] * gain[c] * (xr[c] - mu) * inv; });
    for (int64_t c = 0; c < d; ++c) {
      dxf[r * d + c] = rowmath::layer_norm_dx(xr[c], dyr[c], gain[c], mu, inv, sum_g, sum_gx, d, 0.0f,
                                              std::numeric_limits<float>::quiet_NaN());
      accf[r * d + c] = rowmath::layer_norm_dx(xr[c], dyr[c], gain[c], mu, inv, sum_g, sum_gx, d, 1.0f, accf[r * d + c]);
    }
  }
  EXPECT_TRUE(close_rel(yf, y, 1e-5));
  EXPECT_TRUE(close_rel(meanf, mean, 1e-6));
  EXPECT_TRUE(close_rel(rstdf, rstd, 1e-5));
  EXPECT_TRUE(close_rel(dxf, dx, 2e-5));
  EXPECT_TRUE(close_rel(accf, acc, 2e-5));
}

TEST(CudaTilesRowMath, CrossEntropyRowsMatchTheCpuBackend) {
  Rng rng(3);
  const int64_t rows = 5, classes = 300;
  FVec logits = cudatest::normal(rng, rows * classes, 5.0);
  for (int64_t c = 0; c < classes; ++c) logits[classes + c] += 80.0f;  // exp(80+) overflows float unshifted
  const std::vector<int32_t> targets{7, 299, -1, 0, 150};
  const float scale = 0.25f;
  auto be = cpu_d();
  const DVec ld = cudatest::to_double(logits);
  DVec loss(rows), lse(rows), dl(rows * classes);
  be->cross_entropy_forward(ld.data(), targets.data(), loss.data(), lse.data(), rows, classes);
  be->cross_entropy_backward(ld.data(), targets.data(), lse.data(), scale, dl.data(), rows, classes);
  FVec lossf(rows), lsef(rows), dlf(rows * classes);
  for (int64_t r = 0; r < rows; ++r) {
    const float* lr = logits.data() + r * classes;
    const float m = *std::max_element(lr, lr + classes);
    const float s = lane_sum(classes, [&](int64_t c) { return tile::exp_f(lr[c] - m); });
    lsef[r] = rowmath::cross_entropy_lse(m, s);
    const int32_t t = targets[r];
    lossf[r] = rowmath::cross_entropy_loss(lsef[r], t >= 0 ? lr[t] : 0.0f, t, classes);
    for (int64_t c = 0; c < classes; ++c) {
      dlf[r * classes + c] = rowmath::cross_entropy_grad(lr[c], lsef[r], c == t, t < 0, scale);
    }
  }
  EXPECT_TRUE(close_rel(lsef, lse, 1e-6));
  EXPECT_TRUE(close_rel(lossf, loss, 1e-5));
  EXPECT_TRUE(close_rel(dlf, dl, 1e-5));
  EXPECT_TRUE(std::isnan(rowmath::cross_entropy_loss(1.0f, 0.0f, 300, classes)));  // past the classes: NaN
}

TEST(CudaTilesRowMath, SmoothedCrossEntropyRowsMatchTheCpuBackend) {
  Rng rng(4);
  const int64_t rows = 5, classes = 300;
  const float smoothing = 0.1f;
  FVec logits = cudatest::normal(rng, rows * classes, 5.0);
  for (int64_t c = 0; c < classes; ++c) logits[classes + c] += 80.0f;
  const std::vector<int32_t> targets{7, 299, -1, 0, 150};
  auto be = cpu_d();
  const DVec ld = cudatest::to_double(logits);
  DVec loss(rows), nll(rows), lse(rows), dl(rows * classes);
  be->smoothed_cross_entropy_forward(ld.data(), targets.data(), smoothing, loss.data(), nll.data(), lse.data(), rows,
                                     classes);
  be->smoothed_cross_entropy_backward(ld.data(), targets.data(), lse.data(), smoothing, 0.25, dl.data(), rows, classes);
  const float other = rowmath::smoothing_other_weight(smoothing, classes);
  FVec lossf(rows), nllf(rows), dlf(rows * classes);
  for (int64_t r = 0; r < rows; ++r) {
    const float* lr = logits.data() + r * classes;
    const float m = *std::max_element(lr, lr + classes);
    const float row_lse = rowmath::cross_entropy_lse(m, lane_sum(classes, [&](int64_t c) { return tile::exp_f(lr[c] - m); }));
    const float spread = lane_sum(classes, [&](int64_t c) { return row_lse - lr[c]; });
    const int32_t t = targets[r];
    nllf[r] = rowmath::cross_entropy_loss(row_lse, t >= 0 ? lr[t] : 0.0f, t, classes);
    lossf[r] = rowmath::smoothed_cross_entropy_loss(nllf[r], spread, t, smoothing, other);
    for (int64_t c = 0; c < classes; ++c) {
      dlf[r * classes + c] = rowmath::smoothed_cross_entropy_grad(lr[c], row_lse, c == t, t < 0, smoothing, other, 0.25f);
    }
  }
  EXPECT_TRUE(close_rel(nllf, nll, 1e-5));
  EXPECT_TRUE(close_rel(lossf, loss, 1e-5));
  EXPECT_TRUE(close_rel(dlf, dl, 1e-5));
}

}  // namespace
}  // namespace fwp
