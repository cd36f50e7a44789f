// C API of run states (fwp/state.h): argument checks, then
// fwp::AttentionState<float> (one per attention layer) and the layer's
// *_with_state methods.
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "api/checks.h"
#include "api/guard.h"
#include "api/handles.h"
#include "core/error.h"
#include "fwp/fwp.h"
#include "models/model.h"
#include "nn/attention_state.h"
#include "nn/fast_weight_layer.h"

namespace {

using fwp::Error;
using fwp::api::check_finite;
using fwp::api::check_not_null;
using State = fwp::AttentionState<float>;

std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }

fwp_state& impl(fwp_state* state) {
  check_not_null(state, "state");
  return *state;
}

const fwp_state& impl(const fwp_state* state) {
  check_not_null(state, "state");
  return *state;
}

int64_t batch_of(const fwp_state& s) { return s.layers.front().batch(); }

// The state of attention layer `layer`; FWP_ERR_OUT_OF_RANGE names the bound.
const State& layer_state(const fwp_state& s, int64_t layer) {
  const int64_t n = static_cast<int64_t>(s.layers.size());
  if (layer < 0 || layer >= n)
    throw Error(FWP_ERR_OUT_OF_RANGE, "layer must be in [0, " + std::to_string(n) + ")" + got(layer));
  return s.layers[static_cast<size_t>(layer)];
}

State& layer_state(fwp_state& s, int64_t layer) {
  return const_cast<State&>(layer_state(static_cast<const fwp_state&>(s), layer));
}

void require_fast_weights(const State& st, int64_t layer) {
  if (st.is_softmax())
    throw Error(FWP_ERR_UNSUPPORTED, "layer " + std::to_string(layer) +
                                         " of the state is a softmax attention layer: its state is a key/value "
                                         "cache, it has no fast weights");
}

// A count argument that must equal `expected` when its array is given.
void check_count(const void* data, int64_t count, int64_t expected, const char* count_name, const char* what) {
  if (data && count != expected) {
    throw Error(FWP_ERR_SHAPE_MISMATCH, std::string(count_name) + " must equal " + what + " = " +
                                            std::to_string(expected) + got(count));
  }
}

// The one attention state of a state made for a layer.
State& single_layer(fwp_state& s) {
  if (s.layers.size() != 1) {
    throw Error(FWP_ERR_INVALID_ARGUMENT,
                "state holds " + std::to_string(s.layers.size()) +
                    " attention layers; a layer runs with a state of one layer (fwp_state_create_for_layer())");
  }
  return s.layers.front();
}

fwp::FastWeightLayer<float>& layer_impl(fwp_layer* layer) {
  check_not_null(layer, "layer");
  return *layer->impl;
}

}  // namespace

extern "C" {

FWP_API fwp_status fwp_state_create_for_layer(const fwp_layer* layer, int64_t batch, fwp_state** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    check_not_null(layer, "layer");
    fwp::api::check_positive(batch, "batch");
    auto handle = std::make_unique<fwp_state>();
    handle->context = layer->context;
    handle->owner = layer->impl;
    handle->layers.push_back(layer->impl->make_state(batch));
    *out = handle.release();
  });
}

FWP_API fwp_status fwp_state_create(const fwp_model* model, int64_t batch, fwp_state** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    check_not_null(model, "model");
    fwp::api::check_positive(batch, "batch");
    const std::vector<fwp::AttentionStateSpec> specs = model->impl->attention_state_specs();
    if (specs.empty()) {
      const std::string kind = model->impl->kind() == FWP_MODEL_RETRIEVAL ? "the retrieval model"
                                                                          : "this kind of model";
      throw Error(FWP_ERR_UNSUPPORTED,
                  kind + " carries no state between calls (every forward starts from zero), so it has no fwp_state");
    }
    auto handle = std::make_unique<fwp_state>();
    handle->context = model->context;
    handle->owner = model->impl;
    handle->layers.reserve(specs.size());
    for (const fwp::AttentionStateSpec& spec : specs)
      handle->layers.emplace_back(model->context->backend(), spec, batch);
    *out = handle.release();
  });
}

FWP_API void fwp_state_destroy(fwp_state* state) { delete state; }

FWP_API fwp_status fwp_state_batch(const fwp_state* state, int64_t* batch) {
  return fwp::api::guard(__func__, [&] {
    const fwp_state& s = impl(state);
    check_not_null(batch, "batch");
    *batch = batch_of(s);
  });
}

FWP_API fwp_status fwp_state_num_layers(const fwp_state* state, int64_t* count) {
  return fwp::api::guard(__func__, [&] {
    const fwp_state& s = impl(state);
    check_not_null(count, "count");
    *count = static_cast<int64_t>(s.layers.size());
  });
}

FWP_API fwp_status fwp_state_reset(fwp_state* state) {
  return fwp::api::guard(__func__, [&] {
    for (State& st : impl(state).layers) st.reset();
  });
}

