// The modules of src/nn (Linear, Embedding, LayerNorm, FeedForward) and the
// tensor view they take: forwards against plain double loops; every backward
// (input and every parameter) against central differences in double; float
// against double; overwrite/accumulate and null input gradients; padding ids;
// bad shapes and misuse raise a clear fwp::Error.
//
// The modules run on the CPU backend here, whose device memory is host
// memory, so the tests read and perturb parameters through their pointers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/id_buffer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/cross_entropy_loss.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/feed_forward.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/parameter.h"
#include "ops_reference.h"
#include "expect_error.h"

namespace fwp {
namespace {

using opsref::max_abs;
using opsref::max_abs_diff;
using opsref::normal_vector;
using opsref::Vec;

std::shared_ptr<Backend<double>> cpu(int threads = 1) { return make_cpu_backend<double>(threads); }

using fwp::test::expect_error;

// Max over the elements of `values` (host-visible) of |analytic - numeric| /
// max(1, max|numeric|), numeric by central differences of `loss`.
double fd_error(double* values, int64_t n, const Vec& analytic, const std::function<double()>& loss,
                double h = 1e-6) {
  Vec numeric(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double saved = values[i];
    values[i] = saved + h;
    const double lp = loss();
    values[i] = saved - h;
    const double lm = loss();
    values[i] = saved;
    numeric[i] = (lp - lm) / (2 * h);
  }
  return max_abs_diff(analytic, numeric) / std::max(1.0, max_abs(numeric));
}

double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

Vec grad_of(const ParameterList<double>& params, int64_t i) {
  const double* g = params[i].grad.data();
  return Vec(g, g + params[i].numel());
}
Vec value_of(const ParameterList<double>& params, int64_t i) {
  const double* v = params[i].value.data();
  return Vec(v, v + params[i].numel());
}
void set_value(ParameterList<double>& params, int64_t i, const Vec& v) {
  std::copy(v.begin(), v.end(), params[i].value.data());
}

// ================================ tensor view ==========================================

TEST(TensorView, ShapeRowsColsReshapeAndMessages) {
  const Shape s{2, 3, 4};
  EXPECT_EQ(s.rank(), 3);
  EXPECT_EQ(s.numel(), 24);
  EXPECT_EQ(s.rows(), 6);
  EXPECT_EQ(s.cols(), 4);
  EXPECT_EQ(s[-1], 4);
  EXPECT_EQ(s[0], 2);
  EXPECT_EQ(s.str(), "[2, 3, 4]");
  EXPECT_EQ(with_cols(s, 7), (Shape{2, 3, 7}));
  EXPECT_EQ(append_dim(Shape{2, 3}, 5), (Shape{2, 3, 5}));
  EXPECT_EQ(Shape{}.numel(), 1);
  std::vector<double> data(24);
  TensorView<double> v(data.data(), s);
  EXPECT_EQ(v.row(2), data.data() + 8);
  ConstView<double> c = v;  // mutable views read as const views
  EXPECT_EQ(c.reshaped(Shape{6, 4}).rows(), 6);
  EXPECT_TRUE(TensorView<double>().is_null());
  expect_error(FWP_ERR_SHAPE_MISMATCH, "x has shape [2, 3, 4] where [2, 3, 5] was expected",
               [&] { check_shape(s, Shape{2, 3, 5}, "x"); });
  expect_error(FWP_ERR_SHAPE_MISMATCH, "last dimension must be 5", [&] { check_cols(s, 5, "x"); });
  expect_error(FWP_ERR_INTERNAL, "cannot reshape", [&] { v.reshaped(Shape{5, 5}); });
  expect_error(FWP_ERR_INTERNAL, "rank 5", [] { (void)Shape{1, 2, 3, 4, 5}; });
  expect_error(FWP_ERR_INTERNAL, "null data", [] { TensorView<double>(nullptr, Shape{2}); });
  expect_error(FWP_ERR_INTERNAL, "dimension 3", [&] { (void)s[3]; });
}

TEST(TensorView, IdBufferUploadsAndViews) {
  auto be = cpu();
  IdBuffer<double> ids;
  const std::vector<int32_t> host{3, -1, 0, 2, 2, 1};
  ids.upload(be, host.data(), 6);
  const IdView v = ids.view(Shape{2, 3});
  EXPECT_EQ(v.rows(), 2);
  EXPECT_EQ(v.data()[1], -1);
  expect_error(FWP_ERR_INTERNAL, "viewed as", [&] { ids.view(Shape{4}); });
}

// ================================ Linear ==========================================

struct LinearCase {
  std::shared_ptr<Backend<double>> be = cpu();
  ParameterList<double> params;
  Linear<double> lin;
  LinearCase(int64_t in, int64_t out, bool bias) : lin(params, be, "proj", in, out, bias) { params.allocate(be); }
};

Vec linear_ref(const Vec& x, const Vec& W, const Vec* b, int64_t rows, int64_t in, int64_t out) {
  Vec y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * W[o * in + i];
      y[r * out + o] = s;
    }
  return y;
}

TEST(ModuleLinear, DeclaresNamedParametersAndInitialises) {
  LinearCase c(5, 3, true);
  ASSERT_EQ(c.params.size(), 2);
  EXPECT_EQ(c.params[0].name, "proj.weight");
  EXPECT_EQ(c.params[0].shape, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(c.params[1].name, "proj.bias");
  Rng rng(1);
  c.lin.init_normal(c.params, rng, 0.02);
  Rng same(1);
  const Vec W = value_of(c.params, 0);
  for (double w : W) EXPECT_DOUBLE_EQ(w, 0.02 * same.normal());
  for (double b : value_of(c.params, 1)) EXPECT_EQ(b, 0.0);
  // PyTorch's default: weight then bias, U(-1/sqrt(in), 1/sqrt(in)), drawn as (2u - 1) bound.
  Rng rng2(2), same2(2);
  c.lin.init_uniform_fan_in(c.params, rng2);
  const double bound = 1.0 / std::sqrt(5.0);
  for (double w : value_of(c.params, 0)) EXPECT_DOUBLE_EQ(w, (2.0 * same2.uniform() - 1.0) * bound);
  for (double b : value_of(c.params, 1)) EXPECT_DOUBLE_EQ(b, (2.0 * same2.uniform() - 1.0) * bound);
  LinearCase nb(4, 2, false);
  EXPECT_EQ(nb.params.size(), 1);
  EXPECT_FALSE(nb.lin.has_bias());
  EXPECT_EQ(nb.lin.bias_index(), -1);
}

TEST(ModuleLinear, ForwardMatchesPlainLoop) {
  for (bool bias : {true, false}) {
    LinearCase c(6, 4, bias);
    Rng rng(3);
    c.lin.init_normal(c.params, rng, 1.0);
    if (bias) set_value(c.params, 1, normal_vector(rng, 4));
    const int64_t B = 2, T = 3;
    const Vec x = normal_vector(rng, B * T * 6);
    Vec y(B * T * 4);
    c.lin.forward(c.params, ConstView<double>(x.data(), {B, T, 6}), TensorView<double>(y.data(), {B, T, 4}));
    const Vec b = bias ? value_of(c.params, 1) : Vec();
    const Vec ref = linear_ref(x, value_of(c.params, 0), bias ? &b : nullptr, B * T, 6, 4);
    EXPECT_LT(max_abs_diff(y, ref), 1e-13) << "bias " << bias;
  }
}

TEST(ModuleLinear, BackwardMatchesCentralDifferences) {
  for (bool bias : {true, false}) {
    LinearCase c(5, 3, bias);
    Rng rng(4);
    c.lin.init_normal(c.params, rng, 0.5);
    if (bias) set_value(c.params, 1, normal_vector(rng, 3));
    const int64_t rows = 4;
    Vec x = normal_vector(rng, rows * 5);
    const Vec w = normal_vector(rng, rows * 3);
    auto loss = [&] {
      Vec y(rows * 3);
      c.lin.forward(c.params, ConstView<double>(x.data(), {rows, 5}), TensorView<double>(y.data(), {rows, 3}));
      return dot(w, y);
    };
    Vec dx(rows * 5, std::nan(""));  // overwrite must not read it
    c.lin.backward(c.params, ConstView<double>(x.data(), {rows, 5}), ConstView<double>(w.data(), {rows, 3}),
                   TensorView<double>(dx.data(), {rows, 5}), InputGrad::Overwrite);
    EXPECT_LT(fd_error(x.data(), rows * 5, dx, loss), 1e-8) << "dx, bias " << bias;
    EXPECT_LT(fd_error(c.params[0].value.data(), 15, grad_of(c.params, 0), loss), 1e-8) << "dW";
    if (bias) {
      EXPECT_LT(fd_error(c.params[1].value.data(), 3, grad_of(c.params, 1), loss), 1e-8) << "db";
    }
  }
}

TEST(ModuleLinear, AccumulateOverwriteNullAndParameterAccumulation) {
  LinearCase c(4, 3, true);
  Rng rng(5);
  c.lin.init_normal(c.params, rng, 1.0);
  const int64_t rows = 5;
  const Vec x = normal_vector(rng, rows * 4), dy = normal_vector(rng, rows * 3), prior = normal_vector(rng, rows * 4);
  const ConstView<double> xv(x.data(), {rows, 4}), dyv(dy.data(), {rows, 3});
  Vec dx(rows * 4);
  c.lin.backward(c.params, xv, dyv, TensorView<double>(dx.data(), {rows, 4}), InputGrad::Overwrite);
  const Vec dW1 = grad_of(c.params, 0), db1 = grad_of(c.params, 1);
  Vec acc = prior;
  c.lin.backward(c.params, xv, dyv, TensorView<double>(acc.data(), {rows, 4}), InputGrad::Accumulate);
  for (int64_t i = 0; i < rows * 4; ++i) EXPECT_NEAR(acc[i], prior[i] + dx[i], 1e-13);
  // Parameter gradients accumulate over calls; a null dx only skips the input gradient.
  c.lin.backward(c.params, xv, dyv, TensorView<double>(), InputGrad::Overwrite);
  const Vec dW3 = grad_of(c.params, 0), db3 = grad_of(c.params, 1);
  for (size_t i = 0; i < dW1.size(); ++i) EXPECT_NEAR(dW3[i], 3 * dW1[i], 1e-12);
  for (size_t i = 0; i < db1.size(); ++i) EXPECT_NEAR(db3[i], 3 * db1[i], 1e-12);
  // dx may alias x.
  Vec x_alias = x;
  c.lin.backward(c.params, ConstView<double>(x_alias.data(), {rows, 4}), dyv,
                 TensorView<double>(x_alias.data(), {rows, 4}), InputGrad::Overwrite);
  EXPECT_LT(max_abs_diff(x_alias, dx), 1e-13);
  const Vec dW4 = grad_of(c.params, 0);
  for (size_t i = 0; i < dW1.size(); ++i) EXPECT_NEAR(dW4[i], 4 * dW1[i], 1e-12);
}

TEST(ModuleLinear, BadShapesAndBadSizesAreClearErrors) {
  LinearCase c(4, 3, true);
  std::vector<double> buf(64);
  auto view = [&](Shape s) { return TensorView<double>(buf.data(), s); };
  expect_error(FWP_ERR_SHAPE_MISMATCH, "Linear 'proj' input x has shape [2, 5]",
               [&] { c.lin.forward(c.params, view({2, 5}), view({2, 3})); });
  expect_error(FWP_ERR_SHAPE_MISMATCH, "Linear 'proj' output y has shape [2, 4] where [2, 3] was expected",
               [&] { c.lin.forward(c.params, view({2, 4}), view({2, 4})); });
  expect_error(FWP_ERR_SHAPE_MISMATCH, "output gradient dy",
               [&] { c.lin.backward(c.params, view({2, 4}), view({3, 3}), view({2, 4}), InputGrad::Overwrite); });
  expect_error(FWP_ERR_SHAPE_MISMATCH, "input gradient dx",
               [&] { c.lin.backward(c.params, view({2, 4}), view({2, 3}), view({4, 2}), InputGrad::Overwrite); });
  ParameterList<double> other;
  expect_error(FWP_ERR_INTERNAL, "does not hold", [&] { c.lin.forward(other, view({2, 4}), view({2, 3})); });
  ParameterList<double> p;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "in_features must be >= 1 (got 0)",
               [&] { Linear<double>(p, cpu(), "bad", 0, 3, true); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "too large", [&] { Linear<double>(p, cpu(), "huge", 1 << 30, 1 << 30, true); });
}

// ================================ Embedding ==========================================

TEST(ModuleEmbedding, ForwardGathersRowsAndPaddingGivesZeros) {
  auto be = cpu();
  ParameterList<double> params;
  Embedding<double> emb(params, be, "tok", 7, 3);
  params.allocate(be);  // the modules declared; the owner allocates the one block
  EXPECT_EQ(params[0].name, "tok.weight");
  Rng rng(6);
  emb.init_normal(params, rng, 0.02);
  Rng same(6);
  for (double v : value_of(params, 0)) EXPECT_DOUBLE_EQ(v, 0.02 * same.normal());
  IdBuffer<double> ids;
  const std::vector<int32_t> host{6, -1, 0, 3, 3, 1};
  ids.upload(be, host.data(), 6);
  Vec out(6 * 3, std::nan(""));
  emb.forward(params, ids.view({2, 3}), TensorView<double>(out.data(), {2, 3, 3}));
  const Vec table = value_of(params, 0);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 3; ++c) {
      const double ref = host[r] < 0 ? 0.0 : table[host[r] * 3 + c];
      EXPECT_EQ(out[r * 3 + c], ref) << r << "," << c;
    }
}

TEST(ModuleEmbedding, BackwardScatterAddsAndMatchesCentralDifferences) {
  auto be = cpu(2);
  ParameterList<double> params;
  Embedding<double> emb(params, be, "tok", 5, 4);
  params.allocate(be);  // the modules declared; the owner allocates the one block
  Rng rng(7);
  emb.init_normal(params, rng, 1.0);
  const std::vector<int32_t> host{2, 2, -1, 4, 0, 2};  // repeats and padding
  IdBuffer<double> ids;
  ids.upload(be, host.data(), 6);
  const Vec w = normal_vector(rng, 6 * 4);
  auto loss = [&] {
    Vec out(6 * 4);
    emb.forward(params, ids.view({6}), TensorView<double>(out.data(), {6, 4}));
    return dot(w, out);
  };
  emb.backward(params, ids.view({6}), ConstView<double>(w.data(), {6, 4}));
  const Vec g = grad_of(params, 0);
  EXPECT_LT(fd_error(params[0].value.data(), 20, g, loss), 1e-8);
  // Row 2 got three contributions, rows 1 and 3 none (padding adds nothing).
  for (int64_t c = 0; c < 4; ++c) {
    EXPECT_NEAR(g[2 * 4 + c], w[0 * 4 + c] + w[1 * 4 + c] + w[5 * 4 + c], 1e-14);
    EXPECT_EQ(g[1 * 4 + c], 0.0);
    EXPECT_EQ(g[3 * 4 + c], 0.0);
  }
}

TEST(ModuleEmbedding, BadShapesAndSizesAreClearErrors) {
  auto be = cpu();
  ParameterList<double> params;
  Embedding<double> emb(params, be, "tok", 5, 4);
  params.allocate(be);  // the modules declared; the owner allocates the one block
  std::vector<int32_t> ids(8, 0);
  std::vector<double> out(64);
  expect_error(FWP_ERR_SHAPE_MISMATCH, "Embedding 'tok' output has shape [2, 3] where [2, 4] was expected",
               [&] { emb.forward(params, IdView(ids.data(), {2}), TensorView<double>(out.data(), {2, 3})); });
  expect_error(FWP_ERR_SHAPE_MISMATCH, "output gradient",
               [&] { emb.backward(params, IdView(ids.data(), {2}), ConstView<double>(out.data(), {3, 4})); });
  expect_error(FWP_ERR_SHAPE_MISMATCH, "rank 4",
               [&] { emb.forward(params, IdView(ids.data(), {1, 1, 2, 2}), TensorView<double>(out.data(), {4, 4})); });
  ParameterList<double> p;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "num_embeddings", [&] { Embedding<double>(p, be, "e", 0, 4); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "dim must be >= 1", [&] { Embedding<double>(p, be, "e", 4, 0); });
}

// ================================ LayerNorm ==========================================

TEST(ModuleLayerNorm, ForwardMatchesPlainLoopAndInitIsIdentity) {
  auto be = cpu();
  ParameterList<double> params;
  LayerNorm<double> ln(params, be, "ln", 6, 1e-5);
  params.allocate(be);  // the modules declared; the owner allocates the one block
  EXPECT_EQ(params[0].name, "ln.weight");
  EXPECT_EQ(params[1].name, "ln.bias");
  ln.init(params);
  for (double g : value_of(params, 0)) EXPECT_EQ(g, 1.0);
  for (double b : value_of(params, 1)) EXPECT_EQ(b, 0.0);
  Rng rng(8);
  set_value(params, 0, normal_vector(rng, 6));
  set_value(params, 1, normal_vector(rng, 6));
  const Vec x = normal_vector(rng, 2 * 3 * 6, 3.0);
  Vec y(x.size());
  ln.forward(params, ConstView<double>(x.data(), {2, 3, 6}), TensorView<double>(y.data(), {2, 3, 6}));
  const Vec g = value_of(params, 0), b = value_of(params, 1);
  for (int64_t r = 0; r < 6; ++r) {
    double mu = 0, var = 0;
    for (int64_t c = 0; c < 6; ++c) mu += x[r * 6 + c] / 6;
    for (int64_t c = 0; c < 6; ++c) var += (x[r * 6 + c] - mu) * (x[r * 6 + c] - mu) / 6;
    for (int64_t c = 0; c < 6; ++c)
      EXPECT_NEAR(y[r * 6 + c], (x[r * 6 + c] - mu) / std::sqrt(var + 1e-5) * g[c] + b[c], 1e-13);
  }
}

TEST(ModuleLayerNorm, BackwardMatchesCentralDifferencesWithBothModes) {
  auto be = cpu();
  ParameterList<double> params;
  LayerNorm<double> ln(params, be, "ln", 5, 1e-5);
  params.allocate(be);  // the modules declared; the owner allocates the one block
  Rng rng(9);
  set_value(params, 0, normal_vector(rng, 5));
  set_value(params, 1, normal_vector(rng, 5));
  const int64_t rows = 4;
  Vec x = normal_vector(rng, rows * 5);
  const Vec w = normal_vector(rng, rows * 5), prior = normal_vector(rng, rows * 5);
  auto loss = [&] {
    Vec y(rows * 5);
    ln.forward(params, ConstView<double>(x.data(), {rows, 5}), TensorView<double>(y.data(), {rows, 5}));
    return dot(w, y);
  };
  loss();
  Vec dx(rows * 5, std::nan("")), acc = prior;
  ln.backward(params, ConstView<double>(x.data(), {rows, 5}), ConstView<double>(w.data(), {rows, 5}),
              TensorView<double>(dx.data(), {rows, 5}), InputGrad::Overwrite);
  ln.backward(params, ConstView<double>(x.data(), {rows, 5}), ConstView<double>(w.data(), {rows, 5}),
              TensorView<double>(acc.data(), {rows, 5}), InputGrad::Accumulate);
  for (int64_t i = 0; i < rows * 5; ++i) EXPECT_NEAR(acc[i], prior[i] + dx[i], 1e-13);
  // Two backwards: the parameter gradients hold twice one backward's.
  Vec dg = grad_of(params, 0), db = grad_of(params, 1);
  for (auto& v : dg) v /= 2;
  for (auto& v : db) v /= 2;
  EXPECT_LT(fd_error(x.data(), rows * 5, dx, loss), 1e-8) << "dx";
  EXPECT_LT(fd_error(params[0].value.data(), 5, dg, loss), 1e-8) << "dgain";
  EXPECT_LT(fd_error(params[1].value.data(), 5, db, loss), 1e-8) << "dbias";
}

TEST(ModuleLayerNorm, MisuseIsAClearError) {
  auto be = cpu();
  ParameterList<double> params;
  LayerNorm<double> ln(params, be, "ln", 4);
  params.allocate(be);  // the modules declared; the owner allocates the one block
  ln.init(params);
  std::vector<double> a(64), b(64), c(64);
  auto v = [](std::vector<double>& s, Shape sh) { return TensorView<double>(s.data(), sh); };
  expect_error(FWP_ERR_BAD_STATE, "backward needs a forward first",
               [&] { ln.backward(params, v(a, {2, 4}), v(b, {2, 4}), v(c, {2, 4}), InputGrad::Overwrite); });
  ln.forward(params, v(a, {2, 4}), v(b, {2, 4}));
  expect_error(FWP_ERR_SHAPE_MISMATCH, "has 3 rows but the last forward had 2",
               [&] { ln.backward(params, v(a, {3, 4}), v(b, {3, 4}), v(c, {3, 4}), InputGrad::Overwrite); });
  expect_error(FWP_ERR_SHAPE_MISMATCH, "LayerNorm 'ln' output y has shape [2, 5]",
               [&] { ln.forward(params, v(a, {2, 4}), v(b, {2, 5})); });
  expect_error(FWP_ERR_SHAPE_MISMATCH, "input x has shape [2, 5]",
               [&] { ln.forward(params, v(a, {2, 5}), v(b, {2, 5})); });
  ParameterList<double> p;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "eps must be finite and > 0", [&] { LayerNorm<double>(p, be, "x", 4, 0.0); });
}

