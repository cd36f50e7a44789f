// The training driver (tools/train/) with a scripted task: stopping rules,
// the non-finite stop, Ctrl-C between steps, resuming a finished run, and the
// evaluation log. The CLI tests (tests/scripts.cmake) check the same through
// `fwp retrieval` with a real model.
#include "cli_support.h"
#include "train/eval_log.h"
#include "train/interrupt.h"
#include "train/train_loop.h"

#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace fwp_cli {
namespace train {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

/// A task whose step results and evaluation losses are given by functions of the step.
class ScriptedTask : public TrainingTask {
 public:
  std::function<StepResult(int64_t)> step_result = [](int64_t) { return StepResult{1.0, 1.0}; };
  std::function<double(int64_t)> eval_loss = [](int64_t) { return 0.5; };
  std::vector<int64_t> steps_taken;
  std::vector<int64_t> evaluated_at;

  std::string label() const override { return "scripted"; }
  nlohmann::json describe() const override { return {{"task", "scripted"}}; }
  TrainingObjects objects() override { return {}; }
  StepResult train_step(int64_t step) override {
    steps_taken.push_back(step);
    return step_result(step);
  }
  Evaluation evaluate(int64_t step) override {
    evaluated_at.push_back(step);
    Evaluation evaluation;
    evaluation.loss = eval_loss(step);
    evaluation.metrics = {{"perplexity", std::exp(evaluation.loss)}};
    return evaluation;
  }
};

TrainingPlan plan(int64_t max_steps, int64_t eval_every, int64_t patience, double target_loss) {
  TrainingPlan p;
  p.max_steps = max_steps;
  p.eval_every = eval_every;
  p.patience = patience;
  p.target_loss = target_loss;
  return p;
}

class TrainLoop : public ::testing::Test {
 protected:
  void SetUp() override { clear_interrupt(); }
  void TearDown() override { clear_interrupt(); }

  RunResult run(TrainingTask& task, const TrainingPlan& p, TrainState start = TrainState()) {
    RunOutputs out;
    out.progress = &progress_;
    return run_training(task, p, start, out);
  }

