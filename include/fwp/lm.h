/**
 * \file lm.h
 * \brief The word-level language model of the paper (section 6.3): training forward, evaluation as
 *        the paper does it, step-by-step decoding through an ::fwp_state, sampling and generation.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_LM_H
#define FWP_LM_H

#include "fwp/layer.h"
#include "fwp/model.h"
#include "fwp/state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup lm The language model (paper section 6.3)
 *
 * A decoder-only stack of `num_layers` residual blocks over token embeddings
 * (scaled by sqrt(d_model), plus sinusoidal positions), each block an attention
 * layer (any fast-weight layer of layer.h, or softmax attention: the
 * Transformer baseline) and a ReLU feed-forward block, with post-LayerNorm as
 * in the paper (pre-LayerNorm as an option), then a softmax output layer (tied
 * to the embedding or not) and the cross-entropy loss. With cutoffs (the
 * paper's WikiText-103 models) the input is the adaptive input embedding and
 * the output the adaptive softmax of the authors' toolkit (see `cutoffs`,
 * `div_val` and `tie_embeddings` in ::fwp_lm_config). Positions count from the
 * first token of a sequence and continue from a carried state's position.
 * fwp_lm_create() makes it as an ::fwp_model of kind FWP_MODEL_LANGUAGE; the
 * generic model functions (model.h: parameters, backward, training mode),
 * optimizers and checkpoints (fwp_model_load()) work for it. fwp_state_create()
 * makes its run state (per layer: fast weights, or a key/value cache for
 * softmax layers), used to carry memory across segments and to decode.
 *
 * Any call that runs the network (forward, evaluate, step, generate) replaces
 * the activations a pending fwp_model_backward() would use; only
 * fwp_lm_forward() leaves new ones.
 *  @{ */

/** \brief Largest number of adaptive-softmax cutoffs a config holds. */
#define FWP_LM_MAX_CUTOFFS 8

/** \brief Positional encoding of the language model. */
typedef enum fwp_lm_position {
  FWP_LM_POSITION_SINUSOIDAL = 0, /**< The authors' sinusoids (sin | cos halves), added to the scaled embedding. */
  FWP_LM_POSITION_NONE = 1        /**< No positions (the paper's carried-memory model). */
} fwp_lm_position;

