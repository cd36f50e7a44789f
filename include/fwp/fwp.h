/**
 * \file fwp.h
 * \brief The public C API of fwp: fast weight programmers (linear transformers)
 *        on the CPU and on NVIDIA GPUs.
 *
 * This is the only public header of the library. It is plain C99 and can be
 * used from C, C++, Rust, Julia or any language with a C FFI.
 *
 * \section conventions Conventions
 * - Every fallible function returns an ::fwp_status. On failure,
 *   fwp_last_error_message() returns a message naming the argument and the
 *   problem. A failed call leaves every handle usable and unchanged unless the
 *   function documents otherwise.
 * - Objects are opaque handles created by `fwp_*_create` and released by the
 *   matching `fwp_*_destroy`; destroying NULL is a no-op. Handles keep the
 *   objects they depend on alive internally, so handles may be destroyed in any
 *   order (e.g. a context before the layers created from it).
 * - Config structs start with `struct_size`; always fill them with the matching
 *   `fwp_*_config_init()` first and then change the fields you need. This lets
 *   later versions append fields without breaking old callers.
 * - Arrays are plain row-major `float` (or `int32_t`) buffers in host memory,
 *   owned by the caller, with shapes given explicitly. Every buffer argument is
 *   accompanied by its element count or by sizes that determine it; the library
 *   checks them. With a CUDA context the library copies host buffers to and from
 *   the device itself.
 * - No C++ exception, abort or exit crosses this API.
 *
 * \section threads Thread safety
 * Distinct handles may be used from distinct threads at the same time. One
 * handle (and the objects created from it that share its state, e.g. an
 * optimizer and its model) must not be used by two threads at once. The error
 * message is thread-local. A context may be shared by objects used on
 * different threads.
 */
#ifndef FWP_FWP_H
#define FWP_FWP_H

#include <stddef.h>
#include <stdint.h>

