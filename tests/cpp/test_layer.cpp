// FastWeightLayer<double> on the CPU backend against a straightforward double
// reference of the whole layer (per-step fast weights), central-difference
// gradient checks of every input, parameter and initial state, and the
// equivalences between algorithms, segmentations and stepping.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/context.h"
#include "core/error.h"
#include "core/rng.h"
#include "nn/fast_weight_layer.h"

namespace fwp {
namespace {

using Vec = std::vector<double>;

// ---- test cases ------------------------------------------------------------------------------

struct LayerCase {
  bool softmax = false;
  FeatureMap map = FeatureMap::Elu;
  int64_t nu = 1;
  UpdateRule rule = UpdateRule::Sum;
  bool sum_normalize = false;
  bool attn_normalize = false;
  bool use_bias = false;

  std::string name() const {
    if (softmax) return std::string("softmax") + (use_bias ? "_bias" : "");
    std::string n = map == FeatureMap::Elu ? "elu" : map == FeatureMap::Favor ? "favor" : "dpfp" + std::to_string(nu);
    n += rule == UpdateRule::Delta ? "_delta" : "_sum";
    if (sum_normalize) n += "_sumnorm";
    if (attn_normalize) n += "_attnnorm";
    if (use_bias) n += "_bias";
    return n;
  }
};

// gtest prints parameters with this (instead of their bytes).
void PrintTo(const LayerCase& c, std::ostream* os) { *os << c.name(); }

std::vector<LayerCase> all_cases() {
  std::vector<LayerCase> cases;
  const std::pair<FeatureMap, int64_t> maps[] = {{FeatureMap::Elu, 1},
                                                 {FeatureMap::Favor, 1},
                                                 {FeatureMap::Dpfp, 1},
                                                 {FeatureMap::Dpfp, 2},
                                                 {FeatureMap::Dpfp, 3}};
  for (const auto& [map, nu] : maps)
    for (UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta})
      for (bool sn : {false, true})
        for (bool an : {false, true})
          for (bool bias : {false, true}) {
            LayerCase c;
            c.map = map;
            c.nu = nu;
            c.rule = rule;
            c.sum_normalize = sn;
            c.attn_normalize = an;
            c.use_bias = bias;
            cases.push_back(c);
          }
  for (bool bias : {false, true}) {
    LayerCase c;
    c.softmax = true;
    c.use_bias = bias;
    cases.push_back(c);
  }
  return cases;
}

// Small sizes so that finite differences over every parameter stay fast.
FastWeightLayerConfig make_config(const LayerCase& c) {
  FastWeightLayerConfig cfg;
  cfg.d_model = 5;
  cfg.num_heads = 2;
  cfg.d_head = 3;
  cfg.softmax = c.softmax;
  cfg.feature_map = c.map;
  cfg.dpfp_nu = c.nu;
  cfg.favor_features = 4;
  cfg.favor_redraw = false;  // the fixed projection, so the forward is a function of its inputs
  cfg.update_rule = c.softmax ? UpdateRule::Sum : c.rule;
  cfg.sum_normalize = !c.softmax && c.sum_normalize;
  cfg.attn_normalize = !c.softmax && c.attn_normalize;
  cfg.norm_eps = 1e-6;
  // Cover both settings of scale_output without doubling the cases.
  cfg.scale_output = !c.use_bias;
  cfg.use_bias = c.use_bias;
  cfg.init_std = 0.4;
  cfg.algorithm = Algorithm::Recurrent;
  return cfg;
}

std::unique_ptr<FastWeightLayer<double>> make_layer(const FastWeightLayerConfig& cfg, uint64_t seed = 7) {
  auto layer = std::make_unique<FastWeightLayer<double>>(cfg, make_cpu_backend<double>(1), Rng(seed));
  // Biases start at zero; give them values so that their use is tested too.
  Rng rng(seed + 1000);
  for (int64_t i = 0; i < layer->params().size(); ++i) {
    Parameter<double>& p = layer->params()[i];
    if (p.name.size() > 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0) {
      Vec v(static_cast<size_t>(p.numel()));
      for (double& e : v) e = 0.3 * rng.normal();
      p.value.from_host(v.data(), p.numel());
    }
  }
  return layer;
}

Vec random_vec(int64_t n, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  Vec v(static_cast<size_t>(n));
  for (double& e : v) e = scale * rng.normal();
  return v;
}

Vec random_uniform(int64_t n, uint64_t seed, double lo, double hi) {
  Rng rng(seed);
  Vec v(static_cast<size_t>(n));
  for (double& e : v) e = lo + (hi - lo) * rng.uniform();
  return v;
}

double max_abs(const Vec& v) {
  double m = 0;
  for (double e : v) m = std::max(m, std::abs(e));
  return m;
}

// max |a - b| relative to (1 + max |b|).
double rel_diff(const Vec& a, const Vec& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m / (1.0 + max_abs(b));
}

Vec param_values(const FastWeightLayer<double>& layer, const std::string& name) {
  const int64_t i = layer.params().find(name);
  return i < 0 ? Vec{} : layer.params()[i].value.to_host();
}

// ---- the reference ------------------------------------------------------------------------------

struct RefParams {
  Vec wq, bq, wk, bk, wv, bv, wb, bb, wo, bo, favor;
};

RefParams read_params(const FastWeightLayer<double>& layer) {
  RefParams p;
  p.wq = param_values(layer, "q_proj.weight");
  p.bq = param_values(layer, "q_proj.bias");
  p.wk = param_values(layer, "k_proj.weight");
  p.bk = param_values(layer, "k_proj.bias");
  p.wv = param_values(layer, "v_proj.weight");
  p.bv = param_values(layer, "v_proj.bias");
  p.wb = param_values(layer, "beta_proj.weight");
  p.bb = param_values(layer, "beta_proj.bias");
  p.wo = param_values(layer, "out_proj.weight");
  p.bo = param_values(layer, "out_proj.bias");
  p.favor = param_values(layer, "favor.projection");
  return p;
}

// Rows [row0, row0 + n) of x W^T + b for one input row x of width `in`.
Vec linear_rows(const Vec& w, const Vec& b, int64_t row0, int64_t n, const double* x, int64_t in) {
  Vec out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double s = b.empty() ? 0.0 : b[static_cast<size_t>(row0 + i)];
    for (int64_t c = 0; c < in; ++c) s += w[static_cast<size_t>((row0 + i) * in + c)] * x[c];
    out[static_cast<size_t>(i)] = s;
  }
  return out;
}