/** \brief Settings of the language model. Fill with fwp_lm_config_init() or fwp_lm_config_preset(). */
typedef struct fwp_lm_config {
  uint32_t struct_size;          /**< sizeof(fwp_lm_config); set by init. */
  int64_t vocab_size;            /**< Number of token ids V >= 2; no default (0: must be set). */
  int64_t num_layers;            /**< Blocks; default 16 (the paper). */
  fwp_layer_config attention;    /**< Every layer's attention, as for fwp_layer_create(): d_model (the model's
                                      width), heads, d_head, feature map (FWP_FEATURE_MAP_SOFTMAX for the
                                      Transformer baseline, with update_rule FWP_UPDATE_SUM and both
                                      normalisations 0), rule, normalisations, algorithm, init_std (the
                                      attention's weights). Its struct_size must be set (init does it);
                                      carry_state must be 0 (the model carries memory through an ::fwp_state).
                                      Default: fwp_layer_config_init() with d_model 128, 8 heads, d_head 16,
                                      FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA. */
  int64_t d_ff;                  /**< Inner width of the feed-forward block; default 2048. */
  float dropout;                 /**< On the input, the attention output and inside and after the feed-forward
                                      block, in training mode; in [0, 1); default 0.1. */
  float attn_dropout;            /**< Dropout on attention weights: must be 0 (not built in; the paper uses 0). */
  fwp_lm_position position;      /**< Default FWP_LM_POSITION_SINUSOIDAL. */
  int32_t pre_norm;              /**< 0 (default): post-LayerNorm blocks (the paper); 1: pre-LayerNorm
                                      (x + f(LN(x))) with a final LayerNorm. */
  int32_t tie_embeddings;        /**< 1: the output layer's weight is the embedding table; default 0. With
                                      adaptive softmax: each cluster's output weight is the adaptive input's
                                      table of that cluster, and with div_val > 1 the tail clusters'
                                      projections are the input's too (the authors' WikiText-103 rule,
                                      tie_projs = [False] + [True] * num_cutoffs); the head's projection and
                                      the output biases stay the output's own. 0: nothing is tied. */
  int64_t cutoffs[FWP_LM_MAX_CUTOFFS]; /**< Adaptive input/softmax cutoffs (the first num_cutoffs used):
                                      strictly increasing, each in (0, vocab_size); token ids are taken as
                                      sorted by frequency (fwp lm prepare's word vocabulary is). Cluster 0
                                      is [0, cutoffs[0]) (the head's shortlist), cluster k is
                                      [cutoffs[k-1], cutoffs[k]), the last ends at vocab_size. The presets
                                      set none (they know no vocabulary): the paper's WikiText-103 models
                                      use 20000, 40000, 200000 with div_val 1. */
  int64_t num_cutoffs;           /**< In [0, FWP_LM_MAX_CUTOFFS]; default 0: a plain softmax (with div_val
                                      1). num_cutoffs > 0 or div_val > 1: the authors' adaptive input
                                      (embeddings scaled by sqrt(d_model)) and projected adaptive softmax;
                                      fwp_lm_step() then returns the full log-probabilities (head log-prob
                                      of the cluster + the cluster's log-softmax). */
  int64_t div_val;               /**< >= 1; default 1. Cluster k's embedding width is d_model / div_val^k
                                      (integer division, >= 1 for the last cluster), projected to d_model
                                      (projections ~ N(0, 0.01^2), the authors' proj_init_std). div_val 1
                                      has no projections. */
  float init_std;                /**< Embedding, feed-forward and output weights ~ N(0, init_std^2); biases 0,
                                      LayerNorm gains 1; default 0.02. */
  uint64_t seed;                 /**< Seed of the parameters, dropout masks and FAVOR+ redraws; 0 (default):
                                      drawn from the context's generator. Not stored in checkpoints (they hold
                                      the parameters and the generator's state): a loaded model reports 0. */
} fwp_lm_config;

/**
 * \brief Fills a language-model config with the defaults (the paper's small model without its
 *        vocabulary: 16 layers, d_model 128, 8 heads of 16, d_ff 2048, linear attention with the delta rule).
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_lm_config_init(fwp_lm_config* config);

/**
 * \brief Fills a config with a named preset (vocab_size is left 0 for the caller to set).
 *
 * "paper-small": 16 layers, 8 heads, d_ff 2048, d_model 128, d_head 16 (training segments of 256);
 * "paper-medium": the same with d_model 256, d_head 32 (segments of 384);
 * "cpu-small": 4 layers, d_model 128, 4 heads of 32, d_ff 512, dropout 0.1: about 12x fewer
 * multiply-adds per token than paper-small in the blocks (0.8M against 9.4M), so with a ~40k-word
 * vocabulary the output layer (~5M) dominates and two CPU cores train it on a small corpus in
 * minutes (segments of 64-128).
 * All use linear attention (elu + 1, sum-normalised) with the delta rule; change attention to taste.
 * None sets cutoffs (a preset knows no vocabulary): for the paper's WikiText-103 models set
 * num_cutoffs 3 with cutoffs 20000, 40000, 200000, div_val 1 and tie_embeddings 1, as the
 * authors' scripts do (their train.py ties unless --not_tied).
 * \param[in]  name   The preset's name.
 * \param[out] config Receives the preset (its struct_size is set).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, or FWP_ERR_INVALID_ARGUMENT for an unknown name (the
 *         message lists the known ones).
 */
FWP_API fwp_status fwp_lm_config_preset(const char* name, fwp_lm_config* config);

/**
 * \brief Creates a language model with freshly initialised parameters.
 * \param[in]  ctx    The context; the model keeps it alive.
 * \param[in]  config Settings.
 * \param[out] out    Receives the model (fwp_model_destroy()); NULL on failure.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE (an enum), FWP_ERR_INVALID_ARGUMENT
 *         naming the bad field (e.g. cutoffs not increasing or >= vocab_size, div_val too large for
 *         d_model), FWP_ERR_UNSUPPORTED (attention dropout) or FWP_ERR_OUT_OF_MEMORY.
 */
