// The language model (src/models/lm): every parameter gradient against
// central differences in double for each attention kind, LayerNorm placement
// and embedding tying; the registry's parameter shapes against the network's;
// carried state against one long segment; step-by-step log-probabilities
// against the forward's; the three evaluation modes against brute-force loops;
// the sampler's semantics; bad input. With adaptive input + adaptive softmax
// (cutoffs, div_val, tied or not): the same gradient check, shapes, steps
// against forwards (log-probabilities that sum to one), evaluation modes and
// every bad cutoff / div_val.
//
// The network runs on the CPU backend here, whose device memory is host
// memory, so the tests read and perturb parameters through their pointers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "models/lm/lm_config.h"
#include "models/lm/lm_model.h"
#include "models/lm/sampler.h"
#include "models/registry.h"
#include "expect_error.h"

namespace fwp {
namespace {

using Net = LmNetwork<double>;
using States = Net::States;

using fwp::test::expect_error;

enum class Kind { Softmax, EluSum, DpfpDelta, FavorDelta, EluDeltaAttnNorm };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Softmax: return "softmax";
    case Kind::EluSum: return "elu-sum";
    case Kind::DpfpDelta: return "dpfp-delta";
    case Kind::FavorDelta: return "favor-delta";
    case Kind::EluDeltaAttnNorm: return "elu-delta-attn-norm";
  }
  return "?";
}

// A tiny LM: 2 layers, d_model 8, 2 heads of 4, d_ff 12, vocabulary 7, dropout off.
LmConfig tiny(Kind kind, bool pre_norm, bool tied, double init_std = 0.4) {
  LmConfig c;
  c.vocab_size = 7;
  c.num_layers = 2;
  c.attention.d_model = 8;
  c.attention.num_heads = 2;
  c.attention.d_head = 4;
  c.attention.init_std = init_std;
  c.attention.feature_map = FeatureMap::Elu;
  c.attention.update_rule = UpdateRule::Sum;
  c.attention.sum_normalize = true;
  switch (kind) {
    case Kind::Softmax:
      c.attention.softmax = true;
      c.attention.sum_normalize = false;
      break;
    case Kind::EluSum: break;
    case Kind::DpfpDelta:
      c.attention.feature_map = FeatureMap::Dpfp;
      c.attention.update_rule = UpdateRule::Delta;
      break;
    case Kind::FavorDelta:
      c.attention.feature_map = FeatureMap::Favor;
      c.attention.favor_features = 5;
      c.attention.favor_redraw = false;  // a fixed projection: the loss is a function of the parameters
      c.attention.update_rule = UpdateRule::Delta;
      break;
    case Kind::EluDeltaAttnNorm:
      c.attention.update_rule = UpdateRule::Delta;
      c.attention.attn_normalize = true;
      break;
  }
  c.d_ff = 12;
  c.dropout = 0.0;
  c.pre_norm = pre_norm;
  c.tie_embeddings = tied;
  c.init_std = init_std;
  return c;
}

std::unique_ptr<Net> make_net(const LmConfig& c, uint64_t seed = 7) {
  return std::make_unique<Net>(c, make_cpu_backend<double>(1), Rng(seed));
}

std::vector<int32_t> random_ids(Rng& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  return v;
}

States make_states(const Net& net, int64_t batch) {
  States s;
  for (const AttentionStateSpec& spec : net.state_specs()) s.emplace_back(net.backend(), spec, batch);
  return s;
}

// ---- gradients ---------------------------------------------------------------------------

// Up to `per_tensor` entries of every trainable parameter (spread over the tensor) against
// central differences of the mean loss; returns the worst relative error.
double gradient_error(Net& net, const std::vector<int32_t>& in, const std::vector<int32_t>& tg, int64_t B,
                      int64_t T, int64_t per_tensor, std::string* worst) {
  ParameterList<double>& params = net.params();
  params.zero_grad();
  net.forward(in.data(), tg.data(), B, T, nullptr, nullptr);
  net.backward();
  double err = 0.0;
  for (int64_t p = 0; p < params.size(); ++p) {
    Parameter<double>& par = params[p];
    if (!par.trainable) continue;
    const int64_t n = par.numel(), stride = std::max<int64_t>(1, n / per_tensor);
    for (int64_t i = 0; i < n; i += stride) {
      double* v = par.value.data() + i;
      const double saved = *v, h = 1e-6;
      *v = saved + h;
      const double lp = net.forward(in.data(), tg.data(), B, T, nullptr, nullptr);
      *v = saved - h;
      const double lm = net.forward(in.data(), tg.data(), B, T, nullptr, nullptr);
      *v = saved;
      const double numeric = (lp - lm) / (2 * h), analytic = par.grad.data()[i];
      const double e = std::abs(numeric - analytic) / std::max(1e-3, std::abs(numeric));
      if (e > err) {
        err = e;
        if (worst) *worst = par.name + "[" + std::to_string(i) + "] analytic " + std::to_string(analytic) +
                            " numeric " + std::to_string(numeric);
      }
    }
  }
  return err;
}

