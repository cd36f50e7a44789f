// AdaptiveInput and AdaptiveSoftmax (src/nn/adaptive_*.h), the authors'
// adaptive input and projected adaptive log-softmax: the loss and full
// log-probabilities against a plain loop over the authors' definitions
// (head = shortlist + one logit per tail cluster, cluster k at head column
// head_cols - k); central-difference gradients in double through both modules
// (div_val 1 and 2 and 4, tied and untied weights and projections); cutoffs
// empty == Linear + CrossEntropyLoss and == Embedding * sqrt(d); ignored
// targets; float against double; the partition op; bad configurations.
//
// The CPU backend's device memory is host memory, so the tests read and
// perturb parameters through their pointers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../../cuda/adaptive_math.cuh"
#include "../../cuda/row_math.cuh"
#include "core/backend.h"
#include "core/error.h"
#include "core/id_buffer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/adaptive_input.h"
#include "nn/adaptive_softmax.h"
#include "nn/cross_entropy_loss.h"
#include "nn/embedding.h"
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

using fwp::test::expect_error;

struct Config {
  int64_t vocab = 13, d = 8;
  std::vector<int64_t> cutoffs{4, 9};
  int64_t div_val = 1;
  bool tie = false, tie_projs = false;
};

// An input embedding and an output softmax in one list, every value random
// (biases too, so that every path carries signal).
template <typename T>
struct Pair {
  std::shared_ptr<Backend<T>> be;
  ParameterList<T> params;
  std::unique_ptr<AdaptiveInput<T>> input;
  std::unique_ptr<AdaptiveSoftmax<T>> softmax;

  Pair(const Config& c, uint64_t seed) : be(make_cpu_backend<T>(2)) {
    input = std::make_unique<AdaptiveInput<T>>(params, be, "word_emb", c.vocab, c.d, c.cutoffs, c.div_val);
    softmax = std::make_unique<AdaptiveSoftmax<T>>(params, be, "crit", c.vocab, c.d, c.cutoffs, c.div_val,
                                                   c.tie ? input.get() : nullptr, c.tie_projs);
    params.allocate(be);
    Rng rng(seed);
    for (int64_t i = 0; i < params.size(); ++i) {
      T* v = params[i].value.data();
      for (int64_t j = 0; j < params[i].numel(); ++j) v[j] = static_cast<T>(0.6 * rng.normal());
    }
  }
  const T* value(const std::string& name) const {
    const int64_t i = params.find(name);
    EXPECT_GE(i, 0) << name;
    return params[i].value.data();
  }
};

// ---- plain loop reference over the authors' definitions (double) -----------------------------

double dot(const double* a, const double* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
Vec log_softmax(const Vec& x) {
  double m = *std::max_element(x.begin(), x.end()), s = 0.0;
  for (double v : x) s += std::exp(v - m);
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] - m - std::log(s);
  return out;
}

