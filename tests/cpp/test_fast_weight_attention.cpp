// The fast-weight attention module (nn/fast_weight_attention.h) and the run
// state outside it (nn/attention_state.h):
// - FastWeightLayer<double> (now a wrapper of the module) reproduces the
//   results the layer gave before the module existed (recorded fingerprints);
// - the module on device views equals the layer, step with an external state
//   equals step with the layer's own state;
// - AttentionState reset / copy / reorder semantics;
// - central-difference gradient check of the module in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "nn/attention_state.h"
#include "nn/fast_weight_attention.h"
#include "nn/fast_weight_layer.h"

namespace fwp {
namespace {

using Vec = std::vector<double>;

Vec random_vec(int64_t n, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  Vec v(static_cast<size_t>(n));
  for (double& e : v) e = scale * rng.normal();
  return v;
}

// Two numbers that change with any element of v: a weighted sum and the sum of squares.
struct Fingerprint {
  double weighted = 0, squares = 0;
};

Fingerprint fingerprint(const Vec& v) {
  Fingerprint f;
  for (size_t i = 0; i < v.size(); ++i) {
    f.weighted += v[i] * (1.0 + 0.001 * static_cast<double>(i % 97));
    f.squares += v[i] * v[i];
  }
  return f;
}

// ---- the layer's results before the refactoring ------------------------------------------------

struct GoldenCase {
  const char* name;
  FastWeightLayerConfig config;
  bool training;
  bool initial_state;
};

std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> cases;
  FastWeightLayerConfig base;
  base.d_model = 6;
  base.num_heads = 2;
  base.d_head = 3;
  base.init_std = 0.4;
  base.norm_eps = 1e-6;
  {
    FastWeightLayerConfig c = base;
    c.feature_map = FeatureMap::Dpfp;
    c.dpfp_nu = 2;
    c.update_rule = UpdateRule::Delta;
    c.sum_normalize = true;
    c.attn_normalize = true;
    c.use_bias = true;
    c.algorithm = Algorithm::Chunked;
    c.chunk_size = 2;
    c.carry_state = true;
    cases.push_back({"dpfp2_delta_norms_bias_chunked", c, true, true});
  }
  {
    FastWeightLayerConfig c = base;
    c.feature_map = FeatureMap::Favor;
    c.favor_features = 4;
    c.favor_redraw = true;
    c.update_rule = UpdateRule::Sum;
    c.sum_normalize = false;
    c.carry_state = true;
    cases.push_back({"favor_redraw_sum_carry", c, true, false});
  }
  {
    FastWeightLayerConfig c = base;
    c.feature_map = FeatureMap::Elu;
    c.update_rule = UpdateRule::Sum;
    c.sum_normalize = false;
    c.attn_normalize = true;
    c.scale_output = false;
    c.algorithm = Algorithm::Recurrent;
    cases.push_back({"elu_sum_attnnorm_eval", c, false, true});
  }
  {
    FastWeightLayerConfig c = base;
    c.softmax = true;
    c.update_rule = UpdateRule::Sum;
    c.sum_normalize = false;
    c.use_bias = true;
    cases.push_back({"softmax_bias", c, true, false});
  }
  return cases;
}

// Everything observable of one run: forward, backward, final state, three steps.
std::vector<Fingerprint> run_golden(const GoldenCase& gc) {
  const int64_t B = 2, T = 5, D = gc.config.d_model;
  FastWeightLayer<double> layer(gc.config, make_cpu_backend<double>(1), Rng(11));
  // Biases start at zero; give them values so that their use shows.
  for (int64_t i = 0; i < layer.params().size(); ++i) {
    Parameter<double>& p = layer.params()[i];
    if (p.name.find(".bias") != std::string::npos) {
      const Vec v = random_vec(p.numel(), 50 + static_cast<uint64_t>(i), 0.3);
      p.value.from_host(v.data(), p.numel());
    }
  }
  layer.set_training(gc.training);
  const bool fast = !gc.config.softmax;
  if (gc.initial_state) {
    const Vec w = random_vec(layer.state_w_count(B), 21, 0.5), z = random_vec(layer.state_z_count(B), 22, 0.1);
    Vec z_pos = z;
    for (double& e : z_pos) e = std::abs(e) + 0.5;  // a positive normaliser
    layer.set_state(B, w.data(), z_pos.data());
  }
  std::vector<Fingerprint> out;
  const Vec x = random_vec(B * T * D, 31), dy = random_vec(B * T * D, 32);
  Vec y(x.size()), dx(x.size());
  layer.forward(x.data(), B, T, y.data());
  out.push_back(fingerprint(y));
  layer.backward(dy.data(), B, T, dx.data());
  out.push_back(fingerprint(dx));
  Vec grads;
  for (int64_t i = 0; i < layer.params().size(); ++i) {
    const Vec g = layer.params()[i].grad.to_host();
    grads.insert(grads.end(), g.begin(), g.end());
  }
  out.push_back(fingerprint(grads));
  if (fast) {
    Vec dw(static_cast<size_t>(layer.state_w_count(B))), dz(static_cast<size_t>(layer.state_z_count(B)));
    layer.get_state_grad(dw.data(), dz.data());
    out.push_back(fingerprint(dw));
    out.push_back(fingerprint(dz));
  }
  // Steps continue from the state the forward left (or the set one).
  const Vec xs = random_vec(B * 3 * D, 33);
  Vec ys;
  for (int64_t t = 0; t < 3; ++t) {
    Vec xt(static_cast<size_t>(B * D)), yt(static_cast<size_t>(B * D));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d) xt[static_cast<size_t>(b * D + d)] = xs[static_cast<size_t>((b * 3 + t) * D + d)];
    layer.step(xt.data(), B, yt.data());
    ys.insert(ys.end(), yt.begin(), yt.end());
  }
  out.push_back(fingerprint(ys));
  if (fast) {
    Vec w(static_cast<size_t>(layer.state_w_count(B))), z(static_cast<size_t>(layer.state_z_count(B)));
    layer.get_state(w.data(), z.data());
    out.push_back(fingerprint(w));
    out.push_back(fingerprint(z));
  }
  return out;
}

