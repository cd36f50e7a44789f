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

/**
 * \brief How the learning rate changes with the number of steps taken.
 *
 * Let n be the number of steps already taken (fwp_optimizer_get_step(); the
 * step about to run is step n + 1, so the first step uses n = 0), base the
 * config's learning_rate (or the value of the last fwp_optimizer_set_lr()),
 * W = warmup_steps, N = total_steps and floor = min_learning_rate. Every
 * schedule starts with a linear warm-up from 0:
 *
 *     lr(n) = base * n / W                                        for n < W
 *
 * so with W > 0 the first step uses lr 0 and step W + 1 the full base (as the
 * schedules of fairseq and Hugging Face transformers with a zero initial
 * warm-up lr). After the warm-up (n >= W):
 *
 * - FWP_LR_CONSTANT:      lr(n) = base.
 * - FWP_LR_WARMUP_COSINE: lr(n) = floor + (base - floor) * (1 + cos(pi * (n - W) / (N - W))) / 2
 *                         for W <= n < N, and lr(n) = floor for n >= N (the decay
 *                         ends at the floor and stays there; no restarts).
 * - FWP_LR_INVERSE_SQRT:  lr(n) = max(floor, base * sqrt(W / n)) (fairseq's
 *                         inverse_sqrt; with base = d_model^-0.5 * W^-0.5 it is the
 *                         schedule of "Attention is all you need"). Needs W >= 1.
 *
 * The optimizer evaluates lr(n) in double precision before each step;
 * AdamW's decoupled weight decay is scaled by the same lr(n), as in PyTorch.
 */
typedef enum fwp_lr_schedule {
  FWP_LR_CONSTANT = 0,       /**< base after the warm-up. */
  FWP_LR_WARMUP_COSINE = 1,  /**< Cosine decay from base to the floor, reached at total_steps. */
  FWP_LR_INVERSE_SQRT = 2    /**< base * sqrt(warmup_steps / n), not below the floor. */
} fwp_lr_schedule;

/**
 * \brief Settings of an optimizer. Fill with fwp_optimizer_config_init().
 *
 * Fields after clip_grad_norm were appended in 0.2.0; a caller built against
 * 0.1.0 passes the smaller struct (its struct_size) and gets the constant
 * schedule.
 */
typedef struct fwp_optimizer_config {
  uint32_t struct_size;       /**< sizeof(fwp_optimizer_config); set by init. */
  fwp_optimizer_kind kind;    /**< Default FWP_OPTIMIZER_ADAM. */
  float learning_rate;        /**< Default 1e-3. */
  float beta1;                /**< Adam: default 0.9. */
  float beta2;                /**< Adam: default 0.999. */
  float eps;                  /**< Adam: default 1e-8. Must be >= FLT_MIN (subnormal values flush to zero). */
  float weight_decay;         /**< Default 0. */
  float momentum;             /**< SGD: default 0. */
  float clip_grad_norm;       /**< Before each step, scale all gradients by min(1, clip_grad_norm / (norm + 1e-6)),
                                   norm = the L2 norm of all trainable gradients together (PyTorch's
                                   clip_grad_norm_); 0 (default) = off. */
  /* Appended in 0.2.0. */
  fwp_lr_schedule lr_schedule; /**< Default FWP_LR_CONSTANT; see ::fwp_lr_schedule for the lr at each step. */
  int64_t warmup_steps;       /**< Steps of linear warm-up from 0 to learning_rate, in [0, 2^53]; default 0.
                                   FWP_LR_INVERSE_SQRT needs >= 1. */
  int64_t total_steps;        /**< FWP_LR_WARMUP_COSINE: the step count at which the decay reaches the floor
                                   (warm-up included), > warmup_steps and <= 2^53. Other schedules: 0 (default). */
  float min_learning_rate;    /**< Floor of the decay, finite and in [0, learning_rate]; must be 0 (default)
                                   for FWP_LR_CONSTANT. */
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
 * \return FWP_OK, or FWP_ERR_INVALID_ARGUMENT if a gradient is not finite: nothing is changed, and the
 *         message names the first such parameter (NaN/Inf policy: fwp.h).
 */
FWP_API fwp_status fwp_optimizer_step(fwp_optimizer* opt, float* grad_norm);

/** \brief Zeroes the gradients of the optimizer's parameters. \param[in] opt The optimizer.
 *  \return FWP_OK or FWP_ERR_NULL_POINTER. */
FWP_API fwp_status fwp_optimizer_zero_grad(fwp_optimizer* opt);

/**
 * \brief Reads the learning rate that the next fwp_optimizer_step() will use: the
 *        schedule's lr(n) after n = fwp_optimizer_get_step() steps (::fwp_lr_schedule).
 * \param[in]  opt The optimizer.
 * \param[out] lr  Receives it.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_optimizer_get_lr(const fwp_optimizer* opt, float* lr);

/**
 * \brief Sets the base (peak) learning rate that the schedule scales, as if it
 *        had been the config's learning_rate; the step count is kept. With the
 *        constant schedule after its warm-up this is the lr of the next step
 *        (a caller may drive its own schedule so); during a warm-up or decay the
 *        next step uses the schedule's value for the new base (the floor stays).
 *        Checkpoints save and restore the base and the step count.
 * \param[in] opt The optimizer.
 * \param[in] lr  Finite, >= 0 and >= the config's min_learning_rate.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (nothing changes then).
 */
FWP_API fwp_status fwp_optimizer_set_lr(fwp_optimizer* opt, float lr);

/** \brief The number of steps taken. \param[in] opt The optimizer. \param[out] steps Receives it.
 *  \return FWP_OK or FWP_ERR_NULL_POINTER. */
FWP_API fwp_status fwp_optimizer_get_step(const fwp_optimizer* opt, int64_t* steps);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_OPTIMIZER_H */
