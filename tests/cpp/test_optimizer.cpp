// Optimizers: SGD (with momentum and weight decay), Adam and AdamW against
// hand-written double references of PyTorch's update rules, global-norm
// clipping, rejection of non-finite gradients, learning-rate schedules against
// closed-form doubles, the flat parameter block the optimizer updates in one
// op, and the update ops in double.
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
#include "expect_error.h"

namespace fwp {
namespace {

using Vec = std::vector<double>;

using fwp::test::expect_error;

// A Buffer or a BlockView as doubles.
template <typename B>
Vec to_vec(const B& b) {
  const auto h = b.to_host();
  return Vec(h.begin(), h.end());
}

template <typename B>
void set(B& b, const Vec& v) {
  std::vector<float> f(v.begin(), v.end());
  b.from_host(f.data(), static_cast<int64_t>(f.size()));
}

// Two trainable tensors and one fixed buffer, declared then allocated as the
// layers and models do (the fixed one first, so the layout must move it after).
struct Fixture {
  std::shared_ptr<Backend<float>> backend = make_cpu_backend<float>(2);
  ParameterList<float> params;
  Fixture() {
    params.declare("a", {2, 3});
    params.declare("b", {4});
    params.declare("fixed", {3}, /*trainable=*/false);
    params.allocate(backend);
    set(params[0].value, {0.5, -1.0, 2.0, 0.25, -0.75, 1.5});
    set(params[1].value, {1.0, 2.0, -3.0, 0.1});
    set(params[2].value, {7.0, 8.0, 9.0});
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
// The learning rate of step t + 1 is lr_after(t) when set, else c.learning_rate.
struct Reference {
  OptimizerConfig c;
  std::function<double(int64_t)> lr_after;
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
    const double lr = lr_after ? lr_after(t) : c.learning_rate;
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
          x[i] -= lr * g;
          continue;
        }
        if (c.kind == FWP_OPTIMIZER_ADAM) g += c.weight_decay * x[i];
        if (c.kind == FWP_OPTIMIZER_ADAMW) x[i] *= 1.0 - lr * c.weight_decay;
        m1[i] = c.beta1 * m1[i] + (1 - c.beta1) * g;
        m2[i] = c.beta2 * m2[i] + (1 - c.beta2) * g * g;
        const double bc1 = 1 - std::pow(c.beta1, double(t)), bc2 = 1 - std::pow(c.beta2, double(t));
        x[i] -= lr * (m1[i] / bc1) / (std::sqrt(m2[i] / bc2) + c.eps);
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
void run_against_reference(const OptimizerConfig& config, int steps, const std::string& what,
                           std::function<double(int64_t)> lr_after = nullptr) {
  Fixture f;
  Optimizer opt(f.backend, f.params, config);
  Reference ref;
  ref.c = config;
  ref.lr_after = std::move(lr_after);
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
    expect_error(FWP_ERR_INVALID_ARGUMENT, "'b'", [&] { opt.step(); });
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
  expect_error(FWP_ERR_INVALID_ARGUMENT, "lr", [&] { opt.set_learning_rate(-1.0); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "lr", [&] { opt.set_learning_rate(std::nan("")); });
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
    expect_error(status, fragment, [&] { c.validate("config->"); });
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
  expect_error(FWP_ERR_FORMAT, "beta2", [&] { OptimizerConfig::from_json(j); });
  j = ok.to_json();
  j["kind"] = "lion";
  expect_error(FWP_ERR_FORMAT, "kind", [&] { OptimizerConfig::from_json(j); });
}

// ---- learning-rate schedules ---------------------------------------------------------------------

constexpr double kPi = 3.14159265358979323846;

OptimizerConfig schedule(fwp_lr_schedule kind, double base, int64_t warmup, int64_t total = 0, double floor = 0.0) {
  OptimizerConfig c;
  c.learning_rate = base;
  c.lr_schedule = kind;
  c.warmup_steps = warmup;
  c.total_steps = total;
  c.min_learning_rate = floor;
  return c;
}

void expect_lr(const OptimizerConfig& c, int64_t steps, double want) {
  EXPECT_NEAR(c.learning_rate_after(steps), want, 1e-14 * std::max(1e-3, std::fabs(want)))
      << "after " << steps << " steps";
}

TEST(OptimizerSchedule, ConstantWithAndWithoutWarmup) {
  const OptimizerConfig plain = schedule(FWP_LR_CONSTANT, 0.02, 0);
  for (int64_t n : {0, 1, 7, 1000000}) EXPECT_EQ(plain.learning_rate_after(n), 0.02) << n;
  const OptimizerConfig warm = schedule(FWP_LR_CONSTANT, 0.02, 4);
  expect_lr(warm, 0, 0.0);  // the first step uses lr 0 (warm-up from 0, as fairseq / transformers)
  expect_lr(warm, 1, 0.005);
  expect_lr(warm, 3, 0.015);
  EXPECT_EQ(warm.learning_rate_after(4), 0.02) << "the warm-up ends exactly at the base";
  EXPECT_EQ(warm.learning_rate_after(5000), 0.02);
}

TEST(OptimizerSchedule, WarmupCosineAtChosenSteps) {
  const double base = 0.1, floor = 0.001;
  const OptimizerConfig c = schedule(FWP_LR_WARMUP_COSINE, base, 10, 110, floor);
  expect_lr(c, 0, 0.0);
  expect_lr(c, 1, 0.01);
  expect_lr(c, 9, 0.09);
  expect_lr(c, 10, base);                                                       // decay starts at the peak
  expect_lr(c, 35, floor + (base - floor) * 0.5 * (1 + std::cos(kPi / 4)));    // a quarter of the way
  expect_lr(c, 60, floor + (base - floor) * 0.5);                              // half way: the mean
  expect_lr(c, 85, floor + (base - floor) * 0.5 * (1 + std::cos(3 * kPi / 4)));
  expect_lr(c, 109, floor + (base - floor) * 0.5 * (1 + std::cos(kPi * 99.0 / 100.0)));
  EXPECT_EQ(c.learning_rate_after(110), floor) << "the decay ends at the floor";
  EXPECT_EQ(c.learning_rate_after(111), floor) << "and stays there (no restart)";
  EXPECT_EQ(c.learning_rate_after(int64_t(1) << 40), floor);
  // Monotone after the warm-up.
  for (int64_t n = 10; n < 110; ++n) EXPECT_GE(c.learning_rate_after(n), c.learning_rate_after(n + 1)) << n;

  // Edges: no warm-up (the first step uses the peak); a one-step decay; a zero floor.
  const OptimizerConfig no_warmup = schedule(FWP_LR_WARMUP_COSINE, base, 0, 4);
  EXPECT_EQ(no_warmup.learning_rate_after(0), base);
  expect_lr(no_warmup, 2, base * 0.5);
  EXPECT_EQ(no_warmup.learning_rate_after(4), 0.0);
  const OptimizerConfig one_step = schedule(FWP_LR_WARMUP_COSINE, base, 3, 4, floor);
  expect_lr(one_step, 2, base * 2.0 / 3.0);
  EXPECT_EQ(one_step.learning_rate_after(3), base);
  EXPECT_EQ(one_step.learning_rate_after(4), floor);
}

TEST(OptimizerSchedule, InverseSqrtAtChosenSteps) {
  const double base = 1e-3;
  const OptimizerConfig c = schedule(FWP_LR_INVERSE_SQRT, base, 4000);
  expect_lr(c, 0, 0.0);
  expect_lr(c, 2000, 0.5e-3);
  EXPECT_EQ(c.learning_rate_after(4000), base);
  expect_lr(c, 16000, 0.5e-3);  // sqrt(4000 / 16000) = 1/2
  expect_lr(c, 1000000, base * std::sqrt(4000.0 / 1e6));
  // With a floor the decay stops there.
  const OptimizerConfig floored = schedule(FWP_LR_INVERSE_SQRT, base, 4000, 0, 6e-4);
  expect_lr(floored, 2000, 0.5e-3);  // the floor bounds the decay, not the warm-up
  expect_lr(floored, 9000, base * std::sqrt(4000.0 / 9000.0));
  EXPECT_EQ(floored.learning_rate_after(16000), 6e-4);

  // "Attention is all you need": lrate = d_model^-0.5 * min(s^-0.5, s * W^-1.5) equals
  // lr(n) at s = n when base = d_model^-0.5 * W^-0.5.
  const double d_model = 512, W = 4000;
  const OptimizerConfig noam = schedule(FWP_LR_INVERSE_SQRT, 1 / std::sqrt(d_model * W), 4000);
  for (double s : {1.0, 100.0, 3999.0, 4000.0, 4001.0, 25000.0, 1e6}) {
    const double paper = std::pow(d_model, -0.5) * std::min(std::pow(s, -0.5), s * std::pow(W, -1.5));
    expect_lr(noam, static_cast<int64_t>(s), paper);
  }
}

TEST(OptimizerSchedule, SetLearningRateSetsTheBase) {
  Fixture f;
  Optimizer opt(f.backend, f.params, schedule(FWP_LR_WARMUP_COSINE, 0.1, 4, 12, 0.01));
  EXPECT_EQ(opt.learning_rate(), 0.0);
  for (int i = 0; i < 2; ++i) opt.step();
  EXPECT_DOUBLE_EQ(opt.learning_rate(), 0.05);
  opt.set_learning_rate(0.4);  // the warm-up now ramps to the new peak
  EXPECT_DOUBLE_EQ(opt.learning_rate(), 0.2);
  EXPECT_EQ(opt.base_learning_rate(), 0.4);
  for (int i = 0; i < 6; ++i) opt.step();  // n = 8: half way through the decay
  EXPECT_NEAR(opt.learning_rate(), 0.01 + (0.4 - 0.01) * 0.5, 1e-15);
  expect_error(FWP_ERR_INVALID_ARGUMENT, "min_learning_rate (0.01)", [&] { opt.set_learning_rate(0.005); });
  EXPECT_EQ(opt.base_learning_rate(), 0.4) << "a refused value changes nothing";
  for (int i = 0; i < 10; ++i) opt.step();
  EXPECT_EQ(opt.learning_rate(), 0.01);
}

TEST(OptimizerSchedule, DrivesTheUpdates) {
  // AdamW with a warm-up and cosine decay, against the reference fed the closed form.
  OptimizerConfig c = schedule(FWP_LR_WARMUP_COSINE, 0.05, 2, 6, 0.005);
  c.kind = FWP_OPTIMIZER_ADAMW;
  c.weight_decay = 0.1;
  c.clip_grad_norm = 1.0;
  run_against_reference(c, 8, "adamw warmup_cosine", [](int64_t n) {
    if (n < 2) return 0.05 * n / 2.0;
    if (n >= 6) return 0.005;
    return 0.005 + 0.045 * 0.5 * (1 + std::cos(kPi * (n - 2) / 4.0));
  });
  OptimizerConfig s = schedule(FWP_LR_INVERSE_SQRT, 0.2, 3);
  s.kind = FWP_OPTIMIZER_SGD;
  s.momentum = 0.9;
  run_against_reference(s, 7, "sgd inverse_sqrt", [](int64_t n) { return n < 3 ? 0.2 * n / 3.0 : 0.2 * std::sqrt(3.0 / n); });
}

TEST(OptimizerSchedule, RejectsEveryBadScheduleField) {
  auto bad = [](auto edit, fwp_status status, const std::string& fragment) {
    OptimizerConfig c;
    edit(c);
    expect_error(status, fragment, [&] { c.validate("config->"); });
  };
  using C = OptimizerConfig;
  bad([](C& c) { c.lr_schedule = static_cast<fwp_lr_schedule>(3); }, FWP_ERR_OUT_OF_RANGE,
      "config->lr_schedule must be FWP_LR_CONSTANT, FWP_LR_WARMUP_COSINE or FWP_LR_INVERSE_SQRT (got 3)");
  bad([](C& c) { c.warmup_steps = -1; }, FWP_ERR_INVALID_ARGUMENT, "config->warmup_steps must be in [0, ");
  bad([](C& c) { c.warmup_steps = C::kMaxScheduleSteps + 1; }, FWP_ERR_INVALID_ARGUMENT, "config->warmup_steps");
  bad([](C& c) { c.total_steps = 100; }, FWP_ERR_INVALID_ARGUMENT,
      "config->total_steps must be 0 unless lr_schedule is FWP_LR_WARMUP_COSINE (got 100)");
  bad([](C& c) { c.min_learning_rate = 1e-5; }, FWP_ERR_INVALID_ARGUMENT,
      "config->min_learning_rate must be 0 for FWP_LR_CONSTANT");
  bad([](C& c) { c = schedule(FWP_LR_WARMUP_COSINE, 0.1, 10, 10); }, FWP_ERR_INVALID_ARGUMENT,
      "config->total_steps must be > warmup_steps (10)");
  bad([](C& c) { c = schedule(FWP_LR_WARMUP_COSINE, 0.1, 0, 0); }, FWP_ERR_INVALID_ARGUMENT, "config->total_steps");
  bad([](C& c) { c = schedule(FWP_LR_WARMUP_COSINE, 0.1, 0, C::kMaxScheduleSteps + 1); }, FWP_ERR_INVALID_ARGUMENT,
      "config->total_steps");
  bad([](C& c) { c = schedule(FWP_LR_WARMUP_COSINE, 0.1, 0, 10, 0.2); }, FWP_ERR_INVALID_ARGUMENT,
      "config->min_learning_rate must be finite and in [0, learning_rate = 0.1] (got 0.2)");
  bad([](C& c) { c = schedule(FWP_LR_WARMUP_COSINE, 0.1, 0, 10, -0.01); }, FWP_ERR_INVALID_ARGUMENT,
      "config->min_learning_rate");
  bad([](C& c) { c = schedule(FWP_LR_INVERSE_SQRT, 0.1, 0, 0, std::nan("")); }, FWP_ERR_INVALID_ARGUMENT,
      "config->warmup_steps must be >= 1 for FWP_LR_INVERSE_SQRT");
  bad([](C& c) { c = schedule(FWP_LR_INVERSE_SQRT, 0.1, 5, 0, std::nan("")); }, FWP_ERR_INVALID_ARGUMENT,
      "config->min_learning_rate");
  bad([](C& c) { c = schedule(FWP_LR_INVERSE_SQRT, 0.1, 5, 50); }, FWP_ERR_INVALID_ARGUMENT, "config->total_steps");
  for (const OptimizerConfig& ok : {schedule(FWP_LR_CONSTANT, 0.1, 5), schedule(FWP_LR_WARMUP_COSINE, 0.1, 0, 1, 0.1),
                                    schedule(FWP_LR_INVERSE_SQRT, 0.1, 1, 0, 0.05)}) {
    EXPECT_NO_THROW(ok.validate());
  }
}

TEST(OptimizerSchedule, JsonRoundTripAndFilesWithoutSchedule) {
  const OptimizerConfig c = schedule(FWP_LR_WARMUP_COSINE, 3e-4, 100, 5000, 1e-5);
  const OptimizerConfig back = OptimizerConfig::from_json(c.to_json());
  EXPECT_EQ(back.lr_schedule, FWP_LR_WARMUP_COSINE);
  EXPECT_EQ(back.warmup_steps, 100);
  EXPECT_EQ(back.total_steps, 5000);
  EXPECT_EQ(back.min_learning_rate, 1e-5);
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_EQ(c.to_json()["lr_schedule"], "warmup_cosine");
  EXPECT_EQ(OptimizerConfig::from_json(schedule(FWP_LR_INVERSE_SQRT, 1e-3, 10).to_json()).lr_schedule,
            FWP_LR_INVERSE_SQRT);

  // A config written by 0.1.0 has no schedule members: the constant schedule.
  nlohmann::json old = OptimizerConfig().to_json();
  for (const char* key : {"lr_schedule", "warmup_steps", "total_steps", "min_learning_rate"}) old.erase(key);
  const OptimizerConfig legacy = OptimizerConfig::from_json(old);
  EXPECT_EQ(legacy.lr_schedule, FWP_LR_CONSTANT);
  EXPECT_EQ(legacy.warmup_steps, 0);
  EXPECT_EQ(legacy.to_json(), OptimizerConfig().to_json());

  auto rejected = [&](const char* key, nlohmann::json value, const std::string& fragment) {
    nlohmann::json j = c.to_json();
    j[key] = std::move(value);
    expect_error(FWP_ERR_FORMAT, fragment, [&] { OptimizerConfig::from_json(j); });
  };
  rejected("lr_schedule", "cyclic", "unknown lr_schedule 'cyclic'");
  rejected("lr_schedule", 1, "lr_schedule");
  rejected("warmup_steps", 2.5, "warmup_steps");
  rejected("warmup_steps", "100", "warmup_steps");
  rejected("total_steps", 50, "total_steps must be > warmup_steps");
  rejected("min_learning_rate", "tiny", "min_learning_rate");
}

// ---- the flat parameter block --------------------------------------------------------------------

TEST(ParameterBlock, ViewsAliasOneBlockWithTrainableParametersFirst) {
  Fixture f;
  const ParameterList<float>& params = f.params;
  ASSERT_TRUE(params.allocated());
  const int64_t align = ParameterList<float>::kAlignElements;
  EXPECT_EQ(params[0].offset, 0);
  EXPECT_EQ(params[1].offset, align) << "parameters start at aligned offsets";
  EXPECT_EQ(params.trainable_size(), 2 * align) << "the trainable range ends after 'b'";
  EXPECT_EQ(params[2].offset, params.trainable_size()) << "the fixed buffer lies after the trainable range";
  EXPECT_EQ(params.block_size(), 3 * align);
  for (int64_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params[i].value.data(), params.value_block() + params[i].offset) << params[i].name;
    EXPECT_EQ(params[i].grad.data(), params.grad_block() + params[i].offset) << params[i].name;
    EXPECT_EQ(params[i].value.size(), params[i].numel());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(params[i].value.data()) % 64, 0u) << params[i].name;
  }
  // Writing through the block is what the views read, and the padding stays zero.
  f.params.value_block()[align + 2] = 42.0f;
  EXPECT_EQ(to_vec(f.params[1].value)[2], 42.0);
  for (int64_t i = 6; i < align; ++i) EXPECT_EQ(params.value_block()[i], 0.0f) << "padding " << i;
  // zero_grad clears the whole gradient block.
  f.set_grads(0);
  f.params.zero_grad();
  for (int64_t i = 0; i < params.block_size(); ++i) ASSERT_EQ(params.grad_block()[i], 0.0f) << i;
}

TEST(ParameterBlock, DeclareAfterAllocateIsRefusedAndAddKeepsValues) {
  Fixture f;
  expect_error(FWP_ERR_INTERNAL, "declare every parameter first", [&] { f.params.declare("late", {2}); });
  expect_error(FWP_ERR_INTERNAL, "allocate called twice", [&] { f.params.allocate(f.backend); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "parameter 'huge'", [&] { ParameterList<float>().declare("huge", {int64_t(1) << 30, int64_t(1) << 30}); });
  f.set_grads(1);
  const Vec a = to_vec(f.params[0].value), b_grad = to_vec(f.params[1].grad), fixed = to_vec(f.params[2].value);
  f.params.add(f.backend, "c", {5});  // trainable: lands before the fixed buffer, which moves
  EXPECT_EQ(f.params[3].offset, 2 * ParameterList<float>::kAlignElements);
  EXPECT_EQ(f.params[2].offset, f.params.trainable_size());
  EXPECT_EQ(to_vec(f.params[0].value), a);
  EXPECT_EQ(to_vec(f.params[1].grad), b_grad);
  EXPECT_EQ(to_vec(f.params[2].value), fixed);
  EXPECT_EQ(to_vec(f.params[3].value), Vec(5, 0.0));
}

TEST(ParameterBlock, OptimizerMomentsShareTheLayoutAndOneNormCoversAllTrainable) {
  Fixture f;
  OptimizerConfig c;
  c.kind = FWP_OPTIMIZER_ADAM;
  Optimizer opt(f.backend, f.params, c);
  const auto tensors = opt.state_tensors();
  ASSERT_EQ(tensors.size(), 4u);
  // exp_avg of 'b' sits at b's offset in the same block as exp_avg of 'a'.
  EXPECT_EQ(tensors[2].buffer->data() - tensors[0].buffer->data(), f.params[1].offset);
  EXPECT_EQ(tensors[3].buffer->data() - tensors[1].buffer->data(), f.params[1].offset);

  // The norm is that of both trainable tensors together; a (wrongly) written
  // gradient of the fixed buffer lies outside the range and counts for nothing.
  f.set_grads(0);
  double want = 0.0;
  for (int64_t i = 0; i < 2; ++i)
    for (double g : to_vec(f.params[i].grad)) want += g * g;
  set(f.params[2].grad, {1e3, 1e3, 1e3});
  const Vec fixed = to_vec(f.params[2].value);
  EXPECT_NEAR(opt.step(), std::sqrt(want), 1e-12 * std::sqrt(want));
  EXPECT_EQ(to_vec(f.params[2].value), fixed);

  // Re-laying out the parameters under an optimizer is caught, not silently wrong.
  f.params.add(f.backend, "late", {2});
  expect_error(FWP_ERR_INTERNAL, "re-allocated", [&] { opt.step(); });
}

TEST(ParameterBlock, NonFiniteGradientIsNamedAfterTheOneReduction) {
  for (int64_t bad_index : {0, 1}) {
    Fixture f;
    Optimizer opt(f.backend, f.params, OptimizerConfig());
    f.set_grads(0);
    Vec g = to_vec(f.params[bad_index].grad);
    g.back() = std::numeric_limits<double>::infinity();
    set(f.params[bad_index].grad, g);
    expect_error(FWP_ERR_INVALID_ARGUMENT, "'" + f.params[bad_index].name + "'", [&] { opt.step(); });
  }
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