// Recorded from FastWeightLayer<double> before it became a wrapper of the
// module (commit 7f21786): forward y, dx, parameter gradients, dW0, dz0 (fast
// weights), three steps' y, then the final W and z.
struct Recorded {
  const char* name;
  std::vector<Fingerprint> values;
};

const std::vector<Recorded>& recorded() {
  static const std::vector<Recorded> r = {
  {"dpfp2_delta_norms_bias_chunked", {{-3.5545840956707808, 9.3334088904617811}, {-1.1137730640431032, 4.6406806809754313}, {10.200859285022528, 116.02029705773788}, {4.3720112656490109, 14.705130816063845}, {-0.49517648030480199, 4.6666484240615356}, {-2.9345241392533286, 7.3869044341340038}, {-4.5490722541086743, 56.734621351305165}, {61.543854431565293, 99.544160275584645}, }},
  {"favor_redraw_sum_carry", {{-0.077368920682395592, 3.616565899891786}, {6.7228425963322866, 19.084683745665696}, {2.7972207458290734, 84.797796255507947}, {7.5439683852814401, 11.553855534839476}, {0, 0}, {-8.3175933121789623, 46.95660277672804}, {-10.78303247331756, 235.91329679536437}, {0, 0}, }},
  {"elu_sum_attnnorm_eval", {{-17.787601741260048, 20.830577125461975}, {6.1763862185294931, 21.587455809180462}, {-15.031421927446528, 190.12138125719341}, {2.3886653771904873, 2.2248471773542104}, {0.25476159865556647, 0.22699470197142621}, {-3.8901955362047564, 18.1523896606856}, {-11.019198324756985, 319.20130038093868}, {46.962713997611857, 191.2532461050443}, }},
  {"softmax_bias", {{-8.2692452360805255, 28.972052777204897}, {7.3045104909648781, 50.922795664738004}, {-4.963639455787205, 441.19254538738255}, {-7.1009780415711292, 39.79892102687532}, }},
  };
  return r;
}

