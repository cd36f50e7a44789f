// CUDA vs CPU for whole networks (suite CudaParityNetworks): the translation
// network (Seq2SeqNetwork) and the language model (LmNetwork) built on the GPU
// and on the CPU in double from the same seed, so with the same parameters.
// A padded batch's loss and every parameter gradient, then incremental
// decoding (encode + steps fed the CPU's greedy tokens, so a near tie cannot
// make the two diverge) and the LM's step-by-step log-probabilities, must
// agree to float tolerance. The module and op suites check the parts; this
// checks how the networks wire them on the device (strides, padding, state
// reorders, host/device hand-offs). Shapes are odd (d_head 4 and 6, lengths
// not multiples of a warp). Built only with FWP_HAVE_CUDA; skips visibly
// without a device (fails under FWP_REQUIRE_CUDA=1).
#include "core/backend.h"

#if FWP_HAVE_CUDA

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "cuda_test_util.h"
#include "models/lm/lm_model.h"
#include "models/seq2seq/seq2seq_network.h"

namespace fwp {
namespace {

using cudatest::close_rel;

constexpr int32_t kBos = 0, kPad = 1, kEos = 2;
constexpr double kRtol = 2e-3;  // float on the GPU against double on the CPU, through a few layers

enum class Kind { Softmax, Linear, Favor, Dpfp, DeltaDecoder };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Softmax: return "softmax";
    case Kind::Linear: return "linear";
    case Kind::Favor: return "favor";
    case Kind::Dpfp: return "dpfp";
    case Kind::DeltaDecoder: return "delta_decoder";
  }
  return "?";
}

Seq2SeqConfig seq2seq_config(Kind kind) {
  Seq2SeqConfig c;
  c.vocab_size = 29;
  c.pad_id = kPad;
  c.bos_id = kBos;
  c.eos_id = kEos;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.set_sizes(12, 2, 6);
  c.d_ff = 20;
  c.dropout = 0.0;
  c.label_smoothing = 0.1;
  c.init_std = 0.3;
  c.encoder_attention.init_std = c.cross_attention.init_std = c.decoder_attention.init_std = 0.3;
  auto softmax = [](NonCausalAttentionConfig& a) {
    a.softmax = true;
    a.attn_normalize = false;
    a.sum_normalize = false;
  };
  switch (kind) {
    case Kind::Softmax:
      softmax(c.encoder_attention);
      softmax(c.cross_attention);
      c.decoder_attention.softmax = true;
      c.decoder_attention.attn_normalize = false;
      c.decoder_attention.sum_normalize = false;
      break;
    case Kind::Linear: break;
    case Kind::Favor:  // fixed projections: both networks draw the same ones at construction
      c.encoder_attention.feature_map = c.cross_attention.feature_map = FeatureMap::Favor;
      c.decoder_attention.feature_map = FeatureMap::Favor;
      c.encoder_attention.favor_features = c.cross_attention.favor_features = 7;
      c.decoder_attention.favor_features = 7;
      c.decoder_attention.favor_redraw = false;
      c.favor_redraw = false;
      break;
    case Kind::Dpfp:
      c.encoder_attention.feature_map = c.cross_attention.feature_map = FeatureMap::Dpfp;
      c.decoder_attention.feature_map = FeatureMap::Dpfp;
      c.decoder_attention.dpfp_nu = 2;
      break;
    case Kind::DeltaDecoder:
      c.decoder_attention.update_rule = UpdateRule::Delta;
      c.decoder_attention.sum_normalize = true;
      c.decoder_attention.attn_normalize = false;
      break;
  }
  return c;
}

// Three pairs of different lengths (both sides padded), ids in [3, vocab).
struct Batch {
  std::vector<int32_t> src, src_len, tgt_in, tgt_out, tgt_len;
  int64_t B = 3, S = 0, T = 0;
  Seq2SeqBatch view() const {
    Seq2SeqBatch b;
    b.src = src.data();
    b.src_lengths = src_len.data();
    b.tgt_in = tgt_in.data();
    b.tgt_out = tgt_out.data();
    b.tgt_lengths = tgt_len.data();
    b.batch = B;
    b.src_length = S;
    b.tgt_length = T;
    return b;
  }
};

