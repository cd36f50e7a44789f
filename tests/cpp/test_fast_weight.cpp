// Tests of the CPU fast-weight op (src/ops/fast_weight.cpp): sum and delta rule,
// recurrent and chunked, forward and backward, against a plain reference that
// keeps every per-step state W_t, and against central finite differences.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "ops/cpu_backend.h"

namespace fwp {
namespace {

using Vec = std::vector<double>;

// ---------------------------------------------------------------------------
// Problem data and the reference implementation (double precision).
// ---------------------------------------------------------------------------

struct Problem {
  UpdateRule rule = UpdateRule::Delta;
  FastWeightShape shape;
  bool has_q = true;
  bool has_state = true;
  Vec q, k, v, beta, state_in;
  Vec r1, r2;  // loss weights: L = sum(r1 * out) + sum(r2 * state_out)
};

Vec random_normal(std::mt19937_64& rng, int64_t n, double scale) {
  std::normal_distribution<double> dist(0.0, scale);
  Vec x(static_cast<size_t>(n));
  for (double& e : x) e = dist(rng);
  return x;
}

Vec random_uniform(std::mt19937_64& rng, int64_t n, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec x(static_cast<size_t>(n));
  for (double& e : x) e = dist(rng);
  return x;
}

// Keys have norm ~1 and beta lies in (beta_lo, beta_hi), the regime in which
// the delta rule is a contraction and values stay O(1).
Problem make_problem(UpdateRule rule, int64_t streams, int64_t steps, int64_t d_key, int64_t d_value, bool has_q,
                     bool has_state, uint64_t seed, double beta_lo = 0.05, double beta_hi = 0.95) {
  std::mt19937_64 rng(seed);
  Problem p;
  p.rule = rule;
  p.shape = {streams, steps, d_key, d_value};
  p.has_q = has_q;
  p.has_state = has_state;
  const double key_scale = 1.0 / std::sqrt(static_cast<double>(d_key));
  const int64_t nk = streams * steps * d_key;
  const int64_t nv = streams * steps * d_value;
  if (has_q) p.q = random_normal(rng, nk, key_scale);
  p.k = random_normal(rng, nk, key_scale);
  p.v = random_normal(rng, nv, 1.0);
  if (rule == UpdateRule::Delta) p.beta = random_uniform(rng, streams * steps, beta_lo, beta_hi);
  if (has_state) p.state_in = random_normal(rng, streams * d_key * d_value, 0.3);
  p.r1 = random_normal(rng, nv, 1.0);
  p.r2 = random_normal(rng, streams * d_key * d_value, 1.0);
  return p;
}

struct RefForward {
  Vec out, u, state_out;
  Vec states;  // [streams][steps + 1][d_value][d_key]: W_0 .. W_T
};

// The recurrence exactly as written in backend.h, one step at a time, keeping W_t.
RefForward reference_forward(const Problem& p) {
  const int64_t S = p.shape.streams, T = p.shape.steps, dk = p.shape.d_key, dv = p.shape.d_value;
  const int64_t ws = dk * dv;
  RefForward r;
  r.out.assign(static_cast<size_t>(S * T * dv), 0.0);
  r.u.assign(static_cast<size_t>(S * T * dv), 0.0);
  r.state_out.assign(static_cast<size_t>(S * ws), 0.0);
  r.states.assign(static_cast<size_t>(S * (T + 1) * ws), 0.0);
  for (int64_t s = 0; s < S; ++s) {
    double* W0 = &r.states[static_cast<size_t>(s * (T + 1) * ws)];
    for (int64_t e = 0; e < ws; ++e) W0[e] = p.has_state ? p.state_in[static_cast<size_t>(s * ws + e)] : 0.0;
    for (int64_t t = 0; t < T; ++t) {
      const double* Wp = W0 + t * ws;
      double* Wn = W0 + (t + 1) * ws;
      const double* k = &p.k[static_cast<size_t>((s * T + t) * dk)];
      const double* v = &p.v[static_cast<size_t>((s * T + t) * dv)];
      double* u = &r.u[static_cast<size_t>((s * T + t) * dv)];
      for (int64_t i = 0; i < dv; ++i) {
        if (p.rule == UpdateRule::Delta) {
          double vbar = 0.0;
          for (int64_t j = 0; j < dk; ++j) vbar += Wp[i * dk + j] * k[j];
          u[i] = p.beta[static_cast<size_t>(s * T + t)] * (v[i] - vbar);
        } else {
          u[i] = v[i];
        }
      }
      for (int64_t i = 0; i < dv; ++i)
        for (int64_t j = 0; j < dk; ++j) Wn[i * dk + j] = Wp[i * dk + j] + u[i] * k[j];
      if (p.has_q) {
        const double* q = &p.q[static_cast<size_t>((s * T + t) * dk)];
        for (int64_t i = 0; i < dv; ++i) {
          double o = 0.0;
          for (int64_t j = 0; j < dk; ++j) o += Wn[i * dk + j] * q[j];
          r.out[static_cast<size_t>((s * T + t) * dv + i)] = o;
        }
      }
    }
    for (int64_t e = 0; e < ws; ++e) r.state_out[static_cast<size_t>(s * ws + e)] = W0[T * ws + e];
  }
  return r;
}

double reference_loss(const Problem& p) {
  const RefForward f = reference_forward(p);
  double loss = 0.0;
  if (p.has_q)
    for (size_t i = 0; i < f.out.size(); ++i) loss += p.r1[i] * f.out[i];
  for (size_t i = 0; i < f.state_out.size(); ++i) loss += p.r2[i] * f.state_out[i];
  return loss;
}

struct Grads {
  Vec dq, dk, dv, dbeta, dstate;
};

// Reverse-mode derivative of the reference recurrence, reading the stored W_t
// and W_{t-1} (nothing is reconstructed). d_out = r1 if use_dout, d_state_out =
// r2 if use_dstate, else zero.
Grads reference_backward(const Problem& p, const RefForward& f, bool use_dout, bool use_dstate) {
  const int64_t S = p.shape.streams, T = p.shape.steps, dk = p.shape.d_key, dv = p.shape.d_value;
  const int64_t ws = dk * dv;
  const bool delta = p.rule == UpdateRule::Delta;
  Grads g;
  if (p.has_q) g.dq.assign(static_cast<size_t>(S * T * dk), 0.0);
  g.dk.assign(static_cast<size_t>(S * T * dk), 0.0);
  g.dv.assign(static_cast<size_t>(S * T * dv), 0.0);
  if (delta) g.dbeta.assign(static_cast<size_t>(S * T), 0.0);
  g.dstate.assign(static_cast<size_t>(S * ws), 0.0);
  Vec dW(static_cast<size_t>(ws)), du(static_cast<size_t>(dv));
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t e = 0; e < ws; ++e) dW[static_cast<size_t>(e)] = use_dstate ? p.r2[static_cast<size_t>(s * ws + e)] : 0.0;
    for (int64_t t = T - 1; t >= 0; --t) {
      const double* Wt = &f.states[static_cast<size_t>((s * (T + 1) + t + 1) * ws)];
      const double* Wp = &f.states[static_cast<size_t>((s * (T + 1) + t) * ws)];
      const int64_t ok = (s * T + t) * dk, ov = (s * T + t) * dv;
      const double* k = &p.k[static_cast<size_t>(ok)];
      const double* v = &p.v[static_cast<size_t>(ov)];
      const double* u = &f.u[static_cast<size_t>(ov)];
      if (p.has_q && use_dout) {
        const double* q = &p.q[static_cast<size_t>(ok)];
        const double* go = &p.r1[static_cast<size_t>(ov)];
        for (int64_t i = 0; i < dv; ++i)
          for (int64_t j = 0; j < dk; ++j) {
            dW[static_cast<size_t>(i * dk + j)] += go[i] * q[j];
            g.dq[static_cast<size_t>(ok + j)] += Wt[i * dk + j] * go[i];
          }
      }
      for (int64_t i = 0; i < dv; ++i) {
        double acc = 0.0;
        for (int64_t j = 0; j < dk; ++j) acc += dW[static_cast<size_t>(i * dk + j)] * k[j];
        du[static_cast<size_t>(i)] = acc;
      }
      for (int64_t j = 0; j < dk; ++j)
        for (int64_t i = 0; i < dv; ++i) g.dk[static_cast<size_t>(ok + j)] += dW[static_cast<size_t>(i * dk + j)] * u[i];
      if (delta) {
        const double b = p.beta[static_cast<size_t>(s * T + t)];
        double db = 0.0;
        for (int64_t i = 0; i < dv; ++i) {
          double vbar = 0.0;
          for (int64_t j = 0; j < dk; ++j) vbar += Wp[i * dk + j] * k[j];
          db += du[static_cast<size_t>(i)] * (v[i] - vbar);
          g.dv[static_cast<size_t>(ov + i)] = b * du[static_cast<size_t>(i)];
        }
        g.dbeta[static_cast<size_t>(s * T + t)] = db;
        for (int64_t i = 0; i < dv; ++i) {
          const double dvbar = -b * du[static_cast<size_t>(i)];
          for (int64_t j = 0; j < dk; ++j) {
            dW[static_cast<size_t>(i * dk + j)] += dvbar * k[j];
            g.dk[static_cast<size_t>(ok + j)] += Wp[i * dk + j] * dvbar;
          }
        }
      } else {
        for (int64_t i = 0; i < dv; ++i) g.dv[static_cast<size_t>(ov + i)] = du[static_cast<size_t>(i)];
      }
    }
    for (int64_t e = 0; e < ws; ++e) g.dstate[static_cast<size_t>(s * ws + e)] = dW[static_cast<size_t>(e)];
  }
  return g;
}

