// C API of checkpoints: argument checks, then train/checkpoint.h.
#include <memory>
#include <string>

#include "api/guard.h"
#include "api/handles.h"
#include "core/error.h"
#include "data/data_source.h"
#include "fwp/fwp.h"
#include "models/model.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"

namespace {

using fwp::Error;
using fwp::api::check_not_null;

// The optimizer must be the one created for this model (FWP_ERR_CONTEXT_MISMATCH otherwise).
void check_pair(const fwp_model* model, const fwp_optimizer* opt) {
  if (!opt) return;
  if (opt->context != model->context) {
    throw Error(FWP_ERR_CONTEXT_MISMATCH, "opt and model were created from different contexts");
  }
  if (&opt->impl->params() != &model->impl->parameters()) {
    throw Error(FWP_ERR_CONTEXT_MISMATCH, "opt is not the optimizer of this model");
  }
}

// The state must come from the model's context; its layer specs are checked against the model
// by the checkpoint code (FWP_ERR_SHAPE_MISMATCH).
void check_state(const fwp_model* model, const fwp_state* state) {
  if (state && state->context != model->context) {
    throw Error(FWP_ERR_CONTEXT_MISMATCH, "state and model were created from different contexts");
  }
}

}  // namespace

extern "C" {

FWP_API fwp_status fwp_checkpoint_save(const char* path, const fwp_model* model, const fwp_optimizer* opt,
                                       const fwp_data* data, const char* user_metadata) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(path, "path");
    check_not_null(model, "model");
    check_pair(model, opt);
    fwp::save_checkpoint(path, *model->impl, opt ? opt->impl.get() : nullptr, data ? data->impl.get() : nullptr,
                         user_metadata);
  });
}

FWP_API fwp_status fwp_checkpoint_load(const char* path, fwp_model* model, fwp_optimizer* opt,
                                       fwp_data* data) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(path, "path");
    check_not_null(model, "model");
    check_pair(model, opt);
    fwp::load_checkpoint(path, *model->impl, opt ? opt->impl.get() : nullptr, data ? data->impl.get() : nullptr);
  });
}

FWP_API fwp_status fwp_checkpoint_save_with_state(const char* path, const fwp_model* model, const fwp_optimizer* opt,
                                                  const fwp_data* data, const fwp_state* state,
                                                  const char* user_metadata) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(path, "path");
    check_not_null(model, "model");
    check_pair(model, opt);
    check_state(model, state);
    fwp::save_checkpoint(path, *model->impl, opt ? opt->impl.get() : nullptr, data ? data->impl.get() : nullptr,
                         user_metadata, state ? &state->layers : nullptr);
  });
}

FWP_API fwp_status fwp_checkpoint_load_with_state(const char* path, fwp_model* model, fwp_optimizer* opt,
                                                  fwp_data* data, fwp_state* state) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(path, "path");
    check_not_null(model, "model");
    check_pair(model, opt);
    check_state(model, state);
    if (state && state->layers.size() != model->impl->attention_state_specs().size()) {
      throw Error(FWP_ERR_SHAPE_MISMATCH, "state was not made for this model");
    }
    fwp::load_checkpoint(path, *model->impl, opt ? opt->impl.get() : nullptr, data ? data->impl.get() : nullptr,
                         state ? &state->layers : nullptr);
  });
}

FWP_API fwp_status fwp_model_load(fwp_context* ctx, const char* path, fwp_model** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    check_not_null(ctx, "ctx");
    check_not_null(path, "path");
    auto handle = std::make_unique<fwp_model>();
    handle->context = ctx->impl;
    handle->impl = fwp::load_model(ctx->impl, path);  // the built-in registry of model kinds
    *out = handle.release();
  });
}

}  // extern "C"
