/**
 * \file distributed.h
 * \brief Data-parallel training: a group of processes that average their gradients (MPI, NCCL or the
 *        caller's own all-reduce).
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h. New in 0.2.0.
 */
#ifndef FWP_DISTRIBUTED_H
#define FWP_DISTRIBUTED_H

#include "fwp/context.h"
#include "fwp/model.h"
#include "fwp/state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup distributed Data-parallel training
 *
 * N processes (ranks) each hold a replica of the model and train on their own
 * shard of every global batch (fwp_data_set_shard()). A step on every rank is
 *
 *     forward on the shard; fwp_model_backward();
 *     fwp_dist_average_gradients();   // every rank now holds the same gradient
 *     fwp_optimizer_step();           // the same update on every replica
 *
 * after one fwp_dist_sync_model() at the start (rank 0's parameters, buffers
 * and random state to every rank). Since the gradients are averaged before the
 * optimizer sees them, the global gradient norm that clipping uses is the
 * norm over all ranks, and every replica takes the same step: N processes with
 * global batch B follow one process with batch B, up to the rounding of the
 * reduction. Dropout masks differ between ranks (each rank has its own
 * dropout stream); FAVOR+ redraws stay equal on every replica.
 *
 * **Engines.** FWP_DIST_MPI sums host buffers with MPI (a CUDA model's
 * gradients are staged through host memory); FWP_DIST_NCCL sums the gradient
 * block on the GPU with NCCL, its communicator set up over MPI; with
 * FWP_DIST_CALLBACK fwp links no communication library and calls the
 * caller's all-reduce (MPI.jl, Rust's mpi crate, Gloo, an application's own
 * communicator). fwp_dist_engine_available() says which engines this build
 * has; creating one it lacks fails with FWP_ERR_UNSUPPORTED.
 *
 * **Failures.** A collective that fails, or (MPI) does not complete within
 * timeout_seconds because a rank died or hangs, returns FWP_ERR_DISTRIBUTED;
 * the group is then broken (every later collective of the handle fails the
 * same way) and the caller should end the job with fwp_dist_abort(). A rank
 * that fails on its own (a file it cannot write) while the others wait in a
 * collective should call fwp_dist_abort() too, so that they do not wait for
 * the timeout.
 *
 * **Threads.** A handle is used by one thread at a time, and every rank makes
 * the same collective calls in the same order.
 *  @{ */

/** \brief Who does the communication. Values are fixed. */
typedef enum fwp_dist_engine {
  FWP_DIST_MPI = 0,      /**< MPI (e.g. OpenMPI; launch with mpirun or srun): host buffers. */
  FWP_DIST_NCCL = 1,     /**< NCCL on the GPU (CUDA contexts only), bootstrapped over MPI. */
  FWP_DIST_CALLBACK = 2  /**< The caller's all-reduce (fwp_dist_config::allreduce). */
} fwp_dist_engine;

/** \brief Element types of fwp_dist_allreduce_fn buffers. Values are fixed. */
typedef enum fwp_dist_dtype {
  FWP_DIST_FLOAT32 = 0, /**< float */
  FWP_DIST_FLOAT64 = 1  /**< double */
} fwp_dist_dtype;

/**
 * \brief The caller's all-reduce: sums `buffer` element-wise over every rank, in place (what
 *        MPI_Allreduce(MPI_IN_PLACE, buffer, count, type, MPI_SUM, comm) does).
 *
 * Every rank calls it with the same count and dtype in the same order; every
 * rank must end with the same sums. The buffer is host memory.
 * \param[in,out] buffer    count elements of dtype.
 * \param[in]     count     >= 1.
 * \param[in]     dtype     FWP_DIST_FLOAT32 or FWP_DIST_FLOAT64.
 * \param[in]     user_data fwp_dist_config::user_data.
 * \return 0 on success; any other value is a failure (fwp reports FWP_ERR_DISTRIBUTED).
 */
typedef int (*fwp_dist_allreduce_fn)(void* buffer, int64_t count, fwp_dist_dtype dtype, void* user_data);

/** \brief Settings of a distributed group. Fill with fwp_dist_config_init(). */
typedef struct fwp_dist_config {
  uint32_t struct_size;          /**< sizeof(fwp_dist_config); set by init. */
  fwp_dist_engine engine;        /**< Default FWP_DIST_MPI. */
  int64_t bucket_elements;       /**< Gradient elements per all-reduce call, >= 1; default 4,194,304 (16 MiB). The
                                      flat gradient block is reduced in buckets of this size. */
  double timeout_seconds;        /**< MPI and NCCL: a collective that has not completed after this many seconds
                                      fails with FWP_ERR_DISTRIBUTED; finite and >= 0, 0 = wait forever;
                                      default 600. (Callback: the caller's all-reduce decides.) */
  void* mpi_comm;                /**< MPI and NCCL: a pointer to the caller's MPI_Comm (fwp uses a duplicate of
                                      it); NULL (default) = MPI_COMM_WORLD. fwp calls MPI_Init_thread when MPI is
                                      not initialized yet, and MPI_Finalize at exit then. Callback: must be NULL. */
  fwp_dist_allreduce_fn allreduce; /**< Callback: the all-reduce (required). Other engines: must be NULL. */
  void* user_data;               /**< Callback: passed to allreduce. Other engines: must be NULL. */
  int32_t rank;                  /**< Callback: this process's rank in [0, world_size). Others: must be 0 (MPI
                                      says). */
  int32_t world_size;            /**< Callback: the number of ranks, >= 1. Others: must be 0 (MPI says). */
} fwp_dist_config;

/** \brief A group of processes training one model data-parallel. */
typedef struct fwp_dist fwp_dist;

/** \brief Fills a distributed config with the defaults. \param[out] config The struct; NULL is ignored. */
FWP_API void fwp_dist_config_init(fwp_dist_config* config);

/**
 * \brief Whether this build of fwp has an engine.
 * \param[in] engine An engine.
 * \return 1 if fwp_dist_create() can make it (MPI and NCCL when fwp was built with them; the callback
 *         engine always), 0 otherwise (also for unknown values).
 */
FWP_API int fwp_dist_engine_available(fwp_dist_engine engine);

/**
 * \brief Joins the group (a collective: every rank calls it).
 * \param[in]  ctx    The context of the models this group will train (NCCL: a CUDA context; each rank
 *                    its own GPU).
 * \param[in]  config Settings.
 * \param[out] out    Receives the handle (fwp_dist_destroy()).
 * \return FWP_OK, FWP_ERR_NULL_POINTER (also a callback engine without allreduce),
 *         FWP_ERR_INVALID_ARGUMENT (a bad field, named), FWP_ERR_OUT_OF_RANGE (engine, or a callback
 *         rank outside [0, world_size)), FWP_ERR_UNSUPPORTED (an engine this build lacks, or NCCL on a CPU context),
 *         FWP_ERR_DEVICE or FWP_ERR_DISTRIBUTED (the engine failed to start).
 */
FWP_API fwp_status fwp_dist_create(fwp_context* ctx, const fwp_dist_config* config, fwp_dist** out);

/** \brief Leaves the group (not a collective). \param[in] dist The handle; NULL is a no-op. */
FWP_API void fwp_dist_destroy(fwp_dist* dist);

/**
 * \brief This process's rank and the number of ranks.
 * \param[in]  dist       The handle.
 * \param[out] rank       Receives the rank in [0, world_size); may be NULL.
 * \param[out] world_size Receives the number of ranks; may be NULL.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_dist_get_rank(const fwp_dist* dist, int32_t* rank, int32_t* world_size);

/**
 * \brief Makes every replica equal to rank 0's (a collective): its parameters (trainable and fixed
 *        buffers) and its random state; then gives this rank its own dropout stream.
 *
 * Call once after creating (or loading) the model on every rank, before training.
 * \param[in]     dist  The handle.
 * \param[in,out] model A model of the group's context, of the same kind and configuration on every rank.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_CONTEXT_MISMATCH, FWP_ERR_SHAPE_MISMATCH (ranks hold
 *         models of different sizes) or FWP_ERR_DISTRIBUTED.
 */
FWP_API fwp_status fwp_dist_sync_model(fwp_dist* dist, fwp_model* model);

/**
 * \brief Replaces every rank's gradients by their weighted mean over the ranks (a collective).
 *
 * Each rank's gradient g_r (of its own mean loss) becomes
 * sum_r w_r g_r / sum_r w_r, w_r = this rank's `weight`. With weight 1 on
 * every rank it is the plain mean (equal shards: the language model); with
 * weight = the number of loss tokens of the rank's shard it is the gradient of
 * the mean over all tokens of the global batch (batches by a token budget:
 * translation). A rank with an empty shard takes part with weight 0 and zero
 * gradients. The gradient block is reduced in buckets of bucket_elements.
 * \param[in]     dist         The handle.
 * \param[in,out] model        The replica.
 * \param[in]     weight       Finite and >= 0; the weights of all ranks must not sum to 0.
 * \param[out]    total_weight Receives sum_r w_r; may be NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (weight, or weights summing to 0:
 *         the gradients are then unchanged), FWP_ERR_CONTEXT_MISMATCH or FWP_ERR_DISTRIBUTED.
 */
FWP_API fwp_status fwp_dist_average_gradients(fwp_dist* dist, fwp_model* model, double weight, double* total_weight);

/**
 * \brief Sums host numbers over the ranks, in place (a collective), e.g. losses and token counts for a
 *        progress line.
 * \param[in]     dist   The handle.
 * \param[in,out] values count numbers.
 * \param[in]     count  >= 1.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT or FWP_ERR_DISTRIBUTED.
 */
FWP_API fwp_status fwp_dist_sum(fwp_dist* dist, double* values, int64_t count);

/**
 * \brief Collects every rank's rows of a run state into one state of the whole batch (a collective),
 *        e.g. to save the memory carried across segments in one checkpoint.
 *
 * Row r b + i of `global` becomes row i of rank r's `local` (b = local's
 * batch); every rank receives the whole. The inverse needs no communication:
 * each rank copies the whole state (fwp_state_copy()) and keeps its own rows
 * with fwp_state_reorder().
 * \param[in]     dist   The handle.
 * \param[in]     local  This rank's state (fast-weight layers only; softmax caches are not gathered).
 * \param[in,out] global A state of the same model with batch world_size * b; overwritten.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_SHAPE_MISMATCH (batches or models differ),
 *         FWP_ERR_UNSUPPORTED (a softmax layer), FWP_ERR_CONTEXT_MISMATCH or FWP_ERR_DISTRIBUTED.
 */
FWP_API fwp_status fwp_dist_gather_state(fwp_dist* dist, const fwp_state* local, fwp_state* global);

/**
 * \brief Waits until every rank has called it (a collective).
 * \param[in] dist The handle.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_DISTRIBUTED.
 */
FWP_API fwp_status fwp_dist_barrier(fwp_dist* dist);

/**
 * \brief Ends every process of the group (MPI_Abort) with an exit code; does not return for MPI and
 *        NCCL. For the callback engine it only marks the group broken and returns: ending the other
 *        processes is then the caller's.
 * \param[in] dist The handle; NULL is a no-op.
 * \param[in] code The exit code, e.g. 1.
 */
FWP_API void fwp_dist_abort(fwp_dist* dist, int code);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_DISTRIBUTED_H */