// ---------------------------------------------------------------------------
// Running the backend (any scalar type) on a Problem.
// ---------------------------------------------------------------------------

template <typename S>
std::vector<S> cast(const Vec& x) {
  return std::vector<S>(x.begin(), x.end());
}

template <typename S>
const S* cptr(const std::vector<S>& x) {
  return x.empty() ? nullptr : x.data();
}

template <typename S>
S* mptr(std::vector<S>& x) {
  return x.empty() ? nullptr : x.data();
}

template <typename S>
struct Outputs {
  std::vector<S> out, u, state_out;
  std::vector<S> saved;  // the states saved for the backward, every `interval` steps
  int64_t interval = 0;
};

template <typename S>
struct Inputs {
  std::vector<S> q, k, v, beta, state_in, r1, r2;
  explicit Inputs(const Problem& p)
      : q(cast<S>(p.q)), k(cast<S>(p.k)), v(cast<S>(p.v)), beta(cast<S>(p.beta)), state_in(cast<S>(p.state_in)),
        r1(cast<S>(p.r1)), r2(cast<S>(p.r2)) {}
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

template <typename S>
Outputs<S> run_forward(CpuBackend<S>& be, const Problem& p, const Inputs<S>& in, Algorithm algo, int64_t chunk) {
  const auto& sh = p.shape;
  Outputs<S> o;
  // Pre-filled with NaN: every element must be written.
  if (p.has_q) o.out.assign(static_cast<size_t>(sh.streams * sh.steps * sh.d_value), S(kNaN));
  o.u.assign(static_cast<size_t>(sh.streams * sh.steps * sh.d_value), S(kNaN));
  o.state_out.assign(static_cast<size_t>(sh.streams * sh.d_key * sh.d_value), S(kNaN));
  o.interval = be.fast_weight_state_interval(sh, chunk);
  o.saved.assign(static_cast<size_t>((sh.steps + o.interval - 1) / o.interval) * o.state_out.size(), S(kNaN));
  be.fast_weight_forward(p.rule, algo, chunk, sh, cptr(in.q), cptr(in.k), cptr(in.v), cptr(in.beta),
                         cptr(in.state_in), mptr(o.out), mptr(o.u), mptr(o.state_out), mptr(o.saved));
  return o;
}

template <typename S>
struct BackendGrads {
  std::vector<S> dq, dk, dv, dbeta, dstate;
};

// The forward's saved states are used whenever the backward's interval is
// theirs (use_saved); otherwise every state is rebuilt from state_out.
template <typename S>
BackendGrads<S> run_backward(CpuBackend<S>& be, const Problem& p, const Inputs<S>& in, const Outputs<S>& fwd,
                             Algorithm algo, int64_t chunk, bool use_dout = true, bool use_dstate = true,
                             bool use_saved = true) {
  const auto& sh = p.shape;
  BackendGrads<S> g;
  // Pre-filled with NaN: gradients are overwritten, never accumulated.
  if (p.has_q) g.dq.assign(static_cast<size_t>(sh.streams * sh.steps * sh.d_key), S(kNaN));
  g.dk.assign(static_cast<size_t>(sh.streams * sh.steps * sh.d_key), S(kNaN));
  g.dv.assign(static_cast<size_t>(sh.streams * sh.steps * sh.d_value), S(kNaN));
  if (p.rule == UpdateRule::Delta) g.dbeta.assign(static_cast<size_t>(sh.streams * sh.steps), S(kNaN));
  g.dstate.assign(static_cast<size_t>(sh.streams * sh.d_key * sh.d_value), S(kNaN));
  const S* d_out = (p.has_q && use_dout) ? in.r1.data() : nullptr;
  const S* d_state_out = use_dstate ? in.r2.data() : nullptr;
  be.fast_weight_backward(p.rule, algo, chunk, sh, cptr(in.q), cptr(in.k), cptr(in.v), cptr(in.beta),
                          fwd.u.data(), fwd.state_out.data(), d_out, d_state_out, mptr(g.dq), mptr(g.dk),
                          mptr(g.dv), mptr(g.dbeta), g.dstate.data(),
                          use_saved && be.fast_weight_state_interval(sh, chunk) == fwd.interval ? cptr(fwd.saved)
                                                                                                   : nullptr);
  return g;
}

// max |a - b| / max(1, max |b|): relative to the scale of the reference.
template <typename A>
double scaled_error(const std::vector<A>& a, const Vec& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double scale = 1.0, err = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    scale = std::max(scale, std::abs(b[i]));
    const double d = std::abs(static_cast<double>(a[i]) - b[i]);
    if (!(d <= err)) err = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
  }
  return err / scale;
}