Batch make_batch(int64_t vocab) {
  Rng rng(11);
  const int64_t src_n[3] = {7, 3, 5}, tgt_m[3] = {4, 6, 2};
  Batch b;
  b.S = 8;
  b.T = 7;
  b.src.assign(static_cast<size_t>(b.B * b.S), kPad);
  b.tgt_in.assign(static_cast<size_t>(b.B * b.T), kPad);
  b.tgt_out.assign(static_cast<size_t>(b.B * b.T), kPad);
  auto word = [&] { return static_cast<int32_t>(3 + rng.below(static_cast<uint64_t>(vocab - 3))); };
  for (int64_t r = 0; r < b.B; ++r) {
    for (int64_t i = 0; i < src_n[r]; ++i) b.src[static_cast<size_t>(r * b.S + i)] = word();
    b.src[static_cast<size_t>(r * b.S + src_n[r])] = kEos;
    b.tgt_in[static_cast<size_t>(r * b.T)] = kBos;
    for (int64_t i = 0; i < tgt_m[r]; ++i) {
      const int32_t w = word();
      b.tgt_in[static_cast<size_t>(r * b.T + i + 1)] = w;
      b.tgt_out[static_cast<size_t>(r * b.T + i)] = w;
    }
    b.tgt_out[static_cast<size_t>(r * b.T + tgt_m[r])] = kEos;
    b.src_len.push_back(static_cast<int32_t>(src_n[r] + 1));
    b.tgt_len.push_back(static_cast<int32_t>(tgt_m[r] + 1));
  }
  return b;
}

template <typename T>
std::vector<double> gradients(const ParameterList<T>& params, size_t i) {
  const auto h = params[static_cast<int64_t>(i)].grad.to_host();
  return std::vector<double>(h.begin(), h.end());
}

class CudaParityNetworks : public ::testing::TestWithParam<Kind> {
 public:
  void SetUp() override {
    FWP_SKIP_OR_FAIL_WITHOUT_CUDA_DEVICE("CudaParityNetworks");  // fails instead under FWP_REQUIRE_CUDA=1
    gpu_ = make_cuda_backend(0);
    cpu_ = make_cpu_backend<double>(2);
  }
  std::shared_ptr<Backend<float>> gpu_;
  std::shared_ptr<Backend<double>> cpu_;
};