/** \brief Marks a symbol as part of the exported ABI of libfwp. */
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

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup version Versioning
 *  @{ */

/** \brief Major version: bumped on ABI breaks (the SONAME follows it). */
#define FWP_VERSION_MAJOR 0
/** \brief Minor version: bumped when functions or config fields are added. */
#define FWP_VERSION_MINOR 1
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
  FWP_ERR_INTERNAL = 12           /**< A bug in fwp; please report it. */
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
  int32_t num_threads;            /**< CPU threads; 0 (default) = all hardware threads. */
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

/* ------------------------------------------------------------------------- */
/** \defgroup layer Fast-weight attention layer
 *
 * Multi-head causal attention in the fast-weight form of Schlag, Irie and
 * Schmidhuber (ICML 2021). For an input x of shape [B, T, d_model]:
 *
 *     q, k, v = x Wq^T, x Wk^T, x Wv^T            (H heads of d_head each)
 *     beta    = sigmoid(x Wbeta^T)                 (delta rule only, one per head and token)
 *     phi     = feature map (elu+1, FAVOR+ or DPFP), optionally sum-normalised:
 *               phi(x) / (sum_j phi(x)_j + norm_eps)
 *     sum rule:   W_t = W_{t-1} + v_t phi(k_t)^T
 *     delta rule: W_t = W_{t-1} + beta_t (v_t - W_{t-1} phi(k_t)) phi(k_t)^T
 *     o_t     = W_t phi(q_t), optionally divided by (z_t . phi(q_t) + norm_eps)
 *               with z_t = z_{t-1} + phi(k_t) ("attention normalisation")
 *     y       = s * concat_heads(o) Wo^T, s = 1/sqrt(d_head) if scale_output
 *
 * With FWP_FEATURE_MAP_SOFTMAX the layer is the causal softmax-attention
 * baseline: o_t = sum_{j<=t} softmax_j(q_t . k_j / sqrt(d_head)) v_j, y = o Wo^T.
 *
 * Weights follow the PyTorch nn.Linear convention: a weight has shape
 * [out_features, in_features] and y = x W^T + b.
 *
 * The fast-weight state of one batch row and head is W (d_head x d_dot,
 * row-major) and z (d_dot). The layer keeps a state for B batch rows, laid out
 * as W: [B][H][d_head][d_dot] and z: [B][H][d_dot].
 *  @{ */

/** \brief The feature map phi, or softmax attention. */
typedef enum fwp_feature_map {
  FWP_FEATURE_MAP_ELU = 0,      /**< elu(x) + 1; d_dot = d_head ("Linear Transformer"). */
  FWP_FEATURE_MAP_FAVOR = 1,    /**< FAVOR+ positive orthogonal random features; d_dot = 2 m. */
  FWP_FEATURE_MAP_DPFP = 2,     /**< Deterministic parameter-free projection; d_dot = 2 d_head nu. */
  FWP_FEATURE_MAP_SOFTMAX = 3   /**< No feature map: causal softmax attention (the baseline). */
} fwp_feature_map;

/** \brief How the fast weights are written. */
typedef enum fwp_update_rule {
  FWP_UPDATE_SUM = 0,    /**< Sum rule (linear attention): W += v phi(k)^T. */
  FWP_UPDATE_DELTA = 1   /**< Delta rule with a learned beta: W += beta (v - W phi(k)) phi(k)^T. */
} fwp_update_rule;

/** \brief Algorithm for the fast-weight recurrence over a sequence. Results agree to rounding. */
typedef enum fwp_algorithm {
  FWP_ALGORITHM_AUTO = 0,       /**< Pick the faster for the shape. */
  FWP_ALGORITHM_RECURRENT = 1,  /**< Step by step, one rank-1 update per token. */
  FWP_ALGORITHM_CHUNKED = 2     /**< Chunkwise parallel (WY/UT form for the delta rule). */
} fwp_algorithm;

/** \brief Settings of a fast-weight layer. Fill with fwp_layer_config_init(). */
typedef struct fwp_layer_config {
  uint32_t struct_size;          /**< sizeof(fwp_layer_config); set by init. */
  int64_t d_model;               /**< Input and output width; default 128. */
  int64_t num_heads;             /**< H; default 8. */
  int64_t d_head;                /**< Width of q, k, v per head; default 16. */
  fwp_feature_map feature_map;   /**< Default FWP_FEATURE_MAP_DPFP. */
  int64_t dpfp_nu;               /**< DPFP order nu >= 1; default 1. Used only by DPFP. */
  int64_t favor_features;        /**< FAVOR+ random features m >= 1; default 64. Used only by FAVOR+. */
  int32_t favor_redraw;          /**< FAVOR+: 1 (default) draws new features at every training
                                      forward; 0 keeps one fixed draw. Evaluation always uses the fixed draw. */
  fwp_update_rule update_rule;   /**< Default FWP_UPDATE_DELTA. Must be FWP_UPDATE_SUM for softmax. */
  int32_t sum_normalize;         /**< 1 (default): phi(x) / (sum phi(x) + norm_eps). Must be 0 for softmax. */
  int32_t attn_normalize;        /**< 1: divide o_t by (z_t . phi(q_t) + norm_eps). Default 0. Must be 0 for softmax. */
  float norm_eps;                /**< Epsilon of both normalisations; default 1e-6. Must be > 0; it
                                      keeps an all-zero phi (possible with DPFP) from giving NaN. */
  int32_t scale_output;          /**< 1 (default): scale fast-weight outputs by 1/sqrt(d_head) before
                                      the output projection, as the paper's LM layers do. */
  int32_t use_bias;              /**< 1: biases on all projections; default 0 (the paper's LM layers). */
  float init_std;                /**< Weights are drawn from N(0, init_std^2); default 0.02. Biases start at 0. */
  fwp_algorithm algorithm;       /**< Default FWP_ALGORITHM_AUTO. */
  int64_t chunk_size;            /**< Chunk length for FWP_ALGORITHM_CHUNKED; 0 (default) = automatic. */
  int32_t carry_state;           /**< 1: every forward starts from the layer's state and leaves the final
                                      state there (memory across segments). 0 (default): every forward
                                      starts from the state set with fwp_layer_set_state(), or zero, and
                                      leaves the layer's state unchanged. */
} fwp_layer_config;

/** \brief A multi-head fast-weight (or softmax) attention layer with its parameters and gradients. */
typedef struct fwp_layer fwp_layer;

/**
 * \brief Fills a layer config with the defaults.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_layer_config_init(fwp_layer_config* config);

/**
 * \brief Creates a layer with freshly initialised parameters (seeded through the context).
 * \param[in]  ctx    The context; the layer keeps it alive.
 * \param[in]  config Settings; must not be NULL.
 * \param[out] out    Receives the layer, owned by the caller (fwp_layer_destroy()); NULL on failure.
 * \return FWP_OK, or an error naming the bad field.
 */
FWP_API fwp_status fwp_layer_create(fwp_context* ctx, const fwp_layer_config* config, fwp_layer** out);

/**
 * \brief Destroys a layer and its parameters, gradients and state.
 * \param[in] layer The layer; NULL is a no-op.
 */
FWP_API void fwp_layer_destroy(fwp_layer* layer);

/**
 * \brief Copies the layer's settings.
 * \param[in]  layer  The layer.
 * \param[out] config Receives the settings the layer was created with
 *                    (config->struct_size must be set, e.g. by fwp_layer_config_init()).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (bad struct_size).
 */
FWP_API fwp_status fwp_layer_get_config(const fwp_layer* layer, fwp_layer_config* config);

/**
 * \brief The feature dimension d_dot of phi (0 for softmax attention).
 * \param[in]  layer The layer.
 * \param[out] d_dot Receives d_dot.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_layer_feature_dim(const fwp_layer* layer, int64_t* d_dot);

/**
 * \brief Switches between training (1, the default) and evaluation (0) mode.
 *
 * In evaluation mode FAVOR+ uses its fixed random features.
 * \param[in] layer    The layer.
 * \param[in] training 1 or 0.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT.
 */
FWP_API fwp_status fwp_layer_set_training(fwp_layer* layer, int training);

/**
 * \brief Forward pass over a batch of sequences.
 *
 * Keeps the activations that fwp_layer_backward() needs.
 * \param[in]  layer The layer.
 * \param[in]  x     Input, [batch][seq_len][d_model], batch * seq_len * d_model floats.
 * \param[in]  batch B >= 1; must equal the state's batch if a state is set (see fwp_layer_set_state()).
 * \param[in]  seq_len T >= 1.
 * \param[out] y     Output, [batch][seq_len][d_model]; must not overlap x.
 * \return FWP_OK or an error; on error y is unspecified and the layer unchanged.
 */
FWP_API fwp_status fwp_layer_forward(fwp_layer* layer, const float* x, int64_t batch,
                                     int64_t seq_len, float* y);

/**
 * \brief Backward pass of the last forward.
 *
 * Adds the parameter gradients to the layer's gradient buffers and computes the
 * gradient of the initial state (see fwp_layer_get_state_grad()). The gradient
 * of the final state is taken as zero (segments are truncated, as in the paper).
 * \param[in]  layer   The layer.
 * \param[in]  dy      dL/dy, [batch][seq_len][d_model].
 * \param[in]  batch   Must equal the batch of the last forward.
 * \param[in]  seq_len Must equal the seq_len of the last forward.
 * \param[out] dx      dL/dx, [batch][seq_len][d_model] (overwritten); may be NULL if not needed.
 * \return FWP_OK; FWP_ERR_BAD_STATE before any forward; FWP_ERR_SHAPE_MISMATCH.
 */
FWP_API fwp_status fwp_layer_backward(fwp_layer* layer, const float* dy, int64_t batch,
                                      int64_t seq_len, float* dx);

/**
 * \brief Sets all parameter gradients to zero.
 * \param[in] layer The layer.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_layer_zero_grad(fwp_layer* layer);

/**
 * \brief The number of parameter tensors.
 * \param[in]  layer The layer.
 * \param[out] count Receives the count.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_layer_num_params(const fwp_layer* layer, int64_t* count);

/**
 * \brief Describes parameter number `index`.
 * \param[in]  layer The layer.
 * \param[in]  index 0 <= index < count.
 * \param[out] info  Receives the description (name owned by the layer).
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_OUT_OF_RANGE.
 */
FWP_API fwp_status fwp_layer_param_info(const fwp_layer* layer, int64_t index, fwp_param_info* info);

/**
 * \brief Finds a parameter by name.
 * \param[in]  layer The layer.
 * \param[in]  name  E.g. "q_proj.weight".
 * \param[out] index Receives its index.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT (no such name).
 */
FWP_API fwp_status fwp_layer_param_index(const fwp_layer* layer, const char* name, int64_t* index);

/**
 * \brief Copies a parameter's values out.
 * \param[in]  layer The layer.
 * \param[in]  index Parameter index.
 * \param[out] data  Receives numel floats, row-major.
 * \param[in]  count Size of data in floats; must equal numel.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE or FWP_ERR_SHAPE_MISMATCH.
 */
FWP_API fwp_status fwp_layer_get_param(const fwp_layer* layer, int64_t index, float* data, int64_t count);

/**
 * \brief Overwrites a parameter's values.
 * \param[in] layer The layer.
 * \param[in] index Parameter index.
 * \param[in] data  numel floats, row-major; non-finite values are rejected.
 * \param[in] count Must equal numel.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE, FWP_ERR_SHAPE_MISMATCH
 *         or FWP_ERR_INVALID_ARGUMENT (NaN or infinity).
 */
FWP_API fwp_status fwp_layer_set_param(fwp_layer* layer, int64_t index, const float* data, int64_t count);

/**
 * \brief Copies a parameter's accumulated gradient out.
 * \param[in]  layer The layer.
 * \param[in]  index Parameter index.
 * \param[out] data  Receives numel floats.
 * \param[in]  count Must equal numel.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE or FWP_ERR_SHAPE_MISMATCH.
 */
FWP_API fwp_status fwp_layer_get_grad(const fwp_layer* layer, int64_t index, float* data, int64_t count);

/**
 * \brief The sizes of the fast-weight state for a batch of `batch` rows.
 * \param[in]  layer   The layer.
 * \param[in]  batch   Batch rows B >= 1.
 * \param[out] w_count Receives B * H * d_head * d_dot (may be NULL).
 * \param[out] z_count Receives B * H * d_dot (may be NULL).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT, or FWP_ERR_UNSUPPORTED for softmax.
 */
FWP_API fwp_status fwp_layer_state_size(const fwp_layer* layer, int64_t batch, int64_t* w_count,
                                        int64_t* z_count);

/**
 * \brief Sets the fast-weight state (the initial state of the next forward or step).
 * \param[in] layer   The layer.
 * \param[in] batch   Batch rows B of the state; later forwards must use this batch.
 * \param[in] w       W, [B][H][d_head][d_dot]; NULL means zeros.
 * \param[in] w_count Must equal B * H * d_head * d_dot (ignored when w is NULL).
 * \param[in] z       z, [B][H][d_dot]; NULL means zeros.
 * \param[in] z_count Must equal B * H * d_dot (ignored when z is NULL).
 * \return FWP_OK, FWP_ERR_SHAPE_MISMATCH, FWP_ERR_INVALID_ARGUMENT, or FWP_ERR_UNSUPPORTED for softmax.
 */
FWP_API fwp_status fwp_layer_set_state(fwp_layer* layer, int64_t batch, const float* w, int64_t w_count,
                                       const float* z, int64_t z_count);

/**
 * \brief Copies the fast-weight state out.
 *
 * With carry_state = 1 (or after fwp_layer_step()) this is the final state of
 * the last forward; otherwise it is the state last set.
 * \param[in]  layer   The layer.
 * \param[out] batch   Receives the state's batch B (0 if no state is held: all zeros).
 * \param[out] w       Receives W, [B][H][d_head][d_dot]; may be NULL.
 * \param[in]  w_count Size of w in floats; must equal B * H * d_head * d_dot when w is not NULL.
 * \param[out] z       Receives z, [B][H][d_dot]; may be NULL.
 * \param[in]  z_count Size of z; must equal B * H * d_dot when z is not NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER (batch), FWP_ERR_SHAPE_MISMATCH, or FWP_ERR_UNSUPPORTED for softmax.
 */
FWP_API fwp_status fwp_layer_get_state(const fwp_layer* layer, int64_t* batch, float* w, int64_t w_count,
                                       float* z, int64_t z_count);

/**
 * \brief The gradient of the loss with respect to the initial state of the last backward.
 * \param[in]  layer   The layer.
 * \param[out] dw      Receives dL/dW_0, [B][H][d_head][d_dot]; may be NULL.
 * \param[in]  w_count Must equal B * H * d_head * d_dot when dw is not NULL.
 * \param[out] dz      Receives dL/dz_0, [B][H][d_dot]; may be NULL.
 * \param[in]  z_count Must equal B * H * d_dot when dz is not NULL.
 * \return FWP_OK, FWP_ERR_BAD_STATE (no backward yet), FWP_ERR_SHAPE_MISMATCH, or FWP_ERR_UNSUPPORTED for softmax.
 */
FWP_API fwp_status fwp_layer_get_state_grad(const fwp_layer* layer, float* dw, int64_t w_count,
                                            float* dz, int64_t z_count);

/**
 * \brief Forgets the state (fast weights, normaliser, and the softmax key/value cache).
 * \param[in] layer The layer.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_layer_reset_state(fwp_layer* layer);

/**
 * \brief Recurrent inference: consumes one token per batch row and updates the state.
 *
 * O(1) work per token for fast-weight layers. Running T steps gives the same
 * outputs as one forward over T tokens with carry_state = 1. For softmax
 * attention the layer keeps a key/value cache that grows by one token per step.
 * Uses evaluation-mode features; stores nothing for backward.
 * \param[in]  layer The layer.
 * \param[in]  x     [batch][d_model].
 * \param[in]  batch B >= 1; must equal the state's batch if a state is held.
 * \param[out] y     [batch][d_model].
 * \return FWP_OK or an error.
 */
FWP_API fwp_status fwp_layer_step(fwp_layer* layer, const float* x, int64_t batch, float* y);

/** @} */

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
  FWP_MODEL_LANGUAGE = 1,   /**< Reserved: language model (section 6.3). */
  FWP_MODEL_SEQ2SEQ = 2     /**< Reserved: encoder-decoder translation model (section 6.2). */
} fwp_model_kind;

