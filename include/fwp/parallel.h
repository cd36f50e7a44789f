/**
 * \file parallel.h
 * \brief Parallel text for translation: binary pair files and the pair data source.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_PARALLEL_H
#define FWP_PARALLEL_H

#include "fwp/common.h"
#include "fwp/data.h"
#include "fwp/text.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup parallel Parallel text
 *
 * A parallel corpus is two line-aligned UTF-8 text files, line i of the
 * source file translated by line i of the target file (the WMT convention).
 * fwp_pair_file_encode() encodes both with one tokenizer (the shared
 * vocabulary of both languages: SentencePiece trained on both files, or a
 * word-level vocabulary) into one binary pair file (docs/data.md has the
 * format: header with magic, version, vocabulary size, special ids, counts
 * and a checksum; the ids; a length table). fwp_pair_data_create() opens a
 * pair file as a data source of kind FWP_DATA_PARALLEL_TEXT (the ::fwp_data
 * handle of data.h, so checkpoints store its position as for every kind).
 *
 * **Special ids.** A sequence-to-sequence model needs `<pad>`, `<bos>`,
 * `<eos>` and `<unk>`. `<eos>` and `<unk>` are the tokenizer's (ids 0 and 1).
 * `<pad>` and `<bos>` are the tokenizer's own where it has them; a tokenizer
 * without them (every word-level vocabulary, and SentencePiece models trained
 * without them) gets new ids after its vocabulary: pad = V, bos = V + 1, and
 * the model's vocabulary is then V + 2 (fwp_pair_special_ids() says which).
 * Those added ids never come out of the tokenizer and fwp_tokenizer_decode()
 * refuses them: drop pad, bos and eos from a model's output before decoding.
 *
 * **Batches.** A pair of n source and m target ids is fed as the source
 * x_1..x_n eos (n + 1 positions), the target input bos y_1..y_m and the
 * target output y_1..y_m eos (m + 1 positions each). A batch of B pairs is
 * source [B][S] and targets [B][T], S and T the longest of the batch, every
 * row right-padded with the pad id (pad in the target output means "ignore in
 * the loss"), with each row's length. Batches are formed by a token budget as
 * fairseq's --max-tokens: B * max(S, T) <= max_tokens, and B <= max_sentences
 * when that is set.
 *  @{ */

/** \brief What the encoder does with a pair it cannot keep. Values are fixed. */
typedef enum fwp_pair_policy {
  FWP_PAIR_SKIP = 0, /**< Leave the pair out and count it (fwp_pair_info). */
  FWP_PAIR_ERROR = 1 /**< Fail with FWP_ERR_INVALID_ARGUMENT naming the line; nothing is written. */
} fwp_pair_policy;

/** \brief Settings of fwp_pair_file_encode(). Fill with fwp_pair_encode_config_init(). */
typedef struct fwp_pair_encode_config {
  uint32_t struct_size;        /**< sizeof(fwp_pair_encode_config); set by init. */
  int64_t max_source_tokens;   /**< Longest source sentence in tokens (without the eos the data source adds);
                                    0 (default) = no limit, else >= 1. */
  int64_t max_target_tokens;   /**< Longest target sentence likewise; default 0 = no limit. */
  fwp_pair_policy too_long;    /**< A pair with a side over its limit; default FWP_PAIR_SKIP. */
  fwp_pair_policy empty_lines; /**< A pair with a side of no tokens (empty or blank line); default FWP_PAIR_SKIP. */
} fwp_pair_encode_config;

