#include "train_loop.h"

#include "../cli_support.h"
#include "distributed.h"
#include "interrupt.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <vector>

namespace fwp_cli {
namespace train {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

/// "nan", "inf", "-inf" or the number (printf would write "-nan" for some NaNs).
std::string number_text(double value) {
  if (std::isnan(value)) return "nan";
  return fmt::format("{:g}", value);
}

/// Updates the best loss and the patience count, and applies the stopping rules.
void record_evaluation(const TrainingPlan& plan, const Evaluation& evaluation, TrainState& state) {
  ++state.evaluations;
  state.last_eval = evaluation.loss;
  state.last_metrics = evaluation.metrics;
  if (evaluation.loss < state.best) {
    state.best = evaluation.loss;
    state.evals_since_best = 0;
  } else {
    ++state.evals_since_best;  // NaN never improves, so a broken evaluation runs out of patience
  }
  if (evaluation.loss <= plan.target_loss) {
    state.stopped_by = stop::kTarget;
  } else if (state.evals_since_best >= plan.patience) {
    state.stopped_by = stop::kPatience;
  } else if (state.step >= plan.max_steps) {
    state.stopped_by = stop::kMaxSteps;
  }
}

/// Names the first non-finite tensor of a step that the driver stops at: the
/// loss, else the first parameter whose gradient holds NaN or infinity (the
/// optimizer refused it and changed nothing, so the gradients are still there),
/// e.g. "the gradient of 'embedding.weight' is not finite (nan at element 17)".
std::string non_finite_tensor(const StepResult& step, fwp_model* model) {
  if (!std::isfinite(step.loss)) return fmt::format("the loss is {}", number_text(step.loss));
  int64_t count = 0;
  if (model != nullptr && fwp_model_num_params(model, &count) == FWP_OK) {
    std::vector<float> grad;
    for (int64_t i = 0; i < count; ++i) {
      fwp_param_info info{};
      if (fwp_model_param_info(model, i, &info) != FWP_OK || info.trainable == 0) continue;
      grad.resize(static_cast<size_t>(info.numel));
      if (fwp_model_get_grad(model, i, grad.data(), info.numel) != FWP_OK) continue;
      for (size_t k = 0; k < grad.size(); ++k) {
        if (!std::isfinite(grad[k])) {
          return fmt::format("the gradient of '{}' is not finite ({} at element {})", info.name,
                             number_text(grad[k]), k);
        }
      }
    }
  }
  // A task without a model, or one that reported a non-finite norm itself.
  return fmt::format("the gradient norm is {}", number_text(step.grad_norm));
}

}  // namespace

double take_optimizer_step(fwp_optimizer* optimizer, int64_t step) {
  float grad_norm = 0.0f;
  const fwp_status status = fwp_optimizer_step(optimizer, &grad_norm);
  // The library refuses a non-finite gradient (and changes nothing); report it
  // as such so the driver ends the run with its own message.
  if (status == FWP_ERR_INVALID_ARGUMENT) return std::nan("");
  check_status(status, fmt::format("optimizer step {}", step).c_str());
  return static_cast<double>(grad_norm);
}

RunResult run_training(TrainingTask& task, const TrainingPlan& plan, TrainState state, const RunOutputs& out) {
  const InterruptScope interrupt_scope;
  RunResult result;
  const TrainingObjects objects = task.objects();
  // With --dist every rank runs this loop in step: the stop signal and the
  // evaluation loss that the rules watch are agreed on, so that all take the
  // same number of steps and meet in the same collectives.
  Distributed* const dist = objects.dist != nullptr && objects.dist->active() ? objects.dist : nullptr;
  const bool root = dist == nullptr || dist->is_root();
  result.dist = dist_json(objects.dist);
  out.progress->start(task.label());

  const auto session_start = Clock::now();
  const double seconds_before = state.seconds;
  const int64_t first_step = state.step;
  double loss_sum = 0.0;  // training loss averaged since the last evaluation, for the progress line
  int64_t loss_count = 0;
  double tokens = 0.0;    // tokens trained on in this session (the whole group's)
  auto elapsed = [&]() { return std::chrono::duration<double>(Clock::now() - session_start).count(); };
  auto steps_per_second = [&]() {
    const double t = elapsed();
    return t > 0 ? static_cast<double>(state.step - first_step) / t : 0.0;
  };
  auto tokens_per_second = [&]() {
    const double t = elapsed();
    return t > 0 ? tokens / t : 0.0;
  };
  // One process sees Ctrl-C between steps; a group acts on the signal that the
  // last step's sum reported from any rank (Distributed::reduce_step()).
  auto stop_signal = [&]() { return dist != nullptr ? dist->agreed_signal() : interrupt_signal(); };
  auto save = [&]() {
    if (out.checkpoint.empty()) return;
    // In a group a collective (the carried state is gathered); rank 0 writes.
    save_group_checkpoint(objects.dist, out.checkpoint, objects, out.checkpoint_format, task.describe(), state);
    result.checkpoint = out.checkpoint;
  };

  // A run stopped by a rule stays stopped; one stopped by the cap goes on if the cap was raised.
  if (state.stopped_by == stop::kMaxSteps && state.step < plan.max_steps) state.stopped_by.clear();

  while (state.stopped_by.empty() && state.step < plan.max_steps) {
    if (stop_signal() != 0) {
      // Saved as still running, so that --resume continues where it stopped.
      state.seconds = seconds_before + elapsed();
      save();
      state.stopped_by = stop::kInterrupted;
      result.signal = stop_signal();
      break;
    }

    const StepResult step = task.train_step(state.step + 1);
    tokens += step.tokens;
    const bool finite = std::isfinite(step.loss) && std::isfinite(step.grad_norm);
    if (!finite && plan.skip_non_finite && state.consecutive_skips + 1 < plan.max_consecutive_skips) {
      // Skipped: no parameter changed; the step counts, its loss does not.
      ++state.skipped_steps;
      ++state.consecutive_skips;
      out.progress->message(fmt::format("step {} skipped: {} ({} in a row, {} in all)", state.step + 1,
                                        non_finite_tensor(step, objects.model), state.consecutive_skips,
                                        state.skipped_steps));
    } else if (!finite) {
      const int64_t in_a_row = state.consecutive_skips + 1;
      state.stopped_by = stop::kNonFinite;
      result.failure = fmt::format(
          "training diverged at step {}: {}{}; {}; a smaller learning rate may help", state.step + 1,
          non_finite_tensor(step, objects.model),
          plan.skip_non_finite ? fmt::format(" ({} steps in a row with a non-finite loss or gradient)", in_a_row)
                               : std::string(),
          !out.checkpoint.empty() && file_exists(out.checkpoint)
              ? fmt::format("the checkpoint {} keeps the last saved state", out.checkpoint)
              : std::string("no checkpoint was written"));
      if (plan.skip_non_finite) {
        state.skipped_steps += 1;
        state.consecutive_skips = in_a_row;
      }
      break;
    } else {
      state.consecutive_skips = 0;
      loss_sum += step.loss;
      ++loss_count;
    }
    ++state.step;
    const double train_loss = loss_count > 0 ? loss_sum / static_cast<double>(loss_count) : std::nan("");

    if (state.step % plan.eval_every != 0 && state.step < plan.max_steps) {
      out.progress->step(state, plan.max_steps, train_loss, steps_per_second(), tokens_per_second());
      continue;
    }

    // Every rank evaluates its replica (all are equal, so this costs time, not
    // correctness); rank 0's loss decides the rules on all of them.
    Evaluation evaluation = task.evaluate(state.step);
    if (dist != nullptr) evaluation.loss = dist->from_root(evaluation.loss);
    record_evaluation(plan, evaluation, state);
    state.seconds = seconds_before + elapsed();
    save();
    if (out.eval_log != nullptr && root) out.eval_log->append(out.run_id, state);
    out.progress->evaluation(state, plan.max_steps, train_loss, steps_per_second(), tokens_per_second());
    loss_sum = 0.0;
    loss_count = 0;
  }
  if (state.stopped_by.empty()) state.stopped_by = stop::kMaxSteps;  // resumed with a cap already passed
  state.seconds = seconds_before + elapsed();
  result.state = state;
  return result;
}

json result_json(const TrainingTask& task, const RunResult& result) {
  const TrainState& s = result.state;
  json metrics = json::object();
  for (const Metric& metric : s.last_metrics) metrics[metric.name] = finite_or_null(metric.value);
  return {{"final_eval_loss", finite_or_null(s.last_eval)},
          {"best_eval_loss", finite_or_null(s.best)},
          {"steps", s.step},
          {"evaluations", s.evaluations},
          {"seconds", s.seconds},
          {"steps_per_second", s.seconds > 0 ? static_cast<double>(s.step) / s.seconds : 0.0},
          {"stopped_by", s.stopped_by},
          {"skipped_steps", s.skipped_steps},
          {"resumed", result.resumed},
          {"metrics", metrics},
          {"config", task.describe()},
          {"fwp_version", fwp_version_string()},
          {"dist", result.dist.is_object() ? result.dist.value("dist", std::string(kDistNone)) : kDistNone},
          {"world_size", result.dist.is_object() ? result.dist.value("world_size", 1) : 1}};
}

std::string summary_line(const TrainingTask& task, const TrainingPlan& plan, const RunResult& result) {
  const TrainState& s = result.state;
  std::string reason = stop_reason_text(plan, s.stopped_by);
  if (s.stopped_by == stop::kInterrupted) {
    reason = fmt::format("interrupted by {}", signal_name(result.signal));
    reason += result.checkpoint.empty() ? std::string("; no checkpoint (give --checkpoint FILE to keep one)")
                                        : fmt::format("; continue with --resume {}", result.checkpoint);
  }
  if (s.skipped_steps > 0) reason += fmt::format("; {} steps skipped (non-finite loss or gradient)", s.skipped_steps);
  std::string metrics;
  for (const Metric& metric : s.last_metrics) metrics += fmt::format(", {} {:.4g}", metric.name, metric.value);
  return fmt::format("{}: final eval loss {:.6f} (best {:.6f}){} after {} steps in {}; stopped: {}", task.label(),
                     s.last_eval, s.best, metrics, s.step, format_duration(s.seconds), reason);
}

std::string interrupted_notice(const TrainingTask& task, const RunResult& result, const std::string& resume) {
  std::string notice =
      fmt::format("fwp: {} stopped at step {} by {}", task.label(), result.state.step, signal_name(result.signal));
  if (result.checkpoint.empty()) {
    notice += "; no checkpoint was written (give --checkpoint FILE to be able to resume)";
  } else {
    notice += fmt::format("; saved to {}; resume with: {}", result.checkpoint, resume);
  }
  return notice;
}

}  // namespace train
}  // namespace fwp_cli
