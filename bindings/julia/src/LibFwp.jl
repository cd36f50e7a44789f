"""
    LibFwp

Raw bindings of the C API of libfwp (`include/fwp/fwp.h`): one Julia function
per C function, with the C name and the C argument order, each a single
`@ccall`. Structs and enums mirror the header field by field
(`scripts/check_bindings.py` verifies that against the header).

C enums are plain `Cint` aliases with one constant per enumerator, so values
from a newer library stay representable. Pointers are 0-based and unchecked
here: use the safe API of `FastWeights` unless you need the raw calls.

The library is `ENV["FWP_LIBRARY"]` (a path or a name the dynamic loader can
find) read when the package is loaded, or `"libfwp"`.
"""
module LibFwp

const _LIBRARY = Ref{String}("libfwp")

"""
    libfwp() -> String

The name or path of the shared library the `@ccall`s use: `ENV["FWP_LIBRARY"]`
when the module was loaded, else `"libfwp"`. It must not change after the
first call into the library.
"""
libfwp() = _LIBRARY[]

function __init__()
    _LIBRARY[] = get(ENV, "FWP_LIBRARY", "libfwp")
    return nothing
end

# ---------------------------------------------------------------------------
# Versioning and limits

"Major version of the header these bindings mirror."
const FWP_VERSION_MAJOR = 0
"Minor version of the header these bindings mirror."
const FWP_VERSION_MINOR = 2
"Patch version of the header these bindings mirror."
const FWP_VERSION_PATCH = 0
"The version as one integer, major * 10000 + minor * 100 + patch."
const FWP_VERSION = FWP_VERSION_MAJOR * 10000 + FWP_VERSION_MINOR * 100 + FWP_VERSION_PATCH
"Maximum number of dimensions of a parameter."
const FWP_MAX_DIMS = 4

# ---------------------------------------------------------------------------
# Enums (C enums are int-sized)

"`fwp_status`: the result of every fallible call."
const fwp_status = Cint
const FWP_OK = fwp_status(0)
const FWP_ERR_INVALID_ARGUMENT = fwp_status(1)
const FWP_ERR_NULL_POINTER = fwp_status(2)
const FWP_ERR_SHAPE_MISMATCH = fwp_status(3)
const FWP_ERR_OUT_OF_RANGE = fwp_status(4)
const FWP_ERR_BAD_STATE = fwp_status(5)
const FWP_ERR_UNSUPPORTED = fwp_status(6)
const FWP_ERR_DEVICE = fwp_status(7)
const FWP_ERR_OUT_OF_MEMORY = fwp_status(8)
const FWP_ERR_IO = fwp_status(9)
const FWP_ERR_FORMAT = fwp_status(10)
const FWP_ERR_CONTEXT_MISMATCH = fwp_status(11)
const FWP_ERR_INTERNAL = fwp_status(12)

"`fwp_device`: where computations run."
const fwp_device = Cint
const FWP_DEVICE_CPU = fwp_device(0)
const FWP_DEVICE_CUDA = fwp_device(1)

"`fwp_log_level`: severity of a log message."
const fwp_log_level = Cint
const FWP_LOG_DEBUG = fwp_log_level(0)
const FWP_LOG_INFO = fwp_log_level(1)
const FWP_LOG_WARN = fwp_log_level(2)
const FWP_LOG_ERROR = fwp_log_level(3)
const FWP_LOG_OFF = fwp_log_level(4)

"`fwp_feature_map`: the feature map phi, or softmax attention."
const fwp_feature_map = Cint
const FWP_FEATURE_MAP_ELU = fwp_feature_map(0)
const FWP_FEATURE_MAP_FAVOR = fwp_feature_map(1)
const FWP_FEATURE_MAP_DPFP = fwp_feature_map(2)
const FWP_FEATURE_MAP_SOFTMAX = fwp_feature_map(3)

"`fwp_update_rule`: how the fast weights are written."
const fwp_update_rule = Cint
const FWP_UPDATE_SUM = fwp_update_rule(0)
const FWP_UPDATE_DELTA = fwp_update_rule(1)

"`fwp_algorithm`: algorithm of the fast-weight recurrence."
const fwp_algorithm = Cint
const FWP_ALGORITHM_AUTO = fwp_algorithm(0)
const FWP_ALGORITHM_RECURRENT = fwp_algorithm(1)
const FWP_ALGORITHM_CHUNKED = fwp_algorithm(2)

