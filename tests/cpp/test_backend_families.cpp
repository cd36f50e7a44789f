// Backend op families (core/backend/*.h): a backend that implements only some
// families still builds, and every op it lacks reports FWP_ERR_UNSUPPORTED with
// the op and the device named, instead of crashing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/buffer.h"

namespace {

// Host memory and nothing else: the smallest possible backend.
class MemoryOnlyBackend final : public fwp::Backend<float> {
 public:
  fwp::Device device() const override { return fwp::Device::Cuda; }  // pretend, to check the name
  float* allocate(int64_t n) override { return n > 0 ? new float[static_cast<size_t>(n)] : nullptr; }
  void deallocate(float* p) noexcept override { delete[] p; }
  int32_t* allocate_int(int64_t n) override { return n > 0 ? new int32_t[static_cast<size_t>(n)] : nullptr; }
  void deallocate_int(int32_t* p) noexcept override { delete[] p; }
  void upload(float* dst, const float* src, int64_t n) override { std::copy(src, src + n, dst); }
  void download(float* dst, const float* src, int64_t n) override { std::copy(src, src + n, dst); }
  void upload_int(int32_t* dst, const int32_t* src, int64_t n) override { std::copy(src, src + n, dst); }
  void copy(float* dst, const float* src, int64_t n) override { std::copy(src, src + n, dst); }
  void fill(float* dst, float value, int64_t n) override { std::fill(dst, dst + n, value); }
  void synchronize() override {}
};

void expect_unsupported(const std::function<void()>& call, const std::string& op) {
  try {
    call();
    ADD_FAILURE() << op << " did not throw";
  } catch (const fwp::Error& e) {
    EXPECT_EQ(e.status(), FWP_ERR_UNSUPPORTED) << op;
    EXPECT_EQ(std::string(e.what()), "the " + op + " op is not supported on the CUDA backend");
  }
}

TEST(BackendFamilies, MissingOpsReportUnsupportedNamingOpAndDevice) {
  MemoryOnlyBackend be;
  std::vector<float> a(16, 1.0f), b(16, 2.0f), c(16, 0.0f);
  be.copy(c.data(), a.data(), 16);  // the memory family works
  EXPECT_EQ(c[3], 1.0f);

  expect_unsupported([&] { be.gemm(false, false, 2, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2); },
                     "gemm");
  expect_unsupported([&] { be.split_heads(a.data(), c.data(), 1, 2, 2, 2); }, "split_heads");
  expect_unsupported([&] { be.sigmoid_forward(a.data(), c.data(), 4); }, "sigmoid_forward");
  fwp::FeatureMapSpec spec;
  spec.d_in = 4;
  expect_unsupported([&] { be.feature_map_forward(spec, nullptr, a.data(), c.data(), 1); }, "feature_map_forward");
  fwp::FastWeightShape shape{1, 2, 2, 2};
  expect_unsupported(
      [&] {
        be.fast_weight_forward(fwp::UpdateRule::Sum, fwp::Algorithm::Auto, 0, shape, a.data(), a.data(), a.data(),
                               nullptr, nullptr, c.data(), b.data(), c.data());
      },
      "fast_weight_forward");
  expect_unsupported(
      [&] { be.attn_norm_forward(shape, a.data(), a.data(), nullptr, a.data(), 1e-6f, c.data(), b.data(), nullptr); },
      "attn_norm_forward");
  expect_unsupported([&] { be.softmax_attention_forward(1, 2, 2, a.data(), a.data(), a.data(), 1.0f, c.data(), b.data()); },
                     "softmax_attention_forward");
  expect_unsupported(
      [&] { be.cross_attention_forward(1, 2, 2, 2, 2, a.data(), a.data(), a.data(), 1.0f, c.data(), b.data()); },
      "cross_attention_forward");
  std::vector<int32_t> ids{0, 1};
  expect_unsupported([&] { be.embedding_gather(a.data(), ids.data(), c.data(), 2, 2); }, "embedding_gather");
  expect_unsupported([&] { be.step_sum(a.data(), c.data(), 1, 2, 2); }, "step_sum");
  expect_unsupported([&] { be.onehot_mse_forward(a.data(), ids.data(), c.data(), 2, 2); }, "onehot_mse_forward");
  expect_unsupported([&] { be.sum_squares(a.data(), 4); }, "sum_squares");
  expect_unsupported([&] { be.zero_padded_steps(c.data(), ids.data(), 2, 1, 2, 2); }, "zero_padded_steps");
  expect_unsupported([&] { be.outer_product_sum(1, 2, 2, 2, a.data(), b.data(), c.data()); }, "outer_product_sum");
  expect_unsupported(
      [&] {
        be.masked_attention_forward(1, 1, 2, 2, 2, 2, a.data(), a.data(), a.data(), ids.data(), 1.0f, c.data(),
                                    b.data());
      },
      "masked_attention_forward");
}

TEST(BackendFamilies, TheCpuBackendImplementsEveryOp) {
  // Spot checks across the families: each runs without an UNSUPPORTED error.
  auto be = fwp::make_cpu_backend<double>(1);
  std::vector<double> a(16, 0.5), b(16, 0.25), c(16, 0.0);
  be->gemm(false, false, 2, 2, 2, 1.0, a.data(), 2, b.data(), 2, 0.0, c.data(), 2);
  EXPECT_DOUBLE_EQ(c[0], 0.25);
  EXPECT_DOUBLE_EQ(be->sum_squares(a.data(), 4), 1.0);
  be->sigmoid_forward(a.data(), c.data(), 1);
  EXPECT_NEAR(c[0], 1.0 / (1.0 + std::exp(-0.5)), 1e-15);
  EXPECT_EQ(be->device(), fwp::Device::Cpu);
}

}  // namespace

