// CPU checks of the CUDA backend's arithmetic (suite CudaTiles*). The kernels
// in cuda/ do their per-element, per-row and per-tile math through the
// __host__ __device__ functions of cuda/tile_math.cuh, and the chunkwise
// algorithm is the executor-independent sequence in cuda/chunked_plan.h. Here
// both are compiled by g++ and driven the way the kernels drive them (same
// thread geometry, same tile order, cuBLAS's column-major argument
// translation), then compared with the CPU backend. What is left for the GPU
// run (test_cuda_parity.cpp) is thread mapping, shared memory and
// synchronisation.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "../../cuda/chunked_plan.h"
#include "../../cuda/tile_math.cuh"
#include "core/backend.h"
#include "core/rng.h"
#include "cuda_test_util.h"

namespace fwp {
namespace {

using cudatest::close_rel;
using cudatest::FVec;
using DVec = std::vector<double>;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::shared_ptr<Backend<double>> cpu_d() { return make_cpu_backend<double>(2); }

float* ptr_or_null(FVec& v) { return v.empty() ? nullptr : v.data(); }

// ---- a host executor for cuda/chunked_plan.h ----------------------------------------------------

// Column-major sgemm with cuBLAS's documented semantics (float accumulation,
// C not read when beta == 0).
void colmajor_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
                    const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int64_t p = 0; p < k; ++p) {
        const float a = ta ? A[p + i * lda] : A[i + p * lda];
        const float b = tb ? B[j + p * ldb] : B[p + j * ldb];
        acc += a * b;
      }
      float& c = C[i + j * ldc];
      c = beta == 0.0f ? alpha * acc : alpha * acc + beta * c;
    }
  }
}

// Runs chunked::forward / backward on the host. Scratch memory is poisoned
// with NaN so that reading anything the plan did not write shows up.
class HostExec {
 public:
  float* alloc(int64_t n) {
    blocks_.emplace_back(static_cast<size_t>(std::max<int64_t>(n, 1)), kNaN);
    return blocks_.back().data();
  }
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
            int64_t sa, const float* B, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc, int64_t sc,
            int64_t batch) {
    for (int64_t g = 0; g < batch; ++g) {
      const tile::ColMajorGemm cm = tile::to_col_major(ta, tb, M, N, K, A + g * sa, lda, B + g * sb, ldb);
      colmajor_sgemm(cm.trans_first, cm.trans_second, cm.m, cm.n, cm.k, alpha, cm.first, cm.ld_first, cm.second,
                     cm.ld_second, beta, C + g * sc, ldc);
    }
  }
  void copy(float* dst, const float* src, int64_t n) { std::memmove(dst, src, sizeof(float) * size_t(n)); }
  void zero(float* dst, int64_t n) { std::fill(dst, dst + n, 0.0f); }
  void pad_steps(const float* src, float* dst, int64_t S, int64_t T, int64_t Tp, int64_t w) {
    for (int64_t s = 0; s < S; ++s)
      for (int64_t t = 0; t < Tp; ++t)
        for (int64_t j = 0; j < w; ++j) dst[(s * Tp + t) * w + j] = t < T ? src[(s * T + t) * w + j] : 0.0f;
  }
  void unpad_steps(const float* src, float* dst, int64_t S, int64_t T, int64_t Tp, int64_t w) {
    for (int64_t s = 0; s < S; ++s)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < w; ++j) dst[(s * T + t) * w + j] = src[(s * Tp + t) * w + j];
  }
  void wy_inverse(const float* G, const float* beta, float* N, int64_t groups, int64_t C, bool scale_by_beta) {
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t j = 0; j < C; ++j)
        tile::wy_inverse_column(G + g * C * C, C, beta + g * C, C, j, scale_by_beta, N + g * C * C, C);
  }
  void mask_causal(float* P, int64_t groups, int64_t C, bool inclusive) {
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t i = 0; i < C; ++i)
        for (int64_t j = 0; j < C; ++j) {
          float& x = P[(g * C + i) * C + j];
          x = tile::causal_mask(x, i, j, inclusive);
        }
  }
  void scale_rows(const float* x, const float* beta, float* y, int64_t rows, int64_t w) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < w; ++j) y[r * w + j] = beta[r] * x[r * w + j];
  }
  void state_scan(float* H, int64_t S, int64_t n, int64_t E, const float* init, float* final_out, bool reverse,
                  bool inclusive, float sign) {
    for (int64_t s = 0; s < S; ++s)
      for (int64_t e = 0; e < E; ++e) {
        float acc = init ? init[s * E + e] : 0.0f;
        for (int64_t i = 0; i < n; ++i) {
          const int64_t c = reverse ? n - 1 - i : i;
          float& h = H[(s * n + c) * E + e];
          const float x = h;
          if (inclusive) {
            acc += sign * x;
            h = acc;
          } else {
            h = acc;
            acc += sign * x;
          }
        }
        if (final_out) final_out[s * E + e] = acc;
      }
  }
  void delta_forward_scan(const chunked::Dims& d, const float* K, const float* Wk, const float* Uv,
                          const float* state_in, float* U, float* states, float* state_out) {
    const int64_t C = d.chunk, dk = d.dk, dv = d.dv, Tp = d.padded_steps;
    std::vector<float> W(static_cast<size_t>(dv * dk));
    for (int64_t s = 0; s < d.streams; ++s) {
      for (int64_t e = 0; e < dv * dk; ++e) W[e] = state_in ? state_in[s * dv * dk + e] : 0.0f;
      for (int64_t c = 0; c < d.chunks; ++c) {
        std::copy(W.begin(), W.end(), states + (s * d.chunks + c) * dv * dk);
        const int64_t row0 = s * Tp + c * C;
        for (int64_t t = 0; t < C; ++t)
          for (int64_t i = 0; i < dv; ++i) {
            float acc = 0.0f;
            for (int64_t j = 0; j < dk; ++j) acc += Wk[(row0 + t) * dk + j] * W[i * dk + j];
            U[(row0 + t) * dv + i] = Uv[(row0 + t) * dv + i] - acc;
          }
        for (int64_t i = 0; i < dv; ++i)
          for (int64_t j = 0; j < dk; ++j) {
            float acc = 0.0f;
            for (int64_t t = 0; t < C; ++t) acc += U[(row0 + t) * dv + i] * K[(row0 + t) * dk + j];
            W[i * dk + j] += acc;
          }
      }
      std::copy(W.begin(), W.end(), state_out + s * dv * dk);
    }
  }
  void delta_backward_scan(const chunked::Dims& d, const float* K, const float* Q, const float* U, const float* dO,
                           const float* N, const float* beta, float* dU_dX, const float* state_out,
                           const float* d_state_out, float* Wst, float* dWst, float* d_state_in) {
    const int64_t C = d.chunk, dk = d.dk, dv = d.dv, Tp = d.padded_steps, E = dv * dk;
    std::vector<float> W(static_cast<size_t>(E)), dW(static_cast<size_t>(E)), dU(static_cast<size_t>(C * dv));
    for (int64_t s = 0; s < d.streams; ++s) {
      for (int64_t e = 0; e < E; ++e) {
        W[e] = state_out[s * E + e];
        dW[e] = d_state_out ? d_state_out[s * E + e] : 0.0f;
      }
      for (int64_t c = d.chunks - 1; c >= 0; --c) {
        const int64_t g = s * d.chunks + c;
        const int64_t row0 = s * Tp + c * C;
        std::copy(dW.begin(), dW.end(), dWst + g * E);
        for (int64_t i = 0; i < dv; ++i)
          for (int64_t j = 0; j < dk; ++j) {
            float acc = 0.0f;
            for (int64_t t = 0; t < C; ++t) acc += U[(row0 + t) * dv + i] * K[(row0 + t) * dk + j];
            W[i * dk + j] -= acc;
          }
        std::copy(W.begin(), W.end(), Wst + g * E);
        for (int64_t t = 0; t < C; ++t)
          for (int64_t i = 0; i < dv; ++i) {
            float acc = dU_dX[(row0 + t) * dv + i];
            for (int64_t j = 0; j < dk; ++j) acc += K[(row0 + t) * dk + j] * dW[i * dk + j];
            dU[t * dv + i] = acc;
          }
        for (int64_t t = 0; t < C; ++t)
          for (int64_t i = 0; i < dv; ++i) {
            float acc = 0.0f;
            for (int64_t r = t; r < C; ++r) acc += N[(g * C + r) * C + t] * dU[r * dv + i];
            dU_dX[(row0 + t) * dv + i] = acc;
          }
        for (int64_t i = 0; i < dv; ++i)
          for (int64_t j = 0; j < dk; ++j) {
            float acc = 0.0f;
            for (int64_t t = 0; t < C; ++t) {
              if (dO) acc += dO[(row0 + t) * dv + i] * Q[(row0 + t) * dk + j];
              acc -= beta[row0 + t] * dU_dX[(row0 + t) * dv + i] * K[(row0 + t) * dk + j];
            }
            dW[i * dk + j] += acc;
          }
      }
      if (d_state_in) std::copy(dW.begin(), dW.end(), d_state_in + s * E);
    }
  }
  void delta_beta_grad(const float* dX, const float* R, float* F, float* G_S, const float* beta, float* dbeta,
                       int64_t groups, int64_t C, int64_t dv) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* b = beta + g * C;
      float* Fg = F + g * C * C;
      float* Gg = G_S + g * C * C;
      for (int64_t t = 0; t < C; ++t) {
        float row_dot = 0.0f;
        for (int64_t i = 0; i < dv; ++i) row_dot += dX[(g * C + t) * dv + i] * R[(g * C + t) * dv + i];
        dbeta[g * C + t] = tile::wy_beta_grad(Fg + t * C, Gg + t * C, t, row_dot);
      }
      for (int64_t t = 0; t < C; ++t)
        for (int64_t s = 0; s < C; ++s) Gg[t * C + s] = tile::wy_key_sym(Fg, C, b, t, s);
    }
  }

 private:
  std::vector<std::vector<float>> blocks_;
};