TEST(LmGradient, EveryParameterMatchesCentralDifferences) {
  for (Kind kind : {Kind::Softmax, Kind::EluSum, Kind::DpfpDelta, Kind::FavorDelta, Kind::EluDeltaAttnNorm}) {
    for (bool pre_norm : {false, true}) {
      for (bool tied : {false, true}) {
        SCOPED_TRACE(std::string(kind_name(kind)) + (pre_norm ? " pre-LN" : " post-LN") + (tied ? " tied" : " untied"));
        auto net = make_net(tiny(kind, pre_norm, tied));
        Rng rng(3);
        const int64_t B = 2, T = 5;
        auto in = random_ids(rng, B * T, 7), tg = random_ids(rng, B * T, 7);
        tg[3] = -1;  // an unscored position
        std::string worst;
        EXPECT_LT(gradient_error(*net, in, tg, B, T, 16, &worst), 1e-5) << worst;
      }
    }
  }
}

TEST(LmGradient, CarriedSegmentGradientIsTheTruncatedOne) {
  // With a carried state, the second segment's gradient treats the incoming state as a constant.
  auto net = make_net(tiny(Kind::DpfpDelta, false, false));
  Rng rng(5);
  const int64_t B = 2, T = 4;
  auto in1 = random_ids(rng, B * T, 7), in2 = random_ids(rng, B * T, 7), tg2 = random_ids(rng, B * T, 7);
  States after_first = make_states(*net, B);
  net->forward(in1.data(), in1.data(), B, T, &after_first, nullptr);
  auto loss2 = [&]() {
    States s = make_states(*net, B);
    for (size_t l = 0; l < s.size(); ++l) s[l].copy_from(after_first[l]);
    return net->forward(in2.data(), tg2.data(), B, T, &s, nullptr);
  };
  net->params().zero_grad();
  loss2();
  net->backward();
  double err = 0.0;
  for (int64_t p = 0; p < net->params().size(); ++p) {
    Parameter<double>& par = net->params()[p];
    for (int64_t i = 0; i < par.numel(); i += std::max<int64_t>(1, par.numel() / 8)) {
      double* v = par.value.data() + i;
      const double saved = *v;
      *v = saved + 1e-6;
      const double lp = loss2();
      *v = saved - 1e-6;
      const double lm = loss2();
      *v = saved;
      const double numeric = (lp - lm) / 2e-6;
      err = std::max(err, std::abs(numeric - par.grad.data()[i]) / std::max(1e-3, std::abs(numeric)));
    }
  }
  EXPECT_LT(err, 1e-5);
}

// ---- registry ------------------------------------------------------------------------------

TEST(LmRegistry, ShapesMatchTheNetworkAndConfigRoundTrips) {
  for (Kind kind : {Kind::Softmax, Kind::EluSum, Kind::DpfpDelta, Kind::FavorDelta}) {
    for (bool pre_norm : {false, true}) {
      for (bool tied : {false, true}) {
        LmConfig c = tiny(kind, pre_norm, tied);
        c.attention.use_bias = kind == Kind::EluSum;
        c.position = pre_norm ? PositionEncoding::None : PositionEncoding::Sinusoidal;
        const nlohmann::json j = c.to_json();
        EXPECT_EQ(LmConfig::from_json(j).to_json(), j);
        auto net = make_net(c);
        const auto shapes = ModelRegistry::builtin().parameter_shapes(j);
        ASSERT_EQ(static_cast<int64_t>(shapes.size()), net->params().size()) << j.dump();
        for (size_t i = 0; i < shapes.size(); ++i) {
          EXPECT_EQ(shapes[i].name, net->params()[static_cast<int64_t>(i)].name);
          EXPECT_EQ(shapes[i].shape, net->params()[static_cast<int64_t>(i)].shape) << shapes[i].name;
        }
      }
    }
  }
}

TEST(LmRegistry, BadConfigsAreRejected) {
  LmConfig c = tiny(Kind::EluSum, false, false);
  c.attn_dropout = 0.1;
  expect_error(FWP_ERR_UNSUPPORTED, "attn_dropout", [&] { c.validate(); });
  c.attn_dropout = 0;
  c.vocab_size = 1;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "vocab_size", [&] { c.validate(); });
  c.vocab_size = 7;
  c.dropout = 1.0;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "dropout", [&] { c.validate(); });
  c.dropout = 0;
  nlohmann::json j = c.to_json();
  j["attention"]["feature_map"] = "relu";
  expect_error(FWP_ERR_FORMAT, "feature_map", [&] { LmConfig::from_json(j); });
  j = c.to_json();
  j.erase("d_ff");
  expect_error(FWP_ERR_FORMAT, "d_ff", [&] { LmConfig::from_json(j); });
}

