/**
 * \file model.h
 * \brief Models: complete networks with a loss; the interface every kind of model shares.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_MODEL_H
#define FWP_MODEL_H

#include "fwp/context.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup model Models
 *
 * A model is a complete network with a loss (e.g. the paper's associative
 * retrieval model). Models share one interface for parameters, gradients,
 * backward and checkpoints; each kind has its own create and forward functions.
 *  @{ */

/** \brief Kinds of model. Values are fixed. */
typedef enum fwp_model_kind {
  FWP_MODEL_RETRIEVAL = 0,  /**< The paper's synthetic associative-retrieval model (section 6.1). */
  FWP_MODEL_LANGUAGE = 1,   /**< The language model (section 6.3; lm.h). */
  FWP_MODEL_SEQ2SEQ = 2     /**< The encoder-decoder translation model (section 6.2; seq2seq.h). */
} fwp_model_kind;

/** \brief A network with its parameters, gradients and loss. */
typedef struct fwp_model fwp_model;

/**
 * \brief Destroys a model.
 * \param[in] model The model; NULL is a no-op.
 */
FWP_API void fwp_model_destroy(fwp_model* model);

/**
 * \brief The kind of a model.
 * \param[in]  model The model.
 * \param[out] kind  Receives the kind.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_model_get_kind(const fwp_model* model, fwp_model_kind* kind);

/**
 * \brief Switches between training (1, the default) and evaluation (0) mode.
 * \param[in] model    The model.
 * \param[in] training 1 or 0.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT.
 */
FWP_API fwp_status fwp_model_set_training(fwp_model* model, int training);

/** \brief The number of parameter tensors. \param[in] model The model. \param[out] count Receives it.
 *  \return FWP_OK or FWP_ERR_NULL_POINTER. */
FWP_API fwp_status fwp_model_num_params(const fwp_model* model, int64_t* count);

/** \brief Describes a parameter. \param[in] model The model. \param[in] index 0 <= index < count.
 *  \param[out] info Receives the description. \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_OUT_OF_RANGE. */
FWP_API fwp_status fwp_model_param_info(const fwp_model* model, int64_t index, fwp_param_info* info);

/** \brief Finds a parameter by name. \param[in] model The model. \param[in] name The name.
 *  \param[out] index Receives its index. \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT. */
FWP_API fwp_status fwp_model_param_index(const fwp_model* model, const char* name, int64_t* index);

/** \brief Copies a parameter out. \param[in] model The model. \param[in] index Parameter index.
 *  \param[out] data numel floats. \param[in] count Must equal numel.
 *  \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE or FWP_ERR_SHAPE_MISMATCH. */
FWP_API fwp_status fwp_model_get_param(const fwp_model* model, int64_t index, float* data, int64_t count);

/** \brief Overwrites a parameter. \param[in] model The model. \param[in] index Parameter index.
 *  \param[in] data numel finite floats. \param[in] count Must equal numel.
 *  \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE, FWP_ERR_SHAPE_MISMATCH or FWP_ERR_INVALID_ARGUMENT. */
FWP_API fwp_status fwp_model_set_param(fwp_model* model, int64_t index, const float* data, int64_t count);

/** \brief Copies a parameter's gradient out. \param[in] model The model. \param[in] index Parameter index.
 *  \param[out] data numel floats. \param[in] count Must equal numel.
 *  \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE or FWP_ERR_SHAPE_MISMATCH. */
FWP_API fwp_status fwp_model_get_grad(const fwp_model* model, int64_t index, float* data, int64_t count);

/** \brief Sets all gradients to zero. \param[in] model The model. \return FWP_OK or FWP_ERR_NULL_POINTER. */
FWP_API fwp_status fwp_model_zero_grad(fwp_model* model);

/**
 * \brief Backward pass of the last forward of a model: adds dLoss/dparams to the gradients.
 * \param[in] model The model.
 * \return FWP_OK, or FWP_ERR_BAD_STATE when there was no forward since the last backward.
 */
FWP_API fwp_status fwp_model_backward(fwp_model* model);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_MODEL_H */