// ---- inputs of one fast-weight problem ---------------------------------------------------------

struct FwProblem {
  FastWeightShape shape;
  bool delta = true;
  bool with_q = true, with_state_in = true, with_d_out = true, with_d_state_out = true;
  // > 0: the forward saves the state every save_interval steps and the backward
  // reads them (the op's `states`); 0: the backward rebuilds every state.
  int64_t save_interval = 0;
  FVec q, k, v, beta, state_in, d_out, d_state_out;
  int64_t n_states() const { return save_interval > 0 ? (shape.steps + save_interval - 1) / save_interval : 0; }
};

FwProblem make_problem(uint64_t seed, int64_t S, int64_t T, int64_t dk, int64_t dv, bool delta) {
  Rng rng(seed);
  FwProblem p;
  p.shape = {S, T, dk, dv};
  p.delta = delta;
  // Sum-normalised keys and queries (what the layers feed the delta rule).
  p.k = cudatest::simplex_rows(rng, S * T, dk);
  p.q = cudatest::simplex_rows(rng, S * T, dk);
  p.v = cudatest::normal(rng, S * T * dv);
  if (delta) p.beta = cudatest::uniform(rng, S * T, 0.05, 0.95);
  p.state_in = cudatest::normal(rng, S * dv * dk, 0.3);
  p.d_out = cudatest::normal(rng, S * T * dv);
  p.d_state_out = cudatest::normal(rng, S * dv * dk, 0.3);
  return p;
}

struct FwResult {
  FVec out, u, state_out;                    // forward
  FVec dq, dk, dv, dbeta, d_state_in;        // backward
  FVec states;                               // saved states (save_interval > 0)
};

template <typename T>
std::vector<T> conv(const FVec& v) {
  return std::vector<T>(v.begin(), v.end());
}

// The CPU backend's forward and backward in precision T.
template <typename T>
FwResult cpu_fast_weight(const FwProblem& p, Algorithm algo, int64_t chunk) {
  auto be = make_cpu_backend<T>(2);
  const auto& sh = p.shape;
  const UpdateRule rule = p.delta ? UpdateRule::Delta : UpdateRule::Sum;
  std::vector<T> q = conv<T>(p.q), k = conv<T>(p.k), v = conv<T>(p.v), beta = conv<T>(p.beta);
  std::vector<T> s_in = conv<T>(p.state_in), d_out = conv<T>(p.d_out), d_s_out = conv<T>(p.d_state_out);
  std::vector<T> out(size_t(sh.streams * sh.steps * sh.d_value)), u(out.size());
  std::vector<T> s_out(size_t(sh.streams * sh.d_key * sh.d_value));
  std::vector<T> saved(size_t(sh.streams * p.n_states()) * s_out.size() / size_t(sh.streams));
  if (p.save_interval > 0) {
    EXPECT_EQ(be->fast_weight_state_interval(sh, chunk), p.save_interval);
  }
  T* sp = p.save_interval > 0 ? saved.data() : nullptr;
  const T* qp = p.with_q ? q.data() : nullptr;
  const T* bp = p.delta ? beta.data() : nullptr;
  be->fast_weight_forward(rule, algo, chunk, sh, qp, k.data(), v.data(), bp, p.with_state_in ? s_in.data() : nullptr,
                          p.with_q ? out.data() : nullptr, u.data(), s_out.data(), sp);
  std::vector<T> dq(q.size()), dk(k.size()), dv(v.size()), db(beta.size()), dsi(s_out.size());
  be->fast_weight_backward(rule, algo, chunk, sh, qp, k.data(), v.data(), bp, u.data(), s_out.data(),
                           p.with_q && p.with_d_out ? d_out.data() : nullptr,
                           p.with_d_state_out ? d_s_out.data() : nullptr, p.with_q ? dq.data() : nullptr, dk.data(),
                           dv.data(), p.delta ? db.data() : nullptr, dsi.data(), sp);
  FwResult r;
  auto tf = [](const std::vector<T>& x) { return FVec(x.begin(), x.end()); };
  r.out = p.with_q ? tf(out) : FVec();
  r.u = tf(u);
  r.state_out = tf(s_out);
  r.dq = p.with_q ? tf(dq) : FVec();
  r.dk = tf(dk);
  r.dv = tf(dv);
  r.dbeta = p.delta ? tf(db) : FVec();
  r.d_state_in = tf(dsi);
  r.states = tf(saved);
  return r;
}

void expect_results_close(const FwResult& got, const FwResult& ref, double rtol, const char* what) {
  SCOPED_TRACE(what);
  EXPECT_TRUE(close_rel(got.out, ref.out, rtol)) << "out";
  EXPECT_TRUE(close_rel(got.u, ref.u, rtol)) << "u";
  EXPECT_TRUE(close_rel(got.state_out, ref.state_out, rtol)) << "state_out";
  EXPECT_TRUE(close_rel(got.dq, ref.dq, rtol)) << "dq";
  EXPECT_TRUE(close_rel(got.dk, ref.dk, rtol)) << "dk";
  EXPECT_TRUE(close_rel(got.dv, ref.dv, rtol)) << "dv";
  EXPECT_TRUE(close_rel(got.dbeta, ref.dbeta, rtol)) << "dbeta";
  EXPECT_TRUE(close_rel(got.d_state_in, ref.d_state_in, rtol)) << "d_state_in";
  EXPECT_TRUE(close_rel(got.states, ref.states, rtol)) << "saved states";
}

