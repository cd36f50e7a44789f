// The attention kinds of the translation model over right-padded batches
// (nn/noncausal_attention.h, and the causal module of nn/fast_weight_attention.h
// as the decoder's self-attention):
// - non-causal (encoder) self-attention and cross-attention against
//   brute-force loops in double, for softmax and each feature map;
// - central-difference gradient checks in double, with padding;
// - padding invariance: a padded batch equals the same sequences one by one
//   (outputs and parameter gradients), padded positions get exactly zero input
//   gradient and output;
// - incremental cross-attention (begin + step) equals the full forward, and a
//   reordered state (beam search) continues the chosen rows;
// - the causal module ignores what follows a sequence's end (outputs and
//   gradients of the valid positions), and its step-by-step decoding equals the
//   full forward; given the row lengths, padding never writes into its memory
//   and padded steps get exactly zero output and input gradient.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "nn/attention_state.h"
#include "nn/fast_weight_attention.h"
#include "nn/noncausal_attention.h"
#include "ops_reference.h"

namespace fwp {
namespace {

using Vec = std::vector<double>;
using Lengths = std::vector<int64_t>;

Vec random_vec(int64_t n, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  Vec v(static_cast<size_t>(n));
  for (double& e : v) e = scale * rng.normal();
  return v;
}

std::shared_ptr<Backend<double>> cpu(int threads = 1) { return make_cpu_backend<double>(threads); }

// ---- the kinds under test ---------------------------------------------------------------------

struct Kind {
  const char* name;
  NonCausalAttentionConfig config;
};
// Failure messages name the kind (not the bytes of the config).
void PrintTo(const Kind& kind, std::ostream* os) { *os << kind.name; }

NonCausalAttentionConfig base_config() {
  NonCausalAttentionConfig c;
  c.d_model = 6;
  c.num_heads = 2;
  c.d_head = 3;
  c.init_std = 0.5;
  c.use_bias = true;
  return c;
}

std::vector<Kind> kinds() {
  std::vector<Kind> out;
  {
    NonCausalAttentionConfig c = base_config();
    c.softmax = true;
    c.attn_normalize = false;
    out.push_back({"softmax", c});
  }
  {
    NonCausalAttentionConfig c = base_config();
    c.feature_map = FeatureMap::Elu;
    out.push_back({"elu_attn_norm", c});
  }
  {
    NonCausalAttentionConfig c = base_config();
    c.feature_map = FeatureMap::Elu;
    c.attn_normalize = false;
    c.scale_output = true;
    out.push_back({"elu_plain_scaled", c});
  }
  {
    NonCausalAttentionConfig c = base_config();
    c.feature_map = FeatureMap::Favor;
    c.favor_features = 4;
    c.sum_normalize = true;
    out.push_back({"favor_sum_norm_attn_norm", c});
  }
  {
    NonCausalAttentionConfig c = base_config();
    c.feature_map = FeatureMap::Dpfp;
    c.dpfp_nu = 2;
    c.sum_normalize = true;
    out.push_back({"dpfp2_sum_norm_attn_norm", c});
  }
  {
    NonCausalAttentionConfig c = base_config();
    c.feature_map = FeatureMap::Dpfp;
    c.dpfp_nu = 1;
    out.push_back({"dpfp1_attn_norm", c});
  }
  return out;
}

struct Module {
  std::shared_ptr<Backend<double>> backend;
  ParameterList<double> params;
  std::unique_ptr<NonCausalAttention<double>> attention;

  explicit Module(const NonCausalAttentionConfig& config, uint64_t seed, int threads = 1) : backend(cpu(threads)) {
    attention = std::make_unique<NonCausalAttention<double>>(params, backend, "", config);
    params.allocate(backend);
    Rng rng(seed);
    attention->init(params, rng);
    // Biases start at zero: give them values so that their paths are exercised.
    for (int64_t i = 0; i < params.size(); ++i) {
      Parameter<double>& p = params[i];
      if (p.name.find(".bias") != std::string::npos) {
        const Vec v = random_vec(p.numel(), 90 + static_cast<uint64_t>(i), 0.3);
        p.value.from_host(v.data(), p.numel());
      }
    }
  }

