#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/limits.h"

namespace fwp {

namespace {

std::string got(double v) {
  std::ostringstream os;
  os << v;
  return " (got " + os.str() + ")";
}

const char* kind_name(fwp_optimizer_kind kind) {
  switch (kind) {
    case FWP_OPTIMIZER_SGD: return "sgd";
    case FWP_OPTIMIZER_ADAM: return "adam";
    case FWP_OPTIMIZER_ADAMW: return "adamw";
  }
  return "unknown";
}

bool is_adam(fwp_optimizer_kind kind) { return kind == FWP_OPTIMIZER_ADAM || kind == FWP_OPTIMIZER_ADAMW; }

const char* schedule_name(fwp_lr_schedule schedule) {
  switch (schedule) {
    case FWP_LR_CONSTANT: return "constant";
    case FWP_LR_WARMUP_COSINE: return "warmup_cosine";
    case FWP_LR_INVERSE_SQRT: return "inverse_sqrt";
  }
  return "unknown";
}

constexpr double kPi = 3.14159265358979323846;

}  // namespace

// ---- schedule -------------------------------------------------------------------------------

double OptimizerConfig::learning_rate_after(int64_t steps) const {
  const double base = learning_rate;
  const double n = static_cast<double>(steps);
  if (steps < warmup_steps) return base * n / static_cast<double>(warmup_steps);
  switch (lr_schedule) {
    case FWP_LR_CONSTANT:
      return base;
    case FWP_LR_WARMUP_COSINE: {
      if (steps >= total_steps) return min_learning_rate;
      const double progress = (n - static_cast<double>(warmup_steps)) /
                              static_cast<double>(total_steps - warmup_steps);
      return min_learning_rate + (base - min_learning_rate) * 0.5 * (1.0 + std::cos(kPi * progress));
    }
    case FWP_LR_INVERSE_SQRT:
      // n >= warmup_steps >= 1 here.
      return std::max(min_learning_rate, base * std::sqrt(static_cast<double>(warmup_steps) / n));
  }
  return base;
}

// ---- config -------------------------------------------------------------------------------

void OptimizerConfig::validate(const std::string& prefix) const {
  require(kind == FWP_OPTIMIZER_SGD || kind == FWP_OPTIMIZER_ADAM || kind == FWP_OPTIMIZER_ADAMW,
          FWP_ERR_OUT_OF_RANGE,
          prefix + "kind must be FWP_OPTIMIZER_SGD, FWP_OPTIMIZER_ADAM or FWP_OPTIMIZER_ADAMW (got " +
              std::to_string(static_cast<int>(kind)) + ")");
  auto check = [&](bool ok, const char* field, const char* rule, double value) {
    require(ok, FWP_ERR_INVALID_ARGUMENT, prefix + field + " must be " + rule + got(value));
  };
  check(std::isfinite(learning_rate) && learning_rate >= 0, "learning_rate", "finite and >= 0", learning_rate);
  check(beta1 >= 0 && beta1 < 1, "beta1", "in [0, 1)", beta1);
  check(beta2 >= 0 && beta2 < 1, "beta2", "in [0, 1)", beta2);
  check_epsilon(eps, prefix + "eps");
  check(std::isfinite(weight_decay) && weight_decay >= 0, "weight_decay", "finite and >= 0", weight_decay);
  check(momentum >= 0 && momentum < 1, "momentum", "in [0, 1)", momentum);
  check(std::isfinite(clip_grad_norm) && clip_grad_norm >= 0, "clip_grad_norm", "finite and >= 0 (0 = off)",
        clip_grad_norm);
  // Adam has no momentum setting of its own; a non-zero value would be ignored.
  require(kind == FWP_OPTIMIZER_SGD || momentum == 0, FWP_ERR_INVALID_ARGUMENT,
          prefix + "momentum must be 0 for Adam and AdamW (it is an SGD setting)" + got(momentum));

  // The schedule. Settings a schedule would ignore are refused like momentum above.
  require(lr_schedule == FWP_LR_CONSTANT || lr_schedule == FWP_LR_WARMUP_COSINE || lr_schedule == FWP_LR_INVERSE_SQRT,
          FWP_ERR_OUT_OF_RANGE,
          prefix + "lr_schedule must be FWP_LR_CONSTANT, FWP_LR_WARMUP_COSINE or FWP_LR_INVERSE_SQRT (got " +
              std::to_string(static_cast<int>(lr_schedule)) + ")");
  const std::string max_steps = std::to_string(kMaxScheduleSteps);
  require(warmup_steps >= 0 && warmup_steps <= kMaxScheduleSteps, FWP_ERR_INVALID_ARGUMENT,
          prefix + "warmup_steps must be in [0, " + max_steps + "] (got " + std::to_string(warmup_steps) + ")");
  require(lr_schedule != FWP_LR_INVERSE_SQRT || warmup_steps >= 1, FWP_ERR_INVALID_ARGUMENT,
          prefix + "warmup_steps must be >= 1 for FWP_LR_INVERSE_SQRT (its decay is learning_rate * "
                   "sqrt(warmup_steps / step)) (got " + std::to_string(warmup_steps) + ")");
  if (lr_schedule == FWP_LR_WARMUP_COSINE) {
    require(total_steps > warmup_steps && total_steps <= kMaxScheduleSteps, FWP_ERR_INVALID_ARGUMENT,
            prefix + "total_steps must be > warmup_steps (" + std::to_string(warmup_steps) + ") and <= " +
                max_steps + " for FWP_LR_WARMUP_COSINE: the decay ends there (got " +
                std::to_string(total_steps) + ")");
  } else {
    require(total_steps == 0, FWP_ERR_INVALID_ARGUMENT,
            prefix + "total_steps must be 0 unless lr_schedule is FWP_LR_WARMUP_COSINE (got " +
                std::to_string(total_steps) + ")");
  }
  if (lr_schedule == FWP_LR_CONSTANT) {
    require(min_learning_rate == 0, FWP_ERR_INVALID_ARGUMENT,
            prefix + "min_learning_rate must be 0 for FWP_LR_CONSTANT (it has no decay)" + got(min_learning_rate));
  } else {
    std::ostringstream base;
    base << learning_rate;
    require(std::isfinite(min_learning_rate) && min_learning_rate >= 0 && min_learning_rate <= learning_rate,
            FWP_ERR_INVALID_ARGUMENT,
            prefix + "min_learning_rate must be finite and in [0, learning_rate = " + base.str() + "]" +
                got(min_learning_rate));
  }
}

nlohmann::json OptimizerConfig::to_json() const {
  return {{"kind", kind_name(kind)},
          {"learning_rate", learning_rate},
          {"beta1", beta1},
          {"beta2", beta2},
          {"eps", eps},
          {"weight_decay", weight_decay},
          {"momentum", momentum},
          {"clip_grad_norm", clip_grad_norm},
          {"lr_schedule", schedule_name(lr_schedule)},
          {"warmup_steps", warmup_steps},
          {"total_steps", total_steps},
          {"min_learning_rate", min_learning_rate}};
}

OptimizerConfig OptimizerConfig::from_json(const nlohmann::json& j) {
  auto fail = [](const std::string& what) { throw Error(FWP_ERR_FORMAT, "optimizer config: " + what); };
  if (!j.is_object()) fail("not a JSON object");
  auto number = [&](const char* name) -> double {
    const auto it = j.find(name);
    if (it == j.end() || !it->is_number()) fail(std::string("member '") + name + "' is missing or not a number");
    return it->get<double>();
  };
  OptimizerConfig c;
  const auto kind = j.find("kind");
  if (kind == j.end() || !kind->is_string()) fail("member 'kind' is missing or not a string");
  const std::string k = kind->get<std::string>();
  if (k == "sgd") {
    c.kind = FWP_OPTIMIZER_SGD;
  } else if (k == "adam") {
    c.kind = FWP_OPTIMIZER_ADAM;
  } else if (k == "adamw") {
    c.kind = FWP_OPTIMIZER_ADAMW;
  } else {
    fail("unknown kind '" + k + "'");
  }
  c.learning_rate = number("learning_rate");
  c.beta1 = number("beta1");
  c.beta2 = number("beta2");
  c.eps = number("eps");
  c.weight_decay = number("weight_decay");
  c.momentum = number("momentum");
  c.clip_grad_norm = number("clip_grad_norm");
  // The schedule: absent in files written before 0.2.0 (the constant schedule).
  if (const auto it = j.find("lr_schedule"); it != j.end()) {
    if (!it->is_string()) fail("member 'lr_schedule' is not a string");
    const std::string name = it->get<std::string>();
    if (name == "constant") {
      c.lr_schedule = FWP_LR_CONSTANT;
    } else if (name == "warmup_cosine") {
      c.lr_schedule = FWP_LR_WARMUP_COSINE;
    } else if (name == "inverse_sqrt") {
      c.lr_schedule = FWP_LR_INVERSE_SQRT;
    } else {
      fail("unknown lr_schedule '" + name + "'");
    }
  }
  auto optional_steps = [&](const char* name, int64_t& out) {
    const auto it = j.find(name);
    if (it == j.end()) return;
    if (!it->is_number_integer()) fail(std::string("member '") + name + "' is not an integer");
    out = it->get<int64_t>();
  };
  optional_steps("warmup_steps", c.warmup_steps);
  optional_steps("total_steps", c.total_steps);
  if (j.contains("min_learning_rate")) c.min_learning_rate = number("min_learning_rate");
  try {
    c.validate();
  } catch (const Error& e) {
    fail(e.what());
  }
  return c;
}

// ---- optimizer ------------------------------------------------------------------------------

Optimizer::Optimizer(std::shared_ptr<Backend<float>> backend, ParameterList<float>& params,
                     const OptimizerConfig& config, std::shared_ptr<const void> owner)
    : backend_(std::move(backend)), params_(params), owner_(std::move(owner)), config_(config) {
  config_.validate("config->");
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "Optimizer needs a backend");
  require(params_.allocated() || params_.size() == 0, FWP_ERR_INTERNAL, "Optimizer over unallocated parameters");
  trainable_size_ = params_.trainable_size();
  value_block_ = params_.value_block();
  const bool adam = is_adam(config_.kind);
  const bool momentum = config_.kind == FWP_OPTIMIZER_SGD && config_.momentum != 0;
  // Moment blocks in the parameters' layout: one update op covers them all,
  // and each parameter's moments are a view at its offset. Both blocks share
  // one allocation, the second starting 256 bytes further into its 4 KiB page
  // than the first: the Adam update stores exp_avg[i] and then loads
  // exp_avg_sq[i], and at equal page offsets the CPU treats that load as
  // dependent on the store (4K aliasing), which made a step 2.5x slower.
  const int64_t n = trainable_size_;
  if (adam) {
    constexpr int64_t kPage = 4096 / sizeof(float), kSkew = 256 / sizeof(float);
    const int64_t second_offset = n + kSkew + (kPage - n % kPage) % kPage;  // = kSkew (mod kPage)
    moments_ = Buffer<float>(backend_, second_offset + n);
    moments_.zero();
    first_moments_ = moments_.data();
    second_moments_ = moments_.data() + second_offset;
  } else if (momentum) {
    moments_ = Buffer<float>(backend_, n);
    moments_.zero();
    first_moments_ = moments_.data();
  }
  for (int64_t i = 0; i < params_.size(); ++i) {
    const Parameter<float>& p = params_[i];
    if (!p.trainable) continue;
    Slot slot;
    slot.param_index = i;
    if (first_moments_) slot.first = BlockView<float>(backend_.get(), first_moments_ + p.offset, p.numel());
    if (second_moments_) slot.second = BlockView<float>(backend_.get(), second_moments_ + p.offset, p.numel());
    slots_.push_back(std::move(slot));
  }
}

