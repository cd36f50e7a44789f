// Accuracy of float32 gradients on long sequences (a measurement program, not a
// test). For every update rule x feature map x normalisation x algorithm and
// T = 256 .. 65,536 (capped by --max-T) it runs one forward + backward of a
// FastWeightLayer (d_model 32, H 2, d_head 16, batch 1, default init) in
//   - float64 (the CPU backend in double): the reference,
//   - float32 (the CPU backend in float): what is measured,
//   - float32 with the recurrence and the attention normalisation replaced by a
//     plain step-by-step loop that keeps every state (the yardstick: no state
//     is ever rebuilt),
// and prints, relative to the float64 result (max |error| / max |reference|):
// dx at the first 64 positions and the worst parameter gradient, for the layer
// and for the plain loop, and the ratio layer / plain.
//
// Usage: fwp_bench_grad_accuracy [--max-T N] [--min-T N] [--rule sum|delta]
//        [--map elu|dpfp|favor] [--norm none|sum|attn|both] [--algo recurrent|chunked]
//        [--seed N]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/rng.h"
#include "nn/fast_weight_layer.h"

namespace fwp {
namespace {

// A CPU backend whose fast-weight and attention-normalisation ops are plain
// per-step loops in T that keep (recompute bit-identically) every state W_t,
// z_t. Everything else is delegated to the library's CPU backend.
template <typename T>
class PlainBackend final : public Backend<T> {
 public:
  PlainBackend() : in_(make_cpu_backend<T>(1)) {}
  Device device() const override { return Device::Cpu; }