// The full log-probabilities [N, vocab] of hidden [N, d], read straight from
// the parameters by their (authors') names.
Vec reference_log_probs(const Pair<double>& p, const Config& c, const Vec& hidden, int64_t n) {
  const int64_t clusters = static_cast<int64_t>(c.cutoffs.size()) + 1;
  std::vector<int64_t> bounds{0};
  for (int64_t x : c.cutoffs) bounds.push_back(x);
  bounds.push_back(c.vocab);
  auto dim = [&](int64_t k) {
    int64_t dk = c.d;
    for (int64_t i = 0; i < k && c.div_val > 1; ++i) dk /= c.div_val;
    return dk;
  };
  // Weight rows and biases of cluster k (the authors' weights[i], biases[i]).
  auto weight = [&](int64_t k) -> const double* {
    if (c.div_val == 1) {
      const double* w = c.tie ? p.value("word_emb.emb_layers.0.weight") : p.value("crit.out_layers.0.weight");
      return w + bounds[k] * c.d;
    }
    const std::string layer = std::to_string(k) + ".weight";
    return c.tie ? p.value("word_emb.emb_layers." + layer) : p.value("crit.out_layers." + layer);
  };
  auto bias = [&](int64_t k) -> const double* {
    return c.div_val == 1 ? p.value("crit.out_layers.0.bias") + bounds[k]
                          : p.value("crit.out_layers." + std::to_string(k) + ".bias");
  };
  auto proj = [&](int64_t k) -> const double* {
    if (c.div_val == 1) return nullptr;
    if (c.tie_projs && k > 0) return p.value("word_emb.emb_projs." + std::to_string(k));
    return p.value("crit.out_projs." + std::to_string(k));
  };
  // hidden @ proj [d, dk] (F.linear(hidden, proj.t())).
  auto features = [&](const double* h, int64_t k) {
    const int64_t dk = dim(k);
    Vec f(static_cast<size_t>(dk));
    const double* pr = proj(k);
    for (int64_t j = 0; j < dk; ++j) {
      if (!pr) {
        f[j] = h[j];
        continue;
      }
      double s = 0.0;
      for (int64_t i = 0; i < c.d; ++i) s += h[i] * pr[i * dk + j];
      f[j] = s;
    }
    return f;
  };
  const int64_t shortlist = bounds[1], head_cols = shortlist + clusters - 1;
  Vec out(static_cast<size_t>(n * c.vocab));
  for (int64_t r = 0; r < n; ++r) {
    const double* h = hidden.data() + r * c.d;
    const Vec f0 = features(h, 0);
    Vec head(static_cast<size_t>(head_cols));
    for (int64_t j = 0; j < shortlist; ++j) head[j] = dot(f0.data(), weight(0) + j * dim(0), dim(0)) + bias(0)[j];
    for (int64_t j = 0; j < clusters - 1; ++j)
      head[shortlist + j] = dot(f0.data(), p.value("crit.cluster_weight") + j * c.d, c.d) +
                            p.value("crit.cluster_bias")[j];
    const Vec head_lp = log_softmax(head);
    for (int64_t w = 0; w < shortlist; ++w) out[r * c.vocab + w] = head_lp[w];
    for (int64_t k = 1; k < clusters; ++k) {
      const Vec fk = features(h, k);
      Vec tail(static_cast<size_t>(bounds[k + 1] - bounds[k]));
      for (size_t j = 0; j < tail.size(); ++j)
        tail[j] = dot(fk.data(), weight(k) + static_cast<int64_t>(j) * dim(k), dim(k)) + bias(k)[j];
      const Vec tail_lp = log_softmax(tail);
      for (size_t j = 0; j < tail.size(); ++j)
        out[r * c.vocab + bounds[k] + static_cast<int64_t>(j)] = head_lp[head_cols - k] + tail_lp[j];
    }
  }
  return out;
}

// Targets covering every cluster of vocab 13 with cutoffs {4, 9}, plus ignored rows.
const std::vector<int32_t> kTargets{0, 5, 12, -1, 3, 9, 8, 4, 11, 1, -1, 6};

std::vector<Config> configs() {
  std::vector<Config> all;
  for (int64_t div : {1, 2, 4})
    for (bool tie : {false, true})
      for (bool tie_projs : {false, true}) {
        if (tie_projs && (div == 1 || !tie)) continue;
        Config c;
        c.div_val = div;
        c.d = div == 4 ? 16 : 8;  // the last cluster keeps width d / 4^2 >= 1
        c.tie = tie;
        c.tie_projs = tie_projs;
        all.push_back(c);
      }
  return all;
}
std::string describe(const Config& c) {
  return "d " + std::to_string(c.d) + ", div_val " + std::to_string(c.div_val) + (c.tie ? " tied" : " untied") + (c.tie_projs ? " tied projs" : "");
}

// ================================ softmax: loss and log-probabilities =========================

TEST(AdaptiveSoftmax, LossAndLogProbsMatchAPlainLoopOverTheAuthorsDefinition) {
  for (const Config& c : configs()) {
    SCOPED_TRACE(describe(c));
    Pair<double> p(c, 3);
    const int64_t n = static_cast<int64_t>(kTargets.size());
    Rng rng(5);
    const Vec hidden = normal_vector(rng, n * c.d);
    IdBuffer<double> targets;
    targets.upload(p.be, kTargets.data(), n);
    const double sum = p.softmax->forward(p.params, ConstView<double>(hidden.data(), {n, c.d}), targets.view({n}));
    const Vec ref = reference_log_probs(p, c, hidden, n);
    const Vec rows = p.softmax->row_losses().to_host();
    double ref_sum = 0.0;
    for (int64_t r = 0; r < n; ++r) {
      const double expected = kTargets[r] < 0 ? 0.0 : -ref[r * c.vocab + kTargets[r]];
      EXPECT_NEAR(rows[r], expected, 1e-12) << "row " << r;
      ref_sum += expected;
    }
    EXPECT_NEAR(sum, ref_sum, 1e-11);

    Vec lp(static_cast<size_t>(n * c.vocab), std::nan(""));
    p.softmax->log_probs(p.params, ConstView<double>(hidden.data(), {n, c.d}),
                         TensorView<double>(lp.data(), {n, c.vocab}));
    EXPECT_LT(max_abs_diff(lp, ref), 1e-12);
    for (int64_t r = 0; r < n; ++r) {
      double total = 0.0;
      for (int64_t w = 0; w < c.vocab; ++w) total += std::exp(lp[r * c.vocab + w]);
      EXPECT_NEAR(total, 1.0, 1e-12) << "row " << r;
      if (kTargets[r] >= 0) {
        EXPECT_NEAR(-lp[r * c.vocab + kTargets[r]], rows[r], 1e-12);
      }
    }
  }
}

