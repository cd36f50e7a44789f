// Straightforward double-precision references for the CPU ops, written as
// plain loops that follow the defining formulas (no blocking, no tricks), and
// a central-difference gradient helper. Used by tests/cpp/test_ops_*.cpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "core/rng.h"

namespace fwp {
namespace opsref {

using Vec = std::vector<double>;

inline Vec normal_vector(Rng& rng, int64_t n, double scale = 1.0) {
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

inline Vec uniform_vector(Rng& rng, int64_t n, double lo, double hi) {
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = lo + (hi - lo) * rng.uniform();
  return v;
}

// Largest |a_i - b_i|.
inline double max_abs_diff(const Vec& a, const Vec& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return a.size() == b.size() ? m : std::numeric_limits<double>::infinity();
}

inline double max_abs(const Vec& a) {
  double m = 0.0;
  for (double x : a) m = std::max(m, std::fabs(x));
  return m;
}

// C = alpha op(A) op(B) + beta C, row-major; beta == 0 ignores C's contents.
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                 const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < K; ++p) {
        const double a = ta ? A[p * lda + i] : A[i * lda + p];
        const double b = tb ? B[j * ldb + p] : B[p * ldb + j];
        acc += a * b;
      }
      C[i * ldc + j] = alpha * acc + (beta == 0.0 ? 0.0 : beta * C[i * ldc + j]);
    }
  }
}

// ---- feature maps, one row x of length d ----------------------------------------------

inline Vec elu_plus_one(const Vec& x) {
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] > 0 ? x[i] + 1.0 : std::exp(x[i]);
  return y;
}

// R: [m, d] row-major.
inline Vec favor(const Vec& R, int64_t m, const Vec& x) {
  const int64_t d = static_cast<int64_t>(x.size());
  double sq = 0.0;
  for (double v : x) sq += v * v;
  Vec phi(static_cast<size_t>(2 * m));
  const double c = 1.0 / std::sqrt(2.0 * double(m));
  for (int64_t i = 0; i < m; ++i) {
    double r = 0.0;
    for (int64_t k = 0; k < d; ++k) r += R[i * d + k] * x[k];
    phi[i] = c * std::exp(r - 0.5 * sq);
    phi[m + i] = c * std::exp(-r - 0.5 * sq);
  }
  return phi;
}

// torch.roll(z, shifts=j): out[i] = z[(i - j) mod n].
inline Vec roll(const Vec& z, int64_t j) {
  const int64_t n = static_cast<int64_t>(z.size());
  Vec out(z.size());
  for (int64_t i = 0; i < n; ++i) out[i] = z[((i - j) % n + n) % n];
  return out;
}

inline Vec dpfp(const Vec& x, int64_t nu) {
  const size_t d = x.size();
  Vec z(2 * d);
  for (size_t i = 0; i < d; ++i) {
    z[i] = std::max(x[i], 0.0);
    z[d + i] = std::max(-x[i], 0.0);
  }
  Vec phi;
  for (int64_t j = 1; j <= nu; ++j) {
    const Vec r = roll(z, j);
    for (size_t i = 0; i < z.size(); ++i) phi.push_back(z[i] * r[i]);
  }
  return phi;
}

inline Vec sum_normalize(const Vec& phi, double eps) {
  double s = eps;
  for (double v : phi) s += v;
  Vec out(phi.size());
  for (size_t i = 0; i < phi.size(); ++i) out[i] = phi[i] / s;
  return out;
}

// ---- attention normalisation: z_t = z_in + sum_{j<=t} k_j, y_t = o_t / (q_t . z_t + eps) --------
inline void attn_norm(int64_t streams, int64_t steps, int64_t dk, int64_t dv, const Vec& q, const Vec& k,
                      const Vec* z_in, const Vec& o, double eps, Vec& y, Vec& denom, Vec& z_out) {
  y.assign(static_cast<size_t>(streams * steps * dv), 0.0);
  denom.assign(static_cast<size_t>(streams * steps), 0.0);
  z_out.assign(static_cast<size_t>(streams * dk), 0.0);
  for (int64_t s = 0; s < streams; ++s) {
    for (int64_t t = 0; t < steps; ++t) {
      double den = eps;
      for (int64_t i = 0; i < dk; ++i) {
        double z = z_in ? (*z_in)[s * dk + i] : 0.0;
        for (int64_t j = 0; j <= t; ++j) z += k[(s * steps + j) * dk + i];
        den += q[(s * steps + t) * dk + i] * z;
        if (t == steps - 1) z_out[s * dk + i] = z;
      }
      denom[s * steps + t] = den;
      for (int64_t c = 0; c < dv; ++c) y[(s * steps + t) * dv + c] = o[(s * steps + t) * dv + c] / den;
    }
  }
}

// ---- causal softmax attention ------------------------------------------------------------
inline void softmax_attention(int64_t streams, int64_t steps, int64_t d, const Vec& q, const Vec& k, const Vec& v,
                              double scale, Vec& out, Vec& lse) {
  out.assign(static_cast<size_t>(streams * steps * d), 0.0);
  lse.assign(static_cast<size_t>(streams * steps), 0.0);
  for (int64_t s = 0; s < streams; ++s) {
    for (int64_t i = 0; i < steps; ++i) {
      Vec score(static_cast<size_t>(i + 1));
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0.0;
        for (int64_t c = 0; c < d; ++c) dot += q[(s * steps + i) * d + c] * k[(s * steps + j) * d + c];
        score[j] = scale * dot;
      }
      const double mx = *std::max_element(score.begin(), score.end());
      double sum = 0.0;
      for (double& x : score) {
        x = std::exp(x - mx);
        sum += x;
      }
      lse[s * steps + i] = mx + std::log(sum);
      for (int64_t j = 0; j <= i; ++j) {
        for (int64_t c = 0; c < d; ++c) out[(s * steps + i) * d + c] += score[j] / sum * v[(s * steps + j) * d + c];
      }
    }
  }
}

// ---- gradient checking ---------------------------------------------------------------------
// Gradient of L(x) = sum_i w_i f(x)_i by central differences with step h.
inline Vec numeric_gradient(const std::function<Vec(const Vec&)>& f, const Vec& x, const Vec& w,
                            double h = 1e-6) {
  Vec g(x.size());
  Vec xp = x;
  for (size_t i = 0; i < x.size(); ++i) {
    const double orig = xp[i];
    xp[i] = orig + h;
    const Vec fp = f(xp);
    xp[i] = orig - h;
    const Vec fm = f(xp);
    xp[i] = orig;
    double diff = 0.0;
    for (size_t j = 0; j < w.size(); ++j) diff += w[j] * (fp[j] - fm[j]);
    g[i] = diff / (2.0 * h);
  }
  return g;
}

// Relative error of an analytic gradient against a numeric one, scaled by the
// larger of 1 and the gradient's magnitude.
inline double gradient_error(const Vec& analytic, const Vec& numeric) {
  return max_abs_diff(analytic, numeric) / std::max(1.0, max_abs(numeric));
}

}  // namespace opsref
}  // namespace fwp