void Optimizer::check_layout() const {
  require(params_.value_block() == value_block_ && params_.trainable_size() == trainable_size_, FWP_ERR_INTERNAL,
          "the parameters were re-allocated after their optimizer was created");
}

void Optimizer::throw_non_finite_gradient() const {
  for (const Slot& slot : slots_) {
    const Parameter<float>& p = params_[slot.param_index];
    if (!std::isfinite(backend_->sum_squares(p.grad.data(), p.numel()))) {
      throw Error(FWP_ERR_INVALID_ARGUMENT,
                  "the gradient of '" + p.name + "' is not finite (NaN or infinity); no parameter was updated");
    }
  }
  // Only padding could hold it, and no op writes there.
  throw Error(FWP_ERR_INTERNAL, "the gradient block is not finite outside every parameter");
}

double Optimizer::step() {
  check_layout();
  // One reduction over every trainable gradient, checked before anything is
  // written: a rejected step changes nothing.
  const int64_t n = trainable_size_;
  const double sum = n > 0 ? backend_->sum_squares(params_.grad_block(), n) : 0.0;
  if (!std::isfinite(sum)) throw_non_finite_gradient();
  const double norm = std::sqrt(sum);
  // PyTorch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
  double grad_scale = 1.0;
  if (config_.clip_grad_norm > 0) grad_scale = std::min(1.0, config_.clip_grad_norm / (norm + 1e-6));

  const double lr = learning_rate();
  const int64_t t = steps_ + 1;
  if (n > 0 && is_adam(config_.kind)) {
    AdamStepParams hp;
    hp.lr = lr;
    hp.beta1 = config_.beta1;
    hp.beta2 = config_.beta2;
    hp.eps = config_.eps;
    hp.weight_decay = config_.weight_decay;
    hp.decoupled_weight_decay = config_.kind == FWP_OPTIMIZER_ADAMW;
    hp.bias_correction1 = 1.0 - std::pow(config_.beta1, static_cast<double>(t));
    hp.bias_correction2 = 1.0 - std::pow(config_.beta2, static_cast<double>(t));
    hp.grad_scale = grad_scale;
    backend_->adam_update(hp, n, params_.value_block(), params_.grad_block(), first_moments_, second_moments_);
  } else if (n > 0) {
    SgdStepParams hp;
    hp.lr = lr;
    hp.momentum = config_.momentum;
    hp.weight_decay = config_.weight_decay;
    hp.grad_scale = grad_scale;
    backend_->sgd_update(hp, n, params_.value_block(), params_.grad_block(), first_moments_);
  }
  steps_ = t;
  return norm;
}

