// C API of fast-weight layers: every entry point checks its arguments, runs
// inside guard() and forwards to fwp::FastWeightLayer<float>.
#include <memory>
#include <string>

#include "api/checks.h"
#include "api/guard.h"
#include "api/handles.h"
#include "api/layer_config.h"
#include "api/params.h"
#include "core/error.h"
#include "fwp/fwp.h"
#include "nn/fast_weight_layer.h"

namespace {

using fwp::Error;
using fwp::api::check_finite;
using fwp::api::check_flag;
using fwp::api::check_not_null;

std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }

// Converts and checks a C config: enums (FWP_ERR_OUT_OF_RANGE) and flags in
// layer_config_to_internal(), sizes and consistency in FastWeightLayerConfig::validate().
fwp::FastWeightLayerConfig to_internal(const fwp_layer_config& user) {
  fwp::FastWeightLayerConfig out = fwp::api::layer_config_to_internal(user, "config", "config->");
  out.validate("config->");
  return out;
}

fwp::FastWeightLayer<float>& impl(fwp_layer* layer) {
  check_not_null(layer, "layer");
  return *layer->impl;
}

const fwp::FastWeightLayer<float>& impl(const fwp_layer* layer) {
  check_not_null(layer, "layer");
  return *layer->impl;
}

void require_state(const fwp::FastWeightLayer<float>& layer) {
  if (layer.config().softmax)
    throw Error(FWP_ERR_UNSUPPORTED, "softmax attention layers have no fast-weight state");
}

// A count argument that must equal `expected` when its array is given.
void check_count(const void* data, int64_t count, int64_t expected, const char* count_name, const char* what) {
  if (data && count != expected) {
    throw Error(FWP_ERR_SHAPE_MISMATCH, std::string(count_name) + " must equal " + what + " = " +
                                            std::to_string(expected) + got(count));
  }
}

}  // namespace

extern "C" {

FWP_API void fwp_layer_config_init(fwp_layer_config* config) {
  if (!config) return;
  *config = fwp_layer_config{};
  config->struct_size = sizeof(fwp_layer_config);
  config->d_model = 128;
  config->num_heads = 8;
  config->d_head = 16;
  config->feature_map = FWP_FEATURE_MAP_DPFP;
  config->dpfp_nu = 1;
  config->favor_features = 64;
  config->favor_redraw = 1;
  config->update_rule = FWP_UPDATE_DELTA;
  config->sum_normalize = 1;
  config->attn_normalize = 0;
  config->norm_eps = 1e-6f;
  config->scale_output = 1;
  config->use_bias = 0;
  config->init_std = 0.02f;
  config->algorithm = FWP_ALGORITHM_AUTO;
  config->chunk_size = 0;
  config->carry_state = 0;
}

FWP_API fwp_status fwp_layer_create(fwp_context* ctx, const fwp_layer_config* config, fwp_layer** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    check_not_null(ctx, "ctx");
    check_not_null(config, "config");
    const fwp::FastWeightLayerConfig internal = to_internal(*config);
    auto handle = std::make_unique<fwp_layer>();
    handle->context = ctx->impl;
    handle->impl = std::shared_ptr<fwp::FastWeightLayer<float>>(fwp::FastWeightLayer<float>::create(ctx->impl, internal));
    *out = handle.release();
  });
}

FWP_API void fwp_layer_destroy(fwp_layer* layer) { delete layer; }

FWP_API fwp_status fwp_layer_get_config(const fwp_layer* layer, fwp_layer_config* config) {
  return fwp::api::guard(__func__, [&] {
    const auto& l = impl(layer);
    check_not_null(config, "config");
    fwp::api::write_config(config, fwp::api::layer_config_to_public(l.config()), "config");
  });
}

FWP_API fwp_status fwp_layer_feature_dim(const fwp_layer* layer, int64_t* d_dot) {
  return fwp::api::guard(__func__, [&] {
    const auto& l = impl(layer);
    check_not_null(d_dot, "d_dot");
    *d_dot = l.d_dot();
  });
}

FWP_API fwp_status fwp_layer_set_training(fwp_layer* layer, int training) {
  return fwp::api::guard(__func__, [&] {
    auto& l = impl(layer);
    check_flag(training, "training");
    l.set_training(training != 0);
  });
}

FWP_API fwp_status fwp_layer_forward(fwp_layer* layer, const float* x, int64_t batch, int64_t seq_len,
                                     float* y) {
  return fwp::api::guard(__func__, [&] {
    auto& l = impl(layer);
    check_not_null(x, "x");
    check_not_null(y, "y");
    l.forward(x, batch, seq_len, y);
  });
}

FWP_API fwp_status fwp_layer_backward(fwp_layer* layer, const float* dy, int64_t batch, int64_t seq_len,
                                      float* dx) {
  return fwp::api::guard(__func__, [&] {
    auto& l = impl(layer);
    check_not_null(dy, "dy");
    l.backward(dy, batch, seq_len, dx);
  });
}