TEST(FastWeightAttentionGolden, LayerReproducesItsResultsFromBeforeTheModule) {
  const std::vector<GoldenCase> cases = golden_cases();
  ASSERT_EQ(cases.size(), recorded().size());
  for (size_t c = 0; c < cases.size(); ++c) {
    SCOPED_TRACE(cases[c].name);
    const std::vector<Fingerprint> now = run_golden(cases[c]);
    const std::vector<Fingerprint>& then = recorded()[c].values;
    ASSERT_EQ(now.size(), then.size());
    for (size_t i = 0; i < now.size(); ++i) {
      // The output scale now multiplies the merged heads before out_proj
      // instead of the product after it: equal up to double rounding.
      EXPECT_NEAR(now[i].weighted, then[i].weighted, 1e-11 * (1 + std::abs(then[i].weighted))) << "fingerprint " << i;
      EXPECT_NEAR(now[i].squares, then[i].squares, 1e-11 * (1 + std::abs(then[i].squares))) << "fingerprint " << i;
    }
  }
}

// ---- the module on device views ------------------------------------------------------------

std::shared_ptr<Backend<double>> cpu() { return make_cpu_backend<double>(1); }

// A module with its own parameter list, initialised like a layer from `seed`.
struct ModuleUnderTest {
  std::shared_ptr<Backend<double>> backend = cpu();
  ParameterList<double> params;
  std::unique_ptr<FastWeightAttention<double>> attention;
  FastWeightAttentionWorkspace<double> ws;

  ModuleUnderTest(const FastWeightAttentionConfig& config, uint64_t seed) {
    attention = std::make_unique<FastWeightAttention<double>>(params, backend, "", config);
    params.allocate(backend);
    Rng rng(seed);
    attention->init(params, rng);
  }
};

FastWeightLayerConfig module_config(bool softmax) {
  FastWeightLayerConfig c;
  c.d_model = 6;
  c.num_heads = 2;
  c.d_head = 3;
  c.init_std = 0.4;
  if (softmax) {
    c.softmax = true;
    c.update_rule = UpdateRule::Sum;
    c.sum_normalize = false;
  } else {
    c.feature_map = FeatureMap::Dpfp;
    c.dpfp_nu = 2;
    c.update_rule = UpdateRule::Delta;
    c.sum_normalize = true;
    c.attn_normalize = true;
    c.algorithm = Algorithm::Recurrent;
  }
  c.use_bias = true;
  return c;
}

// Gives the biases values (they start at zero) in both lists alike.
void set_biases(ParameterList<double>& params) {
  for (int64_t i = 0; i < params.size(); ++i) {
    Parameter<double>& p = params[i];
    if (p.name.find(".bias") != std::string::npos) {
      const Vec v = random_vec(p.numel(), 70 + static_cast<uint64_t>(i), 0.3);
      p.value.from_host(v.data(), p.numel());
    }
  }
}

class ModuleVsLayer : public ::testing::TestWithParam<bool> {};