/** \brief A network with its parameters, gradients and loss. */
typedef struct fwp_model fwp_model;

/** \brief Settings of the retrieval model. Fill with fwp_retrieval_config_init(). */
typedef struct fwp_retrieval_config {
  uint32_t struct_size;          /**< sizeof(fwp_retrieval_config); set by init. */
  int32_t setting;               /**< 1 (capacity: L = S pairs without replacement) or 2 (update:
                                      L = 2 S pairs with replacement); default 1. */
  int64_t num_keys;              /**< S, the size of the key and of the value vocabulary; default 20. */
  int64_t d_head;                /**< Width of k and q before phi; default 64. */
  fwp_feature_map feature_map;   /**< Default FWP_FEATURE_MAP_DPFP. */
  int64_t dpfp_nu;               /**< Default 1. */
  int64_t favor_features;        /**< Default 64. */
  int32_t favor_redraw;          /**< Default 1. */
  fwp_update_rule update_rule;   /**< Default FWP_UPDATE_DELTA. */
  int32_t sum_normalize;         /**< Default 1 (the paper's delta-rule setup). */
  int32_t attn_normalize;        /**< Default 0; the paper's sum-rule setup uses 1. */
  float norm_eps;                /**< Default 1e-6. */
} fwp_retrieval_config;

