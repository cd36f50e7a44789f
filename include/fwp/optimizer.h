/**
 * \file optimizer.h
 * \brief Optimizers over the parameters of a model or a layer.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_OPTIMIZER_H
#define FWP_OPTIMIZER_H

#include "fwp/layer.h"
#include "fwp/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup optim Optimizers
 *  @{ */

/** \brief Optimization algorithm. */
typedef enum fwp_optimizer_kind {
  FWP_OPTIMIZER_SGD = 0,    /**< SGD with optional momentum and L2 weight decay. */
  FWP_OPTIMIZER_ADAM = 1,   /**< Adam with bias correction; weight decay added to the gradient. */
  FWP_OPTIMIZER_ADAMW = 2   /**< Adam with decoupled weight decay. */
} fwp_optimizer_kind;

/** \brief Settings of an optimizer. Fill with fwp_optimizer_config_init(). */
typedef struct fwp_optimizer_config {
  uint32_t struct_size;       /**< sizeof(fwp_optimizer_config); set by init. */
  fwp_optimizer_kind kind;    /**< Default FWP_OPTIMIZER_ADAM. */
  float learning_rate;        /**< Default 1e-3. */
  float beta1;                /**< Adam: default 0.9. */
  float beta2;                /**< Adam: default 0.999. */
  float eps;                  /**< Adam: default 1e-8. */
  float weight_decay;         /**< Default 0. */
  float momentum;             /**< SGD: default 0. */
  float clip_grad_norm;       /**< Clip the global gradient L2 norm to this before each step; 0 (default) = off. */
} fwp_optimizer_config;

/** \brief Updates the trainable parameters of a model or layer from their gradients. */
typedef struct fwp_optimizer fwp_optimizer;

/** \brief Fills an optimizer config with the defaults. \param[out] config The struct; NULL is ignored. */
FWP_API void fwp_optimizer_config_init(fwp_optimizer_config* config);

/**
 * \brief Creates an optimizer over the trainable parameters of a model.
 * \param[in]  model  The model; it must outlive the optimizer.
 * \param[in]  config Settings.
 * \param[out] out    Receives the optimizer (fwp_optimizer_destroy()).
 * \return FWP_OK or an error naming the bad field.
 */
FWP_API fwp_status fwp_optimizer_create_for_model(fwp_model* model, const fwp_optimizer_config* config,
                                                  fwp_optimizer** out);

/**
 * \brief Creates an optimizer over the parameters of a layer.
 * \param[in]  layer  The layer; it must outlive the optimizer.
 * \param[in]  config Settings.
 * \param[out] out    Receives the optimizer (fwp_optimizer_destroy()).
 * \return FWP_OK or an error naming the bad field.
 */
FWP_API fwp_status fwp_optimizer_create_for_layer(fwp_layer* layer, const fwp_optimizer_config* config,
                                                  fwp_optimizer** out);

/** \brief Destroys an optimizer. \param[in] opt The optimizer; NULL is a no-op. */
FWP_API void fwp_optimizer_destroy(fwp_optimizer* opt);

/**
 * \brief One update of all trainable parameters from their current gradients.
 * \param[in]  opt       The optimizer.
 * \param[out] grad_norm Receives the global gradient L2 norm before clipping; may be NULL.
 * \return FWP_OK, or FWP_ERR_INVALID_ARGUMENT if a gradient is not finite (nothing is changed then).
 */
FWP_API fwp_status fwp_optimizer_step(fwp_optimizer* opt, float* grad_norm);

/** \brief Zeroes the gradients of the optimizer's parameters. \param[in] opt The optimizer.
 *  \return FWP_OK or FWP_ERR_NULL_POINTER. */
FWP_API fwp_status fwp_optimizer_zero_grad(fwp_optimizer* opt);

/** \brief Reads the learning rate. \param[in] opt The optimizer. \param[out] lr Receives it.
 *  \return FWP_OK or FWP_ERR_NULL_POINTER. */
FWP_API fwp_status fwp_optimizer_get_lr(const fwp_optimizer* opt, float* lr);

/** \brief Sets the learning rate (for schedules). \param[in] opt The optimizer. \param[in] lr Finite, >= 0.
 *  \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT. */
FWP_API fwp_status fwp_optimizer_set_lr(fwp_optimizer* opt, float lr);

/** \brief The number of steps taken. \param[in] opt The optimizer. \param[out] steps Receives it.
 *  \return FWP_OK or FWP_ERR_NULL_POINTER. */
FWP_API fwp_status fwp_optimizer_get_step(const fwp_optimizer* opt, int64_t* steps);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_OPTIMIZER_H */
