/**
 * \file seq2seq.h
 * \brief The encoder-decoder translation model of the paper (section 6.2): training forward over
 *        padded batches with label-smoothed cross-entropy, and translation by beam search or greedy.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_SEQ2SEQ_H
#define FWP_SEQ2SEQ_H

#include "fwp/layer.h"
#include "fwp/lm.h"
#include "fwp/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup seq2seq The translation model (paper section 6.2)
 *
 * fairseq's Transformer encoder-decoder, the model the paper trains on WMT14
 * En-De, with the attention of each of its three kinds chosen separately:
 *
 *     encoder:  e_0 = dropout(sqrt(d) * E[x] + pe), then encoder_layers x
 *               [self-attention (non-causal, over the whole source) + FFN]
 *     decoder:  h_0 = dropout(sqrt(d) * E[y_in] + pe), then decoder_layers x
 *               [causal self-attention + cross-attention over the encoder output + FFN]
 *     logits  = h E^T (tied: one table for source, target and output; no bias)
 *     loss    = label-smoothed cross-entropy over the target tokens that are not padding
 *
 * Every sublayer is residual with post-LayerNorm (the paper's fairseq
 * models) or pre-LayerNorm (option), the FFN is W2 dropout(relu(W1 x + b1)) + b2.
 * Source and target share one vocabulary (the paper's joint BPE), with the
 * pad, bos and eos ids of the data (fwp_pair_special_ids()).
 *
 * **Attention.** Each kind is an ::fwp_layer_config. Encoder self-attention
 * and cross-attention are non-causal: the linear kinds sum phi(k) v^T over
 * every (non-padded) source position and read it with phi(q); softmax is
 * ordinary attention with the padded keys masked. For these two only
 * feature_map (SOFTMAX, ELU, FAVOR, DPFP), dpfp_nu, favor_features,
 * favor_redraw (which must agree between the two), sum_normalize,
 * attn_normalize, norm_eps, scale_output, use_bias, init_std and the sizes
 * are used; update_rule must be FWP_UPDATE_SUM, algorithm FWP_ALGORITHM_AUTO,
 * chunk_size 0 and carry_state 0. The decoder self-attention is causal and
 * takes any layer config (the delta rule included; carry_state 0). All three
 * must have the model's d_model. The paper replaces every softmax by the
 * linear kind under test (sum rule, attention normalisation); that is the
 * default here.
 *
 * **Batches.** A batch of B pairs is given as fwp_pair_data_next() fills it:
 * source [B][S] (x_1..x_n eos then pad), target input [B][T] (bos y_1..y_m
 * then pad), target output [B][T] (y_1..y_m eos then pad) and the lengths of
 * each row. Padding never enters any attention (neither a fast-weight memory
 * nor a softmax) nor the loss, so a padded batch gives the loss and the
 * gradients of its sentences taken one by one.
 *
 * fwp_seq2seq_create() makes the model as an ::fwp_model of kind
 * FWP_MODEL_SEQ2SEQ: the generic model functions (parameters, backward,
 * training mode), optimizers and checkpoints (fwp_model_load()) work for it.
 * Its decoding state (per decoder layer: the self-attention's fast weights or
 * key/value cache, and the encoder output's memory for the cross-attention)
 * lives inside fwp_seq2seq_translate(), which reorders it by the beam
 * search's choices; the model has no ::fwp_state of its own
 * (fwp_state_create() reports FWP_ERR_UNSUPPORTED).
 *
 * Any call that runs the network replaces the activations a pending
 * fwp_model_backward() would use; only fwp_seq2seq_forward() leaves new ones.
 *  @{ */