/**
 * \brief Fills a retrieval config with the defaults.
 * \param[out] config The struct to fill; NULL is ignored.
 */
FWP_API void fwp_retrieval_config_init(fwp_retrieval_config* config);

/**
 * \brief Creates the retrieval model with freshly initialised parameters.
 * \param[in]  ctx    The context; the model keeps it alive.
 * \param[in]  config Settings.
 * \param[out] out    Receives the model (fwp_model_destroy()); NULL on failure.
 * \return FWP_OK or an error naming the bad field.
 */
FWP_API fwp_status fwp_model_create_retrieval(fwp_context* ctx, const fwp_retrieval_config* config,
                                              fwp_model** out);

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
 * \brief Copies the settings of a retrieval model.
 * \param[in]  model  A retrieval model.
 * \param[out] config Receives the settings (struct_size must be set).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, or FWP_ERR_INVALID_ARGUMENT for another kind of model.
 */
FWP_API fwp_status fwp_model_get_retrieval_config(const fwp_model* model, fwp_retrieval_config* config);

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
 * \brief A batch of retrieval sequences, in caller-owned arrays.
 *
 * Sequence b holds seq_len (key, value) pairs keys[b][i], values[b][i] with
 * 0 <= key, value < S, then num_queries query keys queries[b][j] with their
 * target values targets[b][j]. A query of -1 is padding: it and its target are
 * ignored (sequences may have fewer distinct keys than num_queries).
 */