/**
 * \brief Fills a pair encode config with the defaults.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_pair_encode_config_init(fwp_pair_encode_config* config);

/** \brief What a pair file holds. Set struct_size = sizeof(fwp_pair_info) before passing it. */
typedef struct fwp_pair_info {
  uint32_t struct_size;         /**< sizeof(fwp_pair_info); set by the caller. */
  int64_t vocab_size;           /**< The model's vocabulary: every id and special id is below it. */
  int64_t tokenizer_vocab_size; /**< The tokenizer's (vocab_size minus the special ids added). */
  int32_t pad_id;               /**< `<pad>`: padding of batches, "no loss" in target outputs. */
  int32_t bos_id;               /**< `<bos>`: first target input. */
  int32_t eos_id;               /**< `<eos>`: ends every source and target output. */
  int32_t unk_id;               /**< `<unk>`. */
  int64_t num_pairs;            /**< Pairs in the file, >= 1. */
  int64_t source_tokens;        /**< Source ids in the file (without eos). */
  int64_t target_tokens;        /**< Target ids in the file (without bos/eos). */
  int64_t lines;                /**< Lines of each text file read: num_pairs + both skipped counts. */
  int64_t skipped_empty;        /**< Pairs left out for an empty side. */
  int64_t skipped_too_long;     /**< Pairs left out for a side over its limit. */
  int64_t max_source_tokens;    /**< The encoder's source limit (0: none). */
  int64_t max_target_tokens;    /**< The encoder's target limit (0: none). */
  int64_t longest_source;       /**< Longest source sentence in the file, in ids. */
  int64_t longest_target;       /**< Longest target sentence in the file, in ids. */
} fwp_pair_info;

/**
 * \brief The special ids and model vocabulary of the pair files a tokenizer writes.
 * \param[in]  tokenizer  The tokenizer.
 * \param[out] vocab_size Receives the model's vocabulary size (the tokenizer's plus the ids added); may be NULL.
 * \param[out] pad_id     Receives `<pad>`; may be NULL.
 * \param[out] bos_id     Receives `<bos>`; may be NULL.
 * \param[out] eos_id     Receives `<eos>`; may be NULL.
 * \param[out] unk_id     Receives `<unk>`; may be NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER (tokenizer) or FWP_ERR_INVALID_ARGUMENT (a vocabulary of
 *         FWP_MAX_VOCAB_SIZE without room for the added ids).
 */
FWP_API fwp_status fwp_pair_special_ids(const fwp_tokenizer* tokenizer, int64_t* vocab_size, int32_t* pad_id,
                                        int32_t* bos_id, int32_t* eos_id, int32_t* unk_id);

/**
 * \brief Encodes two line-aligned text files into a pair file.
 *
 * Both files are counted first: different line counts are an error naming
 * both counts, before anything is encoded. Each line is then encoded as
 * fwp_tokenizer_encode() encodes a line (without `<eos>`); pairs with an
 * empty side or a side over its limit are skipped and counted, or refused,
 * as the config says. The pair file is written to a temporary file and
 * renamed into place, so a failure leaves no file behind.
 * \param[in]  tokenizer   The shared tokenizer of both languages.
 * \param[in]  source_path The source text file.
 * \param[in]  target_path The target text file.
 * \param[in]  pair_path   The pair file to write (not one of the text files).
 * \param[in]  config      Settings.
 * \param[out] info        Receives what was written (struct_size set by the caller); may be NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (a bad field or struct_size, files of
 *         different line counts, empty files, no pair left after skipping, a pair refused by
 *         FWP_PAIR_ERROR, or a path given twice), FWP_ERR_IO or FWP_ERR_FORMAT (a line over 64 MiB).
 */
FWP_API fwp_status fwp_pair_file_encode(const fwp_tokenizer* tokenizer, const char* source_path,
                                        const char* target_path, const char* pair_path,
                                        const fwp_pair_encode_config* config, fwp_pair_info* info);

/**
 * \brief Verifies a whole pair file and reports what it holds.
 * \param[in]  path The pair file.
 * \param[out] info Receives the header and the longest sentences (struct_size set by the caller).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (struct_size), FWP_ERR_IO or
 *         FWP_ERR_FORMAT (a truncated, foreign or damaged file, an id outside the vocabulary).
 */
FWP_API fwp_status fwp_pair_file_info(const char* path, fwp_pair_info* info);

/* ---- the pair data source ------------------------------------------------------------------- */