// ---- adaptive input and adaptive softmax --------------------------------------------------------

std::vector<double> forward_log_probs(Net& net, const std::vector<int32_t>& in, int64_t B, int64_t T);  // below

// A tiny adaptive LM: vocabulary 12 in clusters [0, 4), [4, 8), [8, 12); with
// div_val 2 their widths are 8, 4 and 2.
LmConfig tiny_adaptive(Kind kind, bool pre_norm, bool tied, int64_t div_val,
                       std::vector<int64_t> cutoffs = {4, 8}) {
  LmConfig c = tiny(kind, pre_norm, tied);
  c.vocab_size = 12;
  c.cutoffs = std::move(cutoffs);
  c.div_val = div_val;
  return c;
}

// The adaptive projections start at N(0, 0.01^2) (the authors' proj_init_std):
// redrawn larger so that every path carries a gradient the check can see.
void enlarge_projections(Net& net, uint64_t seed) {
  Rng rng(seed);
  for (int64_t p = 0; p < net.params().size(); ++p) {
    Parameter<double>& par = net.params()[p];
    if (par.name.find("_projs.") == std::string::npos) continue;
    for (int64_t i = 0; i < par.numel(); ++i) par.value.data()[i] = 0.4 * rng.normal();
  }
}

// Ids covering every cluster of tiny_adaptive (random, then one of each cluster in front).
std::vector<int32_t> adaptive_ids(Rng& rng, int64_t n) {
  auto v = random_ids(rng, n, 12);
  const int32_t each[3] = {1, 5, 10};
  for (int64_t i = 0; i < std::min<int64_t>(n, 3); ++i) v[static_cast<size_t>(i)] = each[i];
  return v;
}

