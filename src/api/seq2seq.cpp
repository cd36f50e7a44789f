// C API of the translation model (fwp/seq2seq.h): every entry point checks
// its arguments, runs inside guard() and forwards to fwp::Seq2SeqModel.
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "api/checks.h"
#include "api/guard.h"
#include "api/handles.h"
#include "api/layer_config.h"
#include "core/error.h"
#include "fwp/fwp.h"
#include "models/seq2seq/seq2seq_model.h"

namespace {

using fwp::Error;
using fwp::api::check_flag;
using fwp::api::check_not_null;

std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }

fwp::Seq2SeqModel& seq2seq(fwp_model* model) {
  check_not_null(model, "model");
  auto* m = dynamic_cast<fwp::Seq2SeqModel*>(model->impl.get());
  if (!m) throw Error(FWP_ERR_INVALID_ARGUMENT, "model is not a translation (seq2seq) model");
  return *m;
}

const fwp::Seq2SeqModel& seq2seq(const fwp_model* model) {
  check_not_null(model, "model");
  const auto* m = dynamic_cast<const fwp::Seq2SeqModel*>(model->impl.get());
  if (!m) throw Error(FWP_ERR_INVALID_ARGUMENT, "model is not a translation (seq2seq) model");
  return *m;
}

// A layer config as fwp_layer_create() reads it (enums, flags), without carry_state: the model's
// decoding state lives in fwp_seq2seq_translate().
fwp::FastWeightLayerConfig layer_part(const fwp_layer_config& user, const std::string& field) {
  const fwp::FastWeightLayerConfig c = fwp::api::layer_config_to_internal(user, field.c_str(), field + ".");
  if (c.carry_state)
    throw Error(FWP_ERR_INVALID_ARGUMENT,
                field + ".carry_state must be 0: a translation model keeps no state between calls");
  return c;
}

// Encoder self- and cross-attention: the fields a non-causal attention has; the causal-only ones
// must keep their defaults rather than be ignored.
fwp::NonCausalAttentionConfig noncausal_to_internal(const fwp_layer_config& user, const std::string& field) {
  const fwp::FastWeightLayerConfig c = layer_part(user, field);
  if (c.update_rule != fwp::UpdateRule::Sum && !c.softmax)
    throw Error(FWP_ERR_INVALID_ARGUMENT,
                field + ".update_rule must be FWP_UPDATE_SUM: a non-causal attention sums over the whole source "
                        "(the delta rule is for the decoder's self-attention)");
  if (c.algorithm != fwp::Algorithm::Auto)
    throw Error(FWP_ERR_INVALID_ARGUMENT, field + ".algorithm must be FWP_ALGORITHM_AUTO for a non-causal attention");
  if (c.chunk_size != 0)
    throw Error(FWP_ERR_INVALID_ARGUMENT, field + ".chunk_size must be 0 for a non-causal attention" + got(c.chunk_size));
  fwp::NonCausalAttentionConfig n;
  n.d_model = c.d_model;
  n.num_heads = c.num_heads;
  n.d_head = c.d_head;
  n.softmax = c.softmax;
  n.feature_map = c.feature_map;
  n.dpfp_nu = c.dpfp_nu;
  n.favor_features = c.favor_features;
  n.sum_normalize = c.sum_normalize;
  n.attn_normalize = c.attn_normalize;
  n.norm_eps = c.norm_eps;
  n.scale_output = c.scale_output;
  n.use_bias = c.use_bias;
  n.init_std = c.init_std;
  return n;
}

fwp_layer_config noncausal_to_public(const fwp::NonCausalAttentionConfig& n, bool favor_redraw) {
  fwp::FastWeightLayerConfig c;
  c.d_model = n.d_model;
  c.num_heads = n.num_heads;
  c.d_head = n.d_head;
  c.softmax = n.softmax;
  c.feature_map = n.feature_map;
  c.dpfp_nu = n.dpfp_nu;
  c.favor_features = n.favor_features;
  c.favor_redraw = favor_redraw;
  c.update_rule = fwp::UpdateRule::Sum;
  c.sum_normalize = n.sum_normalize;
  c.attn_normalize = n.attn_normalize;
  c.norm_eps = n.norm_eps;
  c.scale_output = n.scale_output;
  c.use_bias = n.use_bias;
  c.init_std = n.init_std;
  c.algorithm = fwp::Algorithm::Auto;
  c.chunk_size = 0;
  return fwp::api::layer_config_to_public(c);
}