/** \brief Settings of a pair data source. Fill with fwp_pair_data_config_init(). */
typedef struct fwp_pair_data_config {
  uint32_t struct_size;  /**< sizeof(fwp_pair_data_config); set by init. */
  int64_t max_tokens;    /**< Token budget of a batch: B * max(S, T) <= max_tokens; >= 1, default 4096. */
  int64_t max_sentences; /**< Most pairs in a batch; 0 (default) = no limit, else >= 1. */
  int32_t shuffle;       /**< 1 (default, training): pairs grouped by length, batch order shuffled every
                              epoch from the seed. 0 (evaluation): pairs in file order, batches in order. */
  uint64_t seed;         /**< Seed of the batch order (shuffle = 1); default 1. */
} fwp_pair_data_config;

/**
 * \brief Fills a pair data config with the defaults.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_pair_data_config_init(fwp_pair_data_config* config);

/**
 * \brief Opens a pair file as a data source of kind FWP_DATA_PARALLEL_TEXT.
 *
 * The file is memory-mapped and verified whole first. Batches are formed
 * once: with shuffle, the pairs sorted by (target length, source length,
 * index) and cut greedily into batches within the budget, and every epoch
 * visits all batches in an order drawn from (seed, epoch) alone (the same on
 * every platform); without shuffle, the pairs in file order cut greedily, the
 * same sequence every epoch. Every pair is in exactly one batch per epoch. A
 * checkpoint stores the position (fwp_checkpoint_save(): epoch and batch, with
 * the settings and the file's pair count and checksum) and is refused by a
 * source of another file or settings; a resumed run gets the same batches.
 * The file must not be changed while the source uses it.
 * \param[in]  pair_path The pair file.
 * \param[in]  config    Settings.
 * \param[out] out       Receives the data source (fwp_data_destroy()); NULL on failure.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (a bad field, or a pair longer than
 *         max_tokens alone), FWP_ERR_IO or FWP_ERR_FORMAT (a damaged file).
 */
FWP_API fwp_status fwp_pair_data_create(const char* pair_path, const fwp_pair_data_config* config, fwp_data** out);

/**
 * \brief The settings a pair data source was created with.
 * \param[in]  data   A pair data source.
 * \param[out] config Receives the settings (struct_size must be set).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind, or a bad struct_size).
 */
FWP_API fwp_status fwp_pair_data_get_config(const fwp_data* data, fwp_pair_data_config* config);

/**
 * \brief What the pair file of a data source holds.
 * \param[in]  data A pair data source.
 * \param[out] info Receives the file's description (struct_size set by the caller).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind, or a bad struct_size).
 */
FWP_API fwp_status fwp_pair_data_info(const fwp_data* data, fwp_pair_info* info);

/**
 * \brief The shape of the batch fwp_pair_data_next() gives next: ask first, then pass the arrays.
 * \param[in]  data          A pair data source.
 * \param[out] batch_size    Receives B, the pairs of the batch.
 * \param[out] source_length Receives S, the longest source of the batch with its eos.
 * \param[out] target_length Receives T, the longest target of the batch with its bos (or eos).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind).
 */
FWP_API fwp_status fwp_pair_data_peek(const fwp_data* data, int64_t* batch_size, int64_t* source_length,
                                      int64_t* target_length);

/**
 * \brief The largest B, S and T of any batch (each maximised on its own), to allocate arrays once.
 * \param[in]  data          A pair data source.
 * \param[out] batch_size    Receives the largest B.
 * \param[out] source_length Receives the largest S.
 * \param[out] target_length Receives the largest T.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind).
 */
FWP_API fwp_status fwp_pair_data_max_shape(const fwp_data* data, int64_t* batch_size, int64_t* source_length,
                                           int64_t* target_length);