// The chunked plan on the host executor (outputs pre-filled with NaN).
FwResult plan_fast_weight(const FwProblem& p, int64_t chunk) {
  const auto& sh = p.shape;
  const chunked::Dims d = chunked::make_dims(sh, chunk);
  FwResult r;
  r.out.assign(p.with_q ? size_t(sh.streams * sh.steps * sh.d_value) : 0, kNaN);
  r.u.assign(size_t(sh.streams * sh.steps * sh.d_value), kNaN);
  r.state_out.assign(size_t(sh.streams * sh.d_key * sh.d_value), kNaN);
  if (p.save_interval > 0) {
    EXPECT_EQ(p.save_interval, chunk);
    EXPECT_EQ(d.chunks, p.n_states());
    r.states.assign(size_t(p.n_states()) * r.state_out.size(), kNaN);
  }
  {
    HostExec ex;
    chunked::forward(ex, p.delta, d, p.with_q ? p.q.data() : nullptr, p.k.data(), p.v.data(),
                     p.delta ? p.beta.data() : nullptr, p.with_state_in ? p.state_in.data() : nullptr,
                     ptr_or_null(r.out), r.u.data(), r.state_out.data(), ptr_or_null(r.states));
  }
  r.dq.assign(p.with_q ? p.q.size() : 0, kNaN);
  r.dk.assign(p.k.size(), kNaN);
  r.dv.assign(p.v.size(), kNaN);
  r.dbeta.assign(p.delta ? p.beta.size() : 0, kNaN);
  r.d_state_in.assign(r.state_out.size(), kNaN);
  {
    HostExec ex;
    chunked::backward(ex, p.delta, d, p.with_q ? p.q.data() : nullptr, p.k.data(), p.v.data(),
                      p.delta ? p.beta.data() : nullptr, r.u.data(), r.state_out.data(),
                      p.with_q && p.with_d_out ? p.d_out.data() : nullptr,
                      p.with_d_state_out ? p.d_state_out.data() : nullptr, ptr_or_null(r.dq), r.dk.data(),
                      r.dv.data(), ptr_or_null(r.dbeta), r.d_state_in.data(), ptr_or_null(r.states));
  }
  return r;
}

// ---- the fused recurrent kernels' decomposition, emulated ------------------------------------------

template <int RV, int CK>
struct ThreadTile {
  float w[RV][CK];
  float dw[RV][CK];
};

// Every (vtile, warp, row group) of the kernel, each with its LK lanes, run
// step by step with the kernel's per-thread functions; the sums over lanes
// stand for the warp shuffles.
template <int RV, int CK>
FwResult emulate_recurrent(const FwProblem& p, const tile::RecurrentConfig& cfg) {
  const auto& sh = p.shape;
  const int64_t S = sh.streams, T = sh.steps, dk = sh.d_key, dv = sh.d_value;
  const bool delta = p.delta, has_q = p.with_q, has_out = p.with_q && p.with_d_out;
  FwResult r;
  r.out.assign(has_q ? size_t(S * T * dv) : 0, kNaN);
  r.u.assign(size_t(S * T * dv), kNaN);
  r.state_out.assign(size_t(S * dv * dk), kNaN);
  r.dq.assign(has_q ? size_t(S * T * dk) : 0, 0.0f);
  r.dk.assign(size_t(S * T * dk), 0.0f);
  r.dv.assign(size_t(S * T * dv), kNaN);
  r.dbeta.assign(delta ? size_t(S * T) : 0, 0.0f);
  r.d_state_in.assign(size_t(S * dv * dk), kNaN);
  const int64_t L = p.save_interval, n_states = p.n_states();
  r.states.assign(size_t(S * n_states * dv * dk), kNaN);

  auto row_of = [&](int64_t vt, int warp, int lv, int rr) {
    return tile::recurrent_row(cfg.rows_per_block, cfg.lv, cfg.rv, vt, warp, lv, rr);
  };
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t vt = 0; vt < cfg.vtiles; ++vt) {
      for (int warp = 0; warp < cfg.warps; ++warp) {
        for (int lv = 0; lv < cfg.lv; ++lv) {
          std::vector<ThreadTile<RV, CK>> lanes(static_cast<size_t>(cfg.lk));
          auto load_vec = [&](const FVec& src, int64_t t, int lk, float (&x)[CK]) {
            for (int c = 0; c < CK; ++c) {
              const int64_t j = tile::recurrent_col(cfg.lk, lk, c);
              x[c] = j < dk ? src[(s * T + t) * dk + j] : 0.0f;
            }
          };
          auto load_rows = [&](const FVec& src, int64_t t, float (&x)[RV]) {
            for (int rr = 0; rr < RV; ++rr) {
              const int64_t i = row_of(vt, warp, lv, rr);
              x[rr] = i < dv ? src[(s * T + t) * dv + i] : 0.0f;
            }
          };
          // Forward.
          for (int lk = 0; lk < cfg.lk; ++lk)
            for (int rr = 0; rr < RV; ++rr)
              for (int c = 0; c < CK; ++c) {
                const int64_t i = row_of(vt, warp, lv, rr), j = tile::recurrent_col(cfg.lk, lk, c);
                lanes[lk].w[rr][c] =
                    (i < dv && j < dk && p.with_state_in) ? p.state_in[(s * dv + i) * dk + j] : 0.0f;
              }
          // The kernel's save (forward) and reload (backward) of W at interval boundaries.
          auto move_state = [&](int64_t b, bool save) {
            for (int lk = 0; lk < cfg.lk; ++lk)
              for (int rr = 0; rr < RV; ++rr)
                for (int c = 0; c < CK; ++c) {
                  const int64_t i = row_of(vt, warp, lv, rr), j = tile::recurrent_col(cfg.lk, lk, c);
                  if (i >= dv || j >= dk) continue;
                  float& slot = r.states[size_t(((s * n_states + b) * dv + i) * dk + j)];
                  if (save) slot = lanes[lk].w[rr][c];
                  else lanes[lk].w[rr][c] = slot;
                }
          };
          for (int64_t t = 0; t < T; ++t) {
            if (L > 0 && t % L == 0) move_state(t / L, true);
            float wk[RV] = {}, wq[RV] = {}, kq = 0.0f;
            for (int lk = 0; lk < cfg.lk; ++lk) {
              float kk[CK], qq[CK], pwk[RV], pwq[RV], pkq;
              load_vec(p.k, t, lk, kk);
              if (has_q) load_vec(p.q, t, lk, qq);
              else std::fill(qq, qq + CK, 0.0f);
              tile::fw_forward_partials<RV, CK>(lanes[lk].w, kk, qq, has_q, pwk, pwq, pkq);
              for (int rr = 0; rr < RV; ++rr) {
                wk[rr] += pwk[rr];
                wq[rr] += pwq[rr];
              }
              kq += pkq;
            }
            float vv[RV], uu[RV];
            load_rows(p.v, t, vv);
            const float b = delta ? p.beta[s * T + t] : 1.0f;
            for (int rr = 0; rr < RV; ++rr) uu[rr] = tile::fw_update_value(delta, vv[rr], b, wk[rr]);
            for (int lk = 0; lk < cfg.lk; ++lk) {
              float kk[CK];
              load_vec(p.k, t, lk, kk);
              tile::fw_rank1_update<RV, CK>(lanes[lk].w, uu, kk);
            }
            for (int rr = 0; rr < RV; ++rr) {
              const int64_t i = row_of(vt, warp, lv, rr);
              if (i >= dv) continue;
              r.u[(s * T + t) * dv + i] = uu[rr];
              if (has_q) r.out[(s * T + t) * dv + i] = tile::fw_output(wq[rr], uu[rr], kq);
            }
          }
          for (int lk = 0; lk < cfg.lk; ++lk)
            for (int rr = 0; rr < RV; ++rr)
              for (int c = 0; c < CK; ++c) {
                const int64_t i = row_of(vt, warp, lv, rr), j = tile::recurrent_col(cfg.lk, lk, c);
                if (i < dv && j < dk) r.state_out[(s * dv + i) * dk + j] = lanes[lk].w[rr][c];
              }
          // Backward, from the state just produced.
          for (int lk = 0; lk < cfg.lk; ++lk)
            for (int rr = 0; rr < RV; ++rr)
              for (int c = 0; c < CK; ++c) {
                const int64_t i = row_of(vt, warp, lv, rr), j = tile::recurrent_col(cfg.lk, lk, c);
                lanes[lk].dw[rr][c] =
                    (i < dv && j < dk && p.with_d_state_out) ? p.d_state_out[(s * dv + i) * dk + j] : 0.0f;
              }
          // The kernel's saved-state recompute (tile::IntervalRecompute): per
          // slot, every lane's entries; one forward step of all lanes.
          const tile::IntervalRecompute rc = tile::interval_recompute(L);
          std::vector<ThreadTile<RV, CK>> slots(L > 0 ? size_t(rc.slots() * cfg.lk) : 0);
          auto move_slot = [&](int64_t slot, bool store) {
            for (int lk = 0; lk < cfg.lk; ++lk) {
              auto& x = slots[size_t(slot * cfg.lk + lk)].w;
              if (store) std::memcpy(x, lanes[lk].w, sizeof(x));
              else std::memcpy(lanes[lk].w, x, sizeof(x));
            }
          };
          auto advance = [&](int64_t tp) {
            float uu[RV];
            load_rows(r.u, tp, uu);
            for (int lk = 0; lk < cfg.lk; ++lk) {
              float kk[CK];
              load_vec(p.k, tp, lk, kk);
              tile::fw_rank1_update<RV, CK>(lanes[lk].w, uu, kk);
            }
          };
          for (int64_t t = T - 1; t >= 0; --t) {
            float uu[RV], vv[RV], dout[RV];
            load_rows(r.u, t, uu);
            load_rows(p.v, t, vv);
            if (has_out) load_rows(p.d_out, t, dout);
            else std::fill(dout, dout + RV, 0.0f);
            const float b = delta ? p.beta[s * T + t] : 1.0f;
            float du[RV] = {}, a[RV] = {};
            auto add_dq = [&](int lk, const float (&pq)[CK]) {
              for (int c = 0; c < CK; ++c) {
                const int64_t j = tile::recurrent_col(cfg.lk, lk, c);
                if (has_out && j < dk) r.dq[(s * T + t) * dk + j] += pq[c];
              }
            };
            if (L > 0) {
              for (int lk = 0; lk < cfg.lk; ++lk) {
                float qq[CK], pq[CK];
                if (has_out) load_vec(p.q, t, lk, qq);
                else std::fill(qq, qq + CK, 0.0f);
                tile::fw_backward_out_partials<RV, CK>(lanes[lk].w, lanes[lk].dw, qq, dout, has_out, pq);
                add_dq(lk, pq);
              }
              tile::recompute_state_before(
                  rc, t, T, [&](int64_t saved) { move_state(saved, false); },
                  [&](int64_t slot) { move_slot(slot, true); }, [&](int64_t slot) { move_slot(slot, false); },
                  advance);
              for (int lk = 0; lk < cfg.lk; ++lk) {
                float kk[CK], pdu[RV], pa[RV];
                load_vec(p.k, t, lk, kk);
                tile::fw_backward_key_partials<RV, CK>(lanes[lk].w, lanes[lk].dw, kk, delta, pdu, pa);
                for (int rr = 0; rr < RV; ++rr) {
                  du[rr] += pdu[rr];
                  a[rr] += pa[rr];
                }
              }
            } else {
              for (int lk = 0; lk < cfg.lk; ++lk) {
                float kk[CK], qq[CK], pq[CK], pdu[RV], pa[RV];
                load_vec(p.k, t, lk, kk);
                if (has_out) load_vec(p.q, t, lk, qq);
                else std::fill(qq, qq + CK, 0.0f);
                tile::fw_backward_partials<RV, CK>(lanes[lk].w, lanes[lk].dw, kk, qq, dout, uu, has_out, delta,
                                                   pq, pdu, pa);
                for (int rr = 0; rr < RV; ++rr) {
                  du[rr] += pdu[rr];
                  a[rr] += pa[rr];
                }
                add_dq(lk, pq);
              }
            }
            for (int lk = 0; lk < cfg.lk; ++lk) {
              float kk[CK], dvv[RV], pk[CK], db;
              load_vec(p.k, t, lk, kk);
              tile::fw_backward_finish<RV, CK>(lanes[lk].w, lanes[lk].dw, kk, uu, vv, b, du, a, delta, dvv, pk, db);
              for (int c = 0; c < CK; ++c) {
                const int64_t j = tile::recurrent_col(cfg.lk, lk, c);
                if (j < dk) r.dk[(s * T + t) * dk + j] += pk[c];
              }
              if (lk == 0) {
                if (delta) r.dbeta[s * T + t] += db;
                for (int rr = 0; rr < RV; ++rr) {
                  const int64_t i = row_of(vt, warp, lv, rr);
                  if (i < dv) r.dv[(s * T + t) * dv + i] = dvv[rr];
                }
              }
            }
          }
          for (int lk = 0; lk < cfg.lk; ++lk)
            for (int rr = 0; rr < RV; ++rr)
              for (int c = 0; c < CK; ++c) {
                const int64_t i = row_of(vt, warp, lv, rr), j = tile::recurrent_col(cfg.lk, lk, c);
                if (i < dv && j < dk) r.d_state_in[(s * dv + i) * dk + j] = lanes[lk].dw[rr][c];
              }
        }
      }
    }
  }
  return r;
}

