// CpuBackend: causal softmax attention (the Transformer baseline), forward,
// backward and single-step decoding; and non-causal cross attention (queries
// over a whole key sequence), at the end of the file.
//
// Flash-attention style tiling: per stream, queries are processed in blocks of
// kQueryVecs SIMD vectors (64 floats / 32 doubles with AVX-512) and keys in
// blocks of up to kKeyBlock rows, so one score tile lives in L1/L2 and memory is
// O(tile) per thread. Key blocks entirely above the diagonal are never visited;
// only the blocks that cross it are masked.
//
// Tiles are stored TRANSPOSED, keys x queries: a tile row holds one key against
// every query of the block. Then the softmax statistics of the block's queries
// (running max, sum, log-sum-exp) are plain SIMD vectors and need no horizontal
// reductions, and every product whose output spans the query block is a small
// register-blocked kernel that broadcasts one operand straight from q/k/v (no
// packing). The remaining products (dK, dV: output rows are keys, columns are
// features) use a second kernel over feature columns padded to whole vectors.
// These kernels replace Eigen's general GEMM, whose packing dominated at
// d = 16..64: fwd+bwd of the op alone, 1 thread, AVX-512 Xeon, about 1.9x faster at
// d = 16 (T = 256) and 1.5x at d = 32 (T = 384) and d = 64 (T = 2048).
//
// The forward keeps an online (running max) softmax per query block and stores
// the log-sum-exp of every row; the backward recomputes the probabilities from it.
// SIMD uses Eigen's packet primitives (Eigen::internal, stable within Eigen 3.4),
// so float and double, AVX-512/AVX/SSE/NEON and the scalar fallback share this code.
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>

#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

