/**
 * \file text.h
 * \brief Text for language modelling: tokenizers (word level, SentencePiece) and binary token files.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h. The data source that feeds token files to a model is in
 * data.h (fwp_token_data_create()).
 */
#ifndef FWP_TEXT_H
#define FWP_TEXT_H

#include "fwp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup text Tokenizers and token files
 *
 * A tokenizer maps text to int32 token ids and back. Two kinds exist:
 *
 * - **Word level** (FWP_TOKENIZER_WORD), the WikiText conventions of the
 *   authors' toolkit (lmtool-fwp, utils/vocabulary.py): a line is split at
 *   whitespace (ASCII whitespace, the separators U+001C..U+001F, and the
 *   Unicode spaces Python's str.split() knows, e.g. U+00A0, U+2000..U+200A,
 *   U+3000); every line end, blank lines included, is the token `<eos>`; a
 *   word outside the vocabulary is `<unk>`, and the words `<eos>` and `<unk>`
 *   in a text are those tokens. Id 0 is `<eos>`; the other ids are sorted by
 *   descending count in the training text, ties by first occurrence (as
 *   Python's Counter.most_common() orders them), so a frequency cut-off of an
 *   adaptive softmax is an id cut-off. `<unk>` takes its place in that order
 *   with the count of the word `<unk>` plus the counts of every word the
 *   cut-offs removed (on WikiText-103, whose text spells unknown words
 *   `<unk>`, this gives exactly the authors' vocabulary); if that count is 0
 *   it is the last id. Words are byte strings: bytes that are not valid UTF-8
 *   are kept as they are, and decoding reproduces them. Words longer than
 *   FWP_MAX_WORD_BYTES bytes are never in the vocabulary (they encode as `<unk>`).
 *   Decoding joins the words of a line with single spaces and ends every line
 *   with "\n": encode then decode gives the text with its whitespace
 *   normalised (lines stripped, runs of spaces made one).
 * - **SentencePiece** (FWP_TOKENIZER_SENTENCEPIECE): BPE or unigram subwords
 *   trained with the SentencePiece library (Debian's libsentencepiece),
 *   available when fwp_tokenizer_sentencepiece_available() returns 1 (else the
 *   functions return FWP_ERR_UNSUPPORTED). Each line is encoded by
 *   SentencePiece (NFKC normalisation, whitespace collapsed); `<eos>` (id 0)
 *   ends every line, `<unk>` is id 1; a model trained with pad_bos also has
 *   `<pad>` (id 2) and `<bos>` (id 3), which encoding never produces and
 *   decoding drops. Invalid UTF-8 bytes are replaced by
 *   U+FFFD before encoding (they cannot be reproduced by decoding).
 *
 * Lines end at "\n", "\r\n" or a lone "\r" (as Python reads text files), and
 * decoding writes "\n". Lines read from files may be at most 64 MiB long.
 *
 * Token files hold a whole encoded corpus for training and evaluation:
 * fwp_token_file_encode() writes one, fwp_token_data_create() (data.h)
 * memory-maps one as a data source, fwp_token_file_read() reads a range of it.
 *  @{ */

/** \brief A tokenizer of any kind. */
typedef struct fwp_tokenizer fwp_tokenizer;

/** \brief Kinds of tokenizer. Values are fixed. */
typedef enum fwp_tokenizer_kind {
  FWP_TOKENIZER_WORD = 0,          /**< Word level, WikiText conventions. */
  FWP_TOKENIZER_SENTENCEPIECE = 1  /**< SentencePiece subwords (BPE or unigram). */
} fwp_tokenizer_kind;

/** \brief SentencePiece model types. Values are fixed. */
typedef enum fwp_sentencepiece_model {
  FWP_SENTENCEPIECE_UNIGRAM = 0,  /**< Unigram language model (SentencePiece's default). */
  FWP_SENTENCEPIECE_BPE = 1       /**< Byte-pair encoding. */
} fwp_sentencepiece_model;

/** \brief Longest word (in bytes) a word-level vocabulary holds; longer words encode as `<unk>`. */
#define FWP_MAX_WORD_BYTES 1024

/** \brief Largest vocabulary of any tokenizer (2^24). */
#define FWP_MAX_VOCAB_SIZE 16777216

/** \brief Settings of word-level training. Fill with fwp_word_tokenizer_config_init(). */
typedef struct fwp_word_tokenizer_config {
  uint32_t struct_size; /**< sizeof(fwp_word_tokenizer_config); set by init. */
  int64_t min_count;    /**< Words seen fewer times are left out (become `<unk>`); >= 1, default 1. */
  int64_t max_size;     /**< Largest vocabulary, `<eos>` and `<unk>` included: the most frequent words are
                             kept; 0 (default) = no limit, else >= 2. */
} fwp_word_tokenizer_config;

/**
 * \brief Fills a word-level config with the defaults.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_word_tokenizer_config_init(fwp_word_tokenizer_config* config);

/** \brief Settings of SentencePiece training. Fill with fwp_sentencepiece_config_init(). */
typedef struct fwp_sentencepiece_config {
  uint32_t struct_size;                /**< sizeof(fwp_sentencepiece_config); set by init. */
  fwp_sentencepiece_model model_type;  /**< Default FWP_SENTENCEPIECE_UNIGRAM. */
  int64_t vocab_size;                  /**< Vocabulary size, `<eos>` and `<unk>` included; in [3, 2^24],
                                            default 8000. The text must have enough distinct pieces. */
  float character_coverage;            /**< Share of the text's characters the vocabulary covers, in
                                            [0.98, 1] (SentencePiece's range); the rarest others become
                                            `<unk>`. Default 1. */
  int32_t byte_fallback;               /**< 1: characters outside the vocabulary become byte pieces instead of
                                            `<unk>` (the vocabulary then holds 256 byte pieces). Default 0. */
  int32_t num_threads;                 /**< Training threads, in [1, 128]; default 1. The model depends only
                                            on the text and this config (num_threads included). */
  int64_t max_sentence_length;         /**< Lines longer than this many bytes are left out of training (not
                                            of encoding); in [1, 2^26], default 16384. */
  int32_t verbose;                     /**< 1: SentencePiece prints its training log to stderr; default 0. */
  int32_t pad_bos;                     /**< 1: the vocabulary also holds `<pad>` (id 2) and `<bos>` (id 3), the
                                            special ids of translation (parallel.h), and vocab_size must be
                                            >= 5; default 0 (language models need neither; a tokenizer without
                                            them gets added ids in pair files, fwp_pair_special_ids()). */
} fwp_sentencepiece_config;

/**
 * \brief Fills a SentencePiece config with the defaults.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_sentencepiece_config_init(fwp_sentencepiece_config* config);

/**
 * \brief Whether this build has SentencePiece.
 * \return 1 if SentencePiece tokenizers can be trained and loaded, 0 if those calls return FWP_ERR_UNSUPPORTED.
 */
FWP_API int fwp_tokenizer_sentencepiece_available(void);

/**
 * \brief Builds a word-level vocabulary from text files.
 *
 * The files are read line by line (never whole) and counted in order; the
 * ids follow the rules of the word level above.
 * \param[in]  paths     num_paths file names.
 * \param[in]  num_paths Number of files, >= 1.
 * \param[in]  config    Settings.
 * \param[out] out       Receives the tokenizer (fwp_tokenizer_destroy()); NULL on failure.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (a bad field, files without any word,
 *         or more than FWP_MAX_VOCAB_SIZE words kept: set max_size), FWP_ERR_IO or FWP_ERR_FORMAT
 *         (a line over 64 MiB).
 */
FWP_API fwp_status fwp_tokenizer_train_word(const char* const* paths, int64_t num_paths,
                                            const fwp_word_tokenizer_config* config, fwp_tokenizer** out);

/**
 * \brief Trains a SentencePiece model on text files, one sentence per line.
 *
 * Deterministic: the same files and config give the same model. Nothing is
 * written to disk.
 * \param[in]  paths     num_paths file names.
 * \param[in]  num_paths Number of files, >= 1.
 * \param[in]  config    Settings.
 * \param[out] out       Receives the tokenizer (fwp_tokenizer_destroy()); NULL on failure.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (a bad field, files without text, or
 *         SentencePiece refusing the settings, e.g. a vocabulary larger than the text allows),
 *         FWP_ERR_IO, FWP_ERR_FORMAT (a line over 64 MiB) or FWP_ERR_UNSUPPORTED (no SentencePiece).
 */
FWP_API fwp_status fwp_tokenizer_train_sentencepiece(const char* const* paths, int64_t num_paths,
                                                     const fwp_sentencepiece_config* config, fwp_tokenizer** out);

/**
 * \brief Saves a tokenizer to a file (written to a temporary file and renamed into place).
 * \param[in] tokenizer The tokenizer.
 * \param[in] path      Destination file name.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (empty path) or FWP_ERR_IO.
 */
FWP_API fwp_status fwp_tokenizer_save(const fwp_tokenizer* tokenizer, const char* path);

/**
 * \brief Loads a tokenizer saved by fwp_tokenizer_save().
 *
 * Every field and a checksum are verified before anything is built: a
 * truncated, damaged or foreign file gives FWP_ERR_FORMAT.
 * \param[in]  path The file.
 * \param[out] out  Receives the tokenizer (fwp_tokenizer_destroy()); NULL on failure.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_IO, FWP_ERR_FORMAT or FWP_ERR_UNSUPPORTED (a
 *         SentencePiece file in a build without SentencePiece).
 */
FWP_API fwp_status fwp_tokenizer_load(const char* path, fwp_tokenizer** out);

/**
 * \brief Destroys a tokenizer.
 * \param[in] tokenizer The tokenizer; NULL is a no-op.
 */
FWP_API void fwp_tokenizer_destroy(fwp_tokenizer* tokenizer);

/**
 * \brief The kind of a tokenizer.
 * \param[in]  tokenizer The tokenizer.
 * \param[out] kind      Receives the kind.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_tokenizer_get_kind(const fwp_tokenizer* tokenizer, fwp_tokenizer_kind* kind);

/**
 * \brief The number of token ids; every id is in [0, vocab_size).
 * \param[in]  tokenizer  The tokenizer.
 * \param[out] vocab_size Receives the size.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_tokenizer_vocab_size(const fwp_tokenizer* tokenizer, int64_t* vocab_size);

/**
 * \brief The id of `<eos>`, the token of every line end (0 for both kinds).
 * \param[in]  tokenizer The tokenizer.
 * \param[out] id        Receives the id.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_tokenizer_eos_id(const fwp_tokenizer* tokenizer, int32_t* id);

/**
 * \brief The id of `<unk>`, the token of unknown words or characters.
 * \param[in]  tokenizer The tokenizer.
 * \param[out] id        Receives the id.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_tokenizer_unk_id(const fwp_tokenizer* tokenizer, int32_t* id);

/**
 * \brief Looks up one token of the vocabulary by its exact bytes.
 *
 * For SentencePiece the token is a piece as id_to_token() spells it (word
 * starts carry U+2581). This is a lookup, not an encoding: nothing is split.
 * \param[in]  tokenizer The tokenizer.
 * \param[in]  token     The token's bytes (need not be NUL-terminated; may be NULL when length is 0).
 * \param[in]  length    Number of bytes.
 * \param[out] id        Receives the id, or -1 if the vocabulary has no such token.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_tokenizer_token_to_id(const fwp_tokenizer* tokenizer, const char* token, size_t length,
                                             int32_t* id);

/**
 * \brief The token of an id, like snprintf.
 *
 * Writes at most capacity - 1 bytes of the token and a terminating NUL
 * (nothing when capacity is 0) and sets *length to the token's full length
 * in bytes; a truncated copy is not an error (compare *length with capacity).
 * \param[in]  tokenizer The tokenizer.
 * \param[in]  id        An id in [0, vocab size).
 * \param[out] buffer    capacity bytes; may be NULL when capacity is 0.
 * \param[in]  capacity  Size of buffer.
 * \param[out] length    Receives the token's length in bytes (without NUL).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_OUT_OF_RANGE (id).
 */
FWP_API fwp_status fwp_tokenizer_id_to_token(const fwp_tokenizer* tokenizer, int32_t id, char* buffer,
                                             size_t capacity, size_t* length);

/**
 * \brief Encodes text to token ids.
 *
 * Every line end in the text is `<eos>`; add_eos = 1 also ends a last line
 * that has no terminator (an empty text stays empty), which is how a text
 * file is encoded. Call with ids = NULL and capacity = 0 to learn the count.
 * \param[in]  tokenizer The tokenizer.
 * \param[in]  text      length bytes (need not be NUL-terminated; may be NULL when length is 0).
 * \param[in]  length    Number of bytes.
 * \param[in]  add_eos   0 or 1.
 * \param[out] ids       capacity ids; may be NULL when capacity is 0.
 * \param[in]  capacity  Size of ids, >= 0.
 * \param[out] count     Receives the number of ids of the text (also when capacity is too small).
 * \return FWP_OK (also for ids = NULL, capacity = 0), FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT
 *         (add_eos, negative capacity), or FWP_ERR_SHAPE_MISMATCH when capacity < *count (ids is then
 *         left untouched).
 */
FWP_API fwp_status fwp_tokenizer_encode(const fwp_tokenizer* tokenizer, const char* text, size_t length,
                                        int32_t add_eos, int32_t* ids, int64_t capacity, int64_t* count);

/**
 * \brief Decodes token ids to text.
 *
 * `<eos>` becomes "\n"; the ids between two `<eos>` become one line (word
 * level: the words joined by single spaces). The text is NUL-terminated. Call
 * with text = NULL and capacity = 0 to learn the length.
 * \param[in]  tokenizer The tokenizer.
 * \param[in]  ids       num_ids ids, each in [0, vocab size); may be NULL when num_ids is 0.
 * \param[in]  num_ids   Number of ids, >= 0.
 * \param[out] text      capacity bytes; may be NULL when capacity is 0.
 * \param[in]  capacity  Size of text in bytes.
 * \param[out] length    Receives the text's length in bytes without the NUL (also when capacity is too small).
 * \return FWP_OK (also for text = NULL, capacity = 0), FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT
 *         (negative num_ids), FWP_ERR_OUT_OF_RANGE (an id outside the vocabulary; *length is then 0), or
 *         FWP_ERR_SHAPE_MISMATCH when capacity < *length + 1 (text is then left untouched).
 */
FWP_API fwp_status fwp_tokenizer_decode(const fwp_tokenizer* tokenizer, const int32_t* ids, int64_t num_ids,
                                        char* text, size_t capacity, size_t* length);

/* ---- token files ---------------------------------------------------------------------------- */

/**
 * \brief Encodes a text file into a binary token file.
 *
 * The text is read line by line (never whole) and encoded as
 * fwp_tokenizer_encode() with add_eos = 1 would. The token file holds a
 * header (magic, format version, vocabulary size, token count, a checksum of
 * all of them and of the ids) and the ids as little-endian int32. It is
 * written to a temporary file and renamed into place.
 * \param[in]  tokenizer  The tokenizer.
 * \param[in]  text_path  The text file.
 * \param[in]  token_path The token file to write (not the text file itself).
 * \param[out] num_tokens Receives the number of tokens written; may be NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (an empty text file, or the same path
 *         twice), FWP_ERR_IO or FWP_ERR_FORMAT (a line over 64 MiB).
 */
FWP_API fwp_status fwp_token_file_encode(const fwp_tokenizer* tokenizer, const char* text_path,
                                         const char* token_path, int64_t* num_tokens);

/**
 * \brief Verifies a whole token file and reports its sizes.
 *
 * Checks the header, the file size, the checksum and that every id is below
 * the vocabulary size (one pass over the file).
 * \param[in]  path       The token file.
 * \param[out] vocab_size Receives the vocabulary size of its tokenizer; may be NULL.
 * \param[out] num_tokens Receives the number of tokens; may be NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER (path), FWP_ERR_IO or FWP_ERR_FORMAT.
 */
FWP_API fwp_status fwp_token_file_info(const char* path, int64_t* vocab_size, int64_t* num_tokens);

/**
 * \brief Reads a range of ids from a token file (e.g. an evaluation stream in pieces).
 *
 * Checks the header and file size, and every id it returns against the
 * vocabulary size (the checksum of the whole file is fwp_token_file_info()'s job).
 * \param[in]  path   The token file.
 * \param[in]  offset First token to read, >= 0.
 * \param[out] out    count ids.
 * \param[in]  count  Number of ids, >= 0; offset + count must not exceed the token count.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE (the range), FWP_ERR_IO or FWP_ERR_FORMAT.
 */
FWP_API fwp_status fwp_token_file_read(const char* path, int64_t offset, int32_t* out, int64_t count);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_TEXT_H */