  Progress progress_{false, stdout};
};

TEST_F(TrainLoop, StopsAtTheStepCapWithAFinalEvaluation) {
  ScriptedTask task;
  const RunResult r = run(task, plan(25, 10, 100, 0.0));
  EXPECT_EQ(r.state.stopped_by, stop::kMaxSteps);
  EXPECT_EQ(r.state.step, 25);
  EXPECT_EQ(task.steps_taken.size(), 25u);
  EXPECT_EQ(task.evaluated_at, (std::vector<int64_t>{10, 20, 25}));  // the cap is evaluated too
  EXPECT_EQ(r.state.evaluations, 3);
  ASSERT_EQ(r.state.last_metrics.size(), 1u);
  EXPECT_EQ(r.state.last_metrics[0].name, "perplexity");
}

TEST_F(TrainLoop, StopsAtTheTargetLoss) {
  ScriptedTask task;
  task.eval_loss = [](int64_t step) { return 1.0 / static_cast<double>(step); };
  const RunResult r = run(task, plan(1000, 10, 100, 0.02));
  EXPECT_EQ(r.state.stopped_by, stop::kTarget);
  EXPECT_EQ(r.state.step, 50);  // 1/50 = 0.02 <= target
  EXPECT_DOUBLE_EQ(r.state.best, 0.02);
}

TEST_F(TrainLoop, StopsWhenPatienceRunsOut) {
  ScriptedTask task;
  // Improves until step 30, then gets worse: 3 more evaluations without a new best.
  task.eval_loss = [](int64_t step) { return step <= 30 ? 1.0 / static_cast<double>(step) : 1.0; };
  const RunResult r = run(task, plan(1000, 10, 3, 0.0));
  EXPECT_EQ(r.state.stopped_by, stop::kPatience);
  EXPECT_EQ(r.state.step, 60);
  EXPECT_EQ(r.state.evals_since_best, 3);
  EXPECT_DOUBLE_EQ(r.state.best, 1.0 / 30.0);
}

TEST_F(TrainLoop, ANonFiniteLossStopsTheRunWithAMessage) {
  ScriptedTask task;
  task.step_result = [](int64_t step) { return StepResult{step == 7 ? kNaN : 1.0, 1.0}; };
  const RunResult r = run(task, plan(100, 5, 100, 0.0));
  EXPECT_EQ(r.state.stopped_by, stop::kNonFinite);
  EXPECT_EQ(r.state.step, 6);  // step 7 does not count
  EXPECT_EQ(task.steps_taken.back(), 7);
  EXPECT_NE(r.failure.find("step 7"), std::string::npos) << r.failure;
  EXPECT_NE(r.failure.find("loss is nan"), std::string::npos) << r.failure;
}

TEST_F(TrainLoop, ANonFiniteGradientNormStopsTheRun) {
  ScriptedTask task;
  task.step_result = [](int64_t step) { return StepResult{1.0, step == 3 ? kInf : 1.0}; };
  const RunResult r = run(task, plan(100, 5, 100, 0.0));
  EXPECT_EQ(r.state.stopped_by, stop::kNonFinite);
  EXPECT_EQ(r.state.step, 2);
  EXPECT_NE(r.failure.find("gradient norm is inf"), std::string::npos) << r.failure;
}

TrainingPlan skipping(TrainingPlan p, int64_t max_in_a_row) {
  p.skip_non_finite = true;
  p.max_consecutive_skips = max_in_a_row;
  return p;
}

TEST_F(TrainLoop, SkipModeSkipsNonFiniteStepsAndCountsThem) {
  ScriptedTask task;
  // Non-finite at 3 (loss), 7 and 8 (gradient norm): never 3 in a row.
  task.step_result = [](int64_t step) {
    if (step == 3) return StepResult{kNaN, kNaN};
    if (step == 7 || step == 8) return StepResult{1.0, kInf};
    return StepResult{1.0, 1.0};
  };
  const RunResult r = run(task, skipping(plan(20, 5, 100, 0.0), 3));
  EXPECT_EQ(r.state.stopped_by, stop::kMaxSteps);
  EXPECT_EQ(r.state.step, 20);  // skipped steps count as steps
  EXPECT_EQ(task.steps_taken.size(), 20u);
  EXPECT_EQ(r.state.skipped_steps, 3);
  EXPECT_EQ(r.state.consecutive_skips, 0);
  EXPECT_TRUE(r.failure.empty()) << r.failure;
  EXPECT_NE(summary_line(task, skipping(plan(20, 5, 100, 0.0), 3), r).find("3 steps skipped"), std::string::npos);
  EXPECT_EQ(result_json(task, r)["skipped_steps"], 3);
}

TEST_F(TrainLoop, SkipModeStopsAtTooManySkippedStepsInARow) {
  ScriptedTask task;
  task.step_result = [](int64_t step) { return StepResult{step >= 5 ? kNaN : 1.0, 1.0}; };
  const RunResult r = run(task, skipping(plan(100, 5, 100, 0.0), 3));
  EXPECT_EQ(r.state.stopped_by, stop::kNonFinite);
  EXPECT_EQ(task.steps_taken.back(), 7);  // 5 and 6 skipped, the third in a row stops
  EXPECT_EQ(r.state.step, 6);
  EXPECT_EQ(r.state.skipped_steps, 3);
  EXPECT_NE(r.failure.find("step 7"), std::string::npos) << r.failure;
  EXPECT_NE(r.failure.find("3 steps in a row"), std::string::npos) << r.failure;
  EXPECT_NE(r.failure.find("loss is nan"), std::string::npos) << r.failure;
}

TEST_F(TrainLoop, SkipModeWithOneAllowedStopsAtTheFirstNonFiniteStep) {
  ScriptedTask task;
  task.step_result = [](int64_t step) { return StepResult{1.0, step == 4 ? kNaN : 1.0}; };
  const RunResult r = run(task, skipping(plan(100, 5, 100, 0.0), 1));
  EXPECT_EQ(r.state.stopped_by, stop::kNonFinite);
  EXPECT_EQ(r.state.step, 3);
}

TEST_F(TrainLoop, ASkippedStreakResumesFromItsCheckpointedCount) {
  // The streak is part of the stored state: a resumed run does not start it afresh.
  TrainState start;
  start.step = 10;
  start.skipped_steps = 4;
  start.consecutive_skips = 2;
  const TrainState stored = state_from_json(state_to_json(start));
  EXPECT_EQ(stored.skipped_steps, 4);
  EXPECT_EQ(stored.consecutive_skips, 2);
  ScriptedTask task;
  task.step_result = [](int64_t) { return StepResult{kNaN, kNaN}; };
  const RunResult r = run(task, skipping(plan(100, 5, 100, 0.0), 3), stored);
  EXPECT_EQ(r.state.stopped_by, stop::kNonFinite);
  EXPECT_EQ(task.steps_taken, (std::vector<int64_t>{11}));
  // A checkpoint written before the skip counts existed reads as none skipped.
  nlohmann::json old = state_to_json(TrainState());
  old.erase("skipped_steps");
  old.erase("consecutive_skips");
  EXPECT_EQ(state_from_json(old).skipped_steps, 0);
  EXPECT_EQ(state_from_json(old).consecutive_skips, 0);
}

/// A retrieval model whose key embedding is scaled by 1e22 at step 3, so that
/// its gradients become NaN; the step reports a finite loss anyway, as a task
/// whose loss stays finite while a gradient overflows would.
class OverflowingGradientTask : public ScriptedTask {
 public:
  OverflowingGradientTask() {
    fwp_context_config cc;
    fwp_context_config_init(&cc);
    cc.num_threads = 1;
    EXPECT_EQ(fwp_context_create(&cc, &ctx_), FWP_OK);
    fwp_retrieval_config rc;
    fwp_retrieval_config_init(&rc);
    rc.num_keys = 6;
    EXPECT_EQ(fwp_model_create_retrieval(ctx_, &rc, &model_), FWP_OK);
    fwp_optimizer_config oc;
    fwp_optimizer_config_init(&oc);
    EXPECT_EQ(fwp_optimizer_create_for_model(model_, &oc, &optimizer_), FWP_OK);
    EXPECT_EQ(fwp_retrieval_data_create(1, 6, 7, &data_), FWP_OK);
  }
  ~OverflowingGradientTask() override {
    fwp_retrieval_data_destroy(data_);
    fwp_optimizer_destroy(optimizer_);
    fwp_model_destroy(model_);
    fwp_context_destroy(ctx_);
  }
  TrainingObjects objects() override { return {model_, optimizer_, data_}; }
  StepResult train_step(int64_t step) override {
    steps_taken.push_back(step);
    if (step == 3) scale_param("key_embedding", 1e22f);
    int64_t seq_len = 0;
    EXPECT_EQ(fwp_retrieval_data_seq_len(data_, &seq_len), FWP_OK);
    const int64_t batch = 4;
    std::vector<int32_t> keys(batch * seq_len), values(batch * seq_len), queries(batch), targets(batch);
    EXPECT_EQ(fwp_retrieval_data_sample(data_, batch, 1, keys.data(), values.data(), queries.data(), targets.data()),
              FWP_OK);
    const fwp_retrieval_batch b{batch, seq_len, 1, keys.data(), values.data(), queries.data(), targets.data()};
    float loss = 0.0f;
    EXPECT_EQ(fwp_model_zero_grad(model_), FWP_OK);
    EXPECT_EQ(fwp_retrieval_forward(model_, &b, &loss, nullptr, 0), FWP_OK);
    EXPECT_EQ(fwp_model_backward(model_), FWP_OK);
    return StepResult{1.0, take_optimizer_step(optimizer_, step)};
  }
  /// The first trainable parameter whose gradient holds NaN or infinity.
  std::string first_non_finite_gradient() const {
    int64_t count = 0;
    EXPECT_EQ(fwp_model_num_params(model_, &count), FWP_OK);
    for (int64_t i = 0; i < count; ++i) {
      fwp_param_info info{};
      EXPECT_EQ(fwp_model_param_info(model_, i, &info), FWP_OK);
      std::vector<float> grad(static_cast<size_t>(info.numel));
      EXPECT_EQ(fwp_model_get_grad(model_, i, grad.data(), info.numel), FWP_OK);
      for (float g : grad)
        if (info.trainable && !std::isfinite(g)) return info.name;
    }
    return "";
  }
  int64_t optimizer_steps() const {
    int64_t steps = -1;
    EXPECT_EQ(fwp_optimizer_get_step(optimizer_, &steps), FWP_OK);
    return steps;
  }