  T* allocate(int64_t n) override { return in_->allocate(n); }
  void deallocate(T* p) noexcept override { in_->deallocate(p); }
  int32_t* allocate_int(int64_t n) override { return in_->allocate_int(n); }
  void deallocate_int(int32_t* p) noexcept override { in_->deallocate_int(p); }
  void upload(T* d, const T* s, int64_t n) override { in_->upload(d, s, n); }
  void download(T* d, const T* s, int64_t n) override { in_->download(d, s, n); }
  void upload_int(int32_t* d, const int32_t* s, int64_t n) override { in_->upload_int(d, s, n); }
  void copy(T* d, const T* s, int64_t n) override { in_->copy(d, s, n); }
  void fill(T* d, T v, int64_t n) override { in_->fill(d, v, n); }
  void synchronize() override {}
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
            int64_t ldb, T beta, T* C, int64_t ldc) override {
    in_->gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  void add_bias(T* y, const T* b, int64_t r, int64_t c) override { in_->add_bias(y, b, r, c); }
  void bias_grad_accumulate(T* db, const T* dy, int64_t r, int64_t c) override {
    in_->bias_grad_accumulate(db, dy, r, c);
  }
  void axpy(int64_t n, T a, const T* x, T* y) override { in_->axpy(n, a, x, y); }
  void scale(int64_t n, T a, T* x) override { in_->scale(n, a, x); }
  void split_heads(const T* i, T* o, int64_t B, int64_t T_, int64_t H, int64_t D) override {
    in_->split_heads(i, o, B, T_, H, D);
  }
  void merge_heads(const T* i, T* o, int64_t B, int64_t T_, int64_t H, int64_t D) override {
    in_->merge_heads(i, o, B, T_, H, D);
  }
  void sigmoid_forward(const T* x, T* y, int64_t n) override { in_->sigmoid_forward(x, y, n); }
  void sigmoid_backward(const T* y, const T* dy, T* dx, int64_t n) override { in_->sigmoid_backward(y, dy, dx, n); }
  void feature_map_forward(const FeatureMapSpec& s, const T* f, const T* x, T* phi, int64_t rows) override {
    in_->feature_map_forward(s, f, x, phi, rows);
  }
  void feature_map_backward(const FeatureMapSpec& s, const T* f, const T* x, const T* phi, const T* dphi, T* dx,
                            int64_t rows) override {
    in_->feature_map_backward(s, f, x, phi, dphi, dx, rows);
  }
  void sum_normalize_forward(const T* phi, T* out, int64_t rows, int64_t d, T eps) override {
    in_->sum_normalize_forward(phi, out, rows, d, eps);
  }
  void sum_normalize_backward(const T* phi, const T* dout, T* dphi, int64_t rows, int64_t d, T eps) override {
    in_->sum_normalize_backward(phi, dout, dphi, rows, d, eps);
  }

  // The plain loop saves no states for the backward (it recomputes its own).
  int64_t fast_weight_state_interval(const FastWeightShape&, int64_t) override { return 256; }

  // The plain recurrence. The forward remembers its initial state; the
  // backward recomputes the states per segment of kSeg steps from saved ones
  // with the same arithmetic, i.e. it sees exactly the forward's W_t.
  void fast_weight_forward(UpdateRule rule, Algorithm, int64_t, const FastWeightShape& sh, const T* q, const T* k,
                           const T* v, const T* beta, const T* state_in, T* out, T* u, T* state_out, T*) override {
    const int64_t n = sh.d_key * sh.d_value;
    w0_.assign(static_cast<size_t>(sh.streams * n), T(0));
    if (state_in) std::copy(state_in, state_in + sh.streams * n, w0_.begin());
    for (int64_t s = 0; s < sh.streams; ++s) {
      std::vector<T> W(w0_.begin() + s * n, w0_.begin() + (s + 1) * n);
      for (int64_t t = 0; t < sh.steps; ++t) step(rule, sh, s, t, q, k, v, beta, W.data(), out, u);
      std::copy(W.begin(), W.end(), state_out + s * n);
    }
  }

  void fast_weight_backward(UpdateRule rule, Algorithm, int64_t, const FastWeightShape& sh, const T* q, const T* k,
                            const T* v, const T* beta, const T* u, const T*, const T* d_out, const T* d_state_out,
                            T* dq, T* dk, T* dv, T* dbeta, T* d_state_in, const T*) override {
    const int64_t dkk = sh.d_key, dvv = sh.d_value, n = dkk * dvv, Tn = sh.steps;
    const bool delta = rule == UpdateRule::Delta;
    constexpr int64_t kSeg = 256;
    std::vector<T> scratch_out(static_cast<size_t>(dvv)), scratch_u(static_cast<size_t>(sh.streams * Tn * dvv));
    for (int64_t s = 0; s < sh.streams; ++s) {
      // Saved states at every segment start.
      const int64_t nseg = (Tn + kSeg - 1) / kSeg;
      std::vector<T> saved(static_cast<size_t>(nseg * n));
      std::vector<T> W(w0_.begin() + s * n, w0_.begin() + (s + 1) * n);
      for (int64_t t = 0; t < Tn; ++t) {
        if (t % kSeg == 0) std::copy(W.begin(), W.end(), saved.begin() + (t / kSeg) * n);
        step(rule, sh, s, t, q, k, v, beta, W.data(), nullptr, scratch_u.data());
      }
      std::vector<T> G(static_cast<size_t>(n), T(0));
      if (d_state_out) std::copy(d_state_out + s * n, d_state_out + (s + 1) * n, G.begin());
      std::vector<T> states(static_cast<size_t>((kSeg + 1) * n));  // states[i] = W before step t0 + i
      std::vector<T> du(static_cast<size_t>(dvv)), c(static_cast<size_t>(dvv));
      for (int64_t seg = nseg - 1; seg >= 0; --seg) {
        const int64_t t0 = seg * kSeg, t1 = std::min(Tn, t0 + kSeg);
        std::copy(saved.begin() + seg * n, saved.begin() + (seg + 1) * n, states.begin());
        for (int64_t t = t0; t < t1; ++t) {
          std::copy(states.begin() + (t - t0) * n, states.begin() + (t - t0 + 1) * n, states.begin() + (t - t0 + 1) * n);
          step(rule, sh, s, t, q, k, v, beta, states.data() + (t - t0 + 1) * n, nullptr, scratch_u.data());
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const T* Wt = states.data() + (t - t0 + 1) * n;
          const T* Wp = states.data() + (t - t0) * n;
          const int64_t rk = (s * Tn + t) * dkk, rv = (s * Tn + t) * dvv;
          const T* kt = k + rk;
          const T* ut = u + rv;
          if (q) {
            for (int64_t j = 0; j < dkk; ++j) dq[rk + j] = T(0);
            if (d_out) {
              for (int64_t i = 0; i < dvv; ++i)
                for (int64_t j = 0; j < dkk; ++j) {
                  dq[rk + j] += Wt[i * dkk + j] * d_out[rv + i];
                  G[i * dkk + j] += d_out[rv + i] * q[rk + j];
                }
            }
          }
          for (int64_t j = 0; j < dkk; ++j) dk[rk + j] = T(0);
          for (int64_t i = 0; i < dvv; ++i) {
            T acc = 0;
            for (int64_t j = 0; j < dkk; ++j) {
              acc += G[i * dkk + j] * kt[j];
              dk[rk + j] += G[i * dkk + j] * ut[i];
            }
            du[i] = acc;
          }
          if (!delta) {
            for (int64_t i = 0; i < dvv; ++i) dv[rv + i] = du[i];
            continue;
          }
          const T b = beta[s * Tn + t];
          T db = 0;
          for (int64_t i = 0; i < dvv; ++i) {
            T vbar = 0;
            for (int64_t j = 0; j < dkk; ++j) vbar += Wp[i * dkk + j] * kt[j];
            db += du[i] * (v[rv + i] - vbar);
            dv[rv + i] = b * du[i];
            c[i] = -b * du[i];
          }
          dbeta[s * Tn + t] = db;
          for (int64_t i = 0; i < dvv; ++i)
            for (int64_t j = 0; j < dkk; ++j) {
              dk[rk + j] += Wp[i * dkk + j] * c[i];
              G[i * dkk + j] += c[i] * kt[j];
            }
        }
      }
      if (d_state_in) std::copy(G.begin(), G.end(), d_state_in + s * n);
    }
  }

  void attn_norm_forward(const FastWeightShape& sh, const T* q, const T* k, const T* z_in, const T* o, T eps, T* y,
                         T* denom, T* z_out) override {
    const int64_t dkk = sh.d_key, dvv = sh.d_value;
    for (int64_t s = 0; s < sh.streams; ++s) {
      std::vector<T> z(static_cast<size_t>(dkk), T(0));
      if (z_in) std::copy(z_in + s * dkk, z_in + (s + 1) * dkk, z.begin());
      for (int64_t t = 0; t < sh.steps; ++t) {
        const int64_t r = s * sh.steps + t;
        T den = 0;
        for (int64_t j = 0; j < dkk; ++j) {
          z[j] += k[r * dkk + j];
          den += q[r * dkk + j] * z[j];
        }
        den += eps;
        denom[r] = den;
        for (int64_t i = 0; i < dvv; ++i) y[r * dvv + i] = o[r * dvv + i] / den;
      }
      if (z_out) std::copy(z.begin(), z.end(), z_out + s * dkk);
    }
  }

  void attn_norm_backward(const FastWeightShape& sh, const T* q, const T* k, const T* z_in, const T* y,
                          const T* denom, const T* dy, T* d_o, T* dq, T* dk, T* d_z_in) override {
    const int64_t dkk = sh.d_key, dvv = sh.d_value, Tn = sh.steps;
    for (int64_t s = 0; s < sh.streams; ++s) {
      std::vector<T> zs(static_cast<size_t>(Tn * dkk)), z(static_cast<size_t>(dkk), T(0)), g(static_cast<size_t>(Tn));
      if (z_in) std::copy(z_in + s * dkk, z_in + (s + 1) * dkk, z.begin());
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t r = s * Tn + t;
        for (int64_t j = 0; j < dkk; ++j) zs[t * dkk + j] = (z[j] += k[r * dkk + j]);
        T gy = 0;
        for (int64_t i = 0; i < dvv; ++i) gy += dy[r * dvv + i] * y[r * dvv + i];
        g[t] = -gy / denom[r];
        for (int64_t i = 0; i < dvv; ++i) d_o[r * dvv + i] = dy[r * dvv + i] / denom[r];
      }
      std::vector<T> acc(static_cast<size_t>(dkk), T(0));
      for (int64_t t = Tn - 1; t >= 0; --t) {
        const int64_t r = s * Tn + t;
        for (int64_t j = 0; j < dkk; ++j) {
          acc[j] += g[t] * q[r * dkk + j];
          dk[r * dkk + j] = acc[j];
          dq[r * dkk + j] = g[t] * zs[t * dkk + j];
        }
      }
      if (d_z_in) std::copy(acc.begin(), acc.end(), d_z_in + s * dkk);
    }
  }

