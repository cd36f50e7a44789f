/**
 * \file checkpoint.h
 * \brief Checkpoints: safetensors files holding a model, its optimizer and its data generator.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_CHECKPOINT_H
#define FWP_CHECKPOINT_H

#include "fwp/optimizer.h"
#include "fwp/retrieval.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup checkpoint Checkpoints
 *
 * Checkpoints are safetensors files: the model's parameters under their names,
 * the optimizer's moments under "optimizer/...", and in `__metadata__` the
 * model config, optimizer config and step, the data generator's state and the
 * caller's own metadata. They are written to a temporary file and renamed into
 * place, so a failed save never destroys the previous file.
 *  @{ */

/**
 * \brief Saves a model (and optionally its optimizer and data generator) to a file.
 * \param[in] path     Destination file name.
 * \param[in] model    The model.
 * \param[in] opt      Its optimizer, or NULL.
 * \param[in] data     The retrieval data generator to resume from, or NULL.
 * \param[in] user_metadata A NUL-terminated string stored as metadata "user", or NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_CONTEXT_MISMATCH (optimizer of another model) or FWP_ERR_IO.
 */
FWP_API fwp_status fwp_checkpoint_save(const char* path, const fwp_model* model, const fwp_optimizer* opt,
                                       const fwp_retrieval_data* data, const char* user_metadata);

/**
 * \brief Loads a checkpoint into existing objects whose configuration matches the file.
 *
 * Either everything is loaded or nothing is changed.
 * \param[in]     path  The file.
 * \param[in,out] model The model to fill.
 * \param[in,out] opt   The optimizer to restore, or NULL (the file must then hold no optimizer or it is skipped).
 * \param[in,out] data  The data generator to restore, or NULL.
 * \return FWP_OK, FWP_ERR_IO, FWP_ERR_FORMAT (truncated, corrupted or foreign file, or a config mismatch).
 */
FWP_API fwp_status fwp_checkpoint_load(const char* path, fwp_model* model, fwp_optimizer* opt,
                                       fwp_retrieval_data* data);

/**
 * \brief Creates a model from the configuration and parameters stored in a checkpoint.
 * \param[in]  ctx  The context for the new model.
 * \param[in]  path The file.
 * \param[out] out  Receives the model (fwp_model_destroy()).
 * \return FWP_OK, FWP_ERR_IO or FWP_ERR_FORMAT.
 */
FWP_API fwp_status fwp_model_load(fwp_context* ctx, const char* path, fwp_model** out);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_CHECKPOINT_H */