  Vec value(const std::string& name) const {
    for (int64_t i = 0; i < params.size(); ++i)
      if (params[i].name == name) return params[i].value.to_host();
    ADD_FAILURE() << "no parameter " << name;
    return {};
  }
};

// ---- brute-force reference ---------------------------------------------------------------------

// y = W x + b for one row (W [out, in]).
Vec affine(const Vec& W, const Vec& b, const double* x, int64_t in, int64_t out) {
  Vec y(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    double acc = b.empty() ? 0.0 : b[o];
    for (int64_t i = 0; i < in; ++i) acc += W[o * in + i] * x[i];
    y[o] = acc;
  }
  return y;
}

Vec features(const NonCausalAttentionConfig& c, const Vec& favor_r, const Vec& x) {
  Vec phi;
  switch (c.feature_map) {
    case FeatureMap::Elu: phi = opsref::elu_plus_one(x); break;
    case FeatureMap::Favor: phi = opsref::favor(favor_r, c.favor_features, x); break;
    case FeatureMap::Dpfp: phi = opsref::dpfp(x, c.dpfp_nu); break;
  }
  return c.sum_normalize ? opsref::sum_normalize(phi, c.norm_eps) : phi;
}

// The defining formulas, loop by loop, for queries x [B, Tq, D] over memory m [B, Tk, D].
Vec reference(const Module& mod, const Vec& x, const Lengths& xl, const Vec& m, const Lengths& ml, int64_t B,
              int64_t Tq, int64_t Tk) {
  const NonCausalAttentionConfig& c = mod.attention->config();
  const int64_t D = c.d_model, H = c.num_heads, dh = c.d_head, P = H * dh;
  const Vec wq = mod.value("q_proj.weight"), bq = mod.value("q_proj.bias");
  const Vec wk = mod.value("k_proj.weight"), bk = mod.value("k_proj.bias");
  const Vec wv = mod.value("v_proj.weight"), bv = mod.value("v_proj.bias");
  const Vec wo = mod.value("out_proj.weight"), bo = mod.value("out_proj.bias");
  const Vec favor_r = c.feature_map == FeatureMap::Favor && !c.softmax ? mod.value("favor.projection") : Vec();
  const double scale_out = c.scale_output ? 1.0 / std::sqrt(double(dh)) : 1.0;
  Vec y(static_cast<size_t>(B * Tq * D), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<Vec> q, k, v;
    for (int64_t i = 0; i < Tq; ++i) q.push_back(affine(wq, bq, &x[(b * Tq + i) * D], D, P));
    for (int64_t j = 0; j < ml[b]; ++j) {
      k.push_back(affine(wk, bk, &m[(b * Tk + j) * D], D, P));
      v.push_back(affine(wv, bv, &m[(b * Tk + j) * D], D, P));
    }
    for (int64_t i = 0; i < xl[b]; ++i) {
      Vec merged(static_cast<size_t>(P), 0.0);
      for (int64_t h = 0; h < H; ++h) {
        auto head = [&](const Vec& row) { return Vec(row.begin() + h * dh, row.begin() + (h + 1) * dh); };
        const Vec qi = head(q[i]);
        Vec o(static_cast<size_t>(dh), 0.0);
        if (c.softmax) {
          Vec s;
          for (int64_t j = 0; j < ml[b]; ++j) {
            const Vec kj = head(k[j]);
            double dot = 0;
            for (int64_t e = 0; e < dh; ++e) dot += qi[e] * kj[e];
            s.push_back(dot / std::sqrt(double(dh)));
          }
          const double mx = *std::max_element(s.begin(), s.end());
          double sum = 0;
          for (double& e : s) sum += (e = std::exp(e - mx));
          for (int64_t j = 0; j < ml[b]; ++j) {
            const Vec vj = head(v[j]);
            for (int64_t e = 0; e < dh; ++e) o[e] += s[j] / sum * vj[e];
          }
        } else {
          // o = M phi(q) / (z . phi(q) + eps), M = sum_j v_j phi(k_j)^T, z = sum_j phi(k_j).
          const Vec pq = features(c, favor_r, qi);
          double den = 0;
          for (int64_t j = 0; j < ml[b]; ++j) {
            const Vec pk = features(c, favor_r, head(k[j]));
            const Vec vj = head(v[j]);
            double dot = 0;
            for (size_t e = 0; e < pk.size(); ++e) dot += pk[e] * pq[e];
            for (int64_t e = 0; e < dh; ++e) o[e] += vj[e] * dot;
            den += dot;
          }
          if (c.attn_normalize)
            for (double& e : o) e /= den + c.norm_eps;
        }
        for (int64_t e = 0; e < dh; ++e) merged[h * dh + e] = scale_out * o[e];
      }
      const Vec yi = affine(wo, bo, merged.data(), P, D);
      std::copy(yi.begin(), yi.end(), y.begin() + (b * Tq + i) * D);
    }
  }
  return y;
}

// ---- running the module -------------------------------------------------------------------------

struct Result {
  Vec y, dx, dm;
  std::vector<Vec> grads;  // per parameter
};

// Forward and backward of loss = sum(y * r); self-attention when `self` (m = x, lengths xl).
Result run_attention(Module& mod, bool self, const Vec& x, const Lengths& xl, const Vec& m, const Lengths& ml, int64_t B,
        int64_t Tq, int64_t Tk, const Vec& r) {
  const int64_t D = mod.attention->config().d_model;
  const Shape sx{B, Tq, D}, sm{B, Tk, D};
  NonCausalAttentionWorkspace<double> ws;
  Result out;
  out.y.assign(x.size(), 7.0);  // garbage: every element must be written
  out.dx.assign(x.size(), 7.0);
  mod.params.zero_grad();
  if (self) {
    mod.attention->forward_self(mod.params, ConstView<double>(x.data(), sx), xl, TensorView<double>(out.y.data(), sx),
                                ws);
    mod.attention->backward_self(mod.params, ConstView<double>(x.data(), sx), ConstView<double>(r.data(), sx),
                                 TensorView<double>(out.dx.data(), sx), InputGrad::Overwrite, ws);
  } else {
    out.dm.assign(m.size(), 7.0);
    mod.attention->forward(mod.params, ConstView<double>(x.data(), sx), xl, ConstView<double>(m.data(), sm), ml,
                           TensorView<double>(out.y.data(), sx), ws);
    mod.attention->backward(mod.params, ConstView<double>(x.data(), sx), ConstView<double>(m.data(), sm),
                            ConstView<double>(r.data(), sx), TensorView<double>(out.dx.data(), sx),
                            InputGrad::Overwrite, TensorView<double>(out.dm.data(), sm), InputGrad::Overwrite, ws);
  }
  for (int64_t p = 0; p < mod.params.size(); ++p) out.grads.push_back(mod.params[p].grad.to_host());
  return out;
}

Vec forward_only(Module& mod, bool self, const Vec& x, const Lengths& xl, const Vec& m, const Lengths& ml, int64_t B,
                 int64_t Tq, int64_t Tk) {
  const int64_t D = mod.attention->config().d_model;
  const Shape sx{B, Tq, D}, sm{B, Tk, D};
  NonCausalAttentionWorkspace<double> ws;
  Vec y(x.size());
  if (self)
    mod.attention->forward_self(mod.params, ConstView<double>(x.data(), sx), xl, TensorView<double>(y.data(), sx), ws);
  else
    mod.attention->forward(mod.params, ConstView<double>(x.data(), sx), xl, ConstView<double>(m.data(), sm), ml,
                           TensorView<double>(y.data(), sx), ws);
  return y;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

class NonCausalKinds : public ::testing::TestWithParam<Kind> {};

std::string kind_name(const ::testing::TestParamInfo<Kind>& info) { return info.param.name; }

// ---- brute force -----------------------------------------------------------------------------------

TEST_P(NonCausalKinds, CrossAndSelfAttentionMatchBruteForceLoops) {
  const NonCausalAttentionConfig& c = GetParam().config;
  Module mod(c, 3, /*threads=*/2);
  const int64_t B = 3, Tq = 4, Tk = 5, D = c.d_model;
  const Lengths xl{4, 2, 1}, ml{3, 5, 1};
  const Vec x = random_vec(B * Tq * D, 4), m = random_vec(B * Tk * D, 5);
  const Vec cross = forward_only(mod, false, x, xl, m, ml, B, Tq, Tk);
  const Vec cross_ref = reference(mod, x, xl, m, ml, B, Tq, Tk);
  ASSERT_EQ(cross.size(), cross_ref.size());
  for (size_t i = 0; i < cross.size(); ++i) EXPECT_NEAR(cross[i], cross_ref[i], 1e-12) << "cross y[" << i << "]";
  const Vec self = forward_only(mod, true, x, xl, x, xl, B, Tq, Tq);
  const Vec self_ref = reference(mod, x, xl, x, xl, B, Tq, Tq);
  for (size_t i = 0; i < self.size(); ++i) EXPECT_NEAR(self[i], self_ref[i], 1e-12) << "self y[" << i << "]";
  // Without lengths, nothing is padded.
  const Vec full = forward_only(mod, false, x, {}, m, {}, B, Tq, Tk);
  const Vec full_ref = reference(mod, x, {Tq, Tq, Tq}, m, {Tk, Tk, Tk}, B, Tq, Tk);
  for (size_t i = 0; i < full.size(); ++i) EXPECT_NEAR(full[i], full_ref[i], 1e-12) << "unpadded y[" << i << "]";
}

// ---- gradients ---------------------------------------------------------------------------------------

TEST_P(NonCausalKinds, GradientsMatchCentralDifferencesWithPadding) {
  const NonCausalAttentionConfig& c = GetParam().config;
  for (const bool self : {false, true}) {
    SCOPED_TRACE(self ? "self-attention" : "cross-attention");
    Module mod(c, 6);
    const int64_t B = 2, Tq = 3, Tk = self ? 3 : 4, D = c.d_model;
    const Lengths xl{3, 2}, ml = self ? xl : Lengths{2, 4};
    Vec x = random_vec(B * Tq * D, 7), m = random_vec(B * Tk * D, 8);
    const Vec r = random_vec(B * Tq * D, 9);
    const Result a = run_attention(mod, self, x, xl, m, ml, B, Tq, Tk, r);
    auto loss = [&]() { return dot(forward_only(mod, self, x, xl, m, ml, B, Tq, Tk), r); };
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
    auto close = [](double analytic, double num, const std::string& what) {
      EXPECT_NEAR(analytic, num, 1e-6 * (1 + std::abs(num))) << what;
    };
    for (size_t i = 0; i < x.size(); ++i) close(a.dx[i], numeric(x[i]), "dx[" + std::to_string(i) + "]");
    if (!self) {
      for (size_t i = 0; i < m.size(); ++i) close(a.dm[i], numeric(m[i]), "dm[" + std::to_string(i) + "]");
    }
    for (int64_t p = 0; p < mod.params.size(); ++p) {
      Parameter<double>& param = mod.params[p];
      if (!param.trainable) continue;
      Vec values = param.value.to_host();
      for (size_t i = 0; i < values.size(); i += 2) {
        const double keep = values[i];
        values[i] = keep + h;
        param.value.from_host(values.data(), param.numel());
        const double up = loss();
        values[i] = keep - h;
        param.value.from_host(values.data(), param.numel());
        const double down = loss();
        values[i] = keep;
        param.value.from_host(values.data(), param.numel());
        close(a.grads[static_cast<size_t>(p)][i], (up - down) / (2 * h), param.name + "[" + std::to_string(i) + "]");
      }
    }
  }
}

// ---- padding invariance ----------------------------------------------------------------------------

TEST_P(NonCausalKinds, PaddedBatchEqualsTheSequencesOneByOne) {
  const NonCausalAttentionConfig& c = GetParam().config;
  for (const bool self : {false, true}) {
    SCOPED_TRACE(self ? "self-attention" : "cross-attention");
    Module mod(c, 12);
    const int64_t B = 3, Tq = 5, Tk = self ? 5 : 6, D = c.d_model;
    const Lengths xl{5, 2, 3}, ml = self ? xl : Lengths{4, 6, 1};
    // Large garbage in the padding: it must not matter.
    Vec x = random_vec(B * Tq * D, 13), m = random_vec(B * Tk * D, 14);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = xl[b]; t < Tq; ++t)
        for (int64_t d = 0; d < D; ++d) x[(b * Tq + t) * D + d] = 40.0 * (d % 2 ? 1 : -1);
      for (int64_t t = ml[b]; t < Tk; ++t)
        for (int64_t d = 0; d < D; ++d) m[(b * Tk + t) * D + d] = -30.0 * (d % 3 ? 1 : -1);
    }
    const Vec r = random_vec(B * Tq * D, 15);  // nonzero at padded queries too: ignored
    const Result padded = run_attention(mod, self, x, xl, m, ml, B, Tq, Tk, r);

    std::vector<Vec> grad_sum;
    for (const Vec& g : padded.grads) grad_sum.emplace_back(g.size(), 0.0);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t lq = xl[b], lk = ml[b];
      const Vec xb(x.begin() + b * Tq * D, x.begin() + (b * Tq + lq) * D);
      const Vec mb = self ? xb : Vec(m.begin() + b * Tk * D, m.begin() + (b * Tk + lk) * D);
      const Vec rb(r.begin() + b * Tq * D, r.begin() + (b * Tq + lq) * D);
      const Result one = run_attention(mod, self, xb, {}, mb, {}, 1, lq, self ? lq : lk, rb);
      for (int64_t i = 0; i < lq * D; ++i) {
        EXPECT_NEAR(padded.y[b * Tq * D + i], one.y[i], 1e-12) << "y row " << b << " elem " << i;
        EXPECT_NEAR(padded.dx[b * Tq * D + i], one.dx[i], 1e-12) << "dx row " << b << " elem " << i;
      }
      if (!self) {
        for (int64_t i = 0; i < lk * D; ++i)
          EXPECT_NEAR(padded.dm[b * Tk * D + i], one.dm[i], 1e-12) << "dm row " << b << " elem " << i;
      }
      for (size_t p = 0; p < grad_sum.size(); ++p)
        for (size_t i = 0; i < grad_sum[p].size(); ++i) grad_sum[p][i] += one.grads[p][i];
      // Padded positions: exactly zero output and input gradients.
      for (int64_t i = lq * D; i < Tq * D; ++i) {
        EXPECT_EQ(padded.y[b * Tq * D + i], 0.0) << "padded y, row " << b;
        EXPECT_EQ(padded.dx[b * Tq * D + i], 0.0) << "padded dx, row " << b;
      }
      if (!self) {
        for (int64_t i = lk * D; i < Tk * D; ++i) EXPECT_EQ(padded.dm[b * Tk * D + i], 0.0) << "padded dm, row " << b;
      }
    }
    for (size_t p = 0; p < grad_sum.size(); ++p)
      for (size_t i = 0; i < grad_sum[p].size(); ++i)
        EXPECT_NEAR(padded.grads[p][i], grad_sum[p][i], 1e-11 * (1 + std::abs(grad_sum[p][i])))
            << mod.params[static_cast<int64_t>(p)].name << "[" << i << "]";
  }
}