// ================================ FeedForward ==========================================

Vec act_ref(Activation a, double h) {
  return Vec{a == Activation::Relu ? std::max(h, 0.0) : 0.5 * h * (1.0 + std::erf(h / std::sqrt(2.0)))};
}

TEST(ModuleFeedForward, ForwardMatchesPlainLoop) {
  for (Activation act : {Activation::Relu, Activation::Gelu}) {
    auto be = cpu();
    ParameterList<double> params;
    FeedForward<double> ff(params, be, "ff", 4, 7, act);
    params.allocate(be);  // the modules declared; the owner allocates the one block
    ASSERT_EQ(params.size(), 4);
    EXPECT_EQ(params[0].name, "ff.linear1.weight");
    EXPECT_EQ(params[3].name, "ff.linear2.bias");
    Rng rng(10);
    ff.init_normal(params, rng, 0.5);
    set_value(params, 1, normal_vector(rng, 7));
    set_value(params, 3, normal_vector(rng, 4));
    const int64_t rows = 5;
    const Vec x = normal_vector(rng, rows * 4);
    Vec y(rows * 4);
    ff.forward(params, ConstView<double>(x.data(), {rows, 4}), TensorView<double>(y.data(), {rows, 4}));
    const Vec b1 = value_of(params, 1), b2 = value_of(params, 3);
    Vec h = linear_ref(x, value_of(params, 0), &b1, rows, 4, 7);
    for (auto& v : h) v = act_ref(act, v)[0];
    const Vec ref = linear_ref(h, value_of(params, 2), &b2, rows, 7, 4);
    EXPECT_LT(max_abs_diff(y, ref), 1e-13);
  }
}

