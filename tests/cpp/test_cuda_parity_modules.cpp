// CUDA vs CPU for the module ops (activation, layer_norm, cross_entropy
// families) and for the modules of src/nn run on the GPU (suite
// CudaParityModules). Built only with FWP_HAVE_CUDA; every test skips with a
// visible "no CUDA device" message when none is present. GPU outputs are
// pre-poisoned with NaN; shapes are not multiples of the warp or chunk sizes.
// The reference is the CPU backend in double; tolerance as in
// test_cuda_parity.cpp (max |gpu - ref| <= rtol * max |ref| per tensor).
#include "core/backend.h"

#if FWP_HAVE_CUDA

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "../../cuda/cuda_backend.h"
#include "core/buffer.h"
#include "core/id_buffer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "cuda_test_util.h"
#include "nn/embedding.h"
#include "nn/feed_forward.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"

namespace fwp {
namespace {

using cudatest::close_rel;
using cudatest::FVec;
using DVec = std::vector<double>;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class CudaParityModules : public ::testing::Test {
 public:
  void SetUp() override {
    FWP_SKIP_OR_FAIL_WITHOUT_CUDA_DEVICE("CudaParityModules");  // fails instead under FWP_REQUIRE_CUDA=1
    gpu_ = make_cuda_backend(0);
    cpud_ = make_cpu_backend<double>(2);
  }
  Buffer<float> dev(const FVec& h) {
    Buffer<float> b(gpu_, static_cast<int64_t>(h.size()));
    if (!h.empty()) b.from_host(h.data(), static_cast<int64_t>(h.size()));
    return b;
  }
  Buffer<float> poisoned(int64_t n) {
    Buffer<float> b(gpu_, n);
    if (n > 0) gpu_->fill(b.data(), kNaN, n);
    return b;
  }
  std::shared_ptr<Backend<float>> gpu_;
  std::shared_ptr<Backend<double>> cpud_;
};

TEST_F(CudaParityModules, ActivationsForwardBackwardAndInPlace) {
  Rng rng(1);
  const int64_t n = 100003;
  const FVec x = cudatest::normal(rng, n, 3.0), dy = cudatest::normal(rng, n);
  const DVec xd = cudatest::to_double(x), dyd = cudatest::to_double(dy);
  auto gx = dev(x), gdy = dev(dy);
  for (bool gelu : {false, true}) {
    DVec y(n), dx(n);
    auto gy = poisoned(n), gdx = poisoned(n);
    if (gelu) {
      cpud_->gelu_forward(xd.data(), y.data(), n);
      cpud_->gelu_backward(xd.data(), dyd.data(), dx.data(), n);
      gpu_->gelu_forward(gx.data(), gy.data(), n);
      gpu_->gelu_backward(gx.data(), gdy.data(), gdx.data(), n);
    } else {
      cpud_->relu_forward(xd.data(), y.data(), n);
      cpud_->relu_backward(xd.data(), dyd.data(), dx.data(), n);
      gpu_->relu_forward(gx.data(), gy.data(), n);
      gpu_->relu_backward(gx.data(), gdy.data(), gdx.data(), n);
    }
    EXPECT_TRUE(close_rel(gy.to_host(), y, 1e-5)) << (gelu ? "gelu" : "relu");
    EXPECT_TRUE(close_rel(gdx.to_host(), dx, 1e-5)) << (gelu ? "gelu" : "relu");
    // In place: y over x, dx over dy.
    auto in_place = dev(x), grad_in_place = dev(dy);
    if (gelu) {
      gpu_->gelu_forward(in_place.data(), in_place.data(), n);
      gpu_->gelu_backward(gx.data(), grad_in_place.data(), grad_in_place.data(), n);
    } else {
      gpu_->relu_forward(in_place.data(), in_place.data(), n);
      gpu_->relu_backward(gx.data(), grad_in_place.data(), grad_in_place.data(), n);
    }
    EXPECT_EQ(in_place.to_host(), gy.to_host());
    EXPECT_EQ(grad_in_place.to_host(), gdx.to_host());
  }
}

TEST_F(CudaParityModules, LayerNormForwardBackwardParamGrads) {
  struct Case {
    int64_t rows, d;
  };
  for (const Case& k : {Case{1, 1}, Case{37, 77}, Case{5000, 128}, Case{3, 2049}, Case{300001, 8}}) {
    Rng rng(2 + k.d);
    const int64_t rows = k.rows, d = k.d, n = rows * d;
    FVec x = cudatest::normal(rng, n);
    for (int64_t c = 0; c < d; ++c) x[c] += 30.0f;
    const FVec gain = cudatest::normal(rng, d), bias = cudatest::normal(rng, d), dy = cudatest::normal(rng, n);
    const FVec prior = cudatest::normal(rng, n), prior_g = cudatest::normal(rng, d), prior_b = cudatest::normal(rng, d);
    const DVec xd = cudatest::to_double(x), gd = cudatest::to_double(gain), bd = cudatest::to_double(bias),
               dyd = cudatest::to_double(dy);
    DVec y(n), mean(rows), rstd(rows), dx(n), acc = cudatest::to_double(prior), dg = cudatest::to_double(prior_g),
                                              db = cudatest::to_double(prior_b);
    cpud_->layer_norm_forward(xd.data(), gd.data(), bd.data(), 1e-5, y.data(), mean.data(), rstd.data(), rows, d);
    cpud_->layer_norm_backward(xd.data(), gd.data(), mean.data(), rstd.data(), dyd.data(), 0.0, dx.data(), rows, d);
    cpud_->layer_norm_backward(xd.data(), gd.data(), mean.data(), rstd.data(), dyd.data(), 1.0, acc.data(), rows, d);
    cpud_->layer_norm_param_grad_accumulate(xd.data(), mean.data(), rstd.data(), dyd.data(), dg.data(), db.data(),
                                            rows, d);
    auto gx = dev(x), ggain = dev(gain), gbias = dev(bias), gdy = dev(dy);
    auto gy = poisoned(n), gmean = poisoned(rows), grstd = poisoned(rows), gdx = poisoned(n), gacc = dev(prior);
    auto gdg = dev(prior_g), gdb = dev(prior_b);
    gpu_->layer_norm_forward(gx.data(), ggain.data(), gbias.data(), 1e-5f, gy.data(), gmean.data(), grstd.data(), rows,
                             d);
    gpu_->layer_norm_backward(gx.data(), ggain.data(), gmean.data(), grstd.data(), gdy.data(), 0.0f, gdx.data(), rows,
                              d);
    gpu_->layer_norm_backward(gx.data(), ggain.data(), gmean.data(), grstd.data(), gdy.data(), 1.0f, gacc.data(), rows,
                              d);
    gpu_->layer_norm_param_grad_accumulate(gx.data(), gmean.data(), grstd.data(), gdy.data(), gdg.data(), gdb.data(),
                                           rows, d);
    const std::string shape = std::to_string(rows) + " x " + std::to_string(d);
    EXPECT_TRUE(close_rel(gy.to_host(), y, 1e-5)) << shape;
    EXPECT_TRUE(close_rel(gmean.to_host(), mean, 1e-5)) << shape;
    EXPECT_TRUE(close_rel(grstd.to_host(), rstd, 1e-5)) << shape;
    EXPECT_TRUE(close_rel(gdx.to_host(), dx, 1e-4)) << shape;
    EXPECT_TRUE(close_rel(gacc.to_host(), acc, 1e-4)) << shape;
    EXPECT_TRUE(close_rel(gdg.to_host(), dg, 1e-4)) << shape;
    EXPECT_TRUE(close_rel(gdb.to_host(), db, 1e-4)) << shape;
  }
}

TEST_F(CudaParityModules, CrossEntropyForwardBackwardIgnoredRowsAndInPlace) {
  Rng rng(3);
  const int64_t rows = 77, classes = 20001;
  FVec logits = cudatest::normal(rng, rows * classes, 4.0);
  for (int64_t c = 0; c < classes; ++c) logits[c] += 200.0f;
  std::vector<int32_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r) targets[r] = r % 5 == 3 ? -1 : static_cast<int32_t>(rng.below(classes));
  const DVec ld = cudatest::to_double(logits);
  DVec loss(rows), lse(rows), dl(rows * classes);
  cpud_->cross_entropy_forward(ld.data(), targets.data(), loss.data(), lse.data(), rows, classes);
  cpud_->cross_entropy_backward(ld.data(), targets.data(), lse.data(), 0.5, dl.data(), rows, classes);
  IdBuffer<float> gt;
  gt.upload(gpu_, targets.data(), rows);
  auto gl = dev(logits), gloss = poisoned(rows), glse = poisoned(rows), gdl = poisoned(rows * classes);
  gpu_->cross_entropy_forward(gl.data(), gt.data(), gloss.data(), glse.data(), rows, classes);
  gpu_->cross_entropy_backward(gl.data(), gt.data(), glse.data(), 0.5f, gdl.data(), rows, classes);
  EXPECT_TRUE(close_rel(glse.to_host(), lse, 1e-6));
  EXPECT_TRUE(close_rel(gloss.to_host(), loss, 1e-5));
  EXPECT_TRUE(close_rel(gdl.to_host(), dl, 1e-5));
  gpu_->cross_entropy_backward(gl.data(), gt.data(), glse.data(), 0.5f, gl.data(), rows, classes);
  EXPECT_EQ(gl.to_host(), gdl.to_host());
  // A target past the classes gives a NaN loss on the GPU (the CPU throws).
  const std::vector<int32_t> bad{static_cast<int32_t>(classes)};
  IdBuffer<float> gbad;
  gbad.upload(gpu_, bad.data(), 1);
  gpu_->cross_entropy_forward(gl.data(), gbad.data(), gloss.data(), glse.data(), 1, classes);
  EXPECT_TRUE(std::isnan(gloss.to_host()[0]));
}

TEST_F(CudaParityModules, SmoothedCrossEntropyForwardBackward) {
  Rng rng(5);
  const int64_t rows = 45, classes = 32001;
  FVec logits = cudatest::normal(rng, rows * classes, 4.0);
  std::vector<int32_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r) targets[r] = r % 4 == 1 ? -1 : static_cast<int32_t>(rng.below(classes));
  const DVec ld = cudatest::to_double(logits);
  DVec loss(rows), nll(rows), lse(rows), dl(rows * classes);
  cpud_->smoothed_cross_entropy_forward(ld.data(), targets.data(), 0.1, loss.data(), nll.data(), lse.data(), rows,
                                        classes);
  cpud_->smoothed_cross_entropy_backward(ld.data(), targets.data(), lse.data(), 0.1, 0.5, dl.data(), rows, classes);
  IdBuffer<float> gt;
  gt.upload(gpu_, targets.data(), rows);
  auto gl = dev(logits), gloss = poisoned(rows), gnll = poisoned(rows), glse = poisoned(rows);
  auto gdl = poisoned(rows * classes);
  gpu_->smoothed_cross_entropy_forward(gl.data(), gt.data(), 0.1f, gloss.data(), gnll.data(), glse.data(), rows,
                                       classes);
  gpu_->smoothed_cross_entropy_backward(gl.data(), gt.data(), glse.data(), 0.1f, 0.5f, gdl.data(), rows, classes);
  EXPECT_TRUE(close_rel(glse.to_host(), lse, 1e-6));
  EXPECT_TRUE(close_rel(gnll.to_host(), nll, 1e-5));
  EXPECT_TRUE(close_rel(gloss.to_host(), loss, 1e-5));
  EXPECT_TRUE(close_rel(gdl.to_host(), dl, 1e-5));
}