// ================================ gradients by central differences ============================

// Max over `values` of |analytic - numeric| / max(1, max|numeric|).
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

TEST(AdaptiveSoftmax, GradientsThroughInputAndSoftmaxMatchCentralDifferences) {
  // ids -> AdaptiveInput -> hidden (times a fixed mixing matrix, so that the
  // hidden rows are not just the embeddings) -> AdaptiveSoftmax; loss =
  // scale * sum NLL. Tied parameters collect the gradients of both uses.
  const std::vector<int32_t> ids{2, 7, 12, 0, -1, 10, 5, 4, 9, 3, 11, 6};
  const int64_t n = static_cast<int64_t>(ids.size());
  const double scale = 0.7;
  for (const Config& c : configs()) {
    SCOPED_TRACE(describe(c));
    Pair<double> p(c, 11);
    Rng rng(17);
    const Vec mix = normal_vector(rng, c.d * c.d, 0.4);
    IdBuffer<double> id_buf, targets;
    id_buf.upload(p.be, ids.data(), n);
    targets.upload(p.be, kTargets.data(), n);
    Vec emb(static_cast<size_t>(n * c.d)), hidden(static_cast<size_t>(n * c.d));
    auto run_forward = [&] {
      p.input->forward(p.params, id_buf.view({n}), TensorView<double>(emb.data(), {n, c.d}));
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < c.d; ++j) hidden[r * c.d + j] = dot(emb.data() + r * c.d, mix.data() + j * c.d, c.d);
      return scale * p.softmax->forward(p.params, ConstView<double>(hidden.data(), {n, c.d}), targets.view({n}));
    };
    run_forward();
    p.params.zero_grad();
    Vec dhidden(static_cast<size_t>(n * c.d), std::nan("")), demb(static_cast<size_t>(n * c.d), 0.0);
    p.softmax->backward(p.params, scale, TensorView<double>(dhidden.data(), {n, c.d}));
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < c.d; ++j)
        for (int64_t i = 0; i < c.d; ++i) demb[r * c.d + i] += dhidden[r * c.d + j] * mix[j * c.d + i];
    p.input->backward(p.params, id_buf.view({n}), ConstView<double>(demb.data(), {n, c.d}));
    for (int64_t i = 0; i < p.params.size(); ++i) {
      SCOPED_TRACE(p.params[i].name);
      const double* g = p.params[i].grad.data();
      const Vec analytic(g, g + p.params[i].numel());
      EXPECT_GT(max_abs(analytic), 0.0);  // every parameter is reached by these ids and targets
      EXPECT_LT(fd_error(p.params[i].value.data(), p.params[i].numel(), analytic, run_forward), 1e-7);
    }
    // The hidden gradient on its own (rows with an ignored target get zeros).
    Vec h0 = hidden;
    auto loss_of_hidden = [&] {
      return scale * p.softmax->forward(p.params, ConstView<double>(h0.data(), {n, c.d}), targets.view({n}));
    };
    loss_of_hidden();
    p.softmax->backward(p.params, scale, TensorView<double>(dhidden.data(), {n, c.d}));
    EXPECT_LT(fd_error(h0.data(), n * c.d, dhidden, loss_of_hidden), 1e-7);
    for (int64_t j = 0; j < c.d; ++j) EXPECT_EQ(dhidden[3 * c.d + j], 0.0);
  }
}

// ================================ degenerate configurations ===================================