#define EXPECT_VEC_NEAR(a, b, tol) EXPECT_LE(scaled_error((a), (b)), (tol)) << #a " vs " #b

template <typename S>
void expect_forward_near(const Outputs<S>& o, const RefForward& r, bool has_q, double tol) {
  if (has_q) {
    EXPECT_VEC_NEAR(o.out, r.out, tol);
  }
  EXPECT_VEC_NEAR(o.u, r.u, tol);
  EXPECT_VEC_NEAR(o.state_out, r.state_out, tol);
}

template <typename S>
void expect_grads_near(const BackendGrads<S>& g, const Grads& r, double tol) {
  EXPECT_VEC_NEAR(g.dq, r.dq, tol);
  EXPECT_VEC_NEAR(g.dk, r.dk, tol);
  EXPECT_VEC_NEAR(g.dv, r.dv, tol);
  EXPECT_VEC_NEAR(g.dbeta, r.dbeta, tol);
  EXPECT_VEC_NEAR(g.dstate, r.dstate, tol);
}

Vec to_double(const std::vector<float>& x) { return Vec(x.begin(), x.end()); }

// ---------------------------------------------------------------------------
// The main grid: rule x algorithm/chunk x q x state_in x T, d_key 12, d_value 7.
// ---------------------------------------------------------------------------

struct AlgoConfig {
  Algorithm algo;
  int64_t chunk;
  const char* name;
};

const AlgoConfig kConfigs[] = {
    {Algorithm::Recurrent, 0, "Recurrent"}, {Algorithm::Chunked, 1, "Chunk1"},   {Algorithm::Chunked, 3, "Chunk3"},
    {Algorithm::Chunked, 16, "Chunk16"},    {Algorithm::Chunked, 64, "Chunk64"}, {Algorithm::Chunked, 1000, "Chunk1000"},
    {Algorithm::Chunked, 0, "ChunkDefault"}, {Algorithm::Auto, 0, "Auto"},
};

using GridParam = std::tuple<UpdateRule, int, bool, bool, int64_t>;

class FastWeightGrid : public ::testing::TestWithParam<GridParam> {};

