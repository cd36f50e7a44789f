/**
 * \file common.h
 * \brief Conventions shared by the whole C API: export macro, versions, status codes and error messages, parameter descriptions.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads, the handling
 * of NaN and infinity) are stated once in fwp.h.
 */
#ifndef FWP_COMMON_H
#define FWP_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Marks the functions the shared library exports (symbols are hidden by default). */
/** \cond FWP_INTERNAL */
#if defined(_WIN32)
#  if defined(FWP_BUILDING_LIBRARY)
#    define FWP_API __declspec(dllexport)
#  else
#    define FWP_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define FWP_API __attribute__((visibility("default")))
#else
#  define FWP_API
#endif
/** \endcond */

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup version Versioning
 *  @{ */

/** \brief Major version: bumped on ABI breaks (the SONAME follows it). */
#define FWP_VERSION_MAJOR 0

/** \brief Minor version: bumped when functions or config fields are added. */
#define FWP_VERSION_MINOR 2

/** \brief Patch version: bumped for fixes that change no interface. */
#define FWP_VERSION_PATCH 0

/** \brief The version as one integer, major * 10000 + minor * 100 + patch. */
#define FWP_VERSION (FWP_VERSION_MAJOR * 10000 + FWP_VERSION_MINOR * 100 + FWP_VERSION_PATCH)

/**
 * \brief Reports the version of the library that is loaded at run time.
 * \param[out] major Major version; may be NULL.
 * \param[out] minor Minor version; may be NULL.
 * \param[out] patch Patch version; may be NULL.
 */
FWP_API void fwp_version(int* major, int* minor, int* patch);

/**
 * \brief The run-time version as a string such as "0.1.0".
 * \return A static, NUL-terminated string; never NULL.
 */
FWP_API const char* fwp_version_string(void);

/** @} */

/* ------------------------------------------------------------------------- */
/** \defgroup errors Status codes and error messages
 *  @{ */

/** \brief Result of every fallible call. Values are fixed and never renumbered. */
typedef enum fwp_status {
  FWP_OK = 0,                     /**< Success. */
  FWP_ERR_INVALID_ARGUMENT = 1,   /**< A value is out of its allowed range or inconsistent. */
  FWP_ERR_NULL_POINTER = 2,       /**< A required pointer argument is NULL. */
  FWP_ERR_SHAPE_MISMATCH = 3,     /**< Sizes do not match each other or the object. */
  FWP_ERR_OUT_OF_RANGE = 4,       /**< An index or enum value is out of range. */
  FWP_ERR_BAD_STATE = 5,          /**< The call is not valid now (e.g. backward before forward). */
  FWP_ERR_UNSUPPORTED = 6,        /**< The operation is not available in this build or configuration. */
  FWP_ERR_DEVICE = 7,             /**< No usable GPU, or a CUDA/cuBLAS error. */
  FWP_ERR_OUT_OF_MEMORY = 8,      /**< Host or device memory could not be allocated. */
  FWP_ERR_IO = 9,                 /**< A file could not be opened, read, written or renamed. */
  FWP_ERR_FORMAT = 10,            /**< A file is truncated, corrupted or not what was expected. */
  FWP_ERR_CONTEXT_MISMATCH = 11,  /**< Handles from different contexts were combined. */
  FWP_ERR_INTERNAL = 12,          /**< A bug in fwp; please report it. */
  FWP_ERR_DISTRIBUTED = 13        /**< A collective of a distributed group failed or timed out (a process died or
                                       stopped answering); the group cannot go on (distributed.h). */
} fwp_status;

/**
 * \brief A short constant description of a status code.
 * \param[in] status Any value; unknown values give "unknown status".
 * \return A static, NUL-terminated string; never NULL.
 */
FWP_API const char* fwp_status_string(fwp_status status);

/**
 * \brief The message of the last failed call on the calling thread.
 *
 * Successful calls do not clear it. Each thread has its own message.
 * \return A NUL-terminated string owned by the library, valid until the next
 *         fwp call on this thread; never NULL ("" if no call has failed).
 */
FWP_API const char* fwp_last_error_message(void);

/** \brief Clears the calling thread's last error message. */
FWP_API void fwp_clear_error(void);

/** @} */

/* ------------------------------------------------------------------------- */
/** \defgroup params Parameters (shared by layers and models)
 *  @{ */

/** \brief Maximum number of dimensions of a parameter. */
#define FWP_MAX_DIMS 4

/** \brief Description of one parameter tensor. */
typedef struct fwp_param_info {
  const char* name;               /**< E.g. "q_proj.weight"; owned by the object, valid while it lives. */
  int32_t ndim;                   /**< Number of dimensions, 1..FWP_MAX_DIMS. */
  int64_t shape[FWP_MAX_DIMS];    /**< Sizes, row-major; unused entries are 0. */
  int64_t numel;                  /**< Product of the sizes. */
  int32_t trainable;              /**< 1 if the optimizer updates it, 0 for fixed buffers. */
} fwp_param_info;

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_COMMON_H */
