// The fast-weight recurrence on the CPU: sum rule and delta rule, each as a
// per-step recurrence and as the chunkwise-parallel (WY / UT) form of Yang et
// al. 2024, forward and backward.
//
// Per stream the state W is [d_value][d_key], row-major, and
//   sum rule:   u_t = v_t
//   delta rule: u_t = beta_t (v_t - W_{t-1} k_t)
//   W_t = W_{t-1} + u_t k_t^T,   out_t = W_t q_t.
//
// The forward saves the state at the start of every block of L steps
// (L = the chunk length, for both forms), states[b] = W before step b L. The
// chunked backward reads its chunk-start states from there; the recurrent
// backward recomputes the states of each interval forward from its saved state
// with the forward's arithmetic (bit for bit the forward's states, in
// cache-sized sub-blocks: recurrent_backward_block_saved). Rebuilding them
// backwards from the final state instead, W_{t-1} = W_t - u_t k_t^T (what the
// backward does when it is given no saved states), leaves a float32 residue of
// the order of eps |W_T| in every early state, which grows with T and is
// amplified by attention normalisation (bench/grad_accuracy.cpp,
// bench/RESULTS.md). Both forms save the same states and write the same u, so
// the forward of one may feed the backward of the other. Memory beyond the inputs: the saved states,
// O(T / L * d_value * d_key) per stream, and O(d_value * d_key) per thread
// (plus O(C^2 + C d) for the chunked form, O((L / M + M) d_key B) for the
// recurrent one's recomputed states).
//
// Streams are independent and are spread over the backend's threads; each
// thread owns its scratch space.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "core/limits.h"
#include "core/aligned_vector.h"
#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {
namespace {

using cpu::row_map;

// The per-stream slices of the op's arguments (null where the op has none).
template <typename T>
struct StreamIn {
  const T* q;
  const T* k;
  const T* v;
  const T* beta;
};

template <typename T>
StreamIn<T> stream_in(const FastWeightShape& s, int64_t i, const T* q, const T* k, const T* v, const T* beta) {
  const int64_t tk = s.steps * s.d_key;
  const int64_t tv = s.steps * s.d_value;
  return {q ? q + i * tk : nullptr, k + i * tk, v + i * tv, beta ? beta + i * s.steps : nullptr};
}

// ---------------------------------------------------------------------------
// Recurrent form.
//
// Row i of W (value i) evolves on its own over the whole sequence: u_t[i],
// out_t[i] and the new row i need only row i, k_t, q_t, v_t[i] and beta_t.
// The backward keeps that property (dq_t and dk_t sum over the values, but
// they are outputs and feed nothing back). So the values are split into
// blocks of B, and each block runs through all steps while its slice of W
// stays in L1 (forward; the backward prefers wider blocks, see below).
//
// Working layout of a block: its slice of W transposed, [d_key][B]. The
// forward's reductions all run over d_key, so with this layout they become
// vector accumulations over the block's values (no horizontal sums):
//   pass 1: vbar += k_j Wt_j;  u = beta (v - vbar);
//   pass 2: Wt_j += k_j u;  out += q_j Wt_j.
// d_value is padded to a multiple of the block with zero values, which stay zero.
// ---------------------------------------------------------------------------

// The block kernels' per-row Eigen statements (du += k_j g and the like) must
// be inlined: GCC left `Blk += scalar * Row` as an out-of-line call in the
// backward (a quarter of the retrieval model's time at S = 40 went into that
// call), so the kernels are flattened (everything they call is inlined).
// Only in optimised builds without sanitizers: under ASan the flattened
// kernels (every Eigen call inlined and instrumented) took GCC over 15 minutes
// to compile, and a sanitizer build checks correctness, not speed.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FWP_ASAN_BUILD 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FWP_ASAN_BUILD 1
#endif
#if (defined(__GNUC__) || defined(__clang__)) && defined(__OPTIMIZE__) && !defined(FWP_ASAN_BUILD)
#define FWP_FLATTEN __attribute__((flatten))
#else
#define FWP_FLATTEN
#endif

template <typename T>
using AlignedVec = AlignedVector<T>;

constexpr int64_t kValuePad = 16;
// Bytes of W a forward block may occupy: most of a 48 KiB L1.
constexpr int64_t kBlockBytes = 32 * 1024;

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Block width: the widest of 64 / 32 / 16 values whose accumulators (B
// values) fit a few vector registers (<= 256 bytes) and whose padding of
// d_value (to a multiple of B) adds at most a quarter to the minimal padding
// (to a multiple of 16). With fit_l1 (the forward) the block's [d_key][B] slice
// of W must also fit kBlockBytes. The backward takes the wide block even when
// it spills to L2: its per-row horizontal sums (dq, dk) cost more than L2
// traffic (measured: d 256, float, 1.7x faster with B = 64 than with 16), and
// so does narrow blocking forced by an awkward d_value (d_value 200 as
// 13 x 16: 2.7x slower than 4 x 64 with 56 padding values).
template <typename T>
int recurrent_block(int64_t d_key, int64_t d_value, bool fit_l1) {
  const int64_t minimal = round_up(d_value, kValuePad);
  for (const int b : {64, 32}) {
    const int64_t bytes = static_cast<int64_t>(b * sizeof(T));
    const bool little_padding = 4 * round_up(d_value, b) <= 5 * minimal;
    if (bytes <= 256 && little_padding && (!fit_l1 || d_key * bytes <= kBlockBytes)) return b;
  }
  return 16;
}

// W [dv][dk] -> blocked transpose [dvp / B][dk][B] (padding zero), and back.
template <typename T>
void load_blocked(const T* W, int64_t dk, int64_t dv, int64_t dvp, int64_t B, T* Wb) {
  for (int64_t i0 = 0; i0 < dvp; i0 += B) {
    T* blk = Wb + i0 * dk;
    for (int64_t j = 0; j < dk; ++j)
      for (int64_t ii = 0; ii < B; ++ii) blk[j * B + ii] = i0 + ii < dv ? W[(i0 + ii) * dk + j] : T(0);
  }
}
template <typename T>
void store_blocked(const T* Wb, int64_t dk, int64_t dv, int64_t B, T* W) {
  for (int64_t i = 0; i < dv; ++i) {
    const T* col = Wb + (i / B) * B * dk + i % B;
    for (int64_t j = 0; j < dk; ++j) W[i * dk + j] = col[j * B];
  }
}

// A block of B values. The block loops are written with Eigen fixed-size arrays:
// they compile to explicit packet code, which the compiler's loop
// transformations (interchange of the j and value loops) cannot scalarise.
template <typename T, int B>
using ValueBlock = Eigen::Array<T, B, 1>;
template <typename T, int B>
using RowBlock = Eigen::Map<ValueBlock<T, B>, Eigen::AlignedMax>;

// x[0 .. nb) into a block, zero beyond nb. Full blocks (all but the last
// block of a row) move as whole packets instead of element by element (no
// measurable difference in the retrieval runs where this was tried; it keeps
// the loads and stores visible to the compiler as packet code).
template <typename T, int B>
ValueBlock<T, B> load_block(const T* x, int64_t nb) {
  if (nb == B) return Eigen::Map<const ValueBlock<T, B>>(x);
  ValueBlock<T, B> r = ValueBlock<T, B>::Zero();
  for (int64_t ii = 0; ii < nb; ++ii) r[ii] = x[ii];
  return r;
}

// The first nb values of a block to x[0 .. nb).
template <typename T, int B>
void store_block(const ValueBlock<T, B>& r, int64_t nb, T* x) {
  if (nb == B) {
    Eigen::Map<ValueBlock<T, B>> dst(x);
    dst = r;
    return;
  }
  for (int64_t ii = 0; ii < nb; ++ii) x[ii] = r[ii];
}

// Rows i0 .. i0 + nb of a [dv][dk] state from / to a block's [dk][B] slice.
template <typename T>
void save_block_state(const T* Wt, int64_t dk, int64_t dv, int64_t i0, int64_t nb, int64_t B, T* W) {
  for (int64_t ii = 0; ii < nb; ++ii)
    for (int64_t j = 0; j < dk; ++j) W[(i0 + ii) * dk + j] = Wt[j * B + ii];
}
template <typename T>
void load_block_state(const T* W, int64_t dk, int64_t i0, int64_t nb, int64_t B, T* Wt) {
  for (int64_t ii = 0; ii < nb; ++ii)
    for (int64_t j = 0; j < dk; ++j) Wt[j * B + ii] = W[(i0 + ii) * dk + j];
}

// One block of values (columns i0 .. i0 + B of W^T; nb of them real) through
// all steps. Wt: the block's [dk][B] slice.
template <typename T, int B, bool kDelta, bool kQuery>
FWP_FLATTEN void recurrent_forward_block(const StreamIn<T>& in, int64_t steps, int64_t dk, int64_t dv, int64_t i0, int64_t nb,
                             T* Wt, T* out, T* u, T* states, int64_t interval) {
  using Blk = ValueBlock<T, B>;
  using Row = RowBlock<T, B>;
  for (int64_t t = 0; t < steps; ++t) {
    if (states && t % interval == 0) save_block_state(Wt, dk, dv, i0, nb, B, states + (t / interval) * dv * dk);
    const T* kt = in.k + t * dk;
    Blk ub = load_block<T, B>(in.v + t * dv + i0, nb);
    if (kDelta) {
      Blk vbar = Blk::Zero();
      for (int64_t j = 0; j < dk; ++j) vbar += kt[j] * Row(Wt + j * B);
      ub = in.beta[t] * (ub - vbar);  // zero in the padding: v and W are zero there
    }
    if (kQuery) {
      const T* qt = in.q + t * dk;
      Blk ob = Blk::Zero();
      for (int64_t j = 0; j < dk; ++j) {
        Row w(Wt + j * B);
        w += kt[j] * ub;
        ob += qt[j] * w;
      }
      store_block<T, B>(ob, nb, out + t * dv + i0);
    } else {
      for (int64_t j = 0; j < dk; ++j) Row(Wt + j * B) += kt[j] * ub;
    }
    store_block<T, B>(ub, nb, u + t * dv + i0);
  }
}

// Backward of one block without saved states, t = T..1. On entry Wt / Gt hold
// the block of W_T^T (state_out) and of its gradient; on exit those of W_0. kOutGrad: q and d_out
// are present. With G = dW + d_out_t q_t^T the gradient of W_t, per step:
//   dq_t = W_t^T d_out_t,  du = G k_t,  dk_t = G^T u_t,  W_{t-1} = W_t - u_t k_t^T,
//   delta: vbar = W_{t-1} k_t,  dbeta_t = du . (v_t - vbar),  dv_t = beta du,
//          c = -beta du,  dW_{t-1} = G + c k_t^T,  dk_t += W_{t-1}^T c;
//   sum:   dv_t = du,  dW_{t-1} = G.
// dbeta uses the recomputed vbar rather than u / beta, which is unsafe for tiny
// beta. Pass A over the rows j of the block does the first line, pass B
// (delta only) the c terms. dq_t, dk_t and dbeta_t are sums over the values:
// the first block writes them, later blocks add their part.
template <typename T, int B, bool kDelta, bool kOutGrad>
FWP_FLATTEN void recurrent_backward_block(const StreamIn<T>& in, const T* u, const T* d_out, int64_t steps, int64_t dk,
                              int64_t dv, int64_t i0, int64_t nb, T* Wt, T* Gt, T* dq, T* dkey, T* dval,
                              T* dbeta) {
  using Blk = ValueBlock<T, B>;
  using Row = RowBlock<T, B>;
  // Without the delta rule and without an output gradient nothing reads W.
  constexpr bool kNeedW = kDelta || kOutGrad;
  const bool first = i0 == 0;
  for (int64_t t = steps - 1; t >= 0; --t) {
    const T* kt = in.k + t * dk;
    const T* qt = kOutGrad ? in.q + t * dk : nullptr;
    T* dqt = kOutGrad ? dq + t * dk : nullptr;
    T* dkt = dkey + t * dk;
    if (first) {
      if (kOutGrad) std::fill(dqt, dqt + dk, T(0));
      std::fill(dkt, dkt + dk, T(0));
    }
    const Blk go = kOutGrad ? load_block<T, B>(d_out + t * dv + i0, nb) : Blk::Zero();
    const Blk ub = load_block<T, B>(u + t * dv + i0, nb);
    Blk du = Blk::Zero();
    Blk vbar = Blk::Zero();
    for (int64_t j = 0; j < dk; ++j) {  // pass A
      Row w(Wt + j * B);
      Row g(Gt + j * B);
      const T kj = kt[j];
      if (kOutGrad) {
        dqt[j] += (w * go).sum();
        g += qt[j] * go;
      }
      du += kj * g;
      dkt[j] += (g * ub).sum();
      if (kNeedW) {
        w -= kj * ub;
        if (kDelta) vbar += kj * w;
      }
    }
    if (!kDelta) {
      store_block<T, B>(du, nb, dval + t * dv + i0);
      continue;
    }
    const T b = in.beta[t];
    const Blk vb = load_block<T, B>(in.v + t * dv + i0, nb);
    const T db = (du * (vb - vbar)).sum();  // zero in the padding
    dbeta[t] = first ? db : dbeta[t] + db;
    const Blk dvb = b * du;
    store_block<T, B>(dvb, nb, dval + t * dv + i0);
    const Blk c = -dvb;
    for (int64_t j = 0; j < dk; ++j) {  // pass B
      Row w(Wt + j * B);
      Row g(Gt + j * B);
      g += kt[j] * c;
      dkt[j] += (w * c).sum();
    }
  }
}

// Steps per recompute sub-block (M below) for a [dk][B] slice of sizeof(T)
// bytes and an interval of L steps: as many as keep M recomputed states within
// kRecomputeBytes (a quarter of a 1 MiB L2), at least 4, at most L. Small
// states thus recompute a whole interval at once (one recomputing update per
// step: measured faster than sub-blocks that fit L1, which need two); only
// wide states (e.g. d_key 256 x 64 values in float, 64 KiB a slice) split it.
constexpr int64_t kRecomputeBytes = 256 * 1024;
inline int64_t recompute_sub_block(int64_t slice_bytes, int64_t interval) {
  const int64_t fit = kRecomputeBytes / std::max<int64_t>(slice_bytes, 1) - 1;
  return std::max<int64_t>(1, std::min(interval, std::max<int64_t>(4, fit)));
}

// Slices of scratch the saved-state backward needs per thread: the
// sub-block checkpoints of one interval plus one sub-block's states.
inline int64_t recompute_slices(int64_t interval, int64_t sub) { return (interval + sub - 1) / sub + sub; }

// dst = src + u_t k_t^T on a block's [dk][B] slice (dst may be src): the
// forward's update, with the same arithmetic, so the result is its W bit for bit.
template <typename T, int B>
FWP_FLATTEN void advance_block_state(const T* src, T* dst, const T* kt, const ValueBlock<T, B>& ub, int64_t dk) {
  using Row = RowBlock<T, B>;
  using ConstRow = Eigen::Map<const ValueBlock<T, B>, Eigen::AlignedMax>;
  for (int64_t j = 0; j < dk; ++j) {
    Row w(dst + j * B);
    w = ConstRow(src + j * B);
    w += kt[j] * ub;
  }
}

// The same backward with the forward's saved states, so every W_t is the
// forward's own (bit for bit; no residue of rebuilding, which matters where a
// denominator is eps: a column of W_t that is exactly zero must stay zero,
// since dq_t = W_t^T d_out_t / eps). Per interval of L steps (last first) the
// states are recomputed from the saved one with the forward's arithmetic, in
// two levels when an interval's states would not fit kRecomputeBytes (all
// L + 1 states of an interval are 65 slices at L = 64, 4 MiB for a 256 x 64
// float state):
//   1. from the saved state, the checkpoints cp[m] = W before step c0 + m M
//      (one slice updated in place, copied every M steps);
//   2. per sub-block of M steps (last first), its states from its
//      checkpoint, sub[i] = W before step a0 + 1 + i, then the backward of
//      those steps as in recurrent_backward_block.
// With M = L (small states) level 1 does nothing.
// With two levels that is two recomputing updates per step instead of one. Gt holds the
// gradient as above; Wt is not used. scratch: recompute_slices() slices of
// [dk][B], zero in the padding columns (set once by the caller; u is zero there).
template <typename T, int B, bool kDelta, bool kOutGrad>
FWP_FLATTEN void recurrent_backward_block_saved(const StreamIn<T>& in, const T* u, const T* d_out, int64_t steps, int64_t dk,
                                    int64_t dv, int64_t i0, int64_t nb, T* Gt, T* dq, T* dkey, T* dval, T* dbeta,
                                    const T* states, int64_t interval, T* scratch) {
  using Blk = ValueBlock<T, B>;
  using Row = RowBlock<T, B>;
  using ConstRow = Eigen::Map<const ValueBlock<T, B>, Eigen::AlignedMax>;
  constexpr bool kNeedW = kDelta || kOutGrad;
  const bool first = i0 == 0;
  const int64_t slice = dk * B;
  const int64_t sub = recompute_sub_block(slice * static_cast<int64_t>(sizeof(T)), interval);
  T* cp = scratch;                                           // [ceil(L / M)][dk][B]
  T* sub_states = scratch + (interval + sub - 1) / sub * slice;  // [M][dk][B]
  const int64_t last = steps > 0 ? (steps - 1) / interval * interval : 0;
  for (int64_t c0 = last; c0 >= 0 && steps > 0; c0 -= interval) {
    const int64_t c1 = std::min(steps, c0 + interval);
    if (kNeedW) {  // level 1: the checkpoints of this interval
      load_block_state(states + (c0 / interval) * dv * dk, dk, i0, nb, B, cp);
      for (int64_t a0 = c0 + sub; a0 < c1; a0 += sub) {
        T* w = cp + (a0 - c0) / sub * slice;
        std::memcpy(w, w - slice, sizeof(T) * static_cast<size_t>(slice));
        for (int64_t t = a0 - sub; t < a0; ++t) {
          advance_block_state<T, B>(w, w, in.k + t * dk, load_block<T, B>(u + t * dv + i0, nb), dk);
        }
      }
    }
    for (int64_t a0 = c0 + (c1 - 1 - c0) / sub * sub; a0 >= c0; a0 -= sub) {
      const int64_t a1 = std::min(c1, a0 + sub);
      const T* start = cp + (a0 - c0) / sub * slice;
      // W before step a0 + i: the checkpoint for i = 0, else sub_states[i - 1].
      auto state_before = [&](int64_t t) { return t == a0 ? start : sub_states + (t - a0 - 1) * slice; };
      if (kNeedW) {  // level 2: the sub-block's states
        for (int64_t t = a0; t < a1; ++t) {
          advance_block_state<T, B>(state_before(t), sub_states + (t - a0) * slice, in.k + t * dk,
                                    load_block<T, B>(u + t * dv + i0, nb), dk);
        }
      }
      for (int64_t t = a1 - 1; t >= a0; --t) {
        const T* wcur = state_before(t + 1);  // W_t
        const T* wprev = state_before(t);     // W_{t-1}
        const T* kt = in.k + t * dk;
        const T* qt = kOutGrad ? in.q + t * dk : nullptr;
        T* dqt = kOutGrad ? dq + t * dk : nullptr;
        T* dkt = dkey + t * dk;
        if (first) {
          if (kOutGrad) std::fill(dqt, dqt + dk, T(0));
          std::fill(dkt, dkt + dk, T(0));
        }
        const Blk go = kOutGrad ? load_block<T, B>(d_out + t * dv + i0, nb) : Blk::Zero();
        const Blk ub = load_block<T, B>(u + t * dv + i0, nb);
        Blk du = Blk::Zero();
        Blk vbar = Blk::Zero();
        for (int64_t j = 0; j < dk; ++j) {  // pass A
          Row g(Gt + j * B);
          const T kj = kt[j];
          if (kOutGrad) {
            dqt[j] += (ConstRow(wcur + j * B) * go).sum();
            g += qt[j] * go;
          }
          du += kj * g;
          dkt[j] += (g * ub).sum();
          if (kDelta) vbar += kj * ConstRow(wprev + j * B);
        }
        if (!kDelta) {
          store_block<T, B>(du, nb, dval + t * dv + i0);
          continue;
        }
        const T b = in.beta[t];
        const Blk vb = load_block<T, B>(in.v + t * dv + i0, nb);
        const T db = (du * (vb - vbar)).sum();
        dbeta[t] = first ? db : dbeta[t] + db;
        const Blk dvb = b * du;
        store_block<T, B>(dvb, nb, dval + t * dv + i0);
        const Blk c = -dvb;
        for (int64_t j = 0; j < dk; ++j) {  // pass B
          Row g(Gt + j * B);
          g += kt[j] * c;
          dkt[j] += (ConstRow(wprev + j * B) * c).sum();
        }
      }
    }
  }
}

// One stream: every block of the blocked layout in turn.
// Saved states (nullable) of one stream: [ceil(steps / interval)][dv][dk];
// hist: the backward's scratch for recomputed states (recompute_slices() slices
// of [dk][B], zeroed).
template <typename T>
struct Saved {
  T* states;
  int64_t interval;
  std::remove_const_t<T>* hist = nullptr;
};

template <typename T, int B, bool kDelta, bool kQuery>
void recurrent_forward_stream(const StreamIn<T>& in, int64_t steps, int64_t dk, int64_t dv, int64_t dvp, T* Wb,
                              T* out, T* u, Saved<T> sv) {
  for (int64_t i0 = 0; i0 < dvp; i0 += B) {
    recurrent_forward_block<T, B, kDelta, kQuery>(in, steps, dk, dv, i0, std::min<int64_t>(B, dv - i0),
                                                  Wb + i0 * dk, out, u, sv.states, sv.interval);
  }
}

template <typename T, int B, bool kDelta, bool kOutGrad>
void recurrent_backward_stream(const StreamIn<T>& in, const T* u, const T* d_out, int64_t steps, int64_t dk,
                               int64_t dv, int64_t dvp, T* Wb, T* Gb, T* dq, T* dkey, T* dval, T* dbeta,
                               Saved<const T> sv) {
  for (int64_t i0 = 0; i0 < dvp; i0 += B) {
    if (sv.states) {
      recurrent_backward_block_saved<T, B, kDelta, kOutGrad>(in, u, d_out, steps, dk, dv, i0,
                                                             std::min<int64_t>(B, dv - i0), Gb + i0 * dk, dq, dkey,
                                                             dval, dbeta, sv.states, sv.interval, sv.hist);
    } else {
      recurrent_backward_block<T, B, kDelta, kOutGrad>(in, u, d_out, steps, dk, dv, i0,
                                                       std::min<int64_t>(B, dv - i0), Wb + i0 * dk, Gb + i0 * dk,
                                                       dq, dkey, dval, dbeta);
    }
  }
}

// The kernels above for the block width chosen at run time.
template <typename T, bool kDelta, bool kQuery>
void recurrent_forward(int block, const StreamIn<T>& in, int64_t steps, int64_t dk, int64_t dv, int64_t dvp, T* Wt,
                       T* out, T* u, Saved<T> sv) {
  switch (block) {
    case 64: recurrent_forward_stream<T, 64, kDelta, kQuery>(in, steps, dk, dv, dvp, Wt, out, u, sv); break;
    case 32: recurrent_forward_stream<T, 32, kDelta, kQuery>(in, steps, dk, dv, dvp, Wt, out, u, sv); break;
    default: recurrent_forward_stream<T, 16, kDelta, kQuery>(in, steps, dk, dv, dvp, Wt, out, u, sv); break;
  }
}

template <typename T, bool kDelta, bool kOutGrad>
void recurrent_backward(int block, const StreamIn<T>& in, const T* u, const T* d_out, int64_t steps, int64_t dk,
                        int64_t dv, int64_t dvp, T* Wt, T* Gt, T* dq, T* dkey, T* dval, T* dbeta,
                        Saved<const T> sv) {
  switch (block) {
    case 64:
      recurrent_backward_stream<T, 64, kDelta, kOutGrad>(in, u, d_out, steps, dk, dv, dvp, Wt, Gt, dq, dkey, dval,
                                                         dbeta, sv);
      break;
    case 32:
      recurrent_backward_stream<T, 32, kDelta, kOutGrad>(in, u, d_out, steps, dk, dv, dvp, Wt, Gt, dq, dkey, dval,
                                                         dbeta, sv);
      break;
    default:
      recurrent_backward_stream<T, 16, kDelta, kOutGrad>(in, u, d_out, steps, dk, dv, dvp, Wt, Gt, dq, dkey, dval,
                                                         dbeta, sv);
      break;
  }
}

// ---------------------------------------------------------------------------
// Chunked form. For a chunk of c steps with rows K, Q [c, dk], V, U [c, dv],
// beta [c] and state W at the chunk start:
//   A = strictly_lower(diag(beta) K K^T)
//   (I + A) U = diag(beta) (V - K W^T)          (delta; U = V for the sum rule)
//   O = Q W^T + lower_incl(Q K^T) U
//   W <- W + U^T K
// Row i of the solve is u_i + beta_i sum_{j<i} (k_i . k_j) u_j = beta_i (v_i - W k_i),
// i.e. exactly the recurrence, so U is the u of the recurrent form.
// ---------------------------------------------------------------------------

// Scratch space of one thread for the chunked form.
template <typename T>
struct ChunkScratch {
  AlignedVector<T> g, a, e, du, kw;
  ChunkScratch(int64_t chunk, int64_t dv)
      : g(static_cast<size_t>(chunk * chunk)),
        a(static_cast<size_t>(chunk * chunk)),
        e(static_cast<size_t>(chunk * chunk)),
        du(static_cast<size_t>(chunk * dv)),
        kw(static_cast<size_t>(chunk * dv)) {}
};

// Solves (I + L) X = X in place, L = the strictly lower part of `a` (the rest
// of `a` is not read), by forward substitution, one row of X at a time: each
// row is a small matrix-vector product over the rows already solved. For the
// chunk sizes used here this is several times faster than Eigen's blocked
// triangular solver.
template <typename MatA, typename MatX>
void unit_lower_solve(const MatA& a, MatX& x) {
  for (int64_t i = 1; i < x.rows(); ++i) x.row(i).noalias() -= a.row(i).head(i) * x.topRows(i);
}

// Solves (I + L)^T X = X in place, given at = L^T: its strictly upper part is
// read. Backward substitution from the last row.
template <typename MatA, typename MatX>
void unit_upper_solve(const MatA& at, MatX& x) {
  const int64_t n = x.rows();
  for (int64_t i = n - 2; i >= 0; --i) x.row(i).noalias() -= at.row(i).tail(n - 1 - i) * x.bottomRows(n - 1 - i);
}

// Zeroes the strictly upper part of a square matrix, so that the triangular
// products below can run as plain (faster) matrix products.
template <typename Mat>
void keep_lower(Mat& m) {
  for (int64_t i = 0; i + 1 < m.rows(); ++i) m.row(i).tail(m.cols() - 1 - i).setZero();
}

template <typename T>
void chunked_forward_stream(bool delta, const StreamIn<T>& in, int64_t steps, int64_t dk, int64_t dv,
                            int64_t chunk, ChunkScratch<T>& ws, T* W_ptr, T* out, T* u, T* states) {
  auto W = row_map(W_ptr, dv, dk, dk);
  for (int64_t t0 = 0; t0 < steps; t0 += chunk) {
    if (states) std::memcpy(states + (t0 / chunk) * dv * dk, W_ptr, sizeof(T) * static_cast<size_t>(dv * dk));
    const int64_t c = std::min(chunk, steps - t0);
    const auto K = row_map(in.k + t0 * dk, c, dk, dk);
    const auto V = row_map(in.v + t0 * dv, c, dv, dv);
    auto U = row_map(u + t0 * dv, c, dv, dv);
    U = V;
    if (delta) {
      const T* b = in.beta + t0;
      U.noalias() -= K * W.transpose();
      auto A = row_map(ws.a.data(), c, c, c);
      A.noalias() = K * K.transpose();
      for (int64_t i = 0; i < c; ++i) {
        U.row(i) *= b[i];
        A.row(i).head(i) *= b[i];  // only the strictly lower part is read
      }
      unit_lower_solve(A, U);
    }
    if (in.q) {
      const auto Q = row_map(in.q + t0 * dk, c, dk, dk);
      auto O = row_map(out + t0 * dv, c, dv, dv);
      auto P = row_map(ws.g.data(), c, c, c);
      P.noalias() = Q * K.transpose();
      keep_lower(P);
      O.noalias() = Q * W.transpose();
      O.noalias() += P * U;
    }
    W.noalias() += U.transpose() * K;
  }
}

// Backward of the chunked form for one stream, chunks in reverse order. On
// entry W holds the final state and dW its gradient; on exit dW holds the
// gradient of W_0. The chunk-start states are the saved ones, or (states null)
// rebuilt from the final state, W_start = W_end - U^T K. Per chunk (W now the chunk-start state, dW the gradient of
// the chunk-end state, dO the output gradient):
//   dU = K dW^T + lower_incl(Q K^T)^T dO      dK = U dW + dP^T Q
//   dP = lower_incl(dO U^T)                    dQ = dO W + dP K
//   dW_start = dW + dO^T Q  (+ the delta terms below)
// Delta rule, through (I + A) U = R, R = diag(beta) (V - K W^T):
//   dR = (I + A)^{-T} dU,  dA = -strictly_lower(dR U^T),
//   dbeta_i = sum_{j<i} dA_ij (k_i . k_j) + dR_i . (v_i - W k_i),
//   dK += (D + D^T) K with D = diag(beta) dA,  dV = diag(beta) dR,
//   Z = -diag(beta) dR:  dK += Z W,  dW_start += Z^T K.
template <typename T>
void chunked_backward_stream(bool delta, const StreamIn<T>& in, const T* u, const T* d_out, int64_t steps,
                             int64_t dk, int64_t dv, int64_t chunk, ChunkScratch<T>& ws, T* W_ptr, T* dW_ptr,
                             T* dq, T* dkey, T* dval, T* dbeta, const T* states) {
  auto W = row_map(W_ptr, dv, dk, dk);
  auto dW = row_map(dW_ptr, dv, dk, dk);
  // The sum rule without an output gradient never reads W.
  const bool need_w = delta || d_out != nullptr;
  const int64_t n_chunks = ceil_div(steps, chunk);
  for (int64_t ci = n_chunks - 1; ci >= 0; --ci) {
    const int64_t t0 = ci * chunk;
    const int64_t c = std::min(chunk, steps - t0);
    const auto K = row_map(in.k + t0 * dk, c, dk, dk);
    const auto U = row_map(u + t0 * dv, c, dv, dv);
    auto dK = row_map(dkey + t0 * dk, c, dk, dk);
    auto dU = row_map(ws.du.data(), c, dv, dv);

    if (need_w) {  // the chunk-start state
      if (states) {
        std::memcpy(W_ptr, states + ci * dv * dk, sizeof(T) * static_cast<size_t>(dv * dk));
      } else {
        W.noalias() -= U.transpose() * K;
      }
    }
    dU.noalias() = K * dW.transpose();
    dK.noalias() = U * dW;

    if (in.q) {
      auto dQ = row_map(dq + t0 * dk, c, dk, dk);
      if (d_out) {
        const auto Q = row_map(in.q + t0 * dk, c, dk, dk);
        const auto dO = row_map(d_out + t0 * dv, c, dv, dv);
        auto P = row_map(ws.g.data(), c, c, c);
        auto dP = row_map(ws.e.data(), c, c, c);
        P.noalias() = Q * K.transpose();
        keep_lower(P);
        dU.noalias() += P.transpose() * dO;
        dP.noalias() = dO * U.transpose();
        keep_lower(dP);
        dQ.noalias() = dO * W;
        dQ.noalias() += dP * K;
        dK.noalias() += dP.transpose() * Q;
        dW.noalias() += dO.transpose() * Q;
      } else {
        dQ.setZero();
      }
    }

    auto dV = row_map(dval + t0 * dv, c, dv, dv);
    if (!delta) {
      dV = dU;
      continue;
    }

    const T* b = in.beta + t0;
    const auto V = row_map(in.v + t0 * dv, c, dv, dv);
    auto G = row_map(ws.g.data(), c, c, c);   // K K^T (symmetric)
    auto At = row_map(ws.a.data(), c, c, c);  // A^T: At_ji = beta_i (k_i . k_j) for j < i
    auto D = row_map(ws.e.data(), c, c, c);
    auto KW = row_map(ws.kw.data(), c, dv, dv);
    G.noalias() = K * K.transpose();
    for (int64_t j = 0; j + 1 < c; ++j) {
      for (int64_t i = j + 1; i < c; ++i) At(j, i) = b[i] * G(j, i);
    }
    unit_upper_solve(At, dU);  // dU is now dR
    D.noalias() = dU * U.transpose();
    KW = V;
    KW.noalias() -= K * W.transpose();  // V - K W^T
    for (int64_t i = 0; i < c; ++i) {
      // dA_ij = -D_ij for j < i; D becomes the symmetric diag(beta) dA + (diag(beta) dA)^T.
      T db = -D.row(i).head(i).dot(G.row(i).head(i));
      db += dU.row(i).dot(KW.row(i));
      dbeta[t0 + i] = db;
      D.row(i).head(i) *= -b[i];
      D(i, i) = T(0);
    }
    for (int64_t i = 0; i < c; ++i) {
      for (int64_t j = i + 1; j < c; ++j) D(i, j) = D(j, i);
    }
    dK.noalias() += D * K;
    for (int64_t i = 0; i < c; ++i) {
      dV.row(i) = b[i] * dU.row(i);
      dU.row(i) *= -b[i];  // Z
    }
    dK.noalias() += dU * W;
    dW.noalias() += dU.transpose() * K;
  }
}

// Per-stream cost estimates (scalar operations) for the thread heuristic.
int64_t stream_cost(const FastWeightShape& s) {
  return std::max<int64_t>(1, 4 * s.steps * s.d_key * s.d_value);
}

}  // namespace

// ---------------------------------------------------------------------------
// Algorithm choice, by measurement (2-core AVX-512 Xeon, float, one thread,
// forward + backward, CPU time; sum and delta rule behave alike):
//   d_key x d_value   recurrent   chunked (best C)      (T = 1024, 2 streams)
//   16 x 16             0.31 ms     0.87 ms (16)
//   32 x 32             0.74        1.62    (16)
//   64 x 64             2.5         3.3     (16)
//   128 x 32, 256 x 32, 512 x 16, 96 x 96: within 5-10% of each other
//   128 x 64            7.3         7.7     (32)
//   256 x 64           16.6        13.8     (32)
//   128 x 128          16          11.9     (16-32)
//   256 x 256          71          40       (64)
// The recurrent kernel keeps a block of W in L1 and does the minimum of
// arithmetic, so it wins while the state is small; once the state outgrows L1
// (and the backward's per-row sums pile up) the chunked form's matrix products
// win, for any T >= ~16 (at 128 x 128 the chunked form is ahead from T = 16).
// Very short calls (decoding) stay recurrent. Re-measured with non-square
// states (32 streams, T = 400, delta rule, with and without q; the retrieval
// model writes d_value = S): 64 x 200 recurrent 55 vs chunked 51 ms,
// 128 x 80 46 vs 39, 64 x 128 30 vs 35, 32 x 200 38 vs 33 (without q; with q
// the recurrent form is ahead there), so the crossover is a state of about
// 96 x 96 values.
// ---------------------------------------------------------------------------
template <typename T>
Algorithm CpuBackend<T>::choose_algorithm(UpdateRule /*rule*/, const FastWeightShape& shape) {
  constexpr int64_t kChunkedMinState = 96 * 96;
  constexpr int64_t kChunkedMinSteps = 8;
  if (shape.steps < kChunkedMinSteps || shape.d_key * shape.d_value < kChunkedMinState) return Algorithm::Recurrent;
  return Algorithm::Chunked;
}

// Measured as above: C = 16 is best up to d = 64, 32 around d = 128, 64 from a
// 256 x 256 state on (the c x c products and the substitution grow with C,
// the per-chunk overheads shrink).
template <typename T>
int64_t CpuBackend<T>::default_chunk_size(const FastWeightShape& shape) {
  if (std::max(shape.d_key, shape.d_value) <= 64) return 16;
  if (shape.d_key * shape.d_value < 256 * 256) return 32;
  return 64;
}

template <typename T>
int64_t CpuBackend<T>::fast_weight_state_interval(const FastWeightShape& shape, int64_t chunk_size) {
  check_chunk_size(chunk_size, "chunk_size");  // the forward and backward come through here too
  return chunk_size > 0 ? chunk_size : default_chunk_size(shape);
}

template <typename T>
void CpuBackend<T>::fast_weight_forward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                        const FastWeightShape& shape, const T* q, const T* k, const T* v,
                                        const T* beta, const T* state_in, T* out, T* u, T* state_out,
                                        T* states) {
  const int64_t dk = shape.d_key;
  const int64_t dv = shape.d_value;
  const int64_t steps = shape.steps;
  const int64_t state_size = dk * dv;
  const bool delta = rule == UpdateRule::Delta;
  if (algo == Algorithm::Auto) algo = choose_algorithm(rule, shape);
  const bool chunked = algo == Algorithm::Chunked && steps > 0;
  const int64_t chunk = fast_weight_state_interval(shape, chunk_size);
  const int64_t n_states = ceil_div(steps, chunk);
  const int block = recurrent_block<T>(dk, dv, true);
  const int64_t dvp = round_up(dv, block);

  cpu::parallel_for(num_threads(), shape.streams, stream_cost(shape), [&](int64_t begin, int64_t end) {
    std::unique_ptr<ChunkScratch<T>> ws;
    AlignedVec<T> wt;
    if (chunked) {
      ws = std::make_unique<ChunkScratch<T>>(std::min(chunk, steps), dv);
    } else {
      wt.resize(static_cast<size_t>(dk * dvp));
    }
    for (int64_t s = begin; s < end; ++s) {
      T* W = state_out + s * state_size;
      const T* W0 = state_in ? state_in + s * state_size : nullptr;
      const StreamIn<T> in = stream_in(shape, s, q, k, v, beta);
      T* out_s = q ? out + s * steps * dv : nullptr;
      T* u_s = u + s * steps * dv;
      T* states_s = states ? states + s * n_states * state_size : nullptr;
      if (chunked) {
        if (!W0) {
          std::fill(W, W + state_size, T(0));
        } else if (W0 != W) {
          std::memcpy(W, W0, sizeof(T) * static_cast<size_t>(state_size));
        }
        chunked_forward_stream(delta, in, steps, dk, dv, chunk, *ws, W, out_s, u_s, states_s);
        continue;
      }
      if (W0) {
        load_blocked(W0, dk, dv, dvp, block, wt.data());
      } else {
        std::fill(wt.begin(), wt.end(), T(0));
      }
      T* Wt = wt.data();
      const Saved<T> sv{states_s, chunk};
      if (delta) {
        if (q) recurrent_forward<T, true, true>(block, in, steps, dk, dv, dvp, Wt, out_s, u_s, sv);
        else recurrent_forward<T, true, false>(block, in, steps, dk, dv, dvp, Wt, out_s, u_s, sv);
      } else {
        if (q) recurrent_forward<T, false, true>(block, in, steps, dk, dv, dvp, Wt, out_s, u_s, sv);
        else recurrent_forward<T, false, false>(block, in, steps, dk, dv, dvp, Wt, out_s, u_s, sv);
      }
      store_blocked(wt.data(), dk, dv, block, W);
    }
  });
}