TEST(ModuleFeedForward, BackwardMatchesCentralDifferencesForInputAndEveryParameter) {
  for (Activation act : {Activation::Relu, Activation::Gelu}) {
    auto be = cpu();
    ParameterList<double> params;
    FeedForward<double> ff(params, be, "ff", 3, 6, act);
    params.allocate(be);  // the modules declared; the owner allocates the one block
    Rng rng(11);
    ff.init_normal(params, rng, 0.7);
    set_value(params, 1, normal_vector(rng, 6, 0.3));
    set_value(params, 3, normal_vector(rng, 3));
    const int64_t rows = 4;
    Vec x = normal_vector(rng, rows * 3);
    const Vec w = normal_vector(rng, rows * 3), prior = normal_vector(rng, rows * 3);
    auto loss = [&] {
      Vec y(rows * 3);
      ff.forward(params, ConstView<double>(x.data(), {rows, 3}), TensorView<double>(y.data(), {rows, 3}));
      return dot(w, y);
    };
    loss();
    Vec dx = prior;
    ff.backward(params, ConstView<double>(x.data(), {rows, 3}), ConstView<double>(w.data(), {rows, 3}),
                TensorView<double>(dx.data(), {rows, 3}), InputGrad::Accumulate);
    for (int64_t i = 0; i < rows * 3; ++i) dx[i] -= prior[i];
    const char* name = act == Activation::Relu ? "relu" : "gelu";
    EXPECT_LT(fd_error(x.data(), rows * 3, dx, loss), 1e-7) << name << " dx";
    for (int64_t p = 0; p < 4; ++p) {
      EXPECT_LT(fd_error(params[p].value.data(), params[p].numel(), grad_of(params, p), loss), 1e-7)
          << name << " " << params[p].name;
    }
  }
}