"`fwp_model_kind`: kinds of model."
const fwp_model_kind = Cint
const FWP_MODEL_RETRIEVAL = fwp_model_kind(0)
const FWP_MODEL_LANGUAGE = fwp_model_kind(1)
const FWP_MODEL_SEQ2SEQ = fwp_model_kind(2)

"`fwp_data_kind`: kinds of data source."
const fwp_data_kind = Cint
const FWP_DATA_RETRIEVAL = fwp_data_kind(0)
const FWP_DATA_TOKEN_FILE = fwp_data_kind(1)
const FWP_DATA_PARALLEL_TEXT = fwp_data_kind(2)

"`fwp_optimizer_kind`: optimization algorithm."
const fwp_optimizer_kind = Cint
const FWP_OPTIMIZER_SGD = fwp_optimizer_kind(0)
const FWP_OPTIMIZER_ADAM = fwp_optimizer_kind(1)
const FWP_OPTIMIZER_ADAMW = fwp_optimizer_kind(2)

"`fwp_lr_schedule`: how the learning rate changes with the step count."
const fwp_lr_schedule = Cint
const FWP_LR_CONSTANT = fwp_lr_schedule(0)
const FWP_LR_WARMUP_COSINE = fwp_lr_schedule(1)
const FWP_LR_INVERSE_SQRT = fwp_lr_schedule(2)

# ---------------------------------------------------------------------------
# Opaque handles (only ever used behind a Ptr)

"Opaque `fwp_context`."
mutable struct fwp_context end
"Opaque `fwp_layer`."
mutable struct fwp_layer end
"Opaque `fwp_model`."
mutable struct fwp_model end
"Opaque `fwp_data`: a data source of any kind."
mutable struct fwp_data end
"`fwp_retrieval_data`: the retrieval generator, the same C type as `fwp_data`."
const fwp_retrieval_data = fwp_data
"Opaque `fwp_optimizer`."
mutable struct fwp_optimizer end

# ---------------------------------------------------------------------------
# Structs (field order and widths as in fwp.h)

"`fwp_context_config`; fill with [`fwp_context_config_init`](@ref). `log_callback` is a C function pointer."
struct fwp_context_config
    struct_size::UInt32
    device::fwp_device
    device_index::Int32
    num_threads::Int32
    seed::UInt64
    log_callback::Ptr{Cvoid}
    log_user_data::Ptr{Cvoid}
    log_level::fwp_log_level
end

"`fwp_param_info`: description of one parameter tensor (`name` is owned by the object)."
struct fwp_param_info
    name::Ptr{UInt8}
    ndim::Int32
    shape::NTuple{FWP_MAX_DIMS,Int64}
    numel::Int64
    trainable::Int32
end

"`fwp_layer_config`; fill with [`fwp_layer_config_init`](@ref)."
struct fwp_layer_config
    struct_size::UInt32
    d_model::Int64
    num_heads::Int64
    d_head::Int64
    feature_map::fwp_feature_map
    dpfp_nu::Int64
    favor_features::Int64
    favor_redraw::Int32
    update_rule::fwp_update_rule
    sum_normalize::Int32
    attn_normalize::Int32
    norm_eps::Cfloat
    scale_output::Int32
    use_bias::Int32
    init_std::Cfloat
    algorithm::fwp_algorithm
    chunk_size::Int64
    carry_state::Int32
end

"`fwp_retrieval_config`; fill with [`fwp_retrieval_config_init`](@ref)."
struct fwp_retrieval_config
    struct_size::UInt32
    setting::Int32
    num_keys::Int64
    d_head::Int64
    feature_map::fwp_feature_map
    dpfp_nu::Int64
    favor_features::Int64
    favor_redraw::Int32
    update_rule::fwp_update_rule
    sum_normalize::Int32
    attn_normalize::Int32
    norm_eps::Cfloat
end

"`fwp_retrieval_batch`: pointers to caller-owned `[B][L]` and `[B][Q]` Int32 arrays."
struct fwp_retrieval_batch
    batch_size::Int64
    seq_len::Int64
    num_queries::Int64
    keys::Ptr{Int32}
    values::Ptr{Int32}
    queries::Ptr{Int32}
    targets::Ptr{Int32}