TEST_P(CudaParityNetworks, Seq2SeqLossGradientsAndDecodingMatchTheCpu) {
  const Seq2SeqConfig c = seq2seq_config(GetParam());
  Seq2SeqNetwork<float> gpu(c, gpu_, Rng(5));
  Seq2SeqNetwork<double> cpu(c, cpu_, Rng(5));
  const Batch batch = make_batch(c.vocab_size);

  const Seq2SeqLoss lg = gpu.forward(batch.view());
  const Seq2SeqLoss lc = cpu.forward(batch.view());
  ASSERT_EQ(lg.tokens, lc.tokens);
  EXPECT_NEAR(lg.loss_sum, lc.loss_sum, kRtol * std::fabs(lc.loss_sum)) << "label-smoothed loss";
  EXPECT_NEAR(lg.nll_sum, lc.nll_sum, kRtol * std::fabs(lc.nll_sum)) << "NLL";
  gpu.params().zero_grad();
  cpu.params().zero_grad();
  gpu.backward(1.0 / static_cast<double>(lg.tokens));
  cpu.backward(1.0 / static_cast<double>(lc.tokens));
  ASSERT_EQ(gpu.params().size(), cpu.params().size());
  for (size_t i = 0; i < static_cast<size_t>(cpu.params().size()); ++i) {
    if (!cpu.params()[static_cast<int64_t>(i)].trainable) continue;
    EXPECT_TRUE(close_rel(gradients(gpu.params(), i), gradients(cpu.params(), i), kRtol, 1e-6))
        << "gradient of " << cpu.params()[static_cast<int64_t>(i)].name;
  }

  // Incremental decoding of the three sources, expanded to 2 rows each (a beam's
  // reorder), fed the CPU's greedy token of each row for 6 steps.
  gpu.set_training(false);
  cpu.set_training(false);
  Seq2SeqDecodeState<float> sg = gpu.encode(batch.src.data(), batch.src_len.data(), batch.B, batch.S);
  Seq2SeqDecodeState<double> sc = cpu.encode(batch.src.data(), batch.src_len.data(), batch.B, batch.S);
  const std::vector<int64_t> expand = {0, 0, 1, 1, 2, 2};
  gpu.reorder(sg, expand.data(), 6);
  cpu.reorder(sc, expand.data(), 6);
  const int64_t V = c.vocab_size, rows = 6;
  std::vector<int32_t> tokens(static_cast<size_t>(rows), kBos);
  std::vector<float> pg(static_cast<size_t>(rows * V));
  std::vector<double> pc(static_cast<size_t>(rows * V));
  for (int step = 0; step < 6; ++step) {
    gpu.step(tokens.data(), sg, pg.data());
    cpu.step(tokens.data(), sc, pc.data());
    EXPECT_TRUE(close_rel(pg, pc, kRtol)) << "log-probabilities at step " << step;
    for (int64_t r = 0; r < rows; ++r) {
      int32_t best = 0;
      for (int32_t t = 1; t < V; ++t) {
        if (pc[static_cast<size_t>(r * V + t)] > pc[static_cast<size_t>(r * V + best)]) best = t;
      }
      // Rows of one sentence take different tokens from step 1 on, so their states part.
      tokens[static_cast<size_t>(r)] = (r % 2 == 1 && step > 0) ? static_cast<int32_t>(3 + (r + step) % (V - 3)) : best;
    }
    if (step == 2) {  // drop and duplicate rows, as the beam does when hypotheses finish
      const std::vector<int64_t> keep = {5, 0, 0, 3, 2, 4};
      gpu.reorder(sg, keep.data(), rows);
      cpu.reorder(sc, keep.data(), rows);
      std::vector<int32_t> moved(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) moved[static_cast<size_t>(r)] = tokens[static_cast<size_t>(keep[r])];
      tokens = moved;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, CudaParityNetworks,
                         ::testing::Values(Kind::Softmax, Kind::Linear, Kind::Favor, Kind::Dpfp, Kind::DeltaDecoder),
                         [](const ::testing::TestParamInfo<Kind>& info) { return kind_name(info.param); });

// The language model: a batch's loss and gradients, then step-by-step
// log-probabilities through its state against the CPU.
class CudaParityLmNetwork : public CudaParityNetworks {};

LmConfig lm_config(Kind kind) {
  LmConfig c;
  c.vocab_size = 23;
  c.num_layers = 2;
  c.attention.d_model = 12;
  c.attention.num_heads = 2;
  c.attention.d_head = 6;
  c.attention.init_std = 0.3;
  c.attention.feature_map = FeatureMap::Elu;
  c.attention.update_rule = UpdateRule::Delta;
  c.attention.sum_normalize = true;
  c.d_ff = 20;
  c.dropout = 0.0;
  c.init_std = 0.3;
  if (kind == Kind::Softmax) {
    c.attention.softmax = true;
    c.attention.sum_normalize = false;
    c.attention.update_rule = UpdateRule::Sum;
  } else if (kind == Kind::Linear) {
    c.attention.update_rule = UpdateRule::Sum;
    c.attention.sum_normalize = false;
    c.attention.attn_normalize = true;
  }
  return c;
}

TEST_P(CudaParityLmNetwork, LossGradientsAndStepsMatchTheCpu) {
  const Kind kind = GetParam();
  const LmConfig c = lm_config(kind);
  LmNetwork<float> gpu(c, gpu_, Rng(9));
  LmNetwork<double> cpu(c, cpu_, Rng(9));
  const int64_t B = 2, T = 11;
  Rng rng(3);
  std::vector<int32_t> inputs(static_cast<size_t>(B * T)), targets(inputs.size());
  for (auto& x : inputs) x = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.vocab_size)));
  for (auto& x : targets) x = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.vocab_size)));
  targets[3] = -1;  // not scored
  const double lg = gpu.forward(inputs.data(), targets.data(), B, T, nullptr, static_cast<float*>(nullptr));
  const double lc = cpu.forward(inputs.data(), targets.data(), B, T, nullptr, static_cast<double*>(nullptr));
  EXPECT_NEAR(lg, lc, kRtol * std::fabs(lc));
  gpu.params().zero_grad();
  cpu.params().zero_grad();
  gpu.backward();
  cpu.backward();
  for (size_t i = 0; i < static_cast<size_t>(cpu.params().size()); ++i) {
    if (!cpu.params()[static_cast<int64_t>(i)].trainable) continue;
    EXPECT_TRUE(close_rel(gradients(gpu.params(), i), gradients(cpu.params(), i), kRtol, 1e-6))
        << "gradient of " << cpu.params()[static_cast<int64_t>(i)].name;
  }
  std::vector<AttentionState<float>> sg;
  std::vector<AttentionState<double>> sc;
  for (const auto& spec : gpu.state_specs()) sg.emplace_back(gpu_, spec);
  for (const auto& spec : cpu.state_specs()) sc.emplace_back(cpu_, spec);
  std::vector<float> pg(static_cast<size_t>(B * c.vocab_size));
  std::vector<double> pc(pg.size());
  for (int64_t t = 0; t < T; ++t) {
    const int32_t step_tokens[2] = {inputs[static_cast<size_t>(t)], inputs[static_cast<size_t>(T + t)]};
    gpu.step(step_tokens, B, sg, pg.data());
    cpu.step(step_tokens, B, sc, pc.data());
    EXPECT_TRUE(close_rel(pg, pc, kRtol)) << "log-probabilities at step " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, CudaParityLmNetwork,
                         ::testing::Values(Kind::Softmax, Kind::Linear, Kind::DeltaDecoder),
                         [](const ::testing::TestParamInfo<Kind>& info) { return kind_name(info.param); });

}  // namespace
}  // namespace fwp

#endif  // FWP_HAVE_CUDA
