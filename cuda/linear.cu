// CudaBackend: dense products (cuBLAS sgemm for row-major data via the
// transpose identity C^T = op(B)^T op(A)^T), bias, axpy and scale.
#include <cstdint>
#include <string>

#include "cuda_backend.h"
#include "cuda_common.cuh"
#include "tile_math.cuh"

namespace fwp {

namespace {

cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

__global__ void add_bias_kernel(float* y, const float* bias, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) y[i] += bias[i % cols];
}

// dbias[c] += sum_r dy[r, c] in two deterministic passes: blocks of 32
// columns x kBiasRowsPerChunk rows write partial column sums (8 warps over
// interleaved rows, added in a fixed order), then one thread per column adds
// the chunks' partials in order.
constexpr int kBiasCols = 32;
constexpr int kBiasWarps = 8;
constexpr int64_t kBiasRowsPerChunk = 512;

__global__ void bias_grad_partial_kernel(float* partial, const float* dy, int64_t rows, int64_t cols) {
  __shared__ float warp_sums[kBiasWarps][kBiasCols];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBiasCols + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kBiasRowsPerChunk;
  const int64_t r1 = r0 + kBiasRowsPerChunk < rows ? r0 + kBiasRowsPerChunk : rows;
  float acc = 0.0f;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kBiasWarps) acc += dy[r * cols + c];
  }
  warp_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0.0f;
    for (int i = 0; i < kBiasWarps; ++i) total += warp_sums[i][threadIdx.x];
    partial[static_cast<int64_t>(blockIdx.y) * cols + c] = total;
  }
}

__global__ void bias_grad_finish_kernel(float* dbias, const float* partial, int64_t chunks, int64_t cols) {
  for (int64_t c = cuda::global_thread_index(); c < cols; c += cuda::global_thread_count()) {
    float total = 0.0f;
    for (int64_t i = 0; i < chunks; ++i) total += partial[i * cols + c];
    dbias[c] += total;
  }
}

// C_g[r, c] = beta * C_g[r, c] for the rows x cols block of each of `batch`
// matrices (row stride ldc, batch stride stride_c); with beta == 0 it writes 0
// without reading C, which may hold NaN.
__global__ void scale_block_kernel(float* c, int64_t rows, int64_t cols, int64_t ldc, int64_t stride_c,
                                   int64_t batch, float beta) {
  const int64_t per_matrix = rows * cols;
  const int64_t n = per_matrix * batch;
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) {
    const int64_t g = i / per_matrix, rc = i - g * per_matrix;
    float& x = c[g * stride_c + (rc / cols) * ldc + rc % cols];
    x = beta == 0.0f ? 0.0f : beta * x;
  }
}

// cuBLAS checks each leading dimension against the row length even for a
// matrix of one row, where it is never used (the CPU backend ignores it there):
// give such a matrix the smallest value cuBLAS accepts.
int64_t accepted_ld(int64_t rows, int64_t cols, int64_t ld) {
  return rows <= 1 && ld < cols ? cols : ld;
}

// Degenerate products, defined as on the CPU backend (src/ops/linear.cpp):
//   M <= 0, N <= 0 or batch <= 0: nothing to write, C untouched;
//   K <= 0 or alpha == 0: C = beta * C (C not read when beta == 0), A and B
//   never read. cuBLAS is not called there: it rejects K = 0 with a leading
//   dimension of 0 (what a caller with an empty inner dimension passes), and
//   with alpha == 0 it may still read A and B (NaN * 0 = NaN).
void scale_gemm_output(cudaStream_t stream, int64_t M, int64_t N, float beta, float* C, int64_t ldc,
                       int64_t stride_c, int64_t batch) {
  if (beta == 1.0f) return;
  scale_block_kernel<<<cuda::grid_for(M * N * batch, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0,
                       stream>>>(C, M, N, ldc, stride_c, batch, beta);
  FWP_CUDA_CHECK_LAUNCH("scale_block_kernel");
}

__global__ void axpy_kernel(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) y[i] += alpha * x[i];
}

__global__ void scale_kernel(int64_t n, float alpha, float* x) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) x[i] *= alpha;
}

}  // namespace