// The same (ck, rv) -> template switch as cuda/fast_weight.cu.
FwResult emulate_recurrent_dispatch(const FwProblem& p) {
  const tile::RecurrentConfig cfg = tile::recurrent_config(p.shape.d_key, p.shape.d_value);
  EXPECT_TRUE(cfg.supported());
#define FWP_CASE(CK_, RV_) \
  if (cfg.ck == CK_ && cfg.rv == RV_) return emulate_recurrent<RV_, CK_>(p, cfg);
  FWP_CASE(2, 1) FWP_CASE(2, 2) FWP_CASE(2, 4)
  FWP_CASE(4, 1) FWP_CASE(4, 2) FWP_CASE(4, 4)
  FWP_CASE(8, 1) FWP_CASE(8, 2) FWP_CASE(8, 4)
  FWP_CASE(16, 1) FWP_CASE(16, 2)
  FWP_CASE(32, 1)
#undef FWP_CASE
  ADD_FAILURE() << "no kernel instance for ck=" << cfg.ck << " rv=" << cfg.rv;
  return {};
}

// ---- tests: cuBLAS translation and the WY inverse ---------------------------------------------------

TEST(CudaTiles, ColumnMajorTranslationMatchesRowMajorGemm) {
  Rng rng(11);
  const int64_t M = 5, N = 7, K = 3;
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      // Leading dimensions larger than the rows to catch ld mix-ups.
      const int64_t lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 3, ldc = N + 1;
      FVec A = cudatest::normal(rng, (ta ? K : M) * lda), B = cudatest::normal(rng, (tb ? N : K) * ldb);
      FVec C = cudatest::normal(rng, M * ldc), ref = C;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double acc = 0.0;
          for (int64_t p = 0; p < K; ++p)
            acc += double(ta ? A[p * lda + i] : A[i * lda + p]) * double(tb ? B[j * ldb + p] : B[p * ldb + j]);
          ref[i * ldc + j] = float(0.5 * acc + 2.0 * double(C[i * ldc + j]));
        }
      const tile::ColMajorGemm cm = tile::to_col_major(ta, tb, M, N, K, A.data(), lda, B.data(), ldb);
      colmajor_sgemm(cm.trans_first, cm.trans_second, cm.m, cm.n, cm.k, 0.5f, cm.first, cm.ld_first, cm.second,
                     cm.ld_second, 2.0f, C.data(), ldc);
      EXPECT_TRUE(close_rel(C, ref, 1e-6)) << "ta=" << ta << " tb=" << tb;
    }
  }
}

