//! Raw declarations of the C API of libfwp, mirroring `include/fwp/fwp.h`.
//!
//! Everything here is `unsafe` and follows the C header exactly: the same
//! names, the same field order, the same integer widths. The header is the
//! single source of truth; `scripts/check_bindings.py` fails the test suite when
//! this file and the header disagree, and the `layout` test compares every
//! struct's size and field offsets with the C compiler's.
//!
//! C enums are represented as `#[repr(transparent)]` newtypes over `c_int`
//! with associated constants, not as Rust enums: a value coming from the
//! library (for example a status code added in a later minor version) may be
//! one this crate does not know, and turning it into a Rust enum would be
//! undefined behaviour.
//!
//! For a safe interface use the `fwp` crate.
#![allow(non_camel_case_types)]
#![deny(missing_docs)]

use core::ffi::{c_char, c_int, c_void};
use core::marker::{PhantomData, PhantomPinned};

/// Major version of the header these declarations mirror (`FWP_VERSION_MAJOR`).
pub const FWP_VERSION_MAJOR: c_int = 0;
/// Minor version of the header these declarations mirror (`FWP_VERSION_MINOR`).
pub const FWP_VERSION_MINOR: c_int = 2;
/// Patch version of the header these declarations mirror (`FWP_VERSION_PATCH`).
pub const FWP_VERSION_PATCH: c_int = 0;
/// The version as one integer, major * 10000 + minor * 100 + patch (`FWP_VERSION`).
pub const FWP_VERSION: c_int = FWP_VERSION_MAJOR * 10000 + FWP_VERSION_MINOR * 100 + FWP_VERSION_PATCH;
/// Maximum number of dimensions of a parameter (`FWP_MAX_DIMS`).
pub const FWP_MAX_DIMS: usize = 4;

/// Declares a C enum as a transparent `c_int` newtype with one constant per
/// enumerator, so that unknown values from the library stay representable.
macro_rules! c_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)+ }) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub struct $name(pub c_int);
        $(
            $(#[$vmeta])*
            pub const $variant: $name = $name($value);
        )+
    };
}

c_enum! {
    /// `fwp_status`: the result of every fallible call.
    fwp_status {
        /// Success.
        FWP_OK = 0,
        /// A value is out of its allowed range or inconsistent.
        FWP_ERR_INVALID_ARGUMENT = 1,
        /// A required pointer argument is NULL.
        FWP_ERR_NULL_POINTER = 2,
        /// Sizes do not match each other or the object.
        FWP_ERR_SHAPE_MISMATCH = 3,
        /// An index or enum value is out of range.
        FWP_ERR_OUT_OF_RANGE = 4,
        /// The call is not valid now (e.g. backward before forward).
        FWP_ERR_BAD_STATE = 5,
        /// The operation is not available in this build or configuration.
        FWP_ERR_UNSUPPORTED = 6,
        /// No usable GPU, or a CUDA/cuBLAS error.
        FWP_ERR_DEVICE = 7,
        /// Host or device memory could not be allocated.
        FWP_ERR_OUT_OF_MEMORY = 8,
        /// A file could not be opened, read, written or renamed.
        FWP_ERR_IO = 9,
        /// A file is truncated, corrupted or not what was expected.
        FWP_ERR_FORMAT = 10,
        /// Handles from different contexts were combined.
        FWP_ERR_CONTEXT_MISMATCH = 11,
        /// A bug in fwp.
        FWP_ERR_INTERNAL = 12,
    }
}

c_enum! {
    /// `fwp_device`: where computations run.
    fwp_device {
        /// The host CPU.
        FWP_DEVICE_CPU = 0,
        /// An NVIDIA GPU.
        FWP_DEVICE_CUDA = 1,
    }
}