FWP_API fwp_status fwp_lm_create(fwp_context* ctx, const fwp_lm_config* config, fwp_model** out);

/**
 * \brief Copies the settings of a language model.
 * \param[in]  model  A language model.
 * \param[out] config Receives the settings (struct_size must be set).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, or FWP_ERR_INVALID_ARGUMENT for another kind of model.
 */
FWP_API fwp_status fwp_lm_get_config(const fwp_model* model, fwp_lm_config* config);

/**
 * \brief Forward pass and mean cross-entropy of a batch of token segments; fwp_model_backward() follows.
 *
 * Every id is checked on the host before anything runs.
 * \param[in]     model        A language model (training mode: dropout on).
 * \param[in]     inputs       [batch][length] token ids, each in [0, vocab_size).
 * \param[in]     targets      [batch][length] the next tokens; a negative target is not scored; others
 *                             in [0, vocab_size); at least one must be scored.
 * \param[in]     batch        B >= 1.
 * \param[in]     length       T >= 1.
 * \param[in,out] state        NULL: every sequence starts from zero (the paper's default). Otherwise a
 *                             state of this model (fwp_state_create()) with batch B: the segment starts
 *                             from it and leaves its final state there (the paper's "carry over"
 *                             model); gradients do not flow into earlier segments. Softmax layers can
 *                             only start from an empty state (FWP_ERR_UNSUPPORTED otherwise).
 * \param[out]    mean_loss    Receives the mean loss over the scored targets (natural log).
 * \param[out]    token_losses NULL, or [batch][length]: each position's loss (0 where not scored).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (sizes, no target scored),
 *         FWP_ERR_OUT_OF_RANGE (an id), FWP_ERR_SHAPE_MISMATCH (a state of another model or batch),
 *         FWP_ERR_UNSUPPORTED or FWP_ERR_OUT_OF_MEMORY.
 */
FWP_API fwp_status fwp_lm_forward(fwp_model* model, const int32_t* inputs, const int32_t* targets, int64_t batch,
                                  int64_t length, fwp_state* state, double* mean_loss, float* token_losses);

/** \brief How fwp_lm_evaluate() scores a token stream. */
typedef enum fwp_lm_eval_mode {
  FWP_LM_EVAL_SEGMENTS = 0, /**< Consecutive independent segments of `length` tokens, each from zero. */
  FWP_LM_EVAL_SLIDING = 1,  /**< The authors' eval_sliding_window.py: windows of `length` tokens; the first
                                 scores every position, each later one (shifted by one token) only its last. */
  FWP_LM_EVAL_CARRY = 2     /**< RNN mode: segments of `length` with the state carried through the whole
                                 stream, every token scored once. Fast-weight layers only (softmax layers:
                                 FWP_ERR_UNSUPPORTED). */
} fwp_lm_eval_mode;

/**
 * \brief Scores a token stream: the negative log-likelihood of tokens[1..count) given their past.
 *
 * Runs in evaluation mode (dropout off, FAVOR+ fixed features); the model's training flag is
 * restored afterwards. Perplexity = exp(total_nll / scored).
 * \param[in]  model     A language model.
 * \param[in]  tokens    count token ids, each in [0, vocab_size).
 * \param[in]  count     >= 2.
 * \param[in]  mode      A ::fwp_lm_eval_mode.
 * \param[in]  length    Segment or window length >= 1 (the training length for the paper's numbers).
 * \param[out] total_nll Receives the summed NLL (natural log).
 * \param[out] scored    Receives the number of scored tokens (count - 1 in every mode).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT, FWP_ERR_OUT_OF_RANGE (an id or the
 *         mode), FWP_ERR_UNSUPPORTED or FWP_ERR_OUT_OF_MEMORY.
 */
FWP_API fwp_status fwp_lm_evaluate(fwp_model* model, const int32_t* tokens, int64_t count, fwp_lm_eval_mode mode,
                                   int64_t length, double* total_nll, int64_t* scored);

