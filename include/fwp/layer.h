/**
 * \file layer.h
 * \brief The fast-weight attention layer (and the softmax baseline behind the same handle).
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_LAYER_H
#define FWP_LAYER_H

#include "fwp/context.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup layer Fast-weight attention layer
 *
 * Multi-head causal attention in the fast-weight form of Schlag, Irie and
 * Schmidhuber (ICML 2021). For an input x of shape [B, T, d_model]:
 *
 *     q, k, v = x Wq^T, x Wk^T, x Wv^T            (H heads of d_head each)
 *     beta    = sigmoid(x Wbeta^T)                 (delta rule only, one per head and token)
 *     phi     = feature map (elu+1, FAVOR+ or DPFP), optionally sum-normalised:
 *               phi(x) / (sum_j phi(x)_j + norm_eps)
 *     sum rule:   W_t = W_{t-1} + v_t phi(k_t)^T
 *     delta rule: W_t = W_{t-1} + beta_t (v_t - W_{t-1} phi(k_t)) phi(k_t)^T
 *     o_t     = W_t phi(q_t), optionally divided by (z_t . phi(q_t) + norm_eps)
 *               with z_t = z_{t-1} + phi(k_t) ("attention normalisation")
 *     y       = s * concat_heads(o) Wo^T, s = 1/sqrt(d_head) if scale_output
 *
 * With FWP_FEATURE_MAP_SOFTMAX the layer is the causal softmax-attention
 * baseline: o_t = sum_{j<=t} softmax_j(q_t . k_j / sqrt(d_head)) v_j, y = o Wo^T.
 *
 * Weights follow the PyTorch nn.Linear convention: a weight has shape
 * [out_features, in_features] and y = x W^T + b.
 *
 * The fast-weight state of one batch row and head is W (d_head x d_dot,
 * row-major) and z (d_dot). The layer keeps a state for B batch rows, laid out
 * as W: [B][H][d_head][d_dot] and z: [B][H][d_dot].
 *  @{ */

/** \brief The feature map phi, or softmax attention. */
typedef enum fwp_feature_map {
  FWP_FEATURE_MAP_ELU = 0,      /**< elu(x) + 1; d_dot = d_head ("Linear Transformer"). */
  FWP_FEATURE_MAP_FAVOR = 1,    /**< FAVOR+ positive orthogonal random features; d_dot = 2 m. */
  FWP_FEATURE_MAP_DPFP = 2,     /**< Deterministic parameter-free projection; d_dot = 2 d_head nu. */
  FWP_FEATURE_MAP_SOFTMAX = 3   /**< No feature map: causal softmax attention (the baseline). */
} fwp_feature_map;

/** \brief How the fast weights are written. */
typedef enum fwp_update_rule {
  FWP_UPDATE_SUM = 0,    /**< Sum rule (linear attention): W += v phi(k)^T. */
  FWP_UPDATE_DELTA = 1   /**< Delta rule with a learned beta: W += beta (v - W phi(k)) phi(k)^T. */
} fwp_update_rule;

/** \brief Algorithm for the fast-weight recurrence over a sequence. Results agree to rounding. */
typedef enum fwp_algorithm {
  FWP_ALGORITHM_AUTO = 0,       /**< Pick the faster for the shape. */
  FWP_ALGORITHM_RECURRENT = 1,  /**< Step by step, one rank-1 update per token. */
  FWP_ALGORITHM_CHUNKED = 2     /**< Chunkwise parallel (WY/UT form for the delta rule). */
} fwp_algorithm;