Vec ref_phi(const FastWeightLayerConfig& cfg, const Vec& favor, const Vec& x) {
  const int64_t d = static_cast<int64_t>(x.size());
  Vec phi;
  switch (cfg.feature_map) {
    case FeatureMap::Elu:
      for (double e : x) phi.push_back(e > 0 ? e + 1 : std::exp(e));
      break;
    case FeatureMap::Favor: {
      const int64_t m = cfg.favor_features;
      double sq = 0;
      for (double e : x) sq += e * e;
      Vec plus, minus;
      for (int64_t i = 0; i < m; ++i) {
        double rx = 0;
        for (int64_t c = 0; c < d; ++c) rx += favor[static_cast<size_t>(i * d + c)] * x[static_cast<size_t>(c)];
        plus.push_back(std::exp(rx - sq / 2) / std::sqrt(2.0 * m));
        minus.push_back(std::exp(-rx - sq / 2) / std::sqrt(2.0 * m));
      }
      phi = plus;
      phi.insert(phi.end(), minus.begin(), minus.end());
      break;
    }
    case FeatureMap::Dpfp: {
      Vec z;
      for (double e : x) z.push_back(std::max(e, 0.0));
      for (double e : x) z.push_back(std::max(-e, 0.0));
      const int64_t n = 2 * d;
      for (int64_t j = 1; j <= cfg.dpfp_nu; ++j)
        for (int64_t i = 0; i < n; ++i)
          phi.push_back(z[static_cast<size_t>(i)] * z[static_cast<size_t>(((i - j) % n + n) % n)]);
      break;
    }
  }
  if (cfg.sum_normalize) {
    double s = 0;
    for (double e : phi) s += e;
    for (double& e : phi) e /= (s + cfg.norm_eps);
  }
  return phi;
}

struct RefResult {
  Vec y;  // [B, T, D]
  Vec w;  // final W [B, H, dh, dd]
  Vec z;  // final z [B, H, dd]
};

// The whole layer, token by token, with explicit per-step fast weights.
RefResult reference(const FastWeightLayerConfig& cfg, const RefParams& p, const Vec& x, int64_t B, int64_t T,
                    const Vec& w0, const Vec& z0) {
  const int64_t D = cfg.d_model, H = cfg.num_heads, dh = cfg.d_head, P = H * dh, dd = cfg.d_dot();
  Vec merged(static_cast<size_t>(B * T * P), 0.0);
  RefResult r;
  if (cfg.softmax) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        std::vector<Vec> q(T), k(T), v(T);
        for (int64_t t = 0; t < T; ++t) {
          const double* xt = x.data() + (b * T + t) * D;
          q[t] = linear_rows(p.wq, p.bq, h * dh, dh, xt, D);
          k[t] = linear_rows(p.wk, p.bk, h * dh, dh, xt, D);
          v[t] = linear_rows(p.wv, p.bv, h * dh, dh, xt, D);
        }
        for (int64_t t = 0; t < T; ++t) {
          Vec s(static_cast<size_t>(t + 1));
          double mx = -1e300;
          for (int64_t j = 0; j <= t; ++j) {
            double dot = 0;
            for (int64_t i = 0; i < dh; ++i) dot += q[t][i] * k[j][i];
            s[j] = dot / std::sqrt(double(dh));
            mx = std::max(mx, s[j]);
          }
          double den = 0;
          for (double& e : s) den += (e = std::exp(e - mx));
          for (int64_t i = 0; i < dh; ++i) {
            double o = 0;
            for (int64_t j = 0; j <= t; ++j) o += s[j] / den * v[j][i];
            merged[static_cast<size_t>((b * T + t) * P + h * dh + i)] = o;
          }
        }
      }
  } else {
    r.w = w0.empty() ? Vec(static_cast<size_t>(B * H * dh * dd), 0.0) : w0;
    r.z = z0.empty() ? Vec(static_cast<size_t>(B * H * dd), 0.0) : z0;
    const double s = cfg.scale_output ? 1.0 / std::sqrt(double(dh)) : 1.0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        double* W = r.w.data() + (b * H + h) * dh * dd;
        double* z = r.z.data() + (b * H + h) * dd;
        for (int64_t t = 0; t < T; ++t) {
          const double* xt = x.data() + (b * T + t) * D;
          const Vec pq = ref_phi(cfg, p.favor, linear_rows(p.wq, p.bq, h * dh, dh, xt, D));
          const Vec pk = ref_phi(cfg, p.favor, linear_rows(p.wk, p.bk, h * dh, dh, xt, D));
          const Vec v = linear_rows(p.wv, p.bv, h * dh, dh, xt, D);
          Vec u = v;
          if (cfg.update_rule == UpdateRule::Delta) {
            const double beta = 1.0 / (1.0 + std::exp(-linear_rows(p.wb, p.bb, h, 1, xt, D)[0]));
            for (int64_t i = 0; i < dh; ++i) {
              double vbar = 0;
              for (int64_t j = 0; j < dd; ++j) vbar += W[i * dd + j] * pk[j];
              u[i] = beta * (v[i] - vbar);
            }
          }
          for (int64_t i = 0; i < dh; ++i)
            for (int64_t j = 0; j < dd; ++j) W[i * dd + j] += u[i] * pk[j];
          double den = 1.0;
          if (cfg.attn_normalize) {
            den = cfg.norm_eps;
            for (int64_t j = 0; j < dd; ++j) {
              z[j] += pk[j];
              den += z[j] * pq[j];
            }
          }
          for (int64_t i = 0; i < dh; ++i) {
            double o = 0;
            for (int64_t j = 0; j < dd; ++j) o += W[i * dd + j] * pq[j];
            merged[static_cast<size_t>((b * T + t) * P + h * dh + i)] = s * o / den;
          }
        }
      }
  }
  r.y.assign(static_cast<size_t>(B * T * D), 0.0);
  for (int64_t n = 0; n < B * T; ++n) {
    const Vec row = linear_rows(p.wo, p.bo, 0, D, merged.data() + n * P, P);
    std::copy(row.begin(), row.end(), r.y.begin() + n * D);
  }
  return r;
}

