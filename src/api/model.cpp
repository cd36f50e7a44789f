// C API of models (fwp_model_*) and of the retrieval model's forward: every
// entry point checks its arguments, runs inside guard() and forwards to
// fwp::Model / fwp::RetrievalModel.
#include <memory>
#include <string>

#include "api/checks.h"
#include "api/guard.h"
#include "api/handles.h"
#include "api/params.h"
#include "core/error.h"
#include "fwp/fwp.h"
#include "models/model.h"
#include "models/retrieval/retrieval_model.h"

namespace {

using fwp::Error;
using fwp::api::check_flag;
using fwp::api::check_not_null;

std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }

fwp::Model& impl(fwp_model* model) {
  check_not_null(model, "model");
  return *model->impl;
}

const fwp::Model& impl(const fwp_model* model) {
  check_not_null(model, "model");
  return *model->impl;
}

fwp::RetrievalModel& retrieval(fwp_model* model) {
  auto* r = dynamic_cast<fwp::RetrievalModel*>(&impl(model));
  if (!r) throw Error(FWP_ERR_INVALID_ARGUMENT, "model is not a retrieval model");
  return *r;
}

const fwp::RetrievalModel& retrieval(const fwp_model* model) {
  const auto* r = dynamic_cast<const fwp::RetrievalModel*>(&impl(model));
  if (!r) throw Error(FWP_ERR_INVALID_ARGUMENT, "model is not a retrieval model");
  return *r;
}

// Enums (FWP_ERR_OUT_OF_RANGE) and flags here; sizes and consistency in RetrievalConfig::validate().
fwp::RetrievalConfig to_internal(const fwp_retrieval_config& user) {
  const fwp_retrieval_config c = fwp::api::read_config(user, fwp_retrieval_config_init, "config");
  const int feature_map = fwp::api::enum_value(c.feature_map);
  if (feature_map < FWP_FEATURE_MAP_ELU || feature_map > FWP_FEATURE_MAP_SOFTMAX)
    throw Error(FWP_ERR_OUT_OF_RANGE, "config->feature_map must be one of FWP_FEATURE_MAP_*" + got(feature_map));
  const int rule = fwp::api::enum_value(c.update_rule);
  if (rule < FWP_UPDATE_SUM || rule > FWP_UPDATE_DELTA)
    throw Error(FWP_ERR_OUT_OF_RANGE, "config->update_rule must be FWP_UPDATE_SUM or FWP_UPDATE_DELTA" + got(rule));
  check_flag(c.favor_redraw, "config->favor_redraw");
  check_flag(c.sum_normalize, "config->sum_normalize");
  check_flag(c.attn_normalize, "config->attn_normalize");

  fwp::RetrievalConfig out;
  out.setting = c.setting;
  out.num_keys = c.num_keys;
  out.d_head = c.d_head;
  out.softmax = feature_map == FWP_FEATURE_MAP_SOFTMAX;
  out.feature_map = fwp::api::internal_feature_map(feature_map);
  out.dpfp_nu = c.dpfp_nu;
  out.favor_features = c.favor_features;
  out.favor_redraw = c.favor_redraw != 0;
  out.update_rule = fwp::api::internal_update_rule(rule);
  out.sum_normalize = c.sum_normalize != 0;
  out.attn_normalize = c.attn_normalize != 0;
  out.norm_eps = static_cast<double>(c.norm_eps);
  out.validate("config->");
  return out;
}

fwp_retrieval_config to_public(const fwp::RetrievalConfig& c) {
  fwp_retrieval_config out;
  fwp_retrieval_config_init(&out);
  out.setting = c.setting;
  out.num_keys = c.num_keys;
  out.d_head = c.d_head;
  out.feature_map = fwp::api::public_feature_map(c.softmax, c.feature_map);
  out.dpfp_nu = c.dpfp_nu;
  out.favor_features = c.favor_features;
  out.favor_redraw = c.favor_redraw ? 1 : 0;
  out.update_rule = fwp::api::public_update_rule(c.update_rule);
  out.sum_normalize = c.sum_normalize ? 1 : 0;
  out.attn_normalize = c.attn_normalize ? 1 : 0;
  out.norm_eps = static_cast<float>(c.norm_eps);
  return out;
}

}  // namespace

