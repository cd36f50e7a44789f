// CUDA vs CPU for the adaptive_softmax op family (cluster partition, block
// log-softmax) and for AdaptiveInput + AdaptiveSoftmax run on the GPU (suite
// CudaParityAdaptive). Built only with FWP_HAVE_CUDA; every test skips with a
// visible "no CUDA device" message when none is present (fails instead under
// FWP_REQUIRE_CUDA=1). GPU outputs are pre-poisoned with NaN; the partition is
// compared exactly (it is stable on both), the rest against the CPU backend in
// double with test_cuda_parity.cpp's relative tolerance.
#include "core/backend.h"

#if FWP_HAVE_CUDA

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "../../cuda/cuda_backend.h"
#include "core/buffer.h"
#include "core/id_buffer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "cuda_test_util.h"
#include "nn/adaptive_input.h"
#include "nn/adaptive_softmax.h"

namespace fwp {
namespace {

using cudatest::close_rel;
using cudatest::FVec;
using DVec = std::vector<double>;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class CudaParityAdaptive : public ::testing::Test {
 public:
  void SetUp() override {
    FWP_SKIP_OR_FAIL_WITHOUT_CUDA_DEVICE("CudaParityAdaptive");
    gpu_ = make_cuda_backend(0);
    cpud_ = make_cpu_backend<double>(2);
  }
  std::shared_ptr<Backend<float>> gpu_;
  std::shared_ptr<Backend<double>> cpud_;
};

AdaptiveBounds bounds_of(std::vector<int64_t> b) {
  AdaptiveBounds out;
  out.clusters = static_cast<int64_t>(b.size()) - 1;
  for (size_t i = 0; i < b.size(); ++i) out.bounds[i] = b[i];
  return out;
}

// The memory family has no int download: gather from a one-column table
// t[i] = i + 1 turns ids (< 2^16; -1 -> a zero row) into exact floats.
std::vector<int32_t> download_ids(const std::shared_ptr<Backend<float>>& be, const int32_t* p, int64_t n) {
  std::vector<int32_t> out(static_cast<size_t>(n));
  if (n == 0) return out;
  constexpr int64_t kTable = int64_t{1} << 16;
  FVec t(static_cast<size_t>(kTable));
  for (int64_t i = 0; i < kTable; ++i) t[i] = static_cast<float>(i + 1);
  Buffer<float> table(be, kTable), f(be, n);
  table.from_host(t.data(), kTable);
  be->embedding_gather(table.data(), p, f.data(), n, 1);
  const FVec h = f.to_host();
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(h[i]) - 1;
  return out;
}

TEST_F(CudaParityAdaptive, PartitionIsTheCpusExactlyOverManyChunks) {
  const AdaptiveBounds b = bounds_of({0, 50, 400, 1000, 3000});
  Rng rng(7);
  const int64_t n = 5000;  // several 1024-row chunks
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = rng.uniform() < 0.1 ? -1 : static_cast<int32_t>(rng.below(3000));
  const int64_t head_cols = 50 + 3;
  std::vector<int32_t> rows(ids.size()), local(ids.size()), head(ids.size());
  std::vector<int64_t> counts(4), gpu_counts(4);
  cpud_->adaptive_partition(ids.data(), n, b, rows.data(), local.data(), head.data(), head_cols, counts.data());
  IdBuffer<float> dids, drows(gpu_, n), dlocal(gpu_, n), dhead(gpu_, n);
  dids.upload(gpu_, ids.data(), n);
  gpu_->adaptive_partition(dids.data(), n, b, drows.data(), dlocal.data(), dhead.data(), head_cols,
                           gpu_counts.data());
  EXPECT_EQ(gpu_counts, counts);
  int64_t scored = 0;
  for (int64_t c : counts) scored += c;
  const auto g_rows = download_ids(gpu_, drows.data(), scored), g_local = download_ids(gpu_, dlocal.data(), scored);
  EXPECT_EQ(g_rows, std::vector<int32_t>(rows.begin(), rows.begin() + scored));
  EXPECT_EQ(g_local, std::vector<int32_t>(local.begin(), local.begin() + scored));
  EXPECT_EQ(download_ids(gpu_, dhead.data(), n), head);  // -1 for padding rows included
}

TEST_F(CudaParityAdaptive, LogSoftmaxRowsIntoAColumnBlock) {
  Rng rng(3);
  const int64_t rows = 37, cols = 301, write_cols = 290, ldo = 333, base_stride = 5;
  const FVec logits = cudatest::normal(rng, rows * cols, 3.0), base = cudatest::normal(rng, rows * base_stride);
  const DVec logits_d(logits.begin(), logits.end()), base_d(base.begin(), base.end());
  DVec ref(static_cast<size_t>(rows * ldo), 0.0);
  cpud_->log_softmax_rows(logits_d.data(), rows, cols, write_cols, base_d.data() + 2, base_stride, ref.data(), ldo);
  Buffer<float> dl(gpu_, rows * cols), db(gpu_, rows * base_stride), dout(gpu_, rows * ldo);
  dl.from_host(logits.data(), rows * cols);
  db.from_host(base.data(), rows * base_stride);
  gpu_->fill(dout.data(), kNaN, rows * ldo);
  gpu_->log_softmax_rows(dl.data(), rows, cols, write_cols, db.data() + 2, base_stride, dout.data(), ldo);
  const FVec got = dout.to_host();
  FVec got_block;
  DVec ref_block;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < ldo; ++c) {
      if (c < write_cols) {
        got_block.push_back(got[r * ldo + c]);
        ref_block.push_back(ref[r * ldo + c]);
      } else {
        EXPECT_TRUE(std::isnan(got[r * ldo + c])) << "written past the block at " << r << "," << c;
      }
    }
  EXPECT_TRUE(close_rel(got_block, ref_block, 1e-5));
}

// AdaptiveInput -> AdaptiveSoftmax (tied, tied tail projections, div_val 2)
// and a plain untied div_val 1 softmax: loss, row losses, hidden gradient,
// every parameter gradient and the log-probabilities.
void run_modules(const std::shared_ptr<Backend<float>>& gpu, const std::shared_ptr<Backend<double>>& cpu,
                 int64_t div_val, bool tie) {
  SCOPED_TRACE("div_val " + std::to_string(div_val) + (tie ? " tied" : ""));
  const int64_t vocab = 700, d = 48, n = 300;
  const std::vector<int64_t> cutoffs{60, 250};
  ParameterList<float> pf;
  ParameterList<double> pd;
  AdaptiveInput<float> in_f(pf, gpu, "emb", vocab, d, cutoffs, div_val);
  AdaptiveInput<double> in_d(pd, cpu, "emb", vocab, d, cutoffs, div_val);
  AdaptiveSoftmax<float> sm_f(pf, gpu, "crit", vocab, d, cutoffs, div_val, tie ? &in_f : nullptr, tie && div_val > 1);
  AdaptiveSoftmax<double> sm_d(pd, cpu, "crit", vocab, d, cutoffs, div_val, tie ? &in_d : nullptr, tie && div_val > 1);
  pf.allocate(gpu);
  pd.allocate(cpu);
  Rng rng(19);
  for (int64_t i = 0; i < pd.size(); ++i) {
    const FVec v = cudatest::normal(rng, pd[i].numel(), 0.3);
    pf[i].value.from_host(v.data(), pd[i].numel());
    const DVec vd(v.begin(), v.end());
    pd[i].value.from_host(vd.data(), pd[i].numel());
  }
  std::vector<int32_t> ids(static_cast<size_t>(n)), targets(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    ids[i] = i % 17 == 0 ? -1 : static_cast<int32_t>(rng.below(vocab));
    targets[i] = i % 13 == 0 ? -1 : static_cast<int32_t>(rng.below(vocab));
  }
  IdBuffer<float> idf, tf;
  IdBuffer<double> idd, td;
  idf.upload(gpu, ids.data(), n);
  tf.upload(gpu, targets.data(), n);
  idd.upload(cpu, ids.data(), n);
  td.upload(cpu, targets.data(), n);
  Buffer<float> hf(gpu, n * d), dhf(gpu, n * d), lpf(gpu, n * vocab);
  DVec hd(static_cast<size_t>(n * d)), dhd(static_cast<size_t>(n * d)), lpd(static_cast<size_t>(n * vocab));
  gpu->fill(hf.data(), kNaN, n * d);
  in_f.forward(pf, idf.view({n}), TensorView<float>(hf.data(), {n, d}));
  in_d.forward(pd, idd.view({n}), TensorView<double>(hd.data(), {n, d}));
  EXPECT_TRUE(close_rel(hf.to_host(), hd, 1e-5)) << "input embedding";
  const double lf = sm_f.forward(pf, ConstView<float>(hf.data(), {n, d}), tf.view({n}));
  const double ld = sm_d.forward(pd, ConstView<double>(hd.data(), {n, d}), td.view({n}));
  EXPECT_NEAR(lf, ld, 1e-5 * std::fabs(ld));
  EXPECT_TRUE(close_rel(sm_f.row_losses().to_host(), sm_d.row_losses().to_host(), 1e-5)) << "row losses";
  gpu->fill(dhf.data(), kNaN, n * d);
  sm_f.backward(pf, 0.01f, TensorView<float>(dhf.data(), {n, d}));
  sm_d.backward(pd, 0.01, TensorView<double>(dhd.data(), {n, d}));
  EXPECT_TRUE(close_rel(dhf.to_host(), dhd, 1e-4)) << "hidden gradient";
  in_f.backward(pf, idf.view({n}), ConstView<float>(dhf.data(), {n, d}));
  in_d.backward(pd, idd.view({n}), ConstView<double>(dhd.data(), {n, d}));
  for (int64_t i = 0; i < pd.size(); ++i)
    EXPECT_TRUE(close_rel(pf[i].grad.to_host(), pd[i].grad.to_host(), 1e-4)) << pd[i].name;
  gpu->fill(lpf.data(), kNaN, n * vocab);
  sm_f.log_probs(pf, ConstView<float>(hf.data(), {n, d}), TensorView<float>(lpf.data(), {n, vocab}));
  sm_d.log_probs(pd, ConstView<double>(hd.data(), {n, d}), TensorView<double>(lpd.data(), {n, vocab}));
  EXPECT_TRUE(close_rel(lpf.to_host(), lpd, 1e-5)) << "log-probabilities";
}

TEST_F(CudaParityAdaptive, InputAndSoftmaxModulesMatchTheCpuInDouble) {
  run_modules(gpu_, cpud_, 2, true);
  run_modules(gpu_, cpud_, 1, false);
  run_modules(gpu_, cpud_, 4, false);
}

}  // namespace
}  // namespace fwp

#endif  // FWP_HAVE_CUDA