c_enum! {
    /// `fwp_log_level`: severity of a log message.
    fwp_log_level {
        /// Debugging detail.
        FWP_LOG_DEBUG = 0,
        /// Information.
        FWP_LOG_INFO = 1,
        /// Warnings.
        FWP_LOG_WARN = 2,
        /// Errors.
        FWP_LOG_ERROR = 3,
        /// As a threshold: log nothing.
        FWP_LOG_OFF = 4,
    }
}

c_enum! {
    /// `fwp_feature_map`: the feature map phi, or softmax attention.
    fwp_feature_map {
        /// elu(x) + 1.
        FWP_FEATURE_MAP_ELU = 0,
        /// FAVOR+ positive orthogonal random features.
        FWP_FEATURE_MAP_FAVOR = 1,
        /// Deterministic parameter-free projection.
        FWP_FEATURE_MAP_DPFP = 2,
        /// Causal softmax attention (the baseline).
        FWP_FEATURE_MAP_SOFTMAX = 3,
    }
}

c_enum! {
    /// `fwp_update_rule`: how the fast weights are written.
    fwp_update_rule {
        /// Sum rule (linear attention).
        FWP_UPDATE_SUM = 0,
        /// Delta rule with a learned beta.
        FWP_UPDATE_DELTA = 1,
    }
}

c_enum! {
    /// `fwp_algorithm`: algorithm for the fast-weight recurrence.
    fwp_algorithm {
        /// Pick the faster for the shape.
        FWP_ALGORITHM_AUTO = 0,
        /// Step by step.
        FWP_ALGORITHM_RECURRENT = 1,
        /// Chunkwise parallel.
        FWP_ALGORITHM_CHUNKED = 2,
    }
}

c_enum! {
    /// `fwp_model_kind`: kinds of model.
    fwp_model_kind {
        /// The synthetic associative-retrieval model.
        FWP_MODEL_RETRIEVAL = 0,
        /// Reserved: language model.
        FWP_MODEL_LANGUAGE = 1,
        /// Reserved: encoder-decoder translation model.
        FWP_MODEL_SEQ2SEQ = 2,
    }
}

c_enum! {
    /// `fwp_data_kind`: kinds of data source.
    fwp_data_kind {
        /// Seeded generator of retrieval sequences.
        FWP_DATA_RETRIEVAL = 0,
        /// Reserved: token files for language modelling.
        FWP_DATA_TOKEN_FILE = 1,
        /// Reserved: line-aligned parallel text for translation.
        FWP_DATA_PARALLEL_TEXT = 2,
    }
}

c_enum! {
    /// `fwp_optimizer_kind`: optimization algorithm.
    fwp_optimizer_kind {
        /// SGD with optional momentum and L2 weight decay.
        FWP_OPTIMIZER_SGD = 0,
        /// Adam with bias correction.
        FWP_OPTIMIZER_ADAM = 1,
        /// Adam with decoupled weight decay.
        FWP_OPTIMIZER_ADAMW = 2,
    }
}

c_enum! {
    /// `fwp_lr_schedule`: how the learning rate changes with the step count.
    fwp_lr_schedule {
        /// The learning rate, after an optional linear warm-up.
        FWP_LR_CONSTANT = 0,
        /// Linear warm-up, then a cosine decay to the floor at `total_steps`.
        FWP_LR_WARMUP_COSINE = 1,
        /// Linear warm-up, then decay as 1/sqrt(step) (fairseq's inverse_sqrt).
        FWP_LR_INVERSE_SQRT = 2,
    }
}

/// Declares an opaque C struct that is only ever used behind a pointer
/// (the pattern of the Rustonomicon: not constructible, not `Send`, `Sync` or `Unpin`).
macro_rules! opaque {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[repr(C)]
        pub struct $name {
            _data: [u8; 0],
            _marker: PhantomData<(*mut u8, PhantomPinned)>,
        }
    };
}

