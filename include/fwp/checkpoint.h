/**
 * \file checkpoint.h
 * \brief Checkpoints: safetensors files holding a model, its optimizer and the state of a data source.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_CHECKPOINT_H
#define FWP_CHECKPOINT_H

#include "fwp/data.h"
#include "fwp/model.h"
#include "fwp/optimizer.h"
#include "fwp/state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup checkpoint Checkpoints
 *
 * Checkpoints are safetensors files: the model's parameters under their names,
 * the optimizer's moments under "optimizer/...", and in `__metadata__` the
 * model's kind and config, the optimizer config and step, the kind, config
 * and position of a data source, and the caller's own metadata. They are
 * written to a temporary file and renamed into place, so a failed save never
 * destroys the previous file. Models of every kind and data sources of every
 * kind are saved and loaded by the same functions.
 *  @{ */

/**
 * \brief Saves a model (and optionally its optimizer and the state of a data source) to a file.
 * \param[in] path     Destination file name.
 * \param[in] model    The model.
 * \param[in] opt      Its optimizer, or NULL.
 * \param[in] data     A data source of any kind (e.g. an ::fwp_retrieval_data) whose position to store, or NULL.
 * \param[in] user_metadata A NUL-terminated string stored as metadata "user", or NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_CONTEXT_MISMATCH (optimizer of another model),
 *         FWP_ERR_INVALID_ARGUMENT (user_metadata not valid UTF-8 or over 16 MiB) or FWP_ERR_IO.
 */
FWP_API fwp_status fwp_checkpoint_save(const char* path, const fwp_model* model, const fwp_optimizer* opt,
                                       const fwp_data* data, const char* user_metadata);

/**
 * \brief Loads a checkpoint into existing objects whose configuration matches the file.
 *
 * Either everything is loaded or nothing is changed. A data source must be of
 * the kind and configuration stored in the file (e.g. the same retrieval
 * setting and S).
 * \param[in]     path  The file.
 * \param[in,out] model The model to fill.
 * \param[in,out] opt   The optimizer to restore, or NULL (the file must then hold no optimizer or it is skipped).
 * \param[in,out] data  A data source to restore to the stored position, or NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_CONTEXT_MISMATCH (optimizer of another model), FWP_ERR_IO,
 *         or FWP_ERR_FORMAT (truncated, corrupted or foreign file, or a model, optimizer or data source of
 *         another kind or configuration than the file's).
 */
FWP_API fwp_status fwp_checkpoint_load(const char* path, fwp_model* model, fwp_optimizer* opt,
                                       fwp_data* data);

/**
 * \brief Saves like fwp_checkpoint_save() and also a run state (fast weights or key/value caches).
 *
 * For training that carries memory across segments (the paper's "carry over" model), so that a
 * resumed run continues from the same memory; also to keep a decoding state. The state's batch,
 * its per-layer contents and positions are stored; an empty state is stored as empty.
 * \param[in] path, model, opt, data, user_metadata As for fwp_checkpoint_save().
 * \param[in] state A state of this model (fwp_state_create()); NULL saves none.
 * \return As fwp_checkpoint_save(), and FWP_ERR_CONTEXT_MISMATCH (a state of another context) or
 *         FWP_ERR_SHAPE_MISMATCH (a state made for another model or layer).
 */
FWP_API fwp_status fwp_checkpoint_save_with_state(const char* path, const fwp_model* model, const fwp_optimizer* opt,
                                                  const fwp_data* data, const fwp_state* state,
                                                  const char* user_metadata);

/**
 * \brief Loads like fwp_checkpoint_load() and also the run state stored by fwp_checkpoint_save_with_state().
 *
 * The state takes the file's batch, contents and positions. Either everything is loaded or nothing
 * is changed.
 * \param[in]     path, model, opt, data As for fwp_checkpoint_load().
 * \param[in,out] state A state of this model; NULL ignores a stored state.
 * \return As fwp_checkpoint_load(), and FWP_ERR_FORMAT when the file holds no run state,
 *         FWP_ERR_CONTEXT_MISMATCH or FWP_ERR_SHAPE_MISMATCH (a state of another context or model).
 */
FWP_API fwp_status fwp_checkpoint_load_with_state(const char* path, fwp_model* model, fwp_optimizer* opt,
                                                  fwp_data* data, fwp_state* state);

/**
 * \brief Creates a model from the kind, configuration and parameters stored in a checkpoint.
 * \param[in]  ctx  The context for the new model.
 * \param[in]  path The file.
 * \param[out] out  Receives the model (fwp_model_destroy()).
 * \return FWP_OK, FWP_ERR_IO or FWP_ERR_FORMAT (also for a model kind this library does not know).
 */
FWP_API fwp_status fwp_model_load(fwp_context* ctx, const char* path, fwp_model** out);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_CHECKPOINT_H */