 private:
  void scale_param(const char* name, float factor) {
    int64_t index = 0;
    ASSERT_EQ(fwp_model_param_index(model_, name, &index), FWP_OK);
    fwp_param_info info{};
    ASSERT_EQ(fwp_model_param_info(model_, index, &info), FWP_OK);
    std::vector<float> value(static_cast<size_t>(info.numel));
    ASSERT_EQ(fwp_model_get_param(model_, index, value.data(), info.numel), FWP_OK);
    for (float& v : value) v *= factor;
    ASSERT_EQ(fwp_model_set_param(model_, index, value.data(), info.numel), FWP_OK);
  }

  fwp_context* ctx_ = nullptr;
  fwp_model* model_ = nullptr;
  fwp_optimizer* optimizer_ = nullptr;
  fwp_retrieval_data* data_ = nullptr;
};

TEST_F(TrainLoop, ANonFiniteGradientIsNamedByItsParameter) {
  OverflowingGradientTask task;
  const RunResult r = run(task, plan(100, 5, 100, 0.0));
  EXPECT_EQ(r.state.stopped_by, stop::kNonFinite);
  EXPECT_EQ(r.state.step, 2);
  EXPECT_EQ(task.optimizer_steps(), 2);  // the library refused step 3 and changed nothing
  const std::string name = task.first_non_finite_gradient();
  ASSERT_FALSE(name.empty()) << "the scaled embedding gave finite gradients";
  EXPECT_NE(r.failure.find("step 3: the gradient of '" + name + "' is not finite ("),
            std::string::npos)
      << r.failure;
}

TEST_F(TrainLoop, ASignalStopsTheRunBetweenTwoSteps) {
  ScriptedTask task;
  task.step_result = [](int64_t step) {
    if (step == 4) std::raise(SIGINT);  // the handler only sets a flag: the step finishes
    return StepResult{1.0, 1.0};
  };
  const RunResult r = run(task, plan(100, 10, 100, 0.0));
  EXPECT_EQ(r.state.stopped_by, stop::kInterrupted);
  EXPECT_EQ(r.signal, SIGINT);
  EXPECT_EQ(r.state.step, 4);
  EXPECT_EQ(task.steps_taken.size(), 4u);
  EXPECT_EQ(interrupt_signal(), SIGINT);  // stays set: the command ends the whole invocation
  EXPECT_EQ(interrupted_exit_code(SIGINT), 130);
  EXPECT_TRUE(r.checkpoint.empty());  // no path was given
}

TEST_F(TrainLoop, SignalsOutsideAScopeKeepTheirDefaultAction) {
  struct sigaction current {};
  {
    const InterruptScope scope;
    sigaction(SIGTERM, nullptr, &current);
    EXPECT_NE(current.sa_handler, SIG_DFL);
  }
  sigaction(SIGTERM, nullptr, &current);
  EXPECT_EQ(current.sa_handler, SIG_DFL);
}

TEST_F(TrainLoop, AFinishedRunStaysFinishedUnlessTheCapWasRaised) {
  ScriptedTask task;
  RunResult first = run(task, plan(20, 10, 100, 0.0));
  ASSERT_EQ(first.state.stopped_by, stop::kMaxSteps);

  ScriptedTask same_cap;
  const RunResult again = run(same_cap, plan(20, 10, 100, 0.0), first.state);
  EXPECT_TRUE(same_cap.steps_taken.empty());
  EXPECT_EQ(again.state.step, 20);

  ScriptedTask raised;
  const RunResult longer = run(raised, plan(30, 10, 100, 0.0), first.state);
  EXPECT_EQ(raised.steps_taken, (std::vector<int64_t>{21, 22, 23, 24, 25, 26, 27, 28, 29, 30}));
  EXPECT_EQ(longer.state.evaluations, 3);

  TrainState by_patience = first.state;
  by_patience.stopped_by = stop::kPatience;
  ScriptedTask none;
  run(none, plan(30, 10, 100, 0.0), by_patience);
  EXPECT_TRUE(none.steps_taken.empty());
}

TEST_F(TrainLoop, TheStateSurvivesJson) {
  ScriptedTask task;
  const RunResult r = run(task, plan(20, 10, 100, 0.0));
  const TrainState back = state_from_json(state_to_json(r.state));
  EXPECT_EQ(back.step, r.state.step);
  EXPECT_EQ(back.evaluations, r.state.evaluations);
  EXPECT_EQ(back.best, r.state.best);
  EXPECT_EQ(back.stopped_by, r.state.stopped_by);
  // No evaluation yet: best is infinite, stored as null, read back as infinite.
  const TrainState fresh = state_from_json(state_to_json(TrainState()));
  EXPECT_TRUE(std::isinf(fresh.best));
  EXPECT_TRUE(std::isnan(fresh.last_eval));
}

TEST_F(TrainLoop, ResultJsonHasTheCommonFields) {
  ScriptedTask task;
  const RunResult r = run(task, plan(20, 10, 100, 0.0));
  const nlohmann::json j = result_json(task, r);
  for (const char* key : {"final_eval_loss", "best_eval_loss", "steps", "evaluations", "seconds",
                          "steps_per_second", "stopped_by", "skipped_steps", "resumed", "metrics", "config",
                          "fwp_version"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["config"]["task"], "scripted");
  EXPECT_TRUE(j["metrics"].contains("perplexity"));
}

// ---- the evaluation log -----------------------------------------------------------

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class EvalLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "fwp_eval_log_test_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".csv";
    std::remove(path_.c_str());
  }
  void TearDown() override { std::remove(path_.c_str()); }