opaque! {
    /// `fwp_context`: a device, a thread count, a random seed and a logger.
    fwp_context
}
opaque! {
    /// `fwp_layer`: a multi-head fast-weight (or softmax) attention layer.
    fwp_layer
}
opaque! {
    /// `fwp_model`: a network with its parameters, gradients and loss.
    fwp_model
}
opaque! {
    /// `fwp_data`: a data source of any kind.
    fwp_data
}
/// `fwp_retrieval_data`: seeded generator of retrieval sequences, a data
/// source of kind [`FWP_DATA_RETRIEVAL`] (the same C type as [`fwp_data`]).
pub type fwp_retrieval_data = fwp_data;
opaque! {
    /// `fwp_optimizer`: updates the trainable parameters of a model or layer.
    fwp_optimizer
}

/// `fwp_log_callback`: receives log messages (level, NUL-terminated text valid
/// only during the call, the user data of the context config).
pub type fwp_log_callback =
    Option<unsafe extern "C" fn(level: fwp_log_level, message: *const c_char, user_data: *mut c_void)>;

/// `fwp_context_config`: settings of a context. Fill with [`fwp_context_config_init`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct fwp_context_config {
    /// `sizeof(fwp_context_config)`; set by init.
    pub struct_size: u32,
    /// Default `FWP_DEVICE_CPU`.
    pub device: fwp_device,
    /// CUDA device ordinal; default 0.
    pub device_index: i32,
    /// CPU threads; 0 (default) = all hardware threads.
    pub num_threads: i32,
    /// Seed of all randomness drawn through this context; default 42.
    pub seed: u64,
    /// NULL (default): no logging.
    pub log_callback: fwp_log_callback,
    /// Passed to `log_callback`.
    pub log_user_data: *mut c_void,
    /// Messages below this level are dropped; default `FWP_LOG_WARN`.
    pub log_level: fwp_log_level,
}

/// `fwp_param_info`: description of one parameter tensor.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct fwp_param_info {
    /// E.g. "q_proj.weight"; owned by the object, valid while it lives.
    pub name: *const c_char,
    /// Number of dimensions, 1..`FWP_MAX_DIMS`.
    pub ndim: i32,
    /// Sizes, row-major; unused entries are 0.
    pub shape: [i64; FWP_MAX_DIMS],
    /// Product of the sizes.
    pub numel: i64,
    /// 1 if the optimizer updates it, 0 for fixed buffers.
    pub trainable: i32,
}

/// `fwp_layer_config`: settings of a fast-weight layer. Fill with [`fwp_layer_config_init`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct fwp_layer_config {
    /// `sizeof(fwp_layer_config)`; set by init.
    pub struct_size: u32,
    /// Input and output width; default 128.
    pub d_model: i64,
    /// H; default 8.
    pub num_heads: i64,
    /// Width of q, k, v per head; default 16.
    pub d_head: i64,
    /// Default `FWP_FEATURE_MAP_DPFP`.
    pub feature_map: fwp_feature_map,
    /// DPFP order nu >= 1; default 1.
    pub dpfp_nu: i64,
    /// FAVOR+ random features m >= 1; default 64.
    pub favor_features: i64,
    /// FAVOR+: 1 (default) redraws features at every training forward.
    pub favor_redraw: i32,
    /// Default `FWP_UPDATE_DELTA`.
    pub update_rule: fwp_update_rule,
    /// 1 (default): sum-normalise phi.
    pub sum_normalize: i32,
    /// 1: attention normalisation; default 0.
    pub attn_normalize: i32,
    /// Epsilon of both normalisations; default 1e-6.
    pub norm_eps: f32,
    /// 1 (default): scale outputs by 1/sqrt(d_head).
    pub scale_output: i32,
    /// 1: biases on all projections; default 0.
    pub use_bias: i32,
    /// Standard deviation of the initial weights; default 0.02.
    pub init_std: f32,
    /// Default `FWP_ALGORITHM_AUTO`.
    pub algorithm: fwp_algorithm,
    /// Chunk length for the chunked algorithm; 0 (default) = automatic.
    pub chunk_size: i64,
    /// 1: forwards carry the state across calls; default 0.
    pub carry_state: i32,
}