TEST(ModuleFeedForward, MisuseIsAClearError) {
  auto be = cpu();
  ParameterList<double> params;
  FeedForward<double> ff(params, be, "ff", 4, 8, Activation::Relu, /*bias=*/false);
  params.allocate(be);  // the modules declared; the owner allocates the one block
  EXPECT_EQ(params.size(), 2);
  std::vector<double> a(64), b(64), c(64);
  auto v = [](std::vector<double>& s, Shape sh) { return TensorView<double>(s.data(), sh); };
  expect_error(FWP_ERR_BAD_STATE, "FeedForward 'ff': backward needs a forward first",
               [&] { ff.backward(params, v(a, {2, 4}), v(b, {2, 4}), v(c, {2, 4}), InputGrad::Overwrite); });
  expect_error(FWP_ERR_SHAPE_MISMATCH, "FeedForward 'ff' output y",
               [&] { ff.forward(params, v(a, {2, 4}), v(b, {3, 4})); });
  ParameterList<double> p;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "out_features must be >= 1",
               [&] { FeedForward<double>(p, be, "bad", 4, 0, Activation::Gelu); });
}

// ================================ CrossEntropyLoss ==========================================

TEST(ModuleCrossEntropyLoss, SumOfRowLossesAndGradientByCentralDifferences) {
  auto be = cpu();
  CrossEntropyLoss<double> ce(be);
  Rng rng(13);
  const int64_t B = 2, L = 3, V = 5;
  Vec logits = normal_vector(rng, B * L * V, 2.0);
  const std::vector<int32_t> host{4, -1, 0, 2, 2, -1};
  IdBuffer<double> targets;
  targets.upload(be, host.data(), B * L);
  auto loss = [&] { return ce.forward(ConstView<double>(logits.data(), {B, L, V}), targets.view({B, L})); };
  double ref = 0.0;
  for (int64_t r = 0; r < B * L; ++r) {
    if (host[r] < 0) continue;
    double s = 0.0;
    for (int64_t c = 0; c < V; ++c) s += std::exp(logits[r * V + c]);
    ref += std::log(s) - logits[r * V + host[r]];
  }
  EXPECT_NEAR(loss(), ref, 1e-12);
  const double scale = 1.0 / 4;  // the mean over the four scored targets
  Vec d(B * L * V, std::nan(""));
  ce.backward(ConstView<double>(logits.data(), {B, L, V}), targets.view({B, L}), scale,
              TensorView<double>(d.data(), {B, L, V}));
  Vec unscaled = d;
  for (auto& v : unscaled) v /= scale;
  EXPECT_LT(fd_error(logits.data(), B * L * V, unscaled, loss), 1e-8);
  for (int64_t c = 0; c < V; ++c) EXPECT_EQ(d[1 * V + c], 0.0);
  const Vec row_losses(ce.row_losses().to_host());
  EXPECT_EQ(row_losses[1], 0.0);
  expect_error(FWP_ERR_SHAPE_MISMATCH, "CrossEntropyLoss logits has shape [2, 3, 5] where [3, 2, 5]",
               [&] { ce.forward(ConstView<double>(logits.data(), {B, L, V}), targets.view({L, B})); });
  CrossEntropyLoss<double> fresh(be);
  expect_error(FWP_ERR_BAD_STATE, "backward needs a forward first", [&] {
    fresh.backward(ConstView<double>(logits.data(), {B, L, V}), targets.view({B, L}), 1.0,
                   TensorView<double>(d.data(), {B, L, V}));
  });
}

