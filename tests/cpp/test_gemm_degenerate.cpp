// gemm's degenerate cases, as the CPU backend defines them (src/ops/linear.cpp)
// and the CUDA backend must match (cuda/linear.cu calls no cuBLAS there):
//   M == 0 or N == 0 (or batch == 0): C is not touched;
//   K == 0 or alpha == 0: C = beta * C, A and B are never read (they may be
//   null, have a leading dimension of 0, or hold NaN), and with beta == 0 C is
//   not read either;
//   a matrix of one row: its leading dimension is never used.
// Suite GemmDegenerate runs on the CPU everywhere; CudaParityGemmDegenerate
// compares the CUDA backend (gemm and gemm_batched) with it on a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/backend.h"
#include "core/rng.h"

#if FWP_HAVE_CUDA
#include "../../cuda/cuda_backend.h"
#include "core/buffer.h"
#include "cuda_test_util.h"
#endif

namespace fwp {
namespace {

template <typename T>
std::vector<T> random_vector(Rng& rng, int64_t n) {
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<T>(rng.normal());
  return v;
}

template <typename T>
std::string where(bool ta, bool tb, T alpha, T beta) {
  return "ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " alpha=" + std::to_string(alpha) +
         " beta=" + std::to_string(beta);
}

// C0 with its M x N block replaced by beta * C0 (0 where beta == 0), padding kept.
template <typename T>
std::vector<T> scaled_block(const std::vector<T>& c0, int64_t M, int64_t N, int64_t ldc, T beta) {
  std::vector<T> out = c0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) out[i * ldc + j] = beta == T(0) ? T(0) : beta * c0[i * ldc + j];
  return out;
}

// With beta == 0 the block is poisoned: a backend that reads C there shows NaN.
template <typename T>
std::vector<T> input_c(const std::vector<T>& c0, int64_t M, int64_t N, int64_t ldc, T beta) {
  std::vector<T> c = c0;
  if (beta == T(0)) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) c[i * ldc + j] = std::numeric_limits<T>::quiet_NaN();
  }
  return c;
}

template <typename T>
class GemmDegenerate : public ::testing::Test {};
using Precisions = ::testing::Types<float, double>;
TYPED_TEST_SUITE(GemmDegenerate, Precisions);

TYPED_TEST(GemmDegenerate, EmptyInnerDimensionScalesCAndReadsNoInput) {
  using T = TypeParam;
  Rng rng(21);
  const int64_t M = 37, N = 45, ldc = N + 3;  // large enough for the column/row split paths with 2 threads
  const std::vector<T> c0 = random_vector<T>(rng, M * ldc);
  for (int threads : {1, 2}) {
    auto be = make_cpu_backend<T>(threads);
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (T alpha : {T(1.5), T(0)})
          for (T beta : {T(0), T(1), T(-0.5)}) {
            std::vector<T> c = input_c(c0, M, N, ldc, beta);
            // K = 0: no elements in A or B, null pointers and leading dimensions of 0.
            be->gemm(ta, tb, M, N, 0, alpha, nullptr, 0, nullptr, 0, beta, c.data(), ldc);
            EXPECT_EQ(c, scaled_block(c0, M, N, ldc, beta)) << where(ta, tb, alpha, beta) << " threads=" << threads;
          }
  }
}

TYPED_TEST(GemmDegenerate, ZeroAlphaReadsNeitherANorB) {
  using T = TypeParam;
  Rng rng(22);
  const int64_t M = 9, N = 6, K = 5, ldc = N + 1;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const std::vector<T> a(static_cast<size_t>(M * K), nan), b(static_cast<size_t>(K * N), nan);
  const std::vector<T> c0 = random_vector<T>(rng, M * ldc);
  auto be = make_cpu_backend<T>(1);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (T beta : {T(0), T(1), T(2)}) {
        std::vector<T> c = input_c(c0, M, N, ldc, beta);
        be->gemm(ta, tb, M, N, K, T(0), a.data(), ta ? M : K, b.data(), tb ? K : N, beta, c.data(), ldc);
        EXPECT_EQ(c, scaled_block(c0, M, N, ldc, beta)) << where(ta, tb, T(0), beta);
      }
}

TYPED_TEST(GemmDegenerate, EmptyOutputTouchesNothing) {
  using T = TypeParam;
  Rng rng(23);
  const std::vector<T> c0 = random_vector<T>(rng, 12);
  auto be = make_cpu_backend<T>(2);
  for (int64_t M : {0, 3})
    for (int64_t N : {0, 4}) {
      if (M > 0 && N > 0) continue;
      std::vector<T> c = c0;
      be->gemm(false, false, M, N, 2, T(1), nullptr, 2, nullptr, N, T(0), c.data(), 4);
      EXPECT_EQ(c, c0) << "M=" << M << " N=" << N;
    }
}

