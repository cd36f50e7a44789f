// Optimizers: SGD (with momentum and weight decay), Adam and AdamW against
// hand-written double references of PyTorch's update rules, global-norm
// clipping, rejection of non-finite gradients, and the update ops in double.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "nn/parameter.h"
#include "train/optimizer.h"

namespace fwp {
namespace {

using Vec = std::vector<double>;

void expect_error(const std::function<void()>& f, fwp_status status, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

Vec to_vec(const Buffer<float>& b) {
  const auto h = b.to_host();
  return Vec(h.begin(), h.end());
}

void set(Buffer<float>& b, const Vec& v) {
  std::vector<float> f(v.begin(), v.end());
  b.from_host(f.data(), static_cast<int64_t>(f.size()));
}

// Two trainable tensors and one fixed buffer.
struct Fixture {
  std::shared_ptr<Backend<float>> backend = make_cpu_backend<float>(2);
  ParameterList<float> params;
  Fixture() {
    set(params.add(backend, "a", {2, 3}).value, {0.5, -1.0, 2.0, 0.25, -0.75, 1.5});
    set(params.add(backend, "b", {4}).value, {1.0, 2.0, -3.0, 0.1});
    set(params.add(backend, "fixed", {3}, /*trainable=*/false).value, {7.0, 8.0, 9.0});
  }
  void set_grads(int step) {
    Rng rng(100 + step);
    for (int64_t i = 0; i < params.size(); ++i) {
      Vec g(static_cast<size_t>(params[i].numel()));
      for (double& x : g) x = static_cast<float>(rng.normal());  // representable in float
      set(params[i].grad, g);
    }
  }
};

// PyTorch's update rules in double, over the trainable tensors of a Fixture.
struct Reference {
  OptimizerConfig c;
  std::map<std::string, Vec> p, m, v;
  int64_t t = 0;

  double step(const std::map<std::string, Vec>& grads) {
    double sq = 0.0;
    for (const auto& [name, g] : grads) {
      for (double x : g) sq += x * x;
    }
    const double norm = std::sqrt(sq);
    double scale = 1.0;
    if (c.clip_grad_norm > 0) scale = std::min(1.0, c.clip_grad_norm / (norm + 1e-6));
    ++t;
    for (const auto& [name, graw] : grads) {
      Vec& x = p[name];
      Vec& m1 = m[name];
      Vec& m2 = v[name];
      m1.resize(x.size(), 0.0);
      m2.resize(x.size(), 0.0);
      for (size_t i = 0; i < x.size(); ++i) {
        double g = scale * graw[i];
        if (c.kind == FWP_OPTIMIZER_SGD) {
          g += c.weight_decay * x[i];
          if (c.momentum != 0) {
            m1[i] = c.momentum * m1[i] + g;
            g = m1[i];
          }
          x[i] -= c.learning_rate * g;
          continue;
        }
        if (c.kind == FWP_OPTIMIZER_ADAM) g += c.weight_decay * x[i];
        if (c.kind == FWP_OPTIMIZER_ADAMW) x[i] *= 1.0 - c.learning_rate * c.weight_decay;
        m1[i] = c.beta1 * m1[i] + (1 - c.beta1) * g;
        m2[i] = c.beta2 * m2[i] + (1 - c.beta2) * g * g;
        const double bc1 = 1 - std::pow(c.beta1, double(t)), bc2 = 1 - std::pow(c.beta2, double(t));
        x[i] -= c.learning_rate * (m1[i] / bc1) / (std::sqrt(m2[i] / bc2) + c.eps);
      }
    }
    return norm;
  }
};

std::map<std::string, Vec> trainable_values(const ParameterList<float>& params) {
  std::map<std::string, Vec> out;
  for (int64_t i = 0; i < params.size(); ++i) {
    if (params[i].trainable) out[params[i].name] = to_vec(params[i].value);
  }
  return out;
}

std::map<std::string, Vec> trainable_grads(const ParameterList<float>& params) {
  std::map<std::string, Vec> out;
  for (int64_t i = 0; i < params.size(); ++i) {
    if (params[i].trainable) out[params[i].name] = to_vec(params[i].grad);
  }
  return out;
}

void expect_close(const std::map<std::string, Vec>& got, const std::map<std::string, Vec>& want, double tol,
                  const std::string& what) {
  for (const auto& [name, w] : want) {
    const Vec& g = got.at(name);
    ASSERT_EQ(g.size(), w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      EXPECT_NEAR(g[i], w[i], tol * std::max(1.0, std::fabs(w[i]))) << what << ": " << name << "[" << i << "]";
    }
  }
}

// Runs `steps` steps of the optimizer and of the reference on the same gradients.
void run_against_reference(const OptimizerConfig& config, int steps, const std::string& what) {
  Fixture f;
  Optimizer opt(f.backend, f.params, config);
  Reference ref;
  ref.c = config;
  ref.p = trainable_values(f.params);
  const Vec fixed_before = to_vec(f.params[2].value);
  for (int s = 0; s < steps; ++s) {
    f.set_grads(s);
    const double norm = opt.step();
    const double ref_norm = ref.step(trainable_grads(f.params));
    EXPECT_NEAR(norm, ref_norm, 1e-12 * ref_norm) << what;
    expect_close(trainable_values(f.params), ref.p, 2e-6, what + " step " + std::to_string(s));
  }
  EXPECT_EQ(opt.steps(), steps);
  EXPECT_EQ(to_vec(f.params[2].value), fixed_before) << "fixed buffers are never updated";
}

TEST(OptimizerMath, AdamMatchesHandComputation) {
  OptimizerConfig c;
  c.kind = FWP_OPTIMIZER_ADAM;
  c.learning_rate = 0.01;
  run_against_reference(c, 4, "adam");
  c.weight_decay = 0.1;
  c.beta1 = 0.8;
  c.beta2 = 0.95;
  c.eps = 1e-3;
  run_against_reference(c, 4, "adam with L2 weight decay");
}

TEST(OptimizerMath, AdamWDecouplesWeightDecay) {
  OptimizerConfig c;
  c.kind = FWP_OPTIMIZER_ADAMW;
  c.learning_rate = 0.05;
  c.weight_decay = 0.2;
  run_against_reference(c, 4, "adamw");
  // With zero gradients the moments stay zero and AdamW only shrinks the weights.
  Fixture f;
  Optimizer opt(f.backend, f.params, c);
  const Vec before = to_vec(f.params[0].value);
  f.params.zero_grad();
  opt.step();
  const Vec after = to_vec(f.params[0].value);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_NEAR(after[i], before[i] * (1 - 0.05 * 0.2), 1e-7);
}

TEST(OptimizerMath, SgdWithAndWithoutMomentum) {
  OptimizerConfig c;
  c.kind = FWP_OPTIMIZER_SGD;
  c.learning_rate = 0.1;
  run_against_reference(c, 3, "sgd");
  c.momentum = 0.9;
  c.weight_decay = 0.01;
  run_against_reference(c, 4, "sgd with momentum and weight decay");
  // First step by hand: p - lr * g.
  Fixture f;
  OptimizerConfig plain;
  plain.kind = FWP_OPTIMIZER_SGD;
  plain.learning_rate = 0.5;
  Optimizer opt(f.backend, f.params, plain);
  set(f.params[1].grad, {1.0, -2.0, 0.0, 4.0});
  f.params[0].grad.zero();
  opt.step();
  const Vec b = to_vec(f.params[1].value);
  EXPECT_NEAR(b[0], 1.0 - 0.5, 1e-7);
  EXPECT_NEAR(b[1], 2.0 + 1.0, 1e-7);
  EXPECT_NEAR(b[2], -3.0, 1e-7);
  EXPECT_NEAR(b[3], 0.1 - 2.0, 1e-6);
}

TEST(OptimizerMath, ClippingScalesTheGlobalNorm) {
  OptimizerConfig c;
  c.kind = FWP_OPTIMIZER_SGD;
  c.learning_rate = 1.0;
  c.clip_grad_norm = 0.5;
  run_against_reference(c, 3, "sgd clipped");
  c.kind = FWP_OPTIMIZER_ADAM;
  c.learning_rate = 0.01;
  run_against_reference(c, 3, "adam clipped");

  // By hand: gradients (3, 4) on one tensor have norm 5; clipped to 1 they are (0.6, 0.8).
  auto backend = make_cpu_backend<float>(1);
  ParameterList<float> params;
  set(params.add(backend, "w", {2}).value, {0.0, 0.0});
  OptimizerConfig s;
  s.kind = FWP_OPTIMIZER_SGD;
  s.learning_rate = 1.0;
  s.clip_grad_norm = 1.0;
  Optimizer opt(backend, params, s);
  set(params[0].grad, {3.0, 4.0});
  EXPECT_NEAR(opt.step(), 5.0, 1e-12) << "the norm is reported before clipping";
  const Vec w = to_vec(params[0].value);
  EXPECT_NEAR(w[0], -3.0 / (5.0 + 1e-6), 1e-7);
  EXPECT_NEAR(w[1], -4.0 / (5.0 + 1e-6), 1e-7);
  // A norm below the threshold is left alone.
  set(params[0].grad, {0.3, 0.4});
  EXPECT_NEAR(opt.step(), 0.5, 1e-7);
  const Vec w2 = to_vec(params[0].value);
  EXPECT_NEAR(w2[0], w[0] - 0.3, 1e-6);
  EXPECT_NEAR(w2[1], w[1] - 0.4, 1e-6);
}

TEST(OptimizerState, NonFiniteGradientChangesNothing) {
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    OptimizerConfig c;
    c.kind = FWP_OPTIMIZER_ADAM;
    c.learning_rate = 0.01;
    Fixture f;
    Optimizer opt(f.backend, f.params, c);
    Reference ref;
    ref.c = c;
    ref.p = trainable_values(f.params);
    f.set_grads(0);
    opt.step();
    ref.step(trainable_grads(f.params));
    const auto values = trainable_values(f.params);
    // A bad gradient in the second tensor, after a good first one.
    f.set_grads(1);
    Vec g = to_vec(f.params[1].grad);
    g[2] = bad;
    set(f.params[1].grad, g);
    expect_error([&] { opt.step(); }, FWP_ERR_INVALID_ARGUMENT, "'b'");
    EXPECT_EQ(trainable_values(f.params), values) << "no parameter moved";
    EXPECT_EQ(opt.steps(), 1);
    // The moments did not move either: the next good step matches a reference that never saw the bad one.
    f.set_grads(2);
    opt.step();
    ref.step(trainable_grads(f.params));
    expect_close(trainable_values(f.params), ref.p, 2e-6, "after a rejected step");
    EXPECT_EQ(opt.steps(), 2);
  }
}

TEST(OptimizerState, LearningRateStepsAndStateTensors) {
  Fixture f;
  OptimizerConfig c;
  c.kind = FWP_OPTIMIZER_ADAM;
  Optimizer opt(f.backend, f.params, c);
  EXPECT_DOUBLE_EQ(opt.learning_rate(), 1e-3);
  opt.set_learning_rate(0.25);
  EXPECT_DOUBLE_EQ(opt.learning_rate(), 0.25);
  expect_error([&] { opt.set_learning_rate(-1.0); }, FWP_ERR_INVALID_ARGUMENT, "lr");
  expect_error([&] { opt.set_learning_rate(std::nan("")); }, FWP_ERR_INVALID_ARGUMENT, "lr");
  EXPECT_DOUBLE_EQ(opt.learning_rate(), 0.25);
  // A changed learning rate applies from the next step on (schedules).
  Reference ref;
  ref.c = c;
  ref.c.learning_rate = 0.25;
  ref.p = trainable_values(f.params);
  f.set_grads(0);
  opt.step();
  ref.step(trainable_grads(f.params));
  opt.set_learning_rate(0.01);
  ref.c.learning_rate = 0.01;
  f.set_grads(1);
  opt.step();
  ref.step(trainable_grads(f.params));
  expect_close(trainable_values(f.params), ref.p, 2e-6, "schedule");

  const auto tensors = opt.state_tensors();
  ASSERT_EQ(tensors.size(), 4u);  // two moments for each of the two trainable tensors
  EXPECT_EQ(tensors[0].param_index, 0);
  EXPECT_EQ(tensors[0].kind, "exp_avg");
  EXPECT_EQ(tensors[1].kind, "exp_avg_sq");
  EXPECT_EQ(tensors[2].param_index, 1);
  EXPECT_EQ(tensors[0].buffer->size(), 6);

  Fixture g;
  OptimizerConfig sgd;
  sgd.kind = FWP_OPTIMIZER_SGD;
  EXPECT_TRUE(Optimizer(g.backend, g.params, sgd).state_tensors().empty());
  sgd.momentum = 0.5;
  const auto momentum = Optimizer(g.backend, g.params, sgd).state_tensors();
  ASSERT_EQ(momentum.size(), 2u);
  EXPECT_EQ(momentum[1].kind, "momentum_buffer");

  // zero_grad clears the trainable gradients.
  f.set_grads(3);
  opt.zero_grad();
  for (const auto& [name, grad] : trainable_grads(f.params)) {
    for (double x : grad) EXPECT_EQ(x, 0.0) << name;
  }
}

TEST(OptimizerConfigCheck, RejectsEveryBadField) {
  auto bad = [](auto edit, fwp_status status, const std::string& fragment) {
    OptimizerConfig c;
    edit(c);
    expect_error([&] { c.validate("config->"); }, status, fragment);
  };
  bad([](OptimizerConfig& c) { c.kind = static_cast<fwp_optimizer_kind>(3); }, FWP_ERR_OUT_OF_RANGE, "config->kind");
  bad([](OptimizerConfig& c) { c.learning_rate = -1e-3; }, FWP_ERR_INVALID_ARGUMENT, "config->learning_rate");
  bad([](OptimizerConfig& c) { c.learning_rate = INFINITY; }, FWP_ERR_INVALID_ARGUMENT, "config->learning_rate");
  bad([](OptimizerConfig& c) { c.beta1 = 1.0; }, FWP_ERR_INVALID_ARGUMENT, "config->beta1");
  bad([](OptimizerConfig& c) { c.beta2 = -0.1; }, FWP_ERR_INVALID_ARGUMENT, "config->beta2");
  bad([](OptimizerConfig& c) { c.eps = 0; }, FWP_ERR_INVALID_ARGUMENT, "config->eps");
  bad([](OptimizerConfig& c) { c.weight_decay = NAN; }, FWP_ERR_INVALID_ARGUMENT, "config->weight_decay");
  bad([](OptimizerConfig& c) { c.clip_grad_norm = -1; }, FWP_ERR_INVALID_ARGUMENT, "config->clip_grad_norm");
  bad(
      [](OptimizerConfig& c) {
        c.kind = FWP_OPTIMIZER_SGD;
        c.momentum = 1.0;
      },
      FWP_ERR_INVALID_ARGUMENT, "config->momentum");
  bad([](OptimizerConfig& c) { c.momentum = 0.9; }, FWP_ERR_INVALID_ARGUMENT, "momentum must be 0 for Adam");
  OptimizerConfig ok;
  EXPECT_NO_THROW(ok.validate());
  // JSON round trip and strict parsing.
  ok.kind = FWP_OPTIMIZER_ADAMW;
  ok.weight_decay = 0.01;
  EXPECT_EQ(OptimizerConfig::from_json(ok.to_json()).to_json(), ok.to_json());
  nlohmann::json j = ok.to_json();
  j.erase("beta2");
  expect_error([&] { OptimizerConfig::from_json(j); }, FWP_ERR_FORMAT, "beta2");
  j = ok.to_json();
  j["kind"] = "lion";
  expect_error([&] { OptimizerConfig::from_json(j); }, FWP_ERR_FORMAT, "kind");
}

// ---- the update ops in double ------------------------------------------------------------------

TEST(OptimizerOps, AdamAndSgdUpdatesInDouble) {
  auto be = make_cpu_backend<double>(2);
  const int64_t n = 40000;  // several blocks
  Rng rng(5);
  Vec p(n), g(n), m(n), v(n);
  for (int64_t i = 0; i < n; ++i) {
    p[i] = rng.normal();
    g[i] = rng.normal();
    m[i] = 0.1 * rng.normal();
    v[i] = rng.uniform();
  }
  for (bool decoupled : {false, true}) {
    AdamStepParams hp;
    hp.lr = 0.01;
    hp.beta1 = 0.9;
    hp.beta2 = 0.99;
    hp.eps = 1e-8;
    hp.weight_decay = 0.1;
    hp.decoupled_weight_decay = decoupled;
    hp.bias_correction1 = 1 - std::pow(0.9, 3.0);
    hp.bias_correction2 = 1 - std::pow(0.99, 3.0);
    hp.grad_scale = 0.5;
    Buffer<double> bp(be, n), bg(be, n), bm(be, n), bv(be, n);
    bp.from_host(p.data(), n);
    bg.from_host(g.data(), n);
    bm.from_host(m.data(), n);
    bv.from_host(v.data(), n);
    be->adam_update(hp, n, bp.data(), bg.data(), bm.data(), bv.data());
    const auto rp = bp.to_host(), rm = bm.to_host(), rv = bv.to_host();
    for (int64_t i = 0; i < n; i += 997) {
      double gi = 0.5 * g[i] + (decoupled ? 0.0 : 0.1 * p[i]);
      double pi = decoupled ? p[i] * (1 - 0.01 * 0.1) : p[i];
      const double mi = 0.9 * m[i] + 0.1 * gi, vi = 0.99 * v[i] + 0.01 * gi * gi;
      pi -= 0.01 * (mi / hp.bias_correction1) / (std::sqrt(vi / hp.bias_correction2) + 1e-8);
      EXPECT_NEAR(rm[i], mi, 1e-15);
      EXPECT_NEAR(rv[i], vi, 1e-15);
      EXPECT_NEAR(rp[i], pi, 1e-13);
    }
  }
  SgdStepParams sp;
  sp.lr = 0.1;
  sp.momentum = 0.9;
  sp.weight_decay = 0.01;
  sp.grad_scale = 2.0;
  Buffer<double> bp(be, n), bg(be, n), bm(be, n);
  bp.from_host(p.data(), n);
  bg.from_host(g.data(), n);
  bm.from_host(m.data(), n);
  be->sgd_update(sp, n, bp.data(), bg.data(), bm.data());
  const auto rp = bp.to_host(), rm = bm.to_host();
  for (int64_t i = 0; i < n; i += 991) {
    const double gi = 2.0 * g[i] + 0.01 * p[i];
    const double mi = 0.9 * m[i] + gi;
    EXPECT_NEAR(rm[i], mi, 1e-14);
    EXPECT_NEAR(rp[i], p[i] - 0.1 * mi, 1e-14);
  }
}

TEST(OptimizerOps, SumOfSquaresDoesNotDependOnThreads) {
  const int64_t n = 100003;
  std::vector<float> x(n);
  Rng rng(6);
  double ref = 0.0;
  for (auto& v : x) {
    v = static_cast<float>(rng.normal());
    ref += double(v) * double(v);
  }
  double results[2];
  for (int threads : {1, 2}) {
    auto be = make_cpu_backend<float>(threads);
    Buffer<float> b(be, n);
    b.from_host(x.data(), n);
    results[threads - 1] = be->sum_squares(b.data(), n);
  }
  EXPECT_EQ(results[0], results[1]);
  EXPECT_NEAR(results[0], ref, 1e-9 * ref);
  x[77] = std::numeric_limits<float>::quiet_NaN();
  auto be = make_cpu_backend<float>(2);
  Buffer<float> b(be, n);
  b.from_host(x.data(), n);
  EXPECT_TRUE(std::isnan(be->sum_squares(b.data(), n)));
}

}  // namespace
}  // namespace fwp