TEST(ModuleCrossEntropyLoss, LabelSmoothingSumsTheSmoothedLossesAndKeepsTheNll) {
  auto be = cpu();
  CrossEntropyLoss<double> ce(be);
  Rng rng(15);
  const int64_t rows = 5, V = 7;
  Vec logits = normal_vector(rng, rows * V, 2.0);
  const std::vector<int32_t> host{4, -1, 0, 6, 2};
  IdBuffer<double> targets;
  targets.upload(be, host.data(), rows);
  const double plain = ce.forward(ConstView<double>(logits.data(), {rows, V}), targets.view({rows}));
  EXPECT_EQ(ce.last_nll_sum(), plain);
  expect_error(FWP_ERR_INVALID_ARGUMENT, "label smoothing must be in [0, 1)", [&] { ce.set_label_smoothing(1.0); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "label smoothing must be in [0, 1)", [&] { ce.set_label_smoothing(-0.5); });
  ce.set_label_smoothing(0.1);
  auto loss = [&] { return ce.forward(ConstView<double>(logits.data(), {rows, V}), targets.view({rows})); };
  double ref = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    if (host[r] < 0) continue;
    double z = 0.0;
    for (int64_t c = 0; c < V; ++c) z += std::exp(logits[r * V + c]);
    for (int64_t c = 0; c < V; ++c) ref -= (c == host[r] ? 0.9 : 0.1 / (V - 1)) * (logits[r * V + c] - std::log(z));
  }
  EXPECT_NEAR(loss(), ref, 1e-12);
  EXPECT_NEAR(ce.last_nll_sum(), plain, 1e-12);  // perplexity is still of the unsmoothed loss
  Vec d(rows * V);
  ce.backward(ConstView<double>(logits.data(), {rows, V}), targets.view({rows}), 1.0,
              TensorView<double>(d.data(), {rows, V}));
  EXPECT_LT(fd_error(logits.data(), rows * V, d, loss), 1e-8);
  // The backward differentiates the last forward's loss even if the smoothing changed since.
  loss();
  ce.set_label_smoothing(0.0);
  Vec d2(rows * V);
  ce.backward(ConstView<double>(logits.data(), {rows, V}), targets.view({rows}), 1.0,
              TensorView<double>(d2.data(), {rows, V}));
  EXPECT_EQ(d2, d);
}

