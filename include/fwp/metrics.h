/**
 * \file metrics.h
 * \brief Translation metrics: corpus BLEU and chrF, as the sacrebleu package computes them.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, config structs, threads) are stated once in fwp.h.
 */
#ifndef FWP_METRICS_H
#define FWP_METRICS_H

#include "fwp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup metrics Translation metrics
 *
 * Corpus-level scores of hypotheses (system translations) against one or
 * more reference translations, matching the sacrebleu package (Post, 2018;
 * PyPI `sacrebleu` 2.x) to rounding with its defaults: fwp's tests compare
 * both metrics with sacrebleu's on fixtures (tests/fixtures/mt_metrics.json)
 * to 0.01.
 *
 * - **BLEU** (Papineni et al., 2002): sacrebleu's corpus_bleu. Each line is
 *   stripped of trailing whitespace and tokenized with the "13a" tokenizer of
 *   mteval-v13a.pl (punctuation split off, periods and commas kept inside
 *   numbers); n-grams of orders 1..4 are clipped by their largest count in
 *   any one reference; the brevity penalty uses, per sentence, the reference
 *   length closest to the hypothesis's (the shorter one on a tie); zero
 *   counts are smoothed with the "exp" method (mteval's: the k-th order
 *   without a match gets precision 1 / (2^k * total)). Case-sensitive (there
 *   is no lowercase option: lowercase the texts first for lowercased BLEU).
 *   The usual signature is "nrefs:N|case:mixed|eff:no|tok:13a|smooth:exp|version:2.x".
 * - **chrF** (Popović, 2015): sacrebleu's CHRF: character n-grams of orders
 *   1..6 of each line with its whitespace removed, averaged precision and
 *   recall over the orders, F-beta with beta 2, statistics of the reference
 *   with the best sentence-level score summed over the corpus. word_order 2
 *   gives chrF++.
 *
 * Texts are NUL-terminated UTF-8 strings; invalid UTF-8 (as Python's strict
 * decoder sees it) is refused with FWP_ERR_INVALID_ARGUMENT naming the string
 * and byte. A line may hold anything else, "\n" included (13a joins "-\n" and
 * turns other newlines into spaces, as sacrebleu does); empty lines are
 * allowed. "Whitespace" is what Python's str.split() splits at.
 *
 * Arguments of fwp_bleu() and fwp_chrf(): `hypotheses` holds num_sentences
 * strings; `references` holds num_refs pointers, each to an array of
 * num_sentences strings (reference stream r gives references[r][i] for
 * hypotheses[i]). num_sentences is in [1, 2^31), num_refs in [1, 1024]; no
 * string may be NULL.
 *  @{ */

/** \brief The highest BLEU n-gram order (the size of the per-order arrays of fwp_bleu_result). */
#define FWP_BLEU_MAX_NGRAM_ORDER 4

/** \brief The highest chrF character or word n-gram order. */
#define FWP_CHRF_MAX_ORDER 32

/** \brief BLEU tokenizers (sacrebleu's `tokenize`). Values are fixed. */
typedef enum fwp_bleu_tokenizer {
  FWP_BLEU_TOKENIZE_13A = 0,  /**< mteval-v13a (sacrebleu's default, "13a"). */
  FWP_BLEU_TOKENIZE_NONE = 1  /**< Split at whitespace only ("none"): for pre-tokenized text. */
} fwp_bleu_tokenizer;

/** \brief BLEU smoothing of n-gram orders without matches (sacrebleu's `smooth_method`). Values are fixed. */
typedef enum fwp_bleu_smoothing {
  FWP_BLEU_SMOOTH_EXP = 0,    /**< "exp" (default): the k-th order without a match gets 1 / (2^k * total). */
  FWP_BLEU_SMOOTH_NONE = 1,   /**< "none": an order without a match makes BLEU 0. */
  FWP_BLEU_SMOOTH_FLOOR = 2,  /**< "floor": an order without a match gets smooth_value / total. */
  FWP_BLEU_SMOOTH_ADD_K = 3   /**< "add-k": smooth_value is added to the matches and totals of orders >= 2. */
} fwp_bleu_smoothing;

/** \brief BLEU settings. Fill with fwp_bleu_options_init(); the defaults are sacrebleu's. */
typedef struct fwp_bleu_options {
  uint32_t struct_size;             /**< sizeof(fwp_bleu_options); set by init. */
  fwp_bleu_tokenizer tokenize;      /**< Default FWP_BLEU_TOKENIZE_13A. */
  fwp_bleu_smoothing smooth_method; /**< Default FWP_BLEU_SMOOTH_EXP. */
  double smooth_value;              /**< For floor and add-k; negative (default -1): their defaults 0.1 and 1.
                                         Must be finite. */
  int32_t max_ngram_order;          /**< Highest n-gram order, in [1, FWP_BLEU_MAX_NGRAM_ORDER]; default 4. */
  int32_t effective_order;          /**< 1: average only the orders up to the last one with n-grams in the
                                         hypotheses (for single sentences); default 0. */
} fwp_bleu_options;

/** \brief A BLEU score and its statistics (sacrebleu's BLEUScore). Prepare with fwp_bleu_result_init(). */
typedef struct fwp_bleu_result {
  uint32_t struct_size;                          /**< sizeof(fwp_bleu_result); set by init. */
  double score;                                  /**< BLEU in [0, 100]. */
  double precisions[FWP_BLEU_MAX_NGRAM_ORDER];   /**< Smoothed n-gram precisions in percent; orders above
                                                      max_ngram_order are 0. */
  double brevity_penalty;                        /**< In [0, 1]. */
  double ratio;                                  /**< hyp_len / ref_len (0 if ref_len is 0). */
  int64_t hyp_len;                               /**< Tokens of the hypotheses. */
  int64_t ref_len;                               /**< Tokens of the closest references. */
  int64_t counts[FWP_BLEU_MAX_NGRAM_ORDER];      /**< Clipped n-gram matches of each order (before add-k). */
  int64_t totals[FWP_BLEU_MAX_NGRAM_ORDER];      /**< N-grams of each order in the hypotheses (before add-k). */
} fwp_bleu_result;

/** \brief chrF settings. Fill with fwp_chrf_options_init(); the defaults are sacrebleu's chrF. */
typedef struct fwp_chrf_options {
  uint32_t struct_size;  /**< sizeof(fwp_chrf_options); set by init. */
  int32_t char_order;    /**< Character n-gram orders 1..char_order, in [0, FWP_CHRF_MAX_ORDER]; default 6. */
  int32_t word_order;    /**< Word n-gram orders 1..word_order, in [0, FWP_CHRF_MAX_ORDER]; default 0 (chrF);
                              2 is chrF++. char_order + word_order must be >= 1. */
  double beta;           /**< Weight of recall against precision, finite and >= 0; default 2. */
  int32_t whitespace;    /**< 1: keep whitespace inside character n-grams; default 0 (removed). */
  int32_t eps_smoothing; /**< 1: average the orders' F-scores with epsilon smoothing (chrF++.py, NLTK, Moses);
                              default 0 (sacrebleu's: F of the averaged precision and recall). */
} fwp_chrf_options;

/** \brief A chrF score. Prepare with fwp_chrf_result_init(). */
typedef struct fwp_chrf_result {
  uint32_t struct_size; /**< sizeof(fwp_chrf_result); set by init. */
  double score;         /**< chrF in [0, 100]. */
} fwp_chrf_result;

/**
 * \brief Fills BLEU settings with the defaults (sacrebleu's).
 * \param[out] options The struct to fill; NULL is ignored.
 */
FWP_API void fwp_bleu_options_init(fwp_bleu_options* options);

/**
 * \brief Prepares a BLEU result: zeros and struct_size.
 * \param[out] result The struct to fill; NULL is ignored.
 */
FWP_API void fwp_bleu_result_init(fwp_bleu_result* result);

/**
 * \brief Fills chrF settings with the defaults (sacrebleu's chrF).
 * \param[out] options The struct to fill; NULL is ignored.
 */
FWP_API void fwp_chrf_options_init(fwp_chrf_options* options);

/**
 * \brief Prepares a chrF result: zeros and struct_size.
 * \param[out] result The struct to fill; NULL is ignored.
 */
FWP_API void fwp_chrf_result_init(fwp_chrf_result* result);

/**
 * \brief Corpus BLEU of hypotheses against one or more reference streams.
 * \param hypotheses num_sentences UTF-8 strings.
 * \param num_sentences Sentences, in [1, 2^31).
 * \param references num_refs arrays of num_sentences UTF-8 strings.
 * \param num_refs Reference streams, in [1, 1024].
 * \param options Settings (from fwp_bleu_options_init()); NULL for the defaults.
 * \param[out] result Receives the score (its struct_size must be set, e.g. by fwp_bleu_result_init()).
 * \return FWP_OK; FWP_ERR_NULL_POINTER (a NULL array, string or result); FWP_ERR_INVALID_ARGUMENT (a count or
 *         option out of range, a bad struct_size, invalid UTF-8); FWP_ERR_OUT_OF_RANGE (an enum value).
 *         On failure the result is unchanged.
 */
FWP_API fwp_status fwp_bleu(const char* const* hypotheses, int64_t num_sentences,
                            const char* const* const* references, int64_t num_refs,
                            const fwp_bleu_options* options, fwp_bleu_result* result);

/**
 * \brief Corpus chrF of hypotheses against one or more reference streams.
 *
 * Arguments and errors as fwp_bleu().
 * \param hypotheses num_sentences UTF-8 strings.
 * \param num_sentences Sentences, in [1, 2^31).
 * \param references num_refs arrays of num_sentences UTF-8 strings.
 * \param num_refs Reference streams, in [1, 1024].
 * \param options Settings (from fwp_chrf_options_init()); NULL for the defaults.
 * \param[out] result Receives the score (its struct_size must be set, e.g. by fwp_chrf_result_init()).
 * \return As fwp_bleu().
 */
FWP_API fwp_status fwp_chrf(const char* const* hypotheses, int64_t num_sentences,
                            const char* const* const* references, int64_t num_refs,
                            const fwp_chrf_options* options, fwp_chrf_result* result);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* FWP_METRICS_H */