TEST_P(FastWeightGrid, ForwardAndBackwardMatchReference) {
  const auto [rule, config_index, has_q, has_state, steps] = GetParam();
  const AlgoConfig cfg = kConfigs[config_index];
  const Problem p = make_problem(rule, 3, steps, 12, 7, has_q, has_state,
                                 1000 + static_cast<uint64_t>(steps) * 16 + static_cast<uint64_t>(config_index));
  CpuBackend<double> be(2);
  const Inputs<double> in(p);
  const RefForward ref = reference_forward(p);

  const Outputs<double> fwd = run_forward(be, p, in, cfg.algo, cfg.chunk);
  expect_forward_near(fwd, ref, has_q, 1e-10);

  const Grads ref_g = reference_backward(p, ref, true, true);
  expect_grads_near(run_backward(be, p, in, fwd, cfg.algo, cfg.chunk), ref_g, 1e-10);

  // The forward of one algorithm feeds the backward of the other.
  const bool chunked = cfg.algo == Algorithm::Chunked;
  const Algorithm other = chunked ? Algorithm::Recurrent : Algorithm::Chunked;
  expect_grads_near(run_backward(be, p, in, fwd, other, chunked ? 0 : 16), ref_g, 1e-10);

  // Missing output gradient, missing state gradient.
  if (has_q) {
    const BackendGrads<double> g = run_backward(be, p, in, fwd, cfg.algo, cfg.chunk, false, true);
    expect_grads_near(g, reference_backward(p, ref, false, true), 1e-10);
    for (double x : g.dq) ASSERT_EQ(x, 0.0);
  }
  expect_grads_near(run_backward(be, p, in, fwd, cfg.algo, cfg.chunk, true, false),
                    reference_backward(p, ref, true, false), 1e-10);
}

std::string grid_name(const ::testing::TestParamInfo<GridParam>& info) {
  const auto [rule, config_index, has_q, has_state, steps] = info.param;
  std::ostringstream os;
  os << (rule == UpdateRule::Delta ? "Delta" : "Sum") << "_" << kConfigs[config_index].name << "_"
     << (has_q ? "Q" : "NoQ") << "_" << (has_state ? "State" : "NoState") << "_T" << steps;
  return os.str();
}

INSTANTIATE_TEST_SUITE_P(FastWeight, FastWeightGrid,
                         ::testing::Combine(::testing::Values(UpdateRule::Sum, UpdateRule::Delta),
                                            ::testing::Range(0, static_cast<int>(std::size(kConfigs))),
                                            ::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values<int64_t>(1, 5, 64, 67, 200)),
                         grid_name);

// ---------------------------------------------------------------------------
// Central finite differences of the reference loss, against the backend's backward.
// ---------------------------------------------------------------------------

void check_finite_differences(const Problem& base, Algorithm algo, int64_t chunk) {
  CpuBackend<double> be(1);
  const Inputs<double> in(base);
  const Outputs<double> fwd = run_forward(be, base, in, algo, chunk);
  const BackendGrads<double> g = run_backward(be, base, in, fwd, algo, chunk);
  const double h = 1e-5;
  const auto check = [&](Vec Problem::*field, const std::vector<double>& grad, const char* name) {
    ASSERT_EQ((base.*field).size(), grad.size()) << name;
    Problem p = base;
    for (size_t i = 0; i < grad.size(); ++i) {
      const double x0 = (p.*field)[i];
      (p.*field)[i] = x0 + h;
      const double lp = reference_loss(p);
      (p.*field)[i] = x0 - h;
      const double lm = reference_loss(p);
      (p.*field)[i] = x0;
      const double fd = (lp - lm) / (2 * h);
      ASSERT_NEAR(grad[i], fd, 1e-6 * std::max(1.0, std::abs(fd))) << name << "[" << i << "]";
    }
  };
  if (base.has_q) check(&Problem::q, g.dq, "dq");
  check(&Problem::k, g.dk, "dk");
  check(&Problem::v, g.dv, "dv");
  if (base.rule == UpdateRule::Delta) check(&Problem::beta, g.dbeta, "dbeta");
  if (base.has_state) check(&Problem::state_in, g.dstate, "dstate_in");
}

class FastWeightFiniteDiff
    : public ::testing::TestWithParam<std::tuple<UpdateRule, Algorithm, bool, bool, int64_t>> {};

TEST_P(FastWeightFiniteDiff, GradientsMatchCentralDifferences) {
  const auto [rule, algo, has_q, has_state, steps] = GetParam();
  const Problem p = make_problem(rule, 2, steps, 6, 5, has_q, has_state, 77 + static_cast<uint64_t>(steps));
  check_finite_differences(p, algo, 3);
}

INSTANTIATE_TEST_SUITE_P(FastWeight, FastWeightFiniteDiff,
                         ::testing::Combine(::testing::Values(UpdateRule::Sum, UpdateRule::Delta),
                                            ::testing::Values(Algorithm::Recurrent, Algorithm::Chunked),
                                            ::testing::Bool(), ::testing::Bool(), ::testing::Values<int64_t>(1, 8)));

TEST(FastWeightFiniteDiffExtreme, BetaNearZeroAndOne) {
  for (const Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
    for (const bool near_one : {false, true}) {
      SCOPED_TRACE(std::string(algo == Algorithm::Chunked ? "chunked" : "recurrent") +
                   (near_one ? " beta~1" : " beta~0"));
      Problem p = make_problem(UpdateRule::Delta, 1, 7, 5, 4, true, true, 5);
      for (size_t i = 0; i < p.beta.size(); ++i) p.beta[i] = near_one ? 1.0 - 1e-9 * double(i) : 1e-9 * double(i);
      check_finite_differences(p, algo, 3);
    }
  }
}

// ---------------------------------------------------------------------------
// Direct comparisons between the two algorithms and across segments.
// ---------------------------------------------------------------------------

