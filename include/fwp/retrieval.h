/**
 * \file retrieval.h
 * \brief The synthetic associative-retrieval model of the paper (section 6.1) and its data generator.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_RETRIEVAL_H
#define FWP_RETRIEVAL_H

#include "fwp/data.h"
#include "fwp/layer.h"
#include "fwp/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup retrieval The associative-retrieval model (paper section 6.1)
 *
 * The paper's synthetic retrieval task: a model reads S (key, value) pairs and
 * is then queried with keys. fwp_model_create_retrieval() creates it as an
 * ::fwp_model; fwp_retrieval_forward() is its forward pass and loss; the
 * generic model functions (model.h) do the rest. A seeded generator
 * (::fwp_retrieval_data, a data source of kind FWP_DATA_RETRIEVAL) draws the
 * sequences of settings 1 and 2.
 *  @{ */

/** \brief Settings of the retrieval model. Fill with fwp_retrieval_config_init(). */
typedef struct fwp_retrieval_config {
  uint32_t struct_size;          /**< sizeof(fwp_retrieval_config); set by init. */
  int32_t setting;               /**< 1 (capacity: L = S pairs without replacement) or 2 (update:
                                      trained on L = 2 S pairs with replacement; any L is accepted,
                                      the paper evaluates on S); default 1. */
  int64_t num_keys;              /**< S, the size of the key and of the value vocabulary; default 20. */
  int64_t d_head;                /**< Width of k and q before phi; default 64. */
  fwp_feature_map feature_map;   /**< Default FWP_FEATURE_MAP_DPFP. */
  int64_t dpfp_nu;               /**< Default 1. */
  int64_t favor_features;        /**< Default 64. */
  int32_t favor_redraw;          /**< Default 1. */
  fwp_update_rule update_rule;   /**< Default FWP_UPDATE_DELTA. */
  int32_t sum_normalize;         /**< Default 1 (the paper's delta-rule setup). */
  int32_t attn_normalize;        /**< Default 0; the paper's sum-rule setup uses 1. */
  float norm_eps;                /**< Default 1e-6. Must be >= FLT_MIN (subnormal values flush to zero). */
} fwp_retrieval_config;

/**
 * \brief Fills a retrieval config with the defaults.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_retrieval_config_init(fwp_retrieval_config* config);

/**
 * \brief Creates the retrieval model with freshly initialised parameters.
 * \param[in]  ctx    The context; the model keeps it alive.
 * \param[in]  config Settings.
 * \param[out] out    Receives the model (fwp_model_destroy()); NULL on failure.
 * \return FWP_OK or an error naming the bad field.
 */
FWP_API fwp_status fwp_model_create_retrieval(fwp_context* ctx, const fwp_retrieval_config* config,
                                              fwp_model** out);

/**
 * \brief Copies the settings of a retrieval model.
 * \param[in]  model  A retrieval model.
 * \param[out] config Receives the settings (struct_size must be set).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, or FWP_ERR_INVALID_ARGUMENT for another kind of model.
 */
FWP_API fwp_status fwp_model_get_retrieval_config(const fwp_model* model, fwp_retrieval_config* config);

/**
 * \brief A batch of retrieval sequences, in caller-owned arrays.
 *
 * Sequence b holds seq_len (key, value) pairs keys[b][i], values[b][i] with
 * 0 <= key, value < S, then num_queries query keys queries[b][j] with their
 * target values targets[b][j]. A query of -1 is padding: it and its target are
 * ignored (sequences may have fewer distinct keys than num_queries).
 */
typedef struct fwp_retrieval_batch {
  int64_t batch_size;     /**< B >= 1. */
  int64_t seq_len;        /**< L: S for setting 1; any 1 <= L <= 2^17 for setting 2 (trained on 2 S pairs,
                               evaluated by the paper on S). */
  int64_t num_queries;    /**< Q >= 1 queries per sequence. */
  const int32_t* keys;    /**< [B][L]. */
  const int32_t* values;  /**< [B][L]. */
  const int32_t* queries; /**< [B][Q]; -1 = padding. */
  const int32_t* targets; /**< [B][Q]; ignored where the query is -1. */
} fwp_retrieval_batch;