end

"`fwp_optimizer_config`; fill with [`fwp_optimizer_config_init`](@ref)."
struct fwp_optimizer_config
    struct_size::UInt32
    kind::fwp_optimizer_kind
    learning_rate::Cfloat
    beta1::Cfloat
    beta2::Cfloat
    eps::Cfloat
    weight_decay::Cfloat
    momentum::Cfloat
    clip_grad_norm::Cfloat
    lr_schedule::fwp_lr_schedule
    warmup_steps::Int64
    total_steps::Int64
    min_learning_rate::Cfloat
end

# ---------------------------------------------------------------------------
# Functions, in the order of fwp.h

"Reports the run-time version (each pointer may be `C_NULL`)."
fwp_version(major, minor, patch) =
    @ccall libfwp().fwp_version(major::Ptr{Cint}, minor::Ptr{Cint}, patch::Ptr{Cint})::Cvoid

"The run-time version as a static C string."
fwp_version_string() = @ccall libfwp().fwp_version_string()::Cstring

"A short static description of a status code."
fwp_status_string(status) = @ccall libfwp().fwp_status_string(status::fwp_status)::Cstring

"The calling thread's last error message (never NULL)."
fwp_last_error_message() = @ccall libfwp().fwp_last_error_message()::Cstring

"Clears the calling thread's last error message."
fwp_clear_error() = @ccall libfwp().fwp_clear_error()::Cvoid

"Fills a context config with the defaults."
fwp_context_config_init(config) =
    @ccall libfwp().fwp_context_config_init(config::Ptr{fwp_context_config})::Cvoid

"Creates a context (`config` may be `C_NULL` for defaults)."
fwp_context_create(config, out) =
    @ccall libfwp().fwp_context_create(config::Ptr{fwp_context_config}, out::Ptr{Ptr{fwp_context}})::fwp_status

"Releases the caller's reference to a context."
fwp_context_destroy(ctx) = @ccall libfwp().fwp_context_destroy(ctx::Ptr{fwp_context})::Cvoid

"The device a context computes on."
fwp_context_get_device(ctx, device) =
    @ccall libfwp().fwp_context_get_device(ctx::Ptr{fwp_context}, device::Ptr{fwp_device})::fwp_status

"The number of CPU threads a context uses."
fwp_context_get_num_threads(ctx, num_threads) =
    @ccall libfwp().fwp_context_get_num_threads(ctx::Ptr{fwp_context}, num_threads::Ptr{Int32})::fwp_status

"1 if the library was built with CUDA, else 0."
fwp_cuda_is_built() = @ccall libfwp().fwp_cuda_is_built()::Cint

"The number of visible CUDA devices."
fwp_cuda_device_count(count) = @ccall libfwp().fwp_cuda_device_count(count::Ptr{Int32})::fwp_status

"Fills a layer config with the defaults."
fwp_layer_config_init(config) = @ccall libfwp().fwp_layer_config_init(config::Ptr{fwp_layer_config})::Cvoid

"Creates a layer."
fwp_layer_create(ctx, config, out) = @ccall libfwp().fwp_layer_create(
    ctx::Ptr{fwp_context}, config::Ptr{fwp_layer_config}, out::Ptr{Ptr{fwp_layer}})::fwp_status

"Destroys a layer."
fwp_layer_destroy(layer) = @ccall libfwp().fwp_layer_destroy(layer::Ptr{fwp_layer})::Cvoid

"Copies the layer's settings (`struct_size` must be set)."
fwp_layer_get_config(layer, config) =
    @ccall libfwp().fwp_layer_get_config(layer::Ptr{fwp_layer}, config::Ptr{fwp_layer_config})::fwp_status

"The feature dimension d_dot (0 for softmax attention)."
fwp_layer_feature_dim(layer, d_dot) =
    @ccall libfwp().fwp_layer_feature_dim(layer::Ptr{fwp_layer}, d_dot::Ptr{Int64})::fwp_status

"Switches between training (1) and evaluation (0) mode."
fwp_layer_set_training(layer, training) =
    @ccall libfwp().fwp_layer_set_training(layer::Ptr{fwp_layer}, training::Cint)::fwp_status