TEST(FastWeightAlgorithms, RecurrentAndChunkedBackwardAgree) {
  for (const UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta}) {
    const Problem p = make_problem(rule, 4, 131, 20, 9, true, true, 31);
    CpuBackend<double> be(2);
    const Inputs<double> in(p);
    const Outputs<double> fr = run_forward(be, p, in, Algorithm::Recurrent, 0);
    const Outputs<double> fc = run_forward(be, p, in, Algorithm::Chunked, 32);
    EXPECT_VEC_NEAR(fc.out, fr.out, 1e-11);
    EXPECT_VEC_NEAR(fc.u, fr.u, 1e-11);
    EXPECT_VEC_NEAR(fc.state_out, fr.state_out, 1e-11);
    const BackendGrads<double> gr = run_backward(be, p, in, fr, Algorithm::Recurrent, 0);
    for (const Outputs<double>* f : {&fr, &fc}) {
      const BackendGrads<double> gc = run_backward(be, p, in, *f, Algorithm::Chunked, 32);
      EXPECT_VEC_NEAR(gc.dq, gr.dq, 1e-11);
      EXPECT_VEC_NEAR(gc.dk, gr.dk, 1e-11);
      EXPECT_VEC_NEAR(gc.dv, gr.dv, 1e-11);
      EXPECT_VEC_NEAR(gc.dbeta, gr.dbeta, 1e-11);
      EXPECT_VEC_NEAR(gc.dstate, gr.dstate, 1e-11);
    }
  }
}

// Steps [begin, end) of a [streams, T, width] array.
Vec slice_steps(const Vec& x, int64_t streams, int64_t steps, int64_t width, int64_t begin, int64_t end) {
  Vec r;
  if (x.empty()) return r;
  for (int64_t s = 0; s < streams; ++s)
    r.insert(r.end(), x.begin() + (s * steps + begin) * width, x.begin() + (s * steps + end) * width);
  return r;
}

// Concatenates [streams, T1, width] and [streams, T2, width] along the steps.
Vec concat_steps(const Vec& a, const Vec& b, int64_t streams, int64_t t1, int64_t t2, int64_t width) {
  Vec r;
  for (int64_t s = 0; s < streams; ++s) {
    r.insert(r.end(), a.begin() + s * t1 * width, a.begin() + (s + 1) * t1 * width);
    r.insert(r.end(), b.begin() + s * t2 * width, b.begin() + (s + 1) * t2 * width);
  }
  return r;
}

Problem segment_of(const Problem& p, int64_t begin, int64_t end) {
  const auto& sh = p.shape;
  Problem s = p;
  s.shape.steps = end - begin;
  s.q = slice_steps(p.q, sh.streams, sh.steps, sh.d_key, begin, end);
  s.k = slice_steps(p.k, sh.streams, sh.steps, sh.d_key, begin, end);
  s.v = slice_steps(p.v, sh.streams, sh.steps, sh.d_value, begin, end);
  s.beta = slice_steps(p.beta, sh.streams, sh.steps, 1, begin, end);
  s.r1 = slice_steps(p.r1, sh.streams, sh.steps, sh.d_value, begin, end);
  return s;
}

TEST(FastWeightSegments, CarriedStateEqualsOnePass) {
  const int64_t steps = 67, split = 30;
  for (const UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta}) {
    for (const Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
      SCOPED_TRACE(std::string(rule == UpdateRule::Delta ? "delta " : "sum ") +
                   (algo == Algorithm::Chunked ? "chunked" : "recurrent"));
      const Problem p = make_problem(rule, 3, steps, 12, 7, true, true, 9);
      const auto& sh = p.shape;
      CpuBackend<double> be(2);
      const Inputs<double> in(p);
      const Outputs<double> full = run_forward(be, p, in, algo, 16);
      const BackendGrads<double> gfull = run_backward(be, p, in, full, algo, 16);

      // Two segments; the state of the first is carried into the second.
      Problem p1 = segment_of(p, 0, split);
      Problem p2 = segment_of(p, split, steps);
      const Inputs<double> in1(p1);
      const Outputs<double> f1 = run_forward(be, p1, in1, algo, 16);
      p2.state_in = f1.state_out;
      const Inputs<double> in2(p2);
      const Outputs<double> f2 = run_forward(be, p2, in2, algo, 16);
      EXPECT_VEC_NEAR(concat_steps(f1.out, f2.out, sh.streams, split, steps - split, sh.d_value), full.out, 1e-12);
      EXPECT_VEC_NEAR(concat_steps(f1.u, f2.u, sh.streams, split, steps - split, sh.d_value), full.u, 1e-12);
      EXPECT_VEC_NEAR(f2.state_out, full.state_out, 1e-12);

      // Backward through both segments: d_state_in of the second is d_state_out of the first.
      const BackendGrads<double> g2 = run_backward(be, p2, in2, f2, algo, 16);
      Inputs<double> in1b(p1);
      in1b.r2 = g2.dstate;
      const BackendGrads<double> g1 = run_backward(be, p1, in1b, f1, algo, 16);
      EXPECT_VEC_NEAR(concat_steps(g1.dq, g2.dq, sh.streams, split, steps - split, sh.d_key), gfull.dq, 1e-11);
      EXPECT_VEC_NEAR(concat_steps(g1.dk, g2.dk, sh.streams, split, steps - split, sh.d_key), gfull.dk, 1e-11);
      EXPECT_VEC_NEAR(concat_steps(g1.dv, g2.dv, sh.streams, split, steps - split, sh.d_value), gfull.dv, 1e-11);
      if (rule == UpdateRule::Delta) {
        EXPECT_VEC_NEAR(concat_steps(g1.dbeta, g2.dbeta, sh.streams, split, steps - split, 1), gfull.dbeta, 1e-11);
      }
      EXPECT_VEC_NEAR(g1.dstate, gfull.dstate, 1e-11);

      // T single steps, the state updated in place (state_out aliases state_in).
      Vec state = p.state_in;
      Vec out_steps(full.out.size()), u_steps(full.u.size());
      for (int64_t t = 0; t < steps; ++t) {
        const Problem pt = segment_of(p, t, t + 1);
        const Inputs<double> it(pt);
        Vec o(static_cast<size_t>(sh.streams * sh.d_value)), u(o.size());
        be.fast_weight_forward(rule, algo, 16, pt.shape, it.q.data(), it.k.data(), it.v.data(), cptr(it.beta),
                               state.data(), o.data(), u.data(), state.data());
        for (int64_t s = 0; s < sh.streams; ++s)
          for (int64_t i = 0; i < sh.d_value; ++i) {
            out_steps[static_cast<size_t>((s * steps + t) * sh.d_value + i)] = o[static_cast<size_t>(s * sh.d_value + i)];
            u_steps[static_cast<size_t>((s * steps + t) * sh.d_value + i)] = u[static_cast<size_t>(s * sh.d_value + i)];
          }
      }
      EXPECT_VEC_NEAR(out_steps, full.out, 1e-12);
      EXPECT_VEC_NEAR(u_steps, full.u, 1e-12);
      EXPECT_VEC_NEAR(state, full.state_out, 1e-12);
    }
  }
}