typedef struct fwp_retrieval_batch {
  int64_t batch_size;     /**< B >= 1. */
  int64_t seq_len;        /**< L: S for setting 1, 2 S for setting 2. */
  int64_t num_queries;    /**< Q >= 1 queries per sequence. */
  const int32_t* keys;    /**< [B][L]. */
  const int32_t* values;  /**< [B][L]. */
  const int32_t* queries; /**< [B][Q]; -1 = padding. */
  const int32_t* targets; /**< [B][Q]; ignored where the query is -1. */
} fwp_retrieval_batch;

/**
 * \brief Forward pass and loss of the retrieval model.
 *
 * loss = mean over the non-padding queries of 0.5 * ||onehot(target) - y||^2,
 * where y (S values) is the model's readout for the query. Keeps what
 * fwp_model_backward() needs.
 * \param[in]  model   A retrieval model.
 * \param[in]  batch   The batch; every id is checked.
 * \param[out] loss    Receives the loss.
 * \param[out] outputs Receives y, [B][Q][S] (zeros for padding); may be NULL.
 * \param[in]  outputs_count Size of outputs in floats (B * Q * S when outputs is not NULL).
 * \return FWP_OK or an error naming the bad field or id.
 */
FWP_API fwp_status fwp_retrieval_forward(fwp_model* model, const fwp_retrieval_batch* batch, float* loss,
                                         float* outputs, int64_t outputs_count);