// ---- incremental cross-attention and reorder --------------------------------------------------------

TEST_P(NonCausalKinds, IncrementalCrossAttentionEqualsTheFullForward) {
  const NonCausalAttentionConfig& c = GetParam().config;
  Module mod(c, 21);
  const int64_t B = 3, Tq = 4, Tk = 5, D = c.d_model;
  const Lengths ml{5, 2, 3};
  const Vec x = random_vec(B * Tq * D, 22), m = random_vec(B * Tk * D, 23);
  const Vec full = forward_only(mod, false, x, {}, m, ml, B, Tq, Tk);

  CrossAttentionState<double> state = mod.attention->make_state();
  NonCausalAttentionWorkspace<double> ws;
  mod.attention->begin(mod.params, ConstView<double>(m.data(), {B, Tk, D}), ml, state, ws);
  ASSERT_EQ(state.batch(), B);
  for (int64_t t = 0; t < Tq; ++t) {
    Vec xt(static_cast<size_t>(B * D)), yt(xt.size());
    for (int64_t b = 0; b < B; ++b)
      std::copy(x.begin() + (b * Tq + t) * D, x.begin() + (b * Tq + t + 1) * D, xt.begin() + b * D);
    mod.attention->step(mod.params, ConstView<double>(xt.data(), {B, D}), state, TensorView<double>(yt.data(), {B, D}),
                        ws);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d)
        EXPECT_NEAR(yt[b * D + d], full[(b * Tq + t) * D + d], 1e-12) << "step " << t << " row " << b;
  }

  // Beam search: rows {2, 0, 0, 1} continue sources 2, 0, 0 and 1 with their own lengths.
  CrossAttentionState<double> beams = mod.attention->make_state();
  beams.copy_from(state);
  const int64_t rows[] = {2, 0, 0, 1};
  beams.reorder(rows, 4);
  ASSERT_EQ(beams.batch(), 4);
  EXPECT_EQ(beams.key_lengths, (Lengths{3, 5, 5, 2}));
  const Vec q = random_vec(4 * D, 24);
  Vec y4(q.size());
  mod.attention->step(mod.params, ConstView<double>(q.data(), {4, D}), beams, TensorView<double>(y4.data(), {4, D}), ws);
  for (int64_t r = 0; r < 4; ++r) {
    // The same query against the original state's row: a batch of B with the query in row rows[r].
    Vec xb(static_cast<size_t>(B * D), 0.0), yb(xb.size());
    std::copy(q.begin() + r * D, q.begin() + (r + 1) * D, xb.begin() + rows[r] * D);
    mod.attention->step(mod.params, ConstView<double>(xb.data(), {B, D}), state, TensorView<double>(yb.data(), {B, D}),
                        ws);
    for (int64_t d = 0; d < D; ++d) EXPECT_NEAR(y4[r * D + d], yb[rows[r] * D + d], 1e-13) << "beam " << r;
  }
  // Bad rows leave the state as it was.
  const int64_t bad[] = {0, 4};
  EXPECT_THROW(beams.reorder(bad, 2), Error);
  EXPECT_EQ(beams.batch(), 4);
  EXPECT_EQ(beams.key_lengths.size(), 4u);
}

