/**
 * \file data.h
 * \brief Data sources: one opaque handle for every kind of training data.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_DATA_H
#define FWP_DATA_H

#include "fwp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup data Data sources
 *
 * A data source produces training or evaluation batches: the seeded
 * generator of the retrieval task (retrieval.h), token files for language
 * modelling (below), pair files of parallel text (parallel.h). Every kind is an ::fwp_data; each kind has its own create and
 * sample functions, which reject a source of another kind with
 * FWP_ERR_INVALID_ARGUMENT. A checkpoint can store where a source stands
 * (fwp_checkpoint_save()), so a resumed run reads the data an uninterrupted
 * run would have read.
 *  @{ */

/** \brief Kinds of data source. Values are fixed. */
typedef enum fwp_data_kind {
  FWP_DATA_RETRIEVAL = 0,     /**< Seeded generator of retrieval sequences (fwp_retrieval_data_create()). */
  FWP_DATA_TOKEN_FILE = 1,    /**< Token files for language modelling (fwp_token_data_create()). */
  FWP_DATA_PARALLEL_TEXT = 2  /**< Pair files of parallel text for translation (fwp_pair_data_create(), parallel.h). */
} fwp_data_kind;

/** \brief A data source of any kind; created by a kind's own create function. */
typedef struct fwp_data fwp_data;

/**
 * \brief Destroys a data source of any kind.
 * \param[in] data The data source; NULL is a no-op.
 */
FWP_API void fwp_data_destroy(fwp_data* data);

/**
 * \brief The kind of a data source.
 * \param[in]  data The data source.
 * \param[out] kind Receives the kind.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_data_get_kind(const fwp_data* data, fwp_data_kind* kind);

/**
 * \brief Makes a data source give one shard of every batch, for data-parallel training (distributed.h).
 *
 * Process `index` of `count` trains on its own part of each global batch, so
 * that `count` processes together take the step one process takes on the
 * whole batch:
 * - token files: the config's batch_size B is the global number of streams
 *   and must be a multiple of count; the shard is the B / count streams
 *   [index B / count, (index + 1) B / count) of the whole layout, and
 *   fwp_token_data_next() then fills [B / count][T].
 * - retrieval generator: fwp_retrieval_data_sample() takes the global
 *   batch_size (a multiple of count), draws the whole batch as one process
 *   would and fills the shard's batch_size / count rows.
 * - pair files: each batch is formed by the token budget as without shards,
 *   then split into count contiguous parts, rows [floor(index B / count),
 *   floor((index + 1) B / count)); fwp_pair_data_peek() reports the part's B
 *   and its own longest S and T. A part can be empty (B = 0 when the batch
 *   has fewer than count pairs): fwp_pair_data_next() with batch_size 0 then
 *   moves on (the arrays may be NULL).
 * Every shard goes through the same global batches, so all processes stand at
 * the same position; a checkpoint stores that position and not the shard, so
 * a run may resume with another number of processes (it re-shards the same
 * global batches). count = 1, index = 0 (the default) gives whole batches.
 * \param[in,out] data  A data source of any kind.
 * \param[in]     index The shard, in [0, count).
 * \param[in]     count The number of shards, >= 1 (for token files a divisor of batch_size).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (nothing changes then).
 */
FWP_API fwp_status fwp_data_set_shard(fwp_data* data, int64_t index, int64_t count);

/**
 * \brief The shard a data source gives (fwp_data_set_shard()).
 * \param[in]  data  A data source.
 * \param[out] index Receives the shard index.
 * \param[out] count Receives the number of shards (1: whole batches).
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_data_get_shard(const fwp_data* data, int64_t* index, int64_t* count);

/* ---- token files (language modelling) -------------------------------------------------------- */

/** \brief Settings of a token data source. Fill with fwp_token_data_config_init(). */
typedef struct fwp_token_data_config {
  uint32_t struct_size;    /**< sizeof(fwp_token_data_config); set by init. */
  int64_t batch_size;      /**< B, the number of parallel streams, >= 1; default 8. */
  int64_t segment_length;  /**< T, the tokens of one stream per batch, >= 1; default 256. */
} fwp_token_data_config;