fwp_layer_config causal_to_public(const fwp::FastWeightAttentionConfig& a) {
  fwp::FastWeightLayerConfig layer;
  static_cast<fwp::FastWeightAttentionConfig&>(layer) = a;
  return fwp::api::layer_config_to_public(layer);  // carry_state 0
}

bool is_favor(const fwp_layer_config& c) { return c.feature_map == FWP_FEATURE_MAP_FAVOR; }

fwp::Seq2SeqConfig to_internal(const fwp_seq2seq_config& user) {
  // The first release of this struct: no older layouts yet.
  const fwp_seq2seq_config c = fwp::api::read_config(user, fwp_seq2seq_config_init, "config");
  const int position = fwp::api::enum_value(c.position);
  if (position != FWP_LM_POSITION_SINUSOIDAL && position != FWP_LM_POSITION_NONE)
    throw Error(FWP_ERR_OUT_OF_RANGE, "config->position must be one of FWP_LM_POSITION_*" + got(position));
  check_flag(c.pre_norm, "config->pre_norm");
  check_flag(c.tie_embeddings, "config->tie_embeddings");
  fwp::Seq2SeqConfig out;
  out.vocab_size = c.vocab_size;
  out.pad_id = c.pad_id;
  out.bos_id = c.bos_id;
  out.eos_id = c.eos_id;
  out.encoder_layers = c.encoder_layers;
  out.decoder_layers = c.decoder_layers;
  out.d_ff = c.d_ff;
  out.dropout = static_cast<double>(c.dropout);
  out.label_smoothing = static_cast<double>(c.label_smoothing);
  out.tie_embeddings = c.tie_embeddings != 0;
  out.position = position == FWP_LM_POSITION_NONE ? fwp::PositionEncoding::None : fwp::PositionEncoding::Sinusoidal;
  out.pre_norm = c.pre_norm != 0;
  out.init_std = static_cast<double>(c.init_std);
  out.seed = c.seed;
  out.encoder_attention = noncausal_to_internal(c.encoder_attention, "config->encoder_attention");
  out.cross_attention = noncausal_to_internal(c.cross_attention, "config->cross_attention");
  out.decoder_attention = layer_part(c.decoder_attention, "config->decoder_attention");
  // The encoder and cross attentions share one redraw switch (Seq2SeqConfig::favor_redraw): it is
  // the FAVOR+ ones' setting, and two FAVOR+ ones must agree.
  check_flag(c.encoder_attention.favor_redraw, "config->encoder_attention.favor_redraw");
  check_flag(c.cross_attention.favor_redraw, "config->cross_attention.favor_redraw");
  if (is_favor(c.encoder_attention) && is_favor(c.cross_attention) &&
      c.encoder_attention.favor_redraw != c.cross_attention.favor_redraw)
    throw Error(FWP_ERR_INVALID_ARGUMENT,
                "config->cross_attention.favor_redraw must equal config->encoder_attention.favor_redraw (" +
                    std::to_string(c.encoder_attention.favor_redraw) + "): the two share one setting" +
                    got(c.cross_attention.favor_redraw));
  out.favor_redraw = is_favor(c.encoder_attention) ? c.encoder_attention.favor_redraw != 0
                     : is_favor(c.cross_attention) ? c.cross_attention.favor_redraw != 0
                                                   : true;
  out.validate("config->");
  return out;
}

