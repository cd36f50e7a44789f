// The associative-retrieval model, its data generator and the ops added for
// it: forward against a plain-loop double reference, whole-model gradients
// against central differences (double), training on S = 10, determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/retrieval_data.h"
#include "models/retrieval/retrieval_model.h"
#include "ops_reference.h"
#include "train/optimizer.h"

namespace fwp {
namespace {

using opsref::Vec;

std::shared_ptr<Backend<double>> cpu_double(int threads = 1) { return make_cpu_backend<double>(threads); }

// A batch in host vectors.
struct HostBatch {
  int64_t B = 0, L = 0, Q = 0;
  std::vector<int32_t> keys, values, queries, targets;

  RetrievalBatch view() const {
    RetrievalBatch b;
    b.batch_size = B;
    b.seq_len = L;
    b.num_queries = Q;
    b.keys = keys.data();
    b.values = values.data();
    b.queries = queries.data();
    b.targets = targets.data();
    return b;
  }
};

HostBatch draw(RetrievalData& data, int64_t B, int64_t Q) {
  HostBatch h;
  h.B = B;
  h.L = data.seq_len();
  h.Q = Q;
  h.keys.resize(static_cast<size_t>(B * h.L));
  h.values.resize(h.keys.size());
  h.queries.resize(static_cast<size_t>(B * Q));
  h.targets.resize(h.queries.size());
  data.sample(B, Q, h.keys.data(), h.values.data(), h.queries.data(), h.targets.data());
  return h;
}

template <typename T>
std::map<std::string, Vec> host_params(const ParameterList<T>& params) {
  std::map<std::string, Vec> out;
  for (int64_t i = 0; i < params.size(); ++i) {
    const std::vector<T> v = params[i].value.to_host();
    out[params[i].name] = Vec(v.begin(), v.end());
  }
  return out;
}

// ---- reference model: plain loops over the definition in retrieval_model.h ------------------

Vec matvec(const Vec& W, const Vec& b, int64_t rows, const Vec& x) {
  const int64_t cols = static_cast<int64_t>(x.size());
  Vec y(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double acc = b.empty() ? 0.0 : b[r];
    for (int64_t c = 0; c < cols; ++c) acc += W[r * cols + c] * x[c];
    y[r] = acc;
  }
  return y;
}

Vec phi_of(const RetrievalConfig& c, const std::map<std::string, Vec>& p, const Vec& x) {
  Vec phi;
  switch (c.feature_map) {
    case FeatureMap::Elu: phi = opsref::elu_plus_one(x); break;
    case FeatureMap::Favor: phi = opsref::favor(p.at("favor.projection"), c.favor_features, x); break;
    case FeatureMap::Dpfp: phi = opsref::dpfp(x, c.dpfp_nu); break;
  }
  return c.sum_normalize ? opsref::sum_normalize(phi, c.norm_eps) : phi;
}

// The loss of the batch; outputs (if not null) receive y, [B][Q][S], zeros for padding.
double reference_loss(const RetrievalConfig& c, const std::map<std::string, Vec>& p, const HostBatch& b,
                      Vec* outputs) {
  const int64_t S = c.num_keys, E = c.embedding_dim(), dh = c.d_head;
  const Vec& emb = p.at("key_embedding");
  const bool delta = !c.softmax && c.update_rule == UpdateRule::Delta;
  auto embedding = [&](int32_t id) { return Vec(emb.begin() + id * E, emb.begin() + (id + 1) * E); };
  if (outputs) outputs->assign(static_cast<size_t>(b.B * b.Q * S), 0.0);
  double total = 0.0;
  int64_t count = 0;
  for (int64_t s = 0; s < b.B; ++s) {
    const int64_t dd = c.d_dot();
    Vec W(static_cast<size_t>(S * dd), 0.0), z(static_cast<size_t>(dd), 0.0);
    std::vector<Vec> keys;
    for (int64_t i = 0; i < b.L; ++i) {
      const int32_t key = b.keys[s * b.L + i], val = b.values[s * b.L + i];
      Vec x(static_cast<size_t>(S), 0.0);
      x[val] = 1.0;
      const Vec e = embedding(key);
      x.insert(x.end(), e.begin(), e.end());
      const Vec k = matvec(p.at("k_proj.weight"), p.at("k_proj.bias"), dh, x);
      if (c.softmax) {
        keys.push_back(k);
        continue;
      }
      const Vec pk = phi_of(c, p, k);
      double beta = 1.0;
      Vec vbar(static_cast<size_t>(S), 0.0);
      if (delta) {
        beta = 1.0 / (1.0 + std::exp(-matvec(p.at("beta_proj.weight"), p.at("beta_proj.bias"), 1, x)[0]));
        vbar = matvec(W, {}, S, pk);
      }
      for (int64_t r = 0; r < S; ++r) {
        const double u = beta * ((r == val ? 1.0 : 0.0) - vbar[r]);
        for (int64_t j = 0; j < dd; ++j) W[r * dd + j] += u * pk[j];
      }
      for (int64_t j = 0; j < dd; ++j) z[j] += pk[j];
    }
    for (int64_t j = 0; j < b.Q; ++j) {
      const int32_t query = b.queries[s * b.Q + j];
      if (query < 0) continue;
      const Vec q = matvec(p.at("q_proj.weight"), p.at("q_proj.bias"), dh, embedding(query));
      Vec y(static_cast<size_t>(S), 0.0);
      if (c.softmax) {
        Vec score(keys.size());
        double mx = -1e300;
        for (size_t i = 0; i < keys.size(); ++i) {
          double d = 0.0;
          for (int64_t t = 0; t < dh; ++t) d += q[t] * keys[i][t];
          score[i] = d / std::sqrt(double(dh));
          mx = std::max(mx, score[i]);
        }
        double sum = 0.0;
        for (double& v : score) sum += (v = std::exp(v - mx));
        for (size_t i = 0; i < keys.size(); ++i) y[b.values[s * b.L + i]] += score[i] / sum;
      } else {
        const Vec pq = phi_of(c, p, q);
        y = matvec(W, {}, S, pq);
        if (c.attn_normalize) {
          double den = c.norm_eps;
          for (int64_t t = 0; t < c.d_dot(); ++t) den += z[t] * pq[t];
          for (double& v : y) v /= den;
        }
      }
      const int32_t target = b.targets[s * b.Q + j];
      double l = 0.0;
      for (int64_t r = 0; r < S; ++r) {
        const double d = (r == target ? 1.0 : 0.0) - y[r];
        l += 0.5 * d * d;
      }
      total += l;
      ++count;
      if (outputs) std::copy(y.begin(), y.end(), outputs->begin() + (s * b.Q + j) * S);
    }
  }
  return total / static_cast<double>(count);
}

// ---- model configurations under test ---------------------------------------------------------

struct ModelCase {
  const char* name;
  RetrievalConfig config;
};

RetrievalConfig small(int32_t setting) {
  RetrievalConfig c;
  c.setting = setting;
  c.num_keys = 5;
  c.d_head = 4;
  return c;
}

std::vector<ModelCase> model_cases() {
  std::vector<ModelCase> cases;
  {
    RetrievalConfig c = small(2);
    c.feature_map = FeatureMap::Dpfp;
    c.dpfp_nu = 2;
    c.update_rule = UpdateRule::Delta;
    cases.push_back({"DpfpDelta", c});
  }
  {
    RetrievalConfig c = small(1);
    c.feature_map = FeatureMap::Elu;
    c.update_rule = UpdateRule::Sum;
    c.sum_normalize = false;
    c.attn_normalize = true;
    cases.push_back({"EluSumAttnNorm", c});
  }
  {
    RetrievalConfig c = small(2);
    c.feature_map = FeatureMap::Elu;
    c.update_rule = UpdateRule::Delta;
    c.sum_normalize = true;
    c.attn_normalize = true;
    c.norm_eps = 1e-3;
    cases.push_back({"EluDeltaSumAndAttnNorm", c});
  }
  {
    RetrievalConfig c = small(2);
    c.feature_map = FeatureMap::Favor;
    c.favor_features = 6;
    c.favor_redraw = false;
    c.update_rule = UpdateRule::Delta;
    cases.push_back({"FavorFixedDelta", c});
  }
  {
    RetrievalConfig c = small(1);
    c.feature_map = FeatureMap::Dpfp;
    c.update_rule = UpdateRule::Sum;
    c.sum_normalize = true;
    cases.push_back({"DpfpSumNormalised", c});
  }
  {
    RetrievalConfig c = small(2);
    c.softmax = true;
    c.update_rule = UpdateRule::Sum;
    c.sum_normalize = false;
    c.attn_normalize = false;
    cases.push_back({"Softmax", c});
  }
  return cases;
}

void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

class RetrievalModelCase : public ::testing::TestWithParam<ModelCase> {};

// Two sequences, eval-style queries with padding (Q = S + 2 > distinct keys).
HostBatch test_batch(const RetrievalConfig& c, uint64_t seed) {
  RetrievalData data(c.setting, c.num_keys, seed);
  HostBatch b = draw(data, 2, c.num_keys + 2);
  return b;
}

TEST_P(RetrievalModelCase, ForwardMatchesPlainLoopReference) {
  const RetrievalConfig& c = GetParam().config;
  RetrievalNetwork<double> net(c, cpu_double(), Rng(11));
  net.set_training(false);
  const HostBatch b = test_batch(c, 5);
  ASSERT_NE(std::find(b.queries.begin(), b.queries.end(), -1), b.queries.end()) << "the batch should pad";
  std::vector<double> out(static_cast<size_t>(b.B * b.Q * c.num_keys), 123.0);
  const double loss = net.forward(b.view(), out.data());
  Vec ref_out;
  const double ref = reference_loss(c, host_params(net.params()), b, &ref_out);
  EXPECT_NEAR(loss, ref, 1e-12 * std::max(1.0, std::fabs(ref)));
  EXPECT_LT(opsref::max_abs_diff(Vec(out.begin(), out.end()), ref_out), 1e-12);
  EXPECT_GT(opsref::max_abs(ref_out), 1e-3) << "outputs should not be trivially zero";
}

// Expects f to throw Error with the status and a message containing fragment (defined below).
void expect_status(const std::function<void()>& f, fwp_status status, const std::string& fragment);

// The paper evaluates setting 2 on S pairs (trained on 2 S); the model has no
// positions, so it takes such shorter (or any) sequences and computes the same function.
TEST_P(RetrievalModelCase, SettingTwoForwardOfAnyLengthMatchesReference) {
  const RetrievalConfig& c = GetParam().config;
  if (c.setting != 2) GTEST_SKIP() << "setting 1 sequences have length S only";
  RetrievalNetwork<double> net(c, cpu_double(), Rng(11));
  net.set_training(false);
  for (const int64_t pairs : {c.num_keys, int64_t(3), 3 * c.num_keys}) {
    RetrievalData data(c.setting, c.num_keys, 6, pairs);
    const HostBatch b = draw(data, 2, c.num_keys + 2);
    ASSERT_EQ(b.L, pairs);
    const double loss = net.forward(b.view(), nullptr);
    const double ref = reference_loss(c, host_params(net.params()), b, nullptr);
    EXPECT_NEAR(loss, ref, 1e-12 * std::max(1.0, std::fabs(ref))) << "L = " << pairs;
  }
  const HostBatch b = test_batch(c, 5);
  HostBatch too_long = b;
  too_long.L = kMaxRetrievalPairs + 1;
  expect_status([&] { net.forward(too_long.view(), nullptr); }, FWP_ERR_SHAPE_MISMATCH, "batch->seq_len");
}

TEST_P(RetrievalModelCase, GradientsMatchCentralDifferences) {
  const RetrievalConfig& c = GetParam().config;
  RetrievalNetwork<double> net(c, cpu_double(2), Rng(3));
  const HostBatch b = test_batch(c, 17);
  net.params().zero_grad();
  net.forward(b.view(), nullptr);
  net.backward();
  auto& params = net.params();
  const double h = 1e-6;
  for (int64_t i = 0; i < params.size(); ++i) {
    Parameter<double>& p = params[i];
    const std::vector<double> analytic = p.grad.to_host();
    if (!p.trainable) {
      EXPECT_EQ(opsref::max_abs(Vec(analytic.begin(), analytic.end())), 0.0) << p.name << " is not trainable";
      continue;
    }
    std::vector<double> value = p.value.to_host();
    Vec numeric(value.size());
    for (size_t e = 0; e < value.size(); ++e) {
      const double orig = value[e];
      value[e] = orig + h;
      p.value.from_host(value.data(), p.numel());
      const double lp = net.forward(b.view(), nullptr);
      value[e] = orig - h;
      p.value.from_host(value.data(), p.numel());
      const double lm = net.forward(b.view(), nullptr);
      value[e] = orig;
      p.value.from_host(value.data(), p.numel());
      numeric[e] = (lp - lm) / (2 * h);
    }
    const Vec a(analytic.begin(), analytic.end());
    EXPECT_LT(opsref::gradient_error(a, numeric), 1e-6) << GetParam().name << ": " << p.name;
    // Softmax is invariant to a shift shared by all keys, so the key bias gets no gradient there.
    if (c.softmax && p.name == "k_proj.bias") continue;
    EXPECT_GT(opsref::max_abs(numeric), 1e-8) << GetParam().name << ": " << p.name << " gets no gradient";
  }
}

TEST_P(RetrievalModelCase, BackwardAccumulatesAndNeedsAForward) {
  const RetrievalConfig& c = GetParam().config;
  RetrievalNetwork<double> net(c, cpu_double(), Rng(3));
  const HostBatch b = test_batch(c, 2);
  EXPECT_THROW(
      {
        try {
          net.backward();
        } catch (const Error& e) {
          EXPECT_EQ(e.status(), FWP_ERR_BAD_STATE);
          throw;
        }
      },
      Error);
  net.forward(b.view(), nullptr);
  net.backward();
  const auto once = host_params(net.params());
  std::vector<Vec> grads1;
  for (int64_t i = 0; i < net.params().size(); ++i) {
    const auto g = net.params()[i].grad.to_host();
    grads1.emplace_back(g.begin(), g.end());
  }
  try {
    net.backward();
    ADD_FAILURE() << "a second backward must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_BAD_STATE);
  }
  net.forward(b.view(), nullptr);
  net.backward();
  for (int64_t i = 0; i < net.params().size(); ++i) {
    const auto g = net.params()[i].grad.to_host();
    for (size_t e = 0; e < g.size(); ++e) EXPECT_NEAR(g[e], 2 * grads1[i][e], 1e-12) << net.params()[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(RetrievalConfigs, RetrievalModelCase, ::testing::ValuesIn(model_cases()),
                         [](const ::testing::TestParamInfo<ModelCase>& info) { return std::string(info.param.name); });

// ---- model details --------------------------------------------------------------------------------

TEST(RetrievalModel, ParameterNamesAndShapes) {
  RetrievalConfig c;
  c.num_keys = 10;
  c.feature_map = FeatureMap::Favor;
  c.favor_features = 8;
  RetrievalNetwork<float> net(c, make_cpu_backend<float>(1), Rng(1));
  const auto& p = net.params();
  const int64_t E = 22;  // int(2 * 10 * 1.1)
  ASSERT_EQ(c.embedding_dim(), E);
  ASSERT_EQ(p.size(), 8);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"key_embedding", {10, E}}, {"k_proj.weight", {64, 10 + E}}, {"k_proj.bias", {64}},
      {"q_proj.weight", {64, E}}, {"q_proj.bias", {64}},          {"beta_proj.weight", {1, 10 + E}},
      {"beta_proj.bias", {1}},    {"favor.projection", {8, 64}}};
  for (int64_t i = 0; i < p.size(); ++i) {
    EXPECT_EQ(p[i].name, expected[i].first);
    EXPECT_EQ(p[i].shape, expected[i].second);
    EXPECT_EQ(p[i].trainable, p[i].name != "favor.projection");
  }
  // The embedding is N(0, 1): its sample variance is near 1.
  const auto emb = p[0].value.to_host();
  double sq = 0.0;
  for (float v : emb) sq += double(v) * v;
  EXPECT_NEAR(sq / emb.size(), 1.0, 0.35);

  RetrievalConfig sum = c;
  sum.update_rule = UpdateRule::Sum;
  sum.feature_map = FeatureMap::Dpfp;
  RetrievalNetwork<float> net2(sum, make_cpu_backend<float>(1), Rng(1));
  EXPECT_EQ(net2.params().size(), 5) << "no beta projection and no FAVOR+ buffer";
  EXPECT_EQ(net2.params().find("beta_proj.weight"), -1);
}

TEST(RetrievalModel, EmbeddingDimFollowsPythonInt) {
  for (int64_t S : {2, 5, 10, 20, 100, 240, 400, 480}) {
    RetrievalConfig c;
    c.num_keys = S;
    EXPECT_EQ(c.embedding_dim(), static_cast<int64_t>(2.0 * double(S) * 1.1)) << S;
  }
  RetrievalConfig c;
  c.num_keys = 100;
  EXPECT_EQ(c.embedding_dim(), 220);
}

TEST(RetrievalModel, FavorRedrawsOnlyInTrainingMode) {
  RetrievalConfig c = small(1);
  c.feature_map = FeatureMap::Favor;
  c.favor_features = 6;
  RetrievalNetwork<double> net(c, cpu_double(), Rng(9));
  const HostBatch b = test_batch(c, 1);
  const double t1 = net.forward(b.view(), nullptr);
  const double t2 = net.forward(b.view(), nullptr);
  EXPECT_NE(t1, t2) << "training forwards draw fresh features";
  net.set_training(false);
  const double e1 = net.forward(b.view(), nullptr);
  const double e2 = net.forward(b.view(), nullptr);
  EXPECT_EQ(e1, e2);
  EXPECT_NEAR(e1, reference_loss(c, host_params(net.params()), b, nullptr), 1e-12) << "eval uses the fixed draw";
  // A gradient check through a redrawn projection: backward uses the same draw as its forward.
  net.set_training(true);
  const Rng::State before = net.rng_state();
  net.params().zero_grad();
  net.forward(b.view(), nullptr);
  net.backward();
  Parameter<double>& q_w = net.params()[net.params().find("q_proj.weight")];
  const auto analytic = q_w.grad.to_host();
  std::vector<double> value = q_w.value.to_host();
  const double h = 1e-6;
  for (size_t e = 0; e < 6; ++e) {
    const double orig = value[e];
    value[e] = orig + h;
    q_w.value.from_host(value.data(), q_w.numel());
    net.set_rng_state(before);
    const double lp = net.forward(b.view(), nullptr);
    value[e] = orig - h;
    q_w.value.from_host(value.data(), q_w.numel());
    net.set_rng_state(before);
    const double lm = net.forward(b.view(), nullptr);
    value[e] = orig;
    q_w.value.from_host(value.data(), q_w.numel());
    EXPECT_NEAR(analytic[e], (lp - lm) / (2 * h), 1e-6);
  }
}

TEST(RetrievalModel, OutputsAndLossOfPaddedQueries) {
  RetrievalConfig c = small(2);
  RetrievalNetwork<double> net(c, cpu_double(), Rng(4));
  HostBatch b = test_batch(c, 8);
  std::vector<double> out(static_cast<size_t>(b.B * b.Q * c.num_keys));
  const double loss = net.forward(b.view(), out.data());
  double total = 0.0;
  int64_t valid = 0;
  for (int64_t r = 0; r < b.B * b.Q; ++r) {
    double l = 0.0;
    for (int64_t s = 0; s < c.num_keys; ++s) {
      const double y = out[r * c.num_keys + s];
      if (b.queries[r] < 0) {
        EXPECT_EQ(y, 0.0);
        continue;
      }
      const double d = (s == b.targets[r] ? 1.0 : 0.0) - y;
      l += 0.5 * d * d;
    }
    if (b.queries[r] >= 0) {
      total += l;
      ++valid;
    }
  }
  EXPECT_NEAR(loss, total / valid, 1e-12);
  // Targets under padding queries are ignored whatever they hold.
  for (int64_t r = 0; r < b.B * b.Q; ++r) {
    if (b.queries[r] < 0) b.targets[r] = 12345;
  }
  EXPECT_EQ(net.forward(b.view(), nullptr), loss);
}

void expect_status(const std::function<void()>& f, fwp_status status, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(RetrievalModel, RejectsBadBatchesAndKeepsThePendingForward) {
  RetrievalConfig c = small(1);
  RetrievalNetwork<double> net(c, cpu_double(), Rng(4));
  const HostBatch good = test_batch(c, 8);
  net.forward(good.view(), nullptr);

  auto with = [&](auto edit) {
    HostBatch b = good;
    edit(b);
    return b;
  };
  auto run = [&](const HostBatch& b) { return [&net, b] { net.forward(b.view(), nullptr); }; };
  expect_status(run(with([](HostBatch& b) { b.keys[1 * b.L + 3] = 5; })), FWP_ERR_INVALID_ARGUMENT,
                "batch->keys[1][3]");
  expect_status(run(with([](HostBatch& b) { b.values[2] = -1; })), FWP_ERR_INVALID_ARGUMENT, "batch->values[0][2]");
  expect_status(run(with([](HostBatch& b) { b.queries[1] = -2; })), FWP_ERR_INVALID_ARGUMENT,
                "batch->queries[0][1]");
  expect_status(run(with([](HostBatch& b) { b.targets[b.Q] = 7; })), FWP_ERR_INVALID_ARGUMENT,
                "batch->targets[1][0]");
  expect_status(run(with([](HostBatch& b) { std::fill(b.queries.begin(), b.queries.end(), -1); })),
                FWP_ERR_INVALID_ARGUMENT, "all -1");
  expect_status(run(with([](HostBatch& b) { b.L = 4; })), FWP_ERR_SHAPE_MISMATCH, "batch->seq_len");
  expect_status(run(with([](HostBatch& b) { b.B = 0; })), FWP_ERR_INVALID_ARGUMENT, "batch->batch_size");
  expect_status(run(with([](HostBatch& b) { b.Q = 0; })), FWP_ERR_INVALID_ARGUMENT, "batch->num_queries");
  expect_status(
      [&] {
        RetrievalBatch v = good.view();
        v.values = nullptr;
        net.forward(v, nullptr);
      },
      FWP_ERR_NULL_POINTER, "batch->values");
  // None of the rejected calls dropped the pending forward.
  EXPECT_TRUE(net.has_forward());
  EXPECT_NO_THROW(net.backward());
}

TEST(RetrievalConfig, ValidationNamesTheField) {
  auto bad = [](auto edit, const std::string& fragment) {
    RetrievalConfig c;
    edit(c);
    expect_status([&] { c.validate("config->"); }, FWP_ERR_INVALID_ARGUMENT, fragment);
  };
  bad([](RetrievalConfig& c) { c.setting = 3; }, "config->setting");
  bad([](RetrievalConfig& c) { c.num_keys = 1; }, "config->num_keys");
  bad([](RetrievalConfig& c) { c.d_head = 0; }, "config->d_head");
  bad([](RetrievalConfig& c) { c.dpfp_nu = 0; }, "config->dpfp_nu");
  bad([](RetrievalConfig& c) { c.dpfp_nu = 100; }, "d_dot");
  bad([](RetrievalConfig& c) { c.norm_eps = 0; }, "config->norm_eps");
  bad([](RetrievalConfig& c) { c.norm_eps = NAN; }, "config->norm_eps");
  bad(
      [](RetrievalConfig& c) {
        c.feature_map = FeatureMap::Favor;
        c.favor_features = 0;
      },
      "config->favor_features");
  bad([](RetrievalConfig& c) { c.softmax = true; }, "config->update_rule");
  bad(
      [](RetrievalConfig& c) {
        c.softmax = true;
        c.update_rule = UpdateRule::Sum;
      },
      "config->sum_normalize");
  RetrievalConfig ok;
  EXPECT_NO_THROW(ok.validate());
}

TEST(RetrievalConfig, JsonRoundTripAndStrictParsing) {
  for (const ModelCase& mc : model_cases()) {
    const nlohmann::json j = mc.config.to_json();
    const RetrievalConfig back = RetrievalConfig::from_json(nlohmann::json::parse(j.dump()));
    EXPECT_EQ(back.to_json(), j) << mc.name;
  }
  nlohmann::json j = RetrievalConfig().to_json();
  for (const char* key : {"kind", "num_keys", "feature_map", "sum_normalize", "norm_eps"}) {
    nlohmann::json missing = j;
    missing.erase(key);
    expect_status([&] { RetrievalConfig::from_json(missing); }, FWP_ERR_FORMAT, key);
  }
  nlohmann::json wrong = j;
  wrong["num_keys"] = "20";
  expect_status([&] { RetrievalConfig::from_json(wrong); }, FWP_ERR_FORMAT, "num_keys");
  wrong = j;
  wrong["num_keys"] = 1;
  expect_status([&] { RetrievalConfig::from_json(wrong); }, FWP_ERR_FORMAT, "num_keys");
  wrong = j;
  wrong["feature_map"] = "relu";
  expect_status([&] { RetrievalConfig::from_json(wrong); }, FWP_ERR_FORMAT, "feature_map");
}

// ---- data generator -----------------------------------------------------------------------------

TEST(RetrievalData, SettingOneKeysAndValuesArePermutations) {
  const int64_t S = 13;
  RetrievalData data(1, S, 77);
  ASSERT_EQ(data.seq_len(), S);
  const HostBatch b = draw(data, 50, 1);
  std::set<int32_t> queried;
  for (int64_t s = 0; s < b.B; ++s) {
    std::vector<int32_t> k(b.keys.begin() + s * S, b.keys.begin() + (s + 1) * S);
    std::vector<int32_t> v(b.values.begin() + s * S, b.values.begin() + (s + 1) * S);
    std::vector<int32_t> ks = k, vs = v;
    std::sort(ks.begin(), ks.end());
    std::sort(vs.begin(), vs.end());
    for (int32_t i = 0; i < S; ++i) {
      EXPECT_EQ(ks[i], i);
      EXPECT_EQ(vs[i], i);
    }
    const int32_t q = b.queries[s];
    const auto pos = std::find(k.begin(), k.end(), q);
    ASSERT_NE(pos, k.end());
    EXPECT_EQ(b.targets[s], v[pos - k.begin()]);
    queried.insert(q);
  }
  EXPECT_GT(queried.size(), 8u) << "queries are spread over the keys";
  // Keys and values are independent: not the same permutation.
  EXPECT_NE(std::vector<int32_t>(b.keys.begin(), b.keys.begin() + S),
            std::vector<int32_t>(b.values.begin(), b.values.begin() + S));
}

TEST(RetrievalData, SettingTwoTargetIsTheMostRecentValue) {
  const int64_t S = 6;
  RetrievalData data(2, S, 5);
  ASSERT_EQ(data.seq_len(), 2 * S);
  const HostBatch b = draw(data, 200, 1);
  int repeated_queries = 0;
  for (int64_t s = 0; s < b.B; ++s) {
    const int32_t q = b.queries[s];
    int32_t latest = -1, count = 0;
    for (int64_t i = 0; i < b.L; ++i) {
      ASSERT_GE(b.keys[s * b.L + i], 0);
      ASSERT_LT(b.keys[s * b.L + i], S);
      ASSERT_GE(b.values[s * b.L + i], 0);
      ASSERT_LT(b.values[s * b.L + i], S);
      if (b.keys[s * b.L + i] == q) {
        latest = b.values[s * b.L + i];
        ++count;
      }
    }
    ASSERT_GE(count, 1) << "the query is one of the sequence's keys";
    EXPECT_EQ(b.targets[s], latest);
    repeated_queries += count > 1 ? 1 : 0;
  }
  EXPECT_GT(repeated_queries, 50) << "setting 2 overwrites keys often";
}

// The paper's setting-2 evaluation: sequences of S pairs (one per key of the
// vocabulary, with replacement) instead of the 2 S of training.
TEST(RetrievalData, SettingTwoTakesAnEvaluationLength) {
  const int64_t S = 10;
  RetrievalData data(2, S, 3, S);
  ASSERT_EQ(data.seq_len(), S);
  const HostBatch b = draw(data, 40, S);
  ASSERT_EQ(b.keys.size(), static_cast<size_t>(40 * S));
  int repeated_keys = 0;
  for (int64_t s = 0; s < b.B; ++s) {
    std::map<int32_t, int32_t> latest;
    for (int64_t i = 0; i < S; ++i) {
      const int32_t k = b.keys[s * S + i], v = b.values[s * S + i];
      ASSERT_TRUE(k >= 0 && k < S && v >= 0 && v < S);
      repeated_keys += latest.count(k) ? 1 : 0;
      latest[k] = v;
    }
    for (int64_t j = 0; j < static_cast<int64_t>(latest.size()); ++j) {
      EXPECT_EQ(b.targets[s * S + j], latest[b.queries[s * S + j]]);
    }
  }
  EXPECT_GT(repeated_keys, 40) << "keys are still drawn with replacement";
  // The length is part of the generator's config only where it is not the training length,
  // so checkpoints of training generators keep their config.
  EXPECT_EQ(data.config_json(), (nlohmann::json{{"setting", 2}, {"num_keys", S}, {"seq_len", S}}));
  EXPECT_EQ(RetrievalData(2, S, 3, 0).seq_len(), 2 * S);
  EXPECT_EQ(RetrievalData(2, S, 3, 2 * S).config_json(), (nlohmann::json{{"setting", 2}, {"num_keys", S}}));
  EXPECT_EQ(RetrievalData(1, S, 3, S).seq_len(), S);
  EXPECT_EQ(RetrievalData(2, S, 3, 1).seq_len(), 1);
  EXPECT_EQ(RetrievalData(2, S, 3, kMaxRetrievalPairs).seq_len(), kMaxRetrievalPairs);
  expect_status([] { RetrievalData(1, S, 3, S - 1); }, FWP_ERR_INVALID_ARGUMENT, "every key once");
  expect_status([] { RetrievalData(1, S, 3, 2 * S); }, FWP_ERR_INVALID_ARGUMENT, "num_pairs");
  expect_status([] { RetrievalData(2, S, 3, -1); }, FWP_ERR_INVALID_ARGUMENT, "num_pairs");
  expect_status([] { RetrievalData(2, S, 3, kMaxRetrievalPairs + 1); }, FWP_ERR_INVALID_ARGUMENT, "got 131073");
}

TEST(RetrievalData, EvaluationQueriesAreDistinctInFirstAppearanceOrderThenPadding) {
  const int64_t S = 8, Q = 20;
  RetrievalData data(2, S, 9);
  const HostBatch b = draw(data, 30, Q);
  for (int64_t s = 0; s < b.B; ++s) {
    std::vector<int32_t> order;
    std::map<int32_t, int32_t> latest;
    for (int64_t i = 0; i < b.L; ++i) {
      const int32_t k = b.keys[s * b.L + i];
      if (!latest.count(k)) order.push_back(k);
      latest[k] = b.values[s * b.L + i];
    }
    for (int64_t j = 0; j < Q; ++j) {
      if (j < static_cast<int64_t>(order.size())) {
        EXPECT_EQ(b.queries[s * Q + j], order[j]);
        EXPECT_EQ(b.targets[s * Q + j], latest[order[j]]);
      } else {
        EXPECT_EQ(b.queries[s * Q + j], -1);
        EXPECT_EQ(b.targets[s * Q + j], -1);
      }
    }
  }
  // Q smaller than the number of distinct keys: the first Q of them.
  RetrievalData data1(1, S, 9);
  const HostBatch c = draw(data1, 3, 3);
  for (int64_t s = 0; s < 3; ++s) {
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(c.queries[s * 3 + j], c.keys[s * S + j]);
  }
}

TEST(RetrievalData, SeedAndStateDetermineTheSequences) {
  RetrievalData a(2, 10, 123), b(2, 10, 123), other(2, 10, 124);
  const HostBatch a1 = draw(a, 4, 1), b1 = draw(b, 4, 1), o1 = draw(other, 4, 1);
  EXPECT_EQ(a1.keys, b1.keys);
  EXPECT_EQ(a1.values, b1.values);
  EXPECT_EQ(a1.queries, b1.queries);
  EXPECT_NE(a1.keys, o1.keys);
  const Rng::State saved = a.rng_state();
  const HostBatch a2 = draw(a, 4, 5);
  RetrievalData resumed(2, 10, 999);
  resumed.set_rng_state(saved);
  const HostBatch r2 = draw(resumed, 4, 5);
  EXPECT_EQ(a2.keys, r2.keys);
  EXPECT_EQ(a2.values, r2.values);
  EXPECT_EQ(a2.queries, r2.queries);
  EXPECT_EQ(a2.targets, r2.targets);
}

TEST(RetrievalData, RejectsBadArgumentsBeforeDrawing) {
  expect_status([] { RetrievalData(0, 10, 1); }, FWP_ERR_INVALID_ARGUMENT, "setting");
  expect_status([] { RetrievalData(1, 1, 1); }, FWP_ERR_INVALID_ARGUMENT, "num_keys");
  RetrievalData d(1, 4, 1);
  const Rng::State before = d.rng_state();
  std::vector<int32_t> k(8), v(8), q(2), t(2);
  expect_status([&] { d.sample(0, 1, k.data(), v.data(), q.data(), t.data()); }, FWP_ERR_INVALID_ARGUMENT,
                "batch_size");
  expect_status([&] { d.sample(2, 0, k.data(), v.data(), q.data(), t.data()); }, FWP_ERR_INVALID_ARGUMENT,
                "queries_per_seq");
  expect_status([&] { d.sample(2, 1, k.data(), nullptr, q.data(), t.data()); }, FWP_ERR_NULL_POINTER, "values");
  EXPECT_EQ(d.rng_state(), before);
}

// ---- the new backend ops (double, against plain loops) -------------------------------------------

TEST(RetrievalOps, EmbeddingGatherScatterAndOneHotRows) {
  auto be = cpu_double(2);
  const int64_t V = 4, D = 70, R = 6;  // D > 64 exercises two column blocks of the scatter
  Rng rng(1);
  const Vec table = opsref::normal_vector(rng, V * D), dout = opsref::normal_vector(rng, R * D);
  const std::vector<int32_t> ids = {2, -1, 0, 2, 3, 2};
  Buffer<double> t(be, V * D), out(be, R * D), dt(be, V * D), g(be, R * D), x(be, R * 3), cat(be, R * (V + 3));
  t.from_host(table.data(), V * D);
  g.from_host(dout.data(), R * D);
  int32_t* dids = be->allocate_int(R);
  be->upload_int(dids, ids.data(), R);
  be->embedding_gather(t.data(), dids, out.data(), R, D);
  const auto o = out.to_host();
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t c = 0; c < D; ++c) EXPECT_EQ(o[r * D + c], ids[r] < 0 ? 0.0 : table[ids[r] * D + c]);
  }
  Vec init(static_cast<size_t>(V * D), 0.5);
  dt.from_host(init.data(), V * D);
  be->embedding_scatter_accumulate(dt.data(), dids, g.data(), R, D);
  Vec expect = init;
  for (int64_t r = 0; r < R; ++r) {
    if (ids[r] < 0) continue;
    for (int64_t c = 0; c < D; ++c) expect[ids[r] * D + c] += dout[r * D + c];
  }
  const auto got_dt = dt.to_host();
  EXPECT_LT(opsref::max_abs_diff(Vec(got_dt.begin(), got_dt.end()), expect), 1e-14);

  const std::vector<int32_t> cls = {0, 3, 1, 2, 3, 0};
  be->upload_int(dids, cls.data(), R);
  const Vec xs = opsref::normal_vector(rng, R * 3);
  x.from_host(xs.data(), R * 3);
  be->onehot_concat(dids, x.data(), cat.data(), R, V, 3);
  const auto c = cat.to_host();
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t j = 0; j < V; ++j) EXPECT_EQ(c[r * (V + 3) + j], j == cls[r] ? 1.0 : 0.0);
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(c[r * (V + 3) + V + j], xs[r * 3 + j]);
  }
  be->deallocate_int(dids);
}