/** \brief Settings of a fast-weight layer. Fill with fwp_layer_config_init(). */
typedef struct fwp_layer_config {
  uint32_t struct_size;          /**< sizeof(fwp_layer_config); set by init. */
  int64_t d_model;               /**< Input and output width; default 128. */
  int64_t num_heads;             /**< H; default 8. */
  int64_t d_head;                /**< Width of q, k, v per head; default 16. */
  fwp_feature_map feature_map;   /**< Default FWP_FEATURE_MAP_DPFP. */
  int64_t dpfp_nu;               /**< DPFP order nu >= 1; default 1. Used only by DPFP. */
  int64_t favor_features;        /**< FAVOR+ random features m >= 1; default 64. Used only by FAVOR+. */
  int32_t favor_redraw;          /**< FAVOR+: 1 (default) draws new features at every training
                                      forward; 0 keeps one fixed draw. Evaluation always uses the fixed draw. */
  fwp_update_rule update_rule;   /**< Default FWP_UPDATE_DELTA. Must be FWP_UPDATE_SUM for softmax. */
  int32_t sum_normalize;         /**< 1 (default): phi(x) / (sum phi(x) + norm_eps). Must be 0 for softmax. */
  int32_t attn_normalize;        /**< 1: divide o_t by (z_t . phi(q_t) + norm_eps). Default 0. Must be 0 for softmax. */
  float norm_eps;                /**< Epsilon of both normalisations; default 1e-6. Must be >= FLT_MIN
                                      (subnormal values flush to zero); it keeps an all-zero phi
                                      (possible with DPFP) from giving NaN. */
  int32_t scale_output;          /**< 1 (default): scale fast-weight outputs by 1/sqrt(d_head) before
                                      the output projection, as the paper's LM layers do. */
  int32_t use_bias;              /**< 1: biases on all projections; default 0 (the paper's LM layers). */
  float init_std;                /**< Weights are drawn from N(0, init_std^2); default 0.02. Biases start at 0. */
  fwp_algorithm algorithm;       /**< Default FWP_ALGORITHM_AUTO. */
  int64_t chunk_size;            /**< Chunk length for FWP_ALGORITHM_CHUNKED, in [0, 65536]; 0 (default) =
                                      automatic. */
  int32_t carry_state;           /**< 1: every forward starts from the layer's state and leaves the final
                                      state there (memory across segments). 0 (default): every forward
                                      starts from the state set with fwp_layer_set_state(), or zero, and
                                      leaves the layer's state unchanged. */
} fwp_layer_config;

/** \brief A multi-head fast-weight (or softmax) attention layer with its parameters and gradients. */
typedef struct fwp_layer fwp_layer;

/**
 * \brief Fills a layer config with the defaults.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_layer_config_init(fwp_layer_config* config);

/**
 * \brief Creates a layer with freshly initialised parameters (seeded through the context).
 * \param[in]  ctx    The context; the layer keeps it alive.
 * \param[in]  config Settings; must not be NULL.
 * \param[out] out    Receives the layer, owned by the caller (fwp_layer_destroy()); NULL on failure.
 * \return FWP_OK, or an error naming the bad field.
 */
FWP_API fwp_status fwp_layer_create(fwp_context* ctx, const fwp_layer_config* config, fwp_layer** out);

/**
 * \brief Destroys a layer and its parameters, gradients and state.
 * \param[in] layer The layer; NULL is a no-op.
 */
FWP_API void fwp_layer_destroy(fwp_layer* layer);

/**
 * \brief Copies the layer's settings.
 * \param[in]  layer  The layer.
 * \param[out] config Receives the settings the layer was created with
 *                    (config->struct_size must be set, e.g. by fwp_layer_config_init()).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (bad struct_size).
 */
FWP_API fwp_status fwp_layer_get_config(const fwp_layer* layer, fwp_layer_config* config);

/**
 * \brief The feature dimension d_dot of phi (0 for softmax attention).
 * \param[in]  layer The layer.
 * \param[out] d_dot Receives d_dot.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_layer_feature_dim(const fwp_layer* layer, int64_t* d_dot);

/**
 * \brief Switches between training (1, the default) and evaluation (0) mode.
 *
 * In evaluation mode FAVOR+ uses its fixed random features.
 * \param[in] layer    The layer.
 * \param[in] training 1 or 0.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT.
 */
FWP_API fwp_status fwp_layer_set_training(fwp_layer* layer, int training);