fwp_seq2seq_config to_public(const fwp::Seq2SeqConfig& c) {
  fwp_seq2seq_config out{};
  out.struct_size = sizeof(fwp_seq2seq_config);
  out.vocab_size = c.vocab_size;
  out.pad_id = c.pad_id;
  out.bos_id = c.bos_id;
  out.eos_id = c.eos_id;
  out.encoder_layers = c.encoder_layers;
  out.decoder_layers = c.decoder_layers;
  out.d_ff = c.d_ff;
  out.dropout = static_cast<float>(c.dropout);
  out.label_smoothing = static_cast<float>(c.label_smoothing);
  out.tie_embeddings = c.tie_embeddings ? 1 : 0;
  out.position = c.position == fwp::PositionEncoding::None ? FWP_LM_POSITION_NONE : FWP_LM_POSITION_SINUSOIDAL;
  out.pre_norm = c.pre_norm ? 1 : 0;
  out.init_std = static_cast<float>(c.init_std);
  out.seed = c.seed;
  out.encoder_attention = noncausal_to_public(c.encoder_attention, c.favor_redraw);
  out.decoder_attention = causal_to_public(c.decoder_attention);
  out.cross_attention = noncausal_to_public(c.cross_attention, c.favor_redraw);
  return out;
}

// Ids of a host array, named as the caller knows them ("batch->source[7]").
void check_ids(const int32_t* ids, int64_t count, int64_t vocab, const char* name) {
  for (int64_t i = 0; i < count; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab)
      throw Error(FWP_ERR_OUT_OF_RANGE, std::string(name) + "[" + std::to_string(i) + "] must be in [0, vocab_size = " +
                                            std::to_string(vocab) + ")" + got(ids[i]));
  }
}

void check_lengths(const int32_t* lengths, int64_t batch, int64_t max_length, const char* name, const char* max_name) {
  for (int64_t b = 0; b < batch; ++b) {
    if (lengths[b] < 1 || lengths[b] > max_length)
      throw Error(FWP_ERR_INVALID_ARGUMENT, std::string(name) + "[" + std::to_string(b) + "] must be in [1, " + max_name +
                                                " = " + std::to_string(max_length) + "]" + got(lengths[b]));
  }
}

// Every check of the batch in the header's words (the network checks again, naming its internal
// arrays: src, tgt_in, ...), so a message names what the caller passed.
fwp::Seq2SeqBatch batch_to_internal(const fwp_seq2seq_batch* batch, const fwp::Seq2SeqConfig& config) {
  check_not_null(batch, "batch");
  check_not_null(batch->source, "batch->source");
  check_not_null(batch->source_lengths, "batch->source_lengths");
  check_not_null(batch->target_input, "batch->target_input");
  check_not_null(batch->target_output, "batch->target_output");
  check_not_null(batch->target_lengths, "batch->target_lengths");
  fwp::api::check_positive(batch->batch, "batch->batch");
  fwp::api::check_positive(batch->source_length, "batch->source_length");
  fwp::api::check_positive(batch->target_length, "batch->target_length");
  const int64_t B = batch->batch, S = batch->source_length, T = batch->target_length;
  const int64_t Ns = fwp::api::checked_mul(B, S, "batch->batch * batch->source_length");
  const int64_t Nt = fwp::api::checked_mul(B, T, "batch->batch * batch->target_length");
  check_lengths(batch->source_lengths, B, S, "batch->source_lengths", "batch->source_length");
  check_lengths(batch->target_lengths, B, T, "batch->target_lengths", "batch->target_length");
  check_ids(batch->source, Ns, config.vocab_size, "batch->source");
  check_ids(batch->target_input, Nt, config.vocab_size, "batch->target_input");
  check_ids(batch->target_output, Nt, config.vocab_size, "batch->target_output");
  bool scored = false;
  for (int64_t b = 0; b < B && !scored; ++b) {
    for (int64_t t = 0; t < batch->target_lengths[b] && !scored; ++t)
      scored = batch->target_output[b * T + t] != config.pad_id;
  }
  if (!scored)
    throw Error(FWP_ERR_INVALID_ARGUMENT, "batch->target_output has no token to score (within target_lengths every "
                                          "target is pad_id = " + std::to_string(config.pad_id) + ")");
  fwp::Seq2SeqBatch b;
  b.src = batch->source;
  b.src_lengths = batch->source_lengths;
  b.tgt_in = batch->target_input;
  b.tgt_out = batch->target_output;
  b.tgt_lengths = batch->target_lengths;
  b.batch = B;
  b.src_length = S;
  b.tgt_length = T;
  return b;
}