void Optimizer::zero_grad() {
  check_layout();
  // The trainable range only: fixed buffers' gradients are never written.
  if (trainable_size_ > 0) backend_->fill(params_.grad_block(), 0.0f, trainable_size_);
}

void Optimizer::set_learning_rate(double lr) {
  require(std::isfinite(lr) && lr >= 0, FWP_ERR_INVALID_ARGUMENT, "lr must be finite and >= 0" + got(lr));
  std::ostringstream floor;
  floor << config_.min_learning_rate;
  require(lr >= config_.min_learning_rate, FWP_ERR_INVALID_ARGUMENT,
          "lr must be >= the schedule's min_learning_rate (" + floor.str() + ")" + got(lr));
  config_.learning_rate = lr;
}

std::vector<Optimizer::StateTensor> Optimizer::state_tensors() {
  std::vector<StateTensor> out;
  const bool adam = is_adam(config_.kind);
  for (Slot& slot : slots_) {
    if (slot.first.empty() && !adam) continue;
    if (adam) {
      out.push_back({slot.param_index, "exp_avg", &slot.first});
      out.push_back({slot.param_index, "exp_avg_sq", &slot.second});
    } else {
      out.push_back({slot.param_index, "momentum_buffer", &slot.first});
    }
  }
  return out;
}

void Optimizer::restore(int64_t steps, double base_learning_rate) {
  require(steps >= 0, FWP_ERR_FORMAT, "optimizer step count must be >= 0");
  require(std::isfinite(base_learning_rate) && base_learning_rate >= config_.min_learning_rate, FWP_ERR_FORMAT,
          "optimizer learning rate must be finite and >= the schedule's min_learning_rate");
  steps_ = steps;
  config_.learning_rate = base_learning_rate;
}

}  // namespace fwp