FWP_API fwp_status fwp_layer_zero_grad(fwp_layer* layer) {
  return fwp::api::guard(__func__, [&] { impl(layer).zero_grad(); });
}

FWP_API fwp_status fwp_layer_num_params(const fwp_layer* layer, int64_t* count) {
  return fwp::api::guard(__func__, [&] {
    const auto& l = impl(layer);
    check_not_null(count, "count");
    *count = l.params().size();
  });
}

FWP_API fwp_status fwp_layer_param_info(const fwp_layer* layer, int64_t index, fwp_param_info* info) {
  return fwp::api::guard(__func__, [&] { fwp::api::param_info(impl(layer).params(), index, info); });
}

FWP_API fwp_status fwp_layer_param_index(const fwp_layer* layer, const char* name, int64_t* index) {
  return fwp::api::guard(__func__, [&] {
    const auto& l = impl(layer);
    check_not_null(index, "index");
    *index = fwp::api::param_index(l.params(), name);
  });
}

FWP_API fwp_status fwp_layer_get_param(const fwp_layer* layer, int64_t index, float* data, int64_t count) {
  return fwp::api::guard(__func__, [&] { fwp::api::get_param(impl(layer).params(), index, data, count); });
}

FWP_API fwp_status fwp_layer_set_param(fwp_layer* layer, int64_t index, const float* data, int64_t count) {
  return fwp::api::guard(__func__, [&] { fwp::api::set_param(impl(layer).params(), index, data, count); });
}

FWP_API fwp_status fwp_layer_get_grad(const fwp_layer* layer, int64_t index, float* data, int64_t count) {
  return fwp::api::guard(__func__, [&] { fwp::api::get_grad(impl(layer).params(), index, data, count); });
}

FWP_API fwp_status fwp_layer_state_size(const fwp_layer* layer, int64_t batch, int64_t* w_count,
                                        int64_t* z_count) {
  return fwp::api::guard(__func__, [&] {
    const auto& l = impl(layer);
    require_state(l);
    const int64_t nw = l.state_w_count(batch), nz = l.state_z_count(batch);
    if (w_count) *w_count = nw;
    if (z_count) *z_count = nz;
  });
}

FWP_API fwp_status fwp_layer_set_state(fwp_layer* layer, int64_t batch, const float* w, int64_t w_count,
                                       const float* z, int64_t z_count) {
  return fwp::api::guard(__func__, [&] {
    auto& l = impl(layer);
    require_state(l);
    check_count(w, w_count, l.state_w_count(batch), "w_count", "batch * num_heads * d_head * d_dot");
    check_count(z, z_count, l.state_z_count(batch), "z_count", "batch * num_heads * d_dot");
    check_finite(w, w_count, "w");
    check_finite(z, z_count, "z");
    l.set_state(batch, w, z);
  });
}

FWP_API fwp_status fwp_layer_get_state(const fwp_layer* layer, int64_t* batch, float* w, int64_t w_count,
                                       float* z, int64_t z_count) {
  return fwp::api::guard(__func__, [&] {
    const auto& l = impl(layer);
    require_state(l);
    check_not_null(batch, "batch");
    const int64_t b = l.state_batch();
    check_count(w, w_count, b == 0 ? 0 : l.state_w_count(b), "w_count",
                "state batch * num_heads * d_head * d_dot");
    check_count(z, z_count, b == 0 ? 0 : l.state_z_count(b), "z_count", "state batch * num_heads * d_dot");
    l.get_state(w, z);
    *batch = b;
  });
}

FWP_API fwp_status fwp_layer_get_state_grad(const fwp_layer* layer, float* dw, int64_t w_count, float* dz,
                                            int64_t z_count) {
  return fwp::api::guard(__func__, [&] {
    const auto& l = impl(layer);
    require_state(l);
    const int64_t b = l.state_grad_batch();
    if (b == 0) throw Error(FWP_ERR_BAD_STATE, "there is no state gradient before the first backward");
    check_count(dw, w_count, l.state_w_count(b), "w_count", "batch * num_heads * d_head * d_dot");
    check_count(dz, z_count, l.state_z_count(b), "z_count", "batch * num_heads * d_dot");
    l.get_state_grad(dw, dz);
  });
}

FWP_API fwp_status fwp_layer_reset_state(fwp_layer* layer) {
  return fwp::api::guard(__func__, [&] { impl(layer).reset_state(); });
}

FWP_API fwp_status fwp_layer_step(fwp_layer* layer, const float* x, int64_t batch, float* y) {
  return fwp::api::guard(__func__, [&] {
    auto& l = impl(layer);
    check_not_null(x, "x");
    check_not_null(y, "y");
    l.step(x, batch, y);
  });
}

}  // extern "C"