/// `fwp_retrieval_config`: settings of the retrieval model. Fill with [`fwp_retrieval_config_init`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct fwp_retrieval_config {
    /// `sizeof(fwp_retrieval_config)`; set by init.
    pub struct_size: u32,
    /// 1 (capacity) or 2 (update); default 1.
    pub setting: i32,
    /// S, the size of the key and value vocabularies; default 20.
    pub num_keys: i64,
    /// Width of k and q before phi; default 64.
    pub d_head: i64,
    /// Default `FWP_FEATURE_MAP_DPFP`.
    pub feature_map: fwp_feature_map,
    /// Default 1.
    pub dpfp_nu: i64,
    /// Default 64.
    pub favor_features: i64,
    /// Default 1.
    pub favor_redraw: i32,
    /// Default `FWP_UPDATE_DELTA`.
    pub update_rule: fwp_update_rule,
    /// Default 1.
    pub sum_normalize: i32,
    /// Default 0.
    pub attn_normalize: i32,
    /// Default 1e-6.
    pub norm_eps: f32,
}

/// `fwp_retrieval_batch`: a batch of retrieval sequences in caller-owned arrays.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct fwp_retrieval_batch {
    /// B >= 1.
    pub batch_size: i64,
    /// L: S for setting 1, 2 S for setting 2.
    pub seq_len: i64,
    /// Q >= 1 queries per sequence.
    pub num_queries: i64,
    /// `[B][L]`.
    pub keys: *const i32,
    /// `[B][L]`.
    pub values: *const i32,
    /// `[B][Q]`; -1 = padding.
    pub queries: *const i32,
    /// `[B][Q]`; ignored where the query is -1.
    pub targets: *const i32,
}

/// `fwp_optimizer_config`: settings of an optimizer. Fill with [`fwp_optimizer_config_init`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct fwp_optimizer_config {
    /// `sizeof(fwp_optimizer_config)`; set by init.
    pub struct_size: u32,
    /// Default `FWP_OPTIMIZER_ADAM`.
    pub kind: fwp_optimizer_kind,
    /// Default 1e-3.
    pub learning_rate: f32,
    /// Adam: default 0.9.
    pub beta1: f32,
    /// Adam: default 0.999.
    pub beta2: f32,
    /// Adam: default 1e-8.
    pub eps: f32,
    /// Default 0.
    pub weight_decay: f32,
    /// SGD: default 0.
    pub momentum: f32,
    /// Clip the global gradient L2 norm to this before each step; 0 = off.
    pub clip_grad_norm: f32,
    /// Since 0.2.0. Learning-rate schedule; default `FWP_LR_CONSTANT`.
    pub lr_schedule: fwp_lr_schedule,
    /// Since 0.2.0. Steps of linear warm-up from 0 to `learning_rate`; default 0.
    pub warmup_steps: i64,
    /// Since 0.2.0. Cosine: the step count at which the floor is reached (warm-up included); else 0.
    pub total_steps: i64,
    /// Since 0.2.0. Floor of the decay (cosine, inverse square root); default 0.
    pub min_learning_rate: f32,
}

