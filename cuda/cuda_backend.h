// The CUDA backend: Backend<float> on one GPU. Dense products go to cuBLAS
// (fp32, no TF32 unless the environment variable FWP_CUDA_ALLOW_TF32=1 opts
// in), everything else to the kernels in cuda/*.cu, one file per op family
// with the same name as its CPU counterpart in src/ops:
//   cuda_backend.cu        memory, copies, errors, device selection, factory
//   linear.cu              gemm (cuBLAS), bias, axpy, scale
//   layout.cu              split/merge heads, sigmoid
//   feature_map.cu         elu+1, FAVOR+, DPFP, sum normalisation
//   fast_weight.cu         fused recurrent and chunkwise (WY) fast-weight kernels, dispatch
//   attn_norm.cu           attention normalisation
//   softmax_attention.cu   causal softmax attention (flash-style), decoding, cross attention
//   embedding.cu           row gather / scatter-add, one-hot rows
//   retrieval_ops.cu       per-stream sums, fast-weight readout
//   loss.cu                one-hot squared error
//   optimizer_ops.cu       sum of squares, Adam/AdamW, SGD
//   activation.cu          ReLU, GELU
//   layer_norm.cu          layer normalisation
//   cross_entropy.cu       softmax cross-entropy
//   dropout.cu             dropout with a counter-based mask
//   adaptive_softmax.cu    cluster partition and block log-softmax (adaptive input/softmax)
//   padded_attention.cu    padding masks, whole-sequence sum-rule memory, masked softmax attention
//
// Every call is queued on the backend's own stream; only download(),
// sum_squares() and synchronize() wait for it. Each call makes the backend's
// device current for the duration of the call (and restores the previous one).
// A CUDA or cuBLAS error becomes Error(FWP_ERR_DEVICE) naming the failing call;
// a failed allocation becomes Error(FWP_ERR_OUT_OF_MEMORY). Errors of kernels
// that already ran asynchronously surface at the next call that waits.
//
// Scratch memory of the ops comes from a stream-ordered pool owned by the
// backend (cudaMallocAsync), so repeated calls do not pay for cudaMalloc.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/backend.h"
#include "cublas_loader.h"

namespace fwp {
namespace cuda {

// Throws Error(FWP_ERR_OUT_OF_MEMORY) for cudaErrorMemoryAllocation and
// Error(FWP_ERR_DEVICE) for any other error; `call` names what failed.
void check(cudaError_t status, const char* call, const char* file, int line);
void check(cublasStatus_t status, const char* call, const char* file, int line);
// Checks cudaGetLastError() after a kernel launch.
void check_launch(const char* kernel, const char* file, int line);

const char* cublas_status_name(cublasStatus_t status);

}  // namespace cuda
}  // namespace fwp

#define FWP_CUDA_CHECK(call) ::fwp::cuda::check((call), #call, __FILE__, __LINE__)
#define FWP_CUDA_CHECK_LAUNCH(kernel) ::fwp::cuda::check_launch(kernel, __FILE__, __LINE__)

namespace fwp {

class CudaBackend final : public Backend<float> {
 public:
  // Throws Error(FWP_ERR_DEVICE) when device_index is not a usable device.
  explicit CudaBackend(int device_index);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::Cuda; }
  int device_index() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  // Opt-in shared memory per block of this device (bytes).
  int max_shared_memory_per_block() const { return max_smem_optin_; }
  int multiprocessor_count() const { return sm_count_; }

  // ---- memory -------------------------------------------------------------------------------
  float* allocate(int64_t n) override;
  void deallocate(float* p) noexcept override;
  int32_t* allocate_int(int64_t n) override;
  void deallocate_int(int32_t* p) noexcept override;
  void upload(float* dst, const float* host_src, int64_t n) override;
  void download(float* host_dst, const float* src, int64_t n) override;
  void upload_int(int32_t* dst, const int32_t* host_src, int64_t n) override;
  void copy(float* dst, const float* src, int64_t n) override;
  void fill(float* dst, float value, int64_t n) override;
  void synchronize() override;

  // Stream-ordered scratch memory from the backend's pool (bytes); freed with
  // scratch_free on the same stream, so it may be released while kernels that
  // use it are still queued.
  void* scratch_alloc(size_t bytes);
  void scratch_free(void* p) noexcept;

