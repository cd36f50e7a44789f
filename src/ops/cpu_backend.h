// The CPU backend: Eigen for dense products, plain loops parallelised with
// OpenMP over independent rows/streams for everything else. Templated on the
// scalar so that tests run the very same code in double precision.
//
// One file per op family (core/backend/<family>.h) implements its methods
// (same names as in cuda/):
//   cpu_backend.cpp        memory, layout, elementwise, factory
//   linear.cpp             gemm, bias, axpy, scale
//   feature_map.cpp        elu+1, FAVOR+, DPFP, sum normalisation
//   fast_weight.cpp        sum / delta rule, recurrent and chunkwise, forward and backward
//   attn_norm.cpp          attention normalisation
//   softmax_attention.cpp  causal softmax attention and decoding, cross attention
//   embedding.cpp          row gather / scatter-add (models)
//   retrieval_ops.cpp      one-hot rows, per-stream sums, fast-weight readout (retrieval model)
//   loss.cpp               one-hot squared-error loss
//   optimizer_ops.cpp      sum of squares, Adam/AdamW and SGD updates
//   activation.cpp         ReLU, GELU (feed-forward blocks)
//   layer_norm.cpp         layer normalisation
//   cross_entropy.cpp      softmax cross-entropy (language model loss)
//   dropout.cpp            dropout with a counter-based mask
//   adaptive_softmax.cpp   cluster partition and block log-softmax (adaptive input/softmax)
//   padded_attention.cpp   padding masks, whole-sequence sum-rule memory, masked softmax attention
#pragma once

#include <functional>

#include "core/backend.h"

namespace fwp {

template <typename T>
class CpuBackend final : public Backend<T> {
 public:
  explicit CpuBackend(int num_threads) : num_threads_(num_threads < 1 ? 1 : num_threads) {}
  Device device() const override { return Device::Cpu; }
  int num_threads() const { return num_threads_; }

  T* allocate(int64_t n) override;
  void deallocate(T* p) noexcept override;
  int32_t* allocate_int(int64_t n) override;
  void deallocate_int(int32_t* p) noexcept override;
  void upload(T* dst, const T* host_src, int64_t n) override;
  void download(T* host_dst, const T* src, int64_t n) override;
  void upload_int(int32_t* dst, const int32_t* host_src, int64_t n) override;
  void copy(T* dst, const T* src, int64_t n) override;
  void fill(T* dst, T value, int64_t n) override;
  void synchronize() override {}
  void for_each_block(int64_t items, int64_t bytes_per_item,
                      const std::function<void(int64_t, int64_t)>& fn) override;

  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
            const T* B, int64_t ldb, T beta, T* C, int64_t ldc) override;
  void add_bias(T* y, const T* bias, int64_t rows, int64_t cols) override;
  void bias_grad_accumulate(T* dbias, const T* dy, int64_t rows, int64_t cols) override;
  void axpy(int64_t n, T alpha, const T* x, T* y) override;
  void scale(int64_t n, T alpha, T* x) override;

  void split_heads(const T* in, T* out, int64_t B, int64_t T_, int64_t H, int64_t D) override;
  void merge_heads(const T* in, T* out, int64_t B, int64_t T_, int64_t H, int64_t D) override;

  void sigmoid_forward(const T* x, T* y, int64_t n) override;
  void sigmoid_backward(const T* y, const T* dy, T* dx, int64_t n) override;

  void feature_map_forward(const FeatureMapSpec& spec, const T* favor_projection, const T* x, T* phi,
                           int64_t rows) override;
  void feature_map_backward(const FeatureMapSpec& spec, const T* favor_projection, const T* x, const T* phi,
                            const T* dphi, T* dx, int64_t rows) override;
  void sum_normalize_forward(const T* phi, T* out, int64_t rows, int64_t d, T eps) override;
  void sum_normalize_backward(const T* phi, const T* dout, T* dphi, int64_t rows, int64_t d, T eps) override;

  void fast_weight_forward(UpdateRule rule, Algorithm algo, int64_t chunk_size, const FastWeightShape& shape,
                           const T* q, const T* k, const T* v, const T* beta, const T* state_in, T* out, T* u,
                           T* state_out, T* states = nullptr) override;
  int64_t fast_weight_state_interval(const FastWeightShape& shape, int64_t chunk_size) override;
  void fast_weight_backward(UpdateRule rule, Algorithm algo, int64_t chunk_size, const FastWeightShape& shape,
                            const T* q, const T* k, const T* v, const T* beta, const T* u, const T* state_out,
                            const T* d_out, const T* d_state_out, T* dq, T* dk, T* dv, T* dbeta,
                            T* d_state_in, const T* states = nullptr) override;

  void attn_norm_forward(const FastWeightShape& shape, const T* q, const T* k, const T* z_in, const T* o, T eps,
                         T* y, T* denom, T* z_out) override;
  void attn_norm_backward(const FastWeightShape& shape, const T* q, const T* k, const T* z_in, const T* y,
                          const T* denom, const T* dy, T* d_o, T* dq, T* dk, T* d_z_in) override;

  void softmax_attention_forward(int64_t streams, int64_t steps, int64_t d, const T* q, const T* k, const T* v,
                                 T scale, T* out, T* lse) override;
  void softmax_attention_backward(int64_t streams, int64_t steps, int64_t d, const T* q, const T* k, const T* v,
                                  const T* out, const T* lse, const T* d_out, T scale, T* dq, T* dk,
                                  T* dv) override;
  void softmax_attention_decode(int64_t streams, int64_t length, int64_t capacity, int64_t d, const T* q,
                                const T* k_cache, const T* v_cache, T scale, T* out) override;