extern "C" {
    // ---- versioning ----
    /// Reports the version of the library loaded at run time (each pointer may be NULL).
    pub fn fwp_version(major: *mut c_int, minor: *mut c_int, patch: *mut c_int);
    /// The run-time version as a static string such as "0.1.0".
    pub fn fwp_version_string() -> *const c_char;

    // ---- errors ----
    /// A short constant description of a status code.
    pub fn fwp_status_string(status: fwp_status) -> *const c_char;
    /// The message of the last failed call on the calling thread (never NULL).
    pub fn fwp_last_error_message() -> *const c_char;
    /// Clears the calling thread's last error message.
    pub fn fwp_clear_error();

    // ---- context ----
    /// Fills a context config with the defaults.
    pub fn fwp_context_config_init(config: *mut fwp_context_config);
    /// Creates a context (config NULL means defaults).
    pub fn fwp_context_create(config: *const fwp_context_config, out: *mut *mut fwp_context) -> fwp_status;
    /// Releases the caller's reference to a context.
    pub fn fwp_context_destroy(ctx: *mut fwp_context);
    /// The device a context computes on.
    pub fn fwp_context_get_device(ctx: *const fwp_context, device: *mut fwp_device) -> fwp_status;
    /// The number of CPU threads a context uses.
    pub fn fwp_context_get_num_threads(ctx: *const fwp_context, num_threads: *mut i32) -> fwp_status;
    /// 1 if the library was built with CUDA, 0 otherwise.
    pub fn fwp_cuda_is_built() -> c_int;
    /// The number of CUDA devices visible to this process.
    pub fn fwp_cuda_device_count(count: *mut i32) -> fwp_status;

    // ---- layer ----
    /// Fills a layer config with the defaults.
    pub fn fwp_layer_config_init(config: *mut fwp_layer_config);
    /// Creates a layer with freshly initialised parameters.
    pub fn fwp_layer_create(
        ctx: *mut fwp_context,
        config: *const fwp_layer_config,
        out: *mut *mut fwp_layer,
    ) -> fwp_status;
    /// Destroys a layer.
    pub fn fwp_layer_destroy(layer: *mut fwp_layer);
    /// Copies the layer's settings (`config.struct_size` must be set).
    pub fn fwp_layer_get_config(layer: *const fwp_layer, config: *mut fwp_layer_config) -> fwp_status;
    /// The feature dimension d_dot of phi (0 for softmax attention).
    pub fn fwp_layer_feature_dim(layer: *const fwp_layer, d_dot: *mut i64) -> fwp_status;
    /// Switches between training (1) and evaluation (0) mode.
    pub fn fwp_layer_set_training(layer: *mut fwp_layer, training: c_int) -> fwp_status;
    /// Forward pass over `[batch][seq_len][d_model]`.
    pub fn fwp_layer_forward(layer: *mut fwp_layer, x: *const f32, batch: i64, seq_len: i64, y: *mut f32)
        -> fwp_status;
    /// Backward pass of the last forward (dx may be NULL).
    pub fn fwp_layer_backward(
        layer: *mut fwp_layer,
        dy: *const f32,
        batch: i64,
        seq_len: i64,
        dx: *mut f32,
    ) -> fwp_status;
    /// Sets all parameter gradients to zero.
    pub fn fwp_layer_zero_grad(layer: *mut fwp_layer) -> fwp_status;
    /// The number of parameter tensors.
    pub fn fwp_layer_num_params(layer: *const fwp_layer, count: *mut i64) -> fwp_status;
    /// Describes parameter number `index`.
    pub fn fwp_layer_param_info(layer: *const fwp_layer, index: i64, info: *mut fwp_param_info) -> fwp_status;
    /// Finds a parameter by name.
    pub fn fwp_layer_param_index(layer: *const fwp_layer, name: *const c_char, index: *mut i64) -> fwp_status;
    /// Copies a parameter's values out.
    pub fn fwp_layer_get_param(layer: *const fwp_layer, index: i64, data: *mut f32, count: i64) -> fwp_status;
    /// Overwrites a parameter's values.
    pub fn fwp_layer_set_param(layer: *mut fwp_layer, index: i64, data: *const f32, count: i64) -> fwp_status;
    /// Copies a parameter's accumulated gradient out.
    pub fn fwp_layer_get_grad(layer: *const fwp_layer, index: i64, data: *mut f32, count: i64) -> fwp_status;
    /// The sizes of the fast-weight state for `batch` rows (outputs may be NULL).
    pub fn fwp_layer_state_size(
        layer: *const fwp_layer,
        batch: i64,
        w_count: *mut i64,
        z_count: *mut i64,
    ) -> fwp_status;
    /// Sets the fast-weight state (NULL w or z means zeros).
    pub fn fwp_layer_set_state(
        layer: *mut fwp_layer,
        batch: i64,
        w: *const f32,
        w_count: i64,
        z: *const f32,
        z_count: i64,
    ) -> fwp_status;
    /// Copies the fast-weight state out (w and z may be NULL).
    pub fn fwp_layer_get_state(
        layer: *const fwp_layer,
        batch: *mut i64,
        w: *mut f32,
        w_count: i64,
        z: *mut f32,
        z_count: i64,
    ) -> fwp_status;
    /// The gradient of the loss with respect to the initial state of the last backward.
    pub fn fwp_layer_get_state_grad(
        layer: *const fwp_layer,
        dw: *mut f32,
        w_count: i64,
        dz: *mut f32,
        z_count: i64,
    ) -> fwp_status;
    /// Forgets the state.
    pub fn fwp_layer_reset_state(layer: *mut fwp_layer) -> fwp_status;
    /// Recurrent inference: one token per batch row.
    pub fn fwp_layer_step(layer: *mut fwp_layer, x: *const f32, batch: i64, y: *mut f32) -> fwp_status;

    // ---- models ----
    /// Fills a retrieval config with the defaults.
    pub fn fwp_retrieval_config_init(config: *mut fwp_retrieval_config);
    /// Creates the retrieval model.
    pub fn fwp_model_create_retrieval(
        ctx: *mut fwp_context,
        config: *const fwp_retrieval_config,
        out: *mut *mut fwp_model,
    ) -> fwp_status;
    /// Destroys a model.
    pub fn fwp_model_destroy(model: *mut fwp_model);
    /// The kind of a model.
    pub fn fwp_model_get_kind(model: *const fwp_model, kind: *mut fwp_model_kind) -> fwp_status;
    /// Copies the settings of a retrieval model (`config.struct_size` must be set).
    pub fn fwp_model_get_retrieval_config(model: *const fwp_model, config: *mut fwp_retrieval_config) -> fwp_status;
    /// Switches between training (1) and evaluation (0) mode.
    pub fn fwp_model_set_training(model: *mut fwp_model, training: c_int) -> fwp_status;
    /// The number of parameter tensors.
    pub fn fwp_model_num_params(model: *const fwp_model, count: *mut i64) -> fwp_status;
    /// Describes a parameter.
    pub fn fwp_model_param_info(model: *const fwp_model, index: i64, info: *mut fwp_param_info) -> fwp_status;
    /// Finds a parameter by name.
    pub fn fwp_model_param_index(model: *const fwp_model, name: *const c_char, index: *mut i64) -> fwp_status;
    /// Copies a parameter out.
    pub fn fwp_model_get_param(model: *const fwp_model, index: i64, data: *mut f32, count: i64) -> fwp_status;
    /// Overwrites a parameter.
    pub fn fwp_model_set_param(model: *mut fwp_model, index: i64, data: *const f32, count: i64) -> fwp_status;
    /// Copies a parameter's gradient out.
    pub fn fwp_model_get_grad(model: *const fwp_model, index: i64, data: *mut f32, count: i64) -> fwp_status;
    /// Sets all gradients to zero.
    pub fn fwp_model_zero_grad(model: *mut fwp_model) -> fwp_status;
    /// Forward pass and loss of the retrieval model (outputs may be NULL).
    pub fn fwp_retrieval_forward(
        model: *mut fwp_model,
        batch: *const fwp_retrieval_batch,
        loss: *mut f32,
        outputs: *mut f32,
        outputs_count: i64,
    ) -> fwp_status;
    /// Backward pass of the last forward of a model.
    pub fn fwp_model_backward(model: *mut fwp_model) -> fwp_status;

    // ---- data sources ----
    /// Destroys a data source of any kind.
    pub fn fwp_data_destroy(data: *mut fwp_data);
    /// The kind of a data source.
    pub fn fwp_data_get_kind(data: *const fwp_data, kind: *mut fwp_data_kind) -> fwp_status;

    // ---- retrieval data ----
    /// Creates a generator of retrieval data.
    pub fn fwp_retrieval_data_create(
        setting: i32,
        num_keys: i64,
        seed: u64,
        out: *mut *mut fwp_retrieval_data,
    ) -> fwp_status;
    /// Destroys a generator (the same as `fwp_data_destroy`).
    pub fn fwp_retrieval_data_destroy(data: *mut fwp_retrieval_data);
    /// The sequence length L of a generator.
    pub fn fwp_retrieval_data_seq_len(data: *const fwp_retrieval_data, seq_len: *mut i64) -> fwp_status;
    /// Draws a batch of sequences.
    pub fn fwp_retrieval_data_sample(
        data: *mut fwp_retrieval_data,
        batch_size: i64,
        queries_per_seq: i64,
        keys: *mut i32,
        values: *mut i32,
        queries: *mut i32,
        targets: *mut i32,
    ) -> fwp_status;

    // ---- optimizers ----
    /// Fills an optimizer config with the defaults.
    pub fn fwp_optimizer_config_init(config: *mut fwp_optimizer_config);
    /// Creates an optimizer over the trainable parameters of a model (which must outlive it).
    pub fn fwp_optimizer_create_for_model(
        model: *mut fwp_model,
        config: *const fwp_optimizer_config,
        out: *mut *mut fwp_optimizer,
    ) -> fwp_status;
    /// Creates an optimizer over the parameters of a layer (which must outlive it).
    pub fn fwp_optimizer_create_for_layer(
        layer: *mut fwp_layer,
        config: *const fwp_optimizer_config,
        out: *mut *mut fwp_optimizer,
    ) -> fwp_status;
    /// Destroys an optimizer.
    pub fn fwp_optimizer_destroy(opt: *mut fwp_optimizer);
    /// One update of all trainable parameters (grad_norm may be NULL).
    pub fn fwp_optimizer_step(opt: *mut fwp_optimizer, grad_norm: *mut f32) -> fwp_status;
    /// Zeroes the gradients of the optimizer's parameters.
    pub fn fwp_optimizer_zero_grad(opt: *mut fwp_optimizer) -> fwp_status;
    /// Reads the learning rate.
    pub fn fwp_optimizer_get_lr(opt: *const fwp_optimizer, lr: *mut f32) -> fwp_status;
    /// Sets the learning rate.
    pub fn fwp_optimizer_set_lr(opt: *mut fwp_optimizer, lr: f32) -> fwp_status;
    /// The number of steps taken.
    pub fn fwp_optimizer_get_step(opt: *const fwp_optimizer, steps: *mut i64) -> fwp_status;

    // ---- checkpoints ----
    /// Saves a model (and optionally its optimizer and the state of a data source) to a file.
    pub fn fwp_checkpoint_save(
        path: *const c_char,
        model: *const fwp_model,
        opt: *const fwp_optimizer,
        data: *const fwp_data,
        user_metadata: *const c_char,
    ) -> fwp_status;
    /// Loads a checkpoint into existing objects whose configuration matches the file.
    pub fn fwp_checkpoint_load(
        path: *const c_char,
        model: *mut fwp_model,
        opt: *mut fwp_optimizer,
        data: *mut fwp_data,
    ) -> fwp_status;
    /// Creates a model from the configuration and parameters stored in a checkpoint.
    pub fn fwp_model_load(ctx: *mut fwp_context, path: *const c_char, out: *mut *mut fwp_model) -> fwp_status;
}

#[cfg(test)]
mod layout;