// Above the grain the scatter runs in parallel (by column blocks); every
// element adds its rows in order, so the result is bitwise the same for every
// thread count, with repeated ids, negative ids, tables of many or few rows.
TEST(RetrievalOps, ScatterAccumulateIsTheSameForEveryThreadCount) {
  for (const int64_t V : {int64_t{500}, int64_t{3}}) {
    const int64_t D = 100, R = 3000;
    Rng rng(7);
    std::vector<float> dout(static_cast<size_t>(R * D));
    for (auto& x : dout) x = static_cast<float>(rng.normal());
    std::vector<int32_t> ids(static_cast<size_t>(R));
    for (int64_t r = 0; r < R; ++r) ids[r] = r % 17 == 5 ? -1 : static_cast<int32_t>((r * 7919) % V);
    Vec expect(static_cast<size_t>(V * D), 0.25);
    for (int64_t r = 0; r < R; ++r) {
      if (ids[r] < 0) continue;
      for (int64_t c = 0; c < D; ++c) expect[ids[r] * D + c] += dout[r * D + c];
    }
    std::vector<float> first;
    for (const int threads : {1, 2, 3, 4}) {
      auto be = make_cpu_backend<float>(threads);
      Buffer<float> table(be, V * D), g(be, R * D);
      std::vector<float> init(static_cast<size_t>(V * D), 0.25f);
      table.from_host(init.data(), V * D);
      g.from_host(dout.data(), R * D);
      int32_t* dids = be->allocate_int(R);
      be->upload_int(dids, ids.data(), R);
      be->embedding_scatter_accumulate(table.data(), dids, g.data(), R, D);
      be->deallocate_int(dids);
      const auto got = table.to_host();
      double worst = 0.0;
      for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - expect[i]));
      EXPECT_LT(worst, 1e-3) << "V " << V << ", " << threads << " threads";
      if (first.empty()) {
        first = got;
      } else {
        EXPECT_EQ(got, first) << "V " << V << ": " << threads << " threads differ from one";
      }
    }
  }
}