// Row-major reference: C = alpha op(A) op(B) + beta C in double.
template <typename T>
void reference_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const std::vector<T>& A,
                    int64_t lda, const std::vector<T>& B, int64_t ldb, double beta, std::vector<T>& C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < K; ++p) {
        acc += double(ta ? A[p * lda + i] : A[i * lda + p]) * double(tb ? B[j * ldb + p] : B[p * ldb + j]);
      }
      T& c = C[i * ldc + j];
      c = static_cast<T>(alpha * acc + (beta == 0.0 ? 0.0 : beta * double(c)));
    }
}

// One-row operands with a leading dimension smaller than the row (1): never
// stepped over, so any value must do.
struct OneRowCase {
  const char* name;
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
};
const OneRowCase kOneRowCases[] = {
    {"A and C one row", false, false, 1, 7, 5, 1, 7, 1},
    {"A^T and B one row (K = 1)", true, false, 6, 4, 1, 1, 1, 4},
    {"B^T one row (N = 1), C one column", false, true, 5, 1, 3, 3, 1, 1},
};

TYPED_TEST(GemmDegenerate, OneRowMatricesIgnoreTheirLeadingDimension) {
  using T = TypeParam;
  Rng rng(24);
  auto be = make_cpu_backend<T>(1);
  for (const OneRowCase& c : kOneRowCases) {
    const int64_t a_rows = c.ta ? c.K : c.M, b_rows = c.tb ? c.N : c.K;
    const int64_t a_cols = c.ta ? c.M : c.K, b_cols = c.tb ? c.K : c.N;
    // Enough elements for the rows as laid out, however short the leading dimension.
    const std::vector<T> A = random_vector<T>(rng, (a_rows - 1) * c.lda + a_cols);
    const std::vector<T> B = random_vector<T>(rng, (b_rows - 1) * c.ldb + b_cols);
    const std::vector<T> c0 = random_vector<T>(rng, (c.M - 1) * c.ldc + c.N);
    std::vector<T> got = c0, expect = c0;
    be->gemm(c.ta, c.tb, c.M, c.N, c.K, T(0.75), A.data(), c.lda, B.data(), c.ldb, T(0.5), got.data(), c.ldc);
    reference_gemm(c.ta, c.tb, c.M, c.N, c.K, 0.75, A, c.lda, B, c.ldb, 0.5, expect, c.ldc);
    const double tol = std::is_same<T, float>::value ? 1e-5 : 1e-12;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(double(got[i]), double(expect[i]), tol) << c.name << " element " << i;
    }
  }
}

#if FWP_HAVE_CUDA

using cudatest::FVec;

class CudaParityGemmDegenerate : public ::testing::Test {
 public:
  void SetUp() override {
    FWP_SKIP_OR_FAIL_WITHOUT_CUDA_DEVICE("CudaParityGemmDegenerate");  // fails instead under FWP_REQUIRE_CUDA=1
    gpu_ = make_cuda_backend(0);
    cuda_ = dynamic_cast<CudaBackend*>(gpu_.get());
    ASSERT_NE(cuda_, nullptr);
    cpu_ = make_cpu_backend<float>(2);
  }
  Buffer<float> dev(const FVec& h) {
    Buffer<float> b(gpu_, static_cast<int64_t>(h.size()));
    b.from_host(h.data(), static_cast<int64_t>(h.size()));
    return b;
  }
  std::shared_ptr<Backend<float>> gpu_, cpu_;
  CudaBackend* cuda_ = nullptr;
};

TEST_F(CudaParityGemmDegenerate, EmptyInnerDimensionAndZeroAlphaMatchTheCpu) {
  Rng rng(31);
  const int64_t M = 37, N = 45, ldc = N + 3, K = 4;
  const FVec c0 = cudatest::normal(rng, M * ldc);
  const FVec nan_a(static_cast<size_t>(M * K), std::numeric_limits<float>::quiet_NaN());
  const FVec nan_b(static_cast<size_t>(K * N), std::numeric_limits<float>::quiet_NaN());
  Buffer<float> da = dev(nan_a), db = dev(nan_b);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (float beta : {0.0f, 1.0f, -0.5f}) {
        const FVec c_in = input_c(c0, M, N, ldc, beta);
        // K = 0 with null inputs and leading dimensions of 0 (cuBLAS rejects these).
        FVec c_cpu = c_in;
        Buffer<float> dc = dev(c_in);
        gpu_->gemm(ta, tb, M, N, 0, 1.5f, nullptr, 0, nullptr, 0, beta, dc.data(), ldc);
        cpu_->gemm(ta, tb, M, N, 0, 1.5f, nullptr, 0, nullptr, 0, beta, c_cpu.data(), ldc);
        EXPECT_EQ(dc.to_host(), c_cpu) << "K = 0, " << where(ta, tb, 1.5f, beta);
        // alpha = 0 with NaN inputs: A and B must not be read.
        c_cpu = c_in;
        Buffer<float> dc2 = dev(c_in);
        gpu_->gemm(ta, tb, M, N, K, 0.0f, da.data(), ta ? M : K, db.data(), tb ? K : N, beta, dc2.data(), ldc);
        cpu_->gemm(ta, tb, M, N, K, 0.0f, nan_a.data(), ta ? M : K, nan_b.data(), tb ? K : N, beta, c_cpu.data(),
                   ldc);
        EXPECT_EQ(dc2.to_host(), c_cpu) << "alpha = 0, " << where(ta, tb, 0.0f, beta);
      }
}