TEST(AdaptiveSoftmax, NoCutoffsIsLinearPlusCrossEntropy) {
  auto be = make_cpu_backend<double>(1);
  const int64_t vocab = 9, d = 5, n = 7;
  ParameterList<double> params, ref_params;
  AdaptiveSoftmax<double> softmax(params, be, "crit", vocab, d, {}, 1, nullptr, false);
  Linear<double> linear(ref_params, be, "out", d, vocab, true);
  params.allocate(be);
  ref_params.allocate(be);
  ASSERT_EQ(params.size(), 2);
  EXPECT_EQ(params[0].name, "crit.out_layers.0.weight");
  EXPECT_EQ(params[1].name, "crit.out_layers.0.bias");
  Rng rng(23);
  Rng draw(4);
  softmax.init_normal(params, draw, 0.02);
  for (double v : Vec(params[1].value.to_host())) EXPECT_EQ(v, 0.0);  // the authors' zero bias
  for (int64_t i = 0; i < 2; ++i) {
    const Vec v = normal_vector(rng, params[i].numel());
    params[i].value.from_host(v.data(), params[i].numel());
    ref_params[i].value.from_host(v.data(), params[i].numel());
  }
  const Vec hidden = normal_vector(rng, n * d);
  const std::vector<int32_t> host{0, 8, -1, 3, 3, 7, 1};
  IdBuffer<double> targets;
  targets.upload(be, host.data(), n);
  const double sum = softmax.forward(params, ConstView<double>(hidden.data(), {n, d}), targets.view({n}));
  Vec logits(static_cast<size_t>(n * vocab));
  linear.forward(ref_params, ConstView<double>(hidden.data(), {n, d}), TensorView<double>(logits.data(), {n, vocab}));
  CrossEntropyLoss<double> ce(be);
  EXPECT_NEAR(sum, ce.forward(ConstView<double>(logits.data(), {n, vocab}), targets.view({n})), 1e-13);
  EXPECT_LT(max_abs_diff(softmax.row_losses().to_host(), ce.row_losses().to_host()), 1e-13);
  Vec dh(static_cast<size_t>(n * d)), dh_ref(static_cast<size_t>(n * d));
  softmax.backward(params, 0.25, TensorView<double>(dh.data(), {n, d}));
  ce.backward(ConstView<double>(logits.data(), {n, vocab}), targets.view({n}), 0.25,
              TensorView<double>(logits.data(), {n, vocab}));
  linear.backward(ref_params, ConstView<double>(hidden.data(), {n, d}), ConstView<double>(logits.data(), {n, vocab}),
                  TensorView<double>(dh_ref.data(), {n, d}), InputGrad::Overwrite);
  EXPECT_LT(max_abs_diff(dh, dh_ref), 1e-13);
  for (int64_t i = 0; i < 2; ++i)
    EXPECT_LT(max_abs_diff(params[i].grad.to_host(), ref_params[i].grad.to_host()), 1e-13) << params[i].name;
}

TEST(AdaptiveInput, NoCutoffsIsAnEmbeddingTimesSqrtD) {
  auto be = make_cpu_backend<double>(1);
  const int64_t vocab = 11, d = 6, n = 5;
  ParameterList<double> params, ref_params;
  AdaptiveInput<double> input(params, be, "word_emb", vocab, d, {}, 1);
  Embedding<double> embedding(ref_params, be, "emb", vocab, d);
  params.allocate(be);
  ref_params.allocate(be);
  Rng a(8), b(8);
  input.init_normal(params, a, 0.02);
  embedding.init_normal(ref_params, b, 0.02);
  EXPECT_EQ(params[0].value.to_host(), ref_params[0].value.to_host());  // same draws in the same order
  const std::vector<int32_t> host{3, -1, 10, 3, 0};
  IdBuffer<double> ids;
  ids.upload(be, host.data(), n);
  Vec out(static_cast<size_t>(n * d)), ref(static_cast<size_t>(n * d));
  input.forward(params, ids.view({n}), TensorView<double>(out.data(), {n, d}));
  embedding.forward(ref_params, ids.view({n}), TensorView<double>(ref.data(), {n, d}));
  for (double& v : ref) v *= std::sqrt(static_cast<double>(d));
  EXPECT_LT(max_abs_diff(out, ref), 1e-15);
  Rng rng(1);
  const Vec dout = normal_vector(rng, n * d);
  Vec dref = dout;
  for (double& v : dref) v *= std::sqrt(static_cast<double>(d));
  input.backward(params, ids.view({n}), ConstView<double>(dout.data(), {n, d}));
  embedding.backward(ref_params, ids.view({n}), ConstView<double>(dref.data(), {n, d}));
  EXPECT_LT(max_abs_diff(params[0].grad.to_host(), ref_params[0].grad.to_host()), 1e-14);
}