  static TrainState at(int64_t step, double loss) {
    TrainState s;
    s.step = step;
    s.last_eval = loss;
    s.best = loss;
    s.last_metrics = {{"bleu", 10.0 * static_cast<double>(step)}};
    return s;
  }

  std::string path_;
  const std::vector<std::string> ids_ = {"keys"};
  const std::vector<std::string> metrics_ = {"bleu"};
};

TEST_F(EvalLogTest, FreshRunsReplaceTheirOwnRowsAndKeepOthers) {
  {
    EvalLog log;
    log.open_fresh(path_, ids_, metrics_, {{"4"}, {"6"}});
    log.append({"4"}, at(10, 0.5));
    log.append({"6"}, at(10, 0.25));
  }
  {
    EvalLog log;
    log.open_fresh(path_, ids_, metrics_, {{"4"}});
    log.append({"4"}, at(20, 0.125));
  }
  EXPECT_EQ(read_text(path_),
            "keys,step,eval_loss,best,seconds,bleu\n"
            "6,10,0.25,0.25,0.000,100\n"
            "4,20,0.125,0.125,0.000,200\n");
}

TEST_F(EvalLogTest, AResumedRunDropsRowsWrittenAfterItsCheckpoint) {
  {
    EvalLog log;
    log.open_fresh(path_, ids_, metrics_, {{"4"}, {"6"}});
    log.append({"4"}, at(10, 0.5));
    log.append({"4"}, at(20, 0.5));
    log.append({"6"}, at(20, 0.5));
  }
  {
    EvalLog log;
    log.open_resumed(path_, ids_, metrics_, {"4"}, 10);
  }
  EXPECT_EQ(read_text(path_),
            "keys,step,eval_loss,best,seconds,bleu\n"
            "4,10,0.5,0.5,0.000,100\n"
            "6,20,0.5,0.5,0.000,200\n");
}

TEST_F(EvalLogTest, AnotherKindOfLogIsRefusedAndLeftAlone) {
  {
    std::ofstream out(path_);
    out << "something,else\n1,2\n";
  }
  EvalLog log;
  EXPECT_THROW(log.open_fresh(path_, ids_, metrics_, {{"4"}}), RunError);
  EXPECT_EQ(read_text(path_), "something,else\n1,2\n");
}

TEST_F(EvalLogTest, NonFiniteNumbersAreWrittenAsNan) {
  {
    EvalLog log;
    log.open_fresh(path_, {}, {}, {{}});
    TrainState s;
    s.step = 3;  // no evaluation loss yet, best still infinite
    log.append({}, s);
  }
  EXPECT_EQ(read_text(path_), "step,eval_loss,best,seconds\n3,nan,nan,0.000\n");
}

}  // namespace
}  // namespace train
}  // namespace fwp_cli