TEST_F(CudaParityModules, DropoutDropsTheCpuElementsForTheSameSeed) {
  Rng rng(4);
  const int64_t n = 1000003;
  const FVec x = cudatest::normal(rng, n), dy = cudatest::normal(rng, n);
  auto cpu = make_cpu_backend<float>(2);
  FVec y(n), dx(n);
  cpu->dropout_forward(x.data(), y.data(), n, 0.1, 0xDEADBEEFull);
  cpu->dropout_backward(dy.data(), dx.data(), n, 0.1, 0xDEADBEEFull);
  auto gx = dev(x), gdy = dev(dy), gy = poisoned(n);
  gpu_->dropout_forward(gx.data(), gy.data(), n, 0.1, 0xDEADBEEFull);
  gpu_->dropout_backward(gdy.data(), gdy.data(), n, 0.1, 0xDEADBEEFull);  // in place
  EXPECT_EQ(gy.to_host(), y);
  EXPECT_EQ(gdy.to_host(), dx);
}

// Embedding -> LayerNorm -> FeedForward -> Linear on the GPU against the same
// modules on the CPU in double, from the same seed: outputs and every gradient.
template <typename T>
std::vector<DVec> run_module_stack(std::shared_ptr<Backend<T>> be, Activation act) {
  ParameterList<T> params;
  const int64_t vocab = 1003, d = 96, inner = 300, B = 3, L = 41, rows = B * L;
  Embedding<T> emb(params, be, "emb", vocab, d);
  LayerNorm<T> ln(params, be, "ln", d);
  FeedForward<T> ff(params, be, "ff", d, inner, act);
  Linear<T> head(params, be, "head", d, vocab, true);
  params.allocate(be);  // the modules declared; the owner allocates the one block
  Rng rng(12);
  emb.init_normal(params, rng, 1.0);
  ln.init(params);
  ff.init_normal(params, rng, 0.1);
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
  std::vector<DVec> out;
  auto add = [&](const std::vector<T>& v) { out.emplace_back(v.begin(), v.end()); };
  add(logits.to_host());
  for (int64_t i = 0; i < params.size(); ++i) {
    std::vector<T> g(static_cast<size_t>(params[i].numel()));
    be->download(g.data(), params[i].grad.data(), params[i].numel());
    add(g);
  }
  return out;
}

TEST_F(CudaParityModules, ModuleStackOnTheGpuMatchesTheCpu) {
  for (Activation act : {Activation::Relu, Activation::Gelu}) {
    const auto ref = run_module_stack<double>(cpud_, act);
    const auto got = run_module_stack<float>(gpu_, act);
    ASSERT_EQ(ref.size(), got.size());
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_TRUE(close_rel(got[i], ref[i], 1e-4)) << "tensor " << i;
  }
}

}  // namespace
}  // namespace fwp

#endif  // FWP_HAVE_CUDA