INSTANTIATE_TEST_SUITE_P(Kinds, NonCausalKinds, ::testing::ValuesIn(kinds()), kind_name);

// ---- argument checks ------------------------------------------------------------------------------

TEST(NonCausalAttentionTest, RefusesBadLengthsAndOptions) {
  Module mod(kinds()[1].config, 1);
  const int64_t B = 2, T = 3, D = 6;
  const Vec x = random_vec(B * T * D, 1);
  Vec y(x.size());
  NonCausalAttentionWorkspace<double> ws;
  const Shape s{B, T, D};
  auto fwd = [&](const Lengths& l) {
    mod.attention->forward_self(mod.params, ConstView<double>(x.data(), s), l, TensorView<double>(y.data(), s), ws);
  };
  EXPECT_NO_THROW(fwd({3, 1}));
  for (const Lengths& bad : {Lengths{3}, Lengths{0, 2}, Lengths{4, 2}, Lengths{1, 2, 3}}) {
    try {
      fwd(bad);
      ADD_FAILURE() << "lengths accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("x_lengths"), std::string::npos) << e.what();
    }
  }
  // The failed forward left nothing for a backward.
  Vec dx(x.size());
  EXPECT_THROW(mod.attention->backward_self(mod.params, ConstView<double>(x.data(), s), ConstView<double>(x.data(), s),
                                            TensorView<double>(dx.data(), s), InputGrad::Overwrite, ws),
               Error);
  NonCausalAttentionConfig c = base_config();
  c.softmax = true;  // attn_normalize is still on
  ParameterList<double> params;
  EXPECT_THROW(NonCausalAttention<double>(params, cpu(), "", c), Error);
  c.attn_normalize = false;
  c.scale_output = true;
  EXPECT_THROW(NonCausalAttention<double>(params, cpu(), "", c), Error);
  // A step needs a begun state of the same batch.
  CrossAttentionState<double> state = mod.attention->make_state();
  Vec xt(static_cast<size_t>(B * D)), yt(xt.size());
  EXPECT_THROW(mod.attention->step(mod.params, ConstView<double>(xt.data(), {B, D}), state,
                                   TensorView<double>(yt.data(), {B, D}), ws),
               Error);
}