// ---- helpers around the layer ---------------------------------------------------------------------

Vec run_forward(FastWeightLayer<double>& layer, const Vec& x, int64_t B, int64_t T) {
  Vec y(static_cast<size_t>(B * T * layer.config().d_model));
  layer.forward(x.data(), B, T, y.data());
  return y;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Rows [t0, t0 + n) of every batch row of a [B, T, D] array.
Vec time_slice(const Vec& x, int64_t B, int64_t T, int64_t D, int64_t t0, int64_t n) {
  Vec out;
  for (int64_t b = 0; b < B; ++b)
    out.insert(out.end(), x.begin() + (b * T + t0) * D, x.begin() + (b * T + t0 + n) * D);
  return out;
}

Vec time_concat(const Vec& a, int64_t Ta, const Vec& b, int64_t Tb, int64_t B, int64_t D) {
  Vec out;
  for (int64_t r = 0; r < B; ++r) {
    out.insert(out.end(), a.begin() + r * Ta * D, a.begin() + (r + 1) * Ta * D);
    out.insert(out.end(), b.begin() + r * Tb * D, b.begin() + (r + 1) * Tb * D);
  }
  return out;
}

// Everything a backward produces.
struct Grads {
  Vec dx;
  std::vector<Vec> params;
  Vec dw0, dz0;
};

Grads run_backward(FastWeightLayer<double>& layer, const Vec& dy, int64_t B, int64_t T) {
  Grads g;
  g.dx.assign(dy.size(), 0.0);
  layer.backward(dy.data(), B, T, g.dx.data());
  for (int64_t i = 0; i < layer.params().size(); ++i) g.params.push_back(layer.params()[i].grad.to_host());
  if (!layer.config().softmax) {
    g.dw0.assign(static_cast<size_t>(layer.state_w_count(B)), 0.0);
    g.dz0.assign(static_cast<size_t>(layer.state_z_count(B)), 0.0);
    layer.get_state_grad(g.dw0.data(), g.dz0.data());
  }
  return g;
}

// ---- reference comparisons -----------------------------------------------------------------------

class LayerReference : public ::testing::TestWithParam<LayerCase> {};

TEST_P(LayerReference, ForwardMatchesReference) {
  const FastWeightLayerConfig cfg = make_config(GetParam());
  auto layer = make_layer(cfg);
  const int64_t B = 2, T = 6, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 11);
  const RefParams p = read_params(*layer);

  // From the zero state.
  const Vec y = run_forward(*layer, x, B, T);
  const RefResult ref = reference(cfg, p, x, B, T, {}, {});
  EXPECT_LT(rel_diff(y, ref.y), 1e-12) << GetParam().name();
  EXPECT_GT(max_abs(y), 1e-3);  // not a trivially zero output

  if (cfg.softmax) return;
  // From a given state, which carry_state = 0 leaves in place.
  const Vec w0 = random_vec(layer->state_w_count(B), 12, 0.5);
  const Vec z0 = random_uniform(layer->state_z_count(B), 13, 0.5, 1.0);
  layer->set_state(B, w0.data(), z0.data());
  const Vec y2 = run_forward(*layer, x, B, T);
  const RefResult ref2 = reference(cfg, p, x, B, T, w0, z0);
  EXPECT_LT(rel_diff(y2, ref2.y), 1e-12) << GetParam().name();
  EXPECT_GT(rel_diff(y2, y), 1e-6) << "the initial state must matter";
  Vec w(w0.size()), z(z0.size());
  layer->get_state(w.data(), z.data());
  EXPECT_EQ(w, w0);
  EXPECT_EQ(z, z0);
}

class LayerCarry : public ::testing::TestWithParam<LayerCase> {};

TEST_P(LayerCarry, CarryStateLeavesTheFinalState) {
  FastWeightLayerConfig cfg = make_config(GetParam());
  cfg.carry_state = true;
  auto layer = make_layer(cfg);
  const int64_t B = 2, T = 5, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 21);
  const Vec w0 = random_vec(layer->state_w_count(B), 22, 0.5);
  const Vec z0 = random_uniform(layer->state_z_count(B), 23, 0.5, 1.0);
  layer->set_state(B, w0.data(), z0.data());
  const Vec y = run_forward(*layer, x, B, T);
  const RefResult ref = reference(cfg, read_params(*layer), x, B, T, w0, z0);
  EXPECT_LT(rel_diff(y, ref.y), 1e-12);
  ASSERT_EQ(layer->state_batch(), B);
  Vec w(w0.size()), z(z0.size());
  layer->get_state(w.data(), z.data());
  EXPECT_LT(rel_diff(w, ref.w), 1e-12);
  // Without attention normalisation z is not part of the computation and is carried unchanged.
  EXPECT_LT(rel_diff(z, cfg.attn_normalize ? ref.z : z0), 1e-12);
}

std::vector<LayerCase> fast_weight_cases() {
  std::vector<LayerCase> cases;
  for (const auto& c : all_cases())
    if (!c.softmax) cases.push_back(c);
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Layer, LayerCarry, ::testing::ValuesIn(fast_weight_cases()),
                         [](const ::testing::TestParamInfo<LayerCase>& info) { return info.param.name(); });

// ---- gradients by central differences --------------------------------------------------------------