"Forward pass over `[batch][seq_len][d_model]` floats."
fwp_layer_forward(layer, x, batch, seq_len, y) = @ccall libfwp().fwp_layer_forward(
    layer::Ptr{fwp_layer}, x::Ptr{Cfloat}, batch::Int64, seq_len::Int64, y::Ptr{Cfloat})::fwp_status

"Backward pass of the last forward (`dx` may be `C_NULL`)."
fwp_layer_backward(layer, dy, batch, seq_len, dx) = @ccall libfwp().fwp_layer_backward(
    layer::Ptr{fwp_layer}, dy::Ptr{Cfloat}, batch::Int64, seq_len::Int64, dx::Ptr{Cfloat})::fwp_status

"Sets all parameter gradients of a layer to zero."
fwp_layer_zero_grad(layer) = @ccall libfwp().fwp_layer_zero_grad(layer::Ptr{fwp_layer})::fwp_status

"The number of parameter tensors of a layer."
fwp_layer_num_params(layer, count) =
    @ccall libfwp().fwp_layer_num_params(layer::Ptr{fwp_layer}, count::Ptr{Int64})::fwp_status

"Describes parameter `index` (0-based) of a layer."
fwp_layer_param_info(layer, index, info) = @ccall libfwp().fwp_layer_param_info(
    layer::Ptr{fwp_layer}, index::Int64, info::Ptr{fwp_param_info})::fwp_status

"Finds a layer parameter by name (0-based index)."
fwp_layer_param_index(layer, name, index) = @ccall libfwp().fwp_layer_param_index(
    layer::Ptr{fwp_layer}, name::Cstring, index::Ptr{Int64})::fwp_status

"Copies a layer parameter out (`count` must equal numel)."
fwp_layer_get_param(layer, index, data, count) = @ccall libfwp().fwp_layer_get_param(
    layer::Ptr{fwp_layer}, index::Int64, data::Ptr{Cfloat}, count::Int64)::fwp_status

"Overwrites a layer parameter (`count` must equal numel)."
fwp_layer_set_param(layer, index, data, count) = @ccall libfwp().fwp_layer_set_param(
    layer::Ptr{fwp_layer}, index::Int64, data::Ptr{Cfloat}, count::Int64)::fwp_status

"Copies a layer parameter's gradient out."
fwp_layer_get_grad(layer, index, data, count) = @ccall libfwp().fwp_layer_get_grad(
    layer::Ptr{fwp_layer}, index::Int64, data::Ptr{Cfloat}, count::Int64)::fwp_status

"The sizes of the fast-weight state for `batch` rows (outputs may be `C_NULL`)."
fwp_layer_state_size(layer, batch, w_count, z_count) = @ccall libfwp().fwp_layer_state_size(
    layer::Ptr{fwp_layer}, batch::Int64, w_count::Ptr{Int64}, z_count::Ptr{Int64})::fwp_status

"Sets the fast-weight state (`C_NULL` means zeros)."
fwp_layer_set_state(layer, batch, w, w_count, z, z_count) = @ccall libfwp().fwp_layer_set_state(
    layer::Ptr{fwp_layer}, batch::Int64, w::Ptr{Cfloat}, w_count::Int64, z::Ptr{Cfloat},
    z_count::Int64)::fwp_status

"Copies the fast-weight state out (`w`, `z` may be `C_NULL`)."
fwp_layer_get_state(layer, batch, w, w_count, z, z_count) = @ccall libfwp().fwp_layer_get_state(
    layer::Ptr{fwp_layer}, batch::Ptr{Int64}, w::Ptr{Cfloat}, w_count::Int64, z::Ptr{Cfloat},
    z_count::Int64)::fwp_status

"The gradient with respect to the initial state of the last backward."
fwp_layer_get_state_grad(layer, dw, w_count, dz, z_count) = @ccall libfwp().fwp_layer_get_state_grad(
    layer::Ptr{fwp_layer}, dw::Ptr{Cfloat}, w_count::Int64, dz::Ptr{Cfloat}, z_count::Int64)::fwp_status

"Forgets the layer's state."
fwp_layer_reset_state(layer) = @ccall libfwp().fwp_layer_reset_state(layer::Ptr{fwp_layer})::fwp_status

"Recurrent inference: one token per batch row."
fwp_layer_step(layer, x, batch, y) = @ccall libfwp().fwp_layer_step(
    layer::Ptr{fwp_layer}, x::Ptr{Cfloat}, batch::Int64, y::Ptr{Cfloat})::fwp_status

