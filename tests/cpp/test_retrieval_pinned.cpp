// Pins the retrieval model's training losses for a few seeds and configs to
// the values the model gave before it was rebuilt from src/nn modules (main
// at 7f21786, CPU, float, one thread): the rebuild must keep the parameter
// order, the init draws and the computation, up to float32 rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/rng.h"
#include "data/retrieval_data.h"
#include "models/retrieval/retrieval_model.h"
#include "train/optimizer.h"

namespace fwp {
namespace {

struct PinnedCase {
  std::string name;
  RetrievalConfig config;
  uint64_t seed = 0;
  // Training losses of steps 0..4 (batch 8, 3 queries per sequence), then the
  // evaluation loss after them (6 sequences, 2 S queries, eval mode).
  std::vector<double> expected;
};

RetrievalConfig make(int32_t setting, int64_t S, int64_t d_head, bool softmax, FeatureMap fm, UpdateRule rule,
                     bool attn_normalize, bool sum_normalize = true) {
  RetrievalConfig c;
  c.setting = setting;
  c.num_keys = S;
  c.d_head = d_head;
  c.softmax = softmax;
  c.feature_map = fm;
  c.favor_features = 16;
  c.update_rule = rule;
  c.attn_normalize = attn_normalize;
  c.sum_normalize = sum_normalize && !softmax;
  return c;
}

// Runs the pinned schedule and returns the 5 training losses and the evaluation loss.
std::vector<double> run(const RetrievalConfig& c, uint64_t seed) {
  auto backend = make_cpu_backend<float>(1);
  RetrievalNetwork<float> net(c, backend, Rng(seed));
  Optimizer opt(backend, net.params(), OptimizerConfig{});
  RetrievalData train(c.setting, c.num_keys, seed + 1), eval(c.setting, c.num_keys, seed + 2);
  auto sample = [](RetrievalData& data, int64_t B, int64_t Q, std::vector<int32_t> (&ids)[4]) {
    const int64_t L = data.seq_len();
    ids[0].assign(static_cast<size_t>(B * L), 0);
    ids[1].assign(static_cast<size_t>(B * L), 0);
    ids[2].assign(static_cast<size_t>(B * Q), 0);
    ids[3].assign(static_cast<size_t>(B * Q), 0);
    data.sample(B, Q, ids[0].data(), ids[1].data(), ids[2].data(), ids[3].data());
    RetrievalBatch b;
    b.batch_size = B;
    b.seq_len = L;
    b.num_queries = Q;
    b.keys = ids[0].data();
    b.values = ids[1].data();
    b.queries = ids[2].data();
    b.targets = ids[3].data();
    return b;
  };
  std::vector<double> losses;
  std::vector<int32_t> ids[4];
  for (int step = 0; step < 5; ++step) {
    const RetrievalBatch b = sample(train, 8, 3, ids);
    opt.zero_grad();
    losses.push_back(net.forward(b, nullptr));
    net.backward();
    opt.step();
  }
  const RetrievalBatch b = sample(eval, 6, 2 * c.num_keys, ids);
  net.set_training(false);
  losses.push_back(net.forward(b, nullptr));
  return losses;
}

class RetrievalPinned : public ::testing::TestWithParam<PinnedCase> {};

TEST_P(RetrievalPinned, LossesMatchTheModelBeforeTheModuleRebuild) {
  const PinnedCase& p = GetParam();
  const std::vector<double> got = run(p.config, p.seed);
  std::string line;
  char number[32];
  for (double v : got) {
    std::snprintf(number, sizeof number, " %.9g,", v);
    line += number;
  }
  std::printf("%s:%s\n", p.name.c_str(), line.c_str());
  ASSERT_EQ(got.size(), p.expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    // float32 rounding (sums in another order) grows a little through 5 Adam steps.
    EXPECT_NEAR(got[i], p.expected[i], 2e-5 + 2e-4 * std::abs(p.expected[i])) << p.name << " value " << i;
  }
}

// The modules (Embedding, Linear) only declare; the network allocates one
// block: every parameter is a window of it, trainable ones first, in the
// checkpoint's order and names.
TEST(RetrievalParameters, ModulesShareTheNetworksOneBlock) {
  RetrievalConfig c = make(1, 6, 8, false, FeatureMap::Favor, UpdateRule::Delta, false);
  RetrievalNetwork<float> net(c, make_cpu_backend<float>(1), Rng(2));
  const ParameterList<float>& params = net.params();
  const std::vector<std::string> names = {"key_embedding", "k_proj.weight", "k_proj.bias",   "q_proj.weight",
                                          "q_proj.bias",   "beta_proj.weight", "beta_proj.bias", "favor.projection"};
  ASSERT_EQ(params.size(), static_cast<int64_t>(names.size()));
  int64_t previous_end = 0;
  for (int64_t i = 0; i < params.size(); ++i) {
    const Parameter<float>& p = params[i];
    EXPECT_EQ(p.name, names[static_cast<size_t>(i)]);
    EXPECT_EQ(p.value.data(), params.value_block() + p.offset) << p.name;
    EXPECT_EQ(p.grad.data(), params.grad_block() + p.offset) << p.name;
    EXPECT_GE(p.offset, previous_end) << p.name;
    EXPECT_LE(p.offset + p.numel(), params.block_size()) << p.name;
    EXPECT_EQ(p.trainable, p.name != "favor.projection") << p.name;
    previous_end = p.offset + p.numel();
  }
  EXPECT_LE(params[6].offset + params[6].numel(), params.trainable_size()) << "trainable parameters come first";
  EXPECT_GE(params[7].offset, params.trainable_size()) << "the fixed FAVOR+ projection lies after them";
}

void PrintTo(const PinnedCase& c, std::ostream* os) { *os << c.name; }

const FeatureMap kElu = FeatureMap::Elu, kDpfp = FeatureMap::Dpfp, kFavor = FeatureMap::Favor;
const UpdateRule kSum = UpdateRule::Sum, kDelta = UpdateRule::Delta;

INSTANTIATE_TEST_SUITE_P(
    Configs, RetrievalPinned,
    ::testing::Values(
        PinnedCase{"elu_sum_s1", make(1, 6, 8, false, kElu, kSum, false), 3,
                   {0.424088941, 0.425006829, 0.425770114, 0.421826909, 0.425889901, 0.422997399}},
        PinnedCase{"elu_delta_s2_attnnorm", make(2, 5, 8, false, kElu, kDelta, true), 5,
                   {0.401705924, 0.410788093, 0.41690341, 0.397107874, 0.403759183, 0.423328546}},
        PinnedCase{"dpfp_delta_s1", make(1, 7, 6, false, kDpfp, kDelta, false), 11,
                   {0.47593896, 0.478465848, 0.476343312, 0.473910419, 0.45818496, 0.4567667}},
        PinnedCase{"dpfp_sum_s2", make(2, 6, 6, false, kDpfp, kSum, false, /*sum_normalize=*/false), 12,
                   {0.446602552, 0.458954118, 0.490345206, 0.426175382, 0.441198547, 0.454832987}},
        PinnedCase{"favor_delta_s1", make(1, 6, 8, false, kFavor, kDelta, false), 13,
                   {0.486624788, 0.468938816, 0.47012889, 0.478586451, 0.475708054, 0.475971167}},
        PinnedCase{"favor_sum_s2_attnnorm", make(2, 5, 8, false, kFavor, kSum, true), 14,
                   {0.343109696, 0.300360983, 0.362289659, 0.416811042, 0.325925273, 0.363857628}},
        PinnedCase{"softmax_s1", make(1, 8, 8, true, kDpfp, kSum, false), 15,
                   {0.455670113, 0.455576453, 0.45824771, 0.444374216, 0.451439396, 0.447544393}},
        PinnedCase{"softmax_s2", make(2, 6, 4, true, kDpfp, kSum, false), 16,
                   {0.394061033, 0.398215645, 0.390018955, 0.374719818, 0.42082866, 0.398702928}}),
    [](const ::testing::TestParamInfo<PinnedCase>& info) { return info.param.name; });

}  // namespace
}  // namespace fwp