/**
 * \brief Fills a token data config with the defaults.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_token_data_config_init(fwp_token_data_config* config);

/**
 * \brief Opens a token file (text.h, fwp_token_file_encode()) as a data source of kind FWP_DATA_TOKEN_FILE.
 *
 * The file is memory-mapped and verified whole first (sizes, checksum, every
 * id below its vocabulary size). Its N tokens are read as the authors'
 * ordered iterator reads a corpus: the first B * S tokens, S = floor(N / B),
 * are B contiguous streams (stream b is tokens [b S, (b + 1) S)), and each
 * batch is the next segment of T positions of every stream. An epoch is the
 * floor((S - 1) / T) full segments; the tail of each stream that does not
 * fill a segment (fewer than T positions, which the authors train on as a
 * shorter last batch) and the N mod B tokens after the streams are skipped,
 * and the next epoch starts again with the first segment. A checkpoint stores
 * the position (fwp_checkpoint_save()) together with the file's token count
 * and checksum and the batch layout, and is refused by a source of another
 * file or layout.
 * The file must not be changed while the source uses it.
 * \param[in]  token_path The token file.
 * \param[in]  config     Settings.
 * \param[out] out        Receives the data source (fwp_data_destroy()); NULL on failure.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (a bad field, or a file with fewer than
 *         B (T + 1) tokens), FWP_ERR_IO or FWP_ERR_FORMAT (a damaged file or an id outside the vocabulary).
 */
FWP_API fwp_status fwp_token_data_create(const char* token_path, const fwp_token_data_config* config,
                                         fwp_data** out);

/**
 * \brief Fills the next batch and moves on by one segment.
 *
 * inputs[b][t] is position t of the current segment of stream b, and
 * targets[b][t] the token after it (the next input, or the first token of the
 * next segment for t = T - 1).
 * \param[in,out] data    A token data source.
 * \param[out]    inputs  [B][T] ids.
 * \param[out]    targets [B][T] ids.
 * \param[in]     count   Size of each array: B * T.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (a data source of another kind) or
 *         FWP_ERR_SHAPE_MISMATCH (count); nothing moves on failure.
 */
FWP_API fwp_status fwp_token_data_next(fwp_data* data, int32_t* inputs, int32_t* targets, int64_t count);

/**
 * \brief The settings a token data source was created with.
 * \param[in]  data   A token data source.
 * \param[out] config Receives the settings (struct_size must be set).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind, or a bad struct_size).
 */
FWP_API fwp_status fwp_token_data_get_config(const fwp_data* data, fwp_token_data_config* config);

/**
 * \brief The number of completed epochs (0 during the first).
 * \param[in]  data  A token data source.
 * \param[out] epoch Receives the epoch.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind).
 */
FWP_API fwp_status fwp_token_data_epoch(const fwp_data* data, int64_t* epoch);

/**
 * \brief The segment the next batch comes from, in [0, segments per epoch).
 * \param[in]  data    A token data source.
 * \param[out] segment Receives the segment index within the epoch.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind).
 */
FWP_API fwp_status fwp_token_data_position(const fwp_data* data, int64_t* segment);

/**
 * \brief The number of batches in one epoch, floor((floor(N / B) - 1) / T).
 * \param[in]  data     A token data source.
 * \param[out] segments Receives the number.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind).
 */
FWP_API fwp_status fwp_token_data_segments_per_epoch(const fwp_data* data, int64_t* segments);

/**
 * \brief The vocabulary size recorded in the token file (every id is below it).
 * \param[in]  data       A token data source.
 * \param[out] vocab_size Receives the size.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind).
 */
FWP_API fwp_status fwp_token_data_vocab_size(const fwp_data* data, int64_t* vocab_size);

/**
 * \brief The number of tokens N in the token file.
 * \param[in]  data       A token data source.
 * \param[out] num_tokens Receives N.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind).
 */
FWP_API fwp_status fwp_token_data_num_tokens(const fwp_data* data, int64_t* num_tokens);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_DATA_H */