TEST(RetrievalOps, StepSumAndBroadcastAreTransposes) {
  auto be = cpu_double(2);
  const int64_t St = 3, T = 5, D = 4;
  Rng rng(2);
  const Vec x = opsref::normal_vector(rng, St * T * D), v = opsref::normal_vector(rng, St * D);
  Buffer<double> bx(be, St * T * D), bs(be, St * D), bv(be, St * D);
  bx.from_host(x.data(), St * T * D);
  bv.from_host(v.data(), St * D);
  be->step_sum(bx.data(), bs.data(), St, T, D);
  const auto s = bs.to_host();
  for (int64_t i = 0; i < St; ++i) {
    for (int64_t d = 0; d < D; ++d) {
      double acc = 0;
      for (int64_t t = 0; t < T; ++t) acc += x[(i * T + t) * D + d];
      EXPECT_NEAR(s[i * D + d], acc, 1e-14);
    }
  }
  be->step_broadcast_accumulate(bv.data(), bx.data(), St, T, D);
  const auto y = bx.to_host();
  for (int64_t i = 0; i < St * T * D; ++i) EXPECT_NEAR(y[i], x[i] + v[(i / (T * D)) * D + i % D], 1e-14);
}

// Readout: y = W q / (z . q + eps); checks forward against loops and every gradient by differences.
TEST(RetrievalOps, ReadoutForwardAndBackward) {
  auto be = cpu_double(2);
  const int64_t St = 3, Qn = 4, dk = 5, dv = 3;
  const FastWeightShape shape{St, Qn, dk, dv};
  Rng rng(3);
  const Vec W = opsref::normal_vector(rng, St * dv * dk), z = opsref::uniform_vector(rng, St * dk, 0.5, 1.5),
            q = opsref::uniform_vector(rng, St * Qn * dk, 0.1, 1.0), w = opsref::normal_vector(rng, St * Qn * dv);
  const double eps = 1e-3;
  for (bool norm : {false, true}) {
    auto run = [&](const Vec& Wv, const Vec& zv, const Vec& qv, Vec* denom_out) {
      Buffer<double> bW(be, Wv.size()), bz(be, zv.size()), bq(be, qv.size()), by(be, St * Qn * dv),
          bd(be, St * Qn);
      bW.from_host(Wv.data(), bW.size());
      bz.from_host(zv.data(), bz.size());
      bq.from_host(qv.data(), bq.size());
      be->fast_weight_readout_forward(shape, bW.data(), norm ? bz.data() : nullptr, bq.data(), eps, by.data(),
                                      norm ? bd.data() : nullptr);
      if (denom_out) {
        const auto d = bd.to_host();
        *denom_out = Vec(d.begin(), d.end());
      }
      const auto y = by.to_host();
      return Vec(y.begin(), y.end());
    };
    Vec denom;
    const Vec y = run(W, z, q, &denom);
    for (int64_t s = 0; s < St; ++s) {
      for (int64_t j = 0; j < Qn; ++j) {
        double den = eps;
        for (int64_t k = 0; k < dk; ++k) den += z[s * dk + k] * q[(s * Qn + j) * dk + k];
        for (int64_t r = 0; r < dv; ++r) {
          double o = 0;
          for (int64_t k = 0; k < dk; ++k) o += W[(s * dv + r) * dk + k] * q[(s * Qn + j) * dk + k];
          EXPECT_NEAR(y[(s * Qn + j) * dv + r], norm ? o / den : o, 1e-13);
        }
      }
    }
    // Analytic gradients of sum(w * y).
    Buffer<double> bW(be, W.size()), bz(be, z.size()), bq(be, q.size()), by(be, y.size()), bd(be, St * Qn),
        bdy(be, w.size()), dq(be, q.size()), dW(be, W.size()), dz(be, z.size());
    bW.from_host(W.data(), bW.size());
    bz.from_host(z.data(), bz.size());
    bq.from_host(q.data(), bq.size());
    by.from_host(y.data(), by.size());
    if (norm) bd.from_host(denom.data(), bd.size());
    bdy.from_host(w.data(), w.size());
    be->fast_weight_readout_backward(shape, bW.data(), norm ? bz.data() : nullptr, bq.data(), by.data(),
                                     norm ? bd.data() : nullptr, bdy.data(), dq.data(), dW.data(),
                                     norm ? dz.data() : nullptr);
    auto as_vec = [](const Buffer<double>& b) {
      const auto h = b.to_host();
      return Vec(h.begin(), h.end());
    };
    EXPECT_LT(opsref::gradient_error(as_vec(dW), opsref::numeric_gradient([&](const Vec& v) { return run(v, z, q, nullptr); }, W, w)), 1e-8);
    EXPECT_LT(opsref::gradient_error(as_vec(dq), opsref::numeric_gradient([&](const Vec& v) { return run(W, z, v, nullptr); }, q, w)), 1e-8);
    if (norm) {
      EXPECT_LT(opsref::gradient_error(as_vec(dz), opsref::numeric_gradient([&](const Vec& v) { return run(W, v, q, nullptr); }, z, w)), 1e-8);
    }
  }
}