TEST_P(ModuleVsLayer, ForwardBackwardEqualTheLayer) {
  const FastWeightLayerConfig cfg = module_config(GetParam());
  FastWeightLayer<double> layer(cfg, cpu(), Rng(5));
  ModuleUnderTest m(cfg, 5);
  ASSERT_EQ(m.params.size(), layer.params().size());
  for (int64_t i = 0; i < m.params.size(); ++i) {
    EXPECT_EQ(m.params[i].name, layer.params()[i].name);
    EXPECT_EQ(m.params[i].value.to_host(), layer.params()[i].value.to_host()) << m.params[i].name;
  }
  set_biases(m.params);
  set_biases(layer.params());
  layer.set_training(false);

  const int64_t B = 2, T = 4, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 1), dy = random_vec(B * T * D, 2);
  AttentionState<double> state = m.attention->make_state(cfg.softmax ? 0 : B);
  if (!cfg.softmax) {
    const Vec w0 = random_vec(state.w_count(B), 3, 0.5);
    Vec z0 = random_vec(state.z_count(B), 4);
    for (double& e : z0) e = std::abs(e) + 0.5;
    state.set_host(B, w0.data(), z0.data());
    layer.set_state(B, w0.data(), z0.data());
  }
  Vec y_layer(x.size()), y_module(x.size()), dx_layer(x.size()), dx_module(x.size());
  layer.forward(x.data(), B, T, y_layer.data());
  layer.backward(dy.data(), B, T, dx_layer.data());
  // On the CPU backend device memory is host memory: views of the vectors.
  const Shape shape{B, T, D};
  m.attention->forward(m.params, ConstView<double>(x.data(), shape), cfg.softmax ? nullptr : &state, StateUpdate::Keep,
                       TensorView<double>(y_module.data(), shape), m.ws);
  m.attention->backward(m.params, ConstView<double>(x.data(), shape), ConstView<double>(dy.data(), shape),
                        TensorView<double>(dx_module.data(), shape), InputGrad::Overwrite, m.ws);
  EXPECT_EQ(y_module, y_layer);
  EXPECT_EQ(dx_module, dx_layer);
  for (int64_t i = 0; i < m.params.size(); ++i)
    EXPECT_EQ(m.params[i].grad.to_host(), layer.params()[i].grad.to_host()) << m.params[i].name;
  if (!cfg.softmax) {
    Vec dw(static_cast<size_t>(state.w_count(B))), dz(static_cast<size_t>(state.z_count(B)));
    layer.get_state_grad(dw.data(), dz.data());
    EXPECT_EQ(m.ws.grad_w.to_host(), dw);
    EXPECT_EQ(m.ws.grad_z.to_host(), dz);
  }

  // InputGrad::Accumulate adds to what dx holds.
  Vec dx_acc(x.size(), 1.0);
  m.attention->backward(m.params, ConstView<double>(x.data(), shape), ConstView<double>(dy.data(), shape),
                        TensorView<double>(dx_acc.data(), shape), InputGrad::Accumulate, m.ws);
  for (size_t i = 0; i < dx_acc.size(); ++i) EXPECT_NEAR(dx_acc[i], dx_module[i] + 1.0, 1e-12);
}

INSTANTIATE_TEST_SUITE_P(FastWeightAndSoftmax, ModuleVsLayer, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "softmax" : "fast_weight";
                         });

TEST_P(ModuleVsLayer, StepWithExternalStateEqualsOwnState) {
  const FastWeightLayerConfig cfg = module_config(GetParam());
  FastWeightLayer<double> layer(cfg, cpu(), Rng(6));
  set_biases(layer.params());
  AttentionState<double> external = layer.make_state(0);
  const int64_t B = 3, D = cfg.d_model;
  // 20 steps cross the first growth of a softmax cache (16 positions).
  for (int64_t t = 0; t < 20; ++t) {
    const Vec x = random_vec(B * D, 100 + static_cast<uint64_t>(t));
    Vec y_own(x.size()), y_ext(x.size());
    layer.step(x.data(), B, y_own.data());
    layer.step_with_state(external, x.data(), B, y_ext.data());
    ASSERT_EQ(y_own, y_ext) << "step " << t;
  }
  EXPECT_EQ(external.batch(), B);
  if (cfg.softmax) {
    EXPECT_EQ(external.length(), 20);
    EXPECT_EQ(layer.state().length(), 20);
  } else {
    Vec w_own(static_cast<size_t>(layer.state_w_count(B))), w_ext(w_own.size());
    layer.get_state(w_own.data(), nullptr);
    external.get_host(w_ext.data(), nullptr);
    EXPECT_EQ(w_own, w_ext);
  }
  // A state of another batch or made for other sizes is refused and left alone.
  AttentionState<double> other_batch = layer.make_state(B + 1);
  Vec x(static_cast<size_t>(B * D), 0.1), y(x.size());
  EXPECT_THROW(layer.step_with_state(other_batch, x.data(), B, y.data()), Error);
  FastWeightLayerConfig wider = cfg;
  wider.d_head = 4;
  FastWeightLayer<double> other_layer(wider, layer.backend(), Rng(1));
  AttentionState<double> other_spec = other_layer.make_state(B);
  try {
    layer.step_with_state(other_spec, x.data(), B, y.data());
    ADD_FAILURE() << "expected a shape mismatch";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_SHAPE_MISMATCH);
    EXPECT_NE(std::string(e.what()).find("d_head = 4"), std::string::npos) << e.what();
  }
}

// ---- AttentionState semantics ----------------------------------------------------------------