"Fills a retrieval config with the defaults."
fwp_retrieval_config_init(config) =
    @ccall libfwp().fwp_retrieval_config_init(config::Ptr{fwp_retrieval_config})::Cvoid

"Creates the retrieval model."
fwp_model_create_retrieval(ctx, config, out) = @ccall libfwp().fwp_model_create_retrieval(
    ctx::Ptr{fwp_context}, config::Ptr{fwp_retrieval_config}, out::Ptr{Ptr{fwp_model}})::fwp_status

"Destroys a model."
fwp_model_destroy(model) = @ccall libfwp().fwp_model_destroy(model::Ptr{fwp_model})::Cvoid

"The kind of a model."
fwp_model_get_kind(model, kind) =
    @ccall libfwp().fwp_model_get_kind(model::Ptr{fwp_model}, kind::Ptr{fwp_model_kind})::fwp_status

"Copies the settings of a retrieval model (`struct_size` must be set)."
fwp_model_get_retrieval_config(model, config) = @ccall libfwp().fwp_model_get_retrieval_config(
    model::Ptr{fwp_model}, config::Ptr{fwp_retrieval_config})::fwp_status

"Switches a model between training (1) and evaluation (0) mode."
fwp_model_set_training(model, training) =
    @ccall libfwp().fwp_model_set_training(model::Ptr{fwp_model}, training::Cint)::fwp_status

"The number of parameter tensors of a model."
fwp_model_num_params(model, count) =
    @ccall libfwp().fwp_model_num_params(model::Ptr{fwp_model}, count::Ptr{Int64})::fwp_status

"Describes parameter `index` (0-based) of a model."
fwp_model_param_info(model, index, info) = @ccall libfwp().fwp_model_param_info(
    model::Ptr{fwp_model}, index::Int64, info::Ptr{fwp_param_info})::fwp_status

"Finds a model parameter by name (0-based index)."
fwp_model_param_index(model, name, index) = @ccall libfwp().fwp_model_param_index(
    model::Ptr{fwp_model}, name::Cstring, index::Ptr{Int64})::fwp_status

"Copies a model parameter out."
fwp_model_get_param(model, index, data, count) = @ccall libfwp().fwp_model_get_param(
    model::Ptr{fwp_model}, index::Int64, data::Ptr{Cfloat}, count::Int64)::fwp_status

"Overwrites a model parameter."
fwp_model_set_param(model, index, data, count) = @ccall libfwp().fwp_model_set_param(
    model::Ptr{fwp_model}, index::Int64, data::Ptr{Cfloat}, count::Int64)::fwp_status

"Copies a model parameter's gradient out."
fwp_model_get_grad(model, index, data, count) = @ccall libfwp().fwp_model_get_grad(
    model::Ptr{fwp_model}, index::Int64, data::Ptr{Cfloat}, count::Int64)::fwp_status

"Sets all gradients of a model to zero."
fwp_model_zero_grad(model) = @ccall libfwp().fwp_model_zero_grad(model::Ptr{fwp_model})::fwp_status

"Forward pass and loss of the retrieval model (`outputs` may be `C_NULL`)."
fwp_retrieval_forward(model, batch, loss, outputs, outputs_count) = @ccall libfwp().fwp_retrieval_forward(
    model::Ptr{fwp_model}, batch::Ptr{fwp_retrieval_batch}, loss::Ptr{Cfloat}, outputs::Ptr{Cfloat},
    outputs_count::Int64)::fwp_status

"Backward pass of the last forward of a model."
fwp_model_backward(model) = @ccall libfwp().fwp_model_backward(model::Ptr{fwp_model})::fwp_status

"Destroys a data source of any kind."
fwp_data_destroy(data) = @ccall libfwp().fwp_data_destroy(data::Ptr{fwp_data})::Cvoid

"The kind of a data source."
fwp_data_get_kind(data, kind) =
    @ccall libfwp().fwp_data_get_kind(data::Ptr{fwp_data}, kind::Ptr{fwp_data_kind})::fwp_status

"Creates a generator of retrieval data."
fwp_retrieval_data_create(setting, num_keys, seed, out) = @ccall libfwp().fwp_retrieval_data_create(
    setting::Int32, num_keys::Int64, seed::UInt64, out::Ptr{Ptr{fwp_retrieval_data}})::fwp_status