TEST(CudaTiles, WyInverseIsTheInverse) {
  Rng rng(5);
  for (int64_t C : {1, 2, 17, 64}) {
    const int64_t dk = 32;
    FVec K = cudatest::simplex_rows(rng, C, dk), beta = cudatest::uniform(rng, C, 0.0, 1.0);
    FVec G(size_t(C * C)), N(size_t(C * C), kNaN), T(size_t(C * C), kNaN);
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) {
        float acc = 0.0f;
        for (int64_t p = 0; p < dk; ++p) acc += K[i * dk + p] * K[j * dk + p];
        G[i * C + j] = acc;
      }
    for (int64_t j = 0; j < C; ++j) {
      tile::wy_inverse_column(G.data(), C, beta.data(), C, j, false, N.data(), C);
      tile::wy_inverse_column(G.data(), C, beta.data(), C, j, true, T.data(), C);
    }
    // (I + A) N = I with A = strictly_lower(diag(beta) G), and T = N diag(beta).
    double worst = 0.0, worst_t = 0.0;
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) {
        double acc = N[i * C + j];
        for (int64_t s = 0; s < i; ++s) acc += double(beta[i]) * G[i * C + s] * N[s * C + j];
        worst = std::max(worst, std::fabs(acc - (i == j ? 1.0 : 0.0)));
        worst_t = std::max(worst_t, std::fabs(double(T[i * C + j]) - double(N[i * C + j]) * beta[j]));
      }
    EXPECT_LT(worst, 1e-5) << "C=" << C;
    EXPECT_LT(worst_t, 1e-6) << "C=" << C;
  }
}

// ---- tests: the chunked plan against the CPU backend ---------------------------------------------------

struct PlanCase {
  int64_t S, T, dk, dv, chunk;
};

TEST(CudaTilesChunkedPlan, MatchesCpuBothRulesWithPadding) {
  const PlanCase cases[] = {{3, 67, 16, 24, 16}, {2, 64, 32, 32, 32}, {2, 5, 8, 8, 64},
                            {1, 1, 16, 16, 64},  {2, 70, 24, 8, 64},  {1, 130, 64, 16, 64}};
  for (const auto& c : cases) {
    for (bool delta : {true, false}) {
      FwProblem p = make_problem(100 + c.T + c.dk, c.S, c.T, c.dk, c.dv, delta);
      const FwResult ref = cpu_fast_weight<double>(p, Algorithm::Recurrent, 0);
      const FwResult got = plan_fast_weight(p, c.chunk);
      SCOPED_TRACE(testing::Message() << "S=" << c.S << " T=" << c.T << " dk=" << c.dk << " dv=" << c.dv
                                      << " C=" << c.chunk << (delta ? " delta" : " sum"));
      expect_results_close(got, ref, 1e-5, "plan vs CPU double");
    }
  }
}

TEST(CudaTilesChunkedPlan, MatchesCpuWithoutOptionalArguments) {
  for (bool delta : {true, false}) {
    for (int variant = 0; variant < 4; ++variant) {
      FwProblem p = make_problem(7 + variant, 2, 45, 16, 12, delta);
      p.with_q = variant != 0;
      p.with_state_in = variant != 1;
      p.with_d_out = variant != 2;
      p.with_d_state_out = variant != 3;
      const FwResult ref = cpu_fast_weight<double>(p, Algorithm::Chunked, 16);
      const FwResult got = plan_fast_weight(p, 16);
      SCOPED_TRACE(testing::Message() << "variant " << variant << (delta ? " delta" : " sum"));
      expect_results_close(got, ref, 1e-5, "plan vs CPU double");
    }
  }
}

// With saved states the plan reads its chunk-start states from the forward
// (both rules, with padding, every optional argument on and off).
TEST(CudaTilesChunkedPlan, SavedStatesMatchCpu) {
  for (bool delta : {true, false}) {
    for (int variant = 0; variant < 3; ++variant) {
      FwProblem p = make_problem(17 + variant, 2, 45, 16, 12, delta);
      p.with_state_in = variant != 1;
      p.with_d_out = variant != 2;
      p.save_interval = 16;
      const FwResult ref = cpu_fast_weight<double>(p, Algorithm::Chunked, 16);
      const FwResult got = plan_fast_weight(p, 16);
      ASSERT_EQ(got.states.size(), size_t(2 * 3 * 16 * 12));
      SCOPED_TRACE(testing::Message() << "variant " << variant << (delta ? " delta" : " sum"));
      expect_results_close(got, ref, 1e-5, "plan with saved states vs CPU double");
    }
  }
}

TEST(CudaTilesChunkedPlan, AgreesWithCpuFloatChunked) {
  FwProblem p = make_problem(3, 2, 100, 32, 32, true);
  const FwResult ref = cpu_fast_weight<float>(p, Algorithm::Chunked, 32);
  const FwResult got = plan_fast_weight(p, 32);
  expect_results_close(got, ref, 1e-5, "plan vs CPU float chunked");
}

// ---- tests: the recurrent kernels' tile decomposition ------------------------------------------------

TEST(CudaTilesRecurrent, ConfigCoversEveryRowAndColumnOnce) {
  for (int64_t dk : {1, 5, 8, 16, 17, 32, 64, 100, 128, 256, 512, 1024}) {
    for (int64_t dv : {1, 3, 16, 24, 64, 128, 256, 300}) {
      const tile::RecurrentConfig cfg = tile::recurrent_config(dk, dv);
      ASSERT_TRUE(cfg.supported());
      EXPECT_GE(int64_t(cfg.lk) * cfg.ck, dk);
      EXPECT_EQ(cfg.lk * cfg.lv, 32);
      EXPECT_LE(cfg.rv * cfg.ck, 32);
      EXPECT_GE(cfg.rows_per_block * cfg.vtiles, dv);
      std::vector<int> rows(size_t(cfg.rows_per_block * cfg.vtiles), 0);
      for (int64_t vt = 0; vt < cfg.vtiles; ++vt)
        for (int w = 0; w < cfg.warps; ++w)
          for (int lv = 0; lv < cfg.lv; ++lv)
            for (int r = 0; r < cfg.rv; ++r)
              ++rows[size_t(tile::recurrent_row(cfg.rows_per_block, cfg.lv, cfg.rv, vt, w, lv, r))];
      for (int x : rows) EXPECT_EQ(x, 1);
      std::vector<int> cols(size_t(cfg.lk * cfg.ck), 0);
      for (int lk = 0; lk < cfg.lk; ++lk)
        for (int c = 0; c < cfg.ck; ++c) ++cols[size_t(tile::recurrent_col(cfg.lk, lk, c))];
      for (int x : cols) EXPECT_EQ(x, 1);
    }
  }
  EXPECT_FALSE(tile::recurrent_config(1025, 16).supported());
}

TEST(CudaTilesRecurrent, RankOneStepsMatchCpu) {
  struct Case {
    int64_t S, T, dk, dv;
  };
  const Case cases[] = {{2, 9, 16, 16}, {1, 20, 8, 5},   {2, 13, 32, 32},  {1, 7, 64, 40},
                        {1, 5, 128, 24}, {1, 4, 256, 20}, {1, 3, 512, 9},  {1, 3, 1024, 4},
                        {1, 6, 17, 300}};
  for (const auto& c : cases) {
    for (bool delta : {true, false}) {
      FwProblem p = make_problem(40 + c.dk, c.S, c.T, c.dk, c.dv, delta);
      const FwResult ref = cpu_fast_weight<double>(p, Algorithm::Recurrent, 0);
      const FwResult got = emulate_recurrent_dispatch(p);
      SCOPED_TRACE(testing::Message() << "dk=" << c.dk << " dv=" << c.dv << (delta ? " delta" : " sum"));
      expect_results_close(got, ref, 1e-5, "recurrent tiles vs CPU double");
    }
  }
}