// ---------------------------------------------------------------------------
// Extreme beta, wide keys, float precision, long sequences, threads, edge cases.
// ---------------------------------------------------------------------------

TEST(FastWeightBeta, NearZeroAndNearOne) {
  for (const int mode : {0, 1}) {
    Problem p = make_problem(UpdateRule::Delta, 2, 67, 12, 7, true, true, 41);
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<double> tiny(0.0, 1e-12);
    for (size_t i = 0; i < p.beta.size(); ++i) {
      const double e = (i % 5 == 0) ? 0.0 : tiny(rng);  // some exactly 0 (resp. exactly 1)
      p.beta[i] = mode == 0 ? e : 1.0 - e;
    }
    const RefForward ref = reference_forward(p);
    const Grads ref_g = reference_backward(p, ref, true, true);
    CpuBackend<double> be(2);
    const Inputs<double> in(p);
    for (const Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
      SCOPED_TRACE(std::string(mode == 0 ? "beta~0 " : "beta~1 ") + (algo == Algorithm::Chunked ? "chunked" : "recurrent"));
      const Outputs<double> fwd = run_forward(be, p, in, algo, 16);
      expect_forward_near(fwd, ref, true, 1e-10);
      for (const Algorithm balgo : {Algorithm::Recurrent, Algorithm::Chunked})
        expect_grads_near(run_backward(be, p, in, fwd, balgo, 16), ref_g, 1e-10);
    }
  }
}

TEST(FastWeightShapes, WideKeysNarrowValues) {
  for (const UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta}) {
    const Problem p = make_problem(rule, 2, 67, 512, 16, true, true, 12);
    const RefForward ref = reference_forward(p);
    const Grads ref_g = reference_backward(p, ref, true, true);
    CpuBackend<double> be(2);
    const Inputs<double> in(p);
    for (const Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
      const Outputs<double> fwd = run_forward(be, p, in, algo, 16);
      expect_forward_near(fwd, ref, true, 1e-10);
      expect_grads_near(run_backward(be, p, in, fwd, algo, 16), ref_g, 1e-10);
    }
  }
}

// The recurrent kernels split the values into blocks of 16 / 32 / 64 (padded);
// these shapes give several blocks, a partial last block and, in float, wide
// blocks in the backward that do not fit L1.
TEST(FastWeightShapes, SeveralValueBlocks) {
  const int64_t dims[][2] = {{12, 70}, {20, 128}, {33, 130}, {256, 64}};
  for (const auto& dim : dims) {
    for (const UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta}) {
      SCOPED_TRACE("d_key " + std::to_string(dim[0]) + " d_value " + std::to_string(dim[1]) +
                   (rule == UpdateRule::Delta ? " delta" : " sum"));
      const Problem p = make_problem(rule, 2, 37, dim[0], dim[1], true, true, 70 + static_cast<uint64_t>(dim[1]));
      const RefForward ref = reference_forward(p);
      const Grads ref_g = reference_backward(p, ref, true, true);
      CpuBackend<double> be(2);
      const Inputs<double> in(p);
      CpuBackend<float> bf(2);
      const Inputs<float> inf(p);
      for (const Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
        const Outputs<double> fwd = run_forward(be, p, in, algo, 16);
        expect_forward_near(fwd, ref, true, 1e-10);
        expect_grads_near(run_backward(be, p, in, fwd, algo, 16), ref_g, 1e-10);
        const Outputs<float> fwdf = run_forward(bf, p, inf, algo, 16);
        expect_forward_near(fwdf, ref, true, 1e-4);
        expect_grads_near(run_backward(bf, p, inf, fwdf, algo, 16), ref_g, 1e-4);
      }
    }
  }
}

TEST(FastWeightFloat, MatchesDoubleReference) {
  for (const UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta}) {
    for (const int64_t steps : {5, 67, 200}) {
      const Problem p = make_problem(rule, 3, steps, 12, 7, true, true, 55 + static_cast<uint64_t>(steps));
      const RefForward ref = reference_forward(p);
      const Grads ref_g = reference_backward(p, ref, true, true);
      CpuBackend<float> be(2);
      const Inputs<float> in(p);
      for (const Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
        SCOPED_TRACE("T=" + std::to_string(steps) + (algo == Algorithm::Chunked ? " chunked" : " recurrent"));
        const Outputs<float> fwd = run_forward(be, p, in, algo, 16);
        expect_forward_near(fwd, ref, true, 1e-4);
        expect_grads_near(run_backward(be, p, in, fwd, algo, 16), ref_g, 1e-4);
      }
    }
  }
}