TEST(LmAdaptive, EveryParameterMatchesCentralDifferences) {
  struct Case {
    Kind kind;
    bool pre_norm, tied;
    int64_t div_val;
    std::vector<int64_t> cutoffs;
  };
  const std::vector<Case> cases = {
      {Kind::DpfpDelta, false, false, 2, {4, 8}}, {Kind::DpfpDelta, false, true, 2, {4, 8}},
      {Kind::Softmax, true, false, 2, {4, 8}},    {Kind::Softmax, true, true, 2, {4, 8}},
      {Kind::EluSum, false, true, 1, {4, 8}},     {Kind::EluSum, false, false, 1, {4, 8}},
      {Kind::EluSum, true, true, 2, {}},          {Kind::FavorDelta, false, true, 4, {6}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(std::string(kind_name(k.kind)) + (k.pre_norm ? " pre-LN" : " post-LN") +
                 (k.tied ? " tied" : " untied") + " div_val " + std::to_string(k.div_val) + ", " +
                 std::to_string(k.cutoffs.size()) + " cutoffs");
    auto net = make_net(tiny_adaptive(k.kind, k.pre_norm, k.tied, k.div_val, k.cutoffs));
    enlarge_projections(*net, 29);
    Rng rng(3);
    const int64_t B = 2, T = 5;
    auto in = adaptive_ids(rng, B * T), tg = adaptive_ids(rng, B * T);
    tg[4] = -1;  // an unscored position
    std::string worst;
    EXPECT_LT(gradient_error(*net, in, tg, B, T, 16, &worst), 1e-5) << worst;
  }
}

TEST(LmAdaptive, ParametersAreTheAuthorsAndTiedOnesAreShared) {
  for (bool tied : {false, true}) {
    for (int64_t div_val : {1, 2}) {
      for (bool pre_norm : {false, true}) {
        SCOPED_TRACE(std::string(tied ? "tied" : "untied") + " div_val " + std::to_string(div_val));
        const LmConfig c = tiny_adaptive(Kind::DpfpDelta, pre_norm, tied, div_val);
        const nlohmann::json j = c.to_json();
        EXPECT_EQ(LmConfig::from_json(j).to_json(), j);
        EXPECT_EQ(j["cutoffs"], nlohmann::json::array({4, 8}));
        EXPECT_EQ(j["div_val"], div_val);
        auto net = make_net(c);
        const auto shapes = ModelRegistry::builtin().parameter_shapes(j);
        ASSERT_EQ(static_cast<int64_t>(shapes.size()), net->params().size());
        std::vector<std::string> names;
        for (size_t i = 0; i < shapes.size(); ++i) {
          EXPECT_EQ(shapes[i].name, net->params()[static_cast<int64_t>(i)].name);
          EXPECT_EQ(shapes[i].shape, net->params()[static_cast<int64_t>(i)].shape) << shapes[i].name;
          names.push_back(shapes[i].name);
        }
        auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
        EXPECT_EQ(names.front(), "embedding.emb_layers.0.weight");
        EXPECT_TRUE(has("output.cluster_weight"));
        EXPECT_TRUE(has("output.out_layers.0.bias"));
        EXPECT_FALSE(has("embedding.weight"));
        EXPECT_FALSE(has("output.bias"));
        EXPECT_EQ(has("output.out_layers.0.weight"), !tied);
        if (div_val == 2) {
          EXPECT_TRUE(has("embedding.emb_projs.2"));
          EXPECT_TRUE(has("output.out_projs.0"));  // the head's projection is never tied
          EXPECT_EQ(has("output.out_projs.1"), !tied);
          EXPECT_EQ(has("output.out_projs.2"), !tied);
          EXPECT_EQ(has("output.out_layers.2.weight"), !tied);
        } else {
          EXPECT_FALSE(has("embedding.emb_projs.0"));
          EXPECT_FALSE(has("output.out_projs.0"));
        }
      }
    }
  }
}

TEST(LmAdaptive, StepLogProbsEqualTheForwardsAndSumToOne) {
  for (Kind kind : {Kind::Softmax, Kind::DpfpDelta}) {
    for (bool tied : {false, true}) {
      for (int64_t div_val : {1, 2}) {
        SCOPED_TRACE(std::string(kind_name(kind)) + (tied ? " tied" : " untied") + " div_val " +
                     std::to_string(div_val));
        LmConfig c = tiny_adaptive(kind, tied, tied, div_val);  // pre-LN with the tied ones
        c.dropout = 0.3;  // evaluation mode turns it off in both
        auto net = make_net(c);
        enlarge_projections(*net, 31);
        net->set_training(false);
        Rng rng(13);
        const int64_t B = 2, T = 5, V = 12;
        auto in = adaptive_ids(rng, B * T);
        const auto ref = forward_log_probs(*net, in, B, T);  // -loss of each target v at each position
        States st = make_states(*net, B);
        std::vector<double> lp(static_cast<size_t>(B * V));
        double err = 0.0, mass_err = 0.0;
        for (int64_t t = 0; t < T; ++t) {
          const std::vector<int32_t> tok = {in[t], in[T + t]};
          net->step(tok.data(), B, st, lp.data());
          for (int64_t b = 0; b < B; ++b) {
            double mx = -INFINITY, sum = 0.0;
            for (int64_t v = 0; v < V; ++v) {
              err = std::max(err, std::abs(lp[b * V + v] - ref[(b * T + t) * V + v]));
              mx = std::max(mx, lp[b * V + v]);
            }
            for (int64_t v = 0; v < V; ++v) sum += std::exp(lp[b * V + v] - mx);
            mass_err = std::max(mass_err, std::abs(mx + std::log(sum)));  // logsumexp == 0
          }
        }
        EXPECT_LT(err, 1e-11);
        EXPECT_LT(mass_err, 1e-12);
        EXPECT_EQ(st[0].position(), T);
      }
    }
  }
}

TEST(LmAdaptive, EvaluationModesMatchTheirForwards) {
  LmConfig c = tiny_adaptive(Kind::DpfpDelta, false, true, 2);
  c.dropout = 0.2;
  auto net = make_net(c);
  enlarge_projections(*net, 37);
  Rng rng(19);
  const auto tokens = adaptive_ids(rng, 30);
  const LmEvalResult whole = net->evaluate(tokens.data(), 30, LmEvalMode::Segments, 100);
  for (int64_t L : {1, 4, 29}) {
    const LmEvalResult carry = net->evaluate(tokens.data(), 30, LmEvalMode::Carry, L);
    EXPECT_EQ(carry.scored, 29);
    EXPECT_NEAR(carry.total_nll, whole.total_nll, 1e-9) << L;
  }
  // Sliding windows of 6 against one forward per window, each scoring its last token.
  const LmEvalResult slide = net->evaluate(tokens.data(), 30, LmEvalMode::Sliding, 6);
  net->set_training(false);
  std::vector<double> losses(6);
  net->forward(tokens.data(), tokens.data() + 1, 1, 6, nullptr, losses.data());
  double nll = 0.0;
  for (double x : losses) nll += x;
  for (int64_t s = 1; s + 6 <= 29; ++s) {
    net->forward(tokens.data() + s, tokens.data() + s + 1, 1, 6, nullptr, losses.data());
    nll += losses.back();
  }
  EXPECT_EQ(slide.scored, 29);
  EXPECT_NEAR(slide.total_nll, nll, 1e-9);
}

TEST(LmAdaptive, BadCutoffsAndDivValAreRejected) {
  LmConfig c = tiny_adaptive(Kind::EluSum, false, false, 2);
  c.validate();
  c.cutoffs = {4, 4};
  expect_error(FWP_ERR_INVALID_ARGUMENT, "cutoffs[1] must be greater than cutoffs[0]", [&] { c.validate(); });
  c.cutoffs = {8, 4};
  expect_error(FWP_ERR_INVALID_ARGUMENT, "strictly increasing", [&] { c.validate(); });
  c.cutoffs = {4, 12};
  expect_error(FWP_ERR_INVALID_ARGUMENT, "cutoffs[1] must be in (0, vocab_size = 12) (got 12)", [&] { c.validate(); });
  c.cutoffs = {0};
  expect_error(FWP_ERR_INVALID_ARGUMENT, "cutoffs[0] must be in (0, vocab_size", [&] { c.validate(); });
  c.cutoffs = {-3};
  expect_error(FWP_ERR_INVALID_ARGUMENT, "cutoffs[0]", [&] { c.validate(); });
  c.cutoffs = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  c.vocab_size = 20;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "at most 8", [&] { c.validate(); });
  c.vocab_size = 12;
  c.cutoffs = {4, 8};
  c.div_val = 0;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "div_val must be >= 1", [&] { c.validate(); });
  c.div_val = 3;  // widths 8, 2, 0
  expect_error(FWP_ERR_INVALID_ARGUMENT, "div_val is too large for d_model 8", [&] { c.validate(); });
  c.div_val = 9;  // one cutoff: widths 8, 0
  c.cutoffs = {4};
  expect_error(FWP_ERR_INVALID_ARGUMENT, "div_val is too large", [&] { c.validate(); });
  c.cutoffs.clear();  // no cutoffs: one cluster of width d_model, projected (any div_val)
  c.validate();
  // The network refuses the same (its constructor validates), naming the field.
  c.cutoffs = {4, 4};
  expect_error(FWP_ERR_INVALID_ARGUMENT, "config->cutoffs[1]", [&] { make_net(c); });
  // A checkpoint's config with bad cutoffs is a format error.
  c.cutoffs = {4, 8};
  c.div_val = 2;
  nlohmann::json j = c.to_json();
  j["cutoffs"] = nlohmann::json::array({8, 4});
  expect_error(FWP_ERR_FORMAT, "cutoffs[1]", [&] { LmConfig::from_json(j); });
  j["cutoffs"] = "4,8";
  expect_error(FWP_ERR_FORMAT, "cutoffs", [&] { LmConfig::from_json(j); });
  j = c.to_json();
  j["div_val"] = 5;
  expect_error(FWP_ERR_FORMAT, "div_val", [&] { LmConfig::from_json(j); });
}

