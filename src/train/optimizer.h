// Optimizers over a ParameterList<float> (a model's or a layer's parameters):
// SGD with momentum, Adam and AdamW, with optional global gradient-norm
// clipping and a learning-rate schedule (fwp/optimizer.h defines each). The
// list keeps its trainable parameters in one block, and the moments live in
// blocks of the same layout on the same backend, so a step is ONE sum_squares
// reduction and ONE adam_update / sgd_update over the whole trainable range.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/buffer.h"
#include "fwp/fwp.h"
#include "nn/parameter.h"

namespace fwp {

// The C++ mirror of fwp_optimizer_config (see fwp.h).
struct OptimizerConfig {
  fwp_optimizer_kind kind = FWP_OPTIMIZER_ADAM;
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;        // SGD only; must be 0 for Adam and AdamW
  double clip_grad_norm = 0.0;  // 0 = no clipping
  // The learning-rate schedule; learning_rate is its base (peak).
  fwp_lr_schedule lr_schedule = FWP_LR_CONSTANT;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;         // FWP_LR_WARMUP_COSINE only
  double min_learning_rate = 0.0;  // the floor of the decay; 0 for FWP_LR_CONSTANT

  // The largest warmup_steps / total_steps: step counts stay exact in double.
  static constexpr int64_t kMaxScheduleSteps = int64_t(1) << 53;

  // The learning rate of the step after `steps` steps (fwp_lr_schedule in
  // fwp/optimizer.h), for base learning_rate.
  double learning_rate_after(int64_t steps) const;

  // Throws Error(FWP_ERR_INVALID_ARGUMENT / FWP_ERR_OUT_OF_RANGE) naming the
  // first bad field as prefix + field.
  void validate(const std::string& prefix = "") const;
  nlohmann::json to_json() const;
  // Error(FWP_ERR_FORMAT) for a missing, mistyped or invalid member. The
  // schedule members may be missing (files of 0.1.0): the constant schedule.
  static OptimizerConfig from_json(const nlohmann::json& j);
};

class Optimizer {
 public:
  // One moment tensor of one parameter, e.g. ("k_proj.weight", "exp_avg").
  struct StateTensor {
    int64_t param_index;
    std::string kind;  // "exp_avg", "exp_avg_sq" (Adam/AdamW) or "momentum_buffer" (SGD with momentum)
    BlockView<float>* buffer;  // the parameter's slice of a moment block
  };

  // Updates the trainable parameters of `params` (allocated on `backend`;
  // they must outlive the optimizer and keep their layout); `owner` (nullable)
  // is kept alive for as long as the optimizer lives (e.g. the model that
  // owns `params`). Validates the config.
  Optimizer(std::shared_ptr<Backend<float>> backend, ParameterList<float>& params, const OptimizerConfig& config,
            std::shared_ptr<const void> owner = nullptr);

  // One update of every trainable parameter from its gradient, with the
  // learning rate learning_rate(). Returns the global gradient L2 norm before
  // clipping. A non-finite gradient throws Error(FWP_ERR_INVALID_ARGUMENT)
  // naming the parameter; nothing is changed then.
  double step();
  void zero_grad();

  // The learning rate the next step uses (the schedule after steps() steps).
  double learning_rate() const { return config_.learning_rate_after(steps_); }
  // The base (peak) learning rate that the schedule scales.
  double base_learning_rate() const { return config_.learning_rate; }
  // Sets the base learning rate. Throws Error(FWP_ERR_INVALID_ARGUMENT) unless
  // lr is finite, >= 0 and >= the schedule's floor.
  void set_learning_rate(double lr);
  int64_t steps() const { return steps_; }
  const OptimizerConfig& config() const { return config_; }
  const ParameterList<float>& params() const { return params_; }

  // The moment tensors in a fixed order (for checkpoints).
  std::vector<StateTensor> state_tensors();
  // Restores the step count and base learning rate of a checkpoint: with the
  // config (which a checkpoint must match) they are the schedule's whole
  // state. The moments are written through state_tensors().
  void restore(int64_t steps, double base_learning_rate);

 private:
  struct Slot {
    int64_t param_index;
    BlockView<float> first;   // exp_avg or momentum_buffer (empty for plain SGD)
    BlockView<float> second;  // exp_avg_sq (Adam/AdamW only)
  };

  // The parameters' blocks must be where they were when the optimizer was made.
  void check_layout() const;
  // After a non-finite global norm: the error naming the first offending parameter.
  [[noreturn]] void throw_non_finite_gradient() const;

  std::shared_ptr<Backend<float>> backend_;
  ParameterList<float>& params_;
  std::shared_ptr<const void> owner_;
  OptimizerConfig config_;
  int64_t steps_ = 0;
  int64_t trainable_size_ = 0;             // params_.trainable_size() at construction
  const float* value_block_ = nullptr;     // params_.value_block() at construction
  Buffer<float> moments_;                  // the moment blocks below (empty for plain SGD)
  float* first_moments_ = nullptr;         // exp_avg or momentum_buffer, [trainable_size_] in the parameters' layout
  float* second_moments_ = nullptr;        // exp_avg_sq (Adam/AdamW), [trainable_size_]
  std::vector<Slot> slots_;                // one per trainable parameter, views into the moment blocks
};

}  // namespace fwp