TEST(AdaptiveInput, ClustersProjectToDModelAndPaddingIsZero) {
  Config c;
  c.div_val = 2;
  Pair<double> p(c, 29);
  const std::vector<int32_t> host{0, 12, -1, 4, 8, 9};
  const int64_t n = static_cast<int64_t>(host.size());
  IdBuffer<double> ids;
  ids.upload(p.be, host.data(), n);
  Vec out(static_cast<size_t>(n * c.d), std::nan(""));
  p.input->forward(p.params, ids.view({2, 3}), TensorView<double>(out.data(), {2, 3, c.d}));
  const std::vector<int64_t> bounds{0, 4, 9, 13}, dims{8, 4, 2};
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < c.d; ++j) {
      double expected = 0.0;
      if (host[r] >= 0) {
        int64_t k = 0;
        while (host[r] >= bounds[k + 1]) ++k;
        const double* table = p.value("word_emb.emb_layers." + std::to_string(k) + ".weight");
        const double* proj = p.value("word_emb.emb_projs." + std::to_string(k));
        const double* e = table + (host[r] - bounds[k]) * dims[k];
        expected = std::sqrt(8.0) * dot(e, proj + j * dims[k], dims[k]);
      }
      EXPECT_NEAR(out[r * c.d + j], expected, 1e-13) << r << "," << j;
    }
  }
}

// ================================ ignored targets, float vs double ============================

TEST(AdaptiveSoftmax, AllTargetsIgnoredGiveZeroLossAndGradients) {
  Config c;
  c.div_val = 2;
  Pair<double> p(c, 2);
  const int64_t n = 4;
  const std::vector<int32_t> host(static_cast<size_t>(n), -1);
  IdBuffer<double> targets;
  targets.upload(p.be, host.data(), n);
  Rng rng(3);
  const Vec hidden = normal_vector(rng, n * c.d);
  EXPECT_EQ(p.softmax->forward(p.params, ConstView<double>(hidden.data(), {n, c.d}), targets.view({n})), 0.0);
  Vec dh(static_cast<size_t>(n * c.d), std::nan(""));
  p.params.zero_grad();
  p.softmax->backward(p.params, 1.0, TensorView<double>(dh.data(), {n, c.d}));
  EXPECT_EQ(max_abs(dh), 0.0);
  for (int64_t i = 0; i < p.params.size(); ++i) EXPECT_EQ(max_abs(p.params[i].grad.to_host()), 0.0);
  // No rows at all.
  IdBuffer<double> none;
  none.upload(p.be, nullptr, 0);
  EXPECT_EQ(p.softmax->forward(p.params, ConstView<double>(hidden.data(), {0, c.d}), none.view({0})), 0.0);
  p.softmax->backward(p.params, 1.0, TensorView<double>(dh.data(), {0, c.d}));
}

template <typename T>
std::vector<Vec> run_pair(const Config& c) {
  Pair<T> p(c, 41);  // values drawn in double, rounded to T
  const int64_t n = static_cast<int64_t>(kTargets.size());
  const std::vector<int32_t> ids{2, 7, 12, 0, -1, 10, 5, 4, 9, 3, 11, 6};
  IdBuffer<T> id_buf, targets;
  id_buf.upload(p.be, ids.data(), n);
  targets.upload(p.be, kTargets.data(), n);
  std::vector<T> hidden(static_cast<size_t>(n * c.d)), dh(static_cast<size_t>(n * c.d));
  p.input->forward(p.params, id_buf.view({n}), TensorView<T>(hidden.data(), {n, c.d}));
  const double sum = p.softmax->forward(p.params, ConstView<T>(hidden.data(), {n, c.d}), targets.view({n}));
  p.softmax->backward(p.params, T(0.1), TensorView<T>(dh.data(), {n, c.d}));
  p.input->backward(p.params, id_buf.view({n}), ConstView<T>(dh.data(), {n, c.d}));
  std::vector<Vec> out{{sum}};
  std::vector<T> lp(static_cast<size_t>(n * c.vocab));
  p.softmax->log_probs(p.params, ConstView<T>(hidden.data(), {n, c.d}), TensorView<T>(lp.data(), {n, c.vocab}));
  out.emplace_back(lp.begin(), lp.end());
  for (int64_t i = 0; i < p.params.size(); ++i) {
    const std::vector<T> g = p.params[i].grad.to_host();
    out.emplace_back(g.begin(), g.end());
  }
  return out;
}