/**
 * \brief Feeds one token per row and returns the log-probabilities of the next one (evaluation mode).
 *
 * O(1) work per token for fast-weight layers (the state's W and z); softmax layers append to their
 * key/value cache. The position encoding is taken at the state's position (tokens fed so far).
 * \param[in]     model     A language model.
 * \param[in,out] state     A state of this model (fwp_state_create()); advances by one token.
 * \param[in]     tokens    [batch] ids in [0, vocab_size), batch = the state's batch.
 * \param[out]    log_probs [batch][vocab_size] natural-log probabilities; may be NULL (the state
 *                          still advances, e.g. while feeding a prompt).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE (an id), FWP_ERR_SHAPE_MISMATCH (a
 *         state of another model) or FWP_ERR_OUT_OF_MEMORY.
 */
FWP_API fwp_status fwp_lm_step(fwp_model* model, fwp_state* state, const int32_t* tokens, float* log_probs);

/** \brief How fwp_lm_sample() picks a token. Fill with fwp_sampler_config_init(). */
typedef struct fwp_sampler_config {
  uint32_t struct_size; /**< sizeof(fwp_sampler_config); set by init. */
  float temperature;    /**< 0: greedy (argmax, the lowest id among ties); > 0: sample from
                             softmax(log_probs / temperature). Default 1. */
  int64_t top_k;        /**< Keep only the top_k most likely tokens (ties: lower ids first); 0 (default): off. */
  float top_p;          /**< Keep the smallest set of most likely tokens whose probability (after temperature
                             and top-k) reaches top_p, in (0, 1]; 1 (default): off. */
  uint64_t seed;        /**< fwp_lm_generate(): seed of its generator. Default 0 (a valid seed). */
} fwp_sampler_config;

/**
 * \brief Fills a sampler config with the defaults (temperature 1, no top-k, no top-p, seed 0).
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_sampler_config_init(fwp_sampler_config* config);

/**
 * \brief Picks a token from log-probabilities (on the host).
 * \param[in]     log_probs vocab values: log-probabilities or any logits (-INFINITY excludes a token;
 *                          NaN and +INFINITY are rejected; at least one must be finite).
 * \param[in]     vocab     >= 1.
 * \param[in]     config    The sampler.
 * \param[in,out] rng_state The generator's state: any value to start; advanced by one draw when
 *                          sampling (not when greedy).
 * \param[out]    token     Receives the id.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT.
 */
FWP_API fwp_status fwp_lm_sample(const float* log_probs, int64_t vocab, const fwp_sampler_config* config,
                                 uint64_t* rng_state, int32_t* token);

/**
 * \brief Continues a prompt: feeds it through the state, then samples up to max_new_tokens tokens.
 *
 * Batch 1. The state continues from where it is (reset it for a new text) and is left having
 * consumed the prompt and every generated token, so a later call continues the text. Stops at a
 * token of stop_tokens (neither written to out nor fed) or after max_new_tokens tokens. The same
 * seed, model and state give the same tokens.
 * \param[in]     model          A language model.
 * \param[in,out] state          A state of this model with batch 1.
 * \param[in]     prompt         prompt_length >= 1 ids in [0, vocab_size).
 * \param[in]     prompt_length  >= 1.
 * \param[in]     max_new_tokens >= 0.
 * \param[in]     sampler        The sampler (its seed seeds the draws).
 * \param[in]     stop_tokens    num_stop ids (NULL when num_stop is 0).
 * \param[in]     num_stop       >= 0.
 * \param[out]    out            Receives the generated ids.
 * \param[in]     capacity       Size of out; must be >= max_new_tokens.
 * \param[out]    generated      Receives the number written.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT, FWP_ERR_OUT_OF_RANGE (an id),
 *         FWP_ERR_SHAPE_MISMATCH (a state of another model or batch), FWP_ERR_UNSUPPORTED or
 *         FWP_ERR_OUT_OF_MEMORY.
 */
FWP_API fwp_status fwp_lm_generate(fwp_model* model, fwp_state* state, const int32_t* prompt,
                                   int64_t prompt_length, int64_t max_new_tokens, const fwp_sampler_config* sampler,
                                   const int32_t* stop_tokens, int64_t num_stop, int32_t* out, int64_t capacity,
                                   int64_t* generated);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_LM_H */