TEST_P(LayerReference, GradientsMatchCentralDifferences) {
  const FastWeightLayerConfig cfg = make_config(GetParam());
  auto layer = make_layer(cfg);
  const int64_t B = 2, T = 4, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 31);
  const Vec dy = random_vec(B * T * D, 32);
  Vec w0, z0;
  if (!cfg.softmax) {
    w0 = random_vec(layer->state_w_count(B), 33, 0.5);
    z0 = random_uniform(layer->state_z_count(B), 34, 0.5, 1.0);
    layer->set_state(B, w0.data(), z0.data());
  }
  layer->zero_grad();
  run_forward(*layer, x, B, T);
  const Grads g = run_backward(*layer, dy, B, T);

  const double h = 1e-5;
  auto loss = [&](const Vec& xx) { return dot(run_forward(*layer, xx, B, T), dy); };
  auto check = [&](const Vec& analytic, const Vec& numeric, const std::string& what) {
    EXPECT_LT(rel_diff(analytic, numeric), 1e-6) << GetParam().name() << ": " << what;
  };

  // Input.
  {
    Vec num(x.size());
    Vec xx = x;
    for (size_t i = 0; i < x.size(); ++i) {
      xx[i] = x[i] + h;
      const double lp = loss(xx);
      xx[i] = x[i] - h;
      const double lm = loss(xx);
      xx[i] = x[i];
      num[i] = (lp - lm) / (2 * h);
    }
    check(g.dx, num, "dx");
  }
  // Every parameter.
  for (int64_t pi = 0; pi < layer->params().size(); ++pi) {
    Parameter<double>& p = layer->params()[pi];
    if (!p.trainable) {
      EXPECT_EQ(max_abs(g.params[pi]), 0.0) << p.name << " is fixed and keeps a zero gradient";
      continue;
    }
    Vec v = p.value.to_host();
    const Vec v0 = v;
    Vec num(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      v[i] = v0[i] + h;
      p.value.from_host(v.data(), p.numel());
      const double lp = loss(x);
      v[i] = v0[i] - h;
      p.value.from_host(v.data(), p.numel());
      const double lm = loss(x);
      v[i] = v0[i];
      num[i] = (lp - lm) / (2 * h);
    }
    p.value.from_host(v0.data(), p.numel());
    check(g.params[pi], num, p.name);
    EXPECT_GT(max_abs(g.params[pi]), 0.0) << p.name;
  }
  if (cfg.softmax) return;
  // The initial state.
  auto state_fd = [&](bool of_w) {
    Vec s = of_w ? w0 : z0;
    Vec num(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      const double s0 = s[i];
      s[i] = s0 + h;
      layer->set_state(B, of_w ? s.data() : w0.data(), of_w ? z0.data() : s.data());
      const double lp = loss(x);
      s[i] = s0 - h;
      layer->set_state(B, of_w ? s.data() : w0.data(), of_w ? z0.data() : s.data());
      const double lm = loss(x);
      s[i] = s0;
      num[i] = (lp - lm) / (2 * h);
    }
    layer->set_state(B, w0.data(), z0.data());
    return num;
  };
  check(g.dw0, state_fd(true), "dW_0");
  check(g.dz0, state_fd(false), "dz_0");
  EXPECT_GT(max_abs(g.dw0), 0.0);
  if (cfg.attn_normalize)
    EXPECT_GT(max_abs(g.dz0), 0.0);
  else
    EXPECT_EQ(max_abs(g.dz0), 0.0);
}

TEST_P(LayerReference, GradientsAccumulateAcrossBackwards) {
  const FastWeightLayerConfig cfg = make_config(GetParam());
  auto layer = make_layer(cfg);
  const int64_t B = 1, T = 3, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 41), dy = random_vec(B * T * D, 42);
  layer->zero_grad();
  run_forward(*layer, x, B, T);
  const Grads once = run_backward(*layer, dy, B, T);
  const Grads twice = run_backward(*layer, dy, B, T);
  for (size_t i = 0; i < once.params.size(); ++i) {
    Vec doubled = once.params[i];
    for (double& e : doubled) e *= 2;
    EXPECT_LT(rel_diff(twice.params[i], doubled), 1e-13);
  }
  EXPECT_EQ(twice.dx, once.dx);  // dx is overwritten, not accumulated
  layer->zero_grad();
  for (int64_t i = 0; i < layer->params().size(); ++i) EXPECT_EQ(max_abs(layer->params()[i].grad.to_host()), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Layer, LayerReference, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<LayerCase>& info) { return info.param.name(); });

// ---- algorithms, segments and steps ---------------------------------------------------------------

class LayerEquivalence : public ::testing::TestWithParam<LayerCase> {};

std::vector<LayerCase> equivalence_cases() {
  std::vector<LayerCase> cases;
  for (const auto& c : all_cases())
    if (!c.softmax && !c.use_bias) cases.push_back(c);
  return cases;
}

TEST_P(LayerEquivalence, RecurrentEqualsChunked) {
  FastWeightLayerConfig cfg = make_config(GetParam());
  const int64_t B = 2, T = 7, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 51), dy = random_vec(B * T * D, 52);
  std::vector<Vec> ys;
  std::vector<Grads> gs;
  for (auto [algo, chunk] : {std::pair{Algorithm::Recurrent, int64_t(0)}, {Algorithm::Chunked, int64_t(3)},
                            {Algorithm::Chunked, int64_t(0)}, {Algorithm::Auto, int64_t(0)}}) {
    cfg.algorithm = algo;
    cfg.chunk_size = chunk;
    auto layer = make_layer(cfg);
    const Vec w0 = random_vec(layer->state_w_count(B), 53, 0.5);
    const Vec z0 = random_uniform(layer->state_z_count(B), 54, 0.5, 1.0);
    layer->set_state(B, w0.data(), z0.data());
    ys.push_back(run_forward(*layer, x, B, T));
    gs.push_back(run_backward(*layer, dy, B, T));
  }
  for (size_t a = 1; a < ys.size(); ++a) {
    EXPECT_LT(rel_diff(ys[a], ys[0]), 1e-10) << "algorithm variant " << a;
    EXPECT_LT(rel_diff(gs[a].dx, gs[0].dx), 1e-10);
    EXPECT_LT(rel_diff(gs[a].dw0, gs[0].dw0), 1e-10);
    EXPECT_LT(rel_diff(gs[a].dz0, gs[0].dz0), 1e-10);
    for (size_t i = 0; i < gs[0].params.size(); ++i) EXPECT_LT(rel_diff(gs[a].params[i], gs[0].params[i]), 1e-10);
  }
}