/**
 * \brief Forward pass and loss of the retrieval model.
 *
 * loss = mean over the non-padding queries of 0.5 * ||onehot(target) - y||^2,
 * where y (S values) is the model's readout for the query. Keeps what
 * fwp_model_backward() needs.
 * \param[in]  model   A retrieval model.
 * \param[in]  batch   The batch; every id is checked.
 * \param[out] loss    Receives the loss.
 * \param[out] outputs Receives y, [B][Q][S] (zeros for padding); may be NULL.
 * \param[in]  outputs_count Size of outputs in floats (B * Q * S when outputs is not NULL).
 * \return FWP_OK or an error naming the bad field or id.
 */
FWP_API fwp_status fwp_retrieval_forward(fwp_model* model, const fwp_retrieval_batch* batch, float* loss,
                                         float* outputs, int64_t outputs_count);

/**
 * \brief Seeded generator of retrieval sequences for setting 1 or 2.
 *
 * The same type as ::fwp_data (a data source of kind FWP_DATA_RETRIEVAL), so
 * it can be passed wherever a data source is taken, e.g. to the checkpoint
 * functions. The fwp_retrieval_data_* functions reject a data source of
 * another kind with FWP_ERR_INVALID_ARGUMENT.
 */
typedef fwp_data fwp_retrieval_data;

/**
 * \brief Creates a generator of retrieval data.
 * \param[in]  setting  1 or 2.
 * \param[in]  num_keys S >= 2.
 * \param[in]  seed     Seed; the same seed gives the same sequences.
 * \param[out] out      Receives the generator (fwp_retrieval_data_destroy()).
 * \return FWP_OK or an error.
 */
FWP_API fwp_status fwp_retrieval_data_create(int32_t setting, int64_t num_keys, uint64_t seed,
                                             fwp_retrieval_data** out);

/**
 * \brief Creates a generator of retrieval data with a chosen number of pairs per sequence.
 *
 * The paper trains setting 2 on L = 2 S pairs but evaluates it on S pairs (one
 * pair per key of the vocabulary, with replacement); this function makes such
 * evaluation sequences. Setting 1 sequences hold every key once, so their
 * length is always S.
 * \param[in]  setting   1 or 2.
 * \param[in]  num_keys  S >= 2.
 * \param[in]  num_pairs L: 0 for the training length (S for setting 1, 2 S for setting 2); otherwise S
 *                       for setting 1, or 1 <= L <= 2^17 for setting 2.
 * \param[in]  seed      Seed; the same seed gives the same sequences.
 * \param[out] out       Receives the generator (fwp_retrieval_data_destroy()).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, or FWP_ERR_INVALID_ARGUMENT naming the bad argument.
 */
FWP_API fwp_status fwp_retrieval_data_create_with_length(int32_t setting, int64_t num_keys, int64_t num_pairs,
                                                         uint64_t seed, fwp_retrieval_data** out);

/** \brief Destroys a generator (the same as fwp_data_destroy()). \param[in] data The generator; NULL is a no-op. */
FWP_API void fwp_retrieval_data_destroy(fwp_retrieval_data* data);

/**
 * \brief The sequence length L of a generator (S for setting 1, 2 S for setting 2, or the num_pairs it was
 *        created with).
 * \param[in]  data    The generator.
 * \param[out] seq_len Receives L.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, or FWP_ERR_INVALID_ARGUMENT for a data source of another kind.
 */
FWP_API fwp_status fwp_retrieval_data_seq_len(const fwp_retrieval_data* data, int64_t* seq_len);

/**
 * \brief Draws a batch of sequences.
 *
 * With queries_per_seq = 1 each sequence is queried with one key drawn from it
 * (training). With queries_per_seq = Q > 1 each sequence is queried with its
 * distinct keys in order of first appearance, at most Q of them, padded with -1
 * (evaluation).
 * \param[in]  data            The generator (advanced by the call).
 * With a shard set (fwp_data_set_shard(), count c) the whole batch is drawn and
 * only the shard's B / c rows are written: the arrays are then [B / c][...].
 * \param[in]  batch_size      B >= 1 (the global batch; with shards a multiple of their count).
 * \param[in]  queries_per_seq Q >= 1.
 * \param[out] keys            [B][L].
 * \param[out] values          [B][L].
 * \param[out] queries         [B][Q].
 * \param[out] targets         [B][Q].
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (also for a data source of another kind).
 */
FWP_API fwp_status fwp_retrieval_data_sample(fwp_retrieval_data* data, int64_t batch_size,
                                             int64_t queries_per_seq, int32_t* keys, int32_t* values,
                                             int32_t* queries, int32_t* targets);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_RETRIEVAL_H */