/**
 * \brief Forward pass over a batch of sequences.
 *
 * Keeps the activations that fwp_layer_backward() needs.
 * \param[in]  layer The layer.
 * \param[in]  x     Input, [batch][seq_len][d_model], batch * seq_len * d_model floats.
 * \param[in]  batch B >= 1; must equal the state's batch if a state is set (see fwp_layer_set_state()).
 * \param[in]  seq_len T >= 1.
 * \param[out] y     Output, [batch][seq_len][d_model]; must not overlap x.
 * \return FWP_OK or an error; on error y is unspecified and the layer unchanged. NaN or infinity
 *         in x propagates to y with FWP_OK (NaN/Inf policy: fwp.h).
 */
FWP_API fwp_status fwp_layer_forward(fwp_layer* layer, const float* x, int64_t batch,
                                     int64_t seq_len, float* y);

/**
 * \brief Backward pass of the last forward.
 *
 * Adds the parameter gradients to the layer's gradient buffers and computes the
 * gradient of the initial state (see fwp_layer_get_state_grad()). The gradient
 * of the final state is taken as zero (segments are truncated, as in the paper).
 * \param[in]  layer   The layer.
 * \param[in]  dy      dL/dy, [batch][seq_len][d_model].
 * \param[in]  batch   Must equal the batch of the last forward.
 * \param[in]  seq_len Must equal the seq_len of the last forward.
 * \param[out] dx      dL/dx, [batch][seq_len][d_model] (overwritten); may be NULL if not needed.
 * \return FWP_OK; FWP_ERR_BAD_STATE before any forward; FWP_ERR_SHAPE_MISMATCH.
 */
FWP_API fwp_status fwp_layer_backward(fwp_layer* layer, const float* dy, int64_t batch,
                                      int64_t seq_len, float* dx);

/**
 * \brief Sets all parameter gradients to zero.
 * \param[in] layer The layer.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_layer_zero_grad(fwp_layer* layer);

/**
 * \brief The number of parameter tensors.
 * \param[in]  layer The layer.
 * \param[out] count Receives the count.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_layer_num_params(const fwp_layer* layer, int64_t* count);

/**
 * \brief Describes parameter number `index`.
 * \param[in]  layer The layer.
 * \param[in]  index 0 <= index < count.
 * \param[out] info  Receives the description (name owned by the layer).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_OUT_OF_RANGE.
 */
FWP_API fwp_status fwp_layer_param_info(const fwp_layer* layer, int64_t index, fwp_param_info* info);

/**
 * \brief Finds a parameter by name.
 * \param[in]  layer The layer.
 * \param[in]  name  E.g. "q_proj.weight".
 * \param[out] index Receives its index.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (no such name).
 */
FWP_API fwp_status fwp_layer_param_index(const fwp_layer* layer, const char* name, int64_t* index);

/**
 * \brief Copies a parameter's values out.
 * \param[in]  layer The layer.
 * \param[in]  index Parameter index.
 * \param[out] data  Receives numel floats, row-major.
 * \param[in]  count Size of data in floats; must equal numel.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE or FWP_ERR_SHAPE_MISMATCH.
 */
FWP_API fwp_status fwp_layer_get_param(const fwp_layer* layer, int64_t index, float* data, int64_t count);

/**
 * \brief Overwrites a parameter's values.
 * \param[in] layer The layer.
 * \param[in] index Parameter index.
 * \param[in] data  numel floats, row-major; non-finite values are rejected.
 * \param[in] count Must equal numel.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE, FWP_ERR_SHAPE_MISMATCH
 *         or FWP_ERR_INVALID_ARGUMENT (NaN or infinity).
 */
FWP_API fwp_status fwp_layer_set_param(fwp_layer* layer, int64_t index, const float* data, int64_t count);

/**
 * \brief Copies a parameter's accumulated gradient out.
 * \param[in]  layer The layer.
 * \param[in]  index Parameter index.
 * \param[out] data  Receives numel floats.
 * \param[in]  count Must equal numel.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE or FWP_ERR_SHAPE_MISMATCH.
 */
FWP_API fwp_status fwp_layer_get_grad(const fwp_layer* layer, int64_t index, float* data, int64_t count);

/**
 * \brief The sizes of the fast-weight state for a batch of `batch` rows.
 * \param[in]  layer   The layer.
 * \param[in]  batch   Batch rows B >= 1.
 * \param[out] w_count Receives B * H * d_head * d_dot (may be NULL).
 * \param[out] z_count Receives B * H * d_dot (may be NULL).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT, or FWP_ERR_UNSUPPORTED for softmax.
 */