  // ---- linear.cu ------------------------------------------------------------------------------
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
            const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override;
  // Row-major strided batched product: C_g = alpha op(A_g) op(B_g) + beta C_g for
  // g < batch, X_g = X + g * stride_x. Same conventions as gemm().
  void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta,
                    float* C, int64_t ldc, int64_t stride_c, int64_t batch);
  void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) override;
  void bias_grad_accumulate(float* dbias, const float* dy, int64_t rows, int64_t cols) override;
  void axpy(int64_t n, float alpha, const float* x, float* y) override;
  void scale(int64_t n, float alpha, float* x) override;

  // ---- layout.cu --------------------------------------------------------------------------------
  void split_heads(const float* in, float* out, int64_t B, int64_t T_, int64_t H, int64_t D) override;
  void merge_heads(const float* in, float* out, int64_t B, int64_t T_, int64_t H, int64_t D) override;
  void sigmoid_forward(const float* x, float* y, int64_t n) override;
  void sigmoid_backward(const float* y, const float* dy, float* dx, int64_t n) override;

  // ---- feature_map.cu ---------------------------------------------------------------------------
  void feature_map_forward(const FeatureMapSpec& spec, const float* favor_projection, const float* x, float* phi,
                           int64_t rows) override;
  void feature_map_backward(const FeatureMapSpec& spec, const float* favor_projection, const float* x,
                            const float* phi, const float* dphi, float* dx, int64_t rows) override;
  void sum_normalize_forward(const float* phi, float* out, int64_t rows, int64_t d, float eps) override;
  void sum_normalize_backward(const float* phi, const float* dout, float* dphi, int64_t rows, int64_t d,
                              float eps) override;

  // ---- fast_weight.cu ---------------------------------------------------------------------------
  void fast_weight_forward(UpdateRule rule, Algorithm algo, int64_t chunk_size, const FastWeightShape& shape,
                           const float* q, const float* k, const float* v, const float* beta,
                           const float* state_in, float* out, float* u, float* state_out,
                           float* states = nullptr) override;
  int64_t fast_weight_state_interval(const FastWeightShape& shape, int64_t chunk_size) override;
  void fast_weight_backward(UpdateRule rule, Algorithm algo, int64_t chunk_size, const FastWeightShape& shape,
                            const float* q, const float* k, const float* v, const float* beta, const float* u,
                            const float* state_out, const float* d_out, const float* d_state_out, float* dq,
                            float* dk, float* dv, float* dbeta, float* d_state_in,
                            const float* states = nullptr) override;
  // The algorithm Auto resolves to on the GPU for this shape (exposed for tests and benchmarks).
  static Algorithm choose_algorithm(UpdateRule rule, const FastWeightShape& shape);
  // Default chunk length of the chunkwise kernels, and the largest one they take.
  static int64_t default_chunk_size(const FastWeightShape& shape);
  static constexpr int64_t kMaxChunkSize = 128;

  // ---- attn_norm.cu -----------------------------------------------------------------------------
  void attn_norm_forward(const FastWeightShape& shape, const float* q, const float* k, const float* z_in,
                         const float* o, float eps, float* y, float* denom, float* z_out) override;
  void attn_norm_backward(const FastWeightShape& shape, const float* q, const float* k, const float* z_in,
                          const float* y, const float* denom, const float* dy, float* d_o, float* dq, float* dk,
                          float* d_z_in) override;

  // ---- softmax_attention.cu ---------------------------------------------------------------------
  void softmax_attention_forward(int64_t streams, int64_t steps, int64_t d, const float* q, const float* k,
                                 const float* v, float scale, float* out, float* lse) override;
  void softmax_attention_backward(int64_t streams, int64_t steps, int64_t d, const float* q, const float* k,
                                  const float* v, const float* out, const float* lse, const float* d_out,
                                  float scale, float* dq, float* dk, float* dv) override;
  void softmax_attention_decode(int64_t streams, int64_t length, int64_t capacity, int64_t d, const float* q,
                                const float* k_cache, const float* v_cache, float scale, float* out) override;
  void cross_attention_forward(int64_t streams, int64_t queries, int64_t keys, int64_t d, int64_t d_value,
                               const float* q, const float* k, const float* v, float scale, float* out,
                               float* lse) override;
  void cross_attention_backward(int64_t streams, int64_t queries, int64_t keys, int64_t d, int64_t d_value,
                                const float* q, const float* k, const float* v, const float* out, const float* lse,
                                const float* d_out, float scale, float* dq, float* dk, float* dv) override;

  // ---- padded_attention.cu ----------------------------------------------------------------------
  void zero_padded_steps(float* x, const int32_t* lengths, int64_t batch, int64_t groups, int64_t steps,
                         int64_t d) override;
  void outer_product_sum(int64_t streams, int64_t steps, int64_t d_a, int64_t d_b, const float* a, const float* b,
                         float* out) override;
  void outer_product_sum_backward(int64_t streams, int64_t steps, int64_t d_a, int64_t d_b, const float* a,
                                  const float* b, const float* d_out, float* da, float* db) override;
  void masked_attention_forward(int64_t streams, int64_t groups, int64_t queries, int64_t keys, int64_t key_stride,
                                int64_t d, const float* q, const float* k, const float* v,
                                const int32_t* key_lengths, float scale, float* out, float* lse) override;
  void masked_attention_backward(int64_t streams, int64_t groups, int64_t queries, int64_t keys, int64_t d,
                                 const float* q, const float* k, const float* v, const int32_t* key_lengths,
                                 const float* out, const float* lse, const float* d_out, float scale, float* dq,
                                 float* dk, float* dv) override;

  // ---- embedding.cu -----------------------------------------------------------------------------
  void embedding_gather(const float* table, const int32_t* ids, float* out, int64_t rows, int64_t dim) override;
  void embedding_scatter_accumulate(float* dtable, const int32_t* ids, const float* dout, int64_t rows,
                                    int64_t dim) override;
  void onehot_concat(const int32_t* ids, const float* x, float* out, int64_t rows, int64_t num_classes,
                     int64_t d) override;

  // ---- retrieval_ops.cu -------------------------------------------------------------------------
  void step_sum(const float* x, float* out, int64_t streams, int64_t steps, int64_t d) override;
  void step_broadcast_accumulate(const float* v, float* x, int64_t streams, int64_t steps, int64_t d) override;
  void fast_weight_readout_forward(const FastWeightShape& shape, const float* state, const float* z,
                                   const float* q, float eps, float* y, float* denom) override;
  void fast_weight_readout_backward(const FastWeightShape& shape, const float* state, const float* z,
                                    const float* q, const float* y, const float* denom, const float* dy, float* dq,
                                    float* d_state, float* d_z) override;

  // ---- loss.cu ----------------------------------------------------------------------------------
  void onehot_mse_forward(const float* y, const int32_t* targets, float* loss, int64_t rows,
                          int64_t classes) override;
  void onehot_mse_backward(const float* y, const int32_t* targets, float scale, float* dy, int64_t rows,
                           int64_t classes) override;

  // ---- optimizer_ops.cu -------------------------------------------------------------------------
  double sum_squares(const float* x, int64_t n) override;
  void adam_update(const AdamStepParams& p, int64_t n, float* param, const float* grad, float* m,
                   float* v) override;
  void sgd_update(const SgdStepParams& p, int64_t n, float* param, const float* grad,
                  float* momentum_buf) override;

  // ---- activation.cu, layer_norm.cu, cross_entropy.cu (module ops) -------------------------------
  void relu_forward(const float* x, float* y, int64_t n) override;
  void relu_backward(const float* x, const float* dy, float* dx, int64_t n) override;
  void gelu_forward(const float* x, float* y, int64_t n) override;
  void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) override;
  void layer_norm_forward(const float* x, const float* gain, const float* bias, float eps, float* y, float* mean,
                          float* rstd, int64_t rows, int64_t d) override;
  void layer_norm_backward(const float* x, const float* gain, const float* mean, const float* rstd, const float* dy,
                           float beta, float* dx, int64_t rows, int64_t d) override;
  void layer_norm_param_grad_accumulate(const float* x, const float* mean, const float* rstd, const float* dy,
                                        float* dgain, float* dbias, int64_t rows, int64_t d) override;
  void cross_entropy_forward(const float* logits, const int32_t* targets, float* loss, float* lse, int64_t rows,
                             int64_t classes) override;
  void cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse, float scale,
                              float* dlogits, int64_t rows, int64_t classes) override;
  void smoothed_cross_entropy_forward(const float* logits, const int32_t* targets, float smoothing, float* loss,
                                      float* nll, float* lse, int64_t rows, int64_t classes) override;
  void smoothed_cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse,
                                       float smoothing, float scale, float* dlogits, int64_t rows,
                                       int64_t classes) override;
  void dropout_forward(const float* x, float* y, int64_t n, double p, uint64_t seed) override;
  void dropout_backward(const float* dy, float* dx, int64_t n, double p, uint64_t seed) override;
  // ---- adaptive_softmax.cu ------------------------------------------------------------------------
  void adaptive_partition(const int32_t* ids, int64_t rows, const AdaptiveBounds& bounds, int32_t* cluster_rows,
                          int32_t* cluster_ids, int32_t* head_targets, int64_t head_cols, int64_t* counts) override;
  void log_softmax_rows(const float* logits, int64_t rows, int64_t cols, int64_t write_cols, const float* base,
                        int64_t base_stride, float* out, int64_t ldo) override;

 private:
  void* device_alloc(size_t bytes, const char* what);

  int device_ = 0;
  int sm_count_ = 0;
  int max_smem_optin_ = 48 * 1024;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
};

namespace cuda {

// Makes a device current for its lifetime and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool changed_ = false;
};

// Typed scratch array from a backend's pool, released (stream-ordered) when it
// goes out of scope.
template <typename T>
class Scratch {
 public:
  Scratch() = default;
  Scratch(CudaBackend& backend, int64_t n) : backend_(&backend) {
    if (n > 0) data_ = static_cast<T*>(backend.scratch_alloc(static_cast<size_t>(n) * sizeof(T)));
  }
  ~Scratch() {
    if (data_) backend_->scratch_free(data_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Scratch(Scratch&& o) noexcept : backend_(o.backend_), data_(o.data_) { o.data_ = nullptr; }
  Scratch& operator=(Scratch&& o) noexcept {
    if (this != &o) {
      if (data_) backend_->scratch_free(data_);
      backend_ = o.backend_;
      data_ = o.data_;
      o.data_ = nullptr;
    }
    return *this;
  }
  T* get() const { return data_; }

 private:
  CudaBackend* backend_ = nullptr;
  T* data_ = nullptr;
};

}  // namespace cuda
}  // namespace fwp
