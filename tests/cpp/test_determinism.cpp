// Training must not depend on the heap layout: the same steps from the same
// seed give bit-identical parameters whether or not evaluations (which resize
// the workspaces) and unrelated allocations happen between them. This is what
// makes a resumed run (a fresh process, no earlier evaluations) reproduce an
// uninterrupted one bit for bit. It failed while host scratch arrays reduced
// by Eigen were plain std::vectors (16-byte aligned: the vectorised sums then
// peel a different number of leading elements depending on the address).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "fwp/fwp.h"

namespace {

struct Attention {
  fwp_feature_map phi;
  fwp_update_rule rule;
  const char* name;
};

void PrintTo(const Attention& attention, std::ostream* out) { *out << attention.name; }

void check(fwp_status status, const char* what) {
  ASSERT_EQ(status, FWP_OK) << what << ": " << fwp_last_error_message();
}

// Trains a tiny LM for `steps` Adam steps (clipped, as the CLI does) on fixed
// batches; with `disturb`, evaluates a stream of another length after every
// step and keeps odd-sized host allocations alive to move the heap around.
std::vector<std::vector<float>> train(const Attention& attention, int steps, bool disturb) {
  std::vector<std::vector<float>> params;
  fwp_context_config context_config;
  fwp_context_config_init(&context_config);
  context_config.num_threads = 1;
  context_config.seed = 3;
  fwp_context* ctx = nullptr;
  check(fwp_context_create(&context_config, &ctx), "context");
  fwp_lm_config config;
  check(fwp_lm_config_preset("cpu-small", &config), "preset");
  config.vocab_size = 22;
  config.num_layers = 2;
  config.attention.d_model = 16;
  config.attention.num_heads = 2;
  config.attention.d_head = 8;
  config.attention.feature_map = attention.phi;
  config.attention.update_rule = attention.rule;
  if (attention.phi == FWP_FEATURE_MAP_SOFTMAX) config.attention.sum_normalize = 0;
  config.d_ff = 24;
  config.dropout = 0.0f;
  config.seed = 3;
  fwp_model* model = nullptr;
  check(fwp_lm_create(ctx, &config, &model), "model");
  fwp_optimizer_config optimizer_config;
  fwp_optimizer_config_init(&optimizer_config);
  optimizer_config.kind = FWP_OPTIMIZER_ADAM;
  optimizer_config.learning_rate = 0.01f;
  optimizer_config.clip_grad_norm = 0.25f;
  fwp_optimizer* optimizer = nullptr;
  check(fwp_optimizer_create_for_model(model, &optimizer_config, &optimizer), "optimizer");

  std::vector<std::unique_ptr<char[]>> heap_noise;
  int32_t inputs[2 * 8], targets[2 * 8], stream[23];
  for (int i = 0; i < 23; ++i) stream[i] = (i * 11 + 2) % 22;
  for (int step = 1; step <= steps; ++step) {
    for (int i = 0; i < 16; ++i) {
      inputs[i] = (i * 7 + 3 * step) % 22;
      targets[i] = (i * 5 + step) % 22;
    }
    double loss = 0.0;
    check(fwp_model_zero_grad(model), "zero_grad");
    check(fwp_lm_forward(model, inputs, targets, 2, 8, nullptr, &loss, nullptr), "forward");
    check(fwp_model_backward(model), "backward");
    check(fwp_optimizer_step(optimizer, nullptr), "step");
    if (disturb) {
      heap_noise.emplace_back(new char[static_cast<size_t>(8 + 24 * step)]);
      double nll = 0.0;
      int64_t scored = 0;
      check(fwp_lm_evaluate(model, stream, 23, FWP_LM_EVAL_SEGMENTS, 3 + step % 5, &nll, &scored), "evaluate");
    }
  }
  int64_t count = 0;
  check(fwp_model_num_params(model, &count), "count");
  for (int64_t p = 0; p < count; ++p) {
    fwp_param_info info;
    check(fwp_model_param_info(model, p, &info), "info");
    params.emplace_back(static_cast<size_t>(info.numel));
    check(fwp_model_get_param(model, p, params.back().data(), info.numel), "get_param");
  }
  fwp_optimizer_destroy(optimizer);
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
  return params;
}

class HeapIndependentTraining : public ::testing::TestWithParam<Attention> {};

TEST_P(HeapIndependentTraining, EvaluationsAndAllocationsBetweenStepsChangeNoBit) {
  const auto quiet = train(GetParam(), 12, false);
  const auto disturbed = train(GetParam(), 12, true);
  ASSERT_EQ(quiet.size(), disturbed.size());
  for (size_t p = 0; p < quiet.size(); ++p) {
    ASSERT_EQ(quiet[p].size(), disturbed[p].size());
    EXPECT_EQ(std::memcmp(quiet[p].data(), disturbed[p].data(), quiet[p].size() * sizeof(float)), 0)
        << "parameter " << p << " differs";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Attentions, HeapIndependentTraining,
    ::testing::Values(Attention{FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA, "elu_delta"},
                      Attention{FWP_FEATURE_MAP_ELU, FWP_UPDATE_SUM, "elu_sum"},
                      Attention{FWP_FEATURE_MAP_DPFP, FWP_UPDATE_SUM, "dpfp_sum"},
                      Attention{FWP_FEATURE_MAP_FAVOR, FWP_UPDATE_DELTA, "favor_delta"},
                      Attention{FWP_FEATURE_MAP_SOFTMAX, FWP_UPDATE_SUM, "softmax"}),
    [](const ::testing::TestParamInfo<Attention>& info) { return std::string(info.param.name); });

}  // namespace