TEST(AttentionStateTest, ReorderCopyResetOfFastWeights) {
  AttentionStateSpec spec;
  spec.num_heads = 2;
  spec.d_head = 3;
  spec.d_dot = 4;
  AttentionState<double> s(cpu(), spec, 3);
  const int64_t rw = s.w_count(1), rz = s.z_count(1);
  const Vec w = random_vec(s.w_count(3), 1), z = random_vec(s.z_count(3), 2);
  s.set_host(3, w.data(), z.data());

  AttentionState<double> copy(s.backend(), spec);
  copy.copy_from(s);
  EXPECT_EQ(copy.batch(), 3);

  const int64_t rows[] = {2, 2, 0, 1, 2};
  s.reorder(rows, 5);
  ASSERT_EQ(s.batch(), 5);
  Vec w5(static_cast<size_t>(5 * rw)), z5(static_cast<size_t>(5 * rz));
  s.get_host(w5.data(), z5.data());
  for (int64_t r = 0; r < 5; ++r) {
    EXPECT_TRUE(std::equal(w5.begin() + r * rw, w5.begin() + (r + 1) * rw, w.begin() + rows[r] * rw)) << r;
    EXPECT_TRUE(std::equal(z5.begin() + r * rz, z5.begin() + (r + 1) * rz, z.begin() + rows[r] * rz)) << r;
  }
  // A bad index leaves the state as it was.
  const int64_t bad[] = {0, 5};
  EXPECT_THROW(s.reorder(bad, 2), Error);
  EXPECT_EQ(s.batch(), 5);

  // The copy kept the old rows, independent of the source.
  Vec wc(w.size()), zc(z.size());
  copy.get_host(wc.data(), zc.data());
  EXPECT_EQ(wc, w);
  EXPECT_EQ(zc, z);

  copy.reset();
  EXPECT_EQ(copy.batch(), 3);
  copy.get_host(wc.data(), zc.data());
  EXPECT_TRUE(std::all_of(wc.begin(), wc.end(), [](double v) { return v == 0; }));
  EXPECT_TRUE(std::all_of(zc.begin(), zc.end(), [](double v) { return v == 0; }));
  copy.clear();
  EXPECT_TRUE(copy.empty());

  AttentionStateSpec other = spec;
  other.d_dot = 5;
  AttentionState<double> wrong(cpu(), other, 3);
  EXPECT_THROW(wrong.copy_from(s), Error);
  AttentionStateSpec cache_spec = spec;
  cache_spec.softmax = true;
  cache_spec.d_dot = 0;
  AttentionState<double> cache(cpu(), cache_spec, 2);
  EXPECT_THROW(cache.w_count(1), Error);
  EXPECT_THROW(s.reserve(4), Error);
}

TEST(AttentionStateTest, ReorderedCacheContinuesTheChosenSequences) {
  const FastWeightLayerConfig cfg = module_config(true);
  FastWeightLayer<double> layer(cfg, cpu(), Rng(8));
  const int64_t B = 2, D = cfg.d_model;
  AttentionState<double> s = layer.make_state(B);
  std::vector<Vec> inputs;
  for (int64_t t = 0; t < 18; ++t) {  // past one growth of the cache
    inputs.push_back(random_vec(B * D, 200 + static_cast<uint64_t>(t)));
    Vec y(static_cast<size_t>(B * D));
    layer.step_with_state(s, inputs.back().data(), B, y.data());
  }
  // Beam search: three hypotheses, two continue sequence 1, one sequence 0.
  AttentionState<double> beams = layer.make_state(0);
  beams.copy_from(s);
  const int64_t rows[] = {1, 0, 1};
  beams.reorder(rows, 3);
  EXPECT_EQ(beams.length(), 18);
  const Vec next = random_vec(B * D, 300);
  Vec y2(static_cast<size_t>(B * D));
  layer.step_with_state(s, next.data(), B, y2.data());
  Vec x3(static_cast<size_t>(3 * D)), y3(x3.size());
  for (int64_t r = 0; r < 3; ++r)
    std::copy(next.begin() + rows[r] * D, next.begin() + (rows[r] + 1) * D, x3.begin() + r * D);
  layer.step_with_state(beams, x3.data(), 3, y3.data());
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t d = 0; d < D; ++d)
      EXPECT_EQ(y3[static_cast<size_t>(r * D + d)], y2[static_cast<size_t>(rows[r] * D + d)]) << r << " " << d;
}