void write_loss(const fwp::Seq2SeqLoss& l, fwp_seq2seq_loss* out) {
  out->loss_sum = l.loss_sum;
  out->nll_sum = l.nll_sum;
  out->tokens = l.tokens;
}

fwp::seq2seq::BeamSearchOptions search_to_internal(const fwp_seq2seq_search_config& user) {
  const fwp_seq2seq_search_config c = fwp::api::read_config(user, fwp_seq2seq_search_config_init, "search");
  const int stop = fwp::api::enum_value(c.stop);
  if (stop != FWP_BEAM_STOP_FINISHED && stop != FWP_BEAM_STOP_NO_BETTER)
    throw Error(FWP_ERR_OUT_OF_RANGE, "search->stop must be one of FWP_BEAM_STOP_*" + got(stop));
  fwp::seq2seq::BeamSearchOptions o;
  o.beam_size = c.beam_size;
  o.n_best = 1;
  o.length_penalty = static_cast<double>(c.length_penalty);
  o.max_len_a = static_cast<double>(c.max_len_a);
  o.max_len_b = static_cast<double>(c.max_len_b);
  o.min_length = c.min_length;
  o.stop = stop == FWP_BEAM_STOP_NO_BETTER ? fwp::seq2seq::StopRule::kNoBetterOpen
                                           : fwp::seq2seq::StopRule::kBeamFinished;
  return o;
}

}  // namespace

extern "C" {

FWP_API void fwp_seq2seq_config_init(fwp_seq2seq_config* config) {
  if (!config) return;
  *config = to_public(fwp::Seq2SeqConfig{});  // one home for the defaults: Seq2SeqConfig's
}

FWP_API fwp_status fwp_seq2seq_config_preset(const char* name, fwp_seq2seq_config* config) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(name, "name");
    check_not_null(config, "config");
    fwp::Seq2SeqConfig c;
    const std::string n(name);
    if (n == "paper-big") {
      // The defaults: fairseq's transformer_wmt_en_de_big, as the paper.
    } else if (n == "base") {
      c.set_sizes(512, 8, 64);
      c.d_ff = 2048;
      c.dropout = 0.1;
    } else if (n == "cpu-small") {
      c.encoder_layers = 3;
      c.decoder_layers = 3;
      c.set_sizes(256, 4, 64);
      c.d_ff = 1024;
      c.dropout = 0.1;
    } else {
      throw Error(FWP_ERR_INVALID_ARGUMENT, "unknown preset '" + n + "' (known: 'paper-big', 'base', 'cpu-small')");
    }
    *config = to_public(c);
  });
}

FWP_API fwp_status fwp_seq2seq_create(fwp_context* ctx, const fwp_seq2seq_config* config, fwp_model** out) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(out, "out");
    *out = nullptr;
    check_not_null(ctx, "ctx");
    check_not_null(config, "config");
    const fwp::Seq2SeqConfig internal = to_internal(*config);
    auto handle = std::make_unique<fwp_model>();
    handle->context = ctx->impl;
    handle->impl = std::make_shared<fwp::Seq2SeqModel>(ctx->impl, internal);
    *out = handle.release();
  });
}

FWP_API fwp_status fwp_seq2seq_get_config(const fwp_model* model, fwp_seq2seq_config* config) {
  return fwp::api::guard(__func__, [&] {
    const fwp::Seq2SeqModel& m = seq2seq(model);
    check_not_null(config, "config");
    fwp::api::write_config(config, to_public(m.config()), "config");
  });
}