// The kernels save W every L steps and reload it in the backward; the CPU's
// recurrent form saves the same states (L from the chunk size).
TEST(CudaTilesRecurrent, SavedStatesMatchCpu) {
  for (bool delta : {true, false}) {
    for (int64_t L : {4, 5, 9, 32}) {
      FwProblem p = make_problem(90 + L, 2, 23, 16, 20, delta);
      p.save_interval = L;
      const FwResult ref = cpu_fast_weight<double>(p, Algorithm::Recurrent, L);
      const FwResult got = emulate_recurrent_dispatch(p);
      SCOPED_TRACE(testing::Message() << "L=" << L << (delta ? " delta" : " sum"));
      expect_results_close(got, ref, 1e-5, "recurrent tiles with saved states vs CPU double");
    }
  }
}

// The backward's two-level recompute schedule (tile::recompute_state_before),
// driven with a counter for a state: "W before step n" is n. At every step t
// it must leave W before step t, advance only the state it holds (the forward's
// step tp on W before tp), read only slots written before, and advance at most
// twice per step with about 2 sqrt(L) slots.
TEST(CudaTilesRecurrent, IntervalRecomputeScheduleGivesEveryStateExactly) {
  for (int64_t L : {1, 2, 3, 4, 5, 7, 9, 16, 17, 32, 64}) {
    const tile::IntervalRecompute rc = tile::interval_recompute(L);
    EXPECT_LE(double(rc.slots()), 2.0 * std::sqrt(double(L)) + 1.0) << "L=" << L;
    for (int64_t T = 1; T <= 3 * L + 2; ++T) {
      SCOPED_TRACE(testing::Message() << "L=" << L << " T=" << T);
      std::vector<int64_t> slots(size_t(rc.slots()), -1);
      int64_t w = -1, advances = 0, bad = 0;
      for (int64_t t = T - 1; t >= 0; --t) {
        tile::recompute_state_before(
            rc, t, T,
            [&](int64_t b) {
              bad += b * L >= T;
              w = b * L;
            },
            [&](int64_t slot) {
              if (slot < 0 || slot >= rc.slots()) ++bad;
              else slots[size_t(slot)] = w;
            },
            [&](int64_t slot) { w = (slot < 0 || slot >= rc.slots()) ? -2 : slots[size_t(slot)]; },
            [&](int64_t tp) {
              bad += w != tp;
              w = tp + 1;
              ++advances;
            });
        EXPECT_EQ(w, t);
      }
      EXPECT_EQ(bad, 0);
      EXPECT_LE(advances, 2 * T);
    }
  }
}

TEST(CudaTilesRecurrent, MatchesCpuWithoutOptionalArguments) {
  for (bool delta : {true, false}) {
    for (int variant = 0; variant < 4; ++variant) {
      FwProblem p = make_problem(70 + variant, 2, 11, 16, 16, delta);
      p.with_q = variant != 0;
      p.with_state_in = variant != 1;
      p.with_d_out = variant != 2;
      p.with_d_state_out = variant != 3;
      const FwResult ref = cpu_fast_weight<double>(p, Algorithm::Recurrent, 0);
      const FwResult got = emulate_recurrent_dispatch(p);
      SCOPED_TRACE(testing::Message() << "variant " << variant << (delta ? " delta" : " sum"));
      expect_results_close(got, ref, 1e-5, "recurrent tiles vs CPU double");
    }
  }
}

// ---- tests: feature maps and sum normalisation ---------------------------------------------------------

TEST(CudaTilesFeatureMaps, EluDpfpFavorMatchCpu) {
  Rng rng(21);
  auto cpu = cpu_d();
  const int64_t rows = 9, d = 12;
  FVec x = cudatest::normal(rng, rows * d);
  x[3] = 0.0f;  // relu'(0) and the elu kink
  const DVec xd(x.begin(), x.end());

  {  // elu + 1
    FeatureMapSpec spec{FeatureMap::Elu, d, 1, 0};
    DVec phi(size_t(rows * d)), dphi = cudatest::to_double(cudatest::normal(rng, rows * d)), dx(size_t(rows * d));
    cpu->feature_map_forward(spec, nullptr, xd.data(), phi.data(), rows);
    cpu->feature_map_backward(spec, nullptr, xd.data(), phi.data(), dphi.data(), dx.data(), rows);
    FVec got(size_t(rows * d)), gotdx(size_t(rows * d));
    for (int64_t i = 0; i < rows * d; ++i) {
      got[i] = tile::elu1(x[i]);
      gotdx[i] = tile::elu1_grad(x[i], got[i], float(dphi[i]));
    }
    EXPECT_TRUE(close_rel(got, phi, 1e-6)) << "elu forward";
    EXPECT_TRUE(close_rel(gotdx, dx, 1e-6)) << "elu backward";
  }
  for (int64_t nu : {1, 2, 3}) {  // DPFP
    FeatureMapSpec spec{FeatureMap::Dpfp, d, nu, 0};
    const int64_t dout = spec.d_out();
    DVec phi(size_t(rows * dout)), dx(size_t(rows * d));
    const FVec g = cudatest::normal(rng, rows * dout);
    const DVec gd(g.begin(), g.end());
    cpu->feature_map_forward(spec, nullptr, xd.data(), phi.data(), rows);
    cpu->feature_map_backward(spec, nullptr, xd.data(), phi.data(), gd.data(), dx.data(), rows);
    FVec got(size_t(rows * dout)), gotdx(size_t(rows * d));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < dout; ++i) got[r * dout + i] = tile::dpfp_phi(x.data() + r * d, d, i);
      for (int64_t k = 0; k < d; ++k) gotdx[r * d + k] = tile::dpfp_dx(x.data() + r * d, g.data() + r * dout, d, nu, k);
    }
    EXPECT_TRUE(close_rel(got, phi, 1e-6)) << "dpfp forward nu=" << nu;
    EXPECT_TRUE(close_rel(gotdx, dx, 1e-6)) << "dpfp backward nu=" << nu;
  }
  {  // DPFP with d = 1: the roll by j wraps onto the element itself (j mod 2 = 0 for nu = 2)
    FeatureMapSpec spec{FeatureMap::Dpfp, 1, 2, 0};
    const DVec x1 = {-0.7};
    const FVec x1f = {-0.7f};
    const DVec g1 = {0.3, -1.1, 0.6, 2.0};
    const FVec g1f(g1.begin(), g1.end());
    DVec phi(4), dx(1);
    cpu->feature_map_forward(spec, nullptr, x1.data(), phi.data(), 1);
    cpu->feature_map_backward(spec, nullptr, x1.data(), phi.data(), g1.data(), dx.data(), 1);
    FVec got(4);
    for (int64_t i = 0; i < 4; ++i) got[i] = tile::dpfp_phi(x1f.data(), 1, i);
    EXPECT_TRUE(close_rel(got, phi, 1e-6));
    EXPECT_NEAR(tile::dpfp_dx(x1f.data(), g1f.data(), 1, 2, 0), dx[0], 1e-6);
  }
  {  // FAVOR+: the projection Rx is a GEMM in both backends; the tiles do the rest
    const int64_t m = 6;
    FeatureMapSpec spec{FeatureMap::Favor, d, 1, m};
    const FVec R = cudatest::normal(rng, m * d, 0.5);
    const FVec xs = cudatest::normal(rng, rows * d, 0.5);
    const DVec Rd(R.begin(), R.end()), xsd(xs.begin(), xs.end());
    DVec phi(size_t(rows * 2 * m)), dx(size_t(rows * d));
    const FVec g = cudatest::normal(rng, rows * 2 * m);
    const DVec gd(g.begin(), g.end());
    cpu->feature_map_forward(spec, Rd.data(), xsd.data(), phi.data(), rows);
    cpu->feature_map_backward(spec, Rd.data(), xsd.data(), phi.data(), gd.data(), dx.data(), rows);
    FVec got(size_t(rows * 2 * m)), gotdx(size_t(rows * d));
    const float log_c = tile::favor_log_c(m);
    for (int64_t r = 0; r < rows; ++r) {
      float sq = 0.0f;
      for (int64_t j = 0; j < d; ++j) sq += xs[r * d + j] * xs[r * d + j];
      const float shift = tile::favor_shift(log_c, sq);
      FVec gvec(static_cast<size_t>(m));
      float total = 0.0f;
      for (int64_t i = 0; i < m; ++i) {
        float proj = 0.0f;
        for (int64_t j = 0; j < d; ++j) proj += R[i * d + j] * xs[r * d + j];
        const float pp = tile::favor_plus(proj, shift), pm = tile::favor_minus(proj, shift);
        got[r * 2 * m + i] = pp;
        got[r * 2 * m + m + i] = pm;
        const float dpp = g[r * 2 * m + i], dpm = g[r * 2 * m + m + i];
        gvec[i] = tile::favor_grad_g(pp, pm, dpp, dpm);
        total += tile::favor_grad_total(pp, pm, dpp, dpm);
      }
      for (int64_t j = 0; j < d; ++j) {
        float acc = -total * xs[r * d + j];
        for (int64_t i = 0; i < m; ++i) acc += gvec[i] * R[i * d + j];
        gotdx[r * d + j] = acc;
      }
    }
    EXPECT_TRUE(close_rel(got, phi, 1e-5)) << "favor forward";
    EXPECT_TRUE(close_rel(gotdx, dx, 1e-5)) << "favor backward";
  }
}