void CudaBackend::gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                       int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  cuda::DeviceGuard guard(device_);
  if (K <= 0 || alpha == 0.0f) {
    scale_gemm_output(stream_, M, N, beta, C, ldc, 0, 1);
    return;
  }
  lda = trans_a ? accepted_ld(K, M, lda) : accepted_ld(M, K, lda);
  ldb = trans_b ? accepted_ld(N, K, ldb) : accepted_ld(K, N, ldb);
  ldc = accepted_ld(M, N, ldc);
  const tile::ColMajorGemm cm = tile::to_col_major(trans_a, trans_b, M, N, K, A, lda, B, ldb);
  const cuda::CublasApi& blas = cuda::cublas_api();
  FWP_CUDA_CHECK(blas.sgemm(cublas_, op(cm.trans_first), op(cm.trans_second), cm.m, cm.n, cm.k, &alpha, cm.first,
                            cm.ld_first, cm.second, cm.ld_second, &beta, C, ldc));
}

void CudaBackend::gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                               const float* A, int64_t lda, int64_t stride_a, const float* B, int64_t ldb,
                               int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c,
                               int64_t batch) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  cuda::DeviceGuard guard(device_);
  if (K <= 0 || alpha == 0.0f) {
    scale_gemm_output(stream_, M, N, beta, C, ldc, stride_c, batch);
    return;
  }
  lda = trans_a ? accepted_ld(K, M, lda) : accepted_ld(M, K, lda);
  ldb = trans_b ? accepted_ld(N, K, ldb) : accepted_ld(K, N, ldb);
  ldc = accepted_ld(M, N, ldc);
  const tile::ColMajorGemm cm = tile::to_col_major(trans_a, trans_b, M, N, K, A, lda, B, ldb);
  const cuda::CublasApi& blas = cuda::cublas_api();
  FWP_CUDA_CHECK(blas.sgemm_strided_batched(cublas_, op(cm.trans_first), op(cm.trans_second), cm.m, cm.n, cm.k,
                                            &alpha, cm.first, cm.ld_first, stride_b, cm.second, cm.ld_second,
                                            stride_a, &beta, C, ldc, stride_c, batch));
}

void CudaBackend::add_bias(float* y, const float* bias, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  cuda::DeviceGuard guard(device_);
  add_bias_kernel<<<cuda::grid_for(rows * cols, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0,
                    stream_>>>(y, bias, rows, cols);
  FWP_CUDA_CHECK_LAUNCH("add_bias_kernel");
}

void CudaBackend::bias_grad_accumulate(float* dbias, const float* dy, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  cuda::DeviceGuard guard(device_);
  const int64_t chunks = (rows + kBiasRowsPerChunk - 1) / kBiasRowsPerChunk;
  if (chunks > 65535) {
    throw Error(FWP_ERR_UNSUPPORTED, "bias_grad_accumulate: " + std::to_string(rows) + " rows exceed the CUDA limit");
  }
  cuda::Scratch<float> partial(*this, chunks * cols);
  const dim3 grid(static_cast<unsigned>((cols + kBiasCols - 1) / kBiasCols), static_cast<unsigned>(chunks));
  bias_grad_partial_kernel<<<grid, dim3(kBiasCols, kBiasWarps), 0, stream_>>>(partial.get(), dy, rows, cols);
  FWP_CUDA_CHECK_LAUNCH("bias_grad_partial_kernel");
  bias_grad_finish_kernel<<<cuda::grid_for(cols, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0,
                            stream_>>>(dbias, partial.get(), chunks, cols);
  FWP_CUDA_CHECK_LAUNCH("bias_grad_finish_kernel");
}

void CudaBackend::axpy(int64_t n, float alpha, const float* x, float* y) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  axpy_kernel<<<cuda::grid_for(n, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0, stream_>>>(n, alpha, x,
                                                                                                        y);
  FWP_CUDA_CHECK_LAUNCH("axpy_kernel");
}

void CudaBackend::scale(int64_t n, float alpha, float* x) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  scale_kernel<<<cuda::grid_for(n, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0, stream_>>>(n, alpha, x);
  FWP_CUDA_CHECK_LAUNCH("scale_kernel");
}

}  // namespace fwp