FWP_API fwp_status fwp_state_copy(fwp_state* dst, const fwp_state* src) {
  return fwp::api::guard(__func__, [&] {
    fwp_state& d = impl(dst);
    check_not_null(src, "src");
    if (dst == src) return;
    const size_t n = src->layers.size();
    if (d.layers.size() != n) {
      throw Error(FWP_ERR_SHAPE_MISMATCH, "src holds " + std::to_string(n) + " attention layers where dst holds " +
                                              std::to_string(d.layers.size()));
    }
    if (batch_of(*src) != batch_of(d)) {
      throw Error(FWP_ERR_SHAPE_MISMATCH, "src has batch " + std::to_string(batch_of(*src)) +
                                              " where dst has batch " + std::to_string(batch_of(d)) +
                                              " (fwp_state_reorder() changes a batch)");
    }
    for (size_t i = 0; i < n; ++i) {
      src->layers[i].check_spec(d.layers[i].spec(), "layer " + std::to_string(i) + " of src");
      if (src->layers[i].backend() != d.layers[i].backend())
        throw Error(FWP_ERR_INVALID_ARGUMENT, "src and dst live on different devices");
    }
    // Copy into new states first, so that a failed allocation leaves dst unchanged.
    std::vector<State> copies;
    copies.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      copies.emplace_back(d.layers[i].backend(), d.layers[i].spec());
      copies.back().copy_from(src->layers[i]);
    }
    d.layers = std::move(copies);
  });
}

FWP_API fwp_status fwp_state_reorder(fwp_state* state, const int64_t* rows, int64_t count) {
  return fwp::api::guard(__func__, [&] {
    fwp_state& s = impl(state);
    check_not_null(rows, "rows");
    fwp::api::check_positive(count, "count");
    const int64_t batch = batch_of(s);
    for (int64_t r = 0; r < count; ++r) {
      if (rows[r] < 0 || rows[r] >= batch) {
        throw Error(FWP_ERR_OUT_OF_RANGE, "rows[" + std::to_string(r) + "] must be in [0, " +
                                              std::to_string(batch) + ") (the state's batch)" + got(rows[r]));
      }
    }
    // Reorder copies, then swap them in: all layers change or none.
    std::vector<State> reordered;
    reordered.reserve(s.layers.size());
    for (const State& st : s.layers) {
      reordered.emplace_back(st.backend(), st.spec());
      reordered.back().copy_from(st);
      reordered.back().reorder(rows, count);
    }
    s.layers = std::move(reordered);
  });
}

FWP_API fwp_status fwp_state_size(const fwp_state* state, int64_t layer, int64_t* w_count, int64_t* z_count) {
  return fwp::api::guard(__func__, [&] {
    const fwp_state& s = impl(state);
    const State& st = layer_state(s, layer);
    require_fast_weights(st, layer);
    const int64_t nw = st.w_count(st.batch()), nz = st.z_count(st.batch());
    if (w_count) *w_count = nw;
    if (z_count) *z_count = nz;
  });
}

FWP_API fwp_status fwp_state_get(const fwp_state* state, int64_t layer, float* w, int64_t w_count, float* z,
                                 int64_t z_count) {
  return fwp::api::guard(__func__, [&] {
    const fwp_state& s = impl(state);
    const State& st = layer_state(s, layer);
    require_fast_weights(st, layer);
    check_count(w, w_count, st.w_count(st.batch()), "w_count", "batch * num_heads * d_head * d_dot");
    check_count(z, z_count, st.z_count(st.batch()), "z_count", "batch * num_heads * d_dot");
    st.get_host(w, z);
  });
}

FWP_API fwp_status fwp_state_set(fwp_state* state, int64_t layer, const float* w, int64_t w_count, const float* z,
                                 int64_t z_count) {
  return fwp::api::guard(__func__, [&] {
    fwp_state& s = impl(state);
    State& st = layer_state(s, layer);
    require_fast_weights(st, layer);
    check_count(w, w_count, st.w_count(st.batch()), "w_count", "batch * num_heads * d_head * d_dot");
    check_count(z, z_count, st.z_count(st.batch()), "z_count", "batch * num_heads * d_dot");
    check_finite(w, w_count, "w");
    check_finite(z, z_count, "z");
    st.set_host(st.batch(), w, z);
  });
}

FWP_API fwp_status fwp_state_cache_length(const fwp_state* state, int64_t layer, int64_t* length) {
  return fwp::api::guard(__func__, [&] {
    const fwp_state& s = impl(state);
    const State& st = layer_state(s, layer);
    check_not_null(length, "length");
    if (!st.is_softmax())
      throw Error(FWP_ERR_UNSUPPORTED, "layer " + std::to_string(layer) +
                                           " of the state is a fast-weight layer: it has no key/value cache");
    *length = st.length();
  });
}

FWP_API fwp_status fwp_layer_forward_with_state(fwp_layer* layer, fwp_state* state, const float* x,
                                                int64_t batch, int64_t seq_len, float* y) {
  return fwp::api::guard(__func__, [&] {
    auto& l = layer_impl(layer);
    State& st = single_layer(impl(state));
    check_not_null(x, "x");
    check_not_null(y, "y");
    l.forward_with_state(st, x, batch, seq_len, y);
  });
}

FWP_API fwp_status fwp_layer_step_with_state(fwp_layer* layer, fwp_state* state, const float* x, int64_t batch,
                                             float* y) {
  return fwp::api::guard(__func__, [&] {
    auto& l = layer_impl(layer);
    State& st = single_layer(impl(state));
    check_not_null(x, "x");
    check_not_null(y, "y");
    l.step_with_state(st, x, batch, y);
  });
}

}  // extern "C"