TEST_P(LayerEquivalence, OneForwardEqualsTwoCarriedSegmentsEqualsSteps) {
  FastWeightLayerConfig cfg = make_config(GetParam());
  const int64_t B = 3, T = 6, T1 = 2, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 61);
  const Vec y_full = run_forward(*make_layer(cfg), x, B, T);

  cfg.carry_state = true;
  auto carried = make_layer(cfg);
  const Vec ya = run_forward(*carried, time_slice(x, B, T, D, 0, T1), B, T1);
  const Vec yb = run_forward(*carried, time_slice(x, B, T, D, T1, T - T1), B, T - T1);
  EXPECT_LT(rel_diff(time_concat(ya, T1, yb, T - T1, B, D), y_full), 1e-12);
  Vec w_carried(static_cast<size_t>(carried->state_w_count(B)));
  carried->get_state(w_carried.data(), nullptr);

  // Steps, with carry_state either way: step always continues the held state.
  for (bool carry : {false, true}) {
    cfg.carry_state = carry;
    auto stepper = make_layer(cfg);
    Vec y_steps(static_cast<size_t>(B * T * D));
    for (int64_t t = 0; t < T; ++t) {
      const Vec xt = time_slice(x, B, T, D, t, 1);
      Vec yt(static_cast<size_t>(B * D));
      stepper->step(xt.data(), B, yt.data());
      for (int64_t b = 0; b < B; ++b) std::copy(yt.begin() + b * D, yt.begin() + (b + 1) * D, y_steps.begin() + (b * T + t) * D);
    }
    EXPECT_LT(rel_diff(y_steps, y_full), 1e-12) << "carry_state " << carry;
    Vec w_stepped(w_carried.size());
    ASSERT_EQ(stepper->state_batch(), B);
    stepper->get_state(w_stepped.data(), nullptr);
    EXPECT_LT(rel_diff(w_stepped, w_carried), 1e-12);
    // A step batch that does not match the held state is refused.
    Vec x1(static_cast<size_t>((B + 1) * D)), y1(x1.size());
    try {
      stepper->step(x1.data(), B + 1, y1.data());
      ADD_FAILURE() << "expected a shape mismatch";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), FWP_ERR_SHAPE_MISMATCH);
    }
    stepper->reset_state();
    EXPECT_EQ(stepper->state_batch(), 0);
    stepper->step(x1.data(), B + 1, y1.data());
    EXPECT_EQ(stepper->state_batch(), B + 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Layer, LayerEquivalence, ::testing::ValuesIn(equivalence_cases()),
                         [](const ::testing::TestParamInfo<LayerCase>& info) { return info.param.name(); });

TEST(LayerSoftmax, StepsEqualForwardAcrossCacheGrowth) {
  LayerCase c;
  c.softmax = true;
  c.use_bias = true;
  const FastWeightLayerConfig cfg = make_config(c);
  auto layer = make_layer(cfg);
  // 40 steps: the cache starts at 16 and doubles twice.
  const int64_t B = 2, T = 40, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 71);
  const Vec y_full = run_forward(*layer, x, B, T);
  EXPECT_LT(rel_diff(y_full, reference(cfg, read_params(*layer), x, B, T, {}, {}).y), 1e-12);
  for (int round = 0; round < 2; ++round) {
    Vec y_steps(static_cast<size_t>(B * T * D));
    for (int64_t t = 0; t < T; ++t) {
      const Vec xt = time_slice(x, B, T, D, t, 1);
      Vec yt(static_cast<size_t>(B * D));
      layer->step(xt.data(), B, yt.data());
      for (int64_t b = 0; b < B; ++b) std::copy(yt.begin() + b * D, yt.begin() + (b + 1) * D, y_steps.begin() + (b * T + t) * D);
    }
    EXPECT_LT(rel_diff(y_steps, y_full), 1e-12) << "round " << round;
    layer->reset_state();  // forgets the cache: the second round starts over
  }
  // Stepping does not disturb the saved forward: backward still works.
  Vec dy = random_vec(B * T * D, 72);
  EXPECT_NO_THROW(run_backward(*layer, dy, B, T));
}

TEST(LayerSoftmax, StateFunctionsAreUnsupported) {
  LayerCase c;
  c.softmax = true;
  auto layer = make_layer(make_config(c));
  EXPECT_EQ(layer->d_dot(), 0);
  auto expect_unsupported = [](auto&& f) {
    try {
      f();
      ADD_FAILURE() << "expected FWP_ERR_UNSUPPORTED";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), FWP_ERR_UNSUPPORTED);
    }
  };
  expect_unsupported([&] { layer->state_w_count(1); });
  expect_unsupported([&] { layer->set_state(1, nullptr, nullptr); });
  expect_unsupported([&] { layer->get_state(nullptr, nullptr); });
  expect_unsupported([&] { layer->get_state_grad(nullptr, nullptr); });
}

// ---- FAVOR+ redraws ------------------------------------------------------------------------------

TEST(LayerFavor, RedrawChangesTrainingOutputsButEvaluationIsFixed) {
  LayerCase c;
  c.map = FeatureMap::Favor;
  c.rule = UpdateRule::Delta;
  c.sum_normalize = true;
  FastWeightLayerConfig cfg = make_config(c);
  cfg.favor_features = 16;
  cfg.favor_redraw = true;
  auto layer = make_layer(cfg);
  const int64_t B = 2, T = 5, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 81);

  const Vec t1 = run_forward(*layer, x, B, T);
  const Vec t2 = run_forward(*layer, x, B, T);
  EXPECT_GT(rel_diff(t1, t2), 1e-8) << "a training forward draws new features";

  layer->set_training(false);
  const Vec e1 = run_forward(*layer, x, B, T);
  const Vec e2 = run_forward(*layer, x, B, T);
  EXPECT_EQ(e1, e2);
  // Evaluation uses the fixed projection parameter.
  EXPECT_LT(rel_diff(e1, reference(cfg, read_params(*layer), x, B, T, {}, {}).y), 1e-12);

  // favor_redraw = 0 trains with the fixed projection too.
  cfg.favor_redraw = false;
  auto fixed = make_layer(cfg);
  EXPECT_LT(rel_diff(run_forward(*fixed, x, B, T), e1), 1e-14);
  EXPECT_EQ(run_forward(*fixed, x, B, T), run_forward(*fixed, x, B, T));
}