TEST(AdaptiveSoftmax, FloatAgreesWithDouble) {
  for (const Config& c : configs()) {
    SCOPED_TRACE(describe(c));
    const auto f = run_pair<float>(c), d = run_pair<double>(c);
    ASSERT_EQ(f.size(), d.size());
    for (size_t i = 0; i < f.size(); ++i)
      EXPECT_LT(max_abs_diff(f[i], d[i]), 2e-4 * std::max(1.0, max_abs(d[i]))) << "output " << i;
  }
}

// ================================ the partition op =============================================

TEST(AdaptiveSoftmaxOps, PartitionIsStableWithHeadTargetsCountedFromTheEnd) {
  auto be = make_cpu_backend<float>(1);
  AdaptiveBounds b;
  b.clusters = 3;
  b.bounds[0] = 0;
  b.bounds[1] = 4;
  b.bounds[2] = 9;
  b.bounds[3] = 13;
  const std::vector<int32_t> ids{0, 5, 12, -1, 3, 9, 8, 4, 11, 1, -1, 6};
  const int64_t n = static_cast<int64_t>(ids.size()), head_cols = 4 + 2;
  std::vector<int32_t> rows(ids.size(), -7), local(ids.size(), -7), head(ids.size(), -7);
  int64_t counts[3] = {-1, -1, -1};
  be->adaptive_partition(ids.data(), n, b, rows.data(), local.data(), head.data(), head_cols, counts);
  EXPECT_EQ(counts[0], 3);
  EXPECT_EQ(counts[1], 4);
  EXPECT_EQ(counts[2], 3);
  EXPECT_EQ(std::vector<int32_t>(rows.begin(), rows.begin() + 10), (std::vector<int32_t>{0, 4, 9, 1, 6, 7, 11, 2, 5, 8}));
  EXPECT_EQ(std::vector<int32_t>(local.begin(), local.begin() + 10),
            (std::vector<int32_t>{0, 3, 1, 1, 4, 0, 2, 3, 0, 2}));
  // Shortlist ids themselves; cluster 1 -> the last column (5), cluster 2 -> column 4; -1 stays ignored.
  EXPECT_EQ(head, (std::vector<int32_t>{0, 5, 4, -1, 3, 4, 5, 5, 4, 1, -1, 5}));
  const std::vector<int32_t> bad{13};
  expect_error(FWP_ERR_INTERNAL, "not below the vocabulary size 13", [&] {
    be->adaptive_partition(bad.data(), 1, b, rows.data(), local.data(), nullptr, 0, counts);
  });
}