/** \brief Settings of the translation model. Fill with fwp_seq2seq_config_init() or fwp_seq2seq_config_preset(). */
typedef struct fwp_seq2seq_config {
  uint32_t struct_size;              /**< sizeof(fwp_seq2seq_config); set by init. */
  int64_t vocab_size;                /**< The shared vocabulary V >= 3; no default (0: must be set). */
  int32_t pad_id;                    /**< Padding id, in [0, V), not bos or eos; default 1 (fairseq's). */
  int32_t bos_id;                    /**< Begin-of-sentence id (fed first to the decoder); default 0. */
  int32_t eos_id;                    /**< End-of-sentence id; default 2. */
  int64_t encoder_layers;            /**< In [1, 1024]; default 6. */
  int64_t decoder_layers;            /**< In [1, 1024]; default 6. */
  int64_t d_ff;                      /**< Inner width of the feed-forward blocks; default 4096. */
  float dropout;                     /**< On the embeddings, every sublayer output and inside the FFN, in
                                          training mode; in [0, 1); default 0.3 (fairseq's big model). */
  float label_smoothing;             /**< epsilon of fairseq's label_smoothed_cross_entropy, in [0, 1); default 0.1. */
  int32_t tie_embeddings;            /**< 1 (default): the output weight is the embedding table (source, target
                                          and output share one, as in the paper); 0: a separate output weight. */
  fwp_lm_position position;          /**< Default FWP_LM_POSITION_SINUSOIDAL (fairseq's sinusoids). */
  int32_t pre_norm;                  /**< 0 (default): post-LayerNorm (the paper); 1: pre-LayerNorm with a final
                                          LayerNorm after each stack. */
  float init_std;                    /**< Embedding, FFN and untied output weights ~ N(0, init_std^2); biases 0,
                                          LayerNorm gains 1; default 0.02. */
  uint64_t seed;                     /**< Seed of the parameters, dropout masks and FAVOR+ redraws; 0 (default):
                                          drawn from the context's generator. Not stored in checkpoints. */
  fwp_layer_config encoder_attention; /**< Encoder self-attention (non-causal). d_model is the model's width.
                                          Default: d_model 1024, 16 heads of 64, elu + 1, sum rule,
                                          attention normalisation, no sum normalisation, no output scale,
                                          no biases. */
  fwp_layer_config decoder_attention; /**< Decoder self-attention (causal); default as encoder_attention. */
  fwp_layer_config cross_attention;   /**< Decoder-encoder attention (non-causal); default as encoder_attention. */
} fwp_seq2seq_config;

/**
 * \brief Fills a translation config with the defaults: the paper's "Linear" model at fairseq's
 *        Transformer-big sizes (6 + 6 layers, d_model 1024, 16 heads of 64, FFN 4096, dropout 0.3,
 *        label smoothing 0.1, tied embeddings, post-LN), every attention elu + 1 with the sum rule.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_seq2seq_config_init(fwp_seq2seq_config* config);

/**
 * \brief Fills a config with a named preset (vocab_size and the special ids are left for the caller).
 *
 * "paper-big": the defaults (fairseq's transformer_wmt_en_de_big, as the paper);
 * "base": fairseq's transformer base (d_model 512, 8 heads of 64, FFN 2048, dropout 0.1);
 * "cpu-small": 3 + 3 layers, d_model 256, 4 heads of 64, FFN 1024, dropout 0.1: a model two
 * CPU cores train on the Bible corpus in hours.
 * All use the paper's linear attention (elu + 1, sum rule, attention normalisation) in all three
 * kinds; set feature_map to FWP_FEATURE_MAP_SOFTMAX in each for the Transformer baseline.
 * \param[in]  name   The preset's name.
 * \param[out] config Receives the preset (its struct_size is set).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, or FWP_ERR_INVALID_ARGUMENT for an unknown name (the
 *         message lists the known ones).
 */
FWP_API fwp_status fwp_seq2seq_config_preset(const char* name, fwp_seq2seq_config* config);

/**
 * \brief Creates a translation model with freshly initialised parameters.
 * \param[in]  ctx    The context; the model keeps it alive.
 * \param[in]  config Settings.
 * \param[out] out    Receives the model (fwp_model_destroy()); NULL on failure.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE (an enum), FWP_ERR_INVALID_ARGUMENT
 *         naming the bad field, or FWP_ERR_OUT_OF_MEMORY.
 */
FWP_API fwp_status fwp_seq2seq_create(fwp_context* ctx, const fwp_seq2seq_config* config, fwp_model** out);

/**
 * \brief Copies the settings of a translation model.
 * \param[in]  model  A translation model.
 * \param[out] config Receives the settings (struct_size must be set).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, or FWP_ERR_INVALID_ARGUMENT for another kind of model.
 */
FWP_API fwp_status fwp_seq2seq_get_config(const fwp_model* model, fwp_seq2seq_config* config);

/** \brief A padded batch of pairs (host arrays), as fwp_pair_data_next() fills them. */
typedef struct fwp_seq2seq_batch {
  const int32_t* source;          /**< [batch][source_length]: x_1..x_n eos, then pad. */
  const int32_t* source_lengths;  /**< [batch]: n + 1, in [1, source_length]. */
  const int32_t* target_input;    /**< [batch][target_length]: bos y_1..y_m, then pad. */
  const int32_t* target_output;   /**< [batch][target_length]: y_1..y_m eos, then pad (not scored). */
  const int32_t* target_lengths;  /**< [batch]: m + 1, in [1, target_length]. */
  int64_t batch;                  /**< B >= 1. */
  int64_t source_length;          /**< S >= 1. */
  int64_t target_length;          /**< T >= 1. */
} fwp_seq2seq_batch;

/** \brief What fwp_seq2seq_forward() returns: sums over the scored target tokens (natural log). */
typedef struct fwp_seq2seq_loss {
  double loss_sum;  /**< The label-smoothed loss summed over the scored tokens. */
  double nll_sum;   /**< -log p(target) summed over them (no smoothing): exp(nll_sum / tokens) is the
                         perplexity. */
  int64_t tokens;   /**< Scored target tokens: positions t < target_lengths[b] whose target is not pad. */
} fwp_seq2seq_loss;

