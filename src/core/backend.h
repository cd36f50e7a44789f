// The compute interface that layers and models are written against (the idea of
// ggml's backends): one abstract class with one method per op, implemented by
// the CPU backend (src/ops, templated so tests can run in double precision) and
// the CUDA backend (cuda/, float only). Every pointer is a device pointer of the
// backend that received the call; all arrays are dense and row-major.
//
// Conventions for every op:
// - Gradient outputs are OVERWRITTEN, never accumulated, unless the name says
//   "accumulate". The caller sums contributions itself (axpy).
// - Arguments are already validated by the caller (layers/models check user
//   input); ops only assert internal invariants.
// - "streams" = independent sequences = batch * heads; a [streams, T, d] array
//   holds stream s, step t at offset (s * T + t) * d.
#pragma once

#include <cstdint>
#include <memory>

#include "core/error.h"

namespace fwp {

enum class Device { Cpu, Cuda };

enum class FeatureMap { Elu, Favor, Dpfp };
enum class UpdateRule { Sum, Delta };
enum class Algorithm { Auto, Recurrent, Chunked };

// Shape of a feature map phi: R^d_in -> R^d_out().
struct FeatureMapSpec {
  FeatureMap kind = FeatureMap::Elu;
  int64_t d_in = 0;
  int64_t nu = 1;  // DPFP order
  int64_t m = 0;   // FAVOR+ random features (rows of the projection)
  int64_t d_out() const {
    switch (kind) {
      case FeatureMap::Elu: return d_in;
      case FeatureMap::Favor: return 2 * m;
      case FeatureMap::Dpfp: return 2 * d_in * nu;
    }
    return 0;
  }
};

// Shape of a fast-weight recurrence: `streams` independent sequences of
// `steps` tokens, keys/queries of width d_key (= d_dot, after phi), values of
// width d_value. The state of one stream is W, [d_value][d_key].
struct FastWeightShape {
  int64_t streams = 0;
  int64_t steps = 0;
  int64_t d_key = 0;
  int64_t d_value = 0;
};

// Hyperparameters of one optimizer step, as the optimizer ops take them
// (used by the "model and optimizer ops" section of Backend below).
struct AdamStepParams {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // AdamW
  double bias_correction1 = 1.0;        // 1 - beta1^step
  double bias_correction2 = 1.0;        // 1 - beta2^step
  double grad_scale = 1.0;              // gradient clipping factor, applied before everything else
};

struct SgdStepParams {
  double lr = 1e-3;
  double momentum = 0.0;
  double weight_decay = 0.0;
  double grad_scale = 1.0;
};

template <typename T>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // ---- memory (counts are in elements) --------------------------------------
  // allocate throws Error(FWP_ERR_OUT_OF_MEMORY) on failure; n == 0 may return nullptr.
  virtual T* allocate(int64_t n) = 0;
  virtual void deallocate(T* p) noexcept = 0;
  virtual int32_t* allocate_int(int64_t n) = 0;
  virtual void deallocate_int(int32_t* p) noexcept = 0;
  virtual void upload(T* dst, const T* host_src, int64_t n) = 0;
  virtual void download(T* host_dst, const T* src, int64_t n) = 0;
  virtual void upload_int(int32_t* dst, const int32_t* host_src, int64_t n) = 0;
  virtual void copy(T* dst, const T* src, int64_t n) = 0;
  virtual void fill(T* dst, T value, int64_t n) = 0;
  // Blocks until all queued work is done (no-op on the CPU).
  virtual void synchronize() = 0;