"Destroys a retrieval data generator."
fwp_retrieval_data_destroy(data) =
    @ccall libfwp().fwp_retrieval_data_destroy(data::Ptr{fwp_retrieval_data})::Cvoid

"The sequence length L of a generator."
fwp_retrieval_data_seq_len(data, seq_len) =
    @ccall libfwp().fwp_retrieval_data_seq_len(data::Ptr{fwp_retrieval_data}, seq_len::Ptr{Int64})::fwp_status

"Draws a batch of retrieval sequences into `[B][L]` and `[B][Q]` Int32 buffers."
fwp_retrieval_data_sample(data, batch_size, queries_per_seq, keys, values, queries, targets) =
    @ccall libfwp().fwp_retrieval_data_sample(
        data::Ptr{fwp_retrieval_data}, batch_size::Int64, queries_per_seq::Int64, keys::Ptr{Int32},
        values::Ptr{Int32}, queries::Ptr{Int32}, targets::Ptr{Int32})::fwp_status

"Fills an optimizer config with the defaults."
fwp_optimizer_config_init(config) =
    @ccall libfwp().fwp_optimizer_config_init(config::Ptr{fwp_optimizer_config})::Cvoid

"Creates an optimizer over a model (which must outlive it)."
fwp_optimizer_create_for_model(model, config, out) = @ccall libfwp().fwp_optimizer_create_for_model(
    model::Ptr{fwp_model}, config::Ptr{fwp_optimizer_config}, out::Ptr{Ptr{fwp_optimizer}})::fwp_status

"Creates an optimizer over a layer (which must outlive it)."
fwp_optimizer_create_for_layer(layer, config, out) = @ccall libfwp().fwp_optimizer_create_for_layer(
    layer::Ptr{fwp_layer}, config::Ptr{fwp_optimizer_config}, out::Ptr{Ptr{fwp_optimizer}})::fwp_status

"Destroys an optimizer."
fwp_optimizer_destroy(opt) = @ccall libfwp().fwp_optimizer_destroy(opt::Ptr{fwp_optimizer})::Cvoid

"One update of all trainable parameters (`grad_norm` may be `C_NULL`)."
fwp_optimizer_step(opt, grad_norm) =
    @ccall libfwp().fwp_optimizer_step(opt::Ptr{fwp_optimizer}, grad_norm::Ptr{Cfloat})::fwp_status

"Zeroes the gradients of the optimizer's parameters."
fwp_optimizer_zero_grad(opt) = @ccall libfwp().fwp_optimizer_zero_grad(opt::Ptr{fwp_optimizer})::fwp_status

"Reads the learning rate."
fwp_optimizer_get_lr(opt, lr) =
    @ccall libfwp().fwp_optimizer_get_lr(opt::Ptr{fwp_optimizer}, lr::Ptr{Cfloat})::fwp_status

"Sets the learning rate."
fwp_optimizer_set_lr(opt, lr) = @ccall libfwp().fwp_optimizer_set_lr(opt::Ptr{fwp_optimizer}, lr::Cfloat)::fwp_status

"The number of steps taken."
fwp_optimizer_get_step(opt, steps) =
    @ccall libfwp().fwp_optimizer_get_step(opt::Ptr{fwp_optimizer}, steps::Ptr{Int64})::fwp_status

"Saves a model (optionally its optimizer and the state of a data source) to a checkpoint."
fwp_checkpoint_save(path, model, opt, data, user_metadata) = @ccall libfwp().fwp_checkpoint_save(
    path::Cstring, model::Ptr{fwp_model}, opt::Ptr{fwp_optimizer}, data::Ptr{fwp_data},
    user_metadata::Cstring)::fwp_status

"Loads a checkpoint into existing objects (all or nothing)."
fwp_checkpoint_load(path, model, opt, data) = @ccall libfwp().fwp_checkpoint_load(
    path::Cstring, model::Ptr{fwp_model}, opt::Ptr{fwp_optimizer}, data::Ptr{fwp_data})::fwp_status

"Creates a model from a checkpoint."
fwp_model_load(ctx, path, out) =
    @ccall libfwp().fwp_model_load(ctx::Ptr{fwp_context}, path::Cstring, out::Ptr{Ptr{fwp_model}})::fwp_status

end # module LibFwp