// ---- carried state -------------------------------------------------------------------------

TEST(LmState, TwoCarriedSegmentsEqualOneLongSegment) {
  for (Kind kind : {Kind::EluSum, Kind::DpfpDelta, Kind::FavorDelta, Kind::EluDeltaAttnNorm}) {
    for (bool pre_norm : {false, true}) {
      SCOPED_TRACE(std::string(kind_name(kind)) + (pre_norm ? " pre-LN" : " post-LN"));
      auto net = make_net(tiny(kind, pre_norm, false));
      Rng rng(11);
      const int64_t B = 2, T = 3, T2 = 4;
      auto in = random_ids(rng, B * (T + T2), 7), tg = random_ids(rng, B * (T + T2), 7);
      std::vector<double> whole(in.size());
      net->forward(in.data(), tg.data(), B, T + T2, nullptr, whole.data());
      // The same tokens as two segments: [B][T] then [B][T2].
      std::vector<int32_t> a_in, a_tg, b_in, b_tg;
      for (int64_t b = 0; b < B; ++b) {
        const auto row = b * (T + T2);
        a_in.insert(a_in.end(), in.begin() + row, in.begin() + row + T);
        a_tg.insert(a_tg.end(), tg.begin() + row, tg.begin() + row + T);
        b_in.insert(b_in.end(), in.begin() + row + T, in.begin() + row + T + T2);
        b_tg.insert(b_tg.end(), tg.begin() + row + T, tg.begin() + row + T + T2);
      }
      States st = make_states(*net, B);
      std::vector<double> first(a_in.size()), second(b_in.size());
      net->forward(a_in.data(), a_tg.data(), B, T, &st, first.data());
      EXPECT_EQ(st[0].position(), T);
      net->forward(b_in.data(), b_tg.data(), B, T2, &st, second.data());
      EXPECT_EQ(st[1].position(), T + T2);
      // The position travels with copies and row reorders, and restarts with reset.
      AttentionState<double> copy(net->backend(), st[0].spec(), 1);
      copy.copy_from(st[0]);
      EXPECT_EQ(copy.position(), T + T2);
      const int64_t rows[3] = {1, 1, 0};
      copy.reorder(rows, 3);
      EXPECT_EQ(copy.position(), T + T2);
      copy.reset();
      EXPECT_EQ(copy.position(), 0);
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t t = 0; t < T; ++t)
          EXPECT_NEAR(first[b * T + t], whole[b * (T + T2) + t], 1e-11) << b << " " << t;
        for (int64_t t = 0; t < T2; ++t)
          EXPECT_NEAR(second[b * T2 + t], whole[b * (T + T2) + T + t], 1e-11) << b << " " << t;
      }
    }
  }
}