TEST(CudaTilesFeatureMaps, SumNormalizeMatchesCpu) {
  Rng rng(4);
  auto cpu = cpu_d();
  const int64_t rows = 6, d = 10;
  FVec phi = cudatest::uniform(rng, rows * d, 0.0, 2.0);
  std::fill(phi.begin() + 2 * d, phi.begin() + 3 * d, 0.0f);  // an all-zero DPFP row: eps guards it
  const FVec g = cudatest::normal(rng, rows * d);
  const DVec phid(phi.begin(), phi.end()), gd(g.begin(), g.end());
  const double eps = 1e-6;
  DVec out(size_t(rows * d)), dphi(size_t(rows * d));
  cpu->sum_normalize_forward(phid.data(), out.data(), rows, d, eps);
  cpu->sum_normalize_backward(phid.data(), gd.data(), dphi.data(), rows, d, eps);
  FVec got(size_t(rows * d)), gotd(size_t(rows * d));
  for (int64_t r = 0; r < rows; ++r) {
    float sum = 0.0f, dot = 0.0f;
    for (int64_t j = 0; j < d; ++j) {
      sum += phi[r * d + j];
      dot += g[r * d + j] * phi[r * d + j];
    }
    const float inv = tile::sum_normalize_inv(sum, float(eps));
    for (int64_t j = 0; j < d; ++j) {
      got[r * d + j] = phi[r * d + j] * inv;
      gotd[r * d + j] = tile::sum_normalize_grad(g[r * d + j], dot, inv);
    }
  }
  EXPECT_TRUE(close_rel(got, out, 1e-6));
  EXPECT_TRUE(close_rel(gotd, dphi, 1e-6));
}

// ---- tests: online softmax (flash tiles) -------------------------------------------------------------

// The attention kernels' order: key tiles of 32, scores of a tile merged into
// the running (m, l) row state, then the backward from the stored lse.
struct AttnEmu {
  FVec out, lse, dq, dk, dv;
};

AttnEmu emulate_attention(int64_t S, int64_t nq, int64_t nk, int64_t d, int64_t dvw, bool causal, const FVec& q,
                          const FVec& k, const FVec& v, const FVec& dout, float scale) {
  constexpr int64_t kTile = 32;
  AttnEmu e;
  e.out.assign(size_t(S * nq * dvw), kNaN);
  e.lse.assign(size_t(S * nq), kNaN);
  e.dq.assign(size_t(S * nq * d), 0.0f);
  e.dk.assign(size_t(S * nk * d), 0.0f);
  e.dv.assign(size_t(S * nk * dvw), 0.0f);
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t i = 0; i < nq; ++i) {
      const float* qi = &q[(s * nq + i) * d];
      tile::SoftmaxRow row = tile::softmax_row_init();
      FVec acc(size_t(dvw), 0.0f);
      const int64_t limit = causal ? i + 1 : nk;
      for (int64_t j0 = 0; j0 < limit; j0 += kTile) {
        float sc[kTile];
        float tmax = -INFINITY;
        for (int64_t c = 0; c < kTile; ++c) {
          const int64_t j = j0 + c;
          float x = -INFINITY;
          if (j < limit) {
            x = 0.0f;
            for (int64_t p = 0; p < d; ++p) x += qi[p] * k[(s * nk + j) * d + p];
            x *= scale;
          }
          sc[c] = x;
          tmax = std::max(tmax, x);
        }
        const float alpha = tile::softmax_row_rescale(row, tmax);
        for (auto& a : acc) a *= alpha;
        for (int64_t c = 0; c < kTile && j0 + c < limit; ++c) {
          const float pr = tile::softmax_row_prob(row, sc[c]);
          row.l += pr;
          for (int64_t x = 0; x < dvw; ++x) acc[x] += pr * v[(s * nk + j0 + c) * dvw + x];
        }
      }
      const float inv = tile::softmax_row_inv(row);
      for (int64_t x = 0; x < dvw; ++x) e.out[(s * nq + i) * dvw + x] = acc[x] * inv;
      e.lse[s * nq + i] = tile::softmax_row_lse(row);
    }
    for (int64_t i = 0; i < nq; ++i) {
      const float* qi = &q[(s * nq + i) * d];
      const float* doi = &dout[(s * nq + i) * dvw];
      float D = 0.0f;
      for (int64_t x = 0; x < dvw; ++x) D += doi[x] * e.out[(s * nq + i) * dvw + x];
      const int64_t limit = causal ? i + 1 : nk;
      for (int64_t j = 0; j < limit; ++j) {
        float sc = 0.0f;
        for (int64_t p = 0; p < d; ++p) sc += qi[p] * k[(s * nk + j) * d + p];
        const float pr = tile::softmax_prob_from_lse(scale * sc, e.lse[s * nq + i]);
        float dp = 0.0f;
        for (int64_t x = 0; x < dvw; ++x) dp += doi[x] * v[(s * nk + j) * dvw + x];
        const float ds = tile::softmax_score_grad(pr, dp, D);
        for (int64_t p = 0; p < d; ++p) {
          e.dq[(s * nq + i) * d + p] += scale * ds * k[(s * nk + j) * d + p];
          e.dk[(s * nk + j) * d + p] += scale * ds * qi[p];
        }
        for (int64_t x = 0; x < dvw; ++x) e.dv[(s * nk + j) * dvw + x] += pr * doi[x];
      }
    }
  }
  return e;
}

TEST(CudaTilesSoftmax, OnlineSoftmaxMatchesCpuCausal) {
  Rng rng(8);
  auto cpu = cpu_d();
  const int64_t S = 2, T = 75, d = 16;
  const float scale = 0.25f;
  // Large scores: the running max must do its job.
  FVec q = cudatest::normal(rng, S * T * d, 3.0), k = cudatest::normal(rng, S * T * d, 3.0);
  FVec v = cudatest::normal(rng, S * T * d), dout = cudatest::normal(rng, S * T * d);
  const AttnEmu e = emulate_attention(S, T, T, d, d, true, q, k, v, dout, scale);
  const DVec qd(q.begin(), q.end()), kd(k.begin(), k.end()), vd(v.begin(), v.end()), dod(dout.begin(), dout.end());
  DVec out(size_t(S * T * d)), lse(size_t(S * T)), dq(out.size()), dk(out.size()), dv(out.size());
  cpu->softmax_attention_forward(S, T, d, qd.data(), kd.data(), vd.data(), scale, out.data(), lse.data());
  cpu->softmax_attention_backward(S, T, d, qd.data(), kd.data(), vd.data(), out.data(), lse.data(), dod.data(), scale,
                                  dq.data(), dk.data(), dv.data());
  EXPECT_TRUE(close_rel(e.out, out, 1e-5));
  EXPECT_TRUE(close_rel(e.lse, lse, 1e-5));
  EXPECT_TRUE(close_rel(e.dq, dq, 1e-5));
  EXPECT_TRUE(close_rel(e.dk, dk, 1e-5));
  EXPECT_TRUE(close_rel(e.dv, dv, 1e-5));
}

