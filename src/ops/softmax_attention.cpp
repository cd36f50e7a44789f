// CpuBackend: causal softmax attention (the Transformer baseline), forward,
// backward and single-step decoding.
//
// Queries are processed in blocks of kQueryBlock rows: one block's scores
// S = scale * Q_blk K^T live in a [kQueryBlock, steps] scratch matrix, so
// memory is O(block * steps) per thread instead of O(steps^2), and both the
// scores and their products with V are Eigen GEMMs. The forward stores the
// log-sum-exp of every row; the backward recomputes the probabilities from it.
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>

#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

namespace {

using cpu::ArrMap;
using cpu::ConstArrMap;

constexpr int64_t kQueryBlock = 64;

// Turns scores[r, 0..L) of the query block starting at step i0 into causal
// probabilities in place (entries j > i0 + r become 0) and returns each row's
// log-sum-exp in lse[r]. Subtracting the row maximum keeps exp() in range.
template <typename T>
void causal_softmax_rows(cpu::RowMat<T>& scores, int64_t i0, int64_t nb, int64_t L, T* lse) {
  for (int64_t r = 0; r < nb; ++r) {
    const int64_t valid = i0 + r + 1;
    auto row = ArrMap<T>(scores.data() + r * scores.cols(), L);
    auto head = row.head(valid);
    const T mx = head.maxCoeff();
    head = (head - mx).exp();
    const T sum = head.sum();
    head /= sum;
    row.tail(L - valid).setZero();
    lse[r] = mx + std::log(sum);
  }
}

// Same masking, from a stored log-sum-exp: p = exp(s - lse) for j <= i, else 0.
template <typename T>
void causal_probabilities_from_lse(cpu::RowMat<T>& scores, int64_t i0, int64_t nb, int64_t L, const T* lse) {
  for (int64_t r = 0; r < nb; ++r) {
    const int64_t valid = i0 + r + 1;
    auto row = ArrMap<T>(scores.data() + r * scores.cols(), L);
    row.head(valid) = (row.head(valid) - lse[r]).exp();
    row.tail(L - valid).setZero();
  }
}

}  // namespace

