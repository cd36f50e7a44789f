// C API of the language model (fwp/lm.h): every entry point checks its
// arguments, runs inside guard() and forwards to fwp::LmModel / LmNetwork.
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "api/checks.h"
#include "api/guard.h"
#include "api/handles.h"
#include "api/layer_config.h"
#include "core/error.h"
#include "fwp/fwp.h"
#include "models/lm/lm_model.h"
#include "models/lm/sampler.h"

namespace {

using fwp::Error;
using fwp::api::check_flag;
using fwp::api::check_not_null;

std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }

fwp::LmModel& lm(fwp_model* model) {
  check_not_null(model, "model");
  auto* m = dynamic_cast<fwp::LmModel*>(model->impl.get());
  if (!m) throw Error(FWP_ERR_INVALID_ARGUMENT, "model is not a language model");
  return *m;
}

const fwp::LmModel& lm(const fwp_model* model) {
  check_not_null(model, "model");
  const auto* m = dynamic_cast<const fwp::LmModel*>(model->impl.get());
  if (!m) throw Error(FWP_ERR_INVALID_ARGUMENT, "model is not a language model");
  return *m;
}

// The layer config of every attention layer: enums (FWP_ERR_OUT_OF_RANGE) and
// flags as fwp_layer_create() checks them, sizes and consistency in
// LmConfig::validate().
fwp::FastWeightAttentionConfig attention_to_internal(const fwp_layer_config& user) {
  const fwp::FastWeightLayerConfig c =
      fwp::api::layer_config_to_internal(user, "config->attention", "config->attention.");
  if (c.carry_state)
    throw Error(FWP_ERR_INVALID_ARGUMENT,
                "config->attention.carry_state must be 0: a language model carries memory through an fwp_state "
                "(fwp_lm_forward's state argument)");
  return c;  // the attention part; carry_state belongs to fwp_layer only
}

fwp_layer_config attention_to_public(const fwp::FastWeightAttentionConfig& c) {
  fwp::FastWeightLayerConfig layer;
  static_cast<fwp::FastWeightAttentionConfig&>(layer) = c;
  return fwp::api::layer_config_to_public(layer);  // carry_state 0
}

fwp::LmConfig to_internal(const fwp_lm_config& user) {
  // The first release of this struct: no older layouts yet (config_history.h gets one when it grows,
  // and when fwp_layer_config, which it embeds, grows).
  const fwp_lm_config c = fwp::api::read_config(user, fwp_lm_config_init, "config");
  const int position = fwp::api::enum_value(c.position);
  if (position != FWP_LM_POSITION_SINUSOIDAL && position != FWP_LM_POSITION_NONE)
    throw Error(FWP_ERR_OUT_OF_RANGE, "config->position must be one of FWP_LM_POSITION_*" + got(position));
  check_flag(c.pre_norm, "config->pre_norm");
  check_flag(c.tie_embeddings, "config->tie_embeddings");
  if (c.num_cutoffs < 0 || c.num_cutoffs > FWP_LM_MAX_CUTOFFS)
    throw Error(FWP_ERR_INVALID_ARGUMENT, "config->num_cutoffs must be in [0, " +
                                              std::to_string(FWP_LM_MAX_CUTOFFS) + "]" + got(c.num_cutoffs));
  fwp::LmConfig out;
  out.vocab_size = c.vocab_size;
  out.num_layers = c.num_layers;
  out.attention = attention_to_internal(c.attention);
  out.d_ff = c.d_ff;
  out.dropout = static_cast<double>(c.dropout);
  out.attn_dropout = static_cast<double>(c.attn_dropout);
  out.position = position == FWP_LM_POSITION_NONE ? fwp::PositionEncoding::None : fwp::PositionEncoding::Sinusoidal;
  out.pre_norm = c.pre_norm != 0;
  out.tie_embeddings = c.tie_embeddings != 0;
  out.cutoffs.assign(c.cutoffs, c.cutoffs + c.num_cutoffs);
  out.div_val = c.div_val;
  out.init_std = static_cast<double>(c.init_std);
  out.seed = c.seed;
  out.validate("config->");
  return out;
}