  // ---- model and optimizer ops (embedding.cpp, retrieval_ops.cpp, loss.cpp, optimizer_ops.cpp) ----
  void embedding_gather(const T* table, const int32_t* ids, T* out, int64_t rows, int64_t dim) override;
  void embedding_scatter_accumulate(T* dtable, const int32_t* ids, const T* dout, int64_t rows,
                                    int64_t dim) override;
  void onehot_concat(const int32_t* ids, const T* x, T* out, int64_t rows, int64_t num_classes,
                     int64_t d) override;
  void step_sum(const T* x, T* out, int64_t streams, int64_t steps, int64_t d) override;
  void step_broadcast_accumulate(const T* v, T* x, int64_t streams, int64_t steps, int64_t d) override;

  void fast_weight_readout_forward(const FastWeightShape& shape, const T* state, const T* z, const T* q, T eps,
                                   T* y, T* denom) override;
  void fast_weight_readout_backward(const FastWeightShape& shape, const T* state, const T* z, const T* q,
                                    const T* y, const T* denom, const T* dy, T* dq, T* d_state,
                                    T* d_z) override;
  void cross_attention_forward(int64_t streams, int64_t queries, int64_t keys, int64_t d, int64_t d_value,
                               const T* q, const T* k, const T* v, T scale, T* out, T* lse) override;
  void cross_attention_backward(int64_t streams, int64_t queries, int64_t keys, int64_t d, int64_t d_value,
                                const T* q, const T* k, const T* v, const T* out, const T* lse, const T* d_out,
                                T scale, T* dq, T* dk, T* dv) override;

  // ---- padded_attention.cpp ----
  void zero_padded_steps(T* x, const int32_t* lengths, int64_t batch, int64_t groups, int64_t steps,
                         int64_t d) override;
  void outer_product_sum(int64_t streams, int64_t steps, int64_t d_a, int64_t d_b, const T* a, const T* b,
                         T* out) override;
  void outer_product_sum_backward(int64_t streams, int64_t steps, int64_t d_a, int64_t d_b, const T* a,
                                  const T* b, const T* d_out, T* da, T* db) override;
  void masked_attention_forward(int64_t streams, int64_t groups, int64_t queries, int64_t keys, int64_t key_stride,
                                int64_t d, const T* q, const T* k, const T* v, const int32_t* key_lengths, T scale,
                                T* out, T* lse) override;
  void masked_attention_backward(int64_t streams, int64_t groups, int64_t queries, int64_t keys, int64_t d,
                                 const T* q, const T* k, const T* v, const int32_t* key_lengths, const T* out,
                                 const T* lse, const T* d_out, T scale, T* dq, T* dk, T* dv) override;

  void onehot_mse_forward(const T* y, const int32_t* targets, T* loss, int64_t rows, int64_t classes) override;
  void onehot_mse_backward(const T* y, const int32_t* targets, T scale, T* dy, int64_t rows,
                           int64_t classes) override;

  double sum_squares(const T* x, int64_t n) override;
  void adam_update(const AdamStepParams& p, int64_t n, T* param, const T* grad, T* m, T* v) override;
  void sgd_update(const SgdStepParams& p, int64_t n, T* param, const T* grad, T* momentum_buf) override;

  // ---- module ops (activation.cpp, layer_norm.cpp, cross_entropy.cpp) ----
  void relu_forward(const T* x, T* y, int64_t n) override;
  void relu_backward(const T* x, const T* dy, T* dx, int64_t n) override;
  void gelu_forward(const T* x, T* y, int64_t n) override;
  void gelu_backward(const T* x, const T* dy, T* dx, int64_t n) override;

  void layer_norm_forward(const T* x, const T* gain, const T* bias, T eps, T* y, T* mean, T* rstd, int64_t rows,
                          int64_t d) override;
  void layer_norm_backward(const T* x, const T* gain, const T* mean, const T* rstd, const T* dy, T beta, T* dx,
                           int64_t rows, int64_t d) override;
  void layer_norm_param_grad_accumulate(const T* x, const T* mean, const T* rstd, const T* dy, T* dgain, T* dbias,
                                        int64_t rows, int64_t d) override;

  void cross_entropy_forward(const T* logits, const int32_t* targets, T* loss, T* lse, int64_t rows,
                             int64_t classes) override;
  void cross_entropy_backward(const T* logits, const int32_t* targets, const T* lse, T scale, T* dlogits,
                              int64_t rows, int64_t classes) override;
  void smoothed_cross_entropy_forward(const T* logits, const int32_t* targets, T smoothing, T* loss, T* nll, T* lse,
                                      int64_t rows, int64_t classes) override;
  void smoothed_cross_entropy_backward(const T* logits, const int32_t* targets, const T* lse, T smoothing, T scale,
                                       T* dlogits, int64_t rows, int64_t classes) override;

  void dropout_forward(const T* x, T* y, int64_t n, double p, uint64_t seed) override;
  void dropout_backward(const T* dy, T* dx, int64_t n, double p, uint64_t seed) override;

  void adaptive_partition(const int32_t* ids, int64_t rows, const AdaptiveBounds& bounds, int32_t* cluster_rows,
                          int32_t* cluster_ids, int32_t* head_targets, int64_t head_cols, int64_t* counts) override;
  void log_softmax_rows(const T* logits, int64_t rows, int64_t cols, int64_t write_cols, const T* base,
                        int64_t base_stride, T* out, int64_t ldo) override;

  // The algorithm Auto resolves to for this shape on the CPU (exposed for tests and benchmarks).
  static Algorithm choose_algorithm(UpdateRule rule, const FastWeightShape& shape);
  // Default chunk length of the chunkwise algorithm.
  static int64_t default_chunk_size(const FastWeightShape& shape);

 private:
  int num_threads_;
};

}  // namespace fwp