TEST(LmState, SoftmaxContinuesOnlyFromAnEmptyCache) {
  auto net = make_net(tiny(Kind::Softmax, false, false));
  Rng rng(2);
  auto in = random_ids(rng, 6, 7);
  States st = make_states(*net, 2);
  net->forward(in.data(), in.data(), 2, 3, &st, nullptr);
  EXPECT_EQ(st[0].length(), 3);
  expect_error(FWP_ERR_UNSUPPORTED, "fwp_lm_step", [&] { net->forward(in.data(), in.data(), 2, 3, &st, nullptr); });
}

TEST(LmState, StatesOfAnotherShapeOrBatchAreRefused) {
  auto net = make_net(tiny(Kind::EluSum, false, false));
  auto other = make_net(tiny(Kind::DpfpDelta, false, false));
  Rng rng(2);
  auto in = random_ids(rng, 6, 7);
  States wrong = make_states(*other, 2);
  expect_error(FWP_ERR_SHAPE_MISMATCH, "layer 0 of the state", [&] { net->forward(in.data(), in.data(), 2, 3, &wrong, nullptr); });
  States three = make_states(*net, 3);
  expect_error(FWP_ERR_SHAPE_MISMATCH, "batch", [&] { net->forward(in.data(), in.data(), 2, 3, &three, nullptr); });
  States one_layer;
  one_layer.emplace_back(net->backend(), net->state_specs()[0], 2);
  expect_error(FWP_ERR_SHAPE_MISMATCH, "attention layers", [&] { net->forward(in.data(), in.data(), 2, 3, &one_layer, nullptr); });
}

// ---- step-by-step decoding -------------------------------------------------------------------

// log p(v | prefix) at every position from the forward, by scoring target v everywhere.
std::vector<double> forward_log_probs(Net& net, const std::vector<int32_t>& in, int64_t B, int64_t T) {
  const int64_t V = net.config().vocab_size;
  std::vector<double> lp(static_cast<size_t>(B * T * V)), losses(static_cast<size_t>(B * T));
  for (int64_t v = 0; v < V; ++v) {
    std::vector<int32_t> tg(in.size(), static_cast<int32_t>(v));
    net.forward(in.data(), tg.data(), B, T, nullptr, losses.data());
    for (int64_t r = 0; r < B * T; ++r) lp[static_cast<size_t>(r * V + v)] = -losses[static_cast<size_t>(r)];
  }
  return lp;
}

TEST(LmStep, StepLogProbsEqualTheForwardsAtEveryPosition) {
  for (Kind kind : {Kind::Softmax, Kind::EluSum, Kind::DpfpDelta, Kind::FavorDelta, Kind::EluDeltaAttnNorm}) {
    for (bool pre_norm : {false, true}) {
      SCOPED_TRACE(std::string(kind_name(kind)) + (pre_norm ? " pre-LN" : " post-LN"));
      LmConfig c = tiny(kind, pre_norm, true);
      c.dropout = 0.3;  // evaluation mode turns it off in both
      c.attention.favor_redraw = true;
      auto net = make_net(c);
      net->set_training(false);
      Rng rng(13);
      const int64_t B = 2, T = 6, V = 7;
      auto in = random_ids(rng, B * T, V);
      const auto ref = forward_log_probs(*net, in, B, T);
      States st = make_states(*net, B);
      std::vector<double> lp(static_cast<size_t>(B * V));
      double err = 0.0;
      for (int64_t t = 0; t < T; ++t) {
        const std::vector<int32_t> tok = {in[t], in[T + t]};
        net->step(tok.data(), B, st, lp.data());
        for (int64_t b = 0; b < B; ++b)
          for (int64_t v = 0; v < V; ++v)
            err = std::max(err, std::abs(lp[b * V + v] - ref[(b * T + t) * V + v]));
      }
      EXPECT_LT(err, 1e-11);
      EXPECT_EQ(st[0].position(), T);

      // A prompt fed in one prefill, then steps: the same numbers.
      States st2 = make_states(*net, B);
      std::vector<int32_t> prompt;
      for (int64_t b = 0; b < B; ++b) prompt.insert(prompt.end(), in.begin() + b * T, in.begin() + b * T + 3);
      net->prefill(prompt.data(), B, 3, st2);
      err = 0.0;
      for (int64_t t = 3; t < T; ++t) {
        const std::vector<int32_t> tok = {in[t], in[T + t]};
        net->step(tok.data(), B, st2, lp.data());
        for (int64_t b = 0; b < B; ++b)
          for (int64_t v = 0; v < V; ++v)
            err = std::max(err, std::abs(lp[b * V + v] - ref[(b * T + t) * V + v]));
      }
      EXPECT_LT(err, 1e-11);
    }
  }
}