extern "C" {

FWP_API void fwp_retrieval_config_init(fwp_retrieval_config* config) {
  if (!config) return;
  *config = fwp_retrieval_config{};
  config->struct_size = sizeof(fwp_retrieval_config);
  config->setting = 1;
  config->num_keys = 20;
  config->d_head = 64;
  config->feature_map = FWP_FEATURE_MAP_DPFP;
  config->dpfp_nu = 1;
  config->favor_features = 64;
  config->favor_redraw = 1;
  config->update_rule = FWP_UPDATE_DELTA;
  config->sum_normalize = 1;
  config->attn_normalize = 0;
  config->norm_eps = 1e-6f;
}

FWP_API fwp_status fwp_model_create_retrieval(fwp_context* ctx, const fwp_retrieval_config* config,
                                              fwp_model** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    check_not_null(ctx, "ctx");
    check_not_null(config, "config");
    const fwp::RetrievalConfig internal = to_internal(*config);
    auto handle = std::make_unique<fwp_model>();
    handle->context = ctx->impl;
    handle->impl = std::make_shared<fwp::RetrievalModel>(ctx->impl, internal);
    *out = handle.release();
  });
}

FWP_API void fwp_model_destroy(fwp_model* model) { delete model; }

FWP_API fwp_status fwp_model_get_kind(const fwp_model* model, fwp_model_kind* kind) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Model& m = impl(model);
    check_not_null(kind, "kind");
    *kind = m.kind();
  });
}

FWP_API fwp_status fwp_model_get_retrieval_config(const fwp_model* model, fwp_retrieval_config* config) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(model, "model");
    check_not_null(config, "config");
    fwp::api::write_config(config, to_public(retrieval(model).config()), "config");
  });
}

FWP_API fwp_status fwp_model_set_training(fwp_model* model, int training) {
  return fwp::api::guard(__func__, [&] {
    fwp::Model& m = impl(model);
    check_flag(training, "training");
    m.set_training(training != 0);
  });
}

FWP_API fwp_status fwp_model_num_params(const fwp_model* model, int64_t* count) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Model& m = impl(model);
    check_not_null(count, "count");
    *count = m.parameters().size();
  });
}

FWP_API fwp_status fwp_model_param_info(const fwp_model* model, int64_t index, fwp_param_info* info) {
  return fwp::api::guard(__func__, [&] { fwp::api::param_info(impl(model).parameters(), index, info); });
}

FWP_API fwp_status fwp_model_param_index(const fwp_model* model, const char* name, int64_t* index) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Model& m = impl(model);
    check_not_null(index, "index");
    *index = fwp::api::param_index(m.parameters(), name);
  });
}

FWP_API fwp_status fwp_model_get_param(const fwp_model* model, int64_t index, float* data, int64_t count) {
  return fwp::api::guard(__func__, [&] { fwp::api::get_param(impl(model).parameters(), index, data, count); });
}

FWP_API fwp_status fwp_model_set_param(fwp_model* model, int64_t index, const float* data, int64_t count) {
  return fwp::api::guard(__func__, [&] { fwp::api::set_param(impl(model).parameters(), index, data, count); });
}

FWP_API fwp_status fwp_model_get_grad(const fwp_model* model, int64_t index, float* data, int64_t count) {
  return fwp::api::guard(__func__, [&] { fwp::api::get_grad(impl(model).parameters(), index, data, count); });
}

FWP_API fwp_status fwp_model_zero_grad(fwp_model* model) {
  return fwp::api::guard(__func__, [&] { impl(model).parameters().zero_grad(); });
}

FWP_API fwp_status fwp_retrieval_forward(fwp_model* model, const fwp_retrieval_batch* batch, float* loss,
                                         float* outputs, int64_t outputs_count) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(model, "model");
    check_not_null(batch, "batch");
    check_not_null(loss, "loss");
    fwp::RetrievalModel& m = retrieval(model);
    fwp::RetrievalBatch b;
    b.batch_size = batch->batch_size;
    b.seq_len = batch->seq_len;
    b.num_queries = batch->num_queries;
    b.keys = batch->keys;
    b.values = batch->values;
    b.queries = batch->queries;
    b.targets = batch->targets;
    m.network().validate_batch(b);
    if (outputs) {
      const int64_t expected =
          fwp::api::checked_mul(b.batch_size, b.num_queries, m.config().num_keys, "batch_size * num_queries * S");
      if (outputs_count != expected) {
        throw Error(FWP_ERR_SHAPE_MISMATCH, "outputs_count must be batch_size * num_queries * S = " +
                                                std::to_string(expected) + got(outputs_count));
      }
    }
    *loss = static_cast<float>(m.network().forward(b, outputs));
  });
}

FWP_API fwp_status fwp_model_backward(fwp_model* model) {
  return fwp::api::guard(__func__, [&] { impl(model).backward(); });
}

}  // extern "C"