TEST(CudaTilesSoftmax, OnlineSoftmaxMatchesCpuCrossAttention) {
  Rng rng(9);
  auto cpu = cpu_d();
  const int64_t S = 2, nq = 5, nk = 70, d = 8, dvw = 13;
  const float scale = 0.5f;
  FVec q = cudatest::normal(rng, S * nq * d), k = cudatest::normal(rng, S * nk * d);
  FVec v = cudatest::normal(rng, S * nk * dvw), dout = cudatest::normal(rng, S * nq * dvw);
  const AttnEmu e = emulate_attention(S, nq, nk, d, dvw, false, q, k, v, dout, scale);
  const DVec qd(q.begin(), q.end()), kd(k.begin(), k.end()), vd(v.begin(), v.end()), dod(dout.begin(), dout.end());
  DVec out(size_t(S * nq * dvw)), lse(size_t(S * nq)), dq(q.size()), dk(k.size()), dv(v.size());
  cpu->cross_attention_forward(S, nq, nk, d, dvw, qd.data(), kd.data(), vd.data(), scale, out.data(), lse.data());
  cpu->cross_attention_backward(S, nq, nk, d, dvw, qd.data(), kd.data(), vd.data(), out.data(), lse.data(),
                                dod.data(), scale, dq.data(), dk.data(), dv.data());
  EXPECT_TRUE(close_rel(e.out, out, 1e-5));
  EXPECT_TRUE(close_rel(e.lse, lse, 1e-5));
  EXPECT_TRUE(close_rel(e.dq, dq, 1e-5));
  EXPECT_TRUE(close_rel(e.dk, dk, 1e-5));
  EXPECT_TRUE(close_rel(e.dv, dv, 1e-5));
}

TEST(CudaTilesSoftmax, EmptyRowGivesZeroOutputAndMinusInfinityLse) {
  tile::SoftmaxRow row = tile::softmax_row_init();
  EXPECT_EQ(tile::softmax_row_rescale(row, -INFINITY), 1.0f);
  EXPECT_EQ(tile::softmax_row_prob(row, -INFINITY), 0.0f);
  EXPECT_EQ(tile::softmax_row_inv(row), 0.0f);
  EXPECT_TRUE(std::isinf(tile::softmax_row_lse(row)) && tile::softmax_row_lse(row) < 0);
}

// ---- tests: attention normalisation ---------------------------------------------------------------------

TEST(CudaTilesAttnNorm, PrefixSumsAndDenominatorGradMatchCpu) {
  Rng rng(12);
  auto cpu = cpu_d();
  const int64_t S = 2, T = 37, dk = 10, dv = 7;
  const FastWeightShape sh{S, T, dk, dv};
  const FVec q = cudatest::uniform(rng, S * T * dk, 0.0, 1.0), k = cudatest::uniform(rng, S * T * dk, 0.0, 1.0);
  const FVec z_in = cudatest::uniform(rng, S * dk, 0.0, 1.0), o = cudatest::normal(rng, S * T * dv);
  const FVec dy = cudatest::normal(rng, S * T * dv);
  const float eps = 1e-6f;
  // The kernels' order: z_t as a running sum per (stream, column), then one row at a time.
  FVec y(size_t(S * T * dv)), denom(size_t(S * T)), z_out(size_t(S * dk));
  FVec d_o(y.size()), dq(q.size()), dkk(k.size()), dz(size_t(S * dk));
  FVec Z(size_t(S * T * dk)), g(size_t(S * T));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < dk; ++j) {
      float z = z_in[s * dk + j];
      for (int64_t t = 0; t < T; ++t) {
        z += k[(s * T + t) * dk + j];
        Z[(s * T + t) * dk + j] = z;
      }
      z_out[s * dk + j] = z;
    }
  for (int64_t r = 0; r < S * T; ++r) {
    float den = 0.0f;
    for (int64_t j = 0; j < dk; ++j) den += q[r * dk + j] * Z[r * dk + j];
    den += eps;
    denom[r] = den;
    float dot = 0.0f;
    for (int64_t x = 0; x < dv; ++x) {
      y[r * dv + x] = o[r * dv + x] / den;
      dot += dy[r * dv + x] * y[r * dv + x];
    }
    g[r] = tile::attn_norm_denom_grad(dot, den);
    for (int64_t x = 0; x < dv; ++x) d_o[r * dv + x] = dy[r * dv + x] / den;
  }
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < dk; ++j) {
      float acc = 0.0f;
      for (int64_t t = T - 1; t >= 0; --t) {
        acc += g[s * T + t] * q[(s * T + t) * dk + j];
        dkk[(s * T + t) * dk + j] = acc;
      }
      dz[s * dk + j] = acc;
      for (int64_t t = 0; t < T; ++t) dq[(s * T + t) * dk + j] = g[s * T + t] * Z[(s * T + t) * dk + j];
    }
  const DVec qd(q.begin(), q.end()), kd(k.begin(), k.end()), zd(z_in.begin(), z_in.end()), od(o.begin(), o.end()),
      dyd(dy.begin(), dy.end());
  DVec ry(y.size()), rden(denom.size()), rz(z_out.size()), rdo(y.size()), rdq(q.size()), rdk(k.size()), rdz(dz.size());
  cpu->attn_norm_forward(sh, qd.data(), kd.data(), zd.data(), od.data(), eps, ry.data(), rden.data(), rz.data());
  cpu->attn_norm_backward(sh, qd.data(), kd.data(), zd.data(), ry.data(), rden.data(), dyd.data(), rdo.data(),
                          rdq.data(), rdk.data(), rdz.data());
  EXPECT_TRUE(close_rel(y, ry, 1e-5));
  EXPECT_TRUE(close_rel(denom, rden, 1e-5));
  EXPECT_TRUE(close_rel(z_out, rz, 1e-5));
  EXPECT_TRUE(close_rel(d_o, rdo, 1e-5));
  EXPECT_TRUE(close_rel(dq, rdq, 1e-5));
  EXPECT_TRUE(close_rel(dkk, rdk, 1e-5));
  EXPECT_TRUE(close_rel(dz, rdz, 1e-5));
}

TEST(CudaTilesElementwise, SigmoidMatchesCpu) {
  auto cpu = cpu_d();
  const DVec x = {-100.0, -20.0, -1.5, 0.0, 0.3, 7.0, 100.0};
  DVec y(x.size()), dx(x.size());
  const DVec dy = {1.0, -2.0, 0.5, 1.0, 3.0, -1.0, 2.0};
  cpu->sigmoid_forward(x.data(), y.data(), int64_t(x.size()));
  cpu->sigmoid_backward(y.data(), dy.data(), dx.data(), int64_t(x.size()));
  FVec got(x.size()), gotdx(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    got[i] = tile::sigmoid(float(x[i]));
    gotdx[i] = tile::sigmoid_grad(got[i], float(dy[i]));
  }
  EXPECT_TRUE(close_rel(got, y, 1e-6));
  EXPECT_TRUE(close_rel(gotdx, dx, 1e-6));
}

}  // namespace
}  // namespace fwp