// The CUDA kernels' per-row maths (cuda/adaptive_math.cuh, compiled here by
// g++), driven as the kernels drive them, against the CPU backend.
TEST(AdaptiveSoftmaxOps, CudaRowMathMatchesTheCpuBackend) {
  auto be = make_cpu_backend<double>(1);
  AdaptiveBounds b;
  b.clusters = 4;
  const int64_t bounds[] = {0, 50, 400, 1000, 3000};
  for (int64_t k = 0; k <= 4; ++k) b.bounds[k] = bounds[k];
  const int64_t n = 2500, head_cols = 50 + 3;
  Rng rng(31);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = rng.uniform() < 0.1 ? -1 : static_cast<int32_t>(rng.below(3000));
  std::vector<int32_t> rows(ids.size()), local(ids.size()), head(ids.size());
  int64_t counts[4];
  be->adaptive_partition(ids.data(), n, b, rows.data(), local.data(), head.data(), head_cols, counts);
  // The kernel: counts, then chunks of 1024 rows, one exclusive scan per cluster.
  int64_t next[4] = {0, 0, 0, 0}, emulated_counts[4] = {0, 0, 0, 0};
  for (int64_t r = 0; r < n; ++r) {
    const int32_t k = adaptive::cluster_of(ids[r], b);
    EXPECT_EQ(adaptive::head_target(ids[r], k, 4, head_cols), head[r]) << "row " << r;
    if (k >= 0) ++emulated_counts[k];
  }
  for (int64_t k = 1; k < 4; ++k) next[k] = next[k - 1] + emulated_counts[k - 1];
  std::vector<int32_t> em_rows(ids.size(), -7), em_local(ids.size(), -7);
  for (int64_t base = 0; base < n; base += 1024) {
    for (int32_t k = 0; k < 4; ++k) {
      int64_t rank = 0;
      for (int64_t t = 0; t < 1024 && base + t < n; ++t) {
        const int64_t r = base + t;
        if (adaptive::cluster_of(ids[r], b) != k) continue;
        em_rows[next[k] + rank] = static_cast<int32_t>(r);
        em_local[next[k] + rank] = static_cast<int32_t>(ids[r] - b.bounds[k]);
        ++rank;
      }
      next[k] += rank;
    }
  }
  for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(emulated_counts[k], counts[k]);
  const auto scored = static_cast<std::ptrdiff_t>(counts[0] + counts[1] + counts[2] + counts[3]);
  EXPECT_EQ(std::vector<int32_t>(em_rows.begin(), em_rows.begin() + scored),
            std::vector<int32_t>(rows.begin(), rows.begin() + scored));
  EXPECT_EQ(std::vector<int32_t>(em_local.begin(), em_local.begin() + scored),
            std::vector<int32_t>(local.begin(), local.begin() + scored));
  // Past the vocabulary: no cluster, an out-of-range head target.
  EXPECT_EQ(adaptive::cluster_of(3000, b), 4);
  EXPECT_EQ(adaptive::head_target(3000, 4, 4, head_cols), head_cols);
  // log_prob with the row's float log-sum-exp, against log_softmax_rows in double.
  const int64_t cols = 77;
  const Vec logits = normal_vector(rng, 3 * cols, 4.0), base = normal_vector(rng, 3);
  Vec ref(static_cast<size_t>(3 * cols));
  be->log_softmax_rows(logits.data(), 3, cols, cols, base.data(), 1, ref.data(), cols);
  for (int64_t r = 0; r < 3; ++r) {
    float m = -INFINITY, s = 0.0f;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, static_cast<float>(logits[r * cols + c]));
    for (int64_t c = 0; c < cols; ++c) s += std::exp(static_cast<float>(logits[r * cols + c]) - m);
    const float lse = rowmath::cross_entropy_lse(m, s);
    for (int64_t c = 0; c < cols; ++c)
      EXPECT_NEAR(adaptive::log_prob(static_cast<float>(logits[r * cols + c]), lse, static_cast<float>(base[r])),
                  ref[r * cols + c], 2e-5);
  }
}

// ================================ declarations and bad configurations ========================

TEST(AdaptiveSoftmax, DeclaresTheAuthorsParametersAndParameterShapesListsThem) {
  for (const Config& c : configs()) {
    SCOPED_TRACE(describe(c));
    Pair<double> p(c, 1);
    auto shapes = AdaptiveInput<double>::parameter_shapes("word_emb", c.vocab, c.d, c.cutoffs, c.div_val);
    const auto out = AdaptiveSoftmax<double>::parameter_shapes("crit", c.vocab, c.d, c.cutoffs, c.div_val, c.tie,
                                                               c.tie_projs);
    shapes.insert(shapes.end(), out.begin(), out.end());
    ASSERT_EQ(static_cast<int64_t>(shapes.size()), p.params.size());
    for (int64_t i = 0; i < p.params.size(); ++i) {
      EXPECT_EQ(shapes[i].name, p.params[i].name);
      EXPECT_EQ(shapes[i].shape, p.params[i].shape);
    }
    EXPECT_EQ(p.params.find("crit.out_layers.0.weight") < 0, c.tie);
    EXPECT_EQ(p.params.find("crit.out_projs.1") < 0, c.tie_projs || c.div_val == 1);
    if (c.div_val == 2) {
      EXPECT_EQ(p.params[p.params.find("word_emb.emb_layers.2.weight")].shape, (std::vector<int64_t>{4, 2}));
      EXPECT_EQ(p.params[p.params.find("word_emb.emb_projs.1")].shape, (std::vector<int64_t>{8, 4}));
    }
    EXPECT_EQ(p.params[p.params.find("crit.cluster_weight")].shape, (std::vector<int64_t>{2, c.d}));
  }
  // The authors' init: cluster bias and output biases zero; projections with the smaller std.
  Config c;
  c.div_val = 2;
  Pair<double> p(c, 1);
  Rng rng(9);
  p.input->init_normal(p.params, rng, 0.02);
  p.softmax->init_normal(p.params, rng, 0.02);
  EXPECT_EQ(max_abs(p.params[p.params.find("crit.cluster_bias")].value.to_host()), 0.0);
  EXPECT_EQ(max_abs(p.params[p.params.find("crit.out_layers.1.bias")].value.to_host()), 0.0);
  const Vec proj = p.params[p.params.find("crit.out_projs.0")].value.to_host();
  const Vec cw = p.params[p.params.find("crit.cluster_weight")].value.to_host();
  EXPECT_GT(max_abs(proj), 0.0);
  EXPECT_LT(max_abs(proj), 0.06);
  EXPECT_GT(max_abs(cw), 0.0);
}

