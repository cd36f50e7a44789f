// Concurrency (issue 10): distinct handles used from distinct threads at the
// same time (the thread-safety promise of fwp.h) give bit-identical results to
// the same work done one after another, so the library holds no hidden shared
// state between handles -- not in the process-wide thread pool, the random
// generators, the error message or scratch buffers.
//
// Four retrieval models of different kinds (DPFP delta, FAVOR+ with redrawn
// features, elu sum, softmax), each with its own context, optimizer and data
// generator, are trained for a few steps and saved; every loss, gradient norm,
// final parameter and checkpoint byte is compared.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fwp/fwp.h"
#include "temp_files.h"

namespace {

struct Job {
  fwp_feature_map feature_map = FWP_FEATURE_MAP_DPFP;
  fwp_update_rule rule = FWP_UPDATE_DELTA;
  uint64_t seed = 1;
  int32_t context_threads = 1;
};

// Everything a run produced, compared bit for bit.
struct Outcome {
  std::vector<float> losses;
  std::vector<float> grad_norms;
  std::vector<std::vector<float>> params;
  std::string checkpoint;
  std::string error;  // the first failed call, "" if none (gtest assertions are not thread-safe to fail)

  bool operator==(const Outcome& o) const {
    auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    if (!same_bits(losses, o.losses) || !same_bits(grad_norms, o.grad_norms) || params.size() != o.params.size())
      return false;
    for (size_t i = 0; i < params.size(); ++i)
      if (!same_bits(params[i], o.params[i])) return false;
    return checkpoint == o.checkpoint && error == o.error;
  }
};

constexpr int kSteps = 12;

Outcome train(const Job& job, const std::string& checkpoint_path) {
  Outcome out;
  auto ok = [&](fwp_status status, const char* what) {
    if (status != FWP_OK && out.error.empty()) out.error = std::string(what) + ": " + fwp_last_error_message();
    return status == FWP_OK;
  };
  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = job.context_threads;
  cc.seed = job.seed;
  fwp_context* ctx = nullptr;
  fwp_model* model = nullptr;
  fwp_optimizer* opt = nullptr;
  fwp_retrieval_data* data = nullptr;
  fwp_retrieval_config rc;
  fwp_retrieval_config_init(&rc);
  rc.num_keys = 8;
  rc.feature_map = job.feature_map;
  rc.update_rule = job.rule;
  rc.sum_normalize = job.rule == FWP_UPDATE_DELTA ? 1 : 0;
  rc.attn_normalize = job.rule == FWP_UPDATE_SUM && job.feature_map != FWP_FEATURE_MAP_SOFTMAX ? 1 : 0;
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  oc.learning_rate = 3e-3f;
  if (ok(fwp_context_create(&cc, &ctx), "context") && ok(fwp_model_create_retrieval(ctx, &rc, &model), "model") &&
      ok(fwp_optimizer_create_for_model(model, &oc, &opt), "optimizer") &&
      ok(fwp_retrieval_data_create(1, rc.num_keys, job.seed, &data), "data")) {
    int64_t seq_len = 0;
    ok(fwp_retrieval_data_seq_len(data, &seq_len), "seq_len");
    const int64_t batch = 8;
    std::vector<int32_t> keys(batch * seq_len), values(keys.size()), queries(batch * 2), targets(batch * 2);
    for (int step = 0; step < kSteps && out.error.empty(); ++step) {
      ok(fwp_retrieval_data_sample(data, batch, 2, keys.data(), values.data(), queries.data(), targets.data()),
         "sample");
      const fwp_retrieval_batch b{batch, seq_len, 2, keys.data(), values.data(), queries.data(), targets.data()};
      float loss = 0.0f, norm = 0.0f;
      ok(fwp_model_zero_grad(model), "zero_grad");
      ok(fwp_retrieval_forward(model, &b, &loss, nullptr, 0), "forward");
      ok(fwp_model_backward(model), "backward");
      ok(fwp_optimizer_step(opt, &norm), "step");
      out.losses.push_back(loss);
      out.grad_norms.push_back(norm);
    }
    int64_t count = 0;
    ok(fwp_model_num_params(model, &count), "num_params");
    for (int64_t i = 0; i < count; ++i) {
      fwp_param_info info{};
      ok(fwp_model_param_info(model, i, &info), "param_info");
      out.params.emplace_back(static_cast<size_t>(info.numel));
      ok(fwp_model_get_param(model, i, out.params.back().data(), info.numel), "get_param");
    }
    if (ok(fwp_checkpoint_save(checkpoint_path.c_str(), model, opt, data, "{}"), "save"))
      out.checkpoint = fwp::test::read_bytes(checkpoint_path);
  }
  fwp_retrieval_data_destroy(data);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
  return out;
}

void expect_parallel_equals_sequential(const std::vector<Job>& jobs, int repeats) {
  fwp::test::TempDir dir("fwp_parallel_handles");
  std::vector<Outcome> sequential;
  for (size_t i = 0; i < jobs.size(); ++i) sequential.push_back(train(jobs[i], dir.file("seq" + std::to_string(i))));
  for (size_t i = 0; i < jobs.size(); ++i) {
    ASSERT_EQ(sequential[i].error, "") << "job " << i;
    ASSERT_EQ(sequential[i].losses.size(), static_cast<size_t>(kSteps));
  }
  // Different jobs really differ (the comparison below could not pass by accident).
  EXPECT_FALSE(sequential[0] == sequential[1]);

  for (int repeat = 0; repeat < repeats; ++repeat) {
    std::vector<Outcome> parallel(jobs.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < jobs.size(); ++i) {
      threads.emplace_back([&, i] { parallel[i] = train(jobs[i], dir.file("par" + std::to_string(i))); });
    }
    for (std::thread& t : threads) t.join();
    for (size_t i = 0; i < jobs.size(); ++i) {
      EXPECT_EQ(parallel[i].error, "") << "job " << i;
      EXPECT_TRUE(parallel[i] == sequential[i]) << "job " << i << " (repeat " << repeat
                                                << ") differs from the same job run alone";
    }
  }
}

std::vector<Job> four_kinds(int32_t context_threads) {
  return {{FWP_FEATURE_MAP_DPFP, FWP_UPDATE_DELTA, 11, context_threads},
          {FWP_FEATURE_MAP_FAVOR, FWP_UPDATE_SUM, 12, context_threads},
          {FWP_FEATURE_MAP_ELU, FWP_UPDATE_SUM, 13, context_threads},
          {FWP_FEATURE_MAP_SOFTMAX, FWP_UPDATE_SUM, 14, context_threads}};
}

TEST(ParallelHandles, FourModelsTrainedInThreadsMatchTrainingThemOneAfterAnother) {
  expect_parallel_equals_sequential(four_kinds(1), 3);
}

// Contexts with two threads each share the process-wide pool: their chunks
// interleave in its workers, and the results must still not depend on that.
TEST(ParallelHandles, ContextsSharingThePoolMatchTheirSequentialResults) {
  expect_parallel_equals_sequential(four_kinds(2), 2);
}

// The same job in four threads at once: four identical results.
TEST(ParallelHandles, TheSameJobInFourThreadsGivesOneResult) {
  const Job job{FWP_FEATURE_MAP_FAVOR, FWP_UPDATE_DELTA, 5, 1};
  expect_parallel_equals_sequential({job, {FWP_FEATURE_MAP_DPFP, FWP_UPDATE_DELTA, 6, 1}, job, job}, 1);
}

}  // namespace
