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
 * A data source produces training or evaluation batches: today the seeded
 * generator of the retrieval task (retrieval.h), later token files and
 * parallel text. Every kind is an ::fwp_data; each kind has its own create and
 * sample functions, which reject a source of another kind with
 * FWP_ERR_INVALID_ARGUMENT. A checkpoint can store where a source stands
 * (fwp_checkpoint_save()), so a resumed run reads the data an uninterrupted
 * run would have read.
 *  @{ */

/** \brief Kinds of data source. Values are fixed. */
typedef enum fwp_data_kind {
  FWP_DATA_RETRIEVAL = 0,     /**< Seeded generator of retrieval sequences (fwp_retrieval_data_create()). */
  FWP_DATA_TOKEN_FILE = 1,    /**< Reserved: token files for language modelling. */
  FWP_DATA_PARALLEL_TEXT = 2  /**< Reserved: line-aligned parallel text for translation. */
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

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_DATA_H */