FWP_API fwp_status fwp_seq2seq_forward(fwp_model* model, const fwp_seq2seq_batch* batch, fwp_seq2seq_loss* loss) {
  return fwp::api::guard(__func__, [&] {
    fwp::Seq2SeqModel& m = seq2seq(model);
    m.forget_forward();
    check_not_null(loss, "loss");
    write_loss(m.forward(batch_to_internal(batch, m.config())), loss);
  });
}

FWP_API fwp_status fwp_seq2seq_evaluate(fwp_model* model, const fwp_seq2seq_batch* batch, fwp_seq2seq_loss* loss) {
  return fwp::api::guard(__func__, [&] {
    fwp::Seq2SeqModel& m = seq2seq(model);
    m.forget_forward();
    check_not_null(loss, "loss");
    write_loss(m.network().evaluate(batch_to_internal(batch, m.config())), loss);
  });
}

FWP_API void fwp_seq2seq_search_config_init(fwp_seq2seq_search_config* config) {
  if (!config) return;
  *config = fwp_seq2seq_search_config{};
  config->struct_size = sizeof(fwp_seq2seq_search_config);
  config->beam_size = 4;
  config->length_penalty = 1.0f;
  config->max_len_a = 1.2f;
  config->max_len_b = 10.0f;
  config->min_length = 1;
  config->stop = FWP_BEAM_STOP_FINISHED;
}

FWP_API fwp_status fwp_seq2seq_translate(fwp_model* model, const int32_t* source, const int32_t* source_lengths,
                                         int64_t batch, int64_t source_length,
                                         const fwp_seq2seq_search_config* search, int32_t* output, int64_t capacity,
                                         int64_t* output_lengths, float* scores) {
  return fwp::api::guard(__func__, [&] {
    fwp::Seq2SeqModel& m = seq2seq(model);
    m.forget_forward();  // translating replaces the activations, also when refused
    check_not_null(source, "source");
    check_not_null(source_lengths, "source_lengths");
    check_not_null(search, "search");
    check_not_null(output, "output");
    check_not_null(output_lengths, "output_lengths");
    fwp::api::check_positive(batch, "batch");
    fwp::api::check_positive(source_length, "source_length");
    fwp::api::check_positive(capacity, "capacity");
    const int64_t n_source = fwp::api::checked_mul(batch, source_length, "batch * source_length");
    fwp::api::checked_mul(batch, capacity, "batch * capacity");
    fwp::seq2seq::BeamSearchOptions options = search_to_internal(*search);
    options.bos_id = m.config().bos_id;  // the search's special ids are the model's
    options.eos_id = m.config().eos_id;
    options.pad_id = m.config().pad_id;
    fwp::seq2seq::validate_search_options(options, m.config().vocab_size, "search->");
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t n = source_lengths[b];
      if (n < 1 || n > source_length)
        throw Error(FWP_ERR_INVALID_ARGUMENT, "source_lengths[" + std::to_string(b) + "] must be in [1, source_length = " +
                                                  std::to_string(source_length) + "]" + got(n));
      const int64_t limit = fwp::seq2seq::max_output_length(options, n);
      if (limit > capacity)
        throw Error(FWP_ERR_INVALID_ARGUMENT,
                    "capacity must be >= the length limit of every sentence: sentence " + std::to_string(b) +
                        " may get floor(max_len_a * " + std::to_string(n) + " + max_len_b) = " + std::to_string(limit) +
                        " tokens" + got(capacity));
    }
    check_ids(source, n_source, m.config().vocab_size, "source");
    const auto hyps = fwp::translate(m.network(), source, source_lengths, batch, source_length, options);
    for (int64_t b = 0; b < batch; ++b) {
      const auto& best = hyps[static_cast<size_t>(b)];
      int64_t length = 0;
      float score = -std::numeric_limits<float>::infinity();
      if (!best.empty()) {
        length = static_cast<int64_t>(best.front().tokens.size());
        for (int64_t i = 0; i < length; ++i) output[b * capacity + i] = best.front().tokens[static_cast<size_t>(i)];
        score = static_cast<float>(best.front().score);
      }
      output_lengths[b] = length;
      if (scores) scores[b] = score;
    }
  });
}

}  // extern "C"