/**
 * \brief Forward pass of a padded batch; fwp_model_backward() then adds the gradients of the mean
 *        label-smoothed loss, loss_sum / tokens (fairseq's per-token normalisation).
 *
 * Every id and length is checked on the host before anything runs. Training mode: dropout on and,
 * for FAVOR+ with favor_redraw, fresh random features.
 * \param[in]  model A translation model.
 * \param[in]  batch The batch.
 * \param[out] loss  Receives the sums.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (sizes, lengths, no token scored),
 *         FWP_ERR_OUT_OF_RANGE (an id) or FWP_ERR_OUT_OF_MEMORY.
 */
FWP_API fwp_status fwp_seq2seq_forward(fwp_model* model, const fwp_seq2seq_batch* batch, fwp_seq2seq_loss* loss);

/**
 * \brief Scores a padded batch in evaluation mode (no dropout, fixed FAVOR+ features), leaving no
 *        activations for a backward; the model's training flag is unchanged.
 * \param[in]  model A translation model.
 * \param[in]  batch The batch.
 * \param[out] loss  Receives the sums.
 * \return As fwp_seq2seq_forward().
 */
FWP_API fwp_status fwp_seq2seq_evaluate(fwp_model* model, const fwp_seq2seq_batch* batch, fwp_seq2seq_loss* loss);

/** \brief When a beam search stops working on a sentence. */
typedef enum fwp_beam_stop {
  FWP_BEAM_STOP_FINISHED = 0, /**< fairseq's rule: as soon as beam_size hypotheses have finished. */
  FWP_BEAM_STOP_NO_BETTER = 1 /**< When no open hypothesis can still beat the best finished one
                                   (the result of running the beam to the length limit, sooner). */
} fwp_beam_stop;

/** \brief How fwp_seq2seq_translate() searches. Fill with fwp_seq2seq_search_config_init(). */
typedef struct fwp_seq2seq_search_config {
  uint32_t struct_size;  /**< sizeof(fwp_seq2seq_search_config); set by init. */
  int64_t beam_size;     /**< >= 1; default 4. 1: greedy decoding (the most likely token every step). */
  float length_penalty;  /**< Finished hypotheses score log p / length^length_penalty (length counts the
                              eos); finite; default 1 (fairseq's). */
  float max_len_a;       /**< Each output has at most floor(max_len_a * n + max_len_b) tokens before its
                              eos, n the source length with its eos; finite and >= 0; default 1.2. */
  float max_len_b;       /**< Finite; default 10. */
  int64_t min_length;    /**< Tokens before eos at least, >= 0; default 1. */
  fwp_beam_stop stop;    /**< Default FWP_BEAM_STOP_FINISHED. */
} fwp_seq2seq_search_config;

/**
 * \brief Fills a search config with the defaults (beam 4, length penalty 1, max length 1.2 n + 10,
 *        min length 1, fairseq's stopping rule).
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_seq2seq_search_config_init(fwp_seq2seq_search_config* config);

/**
 * \brief Translates a padded batch of source sentences (evaluation mode), incrementally: the encoder
 *        runs once, then one decoder step per output token for all open hypotheses of all
 *        sentences together (O(1) per token for fast-weight layers; a growing key/value cache for
 *        softmax), the decoding state reordered by the beam's choices.
 *
 * The model's training flag is unchanged. Outputs never contain pad or bos; the final eos is not
 * written.
 * \param[in]  model          A translation model.
 * \param[in]  source         [batch][source_length]: x_1..x_n eos, then pad (as in ::fwp_seq2seq_batch).
 * \param[in]  source_lengths [batch]: n + 1, in [1, source_length].
 * \param[in]  batch          B >= 1.
 * \param[in]  source_length  S >= 1.
 * \param[in]  search         The search settings.
 * \param[out] output         [batch][capacity]: row b holds the best translation of sentence b.
 * \param[in]  capacity       Row size of output; must be >= every sentence's length limit
 *                            floor(max_len_a * source_lengths[b] + max_len_b).
 * \param[out] output_lengths [batch]: the number of tokens written to each row.
 * \param[out] scores         [batch] the best hypothesis' score (log p / length^length_penalty); may be NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (sizes, lengths, a search field, a
 *         capacity below a length limit), FWP_ERR_OUT_OF_RANGE (an id) or FWP_ERR_OUT_OF_MEMORY.
 */
FWP_API fwp_status fwp_seq2seq_translate(fwp_model* model, const int32_t* source, const int32_t* source_lengths,
                                         int64_t batch, int64_t source_length,
                                         const fwp_seq2seq_search_config* search, int32_t* output, int64_t capacity,
                                         int64_t* output_lengths, float* scores);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_SEQ2SEQ_H */