template <typename T>
void CpuBackend<T>::fast_weight_backward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                         const FastWeightShape& shape, const T* q, const T* k, const T* v,
                                         const T* beta, const T* u, const T* state_out, const T* d_out,
                                         const T* d_state_out, T* dq, T* dk, T* dv, T* dbeta, T* d_state_in,
                                         const T* states) {
  const int64_t d_key = shape.d_key;
  const int64_t d_value = shape.d_value;
  const int64_t steps = shape.steps;
  const int64_t state_size = d_key * d_value;
  const bool delta = rule == UpdateRule::Delta;
  if (algo == Algorithm::Auto) algo = choose_algorithm(rule, shape);
  const bool chunked = algo == Algorithm::Chunked && steps > 0;
  const int64_t chunk = fast_weight_state_interval(shape, chunk_size);
  const int64_t n_states = ceil_div(steps, chunk);
  const int block = recurrent_block<T>(d_key, d_value, false);
  const int64_t dvp = round_up(d_value, block);
  // An output gradient only exists together with the query.
  const T* d_out_used = q ? d_out : nullptr;

  cpu::parallel_for(num_threads(), shape.streams, stream_cost(shape), [&](int64_t begin, int64_t end) {
    // The state and its gradient: [d_value][d_key] for the chunked form, the
    // blocked transpose for the recurrent one.
    const int64_t work_size = chunked ? state_size : d_key * dvp;
    AlignedVec<T> W(static_cast<size_t>(work_size));
    AlignedVec<T> dW(static_cast<size_t>(work_size));
    std::unique_ptr<ChunkScratch<T>> ws;
    if (chunked) ws = std::make_unique<ChunkScratch<T>>(std::min(chunk, steps), d_value);
    // The recurrent form's recomputed states of one interval (one value block).
    AlignedVec<T> hist;
    if (!chunked && states) {
      const int64_t slice = d_key * block;
      const int64_t sub = recompute_sub_block(slice * static_cast<int64_t>(sizeof(T)), chunk);
      hist.assign(static_cast<size_t>(recompute_slices(chunk, sub) * slice), T(0));
    }
    for (int64_t s = begin; s < end; ++s) {
      const T* Wend = state_out + s * state_size;
      const T* dWend = d_state_out ? d_state_out + s * state_size : nullptr;
      const StreamIn<T> in = stream_in(shape, s, q, k, v, beta);
      const int64_t off_k = s * steps * d_key;
      const int64_t off_v = s * steps * d_value;
      const T* u_s = u + off_v;
      const T* d_out_s = d_out_used ? d_out_used + off_v : nullptr;
      T* dq_s = q ? dq + off_k : nullptr;
      T* dbeta_s = delta ? dbeta + s * steps : nullptr;
      const T* states_s = states ? states + s * n_states * state_size : nullptr;
      if (chunked) {
        std::memcpy(W.data(), Wend, sizeof(T) * static_cast<size_t>(state_size));
        if (dWend) {
          std::memcpy(dW.data(), dWend, sizeof(T) * static_cast<size_t>(state_size));
        } else {
          std::fill(dW.begin(), dW.end(), T(0));
        }
        chunked_backward_stream(delta, in, u_s, d_out_s, steps, d_key, d_value, chunk, *ws, W.data(), dW.data(),
                                dq_s, dk + off_k, dv + off_v, dbeta_s, states_s);
        if (d_state_in) {
          std::memcpy(d_state_in + s * state_size, dW.data(), sizeof(T) * static_cast<size_t>(state_size));
        }
        continue;
      }
      load_blocked(Wend, d_key, d_value, dvp, block, W.data());
      if (dWend) {
        load_blocked(dWend, d_key, d_value, dvp, block, dW.data());
      } else {
        std::fill(dW.begin(), dW.end(), T(0));
      }
      if (q && !d_out_s) std::fill(dq_s, dq_s + steps * d_key, T(0));
      T* dk_s = dk + off_k;
      T* dv_s = dv + off_v;
      const Saved<const T> sv{states_s, chunk, hist.data()};
      if (delta) {
        if (d_out_s) {
          recurrent_backward<T, true, true>(block, in, u_s, d_out_s, steps, d_key, d_value, dvp, W.data(),
                                            dW.data(), dq_s, dk_s, dv_s, dbeta_s, sv);
        } else {
          recurrent_backward<T, true, false>(block, in, u_s, d_out_s, steps, d_key, d_value, dvp, W.data(),
                                             dW.data(), dq_s, dk_s, dv_s, dbeta_s, sv);
        }
      } else {
        if (d_out_s) {
          recurrent_backward<T, false, true>(block, in, u_s, d_out_s, steps, d_key, d_value, dvp, W.data(),
                                             dW.data(), dq_s, dk_s, dv_s, dbeta_s, sv);
        } else {
          recurrent_backward<T, false, false>(block, in, u_s, d_out_s, steps, d_key, d_value, dvp, W.data(),
                                              dW.data(), dq_s, dk_s, dv_s, dbeta_s, sv);
        }
      }
      if (d_state_in) store_blocked(dW.data(), d_key, d_value, block, d_state_in + s * state_size);
    }
  });
}

// Only the members defined here are instantiated (the rest of the class lives
// in the other ops files).
#define FWP_INSTANTIATE_FAST_WEIGHT(T)                                                                        \
  template Algorithm CpuBackend<T>::choose_algorithm(UpdateRule, const FastWeightShape&);                     \
  template int64_t CpuBackend<T>::default_chunk_size(const FastWeightShape&);                                 \
  template int64_t CpuBackend<T>::fast_weight_state_interval(const FastWeightShape&, int64_t);                \
  template void CpuBackend<T>::fast_weight_forward(UpdateRule, Algorithm, int64_t, const FastWeightShape&,    \
                                                   const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                                   T*, T*);                                                       \
  template void CpuBackend<T>::fast_weight_backward(UpdateRule, Algorithm, int64_t, const FastWeightShape&,   \
                                                    const T*, const T*, const T*, const T*, const T*,         \
                                                    const T*, const T*, const T*, T*, T*, T*, T*, T*, \
                                                    const T*);

FWP_INSTANTIATE_FAST_WEIGHT(float)
FWP_INSTANTIATE_FAST_WEIGHT(double)
#undef FWP_INSTANTIATE_FAST_WEIGHT

}  // namespace fwp