 private:
  void step(UpdateRule rule, const FastWeightShape& sh, int64_t s, int64_t t, const T* q, const T* k, const T* v,
            const T* beta, T* W, T* out, T* u) const {
    const int64_t dkk = sh.d_key, dvv = sh.d_value;
    const int64_t rk = (s * sh.steps + t) * dkk, rv = (s * sh.steps + t) * dvv;
    for (int64_t i = 0; i < dvv; ++i) {
      T ui = v[rv + i];
      if (rule == UpdateRule::Delta) {
        T vbar = 0;
        for (int64_t j = 0; j < dkk; ++j) vbar += W[i * dkk + j] * k[rk + j];
        ui = beta[s * sh.steps + t] * (ui - vbar);
      }
      u[rv + i] = ui;
      T o = 0;
      for (int64_t j = 0; j < dkk; ++j) {
        W[i * dkk + j] += ui * k[rk + j];
        if (q) o += W[i * dkk + j] * q[rk + j];
      }
      if (q && out) out[rv + i] = o;
    }
  }

  std::shared_ptr<Backend<T>> in_;
  std::vector<T> w0_;
};

struct Case {
  UpdateRule rule;
  FeatureMap map;
  bool sum_norm, attn_norm;
  Algorithm algo;
};

std::string case_name(const Case& c) {
  std::string n = c.rule == UpdateRule::Delta ? "delta" : "sum";
  n += c.map == FeatureMap::Elu ? " elu" : c.map == FeatureMap::Dpfp ? " dpfp" : " favor";
  n += c.sum_norm && c.attn_norm ? " sum+attn" : c.sum_norm ? " sum" : c.attn_norm ? " attn" : " none";
  n += c.algo == Algorithm::Chunked ? " chunked" : " recurrent";
  return n;
}

struct Result {
  std::vector<double> dx;                    // first positions only
  std::vector<std::vector<double>> params;   // every parameter gradient
};

template <typename T>
Result run(FastWeightLayer<T>& layer, const std::vector<double>& x, const std::vector<double>& dy, int64_t Tn,
           int64_t D, int64_t first) {
  std::vector<T> xt(x.begin(), x.end()), dyt(dy.begin(), dy.end()), y(x.size()), dx(x.size());
  layer.zero_grad();
  layer.forward(xt.data(), 1, Tn, y.data());
  layer.backward(dyt.data(), 1, Tn, dx.data());
  Result r;
  r.dx.assign(dx.begin(), dx.begin() + std::min(first, Tn) * D);
  for (int64_t i = 0; i < layer.params().size(); ++i) {
    const std::vector<T> g = layer.params()[i].grad.to_host();
    r.params.emplace_back(g.begin(), g.end());
  }
  return r;
}

// NaN when either side is not finite (the delta rule without sum
// normalisation diverges with elu features, in float64 too).
double rel_err(const std::vector<double>& a, const std::vector<double>& ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(ref[i])) return NAN;
    e = std::max(e, std::abs(a[i] - ref[i]));
    m = std::max(m, std::abs(ref[i]));
  }
  return m > 0 ? e / m : e;
}

