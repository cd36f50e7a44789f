/**
 * \file context.h
 * \brief Contexts: the device, CPU threads, random seed and logger that objects share.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_CONTEXT_H
#define FWP_CONTEXT_H

#include "fwp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup context Context: device, threads, seed, logging
 *  @{ */

/** \brief Where computations run. */
typedef enum fwp_device {
  FWP_DEVICE_CPU = 0,   /**< The host CPU (Eigen and OpenMP). */
  FWP_DEVICE_CUDA = 1   /**< An NVIDIA GPU (CUDA kernels and cuBLAS). */
} fwp_device;

/** \brief Severity of a log message. */
typedef enum fwp_log_level {
  FWP_LOG_DEBUG = 0,
  FWP_LOG_INFO = 1,
  FWP_LOG_WARN = 2,
  FWP_LOG_ERROR = 3,
  FWP_LOG_OFF = 4    /**< As a threshold: log nothing. */
} fwp_log_level;

/**
 * \brief Receives log messages.
 * \param level     Severity.
 * \param message   NUL-terminated text, valid only during the call.
 * \param user_data The pointer given in ::fwp_context_config.
 */
typedef void (*fwp_log_callback)(fwp_log_level level, const char* message, void* user_data);

/** \brief Settings of a context. Fill with fwp_context_config_init(). */
typedef struct fwp_context_config {
  uint32_t struct_size;           /**< sizeof(fwp_context_config); set by init. */
  fwp_device device;              /**< Default FWP_DEVICE_CPU. */
  int32_t device_index;           /**< CUDA device ordinal; default 0. */
  int32_t num_threads;            /**< CPU threads; 0 (default): the environment variable
                                       FWP_NUM_THREADS if set, else the first number of
                                       OMP_NUM_THREADS if set, else the CPUs this process may
                                       run on (its affinity mask). A set variable that is not an
                                       integer in [1, 4096] makes fwp_context_create() fail. */
  uint64_t seed;                  /**< Seed of all randomness drawn through this context; default 42. */
  fwp_log_callback log_callback;  /**< NULL (default): no logging. */
  void* log_user_data;            /**< Passed to log_callback. */
  fwp_log_level log_level;        /**< Messages below this level are dropped; default FWP_LOG_WARN. */
} fwp_context_config;

/** \brief A device, a thread count, a random seed and a logger shared by objects. */
typedef struct fwp_context fwp_context;

/**
 * \brief Fills a context config with the defaults.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_context_config_init(fwp_context_config* config);

/**
 * \brief Creates a context.
 * \param[in]  config Settings (NULL means defaults).
 * \param[out] out    Receives the new context; the caller owns it and releases it
 *                    with fwp_context_destroy(). Set to NULL on failure.
 * \return FWP_OK; FWP_ERR_UNSUPPORTED for CUDA in a build without CUDA;
 *         FWP_ERR_DEVICE when no GPU (or no such device index) is present;
 *         FWP_ERR_INVALID_ARGUMENT / FWP_ERR_OUT_OF_RANGE for bad fields.
 */
FWP_API fwp_status fwp_context_create(const fwp_context_config* config, fwp_context** out);

/**
 * \brief Releases the caller's reference to a context.
 *
 * Objects created from it keep what they need alive until they are destroyed.
 * \param[in] ctx The context; NULL is a no-op.
 */
FWP_API void fwp_context_destroy(fwp_context* ctx);

/**
 * \brief The device a context computes on.
 * \param[in]  ctx    The context.
 * \param[out] device Receives the device.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_context_get_device(const fwp_context* ctx, fwp_device* device);

/**
 * \brief The number of CPU threads a context uses.
 * \param[in]  ctx         The context.
 * \param[out] num_threads Receives the thread count (>= 1).
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_context_get_num_threads(const fwp_context* ctx, int32_t* num_threads);

/**
 * \brief Whether this build of the library contains the CUDA backend.
 * \return 1 if built with CUDA, 0 otherwise.
 */
FWP_API int fwp_cuda_is_built(void);

/**
 * \brief The number of CUDA devices visible to this process.
 * \param[out] count Receives the count (0 where CUDA is not built or no GPU is present).
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_cuda_device_count(int32_t* count);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_CONTEXT_H */