// ---- evaluation ---------------------------------------------------------------------------

TEST(LmEvaluate, SlidingWindowEqualsABruteForceLoop) {
  for (Kind kind : {Kind::Softmax, Kind::DpfpDelta}) {
    SCOPED_TRACE(kind_name(kind));
    LmConfig c = tiny(kind, false, false);
    c.dropout = 0.2;
    auto net = make_net(c);
    Rng rng(17);
    const auto tokens = random_ids(rng, 23, 7);
    const bool was_training = net->training();
    for (int64_t L : {1, 4, 6, 22, 40}) {
      const LmEvalResult r = net->evaluate(tokens.data(), 23, LmEvalMode::Sliding, L);
      EXPECT_EQ(net->training(), was_training);
      // Brute force: window [s, s + L) from zero, one forward each.
      net->set_training(false);
      double nll = 0.0;
      int64_t scored = 0;
      const int64_t P = 22, first = std::min(L, P);
      std::vector<double> losses(static_cast<size_t>(first));
      net->forward(tokens.data(), tokens.data() + 1, 1, first, nullptr, losses.data());
      for (double x : losses) nll += x;
      scored += first;
      for (int64_t s = 1; s + L <= P; ++s) {
        std::vector<double> wl(static_cast<size_t>(L));
        net->forward(tokens.data() + s, tokens.data() + s + 1, 1, L, nullptr, wl.data());
        nll += wl.back();
        ++scored;
      }
      net->set_training(was_training);
      EXPECT_EQ(r.scored, 22) << L;
      EXPECT_EQ(scored, 22) << L;
      EXPECT_NEAR(r.total_nll, nll, 1e-9) << L;
    }
  }
}

TEST(LmEvaluate, CarryEqualsOneSegmentAndSegmentsEqualTheirForwards) {
  LmConfig c = tiny(Kind::DpfpDelta, false, true);
  c.dropout = 0.2;
  auto net = make_net(c);
  Rng rng(19);
  const auto tokens = random_ids(rng, 30, 7);
  const LmEvalResult whole = net->evaluate(tokens.data(), 30, LmEvalMode::Segments, 100);
  for (int64_t L : {1, 4, 7, 29}) {
    const LmEvalResult carry = net->evaluate(tokens.data(), 30, LmEvalMode::Carry, L);
    EXPECT_EQ(carry.scored, 29);
    EXPECT_NEAR(carry.total_nll, whole.total_nll, 1e-9) << L;
  }
  // Segments of 4: 7 independent segments and one of 1.
  const LmEvalResult seg = net->evaluate(tokens.data(), 30, LmEvalMode::Segments, 4);
  net->set_training(false);
  double nll = 0.0;
  for (int64_t s = 0; s < 29; s += 4) {
    const int64_t n = std::min<int64_t>(4, 29 - s);
    nll += n * net->forward(tokens.data() + s, tokens.data() + s + 1, 1, n, nullptr, nullptr);
  }
  EXPECT_EQ(seg.scored, 29);
  EXPECT_NEAR(seg.total_nll, nll, 1e-9);
  // Softmax layers cannot carry.
  auto soft = make_net(tiny(Kind::Softmax, false, false));
  expect_error(FWP_ERR_UNSUPPORTED, "carry mode", [&] { soft->evaluate(tokens.data(), 30, LmEvalMode::Carry, 4); });
  expect_error(FWP_ERR_OUT_OF_RANGE, "tokens[2]", [&] {
    auto bad = tokens;
    bad[2] = 7;
    net->evaluate(bad.data(), 30, LmEvalMode::Sliding, 4);
  });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "count", [&] { net->evaluate(tokens.data(), 1, LmEvalMode::Sliding, 4); });
}

