// C API of optimizers: argument checks, then fwp::Optimizer.
#include <cmath>
#include <memory>
#include <string>

#include "api/checks.h"
#include "api/config_history.h"
#include "api/guard.h"
#include "api/handles.h"
#include "core/error.h"
#include "fwp/fwp.h"
#include "nn/fast_weight_layer.h"
#include "models/model.h"
#include "train/optimizer.h"

namespace {

using fwp::Error;
using fwp::api::check_not_null;

fwp::OptimizerConfig to_internal(const fwp_optimizer_config& user) {
  // Callers built against 0.1.0 pass the struct without the schedule fields.
  const fwp_optimizer_config c =
      fwp::api::read_config(user, fwp_optimizer_config_init, "config",
                            {FWP_CONFIG_LAYOUT(fwp::api::fwp_optimizer_config_v0_1, clip_grad_norm)});
  // Read the enum as an int: an out-of-range value loaded through the enum type is undefined.
  const int kind = fwp::api::enum_value(c.kind);
  if (kind != FWP_OPTIMIZER_SGD && kind != FWP_OPTIMIZER_ADAM && kind != FWP_OPTIMIZER_ADAMW) {
    throw Error(FWP_ERR_OUT_OF_RANGE,
                "config->kind must be FWP_OPTIMIZER_SGD, FWP_OPTIMIZER_ADAM or FWP_OPTIMIZER_ADAMW (got " +
                    std::to_string(kind) + ")");
  }
  const int schedule = fwp::api::enum_value(c.lr_schedule);
  if (schedule != FWP_LR_CONSTANT && schedule != FWP_LR_WARMUP_COSINE && schedule != FWP_LR_INVERSE_SQRT) {
    throw Error(FWP_ERR_OUT_OF_RANGE,
                "config->lr_schedule must be FWP_LR_CONSTANT, FWP_LR_WARMUP_COSINE or FWP_LR_INVERSE_SQRT (got " +
                    std::to_string(schedule) + ")");
  }
  fwp::OptimizerConfig out;
  out.kind = static_cast<fwp_optimizer_kind>(kind);
  out.lr_schedule = static_cast<fwp_lr_schedule>(schedule);
  out.warmup_steps = c.warmup_steps;
  out.total_steps = c.total_steps;
  out.min_learning_rate = static_cast<double>(c.min_learning_rate);
  out.learning_rate = static_cast<double>(c.learning_rate);
  out.beta1 = static_cast<double>(c.beta1);
  out.beta2 = static_cast<double>(c.beta2);
  out.eps = static_cast<double>(c.eps);
  out.weight_decay = static_cast<double>(c.weight_decay);
  out.momentum = static_cast<double>(c.momentum);
  out.clip_grad_norm = static_cast<double>(c.clip_grad_norm);
  out.validate("config->");
  return out;
}

fwp::Optimizer& impl(fwp_optimizer* opt) {
  check_not_null(opt, "opt");
  return *opt->impl;
}

const fwp::Optimizer& impl(const fwp_optimizer* opt) {
  check_not_null(opt, "opt");
  return *opt->impl;
}

}  // namespace

extern "C" {

FWP_API void fwp_optimizer_config_init(fwp_optimizer_config* config) {
  if (!config) return;
  *config = fwp_optimizer_config{};
  config->struct_size = sizeof(fwp_optimizer_config);
  config->kind = FWP_OPTIMIZER_ADAM;
  config->learning_rate = 1e-3f;
  config->beta1 = 0.9f;
  config->beta2 = 0.999f;
  config->eps = 1e-8f;
  config->weight_decay = 0.0f;
  config->momentum = 0.0f;
  config->clip_grad_norm = 0.0f;
  config->lr_schedule = FWP_LR_CONSTANT;
  config->warmup_steps = 0;
  config->total_steps = 0;
  config->min_learning_rate = 0.0f;
}

FWP_API fwp_status fwp_optimizer_create_for_model(fwp_model* model, const fwp_optimizer_config* config,
                                                  fwp_optimizer** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    check_not_null(model, "model");
    check_not_null(config, "config");
    const fwp::OptimizerConfig internal = to_internal(*config);
    auto handle = std::make_unique<fwp_optimizer>();
    handle->context = model->context;
    // The optimizer keeps the model's implementation alive, so destroying the
    // model handle first cannot leave it with dangling parameters.
    handle->impl = std::make_unique<fwp::Optimizer>(model->context->backend(), model->impl->parameters(), internal,
                                                    model->impl);
    *out = handle.release();
  });
}

FWP_API fwp_status fwp_optimizer_create_for_layer(fwp_layer* layer, const fwp_optimizer_config* config,
                                                  fwp_optimizer** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    check_not_null(layer, "layer");
    check_not_null(config, "config");
    const fwp::OptimizerConfig internal = to_internal(*config);
    auto handle = std::make_unique<fwp_optimizer>();
    handle->context = layer->context;
    // As for a model: the optimizer keeps the layer's implementation alive.
    handle->impl = std::make_unique<fwp::Optimizer>(layer->impl->backend(), layer->impl->params(), internal,
                                                    layer->impl);
    *out = handle.release();
  });
}

FWP_API void fwp_optimizer_destroy(fwp_optimizer* opt) { delete opt; }

FWP_API fwp_status fwp_optimizer_step(fwp_optimizer* opt, float* grad_norm) {
  return fwp::api::guard(__func__, [&] {
    const double norm = impl(opt).step();
    if (grad_norm) *grad_norm = static_cast<float>(norm);
  });
}

FWP_API fwp_status fwp_optimizer_zero_grad(fwp_optimizer* opt) {
  return fwp::api::guard(__func__, [&] { impl(opt).zero_grad(); });
}

FWP_API fwp_status fwp_optimizer_get_lr(const fwp_optimizer* opt, float* lr) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Optimizer& o = impl(opt);
    check_not_null(lr, "lr");
    *lr = static_cast<float>(o.learning_rate());
  });
}

FWP_API fwp_status fwp_optimizer_set_lr(fwp_optimizer* opt, float lr) {
  return fwp::api::guard(__func__, [&] { impl(opt).set_learning_rate(static_cast<double>(lr)); });
}

FWP_API fwp_status fwp_optimizer_get_step(const fwp_optimizer* opt, int64_t* steps) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Optimizer& o = impl(opt);
    check_not_null(steps, "steps");
    *steps = o.steps();
  });
}

}  // extern "C"