namespace {

namespace ei = Eigen::internal;

template <typename T>
using Packet = typename ei::packet_traits<T>::type;
template <typename T>
constexpr int kLanes = ei::unpacket_traits<Packet<T>>::size;

// Query block width in SIMD vectors; the block is kQueryVecs * kLanes<T> queries.
constexpr int kQueryVecs = 4;
template <typename T>
constexpr int64_t kQueryBlock = int64_t{kQueryVecs} * kLanes<T>;
// Keys per score tile: 64 x 64 float tiles (16 KiB) stay in L1; 32 and 128 measured
// no better.
constexpr int64_t kKeyBlock = 64;

template <typename T>
using Buffer = Eigen::Matrix<T, Eigen::Dynamic, 1>;  // SIMD-aligned scratch

// exp() of a packet: Eigen's pexp, except for AVX-512 floats, where the same Cephes
// reduction and polynomial finish with one vscalefps instead of Eigen's generic
// integer ldexp (about half the instructions; exp is the softmax's main cost beyond
// the products at small d). Arguments below -104 give exactly 0 (after rounding).
template <typename P>
inline P exp_packet(const P& x) {
  return ei::pexp(x);
}
#if defined(EIGEN_VECTORIZE_AVX512)
template <>
inline ei::Packet16f exp_packet(const ei::Packet16f& x_in) {
  const __m512 x = _mm512_max_ps(_mm512_min_ps(x_in, _mm512_set1_ps(88.723f)), _mm512_set1_ps(-104.0f));
  // exp(x) = 2^m exp(r), m = round(x / ln 2), r = x - m ln 2 in two parts.
  const __m512 m = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(m, _mm512_set1_ps(-0.693359375f), x);
  r = _mm512_fmadd_ps(m, _mm512_set1_ps(2.12194440e-4f), r);
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 r3 = _mm512_mul_ps(r2, r);
  __m512 y = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r, _mm512_set1_ps(1.3981999507e-3f));
  __m512 y1 = _mm512_fmadd_ps(_mm512_set1_ps(4.1665795894e-2f), r, _mm512_set1_ps(1.6666665459e-1f));
  const __m512 y2 = _mm512_add_ps(r, _mm512_set1_ps(1.0f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y1 = _mm512_fmadd_ps(y1, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, r3, y1);
  y = _mm512_fmadd_ps(y, r2, y2);
  return _mm512_scalef_ps(y, m);
}
#endif

// ---- kernel 1: outputs that span the query block ----------------------------------------------
// C[i, :] = epilogue(i, u, [C[i, :] +] sum_{k < depth} A(i, k) * B[k, :]) for i < MR, where
// A(i, k) = a[i * a_row + k * a_col] is broadcast, the rows of B and C are one query block
// (kQueryVecs vectors) wide and u is the vector index within a row. `row` is the tile's first
// row within the product, passed on to the epilogue.
template <typename T, int MR, bool Accumulate, typename Epilogue>
inline void query_tile(const T* a, int64_t a_row, int64_t a_col, const T* b, int64_t depth, T* c, int64_t row,
                       Epilogue& epilogue) {
  using P = Packet<T>;
  constexpr int W = kLanes<T>;
  constexpr int64_t ld = kQueryBlock<T>;
  P acc[MR][kQueryVecs];
  int64_t k = 0;
  if (Accumulate) {
    for (int i = 0; i < MR; ++i) {
      for (int u = 0; u < kQueryVecs; ++u) acc[i][u] = ei::pload<P>(c + i * ld + u * W);
    }
  } else if (depth > 0) {
    // The first step initialises the accumulators (no zeroing pass).
    for (int i = 0; i < MR; ++i) {
      const P ai = ei::pset1<P>(a[i * a_row]);
      for (int u = 0; u < kQueryVecs; ++u) acc[i][u] = ei::pmul(ai, ei::pload<P>(b + u * W));
    }
    k = 1;
  } else {
    for (int i = 0; i < MR; ++i) {
      for (int u = 0; u < kQueryVecs; ++u) acc[i][u] = ei::pset1<P>(T(0));
    }
  }
  for (; k < depth; ++k) {
    P bv[kQueryVecs];
    for (int u = 0; u < kQueryVecs; ++u) bv[u] = ei::pload<P>(b + k * ld + u * W);
    const T* ak = a + k * a_col;
    for (int i = 0; i < MR; ++i) {
      const P ai = ei::pset1<P>(ak[i * a_row]);
      for (int u = 0; u < kQueryVecs; ++u) acc[i][u] = ei::pmadd(ai, bv[u], acc[i][u]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int u = 0; u < kQueryVecs; ++u) ei::pstore(c + i * ld + u * W, epilogue(row + i, u, acc[i][u]));
  }
}

// query_tile over `rows` rows of C.
template <typename T, bool Accumulate, typename Epilogue>
void query_product(int64_t rows, const T* a, int64_t a_row, int64_t a_col, const T* b, int64_t depth, T* c,
                   Epilogue&& epilogue) {
  constexpr int MR = 6;  // 24 accumulators + 4 B vectors + 1 broadcast of the 32 AVX-512 registers
  constexpr int64_t ld = kQueryBlock<T>;
  int64_t i = 0;
  for (; i + MR <= rows; i += MR) {
    query_tile<T, MR, Accumulate>(a + i * a_row, a_row, a_col, b, depth, c + i * ld, i, epilogue);
  }
  const T* ar = a + i * a_row;
  T* cr = c + i * ld;
  switch (rows - i) {
    case 5: query_tile<T, 5, Accumulate>(ar, a_row, a_col, b, depth, cr, i, epilogue); break;
    case 4: query_tile<T, 4, Accumulate>(ar, a_row, a_col, b, depth, cr, i, epilogue); break;
    case 3: query_tile<T, 3, Accumulate>(ar, a_row, a_col, b, depth, cr, i, epilogue); break;
    case 2: query_tile<T, 2, Accumulate>(ar, a_row, a_col, b, depth, cr, i, epilogue); break;
    case 1: query_tile<T, 1, Accumulate>(ar, a_row, a_col, b, depth, cr, i, epilogue); break;
    default: break;
  }
}

// Epilogue that stores the product unchanged.
struct StoreAsIs {
  template <typename P>
  P operator()(int64_t, int, const P& x) const {
    return x;
  }
};

// ---- kernel 2: outputs whose columns are features ---------------------------------------------
// C[i, 0:NV*W] += sum_{k < depth} a[i * a_row + k] * B[k, 0:NV*W] for i < MR (B, C row strides ldb, ldc).
template <typename T, int MR, int NV>
inline void feature_tile(const T* a, int64_t a_row, const T* b, int64_t ldb, int64_t depth, T* c, int64_t ldc) {
  using P = Packet<T>;
  constexpr int W = kLanes<T>;
  P acc[MR][NV];
  for (int i = 0; i < MR; ++i) {
    for (int v = 0; v < NV; ++v) acc[i][v] = ei::pload<P>(c + i * ldc + v * W);
  }
  for (int64_t k = 0; k < depth; ++k) {
    P bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = ei::pload<P>(b + k * ldb + v * W);
    for (int i = 0; i < MR; ++i) {
      const P ai = ei::pset1<P>(a[i * a_row + k]);
      for (int v = 0; v < NV; ++v) acc[i][v] = ei::pmadd(ai, bv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int v = 0; v < NV; ++v) ei::pstore(c + i * ldc + v * W, acc[i][v]);
  }
}

template <typename T, int MR, int NV>
void feature_rows(int64_t rows, const T* a, int64_t a_row, const T* b, int64_t ldb, int64_t depth, T* c,
                  int64_t ldc) {
  int64_t i = 0;
  for (; i + MR <= rows; i += MR) feature_tile<T, MR, NV>(a + i * a_row, a_row, b, ldb, depth, c + i * ldc, ldc);
  for (; i < rows; ++i) feature_tile<T, 1, NV>(a + i * a_row, a_row, b, ldb, depth, c + i * ldc, ldc);
}

// C[rows, cols] += A[rows, depth] B[depth, cols]; A has row stride a_row, cols is a
// multiple of the SIMD width, B and C have row strides ldb = ldc = cols.
template <typename T>
void feature_product(int64_t rows, int64_t cols, const T* a, int64_t a_row, const T* b, int64_t depth, T* c) {
  constexpr int W = kLanes<T>;
  int64_t c0 = 0;
  // Column strips of at most 4 vectors keep the accumulators in registers.
  for (; c0 + 4 * W <= cols; c0 += 4 * W) feature_rows<T, 4, 4>(rows, a, a_row, b + c0, cols, depth, c + c0, cols);
  switch ((cols - c0) / W) {
    case 3: feature_rows<T, 4, 3>(rows, a, a_row, b + c0, cols, depth, c + c0, cols); break;
    case 2: feature_rows<T, 8, 2>(rows, a, a_row, b + c0, cols, depth, c + c0, cols); break;
    case 1: feature_rows<T, 8, 1>(rows, a, a_row, b + c0, cols, depth, c + c0, cols); break;
    default: break;
  }
}

// ---- block helpers -------------------------------------------------------------------------
// dst[j, i] = alpha * row_scale[j] * src[i, j] for i < rows, j < cols (row_scale may be null:
// all ones). Whole kLanes x kLanes tiles go through registers (Eigen's ptranspose); the
// strided scalar loop this replaces cost ~10% of the op at d = 16.
// (PacketBlock<Packet16f, ...>: GCC warns that the packet's alignment attribute is not
// part of the template argument, which is harmless here, as in Eigen's own kernels.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif
template <typename T>
void transpose_scaled(const T* src, int64_t ld_src, int64_t rows, int64_t cols, T alpha, const T* row_scale,
                      T* dst, int64_t ld_dst) {
  using P = Packet<T>;
  constexpr int W = kLanes<T>;
  const int64_t full_rows = rows / W * W, full_cols = cols / W * W;
  for (int64_t i0 = 0; i0 < full_rows; i0 += W) {
    for (int64_t j0 = 0; j0 < full_cols; j0 += W) {
      ei::PacketBlock<P, W> tile;
      for (int i = 0; i < W; ++i) tile.packet[i] = ei::ploadu<P>(src + (i0 + i) * ld_src + j0);
      ei::ptranspose(tile);
      for (int j = 0; j < W; ++j) {
        const T f = row_scale ? alpha * row_scale[j0 + j] : alpha;
        ei::pstoreu(dst + (j0 + j) * ld_dst + i0, ei::pmul(tile.packet[j], ei::pset1<P>(f)));
      }
    }
  }
  // Edges, scalar.
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = (i < full_rows ? full_cols : 0); j < cols; ++j) {
      dst[j * ld_dst + i] = (row_scale ? alpha * row_scale[j] : alpha) * src[i * ld_src + j];
    }
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// dst[c, r] = alpha * src[r, c] for r < nb (rows of src have stride d), zero for nb <= r < block:
// one query block of q or dO as a d x block matrix.
template <typename T>
void pack_transposed(const T* src, int64_t nb, int64_t d, T alpha, T* dst) {
  constexpr int64_t block = kQueryBlock<T>;
  transpose_scaled(src, d, nb, d, alpha, static_cast<const T*>(nullptr), dst, block);
  if (nb < block) {
    for (int64_t c = 0; c < d; ++c) std::fill(dst + c * block + nb, dst + (c + 1) * block, T(0));
  }
}

// dst[r, c] = src[r, c] for r < nb, c < d, zero up to [block, dp]: rows padded to whole vectors.
template <typename T>
void pack_padded(const T* src, int64_t nb, int64_t d, int64_t dp, T* dst) {
  constexpr int64_t block = kQueryBlock<T>;
  for (int64_t r = 0; r < block; ++r) {
    T* row = dst + r * dp;
    if (r < nb) {
      std::copy(src + r * d, src + (r + 1) * d, row);
      std::fill(row + d, row + dp, T(0));
    } else {
      std::fill(row, row + dp, T(0));
    }
  }
}

// Writes value over the entries of a key x query tile (keys j0.., queries i0..) above the
// diagonal, i.e. key j0 + jj > query i0 + r.
template <typename T>
void mask_tile(T* tile, int64_t keys, int64_t j0, int64_t i0, T value) {
  constexpr int64_t block = kQueryBlock<T>;
  for (int64_t jj = 0; jj < keys; ++jj) {
    const int64_t first_visible = std::min(std::max<int64_t>(j0 + jj - i0, 0), block);
    std::fill(tile + jj * block, tile + jj * block + first_visible, value);
  }
}

bool crosses_diagonal(int64_t j0, int64_t keys, int64_t i0) { return j0 + keys - 1 > i0; }

}  // namespace

template <typename T>
void CpuBackend<T>::softmax_attention_forward(int64_t streams, int64_t steps, int64_t d, const T* q, const T* k,
                                              const T* v, T scale, T* out, T* lse) {
  if (streams <= 0 || steps <= 0) return;
  using P = Packet<T>;
  constexpr int W = kLanes<T>;
  constexpr int64_t block = kQueryBlock<T>;
  const int64_t blocks = (steps + block - 1) / block;
  const int64_t items = streams * blocks;
  // Query blocks are independent in the forward, so (stream, block) pairs are
  // the work items; later blocks see more keys, hence dynamic scheduling.
  // parallel_for hands out small chunks dynamically, which balances them.
  cpu::parallel_for(num_threads_, items, 2 * block * steps * d, [&](int64_t item_begin, int64_t item_end) {
    Buffer<T> qt, tile, ot;
    qt.resize(d * block);
    tile.resize(kKeyBlock * block);
    ot.resize(d * block);
    for (int64_t item = item_begin; item < item_end; ++item) {
      {  // one (stream, query block) item
        const int64_t s = item / blocks;
        const int64_t i0 = (item % blocks) * block;
        const int64_t nb = std::min(block, steps - i0);
        const int64_t visible = i0 + nb;  // keys this block can see
        const T* ks = k + s * steps * d;
        const T* vs = v + s * steps * d;
        // Scores come out already scaled: Q^T is packed as scale * Q^T.
        pack_transposed(q + (s * steps + i0) * d, nb, d, scale, qt.data());
        P run_max[kQueryVecs], run_sum[kQueryVecs];
        for (int u = 0; u < kQueryVecs; ++u) {
          run_max[u] = ei::pset1<P>(-std::numeric_limits<T>::infinity());
          run_sum[u] = ei::pset1<P>(T(0));
        }
        ot.setZero();
        for (int64_t j0 = 0; j0 < visible; j0 += kKeyBlock) {
          const int64_t keys = std::min(kKeyBlock, visible - j0);
          T* st = tile.data();
          // S^T = K_blk (scale Q^T): [keys, block], and the new running max of each query.
          P new_max[kQueryVecs], alpha[kQueryVecs], sum[kQueryVecs];
          for (int u = 0; u < kQueryVecs; ++u) new_max[u] = run_max[u];
          const bool diagonal = crosses_diagonal(j0, keys, i0);
          if (!diagonal) {
            query_product<T, false>(keys, ks + j0 * d, d, 1, qt.data(), d, st, [&](int64_t, int u, const P& x) {
              new_max[u] = ei::pmax(new_max[u], x);
              return x;
            });
          } else {
            // Masked scores must not enter the max: mask first, then reduce.
            query_product<T, false>(keys, ks + j0 * d, d, 1, qt.data(), d, st, StoreAsIs{});
            mask_tile(st, keys, j0, i0, -std::numeric_limits<T>::infinity());
            for (int64_t jj = 0; jj < keys; ++jj) {
              for (int u = 0; u < kQueryVecs; ++u) {
                new_max[u] = ei::pmax(new_max[u], ei::pload<P>(st + jj * block + u * W));
              }
            }
          }
          // Online softmax: rescale what was accumulated so far to the new max.
          for (int u = 0; u < kQueryVecs; ++u) {
            // Every query sees key 0, so the max is finite after the first key block;
            // before it, the running sum and output are zero, whatever alpha is.
            alpha[u] = exp_packet(ei::psub(run_max[u], new_max[u]));
            run_max[u] = new_max[u];
            sum[u] = ei::pset1<P>(T(0));
          }
          // P^T = exp(S^T - max) and its column sums.
          for (int64_t jj = 0; jj < keys; ++jj) {
            for (int u = 0; u < kQueryVecs; ++u) {
              T* x = st + jj * block + u * W;
              const P p = exp_packet(ei::psub(ei::pload<P>(x), new_max[u]));
              ei::pstore(x, p);
              sum[u] = ei::padd(sum[u], p);
            }
          }
          if (diagonal) {
            // exp() of the masked -inf entries is tiny but not exactly zero: clear them
            // and sum again.
            mask_tile(st, keys, j0, i0, T(0));
            for (int u = 0; u < kQueryVecs; ++u) sum[u] = ei::pset1<P>(T(0));
            for (int64_t jj = 0; jj < keys; ++jj) {
              for (int u = 0; u < kQueryVecs; ++u) sum[u] = ei::padd(sum[u], ei::pload<P>(st + jj * block + u * W));
            }
          }
          for (int u = 0; u < kQueryVecs; ++u) run_sum[u] = ei::pmadd(run_sum[u], alpha[u], sum[u]);
          if (j0 > 0) {
            for (int64_t c = 0; c < d; ++c) {
              for (int u = 0; u < kQueryVecs; ++u) {
                T* x = ot.data() + c * block + u * W;
                ei::pstore(x, ei::pmul(ei::pload<P>(x), alpha[u]));
              }
            }
          }
          // O^T += V_blk^T P^T: [d, block].
          query_product<T, true>(d, vs + j0 * d, 1, d, st, keys, ot.data(), StoreAsIs{});
        }
        alignas(64) T m[block], l[block];
        for (int u = 0; u < kQueryVecs; ++u) {
          ei::pstore(m + u * W, run_max[u]);
          ei::pstore(l + u * W, run_sum[u]);
        }
        alignas(64) T inv[block];
        for (int64_t r = 0; r < nb; ++r) {
          inv[r] = T(1) / l[r];
          lse[s * steps + i0 + r] = m[r] + std::log(l[r]);
        }
        transpose_scaled(ot.data(), block, d, nb, T(1), inv, out + (s * steps + i0) * d, d);
      }
    }
  });
}

template <typename T>
void CpuBackend<T>::softmax_attention_backward(int64_t streams, int64_t steps, int64_t d, const T* q,
                                               const T* k, const T* v, const T* out, const T* lse,
                                               const T* d_out, T scale, T* dq, T* dk, T* dv) {
  // Per (query block, key block) tile, with P recomputed from lse, in the
  // transposed keys x queries layout:
  //   P^T = exp(scale K Q^T - lse),  dV += P^T dO,  dP^T = V dO^T,
  //   dS^T = P^T * (dP^T - rowsum(dO * O)),  dQ^T += scale K^T dS^T,  dK += scale dS^T Q.
  // dK and dV collect contributions from every later query block, so a stream
  // is one work item; they accumulate in feature-padded scratch.
  if (streams <= 0 || steps <= 0) return;
  using P = Packet<T>;
  constexpr int W = kLanes<T>;
  constexpr int64_t block = kQueryBlock<T>;
  const int64_t dp = (d + W - 1) / W * W;  // feature columns padded to whole vectors
  cpu::parallel_for(num_threads_, streams, 5 * steps * steps * d, [&](int64_t s0, int64_t s1) {
    Buffer<T> qt(d * block), dot(d * block), dqt(d * block), qp(block * dp), dop(block * dp);
    Buffer<T> pt(kKeyBlock * block), dst(kKeyBlock * block), dk_acc(steps * dp), dv_acc(steps * dp);
    alignas(64) T lse_b[block], centre[block];
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t base = s * steps;
      const T* ks = k + base * d;
      const T* vs = v + base * d;
      dk_acc.setZero();
      dv_acc.setZero();
      for (int64_t i0 = 0; i0 < steps; i0 += block) {
        const int64_t nb = std::min(block, steps - i0);
        const int64_t visible = i0 + nb;
        const T* q_b = q + (base + i0) * d;
        const T* do_b = d_out + (base + i0) * d;
        pack_transposed(q_b, nb, d, scale, qt.data());
        pack_transposed(do_b, nb, d, T(1), dot.data());
        pack_padded(q_b, nb, d, dp, qp.data());
        pack_padded(do_b, nb, d, dp, dop.data());
        // Padding queries (r >= nb) get finite garbage that is never read back.
        for (int64_t r = 0; r < block; ++r) {
          if (r < nb) {
            lse_b[r] = lse[base + i0 + r];
            T acc = 0;
            for (int64_t c = 0; c < d; ++c) acc += do_b[r * d + c] * out[(base + i0 + r) * d + c];
            centre[r] = acc;
          } else {
            lse_b[r] = T(0);
            centre[r] = T(0);
          }
        }
        P lse_v[kQueryVecs], centre_v[kQueryVecs];
        for (int u = 0; u < kQueryVecs; ++u) {
          lse_v[u] = ei::pload<P>(lse_b + u * W);
          centre_v[u] = ei::pload<P>(centre + u * W);
        }
        dqt.setZero();
        for (int64_t j0 = 0; j0 < visible; j0 += kKeyBlock) {
          const int64_t keys = std::min(kKeyBlock, visible - j0);
          // P^T = exp(scale K Q^T - lse).
          // (A separate pass: exp() inside the kernel's epilogue makes the compiler spill
          // the accumulators.)
          query_product<T, false>(keys, ks + j0 * d, d, 1, qt.data(), d, pt.data(), StoreAsIs{});
          for (int64_t jj = 0; jj < keys; ++jj) {
            for (int u = 0; u < kQueryVecs; ++u) {
              T* x = pt.data() + jj * block + u * W;
              ei::pstore(x, exp_packet(ei::psub(ei::pload<P>(x), lse_v[u])));
            }
          }
          if (crosses_diagonal(j0, keys, i0)) mask_tile(pt.data(), keys, j0, i0, T(0));
          // dV += P^T dO over the block's real queries.
          feature_product(keys, dp, pt.data(), block, dop.data(), nb, dv_acc.data() + j0 * dp);
          // dP^T = V dO^T, turned into dS^T = P^T * (dP^T - centre) on the way out.
          query_product<T, false>(keys, vs + j0 * d, d, 1, dot.data(), d, dst.data(),
                                  [&](int64_t row, int u, const P& x) {
                                    const P p = ei::pload<P>(pt.data() + row * block + u * W);
                                    return ei::pmul(p, ei::psub(x, centre_v[u]));
                                  });
          // dK += dS^T Q (scaled at the end), dQ^T += K^T dS^T (scaled on write-out).
          feature_product(keys, dp, dst.data(), block, qp.data(), nb, dk_acc.data() + j0 * dp);
          query_product<T, true>(d, ks + j0 * d, 1, d, dst.data(), keys, dqt.data(), StoreAsIs{});
        }
        transpose_scaled(dqt.data(), block, d, nb, scale, static_cast<const T*>(nullptr), dq + (base + i0) * d, d);
      }
      for (int64_t j = 0; j < steps; ++j) {
        for (int64_t c = 0; c < d; ++c) {
          dk[(base + j) * d + c] = scale * dk_acc[j * dp + c];
          dv[(base + j) * d + c] = dv_acc[j * dp + c];
        }
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

// ---- cross attention (non-causal: every query sees every key) -------------------------

template <typename T>
void CpuBackend<T>::cross_attention_forward(int64_t streams, int64_t queries, int64_t keys, int64_t d,
                                            int64_t d_value, const T* q, const T* k, const T* v, T scale, T* out,
                                            T* lse) {
  if (streams <= 0 || queries <= 0) return;
  const int64_t cost = 2 * queries * keys * (d + d_value);
  cpu::parallel_for(num_threads_, streams, cost, [&](int64_t s0, int64_t s1) {
    cpu::RowMat<T> p;  // scores, then probabilities, [queries, keys]
    for (int64_t s = s0; s < s1; ++s) {
      const auto Q = cpu::row_map(q + s * queries * d, queries, d, d);
      const auto K = cpu::row_map(k + s * keys * d, keys, d, d);
      const auto V = cpu::row_map(v + s * keys * d_value, keys, d_value, d_value);
      auto O = cpu::row_map(out + s * queries * d_value, queries, d_value, d_value);
      p.noalias() = scale * (Q * K.transpose());
      for (int64_t j = 0; j < queries; ++j) {
        const T mx = keys > 0 ? p.row(j).maxCoeff() : T(0);
        p.row(j) = (p.row(j).array() - mx).exp().matrix();
        const T sum = p.row(j).sum();
        p.row(j) /= sum;
        lse[s * queries + j] = mx + std::log(sum);
      }
      O.noalias() = p * V;
    }
  });
}

template <typename T>
void CpuBackend<T>::cross_attention_backward(int64_t streams, int64_t queries, int64_t keys, int64_t d,
                                             int64_t d_value, const T* q, const T* k, const T* v, const T* out,
                                             const T* lse, const T* d_out, T scale, T* dq, T* dk, T* dv) {
  if (streams <= 0) return;
  const int64_t cost = 4 * queries * keys * (d + d_value);
  cpu::parallel_for(num_threads_, streams, cost, [&](int64_t s0, int64_t s1) {
    cpu::RowMat<T> p, ds;
    for (int64_t s = s0; s < s1; ++s) {
      const auto Q = cpu::row_map(q + s * queries * d, queries, d, d);
      const auto K = cpu::row_map(k + s * keys * d, keys, d, d);
      const auto V = cpu::row_map(v + s * keys * d_value, keys, d_value, d_value);
      const auto O = cpu::row_map(out + s * queries * d_value, queries, d_value, d_value);
      const auto dO = cpu::row_map(d_out + s * queries * d_value, queries, d_value, d_value);
      // Recompute the probabilities from the stored log-sum-exp.
      p.noalias() = scale * (Q * K.transpose());
      for (int64_t j = 0; j < queries; ++j) {
        p.row(j) = (p.row(j).array() - lse[s * queries + j]).exp().matrix();
      }
      // d score_ji = p_ji (dO_j . v_i - dO_j . out_j)
      ds.noalias() = dO * V.transpose();
      for (int64_t j = 0; j < queries; ++j) {
        const T row_dot = dO.row(j).dot(O.row(j));
        ds.row(j) = (p.row(j).array() * (ds.row(j).array() - row_dot)).matrix();
      }
      cpu::row_map(dq + s * queries * d, queries, d, d).noalias() = scale * (ds * K);
      cpu::row_map(dk + s * keys * d, keys, d, d).noalias() = scale * (ds.transpose() * Q);
      if (dv) cpu::row_map(dv + s * keys * d_value, keys, d_value, d_value).noalias() = p.transpose() * dO;
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
                                                        const T*, const T*, T, T*);                            \
  template void CpuBackend<T>::cross_attention_forward(int64_t, int64_t, int64_t, int64_t, int64_t, const T*,  \
                                                       const T*, const T*, T, T*, T*);                         \
  template void CpuBackend<T>::cross_attention_backward(int64_t, int64_t, int64_t, int64_t, int64_t,          \
                                                        const T*, const T*, const T*, const T*, const T*,     \
                                                        const T*, T, T*, T*, T*);

FWP_INSTANTIATE_SOFTMAX_ATTENTION(float)
FWP_INSTANTIATE_SOFTMAX_ATTENTION(double)
#undef FWP_INSTANTIATE_SOFTMAX_ATTENTION

}  // namespace fwp