TEST(LayerFavor, BackwardUsesTheProjectionOfItsForward) {
  // After a redrawn training forward, the gradients must be those of the
  // features that forward used: the loss is linear in dy, so the gradient of a
  // second, evaluation-mode layer with the fixed projection must differ, while
  // repeating the backward gives identical gradients.
  LayerCase c;
  c.map = FeatureMap::Favor;
  FastWeightLayerConfig cfg = make_config(c);
  cfg.favor_redraw = true;
  auto layer = make_layer(cfg);
  const int64_t B = 1, T = 4, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 91), dy = random_vec(B * T * D, 92);
  run_forward(*layer, x, B, T);
  const Grads a = run_backward(*layer, dy, B, T);
  layer->zero_grad();
  const Grads b = run_backward(*layer, dy, B, T);
  EXPECT_EQ(a.dx, b.dx);
  layer->set_training(false);
  run_forward(*layer, x, B, T);
  const Grads e = run_backward(*layer, dy, B, T);
  EXPECT_GT(rel_diff(e.dx, a.dx), 1e-8);
}

// ---- state handling ------------------------------------------------------------------------------

TEST(LayerState, SetGetResetRoundTrip) {
  LayerCase c;
  c.map = FeatureMap::Dpfp;
  c.nu = 2;
  c.rule = UpdateRule::Delta;
  c.sum_normalize = true;
  c.attn_normalize = true;
  const FastWeightLayerConfig cfg = make_config(c);
  auto layer = make_layer(cfg);
  const int64_t B = 3;
  EXPECT_EQ(layer->state_batch(), 0);
  EXPECT_EQ(layer->state_w_count(B), B * cfg.num_heads * cfg.d_head * cfg.d_dot());
  EXPECT_EQ(layer->state_z_count(B), B * cfg.num_heads * cfg.d_dot());

  const Vec w = random_vec(layer->state_w_count(B), 101), z = random_vec(layer->state_z_count(B), 102);
  layer->set_state(B, w.data(), z.data());
  EXPECT_EQ(layer->state_batch(), B);
  Vec w2(w.size()), z2(z.size());
  layer->get_state(w2.data(), z2.data());
  EXPECT_EQ(w2, w);
  EXPECT_EQ(z2, z);

  // NULL means zeros.
  layer->set_state(B, nullptr, z.data());
  layer->get_state(w2.data(), z2.data());
  EXPECT_EQ(max_abs(w2), 0.0);
  EXPECT_EQ(z2, z);

  // A forward with another batch than the state's is refused and changes nothing.
  Vec x(static_cast<size_t>(2 * 4 * cfg.d_model), 0.5), y(x.size());
  try {
    layer->forward(x.data(), 2, 4, y.data());
    ADD_FAILURE() << "expected a shape mismatch";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_SHAPE_MISMATCH);
  }
  EXPECT_FALSE(layer->has_forward());
  layer->get_state(w2.data(), z2.data());
  EXPECT_EQ(z2, z);

  layer->reset_state();
  EXPECT_EQ(layer->state_batch(), 0);
  EXPECT_NO_THROW(layer->forward(x.data(), 2, 4, y.data()));
  EXPECT_EQ(layer->state_batch(), 0) << "carry_state = 0 keeps no state";
}

TEST(LayerState, BackwardChecksItsArguments) {
  LayerCase c;
  auto layer = make_layer(make_config(c));
  const int64_t D = layer->config().d_model;
  Vec x(static_cast<size_t>(2 * 3 * D), 0.1), y(x.size());
  auto status_of = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.status();
    }
    return FWP_OK;
  };
  EXPECT_EQ(status_of([&] { layer->backward(y.data(), 2, 3, nullptr); }), FWP_ERR_BAD_STATE);
  EXPECT_EQ(status_of([&] { layer->get_state_grad(nullptr, nullptr); }), FWP_ERR_BAD_STATE);
  EXPECT_EQ(status_of([&] { layer->forward(x.data(), 0, 3, y.data()); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { layer->forward(x.data(), 2, -1, y.data()); }), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { layer->forward(x.data(), int64_t(1) << 40, 1 << 20, y.data()); }),
            FWP_ERR_INVALID_ARGUMENT);
  layer->forward(x.data(), 2, 3, y.data());
  EXPECT_EQ(status_of([&] { layer->backward(y.data(), 1, 3, nullptr); }), FWP_ERR_SHAPE_MISMATCH);
  EXPECT_EQ(status_of([&] { layer->backward(y.data(), 2, 2, nullptr); }), FWP_ERR_SHAPE_MISMATCH);
  EXPECT_EQ(status_of([&] { layer->backward(y.data(), 2, 3, nullptr); }), FWP_OK);
}

TEST(LayerConfig, ValidationNamesTheField) {
  auto message_of = [](const FastWeightLayerConfig& cfg) -> std::string {
    try {
      cfg.validate("config->");
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), FWP_ERR_INVALID_ARGUMENT);
      return e.what();
    }
    return "";
  };
  FastWeightLayerConfig ok;
  EXPECT_EQ(message_of(ok), "");
  auto with = [&](auto change) {
    FastWeightLayerConfig c;
    change(c);
    return message_of(c);
  };
  EXPECT_NE(with([](auto& c) { c.d_model = 0; }).find("config->d_model"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.num_heads = -1; }).find("config->num_heads"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.d_head = 0; }).find("config->d_head"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.dpfp_nu = 0; }).find("config->dpfp_nu"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.feature_map = FeatureMap::Favor, c.favor_features = 0; }).find("favor_features"),
            std::string::npos);
  EXPECT_NE(with([](auto& c) { c.norm_eps = 0; }).find("config->norm_eps"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.norm_eps = std::nan(""); }).find("config->norm_eps"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.chunk_size = -1; }).find("config->chunk_size"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.d_head = 64, c.dpfp_nu = 64; }).find("d_dot"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.d_head = int64_t(1) << 40, c.d_model = int64_t(1) << 40; }).find("too large"),
            std::string::npos);
  EXPECT_NE(with([](auto& c) { c.softmax = true; }).find("update_rule"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.softmax = true, c.update_rule = UpdateRule::Sum; }).find("sum_normalize"),
            std::string::npos);
  EXPECT_NE(with([](auto& c) {
              c.softmax = true, c.update_rule = UpdateRule::Sum, c.sum_normalize = false, c.attn_normalize = true;
            }).find("attn_normalize"),
            std::string::npos);
}