double worst_param(const Result& a, const Result& ref) {
  double w = 0;
  for (size_t i = 0; i < a.params.size(); ++i) {
    const double e = rel_err(a.params[i], ref.params[i]);
    if (std::isnan(e)) return NAN;
    w = std::max(w, e);
  }
  return w;
}

}  // namespace
}  // namespace fwp

int main(int argc, char** argv) {
  using namespace fwp;
  int64_t max_T = 65536, min_T = 256;
  std::string rule_f, map_f, norm_f, algo_f;
  uint64_t seed = 1;
  int64_t first = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--max-T") max_T = std::atoll(v.c_str());
    else if (a == "--min-T") min_T = std::atoll(v.c_str());
    else if (a == "--rule") rule_f = v;
    else if (a == "--map") map_f = v;
    else if (a == "--norm") norm_f = v;
    else if (a == "--algo") algo_f = v;
    else if (a == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--first") first = std::atoll(v.c_str());
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const int64_t D = 32, H = 2, dh = 16;
  std::printf("d_model %lld, H %lld, d_head %lld, batch 1, default init, seed %llu; errors are max|err|/max|ref| "
              "vs float64; dx over the first %lld positions\n",
              (long long)D, (long long)H, (long long)dh, (unsigned long long)seed, (long long)first);
  std::printf("%-28s %7s %10s %10s %10s %10s %10s %8s\n", "case", "T", "dx layer", "dx plain", "ratio",
              "par layer", "par plain", "ratio");
  for (UpdateRule rule : {UpdateRule::Sum, UpdateRule::Delta}) {
    if (!rule_f.empty() && rule_f != (rule == UpdateRule::Sum ? "sum" : "delta")) continue;
    for (FeatureMap map : {FeatureMap::Elu, FeatureMap::Dpfp, FeatureMap::Favor}) {
      const char* mn = map == FeatureMap::Elu ? "elu" : map == FeatureMap::Dpfp ? "dpfp" : "favor";
      if (!map_f.empty() && map_f != mn) continue;
      for (int norm = 0; norm < 4; ++norm) {
        const char* nn[] = {"none", "sum", "attn", "both"};
        if (!norm_f.empty() && norm_f != nn[norm]) continue;
        for (Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
          if (!algo_f.empty() && algo_f != (algo == Algorithm::Chunked ? "chunked" : "recurrent")) continue;
          const Case c{rule, map, norm == 1 || norm == 3, norm >= 2, algo};
          FastWeightLayerConfig cfg;
          cfg.d_model = D;
          cfg.num_heads = H;
          cfg.d_head = dh;
          cfg.feature_map = map;
          cfg.favor_redraw = false;
          cfg.update_rule = rule;
          cfg.sum_normalize = c.sum_norm;
          cfg.attn_normalize = c.attn_norm;
          cfg.algorithm = algo;
          for (int64_t Tn = min_T; Tn <= max_T; Tn *= 4) {
            FastWeightLayer<double> ld(cfg, make_cpu_backend<double>(1), Rng(seed));
            FastWeightLayer<float> lf(cfg, make_cpu_backend<float>(1), Rng(seed));
            FastWeightLayer<float> lp(cfg, std::make_shared<PlainBackend<float>>(), Rng(seed));
            for (int64_t i = 0; i < ld.params().size(); ++i) {
              const std::vector<double> p = ld.params()[i].value.to_host();
              const std::vector<float> pf(p.begin(), p.end());
              lf.params()[i].value.from_host(pf.data(), (int64_t)pf.size());
              lp.params()[i].value.from_host(pf.data(), (int64_t)pf.size());
            }
            // Inputs are float values, so all three runs see the same x and dy.
            Rng rng(seed * 1000 + 7);
            std::vector<double> x(static_cast<size_t>(Tn * D)), dy(x.size());
            for (double& e : x) e = static_cast<float>(rng.normal());
            for (double& e : dy) e = static_cast<float>(rng.normal());
            const Result rd = run(ld, x, dy, Tn, D, first);
            const Result rf = run(lf, x, dy, Tn, D, first);
            const Result rp = run(lp, x, dy, Tn, D, first);
            const double ex = rel_err(rf.dx, rd.dx), px = rel_err(rp.dx, rd.dx);
            const double ep = worst_param(rf, rd), pp = worst_param(rp, rd);
            std::printf("%-28s %7lld %10.2e %10.2e %10.1f %10.2e %10.2e %8.1f\n", case_name(c).c_str(), (long long)Tn,
                        ex, px, ex / px, ep, pp, ep / pp);
            if (std::getenv("FWP_BENCH_WHERE")) {
              // Where the layer's dx error is largest (position, feature), for diagnosis.
              size_t at = 0;
              for (size_t i = 0; i < rf.dx.size(); ++i)
                if (std::abs(rf.dx[i] - rd.dx[i]) > std::abs(rf.dx[at] - rd.dx[at])) at = i;
              std::printf("    worst dx at position %lld: float %.6e double %.6e plain %.6e\n",
                          (long long)(at / D), rf.dx[at], rd.dx[at], rp.dx[at]);
            }
            std::fflush(stdout);
          }
        }
      }
    }
  }
  return 0;
}