TEST(RetrievalOps, CrossAttentionForwardAndBackward) {
  auto be = cpu_double(2);
  const int64_t St = 2, Qn = 3, Kn = 5, d = 4, dv = 3;
  const double scale = 0.7;
  Rng rng(4);
  const Vec q = opsref::normal_vector(rng, St * Qn * d), k = opsref::normal_vector(rng, St * Kn * d),
            v = opsref::normal_vector(rng, St * Kn * dv), w = opsref::normal_vector(rng, St * Qn * dv);
  auto run = [&](const Vec& qv, const Vec& kv, const Vec& vv, Vec* lse_out) {
    Buffer<double> bq(be, qv.size()), bk(be, kv.size()), bv(be, vv.size()), bo(be, St * Qn * dv), bl(be, St * Qn);
    bq.from_host(qv.data(), bq.size());
    bk.from_host(kv.data(), bk.size());
    bv.from_host(vv.data(), bv.size());
    be->cross_attention_forward(St, Qn, Kn, d, dv, bq.data(), bk.data(), bv.data(), scale, bo.data(), bl.data());
    if (lse_out) {
      const auto l = bl.to_host();
      *lse_out = Vec(l.begin(), l.end());
    }
    const auto o = bo.to_host();
    return Vec(o.begin(), o.end());
  };
  Vec lse;
  const Vec out = run(q, k, v, &lse);
  for (int64_t s = 0; s < St; ++s) {
    for (int64_t j = 0; j < Qn; ++j) {
      Vec sc(static_cast<size_t>(Kn));
      double mx = -1e300, sum = 0;
      for (int64_t i = 0; i < Kn; ++i) {
        double acc = 0;
        for (int64_t t = 0; t < d; ++t) acc += q[(s * Qn + j) * d + t] * k[(s * Kn + i) * d + t];
        sc[i] = scale * acc;
        mx = std::max(mx, sc[i]);
      }
      for (double x : sc) sum += std::exp(x - mx);
      EXPECT_NEAR(lse[s * Qn + j], mx + std::log(sum), 1e-13);
      for (int64_t r = 0; r < dv; ++r) {
        double o = 0;
        for (int64_t i = 0; i < Kn; ++i) o += std::exp(sc[i] - mx) / sum * v[(s * Kn + i) * dv + r];
        EXPECT_NEAR(out[(s * Qn + j) * dv + r], o, 1e-13);
      }
    }
  }
  Buffer<double> bq(be, q.size()), bk(be, k.size()), bv(be, v.size()), bo(be, out.size()), bl(be, lse.size()),
      bw(be, w.size()), dq(be, q.size()), dk(be, k.size()), dv_(be, v.size());
  bq.from_host(q.data(), q.size());
  bk.from_host(k.data(), k.size());
  bv.from_host(v.data(), v.size());
  bo.from_host(out.data(), out.size());
  bl.from_host(lse.data(), lse.size());
  bw.from_host(w.data(), w.size());
  be->cross_attention_backward(St, Qn, Kn, d, dv, bq.data(), bk.data(), bv.data(), bo.data(), bl.data(), bw.data(),
                               scale, dq.data(), dk.data(), dv_.data());
  auto as_vec = [](const Buffer<double>& b) {
    const auto h = b.to_host();
    return Vec(h.begin(), h.end());
  };
  EXPECT_LT(opsref::gradient_error(as_vec(dq), opsref::numeric_gradient([&](const Vec& x) { return run(x, k, v, nullptr); }, q, w)), 1e-8);
  EXPECT_LT(opsref::gradient_error(as_vec(dk), opsref::numeric_gradient([&](const Vec& x) { return run(q, x, v, nullptr); }, k, w)), 1e-8);
  EXPECT_LT(opsref::gradient_error(as_vec(dv_), opsref::numeric_gradient([&](const Vec& x) { return run(q, k, x, nullptr); }, v, w)), 1e-8);
  // dv may be omitted.
  Buffer<double> dq2(be, q.size()), dk2(be, k.size());
  be->cross_attention_backward(St, Qn, Kn, d, dv, bq.data(), bk.data(), bv.data(), bo.data(), bl.data(), bw.data(),
                               scale, dq2.data(), dk2.data(), nullptr);
  EXPECT_EQ(as_vec(dq2), as_vec(dq));
  EXPECT_EQ(as_vec(dk2), as_vec(dk));
}