/**
 * \brief Backward pass of the last forward of a model: adds dLoss/dparams to the gradients.
 * \param[in] model The model.
 * \return FWP_OK, or FWP_ERR_BAD_STATE when there was no forward since the last backward.
 */
FWP_API fwp_status fwp_model_backward(fwp_model* model);

/** \brief Seeded generator of retrieval sequences for setting 1 or 2. */
typedef struct fwp_retrieval_data fwp_retrieval_data;

/**
 * \brief Creates a generator of retrieval data.
 * \param[in]  setting  1 or 2.
 * \param[in]  num_keys S >= 2.
 * \param[in]  seed     Seed; the same seed gives the same sequences.
 * \param[out] out      Receives the generator (fwp_retrieval_data_destroy()).
 * \return FWP_OK or an error.
 */
FWP_API fwp_status fwp_retrieval_data_create(int32_t setting, int64_t num_keys, uint64_t seed,
                                             fwp_retrieval_data** out);

/** \brief Destroys a generator. \param[in] data The generator; NULL is a no-op. */
FWP_API void fwp_retrieval_data_destroy(fwp_retrieval_data* data);

/**
 * \brief The sequence length L of a generator (S for setting 1, 2 S for setting 2).
 * \param[in]  data    The generator.
 * \param[out] seq_len Receives L.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_retrieval_data_seq_len(const fwp_retrieval_data* data, int64_t* seq_len);

/**
 * \brief Draws a batch of sequences.
 *
 * With queries_per_seq = 1 each sequence is queried with one key drawn from it
 * (training). With queries_per_seq = Q > 1 each sequence is queried with its
 * distinct keys in order of first appearance, at most Q of them, padded with -1
 * (evaluation).
 * \param[in]  data            The generator (advanced by the call).
 * \param[in]  batch_size      B >= 1.
 * \param[in]  queries_per_seq Q >= 1.
 * \param[out] keys            [B][L].
 * \param[out] values          [B][L].
 * \param[out] queries         [B][Q].
 * \param[out] targets         [B][Q].
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_INVALID_ARGUMENT.
 */
FWP_API fwp_status fwp_retrieval_data_sample(fwp_retrieval_data* data, int64_t batch_size,
                                             int64_t queries_per_seq, int32_t* keys, int32_t* values,
                                             int32_t* queries, int32_t* targets);

/** @} */

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

#endif /* FWP_FWP_H */