// ---- precision and construction -----------------------------------------------------------------

TEST(LayerPrecision, FloatLayerAgreesWithDoubleLayer) {
  LayerCase c;
  c.map = FeatureMap::Dpfp;
  c.nu = 2;
  c.rule = UpdateRule::Delta;
  c.sum_normalize = true;
  c.use_bias = true;
  FastWeightLayerConfig cfg = make_config(c);
  cfg.algorithm = Algorithm::Auto;
  auto d_layer = make_layer(cfg);
  FastWeightLayer<float> f_layer(cfg, make_cpu_backend<float>(2), Rng(7));
  for (int64_t i = 0; i < d_layer->params().size(); ++i) {
    const Vec v = d_layer->params()[i].value.to_host();
    std::vector<float> fv(v.begin(), v.end());
    ASSERT_EQ(f_layer.params()[i].name, d_layer->params()[i].name);
    f_layer.params()[i].value.from_host(fv.data(), static_cast<int64_t>(fv.size()));
  }
  const int64_t B = 2, T = 9, D = cfg.d_model;
  const Vec x = random_vec(B * T * D, 111), dy = random_vec(B * T * D, 112);
  const std::vector<float> xf(x.begin(), x.end()), dyf(dy.begin(), dy.end());
  const Vec yd = run_forward(*d_layer, x, B, T);
  const Grads gd = run_backward(*d_layer, dy, B, T);
  std::vector<float> yf(xf.size()), dxf(xf.size());
  f_layer.forward(xf.data(), B, T, yf.data());
  f_layer.backward(dyf.data(), B, T, dxf.data());
  EXPECT_LT(rel_diff(Vec(yf.begin(), yf.end()), yd), 1e-5);
  EXPECT_LT(rel_diff(Vec(dxf.begin(), dxf.end()), gd.dx), 1e-5);
  for (int64_t i = 0; i < d_layer->params().size(); ++i) {
    const std::vector<float> g = f_layer.params()[i].grad.to_host();
    EXPECT_LT(rel_diff(Vec(g.begin(), g.end()), gd.params[i]), 1e-5) << d_layer->params()[i].name;
  }
}

// Float32 gradients on long sequences, against the same layer in double: the
// backward reads the states its forward saved at chunk boundaries. When it
// rebuilt every W_t from the final state instead, the float32 residue
// (~1e-7 |W_T|) swamped the small early states and attention normalisation
// amplified it: at T = 4096 dx at the first positions was off by 1.2e-4
// (relative), and where a query's denominator was exactly eps (z . phi(q) = 0:
// no feature shared with any earlier key, true gradient W_t^T dy / eps) by
// 2e-2 already at T = 256 (seed 2), while a plain float32 loop stays < 2e-6
// (bench/grad_accuracy.cpp, bench/RESULTS.md).
struct LongCase {
  FeatureMap map;
  UpdateRule rule;
  bool sum_normalize, attn_normalize;
  int64_t steps;
  uint64_t seed;
};

struct FloatVsDouble {
  double dx_first, dx_all, params;  // relative to the double result
  std::vector<float> dx;            // the float dx, whole sequence
  std::vector<std::vector<float>> grads;
};

FloatVsDouble float_vs_double(const LongCase& c, Algorithm algo, int64_t first = 64) {
  FastWeightLayerConfig cfg;  // the defaults (init_std 0.02), at the size
  cfg.d_model = 32;
  cfg.num_heads = 2;
  cfg.d_head = 16;
  cfg.feature_map = c.map;
  cfg.favor_redraw = false;
  cfg.update_rule = c.rule;
  cfg.sum_normalize = c.sum_normalize;
  cfg.attn_normalize = c.attn_normalize;
  cfg.algorithm = algo;
  FastWeightLayer<double> ld(cfg, make_cpu_backend<double>(1), Rng(c.seed));
  FastWeightLayer<float> lf(cfg, make_cpu_backend<float>(1), Rng(c.seed));
  for (int64_t i = 0; i < ld.params().size(); ++i) {
    const Vec v = ld.params()[i].value.to_host();
    const std::vector<float> fv(v.begin(), v.end());
    lf.params()[i].value.from_host(fv.data(), static_cast<int64_t>(fv.size()));
  }
  const int64_t T = c.steps, D = cfg.d_model;
  Rng rng(c.seed * 1000 + 7);
  std::vector<float> xf(static_cast<size_t>(T * D)), dyf(xf.size()), yf(xf.size());
  for (float& e : xf) e = static_cast<float>(rng.normal());
  for (float& e : dyf) e = static_cast<float>(rng.normal());
  const Vec x(xf.begin(), xf.end()), dy(dyf.begin(), dyf.end());
  const Vec yd = run_forward(ld, x, 1, T);
  const Grads gd = run_backward(ld, dy, 1, T);
  FloatVsDouble r;
  r.dx.assign(xf.size(), 0.0f);
  lf.forward(xf.data(), 1, T, yf.data());
  lf.backward(dyf.data(), 1, T, r.dx.data());
  auto rel = [](const float* a, const double* b, size_t n) {
    double e = 0, m = 0;
    for (size_t i = 0; i < n; ++i) {
      e = std::max(e, std::abs(double(a[i]) - b[i]));
      m = std::max(m, std::abs(b[i]));
    }
    return std::isfinite(e) ? e / m : INFINITY;
  };
  r.dx_first = rel(r.dx.data(), gd.dx.data(), static_cast<size_t>(first * D));
  r.dx_all = rel(r.dx.data(), gd.dx.data(), r.dx.size());
  r.params = 0;
  for (int64_t i = 0; i < ld.params().size(); ++i) {
    r.grads.push_back(lf.params()[i].grad.to_host());
    r.params = std::max(r.params, rel(r.grads.back().data(), gd.params[i].data(), r.grads.back().size()));
  }
  return r;
}