// ---- the causal module as the decoder's self-attention ---------------------------------------------

struct CausalKind {
  const char* name;
  FastWeightAttentionConfig config;
};
void PrintTo(const CausalKind& kind, std::ostream* os) { *os << kind.name; }

std::vector<CausalKind> causal_kinds() {
  FastWeightAttentionConfig base;
  base.d_model = 6;
  base.num_heads = 2;
  base.d_head = 3;
  base.init_std = 0.5;
  base.use_bias = true;
  std::vector<CausalKind> out;
  {
    FastWeightAttentionConfig c = base;
    c.softmax = true;
    c.update_rule = UpdateRule::Sum;
    c.sum_normalize = false;
    out.push_back({"softmax", c});
  }
  {
    FastWeightAttentionConfig c = base;
    c.feature_map = FeatureMap::Elu;
    c.update_rule = UpdateRule::Sum;
    c.sum_normalize = false;
    c.attn_normalize = true;
    c.algorithm = Algorithm::Recurrent;
    out.push_back({"elu_sum_attn_norm", c});
  }
  {
    FastWeightAttentionConfig c = base;
    c.feature_map = FeatureMap::Dpfp;
    c.dpfp_nu = 2;
    c.update_rule = UpdateRule::Delta;
    c.attn_normalize = true;
    c.algorithm = Algorithm::Chunked;
    c.chunk_size = 2;
    out.push_back({"dpfp_delta_chunked", c});
  }
  {
    FastWeightAttentionConfig c = base;
    c.feature_map = FeatureMap::Favor;
    c.favor_features = 4;
    c.update_rule = UpdateRule::Delta;
    c.algorithm = Algorithm::Recurrent;
    out.push_back({"favor_delta", c});
  }
  return out;
}