TEST(RetrievalOps, OneHotSquaredError) {
  auto be = cpu_double(1);
  const int64_t R = 4, C = 3;
  const Vec y = {0.1, 0.9, 0.0, 1.0, -1.0, 2.0, 5.0, 5.0, 5.0, 0.0, 0.0, 1.0};
  const std::vector<int32_t> t = {1, 0, -1, 2};
  Buffer<double> by(be, R * C), bl(be, R), bdy(be, R * C);
  by.from_host(y.data(), R * C);
  int32_t* dt = be->allocate_int(R);
  be->upload_int(dt, t.data(), R);
  be->onehot_mse_forward(by.data(), dt, bl.data(), R, C);
  const auto l = bl.to_host();
  EXPECT_NEAR(l[0], 0.5 * (0.01 + 0.01 + 0.0), 1e-15);
  EXPECT_NEAR(l[1], 0.5 * (0.0 + 1.0 + 4.0), 1e-15);
  EXPECT_EQ(l[2], 0.0);
  EXPECT_EQ(l[3], 0.0);
  be->onehot_mse_backward(by.data(), dt, 0.5, bdy.data(), R, C);
  const auto g = bdy.to_host();
  const Vec expect = {0.05, -0.05, 0.0, 0.0, -0.5, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  EXPECT_LT(opsref::max_abs_diff(Vec(g.begin(), g.end()), expect), 1e-15);
  be->deallocate_int(dt);
}

// ---- training (float, the library's precision) ---------------------------------------------------

struct Training {
  RetrievalConfig config;
  std::shared_ptr<Backend<float>> backend;
  RetrievalNetwork<float> net;
  Optimizer opt;
  RetrievalData train_data, eval_data;

  Training(const RetrievalConfig& c, uint64_t seed, int threads)
      : config(c),
        backend(make_cpu_backend<float>(threads)),
        net(c, backend, Rng(seed)),
        opt(backend, net.params(), OptimizerConfig{}),
        train_data(c.setting, c.num_keys, seed + 1),
        eval_data(c.setting, c.num_keys, seed + 2) {}

  double step(int64_t batch = 32) {
    const HostBatch b = draw(train_data, batch, 1);
    opt.zero_grad();
    const double loss = net.forward(b.view(), nullptr);
    net.backward();
    opt.step();
    return loss;
  }

  // The paper's evaluation: fresh sequences, every distinct key queried.
  double evaluate(int64_t sequences = 20) {
    const HostBatch b = draw(eval_data, sequences, std::min<int64_t>(config.num_keys * 2, 200));
    net.set_training(false);
    const double loss = net.forward(b.view(), nullptr);
    net.set_training(true);
    return loss;
  }
};

TEST(RetrievalTraining, DpfpDeltaSolvesTenKeys) {
  RetrievalConfig c;
  c.setting = 1;
  c.num_keys = 10;
  c.feature_map = FeatureMap::Dpfp;
  c.dpfp_nu = 1;
  c.update_rule = UpdateRule::Delta;
  c.sum_normalize = true;
  // One thread: the test must stay fast on a loaded two-core machine.
  Training t(c, 2021, 1);
  const double initial = t.evaluate();
  double eval = initial;
  int64_t steps = 0;
  const int64_t max_steps = 3000;
  const auto start = std::chrono::steady_clock::now();
  while (steps < max_steps) {
    for (int i = 0; i < 100; ++i, ++steps) t.step();
    eval = t.evaluate();
    if (eval < 0.01) break;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("S=10 dpfp+delta: eval loss %.5f (from %.3f) after %lld steps, %.1f s\n", eval, initial,
              static_cast<long long>(steps), seconds);
  EXPECT_LT(eval, 0.01) << "after " << steps << " steps";
}

TEST(RetrievalTraining, SameSeedGivesIdenticalLosses) {
  RetrievalConfig c;
  c.setting = 2;
  c.num_keys = 8;
  c.feature_map = FeatureMap::Favor;  // also covers the model's generator (redraws)
  c.favor_features = 16;
  Training a(c, 7, 2), b(c, 7, 2), other(c, 8, 2);
  bool differs = false;
  for (int i = 0; i < 15; ++i) {
    const double la = a.step(), lb = b.step(), lo = other.step();
    EXPECT_EQ(la, lb) << "step " << i;
    differs = differs || la != lo;
  }
  EXPECT_EQ(a.evaluate(), b.evaluate());
  EXPECT_TRUE(differs) << "another seed should give other losses";
}

}  // namespace
}  // namespace fwp
