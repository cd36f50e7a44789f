#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"

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

}  // namespace

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
  check(std::isfinite(eps) && eps > 0, "eps", "finite and > 0", eps);
  check(std::isfinite(weight_decay) && weight_decay >= 0, "weight_decay", "finite and >= 0", weight_decay);
  check(momentum >= 0 && momentum < 1, "momentum", "in [0, 1)", momentum);
  check(std::isfinite(clip_grad_norm) && clip_grad_norm >= 0, "clip_grad_norm", "finite and >= 0 (0 = off)",
        clip_grad_norm);
  // Adam has no momentum setting of its own; a non-zero value would be ignored.
  require(kind == FWP_OPTIMIZER_SGD || momentum == 0, FWP_ERR_INVALID_ARGUMENT,
          prefix + "momentum must be 0 for Adam and AdamW (it is an SGD setting)" + got(momentum));
}

nlohmann::json OptimizerConfig::to_json() const {
  return {{"kind", kind_name(kind)},         {"learning_rate", learning_rate}, {"beta1", beta1},
          {"beta2", beta2},                  {"eps", eps},                     {"weight_decay", weight_decay},
          {"momentum", momentum},            {"clip_grad_norm", clip_grad_norm}};
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
  const bool adam = is_adam(config_.kind);
  const bool momentum = config_.kind == FWP_OPTIMIZER_SGD && config_.momentum != 0;
  for (int64_t i = 0; i < params_.size(); ++i) {
    const Parameter<float>& p = params_[i];
    if (!p.trainable) continue;
    Slot slot;
    slot.param_index = i;
    if (adam || momentum) {
      slot.first = Buffer<float>(backend_, p.numel());
      slot.first.zero();
    }
    if (adam) {
      slot.second = Buffer<float>(backend_, p.numel());
      slot.second.zero();
    }
    slots_.push_back(std::move(slot));
  }
}

double Optimizer::step() {
  // Check every gradient before anything is written: a rejected step changes nothing.
  double sum = 0.0;
  for (const Slot& slot : slots_) {
    const Parameter<float>& p = params_[slot.param_index];
    const double s = backend_->sum_squares(p.grad.data(), p.numel());
    if (!std::isfinite(s)) {
      throw Error(FWP_ERR_INVALID_ARGUMENT,
                  "the gradient of '" + p.name + "' is not finite (NaN or infinity); no parameter was updated");
    }
    sum += s;
  }
  const double norm = std::sqrt(sum);
  // PyTorch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
  double grad_scale = 1.0;
  if (config_.clip_grad_norm > 0) grad_scale = std::min(1.0, config_.clip_grad_norm / (norm + 1e-6));

  const int64_t t = steps_ + 1;
  if (is_adam(config_.kind)) {
    AdamStepParams hp;
    hp.lr = config_.learning_rate;
    hp.beta1 = config_.beta1;
    hp.beta2 = config_.beta2;
    hp.eps = config_.eps;
    hp.weight_decay = config_.weight_decay;
    hp.decoupled_weight_decay = config_.kind == FWP_OPTIMIZER_ADAMW;
    hp.bias_correction1 = 1.0 - std::pow(config_.beta1, static_cast<double>(t));
    hp.bias_correction2 = 1.0 - std::pow(config_.beta2, static_cast<double>(t));
    hp.grad_scale = grad_scale;
    for (Slot& slot : slots_) {
      Parameter<float>& p = params_[slot.param_index];
      backend_->adam_update(hp, p.numel(), p.value.data(), p.grad.data(), slot.first.data(), slot.second.data());
    }
  } else {
    SgdStepParams hp;
    hp.lr = config_.learning_rate;
    hp.momentum = config_.momentum;
    hp.weight_decay = config_.weight_decay;
    hp.grad_scale = grad_scale;
    for (Slot& slot : slots_) {
      Parameter<float>& p = params_[slot.param_index];
      backend_->sgd_update(hp, p.numel(), p.value.data(), p.grad.data(),
                           slot.first.empty() ? nullptr : slot.first.data());
    }
  }
  steps_ = t;
  return norm;
}

void Optimizer::zero_grad() {
  for (const Slot& slot : slots_) params_[slot.param_index].grad.zero();
}

void Optimizer::set_learning_rate(double lr) {
  require(std::isfinite(lr) && lr >= 0, FWP_ERR_INVALID_ARGUMENT, "lr must be finite and >= 0" + got(lr));
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

void Optimizer::restore(int64_t steps, double learning_rate) {
  require(steps >= 0, FWP_ERR_FORMAT, "optimizer step count must be >= 0");
  require(std::isfinite(learning_rate) && learning_rate >= 0, FWP_ERR_FORMAT,
          "optimizer learning rate must be finite and >= 0");
  steps_ = steps;
  config_.learning_rate = learning_rate;
}

}  // namespace fwp