// ---- gradient check of the module ------------------------------------------------------------

class ModuleGradient : public ::testing::TestWithParam<bool> {};

TEST_P(ModuleGradient, MatchesCentralDifferences) {
  const FastWeightLayerConfig cfg = module_config(GetParam());
  ModuleUnderTest m(cfg, 9);
  set_biases(m.params);
  const int64_t B = 2, T = 3, D = cfg.d_model;
  const Shape shape{B, T, D};
  Vec x = random_vec(B * T * D, 11);
  const Vec r = random_vec(B * T * D, 12);  // loss = sum(y * r)
  AttentionState<double> state = m.attention->make_state(cfg.softmax ? 0 : B);
  Vec w0, z0;
  if (!cfg.softmax) {
    w0 = random_vec(state.w_count(B), 13, 0.5);
    z0 = random_vec(state.z_count(B), 14);
    for (double& e : z0) e = std::abs(e) + 0.5;
    state.set_host(B, w0.data(), z0.data());
  }
  auto loss = [&]() {
    FastWeightAttentionWorkspace<double> ws;
    Vec y(x.size());
    if (!cfg.softmax) state.set_host(B, w0.data(), z0.data());
    m.attention->forward(m.params, ConstView<double>(x.data(), shape), cfg.softmax ? nullptr : &state,
                         StateUpdate::Keep, TensorView<double>(y.data(), shape), ws);
    double l = 0;
    for (size_t i = 0; i < y.size(); ++i) l += y[i] * r[i];
    return l;
  };
  // Analytic gradients.
  Vec y(x.size()), dx(x.size());
  m.attention->forward(m.params, ConstView<double>(x.data(), shape), cfg.softmax ? nullptr : &state,
                       StateUpdate::Keep, TensorView<double>(y.data(), shape), m.ws);
  m.params.zero_grad();
  m.attention->backward(m.params, ConstView<double>(x.data(), shape), ConstView<double>(r.data(), shape),
                        TensorView<double>(dx.data(), shape), InputGrad::Overwrite, m.ws);
  const double h = 1e-6;
  auto numeric = [&](double& v) {
    const double keep = v;
    v = keep + h;
    const double up = loss();
    v = keep - h;
    const double down = loss();
    v = keep;
    return (up - down) / (2 * h);
  };
  auto expect_close = [](double analytic, double num, const std::string& what) {
    EXPECT_NEAR(analytic, num, 1e-6 * (1 + std::abs(num))) << what;
  };
  for (size_t i = 0; i < x.size(); i += 5) expect_close(dx[i], numeric(x[i]), "dx[" + std::to_string(i) + "]");
  for (int64_t p = 0; p < m.params.size(); ++p) {
    Parameter<double>& param = m.params[p];
    if (!param.trainable) continue;
    const Vec grad = param.grad.to_host();
    Vec values = param.value.to_host();
    for (size_t i = 0; i < values.size(); i += 3) {
      const double keep = values[i];
      values[i] = keep + h;
      param.value.from_host(values.data(), param.numel());
      const double up = loss();
      values[i] = keep - h;
      param.value.from_host(values.data(), param.numel());
      const double down = loss();
      values[i] = keep;
      param.value.from_host(values.data(), param.numel());
      expect_close(grad[i], (up - down) / (2 * h), param.name + "[" + std::to_string(i) + "]");
    }
  }
  if (!cfg.softmax) {
    const Vec dw = m.ws.grad_w.to_host(), dz = m.ws.grad_z.to_host();
    for (size_t i = 0; i < w0.size(); i += 7) expect_close(dw[i], numeric(w0[i]), "dW0[" + std::to_string(i) + "]");
    for (size_t i = 0; i < z0.size(); i += 3) expect_close(dz[i], numeric(z0[i]), "dz0[" + std::to_string(i) + "]");
  }
}

INSTANTIATE_TEST_SUITE_P(FastWeightAndSoftmax, ModuleGradient, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "softmax" : "fast_weight";
                         });

}  // namespace
}  // namespace fwp