// for_each_block (core/backend/schedule.h): a device backend gets the whole
// range in one call; the CPU cuts it into blocks that cover every item exactly
// once, runs them on its threads, and ops called inside a block stay on that
// block's thread (a nested call runs its blocks in order on the caller).
namespace {

std::vector<int> coverage(fwp::Backend<float>& be, int64_t items, int64_t bytes, std::vector<int64_t>* sizes) {
  std::vector<int> seen(static_cast<size_t>(items), 0);
  std::mutex mutex;
  be.for_each_block(items, bytes, [&](int64_t b0, int64_t b1) {
    std::lock_guard<std::mutex> lock(mutex);
    EXPECT_LT(b0, b1);
    for (int64_t i = b0; i < b1; ++i) ++seen[static_cast<size_t>(i)];
    if (sizes) sizes->push_back(b1 - b0);
  });
  return seen;
}

}  // namespace

TEST(BackendFamilies, ForEachBlockDefaultIsOneCallForTheWholeRange) {
  MemoryOnlyBackend be;
  std::vector<int64_t> sizes;
  const auto seen = coverage(be, 37, 1 << 30, &sizes);
  EXPECT_EQ(sizes, std::vector<int64_t>{37});
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 37);
  sizes.clear();
  coverage(be, 0, 8, &sizes);
  EXPECT_TRUE(sizes.empty());
}

TEST(BackendFamilies, CpuForEachBlockCoversEveryItemOnceInCacheSizedBlocks) {
  for (const int threads : {1, 2, 4}) {
    auto be = fwp::make_cpu_backend<float>(threads);
    for (const int64_t items : {int64_t{1}, int64_t{5}, int64_t{33}, int64_t{1000}}) {
      for (const int64_t bytes : {int64_t{1}, int64_t{100000}, int64_t{1} << 30}) {
        std::vector<int64_t> sizes;
        const auto seen = coverage(*be, items, bytes, &sizes);
        EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), items) << threads << " threads, " << items << " items";
        // Blocks of at most 512 KiB of items (at least one item).
        const int64_t most = std::max<int64_t>(1, (int64_t(512) << 10) / bytes);
        for (const int64_t n : sizes) EXPECT_LE(n, most) << items << " items of " << bytes << " bytes";
      }
    }
    // Ops inside a block run there; the result equals one call over everything.
    const int64_t rows = 64, cols = 3000;
    std::vector<float> x(static_cast<size_t>(rows * cols)), whole(x.size()), blocked(x.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 97) - 48.0f;
    fwp::Buffer<float> in(be, rows * cols), a(be, rows * cols), b(be, rows * cols);
    in.from_host(x.data(), rows * cols);
    be->sigmoid_forward(in.data(), a.data(), rows * cols);
    be->for_each_block(rows, cols * 8, [&](int64_t r0, int64_t r1) {
      be->sigmoid_forward(in.data() + r0 * cols, b.data() + r0 * cols, (r1 - r0) * cols);
    });
    EXPECT_EQ(a.to_host(), b.to_host()) << threads << " threads";
  }
}