TEST(LmForward, TargetsAndIdsAreCheckedAndDropoutIsSeeded) {
  LmConfig c = tiny(Kind::EluSum, false, false);
  c.dropout = 0.5;
  auto a = make_net(c, 5), b = make_net(c, 5);
  Rng rng(23);
  auto in = random_ids(rng, 8, 7);
  EXPECT_EQ(a->forward(in.data(), in.data(), 2, 4, nullptr, nullptr),
            b->forward(in.data(), in.data(), 2, 4, nullptr, nullptr));
  const double second = a->forward(in.data(), in.data(), 2, 4, nullptr, nullptr);
  EXPECT_NE(second, b->forward(in.data(), in.data(), 1, 4, nullptr, nullptr));
  auto bad = in;
  bad[5] = 7;
  expect_error(FWP_ERR_OUT_OF_RANGE, "inputs[5]", [&] { a->forward(bad.data(), in.data(), 2, 4, nullptr, nullptr); });
  expect_error(FWP_ERR_OUT_OF_RANGE, "targets[5]", [&] { a->forward(in.data(), bad.data(), 2, 4, nullptr, nullptr); });
  bad[5] = -3;
  expect_error(FWP_ERR_OUT_OF_RANGE, "inputs[5]", [&] { a->forward(bad.data(), in.data(), 2, 4, nullptr, nullptr); });
  std::vector<int32_t> none(8, -1);
  // A failed forward leaves no backward behind (not even the earlier forward's).
  a->forward(in.data(), in.data(), 2, 4, nullptr, nullptr);
  expect_error(FWP_ERR_INVALID_ARGUMENT, "all negative", [&] { a->forward(in.data(), none.data(), 2, 4, nullptr, nullptr); });
  expect_error(FWP_ERR_BAD_STATE, "forward first", [&] { a->backward(); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "batch", [&] { a->forward(in.data(), in.data(), 0, 4, nullptr, nullptr); });
}

// ---- sampler -------------------------------------------------------------------------------

TEST(LmSampler, GreedyTopKTopPAndTemperature) {
  const std::vector<float> lp = {std::log(0.1f), std::log(0.4f), std::log(0.3f), std::log(0.2f), -INFINITY};
  uint64_t rng = 1;
  SamplerSettings greedy;
  greedy.temperature = 0;
  EXPECT_EQ(sample_token(lp.data(), 5, greedy, &rng), 1);
  EXPECT_EQ(rng, 1u) << "greedy draws nothing";
  const std::vector<float> ties = {0.f, 2.f, 2.f};
  EXPECT_EQ(sample_token(ties.data(), 3, greedy, &rng), 1);

  auto histogram = [&](const SamplerSettings& s, int draws) {
    std::vector<double> h(5, 0.0);
    uint64_t r = 42;
    for (int i = 0; i < draws; ++i) h[static_cast<size_t>(sample_token(lp.data(), 5, s, &r))] += 1.0 / draws;
    return h;
  };
  SamplerSettings plain;
  auto h = histogram(plain, 40000);
  EXPECT_NEAR(h[0], 0.1, 0.01);
  EXPECT_NEAR(h[1], 0.4, 0.01);
  EXPECT_NEAR(h[2], 0.3, 0.01);
  EXPECT_NEAR(h[3], 0.2, 0.01);
  EXPECT_EQ(h[4], 0.0);
  SamplerSettings top2;
  top2.top_k = 2;
  h = histogram(top2, 20000);
  EXPECT_NEAR(h[1], 4.0 / 7, 0.015);
  EXPECT_NEAR(h[2], 3.0 / 7, 0.015);
  EXPECT_EQ(h[0] + h[3], 0.0);
  SamplerSettings nucleus;
  nucleus.top_p = 0.75;  // 0.4 + 0.3 = 0.7 < 0.75: the third (0.2) is needed
  h = histogram(nucleus, 20000);
  EXPECT_NEAR(h[1], 0.4 / 0.9, 0.015);
  EXPECT_NEAR(h[3], 0.2 / 0.9, 0.015);
  EXPECT_EQ(h[0], 0.0);
  nucleus.top_p = 0.3;  // the top token alone reaches it
  h = histogram(nucleus, 1000);
  EXPECT_NEAR(h[1], 1.0, 1e-9);
  SamplerSettings cold;
  cold.temperature = 0.5;  // p ~ p^2: 0.01, 0.16, 0.09, 0.04 (sum 0.30)
  h = histogram(cold, 40000);
  EXPECT_NEAR(h[1], 0.16 / 0.30, 0.015);
  EXPECT_NEAR(h[0], 0.01 / 0.30, 0.01);
  // Reproducible: the same state gives the same draws.
  uint64_t r1 = 9, r2 = 9;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sample_token(lp.data(), 5, plain, &r1), sample_token(lp.data(), 5, plain, &r2));

  const std::vector<float> nan = {0.f, NAN};
  expect_error(FWP_ERR_INVALID_ARGUMENT, "log_probs[1]", [&] { sample_token(nan.data(), 2, plain, &rng); });
  const std::vector<float> none = {-INFINITY, -INFINITY};
  expect_error(FWP_ERR_INVALID_ARGUMENT, "no finite", [&] { sample_token(none.data(), 2, plain, &rng); });
  SamplerSettings bad;
  bad.top_p = 0;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "top_p", [&] { validate_sampler(bad, "sampler->"); });
  bad = SamplerSettings();
  bad.temperature = -1;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "temperature", [&] { validate_sampler(bad, "sampler->"); });
  bad = SamplerSettings();
  bad.top_k = -1;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "top_k", [&] { validate_sampler(bad, "sampler->"); });
}

}  // namespace
}  // namespace fwp