static_assert(FWP_LM_MAX_CUTOFFS == fwp::kMaxLmCutoffs, "fwp_lm_config holds every cutoff a config may have");

fwp_lm_config to_public(const fwp::LmConfig& c) {
  fwp_lm_config out;
  fwp_lm_config_init(&out);
  out.vocab_size = c.vocab_size;
  out.num_layers = c.num_layers;
  out.attention = attention_to_public(c.attention);
  out.d_ff = c.d_ff;
  out.dropout = static_cast<float>(c.dropout);
  out.attn_dropout = static_cast<float>(c.attn_dropout);
  out.position = c.position == fwp::PositionEncoding::None ? FWP_LM_POSITION_NONE : FWP_LM_POSITION_SINUSOIDAL;
  out.pre_norm = c.pre_norm ? 1 : 0;
  out.tie_embeddings = c.tie_embeddings ? 1 : 0;
  out.num_cutoffs = static_cast<int64_t>(c.cutoffs.size());
  for (size_t i = 0; i < c.cutoffs.size(); ++i) out.cutoffs[i] = c.cutoffs[i];
  out.div_val = c.div_val;
  out.init_std = static_cast<float>(c.init_std);
  out.seed = c.seed;
  return out;
}

fwp::SamplerSettings sampler_to_internal(const fwp_sampler_config& user, const char* name) {
  const fwp_sampler_config c = fwp::api::read_config(user, fwp_sampler_config_init, name);
  fwp::SamplerSettings s;
  s.temperature = static_cast<double>(c.temperature);
  s.top_k = c.top_k;
  s.top_p = static_cast<double>(c.top_p);
  fwp::validate_sampler(s, (std::string(name) + "->").c_str());
  return s;
}

// The attention states of `state`, checked against the model (context, layers, batch).
std::vector<fwp::AttentionState<float>>& states_for(fwp_model* model, fwp_state* state, int64_t batch) {
  check_not_null(state, "state");
  if (state->context != model->context)
    throw Error(FWP_ERR_CONTEXT_MISMATCH, "state was made in another context than the model");
  lm(model).network().check_states(state->layers, batch);
  return state->layers;
}

int64_t state_batch(const fwp_state* state) { return state->layers.empty() ? 0 : state->layers.front().batch(); }

}  // namespace

extern "C" {

FWP_API void fwp_lm_config_init(fwp_lm_config* config) {
  if (!config) return;
  *config = fwp_lm_config{};
  config->struct_size = sizeof(fwp_lm_config);
  config->vocab_size = 0;
  config->num_layers = 16;
  fwp_layer_config_init(&config->attention);
  config->attention.d_model = 128;
  config->attention.num_heads = 8;
  config->attention.d_head = 16;
  config->attention.feature_map = FWP_FEATURE_MAP_ELU;  // the authors' attn_type 24: linear attention, delta rule
  config->attention.update_rule = FWP_UPDATE_DELTA;
  config->d_ff = 2048;
  config->dropout = 0.1f;
  config->attn_dropout = 0.0f;
  config->position = FWP_LM_POSITION_SINUSOIDAL;
  config->pre_norm = 0;
  config->tie_embeddings = 0;
  config->num_cutoffs = 0;
  config->div_val = 1;
  config->init_std = 0.02f;
  config->seed = 0;
}

FWP_API fwp_status fwp_lm_config_preset(const char* name, fwp_lm_config* config) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(name, "name");
    check_not_null(config, "config");
    fwp_lm_config c;
    fwp_lm_config_init(&c);
    const std::string n(name);
    if (n == "paper-small") {
      // init's defaults are the paper's small model.
    } else if (n == "paper-medium") {
      c.attention.d_model = 256;
      c.attention.d_head = 32;
    } else if (n == "cpu-small") {
      // A quarter of the layers and of the feed-forward width, wider heads:
      // ~0.8M multiply-adds per token in the blocks against ~9.4M for
      // paper-small; with a ~40k-word vocabulary the output layer (~5M) then
      // dominates, and two CPU cores train it for a few hundred thousand tokens in minutes.
      c.num_layers = 4;
      c.attention.num_heads = 4;
      c.attention.d_head = 32;
      c.d_ff = 512;
    } else {
      throw Error(FWP_ERR_INVALID_ARGUMENT,
                  "unknown preset '" + n + "' (known: 'paper-small', 'paper-medium', 'cpu-small')");
    }
    *config = c;
  });
}