TEST(LayerPrecision, FloatGradientsStayAccurateOnLongSequences) {
  const LongCase cases[] = {
      {FeatureMap::Dpfp, UpdateRule::Sum, false, true, 4096, 1},  // the growth with T
      {FeatureMap::Dpfp, UpdateRule::Sum, true, true, 256, 2},    // a denominator of exactly eps
      {FeatureMap::Dpfp, UpdateRule::Delta, true, true, 1024, 2},
  };
  for (const auto& c : cases) {
    for (Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
      SCOPED_TRACE(testing::Message() << (c.rule == UpdateRule::Sum ? "sum" : "delta") << " sum_norm "
                                      << c.sum_normalize << " T " << c.steps << " seed " << c.seed
                                      << (algo == Algorithm::Chunked ? " chunked" : " recurrent"));
      const FloatVsDouble r = float_vs_double(c, algo);
      EXPECT_LT(r.dx_first, 1e-5);
      EXPECT_LT(r.dx_all, 1e-5);
      EXPECT_LT(r.params, 2e-5);
    }
  }
}

// At the default init DPFP features are sparse, so early queries share few or
// no features with the keys before them (denominators at or near eps) and the
// gradients there are large; both algorithms read the same saved states and
// must agree to float32 rounding (they differed by ~1e-3 when each rebuilt
// its states from the final one).
TEST(LayerPrecision, RecurrentAndChunkedAgreeInFloatAtDefaultInit) {
  for (bool sum_norm : {false, true}) {
    const LongCase c{FeatureMap::Dpfp, UpdateRule::Sum, sum_norm, true, 1024, 2};
    const FloatVsDouble a = float_vs_double(c, Algorithm::Recurrent);
    const FloatVsDouble b = float_vs_double(c, Algorithm::Chunked);
    double e = 0, m = 0;
    for (size_t i = 0; i < a.dx.size(); ++i) {
      e = std::max(e, std::abs(double(a.dx[i]) - b.dx[i]));
      m = std::max(m, std::abs(double(b.dx[i])));
    }
    EXPECT_LT(e / m, 1e-5) << "dx, sum_normalize " << sum_norm;
    for (size_t p = 0; p < a.grads.size(); ++p) {
      double ep = 0, mp = 0;
      for (size_t i = 0; i < a.grads[p].size(); ++i) {
        ep = std::max(ep, std::abs(double(a.grads[p][i]) - b.grads[p][i]));
        mp = std::max(mp, std::abs(double(b.grads[p][i])));
      }
      EXPECT_LT(ep / mp, 1e-5) << "parameter " << p << ", sum_normalize " << sum_norm;
    }
  }
}

TEST(LayerConstruction, ParametersFollowTheConfig) {
  LayerCase c;
  c.map = FeatureMap::Favor;
  c.rule = UpdateRule::Delta;
  c.use_bias = true;
  FastWeightLayerConfig cfg = make_config(c);
  cfg.init_std = 0.02;
  FastWeightLayer<double> layer(cfg, make_cpu_backend<double>(1), Rng(3));
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"q_proj.weight", {6, 5}}, {"q_proj.bias", {6}},   {"k_proj.weight", {6, 5}},    {"k_proj.bias", {6}},
      {"v_proj.weight", {6, 5}}, {"v_proj.bias", {6}},   {"beta_proj.weight", {2, 5}}, {"beta_proj.bias", {2}},
      {"out_proj.weight", {5, 6}}, {"out_proj.bias", {5}}, {"favor.projection", {4, 3}}};
  ASSERT_EQ(layer.params().size(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    const Parameter<double>& p = layer.params()[static_cast<int64_t>(i)];
    EXPECT_EQ(p.name, expected[i].first);
    EXPECT_EQ(p.shape, expected[i].second);
    EXPECT_EQ(p.trainable, p.name != "favor.projection");
    const Vec v = p.value.to_host();
    if (p.name.find(".bias") != std::string::npos) {
      EXPECT_EQ(max_abs(v), 0.0);
    } else if (p.trainable) {
      EXPECT_GT(max_abs(v), 0.0);
      EXPECT_LT(max_abs(v), 0.02 * 6);  // N(0, 0.02^2): nothing beyond 6 sigma in a few dozen draws
    }
  }
  // The sum rule has no beta projection; softmax no FAVOR+ projection.
  cfg.update_rule = UpdateRule::Sum;
  FastWeightLayer<double> sum_layer(cfg, make_cpu_backend<double>(1), Rng(3));
  EXPECT_EQ(sum_layer.params().find("beta_proj.weight"), -1);
  // Same seed, same parameters.
  FastWeightLayer<double> again(make_config(c), make_cpu_backend<double>(1), Rng(3));
  FastWeightLayer<double> other(make_config(c), make_cpu_backend<double>(1), Rng(4));
  EXPECT_EQ(param_values(again, "q_proj.weight"), param_values(*make_layer(make_config(c), 3), "q_proj.weight"));
  EXPECT_NE(param_values(again, "q_proj.weight"), param_values(other, "q_proj.weight"));
}

TEST(LayerConstruction, CreateFromContext) {
  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = 2;
  cc.seed = 5;
  auto ctx1 = std::make_shared<Context>(cc);
  auto ctx2 = std::make_shared<Context>(cc);
  FastWeightLayerConfig cfg;
  cfg.d_model = 8;
  cfg.num_heads = 2;
  cfg.d_head = 4;
  auto a = FastWeightLayer<double>::create(ctx1, cfg);
  auto b = FastWeightLayer<double>::create(ctx2, cfg);
  auto a2 = FastWeightLayer<double>::create(ctx1, cfg);
  // Same seed and creation order: same parameters; the next layer gets a new stream.
  EXPECT_EQ(param_values(*a, "q_proj.weight"), param_values(*b, "q_proj.weight"));
  EXPECT_NE(param_values(*a, "q_proj.weight"), param_values(*a2, "q_proj.weight"));
  auto f = FastWeightLayer<float>::create(ctx1, cfg);
  EXPECT_EQ(f->backend(), ctx1->backend());
}

}  // namespace
}  // namespace fwp