FWP_API fwp_status fwp_layer_state_size(const fwp_layer* layer, int64_t batch, int64_t* w_count,
                                        int64_t* z_count);

/**
 * \brief Sets the fast-weight state (the initial state of the next forward or step).
 * \param[in] layer   The layer.
 * \param[in] batch   Batch rows B of the state; later forwards must use this batch.
 * \param[in] w       W, [B][H][d_head][d_dot]; NULL means zeros.
 * \param[in] w_count Must equal B * H * d_head * d_dot (ignored when w is NULL).
 * \param[in] z       z, [B][H][d_dot]; NULL means zeros.
 * \param[in] z_count Must equal B * H * d_dot (ignored when z is NULL).
 * \return FWP_OK, FWP_ERR_SHAPE_MISMATCH, FWP_ERR_INVALID_ARGUMENT (a bad batch, or a value that is not
 *         finite; nothing changes then), or FWP_ERR_UNSUPPORTED for softmax.
 */
FWP_API fwp_status fwp_layer_set_state(fwp_layer* layer, int64_t batch, const float* w, int64_t w_count,
                                       const float* z, int64_t z_count);

/**
 * \brief Copies the fast-weight state out.
 *
 * With carry_state = 1 (or after fwp_layer_step()) this is the final state of
 * the last forward; otherwise it is the state last set.
 * \param[in]  layer   The layer.
 * \param[out] batch   Receives the state's batch B (0 if no state is held: all zeros).
 * \param[out] w       Receives W, [B][H][d_head][d_dot]; may be NULL.
 * \param[in]  w_count Size of w in floats; must equal B * H * d_head * d_dot when w is not NULL.
 * \param[out] z       Receives z, [B][H][d_dot]; may be NULL.
 * \param[in]  z_count Size of z; must equal B * H * d_dot when z is not NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER (batch), FWP_ERR_SHAPE_MISMATCH, or FWP_ERR_UNSUPPORTED for softmax.
 */
FWP_API fwp_status fwp_layer_get_state(const fwp_layer* layer, int64_t* batch, float* w, int64_t w_count,
                                       float* z, int64_t z_count);

/**
 * \brief The gradient of the loss with respect to the initial state of the last backward.
 * \param[in]  layer   The layer.
 * \param[out] dw      Receives dL/dW_0, [B][H][d_head][d_dot]; may be NULL.
 * \param[in]  w_count Must equal B * H * d_head * d_dot when dw is not NULL.
 * \param[out] dz      Receives dL/dz_0, [B][H][d_dot]; may be NULL.
 * \param[in]  z_count Must equal B * H * d_dot when dz is not NULL.
 * \return FWP_OK, FWP_ERR_BAD_STATE (no backward yet), FWP_ERR_SHAPE_MISMATCH, or FWP_ERR_UNSUPPORTED for softmax.
 */
FWP_API fwp_status fwp_layer_get_state_grad(const fwp_layer* layer, float* dw, int64_t w_count,
                                            float* dz, int64_t z_count);

/**
 * \brief Forgets the state (fast weights, normaliser, and the softmax key/value cache).
 * \param[in] layer The layer.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_layer_reset_state(fwp_layer* layer);

/**
 * \brief Recurrent inference: consumes one token per batch row and updates the state.
 *
 * O(1) work per token for fast-weight layers. Running T steps gives the same
 * outputs as one forward over T tokens with carry_state = 1. For softmax
 * attention the layer keeps a key/value cache that grows by one token per step.
 * Uses evaluation-mode features; stores nothing for backward.
 * \param[in]  layer The layer.
 * \param[in]  x     [batch][d_model].
 * \param[in]  batch B >= 1; must equal the state's batch if a state is held.
 * \param[out] y     [batch][d_model].
 * \return FWP_OK or an error.
 */
FWP_API fwp_status fwp_layer_step(fwp_layer* layer, const float* x, int64_t batch, float* y);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_LAYER_H */