// L2-normalises every key row.
void normalize_keys(Vec& k, int64_t d) {
  for (size_t r = 0; r < k.size() / static_cast<size_t>(d); ++r) {
    double n = 0.0;
    for (int64_t j = 0; j < d; ++j) n += k[r * d + j] * k[r * d + j];
    n = std::sqrt(n);
    for (int64_t j = 0; j < d; ++j) k[r * d + j] /= n;
  }
}

// In float over 2048 steps the backward's reconstruction W_{t-1} = W_t - u_t k_t^T
// accumulates rounding error; with normalised keys it stays small. Both float
// algorithms are compared with the double reference and with each other. The
// largest error observed (relative to the largest reference magnitude) is
// 1.5e-6; the tolerance 2e-5 leaves a 10x margin.
TEST(FastWeightLong, FloatRecurrentAndChunkedAgreeOverLongSequence) {
  const double tol = 2e-5;
  for (const UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta}) {
    SCOPED_TRACE(rule == UpdateRule::Delta ? "delta" : "sum");
    Problem p = make_problem(rule, 2, 2048, 32, 32, true, true, 2048, 0.0, 1.0);
    normalize_keys(p.k, 32);
    normalize_keys(p.q, 32);
    if (rule == UpdateRule::Sum) {
      // The sum rule's state grows like sqrt(T); keep its magnitude O(1).
      for (double& x : p.v) x *= 0.05;
    }
    const RefForward ref = reference_forward(p);
    const Grads ref_g = reference_backward(p, ref, true, true);
    CpuBackend<float> be(2);
    const Inputs<float> in(p);
    const Outputs<float> fr = run_forward(be, p, in, Algorithm::Recurrent, 0);
    const Outputs<float> fc = run_forward(be, p, in, Algorithm::Chunked, 64);
    expect_forward_near(fr, ref, true, tol);
    expect_forward_near(fc, ref, true, tol);
    const BackendGrads<float> gr = run_backward(be, p, in, fr, Algorithm::Recurrent, 0);
    const BackendGrads<float> gc = run_backward(be, p, in, fc, Algorithm::Chunked, 64);
    expect_grads_near(gr, ref_g, tol);
    expect_grads_near(gc, ref_g, tol);
    EXPECT_VEC_NEAR(gc.dk, to_double(gr.dk), tol);
    EXPECT_VEC_NEAR(gc.dv, to_double(gr.dv), tol);
    EXPECT_VEC_NEAR(gc.dq, to_double(gr.dq), tol);
    EXPECT_VEC_NEAR(gc.dstate, to_double(gr.dstate), tol);
  }
}

TEST(FastWeightThreads, ResultsIndependentOfThreadCount) {
  for (const Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
    const Problem p = make_problem(UpdateRule::Delta, 7, 200, 16, 16, true, true, 8);
    const Inputs<double> in(p);
    CpuBackend<double> one(1), three(3);
    const Outputs<double> f1 = run_forward(one, p, in, algo, 0);
    const Outputs<double> f3 = run_forward(three, p, in, algo, 0);
    EXPECT_EQ(f1.out, f3.out);
    EXPECT_EQ(f1.u, f3.u);
    EXPECT_EQ(f1.state_out, f3.state_out);
    const BackendGrads<double> g1 = run_backward(one, p, in, f1, algo, 0);
    const BackendGrads<double> g3 = run_backward(three, p, in, f1, algo, 0);
    EXPECT_EQ(g1.dq, g3.dq);
    EXPECT_EQ(g1.dk, g3.dk);
    EXPECT_EQ(g1.dv, g3.dv);
    EXPECT_EQ(g1.dbeta, g3.dbeta);
    EXPECT_EQ(g1.dstate, g3.dstate);
  }
}

TEST(FastWeightEdgeCases, ZeroStepsPassTheStateThrough) {
  for (const Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
    const Problem p = make_problem(UpdateRule::Delta, 2, 0, 4, 3, true, true, 1);
    CpuBackend<double> be(2);
    const Inputs<double> in(p);
    const Outputs<double> f = run_forward(be, p, in, algo, 0);
    EXPECT_EQ(f.state_out, p.state_in);
    const BackendGrads<double> g = run_backward(be, p, in, f, algo, 0);
    EXPECT_EQ(g.dstate, p.r2);

    // Without a state the initial state is zero, and without d_state_out its gradient is zero.
    const Problem p0 = make_problem(UpdateRule::Delta, 2, 0, 4, 3, true, false, 1);
    const Inputs<double> in0(p0);
    const Outputs<double> f0 = run_forward(be, p0, in0, algo, 0);
    EXPECT_EQ(f0.state_out, Vec(24, 0.0));
    EXPECT_EQ(run_backward(be, p0, in0, f0, algo, 0, true, false).dstate, Vec(24, 0.0));
  }
}