class CausalPadding : public ::testing::TestWithParam<CausalKind> {};

TEST_P(CausalPadding, ValidPositionsIgnoreWhatFollowsTheEndAndStepsEqualTheFullForward) {
  const FastWeightAttentionConfig& c = GetParam().config;
  auto backend = cpu();
  ParameterList<double> params;
  FastWeightAttention<double> attn(params, backend, "", c);
  params.allocate(backend);
  Rng rng(31);
  attn.init(params, rng);
  const int64_t B = 3, T = 6, D = c.d_model;
  const Lengths len{6, 2, 4};
  Vec x = random_vec(B * T * D, 32);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = len[b]; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) x[(b * T + t) * D + d] = 25.0 * (d % 2 ? 1 : -1);
  // The loss ignores padded positions (as a masked cross-entropy does): dy = 0 there.
  Vec r = random_vec(B * T * D, 33);
  for (int64_t b = 0; b < B; ++b)
    std::fill(r.begin() + (b * T + len[b]) * D, r.begin() + (b + 1) * T * D, 0.0);

  auto forward_backward = [&](const Vec& xs, const Vec& rs, int64_t batch, int64_t steps, Vec& y, Vec& dx) {
    const Shape s{batch, steps, D};
    FastWeightAttentionWorkspace<double> ws;
    y.assign(xs.size(), 0.0);
    dx.assign(xs.size(), 0.0);
    params.zero_grad();
    attn.forward(params, ConstView<double>(xs.data(), s), nullptr, StateUpdate::Keep,
                 TensorView<double>(y.data(), s), ws);
    attn.backward(params, ConstView<double>(xs.data(), s), ConstView<double>(rs.data(), s),
                  TensorView<double>(dx.data(), s), InputGrad::Overwrite, ws);
    std::vector<Vec> g;
    for (int64_t p = 0; p < params.size(); ++p) g.push_back(params[p].grad.to_host());
    return g;
  };
  Vec y, dx;
  const std::vector<Vec> grads = forward_backward(x, r, B, T, y, dx);
  std::vector<Vec> sum;
  for (const Vec& g : grads) sum.emplace_back(g.size(), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = len[b] * D;
    const Vec xb(x.begin() + b * T * D, x.begin() + b * T * D + n), rb(r.begin() + b * T * D, r.begin() + b * T * D + n);
    Vec yb, dxb;
    const std::vector<Vec> gb = forward_backward(xb, rb, 1, len[b], yb, dxb);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(y[b * T * D + i], yb[i], 1e-12) << "y row " << b;
      EXPECT_NEAR(dx[b * T * D + i], dxb[i], 1e-12) << "dx row " << b;
    }
    // Nothing after the end receives a gradient when the loss ignores it.
    for (int64_t i = n; i < T * D; ++i) EXPECT_EQ(dx[b * T * D + i], 0.0) << "padded dx, row " << b;
    for (size_t p = 0; p < sum.size(); ++p)
      for (size_t i = 0; i < sum[p].size(); ++i) sum[p][i] += gb[p][i];
  }
  for (size_t p = 0; p < sum.size(); ++p)
    for (size_t i = 0; i < sum[p].size(); ++i)
      EXPECT_NEAR(grads[p][i], sum[p][i], 1e-11 * (1 + std::abs(sum[p][i]))) << params[int64_t(p)].name << i;

  // Step-by-step decoding from an empty state equals the full forward.
  AttentionState<double> state = attn.make_state(0);
  FastWeightAttentionWorkspace<double> ws;
  for (int64_t t = 0; t < T; ++t) {
    Vec xt(static_cast<size_t>(B * D)), yt(xt.size());
    for (int64_t b = 0; b < B; ++b)
      std::copy(x.begin() + (b * T + t) * D, x.begin() + (b * T + t + 1) * D, xt.begin() + b * D);
    attn.step(params, ConstView<double>(xt.data(), {B, D}), state, TensorView<double>(yt.data(), {B, D}), ws);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d) EXPECT_NEAR(yt[b * D + d], y[(b * T + t) * D + d], 1e-11) << "step " << t;
  }
  // A reordered state continues the chosen rows (beam search).
  AttentionState<double> beams = attn.make_state(0);
  beams.copy_from(state);
  const int64_t rows[] = {1, 1, 2};
  beams.reorder(rows, 3);
  const Vec next = random_vec(B * D, 34);
  Vec y_all(next.size());
  attn.step(params, ConstView<double>(next.data(), {B, D}), state, TensorView<double>(y_all.data(), {B, D}), ws);
  Vec x3(static_cast<size_t>(3 * D)), y3(x3.size());
  for (int64_t i = 0; i < 3; ++i) std::copy(next.begin() + rows[i] * D, next.begin() + (rows[i] + 1) * D, x3.begin() + i * D);
  attn.step(params, ConstView<double>(x3.data(), {3, D}), beams, TensorView<double>(y3.data(), {3, D}), ws);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t d = 0; d < D; ++d) EXPECT_EQ(y3[i * D + d], y_all[rows[i] * D + d]) << "beam " << i;
}