FWP_API fwp_status fwp_lm_create(fwp_context* ctx, const fwp_lm_config* config, fwp_model** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    check_not_null(ctx, "ctx");
    check_not_null(config, "config");
    const fwp::LmConfig internal = to_internal(*config);
    auto handle = std::make_unique<fwp_model>();
    handle->context = ctx->impl;
    handle->impl = std::make_shared<fwp::LmModel>(ctx->impl, internal);
    *out = handle.release();
  });
}

FWP_API fwp_status fwp_lm_get_config(const fwp_model* model, fwp_lm_config* config) {
  return fwp::api::guard(__func__, [&] {
    const fwp::LmModel& m = lm(model);
    check_not_null(config, "config");
    fwp::api::write_config(config, to_public(m.config()), "config");
  });
}

FWP_API fwp_status fwp_lm_forward(fwp_model* model, const int32_t* inputs, const int32_t* targets, int64_t batch,
                                  int64_t length, fwp_state* state, double* mean_loss, float* token_losses) {
  return fwp::api::guard(__func__, [&] {
    fwp::LmModel& m = lm(model);
    check_not_null(inputs, "inputs");
    check_not_null(targets, "targets");
    check_not_null(mean_loss, "mean_loss");
    fwp::api::check_positive(batch, "batch");
    fwp::api::check_positive(length, "length");
    fwp::api::checked_mul(batch, length, "batch * length");
    auto* states = state ? &states_for(model, state, batch) : nullptr;
    if (state && state_batch(state) != batch)
      throw Error(FWP_ERR_SHAPE_MISMATCH,
                  "batch must equal the state's batch (" + std::to_string(state_batch(state)) + ")" + got(batch));
    *mean_loss = m.network().forward(inputs, targets, batch, length, states, token_losses);
  });
}

FWP_API fwp_status fwp_lm_evaluate(fwp_model* model, const int32_t* tokens, int64_t count, fwp_lm_eval_mode mode,
                                   int64_t length, double* total_nll, int64_t* scored) {
  return fwp::api::guard(__func__, [&] {
    fwp::LmModel& m = lm(model);
    check_not_null(tokens, "tokens");
    check_not_null(total_nll, "total_nll");
    check_not_null(scored, "scored");
    const int mode_value = fwp::api::enum_value(mode);
    if (mode_value < FWP_LM_EVAL_SEGMENTS || mode_value > FWP_LM_EVAL_CARRY)
      throw Error(FWP_ERR_OUT_OF_RANGE, "mode must be one of FWP_LM_EVAL_*" + got(mode_value));
    const fwp::LmEvalMode internal = mode_value == FWP_LM_EVAL_SLIDING ? fwp::LmEvalMode::Sliding
                                     : mode_value == FWP_LM_EVAL_CARRY ? fwp::LmEvalMode::Carry
                                                                       : fwp::LmEvalMode::Segments;
    const fwp::LmEvalResult r = m.network().evaluate(tokens, count, internal, length);
    *total_nll = r.total_nll;
    *scored = r.scored;
  });
}

FWP_API fwp_status fwp_lm_step(fwp_model* model, fwp_state* state, const int32_t* tokens, float* log_probs) {
  return fwp::api::guard(__func__, [&] {
    fwp::LmModel& m = lm(model);
    check_not_null(tokens, "tokens");
    auto& states = states_for(model, state, 0);
    m.network().step(tokens, state_batch(state), states, log_probs);
  });
}