template <typename T>
void CpuBackend<T>::softmax_attention_forward(int64_t streams, int64_t steps, int64_t d, const T* q, const T* k,
                                              const T* v, T scale, T* out, T* lse) {
  if (streams <= 0 || steps <= 0) return;
  const int64_t blocks = (steps + kQueryBlock - 1) / kQueryBlock;
  const int64_t items = streams * blocks;
  // Query blocks are independent in the forward, so (stream, block) pairs are
  // the work items; later blocks see more keys, hence dynamic scheduling.
  const int nt = cpu::threads_for(num_threads_, items, 2 * kQueryBlock * steps * d);
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(nt)
  {
    // Every thread must reach the worksharing loop, so failures are recorded
    // and the remaining items skipped instead of leaving the region early.
    auto record = [&] {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    };
    cpu::RowMat<T> scores;
    bool ok = true;
    try {
      scores.resize(std::min(kQueryBlock, steps), steps);
    } catch (...) {
      record();
      ok = false;
    }
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t item = 0; item < items; ++item) {
      if (!ok) continue;
      try {
        const int64_t s = item / blocks;
        const int64_t i0 = (item % blocks) * kQueryBlock;
        const int64_t nb = std::min(kQueryBlock, steps - i0);
        const int64_t L = i0 + nb;  // keys this block can see
        const int64_t base = s * steps;
        auto sc = cpu::RowMap<T>(scores.data(), nb, L, Eigen::OuterStride<>(steps));
        sc.noalias() = scale * cpu::row_map(q + (base + i0) * d, nb, d, d) *
                       cpu::row_map(k + base * d, L, d, d).transpose();
        causal_softmax_rows(scores, i0, nb, L, lse + base + i0);
        cpu::row_map(out + (base + i0) * d, nb, d, d).noalias() = sc * cpu::row_map(v + base * d, L, d, d);
      } catch (...) {
        record();
        ok = false;
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

template <typename T>
void CpuBackend<T>::softmax_attention_backward(int64_t streams, int64_t steps, int64_t d, const T* q,
                                               const T* k, const T* v, const T* out, const T* lse,
                                               const T* d_out, T scale, T* dq, T* dk, T* dv) {
  // Per query block, with P recomputed from lse:
  //   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dO * O)),
  //   dQ = scale dS K,  dK += scale dS^T Q.
  // dK and dV collect contributions from every later query block, so a stream
  // is one work item.
  if (streams <= 0 || steps <= 0) return;
  cpu::parallel_for(num_threads_, streams, 5 * steps * steps * d, [&](int64_t s0, int64_t s1) {
    const int64_t rows = std::min(kQueryBlock, steps);
    cpu::RowMat<T> p(rows, steps), dp(rows, steps);
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t base = s * steps;
      auto dk_s = cpu::row_map(dk + base * d, steps, d, d);
      auto dv_s = cpu::row_map(dv + base * d, steps, d, d);
      dk_s.setZero();
      dv_s.setZero();
      for (int64_t i0 = 0; i0 < steps; i0 += kQueryBlock) {
        const int64_t nb = std::min(kQueryBlock, steps - i0);
        const int64_t L = i0 + nb;
        const auto q_b = cpu::row_map(q + (base + i0) * d, nb, d, d);
        const auto do_b = cpu::row_map(d_out + (base + i0) * d, nb, d, d);
        const auto k_l = cpu::row_map(k + base * d, L, d, d);
        const auto v_l = cpu::row_map(v + base * d, L, d, d);
        auto p_b = cpu::RowMap<T>(p.data(), nb, L, Eigen::OuterStride<>(steps));
        auto dp_b = cpu::RowMap<T>(dp.data(), nb, L, Eigen::OuterStride<>(steps));

        p_b.noalias() = scale * q_b * k_l.transpose();
        causal_probabilities_from_lse(p, i0, nb, L, lse + base + i0);
        dv_s.topRows(L).noalias() += p_b.transpose() * do_b;
        dp_b.noalias() = do_b * v_l.transpose();
        for (int64_t r = 0; r < nb; ++r) {
          const T centre = (ConstArrMap<T>(d_out + (base + i0 + r) * d, d) *
                            ConstArrMap<T>(out + (base + i0 + r) * d, d)).sum();
          auto ds = ArrMap<T>(dp.data() + r * steps, L);
          ds = ArrMap<T>(p.data() + r * steps, L) * (ds - centre);
        }
        // dp_b now holds dS.
        cpu::row_map(dq + (base + i0) * d, nb, d, d).noalias() = scale * dp_b * k_l;
        dk_s.topRows(L).noalias() += scale * dp_b.transpose() * q_b;
      }
    }
  });
}

template <typename T>
void CpuBackend<T>::softmax_attention_decode(int64_t streams, int64_t length, int64_t capacity, int64_t d,
                                             const T* q, const T* k_cache, const T* v_cache, T scale, T* out) {
  if (streams <= 0) return;
  if (length <= 0) {
    // Nothing to attend to: the empty sum.
    std::fill(out, out + streams * d, T(0));
    return;
  }
  cpu::parallel_for(num_threads_, streams, 4 * length * d, [&](int64_t s0, int64_t s1) {
    Eigen::Matrix<T, Eigen::Dynamic, 1> w(length);
    for (int64_t s = s0; s < s1; ++s) {
      const auto keys = cpu::row_map(k_cache + s * capacity * d, length, d, d);
      const auto values = cpu::row_map(v_cache + s * capacity * d, length, d, d);
      w.noalias() = scale * keys * cpu::ConstVecMap<T>(q + s * d, d);
      const T mx = w.maxCoeff();
      w = (w.array() - mx).exp().matrix();
      const T sum = w.sum();
      cpu::VecMap<T>(out + s * d, d).noalias() = values.transpose() * (w / sum);
    }
  });
}

#define FWP_INSTANTIATE_SOFTMAX_ATTENTION(T)                                                                   \
  template void CpuBackend<T>::softmax_attention_forward(int64_t, int64_t, int64_t, const T*, const T*,        \
                                                         const T*, T, T*, T*);                                 \
  template void CpuBackend<T>::softmax_attention_backward(int64_t, int64_t, int64_t, const T*, const T*,       \
                                                          const T*, const T*, const T*, const T*, T, T*, T*,   \
                                                          T*);                                                 \
  template void CpuBackend<T>::softmax_attention_decode(int64_t, int64_t, int64_t, int64_t, const T*,          \
                                                        const T*, const T*, T, T*);

FWP_INSTANTIATE_SOFTMAX_ATTENTION(float)
FWP_INSTANTIATE_SOFTMAX_ATTENTION(double)
#undef FWP_INSTANTIATE_SOFTMAX_ATTENTION

}  // namespace fwp