TEST_P(CausalPadding, WithLengthsPaddingNeverWritesTheMemoryNorReceivesGradients) {
  const FastWeightAttentionConfig& c = GetParam().config;
  auto backend = cpu();
  ParameterList<double> params;
  FastWeightAttention<double> attn(params, backend, "", c);
  params.allocate(backend);
  Rng rng(41);
  attn.init(params, rng);
  const int64_t B = 3, T = 5, D = c.d_model;
  const Lengths len{2, 5, 3};
  Vec x = random_vec(B * T * D, 42);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = len[b]; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) x[(b * T + t) * D + d] = -20.0 * (d % 2 ? 1 : -1);
  const Vec r = random_vec(B * T * D, 43);  // nonzero at padded steps too: ignored with lengths
  struct Out {
    Vec y, dx, w, z;
    std::vector<Vec> grads;
  };
  auto run_causal = [&](const Vec& xs, const Vec& rs, int64_t batch, int64_t steps, const Lengths& lengths) {
    const Shape s{batch, steps, D};
    FastWeightAttentionWorkspace<double> ws;
    Out o;
    o.y.assign(xs.size(), 7.0);
    o.dx.assign(xs.size(), 7.0);
    params.zero_grad();
    AttentionState<double> state = attn.make_state(0);
    const bool write = !c.softmax;  // a padded softmax forward cannot fill a cache (checked below)
    attn.forward(params, ConstView<double>(xs.data(), s), write ? &state : nullptr,
                 write ? StateUpdate::Write : StateUpdate::Keep, TensorView<double>(o.y.data(), s), ws, nullptr,
                 lengths);
    attn.backward(params, ConstView<double>(xs.data(), s), ConstView<double>(rs.data(), s),
                  TensorView<double>(o.dx.data(), s), InputGrad::Overwrite, ws);
    for (int64_t p = 0; p < params.size(); ++p) o.grads.push_back(params[p].grad.to_host());
    if (write) {
      o.w.resize(static_cast<size_t>(state.w_count(batch)));
      o.z.resize(static_cast<size_t>(state.z_count(batch)));
      state.get_host(o.w.data(), o.z.data());
    }
    return o;
  };
  const Out padded = run_causal(x, r, B, T, len);
  std::vector<Vec> sum;
  for (const Vec& g : padded.grads) sum.emplace_back(g.size(), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = len[b] * D;
    const Vec xb(x.begin() + b * T * D, x.begin() + b * T * D + n), rb(r.begin() + b * T * D, r.begin() + b * T * D + n);
    const Out one = run_causal(xb, rb, 1, len[b], {});
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(padded.y[b * T * D + i], one.y[i], 1e-12) << "y row " << b;
      EXPECT_NEAR(padded.dx[b * T * D + i], one.dx[i], 1e-12) << "dx row " << b;
    }
    for (int64_t i = n; i < T * D; ++i) {
      EXPECT_EQ(padded.y[b * T * D + i], 0.0) << "padded y, row " << b;
      EXPECT_EQ(padded.dx[b * T * D + i], 0.0) << "padded dx, row " << b;
    }
    // The memory a row leaves is the one its last real token left.
    const size_t rw = one.w.size(), rz = one.z.size();
    for (size_t i = 0; i < rw; ++i) EXPECT_NEAR(padded.w[b * rw + i], one.w[i], 1e-12) << "W row " << b;
    for (size_t i = 0; i < rz; ++i) EXPECT_NEAR(padded.z[b * rz + i], one.z[i], 1e-12) << "z row " << b;
    for (size_t p = 0; p < sum.size(); ++p)
      for (size_t i = 0; i < sum[p].size(); ++i) sum[p][i] += one.grads[p][i];
  }
  for (size_t p = 0; p < sum.size(); ++p)
    for (size_t i = 0; i < sum[p].size(); ++i)
      EXPECT_NEAR(padded.grads[p][i], sum[p][i], 1e-11 * (1 + std::abs(sum[p][i]))) << params[int64_t(p)].name << i;

  // Bad lengths are refused; a softmax cache cannot take a padded batch.
  const Shape s{B, T, D};
  FastWeightAttentionWorkspace<double> ws;
  Vec y(x.size());
  for (const Lengths& bad : {Lengths{2, 5}, Lengths{0, 5, 3}, Lengths{2, 6, 3}})
    EXPECT_THROW(attn.forward(params, ConstView<double>(x.data(), s), nullptr, StateUpdate::Keep,
                              TensorView<double>(y.data(), s), ws, nullptr, bad),
                 Error);
  if (c.softmax) {
    AttentionState<double> cache = attn.make_state(0);
    try {
      attn.forward(params, ConstView<double>(x.data(), s), &cache, StateUpdate::Write, TensorView<double>(y.data(), s),
                   ws, nullptr, len);
      ADD_FAILURE() << "a padded batch filled a key/value cache";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), FWP_ERR_UNSUPPORTED);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, CausalPadding, ::testing::ValuesIn(causal_kinds()),
                         [](const ::testing::TestParamInfo<CausalKind>& info) { return info.param.name; });

}  // namespace
}  // namespace fwp