FWP_API void fwp_sampler_config_init(fwp_sampler_config* config) {
  if (!config) return;
  *config = fwp_sampler_config{};
  config->struct_size = sizeof(fwp_sampler_config);
  config->temperature = 1.0f;
  config->top_k = 0;
  config->top_p = 1.0f;
  config->seed = 0;
}

FWP_API fwp_status fwp_lm_sample(const float* log_probs, int64_t vocab, const fwp_sampler_config* config,
                                 uint64_t* rng_state, int32_t* token) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(log_probs, "log_probs");
    check_not_null(config, "config");
    check_not_null(rng_state, "rng_state");
    check_not_null(token, "token");
    const fwp::SamplerSettings s = sampler_to_internal(*config, "config");
    *token = fwp::sample_token(log_probs, vocab, s, rng_state);
  });
}

FWP_API fwp_status fwp_lm_generate(fwp_model* model, fwp_state* state, const int32_t* prompt,
                                   int64_t prompt_length, int64_t max_new_tokens, const fwp_sampler_config* sampler,
                                   const int32_t* stop_tokens, int64_t num_stop, int32_t* out, int64_t capacity,
                                   int64_t* generated) {
  return fwp::api::guard(__func__, [&] {
    fwp::LmModel& m = lm(model);
    check_not_null(generated, "generated");
    *generated = 0;
    check_not_null(prompt, "prompt");
    check_not_null(sampler, "sampler");
    check_not_null(out, "out");
    fwp::api::check_positive(prompt_length, "prompt_length");
    if (max_new_tokens < 0)
      throw Error(FWP_ERR_INVALID_ARGUMENT, "max_new_tokens must be >= 0" + got(max_new_tokens));
    if (capacity < max_new_tokens)
      throw Error(FWP_ERR_INVALID_ARGUMENT, "capacity must be >= max_new_tokens (" + std::to_string(max_new_tokens) +
                                                ")" + got(capacity));
    if (num_stop < 0) throw Error(FWP_ERR_INVALID_ARGUMENT, "num_stop must be >= 0" + got(num_stop));
    if (num_stop > 0) check_not_null(stop_tokens, "stop_tokens");
    fwp::LmNetwork<float>& net = m.network();
    net.check_ids(prompt, prompt_length, "prompt", false);
    if (num_stop > 0) net.check_ids(stop_tokens, num_stop, "stop_tokens", false);
    const fwp::SamplerSettings s = sampler_to_internal(*sampler, "sampler");
    auto& states = states_for(model, state, 0);
    if (state_batch(state) != 1)
      throw Error(FWP_ERR_SHAPE_MISMATCH, "fwp_lm_generate needs a state of batch 1" + got(state_batch(state)));

    // The prompt but its last token in one forward where the layers can
    // (fast weights; softmax caches only when empty), token by token otherwise.
    const int64_t V = net.config().vocab_size;
    std::vector<float> log_probs(static_cast<size_t>(V));
    if (prompt_length > 1) {
      if (!net.config().attention.softmax || states.front().length() == 0) {
        net.prefill(prompt, 1, prompt_length - 1, states);
      } else {
        for (int64_t i = 0; i + 1 < prompt_length; ++i) net.step(prompt + i, 1, states, nullptr);
      }
    }
    net.step(prompt + prompt_length - 1, 1, states, log_probs.data());
    uint64_t rng = fwp::api::read_config(*sampler, fwp_sampler_config_init, "sampler").seed;
    for (int64_t i = 0; i < max_new_tokens; ++i) {
      const int32_t token = fwp::sample_token(log_probs.data(), V, s, &rng);
      bool stop = false;
      for (int64_t j = 0; j < num_stop; ++j) stop = stop || stop_tokens[j] == token;
      if (stop) break;
      out[i] = token;
      *generated = i + 1;
      // Every generated token is fed, so the state has consumed all of them;
      // the last needs no prediction.
      const bool last = i + 1 == max_new_tokens;
      net.step(&token, 1, states, last ? nullptr : log_probs.data());
    }
  });
}

}  // extern "C"