TEST(AdaptiveSoftmax, BadConfigurationsAndMisuseAreClearErrors) {
  auto be = make_cpu_backend<double>(1);
  ParameterList<double> params;
  auto softmax = [&](int64_t vocab, int64_t d, std::vector<int64_t> cutoffs, int64_t div) {
    AdaptiveSoftmax<double>(params, be, "crit", vocab, d, std::move(cutoffs), div, nullptr, false);
  };
  expect_error(FWP_ERR_INVALID_ARGUMENT, "strictly increasing and within (0, vocab = 10); cutoff 1 is 3 after 5",
               [&] { softmax(10, 8, {5, 3}, 1); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "cutoff 0 is 0", [&] { softmax(10, 8, {0}, 1); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "cutoff 1 is 10", [&] { softmax(10, 8, {4, 10}, 1); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "cutoff 1 is 4 after 4", [&] { softmax(10, 8, {4, 4}, 1); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "div_val must be >= 1 (got 0)", [&] { softmax(10, 8, {4}, 0); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "width d_model / div_val^2 = 8 / 4^2 < 1", [&] { softmax(10, 8, {4, 6}, 4); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "vocabulary size must be in [1, 2^31 - 1] (got 0)", [&] { softmax(0, 8, {}, 1); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "d_model must be >= 1", [&] { softmax(10, 0, {}, 1); });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "AdaptiveInput 'emb': cutoffs must be strictly increasing",
               [&] { AdaptiveInput<double>(params, be, "emb", 10, 8, {7, 2}, 1); });
  EXPECT_EQ(params.size(), 0);  // nothing declared by a rejected configuration
  AdaptiveInput<double> input(params, be, "emb", 10, 8, {4}, 2);
  expect_error(FWP_ERR_INVALID_ARGUMENT, "the tied AdaptiveInput 'emb' has another", [&] {
    AdaptiveSoftmax<double>(params, be, "crit", 10, 8, {5}, 2, &input, false);
  });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "exist only with div_val > 1 and at least one cutoff", [&] {
    AdaptiveSoftmax<double>(params, be, "crit", 10, 8, {4}, 1, &input, true);
  });
  expect_error(FWP_ERR_INVALID_ARGUMENT, "needs the AdaptiveInput to tie to",
               [&] { AdaptiveSoftmax<double>(params, be, "crit", 10, 8, {4}, 2, nullptr, true); });
  AdaptiveSoftmax<double> ok(params, be, "crit", 10, 8, {4}, 2, &input, true);
  params.allocate(be);
  Vec h(16), dh(16);
  expect_error(FWP_ERR_BAD_STATE, "backward needs a forward first",
               [&] { ok.backward(params, 1.0, TensorView<double>(dh.data(), {2, 8})); });
  const std::vector<int32_t> host{1, 7};
  IdBuffer<double> targets;
  targets.upload(be, host.data(), 2);
  expect_error(FWP_ERR_SHAPE_MISMATCH, "AdaptiveSoftmax 'crit' hidden has shape [2, 4]",
               [&] { ok.forward(params, ConstView<double>(h.data(), {2, 4}), targets.view({2})); });
  ok.forward(params, ConstView<double>(h.data(), {2, 8}), targets.view({2}));
  ok.backward(params, 1.0, TensorView<double>(dh.data(), {2, 8}));
  expect_error(FWP_ERR_BAD_STATE, "one backward per forward",
               [&] { ok.backward(params, 1.0, TensorView<double>(dh.data(), {2, 8})); });
}

}  // namespace
}  // namespace fwp