// Both algorithms save the same states (W before steps 0, L, 2L, ...; the
// first is state_in), and a backward without them (every state rebuilt from
// state_out) gives the same gradients in double.
TEST(FastWeightSavedStates, BothAlgorithmsSaveTheSameStates) {
  for (const UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta}) {
    const Problem p = make_problem(rule, 2, 37, 6, 5, true, true, 4);
    CpuBackend<double> be(2);
    const Inputs<double> in(p);
    const Outputs<double> fr = run_forward(be, p, in, Algorithm::Recurrent, 8);
    const Outputs<double> fc = run_forward(be, p, in, Algorithm::Chunked, 8);
    ASSERT_EQ(fr.interval, 8);
    ASSERT_EQ(fr.saved.size(), size_t(2 * 5 * 6 * 5));
    EXPECT_VEC_NEAR(fr.saved, fc.saved, 1e-12);
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t e = 0; e < 30; ++e) EXPECT_EQ(fr.saved[size_t(s * 5 * 30 + e)], p.state_in[size_t(s * 30 + e)]);
    for (const Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
      const BackendGrads<double> with = run_backward(be, p, in, fr, algo, 8);
      const BackendGrads<double> without = run_backward(be, p, in, fr, algo, 8, true, true, false);
      const Vec dk(without.dk.begin(), without.dk.end()), dq(without.dq.begin(), without.dq.end());
      const Vec dst(without.dstate.begin(), without.dstate.end());
      EXPECT_VEC_NEAR(with.dk, dk, 1e-12);
      EXPECT_VEC_NEAR(with.dq, dq, 1e-12);
      EXPECT_VEC_NEAR(with.dstate, dst, 1e-12);
    }
  }
}

// The recurrent backward reads the forward's own states, bit for bit, also
// across the sub-blocks in which it recomputes them (d_key 256 x d_value 20 in
// float, a 32 KiB slice: sub-blocks of 7, 7 and 2 steps per interval of 16, and
// a short last interval): with
// d_out one-hot at (t0, row) and no state gradient, dq_t0 = W_t0^T d_out_t0 is
// row `row` of W_t0, which the forward over the first t0 + 1 steps returns
// as its final state. Rebuilding W_t0 by subtraction would miss by rounding.
TEST(FastWeightSavedStates, RecurrentBackwardReadsTheForwardsStatesExactly) {
  const int64_t T = 40, dk = 256, dv = 20, row = 7;
  for (const UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta}) {
    const Problem p = make_problem(rule, 1, T, dk, dv, true, true, 12);
    CpuBackend<float> be(1);
    Inputs<float> in(p);
    const Outputs<float> fwd = run_forward(be, p, in, Algorithm::Recurrent, 16);
    for (int64_t t0 = 0; t0 < T; ++t0) {
      std::fill(in.r1.begin(), in.r1.end(), 0.0f);
      in.r1[size_t(t0 * dv + row)] = 1.0f;
      const BackendGrads<float> g = run_backward(be, p, in, fwd, Algorithm::Recurrent, 16, true, false);
      Problem prefix = p;
      prefix.shape.steps = t0 + 1;
      const Outputs<float> pre = run_forward(be, prefix, in, Algorithm::Recurrent, 16);
      int64_t mismatches = 0;
      for (int64_t j = 0; j < dk; ++j) mismatches += g.dq[size_t(t0 * dk + j)] != pre.state_out[size_t(row * dk + j)];
      EXPECT_EQ(mismatches, 0) << "t0 = " << t0 << (rule == UpdateRule::Delta ? " delta" : " sum");
    }
  }
}

TEST(FastWeightEdgeCases, NoStreamsIsANoOp) {
  CpuBackend<double> be(2);
  const FastWeightShape shape{0, 5, 4, 3};
  be.fast_weight_forward(UpdateRule::Delta, Algorithm::Chunked, 0, shape, nullptr, nullptr, nullptr, nullptr,
                         nullptr, nullptr, nullptr, nullptr);
  be.fast_weight_backward(UpdateRule::Delta, Algorithm::Recurrent, 0, shape, nullptr, nullptr, nullptr, nullptr,
                          nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  SUCCEED();
}

TEST(FastWeightEdgeCases, StateOutMayAliasStateIn) {
  for (const Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
    const Problem p = make_problem(UpdateRule::Delta, 3, 20, 6, 5, true, true, 4);
    const RefForward ref = reference_forward(p);
    CpuBackend<double> be(2);
    const Inputs<double> in(p);
    Vec state = p.state_in, out(ref.out.size()), u(ref.u.size());
    be.fast_weight_forward(p.rule, algo, 8, p.shape, in.q.data(), in.k.data(), in.v.data(), in.beta.data(),
                           state.data(), out.data(), u.data(), state.data());
    EXPECT_VEC_NEAR(state, ref.state_out, 1e-12);
    EXPECT_VEC_NEAR(out, ref.out, 1e-12);
  }
}

TEST(FastWeightAlgorithmChoice, FollowsTheMeasuredRule) {
  for (const UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta}) {
    // Small states and very short calls run the recurrence; large states the chunked form.
    EXPECT_EQ(CpuBackend<float>::choose_algorithm(rule, {8, 2048, 64, 64}), Algorithm::Recurrent);
    EXPECT_EQ(CpuBackend<float>::choose_algorithm(rule, {8, 1, 256, 256}), Algorithm::Recurrent);
    EXPECT_EQ(CpuBackend<float>::choose_algorithm(rule, {8, 2048, 128, 128}), Algorithm::Chunked);
    EXPECT_EQ(CpuBackend<float>::choose_algorithm(rule, {8, 256, 256, 64}), Algorithm::Chunked);
  }
  for (const int64_t d : {1, 7, 16, 64, 128, 512}) {
    const int64_t c = CpuBackend<float>::default_chunk_size({4, 1024, d, d});
    EXPECT_GE(c, 1);
    EXPECT_LE(c, 256);
  }
}

}  // namespace
}  // namespace fwp