TEST_F(CudaParityGemmDegenerate, BatchedEmptyInnerDimensionAndEmptyOutputs) {
  Rng rng(32);
  const int64_t M = 5, N = 7, ldc = N + 2, batch = 3, stride_c = M * ldc + 4;
  const FVec c0 = cudatest::normal(rng, batch * stride_c);
  for (float beta : {0.0f, 1.0f, 3.0f}) {
    FVec expect = c0;
    for (int64_t g = 0; g < batch; ++g)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          float& x = expect[g * stride_c + i * ldc + j];
          x = beta == 0.0f ? 0.0f : beta * x;
        }
    Buffer<float> dc = dev(c0);
    cuda_->gemm_batched(false, true, M, N, 0, 1.0f, nullptr, 0, 0, nullptr, 0, 0, beta, dc.data(), ldc, stride_c,
                        batch);
    EXPECT_EQ(dc.to_host(), expect) << "K = 0, beta=" << beta;
  }
  // Nothing to write: the output stays as it was.
  Buffer<float> dc = dev(c0);
  cuda_->gemm_batched(false, false, 0, N, 3, 1.0f, nullptr, 3, 0, nullptr, N, 0, 0.0f, dc.data(), ldc, stride_c,
                      batch);
  cuda_->gemm_batched(false, false, M, 0, 3, 1.0f, nullptr, 3, 0, nullptr, 0, 0, 0.0f, dc.data(), ldc, stride_c,
                      batch);
  cuda_->gemm_batched(false, false, M, N, 3, 1.0f, nullptr, 3, 0, nullptr, N, 0, 0.0f, dc.data(), ldc, stride_c, 0);
  gpu_->gemm(false, false, 0, N, 3, 1.0f, nullptr, 3, nullptr, N, 0.0f, dc.data(), ldc);
  EXPECT_EQ(dc.to_host(), c0) << "M, N or batch = 0";
}

TEST_F(CudaParityGemmDegenerate, OneRowMatricesAndBatchedProductMatchTheCpu) {
  Rng rng(33);
  for (const OneRowCase& c : kOneRowCases) {
    const int64_t a_rows = c.ta ? c.K : c.M, b_rows = c.tb ? c.N : c.K;
    const int64_t a_cols = c.ta ? c.M : c.K, b_cols = c.tb ? c.K : c.N;
    const FVec A = cudatest::normal(rng, (a_rows - 1) * c.lda + a_cols);
    const FVec B = cudatest::normal(rng, (b_rows - 1) * c.ldb + b_cols);
    const FVec c0 = cudatest::normal(rng, (c.M - 1) * c.ldc + c.N);
    FVec expect = c0;
    cpu_->gemm(c.ta, c.tb, c.M, c.N, c.K, 0.75f, A.data(), c.lda, B.data(), c.ldb, 0.5f, expect.data(), c.ldc);
    Buffer<float> da = dev(A), db = dev(B), dc = dev(c0);
    gpu_->gemm(c.ta, c.tb, c.M, c.N, c.K, 0.75f, da.data(), c.lda, db.data(), c.ldb, 0.5f, dc.data(), c.ldc);
    EXPECT_TRUE(cudatest::close_rel(dc.to_host(), expect, 1e-5)) << c.name;
    // The same product as a batch of 2 (second batch offset by whole arrays).
    const int64_t sa = static_cast<int64_t>(A.size()), sb = static_cast<int64_t>(B.size()),
                  sc = static_cast<int64_t>(c0.size());
    FVec A2 = A, B2 = B, C2 = c0;
    A2.insert(A2.end(), A.begin(), A.end());
    B2.insert(B2.end(), B.begin(), B.end());
    C2.insert(C2.end(), c0.begin(), c0.end());
    Buffer<float> da2 = dev(A2), db2 = dev(B2), dc2 = dev(C2);
    cuda_->gemm_batched(c.ta, c.tb, c.M, c.N, c.K, 0.75f, da2.data(), c.lda, sa, db2.data(), c.ldb, sb, 0.5f,
                        dc2.data(), c.ldc, sc, 2);
    FVec expect2 = expect;
    expect2.insert(expect2.end(), expect.begin(), expect.end());
    EXPECT_TRUE(cudatest::close_rel(dc2.to_host(), expect2, 1e-5)) << c.name << " (batched)";
  }
}

#endif  // FWP_HAVE_CUDA

}  // namespace
}  // namespace fwp