  // ---- dense linear algebra ---------------------------------------------------
  // C[M,N] = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
  // A is [M,K] (or [K,M] if trans_a), B is [K,N] (or [N,K] if trans_b).
  // When beta == 0, C is not read (it may hold NaN).
  virtual void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                    int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) = 0;
  // y[r, c] += bias[c] for r < rows, c < cols.
  virtual void add_bias(T* y, const T* bias, int64_t rows, int64_t cols) = 0;
  // dbias[c] += sum_r dy[r, c]   (accumulates: parameter gradients accumulate).
  virtual void bias_grad_accumulate(T* dbias, const T* dy, int64_t rows, int64_t cols) = 0;
  // y += alpha * x
  virtual void axpy(int64_t n, T alpha, const T* x, T* y) = 0;
  // x *= alpha
  virtual void scale(int64_t n, T alpha, T* x) = 0;

  // ---- layout -------------------------------------------------------------------
  // in [B, T, H, D] -> out [B, H, T, D]
  virtual void split_heads(const T* in, T* out, int64_t B, int64_t T_, int64_t H, int64_t D) = 0;
  // in [B, H, T, D] -> out [B, T, H, D]
  virtual void merge_heads(const T* in, T* out, int64_t B, int64_t T_, int64_t H, int64_t D) = 0;

  // ---- elementwise --------------------------------------------------------------
  virtual void sigmoid_forward(const T* x, T* y, int64_t n) = 0;
  // dx = dy * y * (1 - y), where y = sigmoid(x).
  virtual void sigmoid_backward(const T* y, const T* dy, T* dx, int64_t n) = 0;

  // ---- feature maps (rows are independent) ------------------------------------------
  // x [rows, spec.d_in] -> phi [rows, spec.d_out()].
  // favor_projection: [spec.m, spec.d_in] for FeatureMap::Favor, else nullptr.
  virtual void feature_map_forward(const FeatureMapSpec& spec, const T* favor_projection, const T* x,
                                   T* phi, int64_t rows) = 0;
  // dx = (dphi/dx)^T dphi. Needs the forward's x and phi.
  virtual void feature_map_backward(const FeatureMapSpec& spec, const T* favor_projection, const T* x,
                                    const T* phi, const T* dphi, T* dx, int64_t rows) = 0;
  // out[r] = phi[r] / (sum_j phi[r, j] + eps); out may alias phi.
  virtual void sum_normalize_forward(const T* phi, T* out, int64_t rows, int64_t d, T eps) = 0;
  // dphi from dout; needs the un-normalised phi. dphi may alias dout.
  virtual void sum_normalize_backward(const T* phi, const T* dout, T* dphi, int64_t rows, int64_t d,
                                      T eps) = 0;

  // ---- the fast-weight recurrence -----------------------------------------------------
  // For each stream, with W_0 = state_in (zeros if nullptr):
  //   sum rule:   u_t = v_t
  //   delta rule: u_t = beta_t (v_t - W_{t-1} k_t)
  //   W_t = W_{t-1} + u_t k_t^T,   out_t = W_t q_t
  // q: [streams, steps, d_key] or nullptr (then out is not computed and may be nullptr).
  // k: [streams, steps, d_key]; v, u, out: [streams, steps, d_value];
  // beta: [streams, steps] (delta rule; nullptr for the sum rule).
  // state_in, state_out: [streams, d_value, d_key]; state_out may alias state_in.
  // u is written: the backward reconstructs earlier states from it and state_out
  // (W_{t-1} = W_t - u_t k_t^T), so no per-step state is ever stored.
  // chunk_size: for Algorithm::Chunked (0 = backend default); Auto lets the backend pick.
  virtual void fast_weight_forward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                   const FastWeightShape& shape, const T* q, const T* k, const T* v,
                                   const T* beta, const T* state_in, T* out, T* u, T* state_out) = 0;
  // Gradients of the forward above. d_out may be nullptr (no output gradient), and
  // so may d_state_out (gradient of the final state taken as zero). dq is nullptr
  // iff q was; dbeta is nullptr for the sum rule; d_state_in may be nullptr.
  // state_out is the final state the forward produced.
  virtual void fast_weight_backward(UpdateRule rule, Algorithm algo, int64_t chunk_size,
                                    const FastWeightShape& shape, const T* q, const T* k, const T* v,
                                    const T* beta, const T* u, const T* state_out, const T* d_out,
                                    const T* d_state_out, T* dq, T* dk, T* dv, T* dbeta,
                                    T* d_state_in) = 0;

  // ---- attention normalisation ---------------------------------------------------------
  // z_t = z_in + sum_{j<=t} k_j,  denom_t = q_t . z_t + eps,  y_t = o_t / denom_t.
  // q, k: [streams, steps, d_key]; o, y: [streams, steps, d_value] (y may alias o only if
  // the backward is not needed); denom: [streams, steps]; z_in (nullable), z_out (nullable):
  // [streams, d_key].
  virtual void attn_norm_forward(const FastWeightShape& shape, const T* q, const T* k, const T* z_in,
                                 const T* o, T eps, T* y, T* denom, T* z_out) = 0;
  // Overwrites d_o, dq, dk (same shapes as o, q, k) and d_z_in (nullable). y is the forward output.
  virtual void attn_norm_backward(const FastWeightShape& shape, const T* q, const T* k, const T* z_in,
                                  const T* y, const T* denom, const T* dy, T* d_o, T* dq, T* dk,
                                  T* d_z_in) = 0;

  // ---- softmax attention (the baseline) ----------------------------------------------------
  // out_t = sum_{j<=t} softmax_j(scale * q_t . k_j) v_j per stream; q, k, v, out:
  // [streams, steps, d]; lse: [streams, steps] log-sum-exp of the scaled scores (for backward).
  virtual void softmax_attention_forward(int64_t streams, int64_t steps, int64_t d, const T* q, const T* k,
                                         const T* v, T scale, T* out, T* lse) = 0;
  virtual void softmax_attention_backward(int64_t streams, int64_t steps, int64_t d, const T* q,
                                          const T* k, const T* v, const T* out, const T* lse,
                                          const T* d_out, T scale, T* dq, T* dk, T* dv) = 0;
  // One decoding step: the query of each stream attends to the first `length`
  // entries of its cache. q, out: [streams, d]; k_cache, v_cache: [streams, capacity, d].
  virtual void softmax_attention_decode(int64_t streams, int64_t length, int64_t capacity, int64_t d,
                                        const T* q, const T* k_cache, const T* v_cache, T scale,
                                        T* out) = 0;

  // ---- model and optimizer ops ----------------------------------------------------------------
  // Added for the models (src/nn) and optimizers (src/train). Ids are int32 arrays on the
  // backend (allocate_int / upload_int). CPU: src/ops/embedding.cpp, retrieval_ops.cpp, loss.cpp,
  // optimizer_ops.cpp.

  // Row gather: out[r, :] = table[ids[r], :] for r < rows. A negative id (padding) gives a zero
  // row. table: [*, dim]; ids: [rows]; out: [rows, dim].
  virtual void embedding_gather(const T* table, const int32_t* ids, T* out, int64_t rows, int64_t dim) = 0;
  // Scatter-add: dtable[ids[r], :] += dout[r, :]; rows with a negative id are skipped and repeated
  // ids add up.
  virtual void embedding_scatter_accumulate(T* dtable, const int32_t* ids, const T* dout, int64_t rows,
                                            int64_t dim) = 0;
  // out[r, :] = [onehot(ids[r]) ; x[r, :]], rows of width num_classes + d, with 0 <= ids[r] <
  // num_classes. x is [rows, d] and may be nullptr iff d == 0 (plain one-hot rows).
  virtual void onehot_concat(const int32_t* ids, const T* x, T* out, int64_t rows, int64_t num_classes,
                             int64_t d) = 0;
  // out[s, :] = sum_t x[s, t, :]; x: [streams, steps, d], out: [streams, d].
  virtual void step_sum(const T* x, T* out, int64_t streams, int64_t steps, int64_t d) = 0;
  // x[s, t, :] += v[s, :]; the transpose of step_sum.
  virtual void step_broadcast_accumulate(const T* v, T* x, int64_t streams, int64_t steps, int64_t d) = 0;

  // Reads shape.steps queries per stream from a fixed fast-weight state (no write):
  //   o[s, j] = W_s q[s, j];  with z: y[s, j] = o[s, j] / (z_s . q[s, j] + eps) (denom stored), else y = o.
  // state: [streams, d_value, d_key]; z: [streams, d_key] or nullptr; q: [streams, steps, d_key];
  // y: [streams, steps, d_value]; denom: [streams, steps], nullptr iff z is nullptr.
  virtual void fast_weight_readout_forward(const FastWeightShape& shape, const T* state, const T* z,
                                           const T* q, T eps, T* y, T* denom) = 0;
  // Gradients of the readout: overwrites dq, d_state and d_z (nullptr iff z was nullptr).
  // y and denom are the forward's outputs.
  virtual void fast_weight_readout_backward(const FastWeightShape& shape, const T* state, const T* z,
                                            const T* q, const T* y, const T* denom, const T* dy, T* dq,
                                            T* d_state, T* d_z) = 0;

  // Non-causal softmax attention of `queries` queries over `keys` keys per stream:
  //   out[s, j] = sum_i softmax_i(scale * q[s, j] . k[s, i]) v[s, i]
  // q: [streams, queries, d]; k: [streams, keys, d]; v: [streams, keys, d_value];
  // out: [streams, queries, d_value]; lse: [streams, queries] log-sum-exp of the scaled scores.
  virtual void cross_attention_forward(int64_t streams, int64_t queries, int64_t keys, int64_t d,
                                       int64_t d_value, const T* q, const T* k, const T* v, T scale, T* out,
                                       T* lse) = 0;
  // Overwrites dq and dk, and dv unless it is nullptr (no value gradient wanted).
  virtual void cross_attention_backward(int64_t streams, int64_t queries, int64_t keys, int64_t d,
                                        int64_t d_value, const T* q, const T* k, const T* v, const T* out,
                                        const T* lse, const T* d_out, T scale, T* dq, T* dk, T* dv) = 0;

  // Squared error against one-hot targets: loss[r] = 0.5 * ||onehot(targets[r]) - y[r, :]||^2,
  // and 0 where targets[r] < 0 (padding). y: [rows, classes]; targets, loss: [rows].
  virtual void onehot_mse_forward(const T* y, const int32_t* targets, T* loss, int64_t rows,
                                  int64_t classes) = 0;
  // dy[r, :] = scale * (y[r, :] - onehot(targets[r])), zero rows for padding.
  virtual void onehot_mse_backward(const T* y, const int32_t* targets, T scale, T* dy, int64_t rows,
                                   int64_t classes) = 0;

  // sum_i x[i]^2, accumulated in double and returned to the host (synchronises). Non-finite if
  // any x[i] is.
  virtual double sum_squares(const T* x, int64_t n) = 0;
  // One Adam / AdamW step on n elements (PyTorch semantics), g = grad_scale * grad:
  //   Adam:  g += weight_decay * param;   AdamW: param *= 1 - lr * weight_decay
  //   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
  //   param -= lr * (m / bias_correction1) / (sqrt(v / bias_correction2) + eps)
  virtual void adam_update(const AdamStepParams& p, int64_t n, T* param, const T* grad, T* m, T* v) = 0;
  // One SGD step, g = grad_scale * grad + weight_decay * param:
  //   momentum != 0: buf = momentum * buf + g, param -= lr * buf;  else param -= lr * g.
  // momentum_buf may be nullptr iff momentum == 0.
  virtual void sgd_update(const SgdStepParams& p, int64_t n, T* param, const T* grad, T* momentum_buf) = 0;
};

// The CPU backend; num_threads >= 1.
template <typename T>
std::shared_ptr<Backend<T>> make_cpu_backend(int num_threads);

}  // namespace fwp

#if defined(FWP_HAVE_CUDA) && FWP_HAVE_CUDA
namespace fwp {
// The CUDA backend (cuda/); throws Error(FWP_ERR_DEVICE) when the device is unusable.
std::shared_ptr<Backend<float>> make_cuda_backend(int device_index);
// Number of visible CUDA devices; 0 when the driver reports none or fails.
int cuda_device_count();
}  // namespace fwp
#endif
