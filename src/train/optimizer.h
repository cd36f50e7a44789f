// Optimizers over a ParameterList<float> (a model's or a layer's parameters):
// SGD with momentum, Adam and AdamW, with optional global gradient-norm
// clipping. The moments live on the parameters' backend; the updates are the
// backend's adam_update / sgd_update ops.
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

  // Throws Error(FWP_ERR_INVALID_ARGUMENT / FWP_ERR_OUT_OF_RANGE) naming the
  // first bad field as prefix + field.
  void validate(const std::string& prefix = "") const;
  nlohmann::json to_json() const;
  // Error(FWP_ERR_FORMAT) for a missing, mistyped or invalid member.
  static OptimizerConfig from_json(const nlohmann::json& j);
};

class Optimizer {
 public:
  // One moment tensor of one parameter, e.g. ("k_proj.weight", "exp_avg").
  struct StateTensor {
    int64_t param_index;
    std::string kind;  // "exp_avg", "exp_avg_sq" (Adam/AdamW) or "momentum_buffer" (SGD with momentum)
    Buffer<float>* buffer;
  };

  // Updates the trainable parameters of `params` (which live on `backend` and
  // must outlive the optimizer); `owner` (nullable) is kept alive for as long
  // as the optimizer lives (e.g. the model that owns `params`). Validates the config.
  Optimizer(std::shared_ptr<Backend<float>> backend, ParameterList<float>& params, const OptimizerConfig& config,
            std::shared_ptr<const void> owner = nullptr);

  // One update of every trainable parameter from its gradient. Returns the
  // global gradient L2 norm before clipping. A non-finite gradient throws
  // Error(FWP_ERR_INVALID_ARGUMENT) naming the parameter; nothing is changed then.
  double step();
  void zero_grad();

  double learning_rate() const { return config_.learning_rate; }
  // Throws Error(FWP_ERR_INVALID_ARGUMENT) unless lr is finite and >= 0.
  void set_learning_rate(double lr);
  int64_t steps() const { return steps_; }
  const OptimizerConfig& config() const { return config_; }
  const ParameterList<float>& params() const { return params_; }

  // The moment tensors in a fixed order (for checkpoints).
  std::vector<StateTensor> state_tensors();
  // Restores the step count and learning rate of a checkpoint (the moments are
  // written through state_tensors()).
  void restore(int64_t steps, double learning_rate);

 private:
  struct Slot {
    int64_t param_index;
    Buffer<float> first;   // exp_avg or momentum_buffer (empty for plain SGD)
    Buffer<float> second;  // exp_avg_sq (Adam/AdamW only)
  };

  std::shared_ptr<Backend<float>> backend_;
  ParameterList<float>& params_;
  std::shared_ptr<const void> owner_;
  OptimizerConfig config_;
  int64_t steps_ = 0;
  std::vector<Slot> slots_;  // one per trainable parameter
};

}  // namespace fwp