// ================================ Dropout ==========================================

TEST(ModuleDropout, BackwardMatchesCentralDifferencesWithTheForwardsMask) {
  auto be = cpu();
  Dropout<double> drop(be, 0.4);
  Rng data(14);
  const int64_t n = 60;
  Vec x = normal_vector(data, n);
  const Vec w = normal_vector(data, n);
  // Every evaluation draws its seed from a fresh Rng(7): the same mask each time.
  auto loss = [&] {
    Rng rng(7);
    Vec y(n);
    drop.forward(ConstView<double>(x.data(), {n}), TensorView<double>(y.data(), {n}), rng, true);
    return dot(w, y);
  };
  loss();
  Rng expected(7);
  EXPECT_EQ(drop.last_seed(), expected.next_u64());
  Vec dx(n);
  drop.backward(ConstView<double>(w.data(), {n}), TensorView<double>(dx.data(), {n}));
  EXPECT_LT(fd_error(x.data(), n, dx, loss), 1e-8);
  int64_t zeros = 0;
  for (double v : dx) zeros += v == 0.0;
  EXPECT_GT(zeros, 0);
  EXPECT_LT(zeros, n);
}

TEST(ModuleDropout, EvaluationIsTheIdentityAndMisuseIsAClearError) {
  auto be = cpu();
  Dropout<double> drop(be, 0.5);
  Rng rng(15);
  const Vec x = normal_vector(rng, 12);
  Vec y(12, 0.0), dx(12, 0.0);
  expect_error(FWP_ERR_BAD_STATE, "backward needs a forward first",
               [&] { drop.backward(ConstView<double>(x.data(), {12}), TensorView<double>(dx.data(), {12})); });
  const Rng::State before = rng.state();
  drop.forward(ConstView<double>(x.data(), {3, 4}), TensorView<double>(y.data(), {3, 4}), rng, false);
  EXPECT_EQ(y, x);
  EXPECT_EQ(rng.state(), before);  // evaluation draws nothing
  drop.backward(ConstView<double>(x.data(), {3, 4}), TensorView<double>(dx.data(), {3, 4}));
  EXPECT_EQ(dx, x);
  Vec in_place = x;
  drop.forward(ConstView<double>(in_place.data(), {12}), TensorView<double>(in_place.data(), {12}), rng, false);
  EXPECT_EQ(in_place, x);
  expect_error(FWP_ERR_SHAPE_MISMATCH, "Dropout output y",
               [&] { drop.forward(ConstView<double>(x.data(), {12}), TensorView<double>(y.data(), {6}), rng, true); });
  drop.forward(ConstView<double>(x.data(), {12}), TensorView<double>(y.data(), {12}), rng, true);
  expect_error(FWP_ERR_SHAPE_MISMATCH, "has 6 elements but the last forward had 12",
               [&] { drop.backward(ConstView<double>(x.data(), {6}), TensorView<double>(dx.data(), {6})); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "dropout must be in [0, 1)", [&] { Dropout<double>(be, 1.0); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "dropout must be in [0, 1)", [&] { Dropout<double>(be, -0.1); });
}

// ================================ one parameter block ==========================================

// Modules only declare; the owner allocates once; every parameter is then a
// window of the list's one value block and one gradient block, in declaration
// order, and init writes through those windows.
TEST(ModuleParameters, ModulesDeclareAndTheOwnerAllocatesOneBlock) {
  auto be = cpu();
  ParameterList<double> params;
  Embedding<double> emb(params, be, "emb", 11, 6);
  LayerNorm<double> ln(params, be, "ln", 6);
  FeedForward<double> ff(params, be, "ff", 6, 9, Activation::Gelu);
  Linear<double> head(params, be, "head", 6, 11, true);
  ASSERT_EQ(params.size(), 1 + 2 + 4 + 2);
  EXPECT_FALSE(params.allocated()) << "constructing a module must not allocate";
  for (int64_t i = 0; i < params.size(); ++i) EXPECT_TRUE(params[i].value.empty()) << params[i].name;
  // Init before the block exists is a clear error, not a write through a null view.
  Rng early(1);
  expect_error(FWP_ERR_INTERNAL, "before its list is allocated", [&] { emb.init_normal(params, early, 1.0); });

  params.allocate(be);
  const double* values = params.value_block();
  const double* grads = params.grad_block();
  int64_t previous_end = 0;
  for (int64_t i = 0; i < params.size(); ++i) {
    const Parameter<double>& p = params[i];
    EXPECT_EQ(p.value.data(), values + p.offset) << p.name;
    EXPECT_EQ(p.grad.data(), grads + p.offset) << p.name;
    EXPECT_GE(p.offset, previous_end) << p.name << " overlaps the parameter before it";
    EXPECT_LE(p.offset + p.numel(), params.block_size()) << p.name;
    previous_end = p.offset + p.numel();
  }
  EXPECT_EQ(params.trainable_size(), params.block_size());

  Rng rng(5);
  emb.init_normal(params, rng, 1.0);
  ln.init(params);
  ff.init_normal(params, rng, 0.2);
  head.init_uniform_fan_in(params, rng);
  // The draws landed in the block itself: the table's first value, read from the block.
  Rng same(5);
  EXPECT_DOUBLE_EQ(values[params[emb.weight_index()].offset], same.normal());
  EXPECT_EQ(values[params[ln.bias_index()].offset], 0.0);
}

// ================================ float vs double ==========================================

// The same little network (embedding -> layer norm -> feed-forward -> linear)
// in float and double from the same seed: outputs and every gradient agree to
// float rounding.
template <typename T>
std::vector<Vec> run_stack(Activation act) {
  auto be = make_cpu_backend<T>(2);
  ParameterList<T> params;
  const int64_t vocab = 50, d = 16, inner = 40, B = 3, L = 9, rows = B * L;
  Embedding<T> emb(params, be, "emb", vocab, d);
  LayerNorm<T> ln(params, be, "ln", d);
  FeedForward<T> ff(params, be, "ff", d, inner, act);
  Linear<T> head(params, be, "head", d, vocab, true);
  params.allocate(be);  // the modules declared; the owner allocates the one block
  Rng rng(12);
  emb.init_normal(params, rng, 1.0);
  ln.init(params);
  ff.init_normal(params, rng, 0.2);
  head.init_uniform_fan_in(params, rng);
  std::vector<int32_t> host(rows);
  for (auto& id : host) id = static_cast<int32_t>(rng.below(vocab));
  host[4] = -1;
  IdBuffer<T> ids;
  ids.upload(be, host.data(), rows);
  Buffer<T> e(be, rows * d), n(be, rows * d), f(be, rows * d), logits(be, rows * vocab);
  const Shape sd{B, L, d}, sv{B, L, vocab};
  emb.forward(params, ids.view({B, L}), TensorView<T>(e.data(), sd));
  ln.forward(params, TensorView<T>(e.data(), sd), TensorView<T>(n.data(), sd));
  ff.forward(params, TensorView<T>(n.data(), sd), TensorView<T>(f.data(), sd));
  head.forward(params, TensorView<T>(f.data(), sd), TensorView<T>(logits.data(), sv));
  // Loss: sum of logits weighted by fixed normals.
  std::vector<T> w(rows * vocab);
  for (auto& v : w) v = static_cast<T>(rng.normal());
  Buffer<T> dlogits(be, rows * vocab), df(be, rows * d), dn(be, rows * d), de(be, rows * d);
  dlogits.from_host(w.data(), rows * vocab);
  head.backward(params, TensorView<T>(f.data(), sd), TensorView<T>(dlogits.data(), sv), TensorView<T>(df.data(), sd),
                InputGrad::Overwrite);
  ff.backward(params, TensorView<T>(n.data(), sd), TensorView<T>(df.data(), sd), TensorView<T>(dn.data(), sd),
              InputGrad::Overwrite);
  ln.backward(params, TensorView<T>(e.data(), sd), TensorView<T>(dn.data(), sd), TensorView<T>(de.data(), sd),
              InputGrad::Overwrite);
  emb.backward(params, ids.view({B, L}), TensorView<T>(de.data(), sd));
  std::vector<Vec> out;
  auto add = [&](const std::vector<T>& v) { out.emplace_back(v.begin(), v.end()); };
  add(logits.to_host());
  for (int64_t i = 0; i < params.size(); ++i) {
    std::vector<T> g(static_cast<size_t>(params[i].numel()));
    be->download(g.data(), params[i].grad.data(), params[i].numel());
    add(g);
  }
  return out;
}

TEST(ModuleStack, FloatAgreesWithDouble) {
  for (Activation act : {Activation::Relu, Activation::Gelu}) {
    const auto d = run_stack<double>(act);
    const auto f = run_stack<float>(act);
    ASSERT_EQ(d.size(), f.size());
    for (size_t i = 0; i < d.size(); ++i) {
      ASSERT_GT(max_abs(d[i]), 0.0) << "tensor " << i;
      EXPECT_LT(max_abs_diff(f[i], d[i]), 2e-5 * max_abs(d[i])) << "tensor " << i;
    }
  }
}

}  // namespace
}  // namespace fwp