/**
 * \brief Fills the next batch and moves on by one batch (to the next epoch after the last).
 *
 * With a shard set (fwp_data_set_shard()) the batch is this shard's part of
 * the global batch, which may be empty: batch_size 0 (as peek reports) then
 * moves on, and the arrays may be NULL.
 * The shape must be the one fwp_pair_data_peek() reports; the arrays are
 * dense with that shape (arrays sized by fwp_pair_data_max_shape() are large
 * enough, used as [B][S] and [B][T] from their start).
 * \param[in,out] data           A pair data source.
 * \param[in]     batch_size     B.
 * \param[in]     source_length  S.
 * \param[in]     target_length  T.
 * \param[out]    source         [B][S] source ids, each row x_1..x_n eos then pad.
 * \param[out]    source_lengths [B] n + 1 of each row.
 * \param[out]    target_input   [B][T] bos y_1..y_m then pad.
 * \param[out]    target_output  [B][T] y_1..y_m eos then pad.
 * \param[out]    target_lengths [B] m + 1 of each row.
 * \param[out]    pair_indices   [B] each row's pair index in the file (0-based, skipped lines not
 *                               counted); may be NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (another kind) or FWP_ERR_SHAPE_MISMATCH
 *         (a shape other than the next batch's); nothing moves on failure.
 */
FWP_API fwp_status fwp_pair_data_next(fwp_data* data, int64_t batch_size, int64_t source_length,
                                      int64_t target_length, int32_t* source, int32_t* source_lengths,
                                      int32_t* target_input, int32_t* target_output, int32_t* target_lengths,
                                      int64_t* pair_indices);

/**
 * \brief Moves to the first batch of an epoch (e.g. 0 to evaluate a file again from its start).
 * \param[in,out] data  A pair data source.
 * \param[in]     epoch The epoch, >= 0 (with shuffle, its batch order is the one that epoch always has).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind, negative epoch).
 */
FWP_API fwp_status fwp_pair_data_reset(fwp_data* data, int64_t epoch);

/**
 * \brief The number of completed epochs (0 during the first).
 * \param[in]  data  A pair data source.
 * \param[out] epoch Receives the epoch.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind).
 */
FWP_API fwp_status fwp_pair_data_epoch(const fwp_data* data, int64_t* epoch);

/**
 * \brief How many batches of the current epoch were given, in [0, batches per epoch).
 * \param[in]  data  A pair data source.
 * \param[out] batch Receives the position within the epoch.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind).
 */
FWP_API fwp_status fwp_pair_data_position(const fwp_data* data, int64_t* batch);

/**
 * \brief The number of batches in one epoch.
 * \param[in]  data    A pair data source.
 * \param[out] batches Receives the number.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (another kind).
 */
FWP_API fwp_status fwp_pair_data_batches_per_epoch(const fwp_data* data, int64_t* batches);

/**
 * \brief Reads one pair of the file (e.g. the reference of a translated row), without bos/eos.
 *
 * Like fwp_tokenizer_encode(): pass NULL arrays with both capacities 0 to
 * learn the lengths; otherwise both arrays are filled and each capacity must
 * hold its side.
 * \param[in]  data            A pair data source.
 * \param[in]  index           The pair, in [0, num_pairs).
 * \param[out] source          source_capacity ids; may be NULL when source_capacity is 0.
 * \param[in]  source_capacity Size of source, >= 0.
 * \param[out] source_length   Receives the source length n.
 * \param[out] target          target_capacity ids; may be NULL when target_capacity is 0.
 * \param[in]  target_capacity Size of target, >= 0.
 * \param[out] target_length   Receives the target length m.
 * \return FWP_OK (also when both capacities are 0), FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT
 *         (another kind, negative capacity), FWP_ERR_OUT_OF_RANGE (index) or FWP_ERR_SHAPE_MISMATCH
 *         (not both capacities 0, and one below its length; nothing is written then).
 */
FWP_API fwp_status fwp_pair_data_get_pair(const fwp_data* data, int64_t index, int32_t* source,
                                          int64_t source_capacity, int64_t* source_length, int32_t* target,
                                          int64_t target_capacity, int64_t* target_length);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_PARALLEL_H */
