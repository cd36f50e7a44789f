"""
    FastWeights

Julia interface of libfwp: fast weight programmers (linear transformers) from
Schlag, Irie and Schmidhuber (ICML 2021), implemented in C++/CUDA behind a
stable C API.

Objects own their C handles, release them in a finalizer, and can be released
early with `close`. Errors raise [`FwpError`](@ref) with the library's status
and message. Every function that changes one of its arguments (a layer's
activations or state, a model's gradients, a generator's position, an
optimizer's step) ends in `!`: `forward!`, `backward!`, `step!`, `sample!`, ...

Each kind of model is a type of its own ([`RetrievalModel`](@ref),
[`LanguageModel`](@ref), [`Seq2SeqModel`](@ref)) under
the abstract type [`Model`](@ref), which carries the operations all kinds
share (parameters, `backward!`, `zero_grad!`, checkpoints, optimizers).

Names that would clash with other packages are not exported; call them
qualified: `FastWeights.version()`, `FastWeights.device(ctx)`,
`FastWeights.num_threads(ctx)`, `FastWeights.config(layer_or_model)`,
`FastWeights.seq_len(data)`, `FastWeights.learning_rate(opt)`,
`FastWeights.steps(opt)`, `FastWeights.evaluate(lm, tokens; ...)`,
`FastWeights.evaluate(seq2seq_model, batch)`,
`FastWeights.encode(tokenizer, text)`, `FastWeights.decode(tokenizer, ids)`.

Arrays use Julia's column-major order with the C row-major dimensions
reversed, so no data is transposed: a C `[batch][seq_len][d_model]` buffer is a
Julia `d_model × seq_len × batch` array, and a weight of C shape
`[out, in]` comes back as an `in × out` matrix. Parameter indices are 1-based.

The raw C API is in the submodule [`LibFwp`](@ref FastWeights.LibFwp). The
library is loaded from `ENV["FWP_LIBRARY"]` (read when the package loads) or
found by the dynamic loader as `libfwp`.
"""
module FastWeights

include("LibFwp.jl")
using .LibFwp

# Exported: the types and the functions whose names say they belong to fwp.
# Functions that mutate an argument end in `!`. Generic names that would clash
# with common packages (`version`, `device`, `num_threads`, `config`,
# `seq_len`, `learning_rate`, `steps`, `evaluate`, `encode`, `decode`) are
# public but not exported: call them qualified, e.g. `FastWeights.config(layer)`.
export FwpError, Context, Layer, Model, RetrievalModel, OtherModel, DataSource, RetrievalData, RetrievalBatch
export Optimizer
export cuda_is_built, cuda_device_count, last_error_message, clear_error
export feature_dim, set_training!, forward!, backward!, zero_grad!
export num_params, param_info, param_index, getparam, setparam!, getgrad
export state_size, set_state!, get_state, state_grad, reset_state!, step!
export State, state_batch, num_state_layers, reorder!, cache_length
export load_model, model_kind, data_kind, sample!
export set_learning_rate!, save_checkpoint, load_checkpoint!
export LanguageModel, lm_config, vocab_size, generate!, sample_token!
export Tokenizer, train_word_tokenizer, train_sentencepiece, sentencepiece_available, load_tokenizer, save_tokenizer
export tokenizer_kind, eos_id, unk_id, token_to_id, id_to_token, encode_file, token_file_info, read_token_file
export TokenData, next_batch!, data_epoch, data_position, segments_per_epoch, num_tokens
export bleu, chrf
export PairData, encode_pair_file, pair_file_info, pair_special_ids, peek_batch, max_batch_shape, batches_per_epoch
export reset_epoch!, get_pair
export Seq2SeqModel, seq2seq_config, translate
export DistConfig, Dist, engine_available, sync_model!, average_gradients!, dist_sum!, gather_state!
export set_shard!, get_shard

const L = LibFwp

# ---------------------------------------------------------------------------
# Errors

const STATUS_NAMES = Dict{Int32,Symbol}(
    L.FWP_OK => :ok,
    L.FWP_ERR_INVALID_ARGUMENT => :invalid_argument,
    L.FWP_ERR_NULL_POINTER => :null_pointer,
    L.FWP_ERR_SHAPE_MISMATCH => :shape_mismatch,
    L.FWP_ERR_OUT_OF_RANGE => :out_of_range,
    L.FWP_ERR_BAD_STATE => :bad_state,
    L.FWP_ERR_UNSUPPORTED => :unsupported,
    L.FWP_ERR_DEVICE => :device,
    L.FWP_ERR_OUT_OF_MEMORY => :out_of_memory,
    L.FWP_ERR_IO => :io,
    L.FWP_ERR_FORMAT => :format,
    L.FWP_ERR_CONTEXT_MISMATCH => :context_mismatch,
    L.FWP_ERR_INTERNAL => :internal,
    L.FWP_ERR_DISTRIBUTED => :distributed,
)

"""
    FwpError(status, message)

A failed call. `status` is the C status code (`Int32`, see `LibFwp.FWP_ERR_*`),
`kind` its name as a `Symbol` (e.g. `:invalid_argument`, `:shape_mismatch`,
`:bad_state`; `:unknown` for a code these bindings do not know), and `message`
the library's message naming the argument and the problem (`:distributed`: a
collective of a [`Dist`](@ref) group failed; the group cannot go on). The bindings raise
the same statuses for problems they find before calling C (e.g. a wrong array
size).
"""
struct FwpError <: Exception
    status::Int32
    kind::Symbol
    message::String
end

FwpError(status::Integer, message::AbstractString) =
    FwpError(Int32(status), get(STATUS_NAMES, Int32(status), :unknown), String(message))

function Base.showerror(io::IO, e::FwpError)
    print(io, "FwpError(", e.kind, "): ", e.message)
end

"""
    check(status)

Returns `nothing` for `FWP_OK`; otherwise throws an [`FwpError`](@ref) with the
calling thread's last error message (read at once, before any other call).
"""
function check(status::Integer)
    status == L.FWP_OK && return nothing
    message = unsafe_string(L.fwp_last_error_message())
    throw(FwpError(status, message))
end

shape_error(message) = throw(FwpError(L.FWP_ERR_SHAPE_MISMATCH, message))
argument_error(message) = throw(FwpError(L.FWP_ERR_INVALID_ARGUMENT, message))

"""
    last_error_message() -> String

The calling thread's last error message of the C library (`""` if none).
"""
last_error_message() = unsafe_string(L.fwp_last_error_message())

"""
    clear_error()

Clears the calling thread's last error message.
"""
clear_error() = L.fwp_clear_error()

# ---------------------------------------------------------------------------
# Library information

"""
    FastWeights.version() -> VersionNumber

The version of the libfwp loaded at run time.
"""
function version()
    major, minor, patch = Ref{Cint}(0), Ref{Cint}(0), Ref{Cint}(0)
    L.fwp_version(major, minor, patch)
    return VersionNumber(major[], minor[], patch[])
end

"""
    FastWeights.version_string() -> String

The run-time version as a string such as `"0.1.0"`.
"""
version_string() = unsafe_string(L.fwp_version_string())

"""
    cuda_is_built() -> Bool

Whether the loaded libfwp contains the CUDA backend.
"""
cuda_is_built() = L.fwp_cuda_is_built() != 0

"""
    cuda_device_count() -> Int

The number of CUDA devices visible to this process (0 without CUDA or GPU).
"""
function cuda_device_count()
    count = Ref{Int32}(0)
    check(L.fwp_cuda_device_count(count))
    return Int(count[])
end

# ---------------------------------------------------------------------------
# Config structs from keywords

const ENUM_FIELDS = Dict{Symbol,Dict{Symbol,Int32}}(
    :device => Dict(:cpu => L.FWP_DEVICE_CPU, :cuda => L.FWP_DEVICE_CUDA),
    :log_level => Dict(:debug => L.FWP_LOG_DEBUG, :info => L.FWP_LOG_INFO, :warn => L.FWP_LOG_WARN,
        :error => L.FWP_LOG_ERROR, :off => L.FWP_LOG_OFF),
    :feature_map => Dict(:elu => L.FWP_FEATURE_MAP_ELU, :favor => L.FWP_FEATURE_MAP_FAVOR,
        :dpfp => L.FWP_FEATURE_MAP_DPFP, :softmax => L.FWP_FEATURE_MAP_SOFTMAX),
    :update_rule => Dict(:sum => L.FWP_UPDATE_SUM, :delta => L.FWP_UPDATE_DELTA),
    :algorithm => Dict(:auto => L.FWP_ALGORITHM_AUTO, :recurrent => L.FWP_ALGORITHM_RECURRENT,
        :chunked => L.FWP_ALGORITHM_CHUNKED),
    :kind => Dict(:sgd => L.FWP_OPTIMIZER_SGD, :adam => L.FWP_OPTIMIZER_ADAM, :adamw => L.FWP_OPTIMIZER_ADAMW),
    :position => Dict(:sinusoidal => L.FWP_LM_POSITION_SINUSOIDAL, :none => L.FWP_LM_POSITION_NONE),
    :model_type => Dict(:unigram => L.FWP_SENTENCEPIECE_UNIGRAM, :bpe => L.FWP_SENTENCEPIECE_BPE),
    :lr_schedule => Dict(:constant => L.FWP_LR_CONSTANT, :warmup_cosine => L.FWP_LR_WARMUP_COSINE,
        :inverse_sqrt => L.FWP_LR_INVERSE_SQRT),
    :tokenize => Dict(:mteval13a => L.FWP_BLEU_TOKENIZE_13A, :none => L.FWP_BLEU_TOKENIZE_NONE),
    :smooth_method => Dict(:exp => L.FWP_BLEU_SMOOTH_EXP, :none => L.FWP_BLEU_SMOOTH_NONE,
        :floor => L.FWP_BLEU_SMOOTH_FLOOR, :add_k => L.FWP_BLEU_SMOOTH_ADD_K),
    :too_long => Dict(:skip => L.FWP_PAIR_SKIP, :error => L.FWP_PAIR_ERROR),
    :empty_lines => Dict(:skip => L.FWP_PAIR_SKIP, :error => L.FWP_PAIR_ERROR),
    :stop => Dict(:finished => L.FWP_BEAM_STOP_FINISHED, :no_better => L.FWP_BEAM_STOP_NO_BETTER),
    :engine => Dict(:mpi => L.FWP_DIST_MPI, :nccl => L.FWP_DIST_NCCL, :callback => L.FWP_DIST_CALLBACK),
)

const FLAG_FIELDS = (:favor_redraw, :sum_normalize, :attn_normalize, :scale_output, :use_bias, :carry_state,
    :pre_norm, :tie_embeddings, :byte_fallback, :verbose, :effective_order, :whitespace, :eps_smoothing, :pad_bos,
    :shuffle)

# Fields the high-level keywords may not set (the bindings manage them).
const HIDDEN_FIELDS = (:struct_size, :log_callback, :log_user_data, :allreduce, :user_data)

function field_value(T::Type, name::Symbol, value)
    FT = fieldtype(T, name)
    if haskey(ENUM_FIELDS, name) && value isa Symbol
        table = ENUM_FIELDS[name]
        haskey(table, value) ||
            argument_error("$name = :$value is not one of $(join(sort!(collect(keys(table))), ", "))")
        return FT(table[value])
    elseif name in FLAG_FIELDS && value isa Bool
        return FT(value)
    end
    return convert(FT, value)
end

"""
    with_fields(config; kw...)

A copy of the C config struct `config` with the fields named by the keywords
replaced. Enum fields take symbols (`feature_map = :dpfp`), flags take `Bool`.
"""
function with_fields(config::T; kw...) where {T}
    names = fieldnames(T)
    for (k, _) in kw
        (k in names && !(k in HIDDEN_FIELDS)) ||
            argument_error("unknown setting $k; valid: $(join(filter(n -> !(n in HIDDEN_FIELDS), names), ", "))")
    end
    values = map(names) do n
        haskey(kw, n) ? field_value(T, n, kw[n]) : getfield(config, n)
    end
    return T(values...)
end

"""
    export_config(config) -> NamedTuple

The fields of a C config struct as a `NamedTuple`, with enums as symbols and
flags as `Bool`.
"""
function export_config(config::T) where {T}
    names = Tuple(n for n in fieldnames(T) if !(n in HIDDEN_FIELDS))
    values = map(names) do n
        v = getfield(config, n)
        if haskey(ENUM_FIELDS, n)
            key = findfirst(==(v), ENUM_FIELDS[n])
            key === nothing ? Int(v) : key
        elseif n in FLAG_FIELDS
            v != 0
        else
            v
        end
    end
    return NamedTuple{names}(values)
end

function default_config(::Type{T}, init) where {T}
    ref = Ref{T}()
    init(ref)
    return ref[]
end

# ---------------------------------------------------------------------------
# Context

# The C callback: forwards a log message to the Julia function kept in the
# context's `logger` box (passed as user data).
function log_trampoline(level::Cint, message::Cstring, user_data::Ptr{Cvoid})::Cvoid
    try
        box = unsafe_pointer_to_objref(user_data)::Base.RefValue{Any}
        lvl = findfirst(==(level), ENUM_FIELDS[:log_level])
        box[](lvl === nothing ? Int(level) : lvl, unsafe_string(message))
    catch
        # An exception must not unwind into C; the message is lost.
    end
    return nothing
end

"""
    Context(; device = :cpu, device_index = 0, num_threads = 0, seed = 42,
            log_level = :warn, logger = nothing)

A device, a CPU thread count (0 = all hardware threads), a random seed and an
optional logger `logger(level::Symbol, message::String)` (called on the thread
that makes the fwp call), shared by the layers and models created from it.
Defaults come from `fwp_context_config_init`. The library reference-counts
contexts, so a context may be closed before the objects created from it.
"""
mutable struct Context
    ptr::Ptr{L.fwp_context}
    logger::Union{Nothing,Base.RefValue{Any}}

    function Context(; logger = nothing, kw...)
        cfg = with_fields(default_config(L.fwp_context_config, L.fwp_context_config_init); kw...)
        box = logger === nothing ? nothing : Ref{Any}(logger)
        if box !== nothing
            callback = @cfunction(log_trampoline, Cvoid, (Cint, Cstring, Ptr{Cvoid}))
            cfg = L.fwp_context_config(cfg.struct_size, cfg.device, cfg.device_index, cfg.num_threads, cfg.seed,
                callback, pointer_from_objref(box), cfg.log_level)
        end
        out = Ref{Ptr{L.fwp_context}}(C_NULL)
        GC.@preserve box check(L.fwp_context_create(Ref(cfg), out))
        ctx = new(out[], box)
        finalizer(close, ctx)
        return ctx
    end
end

"""
    close(ctx::Context)

Releases the caller's reference to the context now (objects created from it
keep what they need). Later calls on `ctx` throw; closing twice is a no-op.
"""
function Base.close(ctx::Context)
    if ctx.ptr != C_NULL
        L.fwp_context_destroy(ctx.ptr)
        ctx.ptr = C_NULL
    end
    return nothing
end

Base.isopen(ctx::Context) = ctx.ptr != C_NULL

function handle(ctx::Context)
    ctx.ptr == C_NULL && throw(FwpError(L.FWP_ERR_BAD_STATE, "the Context is closed"))
    return ctx.ptr
end

"""
    FastWeights.device(ctx::Context) -> Symbol

The device the context computes on (`:cpu` or `:cuda`).
"""
function device(ctx::Context)
    d = Ref{L.fwp_device}(0)
    check(L.fwp_context_get_device(handle(ctx), d))
    key = findfirst(==(d[]), ENUM_FIELDS[:device])
    return key === nothing ? Int(d[]) : key
end

"""
    FastWeights.num_threads(ctx::Context) -> Int

The number of CPU threads the context uses.
"""
function num_threads(ctx::Context)
    n = Ref{Int32}(0)
    check(L.fwp_context_get_num_threads(handle(ctx), n))
    return Int(n[])
end

# ---------------------------------------------------------------------------
# Handles that optimizers point into: a Layer or a Model. The C library needs
# the layer or model to outlive its optimizer, so closing one while an
# optimizer over it is open only marks it closed; the C object is destroyed
# when the last such optimizer goes (finalizers may run in any order).

abstract type Trainable end

function release!(obj::Trainable, destroy)
    obj.closed = true
    if obj.optimizers == 0 && obj.ptr != C_NULL
        destroy(obj.ptr)
        obj.ptr = C_NULL
    end
    return nothing
end

function handle(obj::Trainable)
    obj.closed && throw(FwpError(L.FWP_ERR_BAD_STATE, "the $(nameof(typeof(obj))) is closed"))
    return obj.ptr
end

Base.isopen(obj::Trainable) = !obj.closed

"""
    Layer(ctx::Context; d_model = 128, num_heads = 8, d_head = 16, feature_map = :dpfp,
          dpfp_nu = 1, favor_features = 64, favor_redraw = true, update_rule = :delta,
          sum_normalize = true, attn_normalize = false, norm_eps = 1f-6, scale_output = true,
          use_bias = false, init_std = 0.02f0, algorithm = :auto, chunk_size = 0,
          carry_state = false)

A multi-head fast-weight (or softmax, `feature_map = :softmax`) attention
layer with its parameters, gradients and fast-weight state. Defaults come from
`fwp_layer_config_init`. Inputs are `d_model × seq_len × batch` arrays.
"""
mutable struct Layer <: Trainable
    ptr::Ptr{L.fwp_layer}
    d_model::Int
    logger::Union{Nothing,Base.RefValue{Any}}
    optimizers::Int
    closed::Bool

    function Layer(ctx::Context; kw...)
        cfg = with_fields(default_config(L.fwp_layer_config, L.fwp_layer_config_init); kw...)
        out = Ref{Ptr{L.fwp_layer}}(C_NULL)
        check(L.fwp_layer_create(handle(ctx), Ref(cfg), out))
        layer = new(out[], Int(cfg.d_model), ctx.logger, 0, false)
        finalizer(close, layer)
        return layer
    end
end

"""
    close(layer::Layer)

Destroys the layer now (or, while an optimizer over it is open, when that
optimizer is closed). Later calls on `layer` throw.
"""
Base.close(layer::Layer) = release!(layer, L.fwp_layer_destroy)

"""
    FastWeights.config(layer::Layer) -> NamedTuple
    FastWeights.config(model::RetrievalModel) -> NamedTuple

The settings the object was created with (enums as symbols, flags as `Bool`).
"""
function config(layer::Layer)
    ref = Ref(default_config(L.fwp_layer_config, L.fwp_layer_config_init))
    check(L.fwp_layer_get_config(handle(layer), ref))
    return export_config(ref[])
end

"""
    feature_dim(layer::Layer) -> Int

The feature dimension d_dot of phi (0 for softmax attention).
"""
function feature_dim(layer::Layer)
    d = Ref{Int64}(0)
    check(L.fwp_layer_feature_dim(handle(layer), d))
    return Int(d[])
end

"""
    set_training!(layer_or_model, training::Bool)

Switches between training (the default) and evaluation mode.
"""
set_training!(layer::Layer, training::Bool) = check(L.fwp_layer_set_training(handle(layer), Cint(training)))

function check_sequence(layer::Layer, x::AbstractArray, name)
    ndims(x) == 3 || shape_error("$name must be a d_model × seq_len × batch array, got $(size(x))")
    size(x, 1) == layer.d_model || shape_error("$name has $(size(x, 1)) features, the layer's d_model is $(layer.d_model)")
    return size(x, 3), size(x, 2)
end

"""
    forward!(layer::Layer, x::AbstractArray{<:Real,3}) -> Array{Float32,3}

Forward pass over `x` (`d_model × seq_len × batch`); returns `y` of the same
size. Changes the layer: it keeps what [`backward!`](@ref) needs (and, with
`carry_state`, the final state).
"""
function forward!(layer::Layer, x::AbstractArray{<:Real,3})
    batch, seq = check_sequence(layer, x, "x")
    xc = Array{Float32}(x)
    y = similar(xc)
    check(L.fwp_layer_forward(handle(layer), xc, batch, seq, y))
    return y
end

"""
    backward!(layer::Layer, dy::AbstractArray{<:Real,3}; dx = true) -> Union{Array{Float32,3},Nothing}

Backward pass of the last forward: adds the parameter gradients to the layer's
gradients, computes the gradient of the initial state, and returns dL/dx
(`nothing` with `dx = false`). The final state's gradient is taken as zero.
"""
function backward!(layer::Layer, dy::AbstractArray{<:Real,3}; dx::Bool = true)
    batch, seq = check_sequence(layer, dy, "dy")
    dyc = Array{Float32}(dy)
    dxc = dx ? similar(dyc) : nothing
    check(L.fwp_layer_backward(handle(layer), dyc, batch, seq, dx ? dxc : Ptr{Cfloat}(C_NULL)))
    return dxc
end

"""
    zero_grad!(layer_or_model_or_optimizer)

Sets the gradients to zero.
"""
zero_grad!(layer::Layer) = check(L.fwp_layer_zero_grad(handle(layer)))

"""
    state_size(layer::Layer, batch::Integer) -> (w_count, z_count)

The sizes of the fast-weight state for `batch` rows: `batch*H*d_head*d_dot`
and `batch*H*d_dot`. Throws `:unsupported` for softmax attention.
"""
function state_size(layer::Layer, batch::Integer)
    w, z = Ref{Int64}(0), Ref{Int64}(0)
    check(L.fwp_layer_state_size(handle(layer), batch, w, z))
    return Int(w[]), Int(z[])
end

"""
    set_state!(layer::Layer, batch; w = nothing, z = nothing)

Sets the fast-weight state for `batch` rows (the initial state of the next
forward or step); `nothing` means zeros. `w` holds `batch*H*d_head*d_dot`
floats laid out as C `[batch][H][d_head][d_dot]` (any Julia array of that
length, e.g. `d_dot × d_head × H × batch`), `z` holds `batch*H*d_dot`.
"""
function set_state!(layer::Layer, batch::Integer; w = nothing, z = nothing)
    wn, zn = state_size(layer, batch)
    w === nothing || length(w) == wn || shape_error("w has $(length(w)) elements, expected $wn")
    z === nothing || length(z) == zn || shape_error("z has $(length(z)) elements, expected $zn")
    wc = w === nothing ? nothing : Vector{Float32}(vec(w))
    zc = z === nothing ? nothing : Vector{Float32}(vec(z))
    check(L.fwp_layer_set_state(handle(layer), batch,
        wc === nothing ? Ptr{Cfloat}(C_NULL) : wc, wn, zc === nothing ? Ptr{Cfloat}(C_NULL) : zc, zn))
end

"""
    get_state(layer::Layer) -> (batch = B, w = Vector{Float32}, z = Vector{Float32})

Copies the fast-weight state: with `carry_state` (or after [`step!`](@ref))
the final state of the last forward, otherwise the state last set (`batch = 0`
and empty vectors when there is none).
"""
function get_state(layer::Layer)
    b = Ref{Int64}(0)
    check(L.fwp_layer_get_state(handle(layer), b, Ptr{Cfloat}(C_NULL), 0, Ptr{Cfloat}(C_NULL), 0))
    batch = Int(b[])
    batch == 0 && return (batch = 0, w = Float32[], z = Float32[])
    wn, zn = state_size(layer, batch)
    w, z = Vector{Float32}(undef, wn), Vector{Float32}(undef, zn)
    check(L.fwp_layer_get_state(handle(layer), b, w, wn, z, zn))
    return (batch = batch, w = w, z = z)
end

"""
    state_grad(layer::Layer, batch) -> (batch = B, w = Vector{Float32}, z = Vector{Float32})

The gradient with respect to the initial state of the last backward (whose
batch is `batch`). Throws `:bad_state` before any backward.
"""
function state_grad(layer::Layer, batch::Integer)
    wn, zn = state_size(layer, batch)
    w, z = Vector{Float32}(undef, wn), Vector{Float32}(undef, zn)
    check(L.fwp_layer_get_state_grad(handle(layer), w, wn, z, zn))
    return (batch = Int(batch), w = w, z = z)
end

"""
    reset_state!(layer::Layer)

Forgets the state (fast weights, normaliser, softmax key/value cache).
"""
reset_state!(layer::Layer) = check(L.fwp_layer_reset_state(handle(layer)))

"""
    step!(layer::Layer, x::AbstractMatrix) -> Matrix{Float32}

Recurrent inference: consumes one token per batch row (`x` is
`d_model × batch`), updates the state and returns `y` (`d_model × batch`).
"""
function step!(layer::Layer, x::AbstractMatrix{<:Real})
    size(x, 1) == layer.d_model || shape_error("x has $(size(x, 1)) features, the layer's d_model is $(layer.d_model)")
    xc = Matrix{Float32}(x)
    y = similar(xc)
    check(L.fwp_layer_step(handle(layer), xc, size(xc, 2), y))
    return y
end

# ---------------------------------------------------------------------------
# Models

"""
    Model

A network with its parameters, gradients and loss: the abstract type of every
kind of model. Each kind is a subtype with its own constructor, config and
forward pass ([`RetrievalModel`](@ref); [`OtherModel`](@ref) for a kind these
bindings do not know); the operations all kinds share take any `Model`:
[`backward!`](@ref), [`zero_grad!`](@ref), [`set_training!`](@ref), the
parameter functions, checkpoints and [`Optimizer`](@ref).
"""
abstract type Model <: Trainable end

const MODEL_KINDS = Dict{Int32,Symbol}(L.FWP_MODEL_RETRIEVAL => :retrieval, L.FWP_MODEL_LANGUAGE => :language,
    L.FWP_MODEL_SEQ2SEQ => :seq2seq)

# The kind of a live model handle, as a Symbol (an Int for a kind unknown here).
function kind_of(ptr::Ptr{L.fwp_model})
    k = Ref{L.fwp_model_kind}(0)
    check(L.fwp_model_get_kind(ptr, k))
    return get(MODEL_KINDS, k[], Int(k[]))
end

"""
    RetrievalModel(ctx::Context; setting = 1, num_keys = 20, d_head = 64, feature_map = :dpfp,
                   dpfp_nu = 1, favor_features = 64, favor_redraw = true, update_rule = :delta,
                   sum_normalize = true, attn_normalize = false, norm_eps = 1f-6)

The paper's associative-retrieval model (section 6.1) with fresh parameters;
defaults come from `fwp_retrieval_config_init`. Its forward pass is
[`forward!(model, batch)`](@ref forward!); load one from a checkpoint with
[`load_model(RetrievalModel, ctx, path)`](@ref load_model).
"""
mutable struct RetrievalModel <: Model
    ptr::Ptr{L.fwp_model}
    num_keys::Int
    logger::Union{Nothing,Base.RefValue{Any}}
    optimizers::Int
    closed::Bool

    # Takes ownership of `ptr`, a model of kind retrieval.
    function RetrievalModel(ptr::Ptr{L.fwp_model}, ctx::Context)
        model = new(ptr, 0, ctx.logger, 0, false)
        finalizer(close, model)
        model.num_keys = config(model).num_keys
        return model
    end
end

function RetrievalModel(ctx::Context; kw...)
    cfg = with_fields(default_config(L.fwp_retrieval_config, L.fwp_retrieval_config_init); kw...)
    out = Ref{Ptr{L.fwp_model}}(C_NULL)
    check(L.fwp_model_create_retrieval(handle(ctx), Ref(cfg), out))
    return RetrievalModel(out[], ctx)
end

"""
    OtherModel

A model of a kind these bindings have no type for (e.g. loaded by a newer
libfwp). The operations every [`Model`](@ref) shares work on it.
"""
mutable struct OtherModel <: Model
    ptr::Ptr{L.fwp_model}
    logger::Union{Nothing,Base.RefValue{Any}}
    optimizers::Int
    closed::Bool

    function OtherModel(ptr::Ptr{L.fwp_model}, ctx::Context)
        model = new(ptr, ctx.logger, 0, false)
        finalizer(close, model)
        return model
    end
end

"""
    close(model::Model)

Destroys the model now (or, while an optimizer over it is open, when that
optimizer is closed). Later calls on `model` throw.
"""
Base.close(model::Model) = release!(model, L.fwp_model_destroy)

"""
    load_model(ctx::Context, path::AbstractString) -> Model
    load_model(::Type{RetrievalModel}, ctx::Context, path::AbstractString) -> RetrievalModel
    load_model(::Type{LanguageModel}, ctx::Context, path::AbstractString) -> LanguageModel
    load_model(::Type{Seq2SeqModel}, ctx::Context, path::AbstractString) -> Seq2SeqModel

Creates a model from the kind, configuration and parameters stored in a
checkpoint: a [`RetrievalModel`](@ref) for a retrieval checkpoint, a
[`LanguageModel`](@ref) for a language-model checkpoint, a
[`Seq2SeqModel`](@ref) for a translation checkpoint, an
[`OtherModel`](@ref) for a kind these bindings do not know. With a type, a
checkpoint of another kind throws `:format`.
"""
function load_model(ctx::Context, path::AbstractString)
    out = Ref{Ptr{L.fwp_model}}(C_NULL)
    check(L.fwp_model_load(handle(ctx), path, out))
    kind = try
        kind_of(out[])
    catch
        L.fwp_model_destroy(out[])
        rethrow()
    end
    kind === :retrieval && return RetrievalModel(out[], ctx)
    kind === :language && return LanguageModel(out[], ctx)
    kind === :seq2seq && return Seq2SeqModel(out[], ctx)
    return OtherModel(out[], ctx)
end

function load_model(::Type{T}, ctx::Context, path::AbstractString) where {T<:Model}
    model = load_model(ctx, path)
    if !(model isa T)
        kind = model_kind(model)
        close(model)
        throw(FwpError(L.FWP_ERR_FORMAT, "$path holds a model of kind $kind, not a $(nameof(T))"))
    end
    return model
end

"""
    model_kind(model::Model) -> Symbol

`:retrieval`, `:language` or `:seq2seq`.
"""
model_kind(model::Model) = kind_of(handle(model))

function config(model::RetrievalModel)
    ref = Ref(default_config(L.fwp_retrieval_config, L.fwp_retrieval_config_init))
    check(L.fwp_model_get_retrieval_config(handle(model), ref))
    return export_config(ref[])
end

set_training!(model::Model, training::Bool) = check(L.fwp_model_set_training(handle(model), Cint(training)))

zero_grad!(model::Model) = check(L.fwp_model_zero_grad(handle(model)))

"""
    backward!(model::Model)

Backward pass of the last forward: adds dLoss/dparams to the gradients.
Throws `:bad_state` without a forward since the last backward.
"""
backward!(model::Model) = check(L.fwp_model_backward(handle(model)))

# ---------------------------------------------------------------------------
# Run states apart from the weights (fwp_state)

"""
    State(layer::Layer, batch::Integer)
    State(model::Model, batch::Integer)

The run state of `batch` sequences apart from the weights: per attention layer
the fast weights W and z, or a softmax layer's key/value cache. A layer runs
against it with [`forward!`](@ref)`(layer, state, x)` and
[`step!`](@ref)`(layer, state, x)`; [`reorder!`](@ref) keeps the rows of
surviving beam-search hypotheses. A state keeps its layer or model alive inside
the library. Models that carry no state between calls (the retrieval model)
throw `:unsupported`. Layer indices are 1-based.
"""
mutable struct State
    ptr::Ptr{L.fwp_state}

    function State(ptr::Ptr{L.fwp_state})
        state = new(ptr)
        finalizer(close, state)
        return state
    end
end

function State(layer::Layer, batch::Integer)
    out = Ref{Ptr{L.fwp_state}}(C_NULL)
    check(L.fwp_state_create_for_layer(handle(layer), batch, out))
    return State(out[])
end

function State(model::Model, batch::Integer)
    out = Ref{Ptr{L.fwp_state}}(C_NULL)
    check(L.fwp_state_create(handle(model), batch, out))
    return State(out[])
end

"""
    close(state::State)

Destroys the state now. Later calls on `state` throw.
"""
function Base.close(state::State)
    if state.ptr != C_NULL
        L.fwp_state_destroy(state.ptr)
        state.ptr = C_NULL
    end
    return nothing
end

Base.isopen(state::State) = state.ptr != C_NULL

function handle(state::State)
    state.ptr == C_NULL && throw(FwpError(L.FWP_ERR_BAD_STATE, "the State is closed"))
    return state.ptr
end

"""
    state_batch(state::State) -> Int

The number of rows (sequences) of the state.
"""
function state_batch(state::State)
    b = Ref{Int64}(0)
    check(L.fwp_state_batch(handle(state), b))
    return Int(b[])
end

"""
    num_state_layers(state::State) -> Int

The number of attention layers the state holds (1 for a layer's state).
"""
function num_state_layers(state::State)
    n = Ref{Int64}(0)
    check(L.fwp_state_num_layers(handle(state), n))
    return Int(n[])
end

"""
    reset_state!(state::State)

Back to new sequences: zero fast weights, empty caches; the batch is kept.
"""
reset_state!(state::State) = check(L.fwp_state_reset(handle(state)))

"""
    copy!(dst::State, src::State) -> dst

Makes `dst` a copy of `src` (made for the same layers, with the same batch).
"""
function Base.copy!(dst::State, src::State)
    check(L.fwp_state_copy(handle(dst), handle(src)))
    return dst
end

"""
    reorder!(state::State, rows::AbstractVector{<:Integer})

Row `r` of the state becomes old row `rows[r]` (1-based); rows may repeat or be
left out, and `length(rows)` is the new batch (beam search).
"""
function reorder!(state::State, rows::AbstractVector{<:Integer})
    zero_based = Int64[r - 1 for r in rows]
    check(L.fwp_state_reorder(handle(state), zero_based, length(zero_based)))
end

"""
    state_size(state::State, layer::Integer) -> (w_count, z_count)

The sizes of the fast weights of attention layer `layer` (1-based). Throws
`:unsupported` for a softmax layer.
"""
function state_size(state::State, layer::Integer)
    w, z = Ref{Int64}(0), Ref{Int64}(0)
    check(L.fwp_state_size(handle(state), layer - 1, w, z))
    return Int(w[]), Int(z[])
end

"""
    get_state(state::State, layer::Integer) -> (batch = B, w = Vector{Float32}, z = Vector{Float32})

The fast weights of attention layer `layer` (1-based), laid out as C
`[batch][H][d_head][d_dot]` and `[batch][H][d_dot]`.
"""
function get_state(state::State, layer::Integer)
    wn, zn = state_size(state, layer)
    w, z = Vector{Float32}(undef, wn), Vector{Float32}(undef, zn)
    check(L.fwp_state_get(handle(state), layer - 1, w, wn, z, zn))
    return (batch = state_batch(state), w = w, z = z)
end

"""
    set_state!(state::State, layer::Integer; w = nothing, z = nothing)

Overwrites the fast weights of attention layer `layer` (1-based); `nothing`
means zeros.
"""
function set_state!(state::State, layer::Integer; w = nothing, z = nothing)
    wn, zn = state_size(state, layer)
    w === nothing || length(w) == wn || shape_error("w has $(length(w)) elements, expected $wn")
    z === nothing || length(z) == zn || shape_error("z has $(length(z)) elements, expected $zn")
    wc = w === nothing ? nothing : Vector{Float32}(vec(w))
    zc = z === nothing ? nothing : Vector{Float32}(vec(z))
    check(L.fwp_state_set(handle(state), layer - 1,
        wc === nothing ? Ptr{Cfloat}(C_NULL) : wc, wn, zc === nothing ? Ptr{Cfloat}(C_NULL) : zc, zn))
end

"""
    cache_length(state::State, layer::Integer) -> Int

The number of tokens in the key/value cache of softmax layer `layer` (1-based).
"""
function cache_length(state::State, layer::Integer)
    n = Ref{Int64}(0)
    check(L.fwp_state_cache_length(handle(state), layer - 1, n))
    return Int(n[])
end

"""
    forward!(layer::Layer, state::State, x::AbstractArray{<:Real,3}) -> Array{Float32,3}

[`forward!`](@ref) against `state` instead of the layer's own: starts from it
and leaves the final state there. `size(x, 3)` must be the state's batch.
"""
function forward!(layer::Layer, state::State, x::AbstractArray{<:Real,3})
    batch, seq = check_sequence(layer, x, "x")
    xc = Array{Float32}(x)
    y = similar(xc)
    check(L.fwp_layer_forward_with_state(handle(layer), handle(state), xc, batch, seq, y))
    return y
end

"""
    step!(layer::Layer, state::State, x::AbstractMatrix) -> Matrix{Float32}

[`step!`](@ref) against `state` instead of the layer's own (`x` is `d_model × batch`).
"""
function step!(layer::Layer, state::State, x::AbstractMatrix{<:Real})
    size(x, 1) == layer.d_model || shape_error("x has $(size(x, 1)) features, the layer's d_model is $(layer.d_model)")
    xc = Matrix{Float32}(x)
    y = similar(xc)
    check(L.fwp_layer_step_with_state(handle(layer), handle(state), xc, size(xc, 2), y))
    return y
end

# ---------------------------------------------------------------------------
# Parameters of layers and models (1-based indices)

param_functions(::Layer) = (num = L.fwp_layer_num_params, info = L.fwp_layer_param_info,
    index = L.fwp_layer_param_index, get = L.fwp_layer_get_param, set = L.fwp_layer_set_param,
    grad = L.fwp_layer_get_grad)
param_functions(::Model) = (num = L.fwp_model_num_params, info = L.fwp_model_param_info,
    index = L.fwp_model_param_index, get = L.fwp_model_get_param, set = L.fwp_model_set_param,
    grad = L.fwp_model_get_grad)

"""
    num_params(layer_or_model) -> Int

The number of parameter tensors.
"""
function num_params(obj::Trainable)
    n = Ref{Int64}(0)
    check(param_functions(obj).num(handle(obj), n))
    return Int(n[])
end

"""
    param_info(layer_or_model, i) -> (name, shape, numel, trainable)

Describes parameter `i` (1-based). `shape` is the C row-major shape (e.g.
`(out, in)` for a weight); [`getparam`](@ref) returns the reversed Julia shape.
"""
function param_info(obj::Trainable, i::Integer)
    info = Ref{L.fwp_param_info}()
    check(param_functions(obj).info(handle(obj), i - 1, info))
    p = info[]
    (1 <= p.ndim <= L.FWP_MAX_DIMS) ||
        throw(FwpError(L.FWP_ERR_INTERNAL, "libfwp reported a parameter with ndim = $(p.ndim)"))
    name = p.name == C_NULL ? "" : unsafe_string(p.name)
    return (name = name, shape = ntuple(k -> Int(p.shape[k]), Int(p.ndim)), numel = Int(p.numel), trainable = p.trainable != 0)
end

"""
    param_index(layer_or_model, name) -> Int

The (1-based) index of the parameter called `name`; throws `:invalid_argument`
for an unknown name.
"""
function param_index(obj::Trainable, name::AbstractString)
    i = Ref{Int64}(0)
    check(param_functions(obj).index(handle(obj), name, i))
    return Int(i[]) + 1
end

param_index(obj::Trainable, i::Integer) = Int(i)

"""
    getparam(layer_or_model, i_or_name) -> Array{Float32}

A copy of a parameter, as an array of the reversed C shape (a C `[out, in]`
weight is an `in × out` matrix: the same memory).
"""
function getparam(obj::Trainable, which)
    i = param_index(obj, which)
    info = param_info(obj, i)
    data = Vector{Float32}(undef, info.numel)
    check(param_functions(obj).get(handle(obj), i - 1, data, info.numel))
    return reshape(data, reverse(info.shape))
end

"""
    setparam!(layer_or_model, i_or_name, values::AbstractArray)

Overwrites a parameter with `values` (numel finite numbers, in the layout that
[`getparam`](@ref) returns).
"""
function setparam!(obj::Trainable, which, values::AbstractArray{<:Real})
    i = param_index(obj, which)
    info = param_info(obj, i)
    length(values) == info.numel || shape_error("values has $(length(values)) elements, expected $(info.numel)")
    data = Vector{Float32}(vec(values))
    check(param_functions(obj).set(handle(obj), i - 1, data, info.numel))
end

"""
    getgrad(layer_or_model, i_or_name) -> Array{Float32}

A copy of a parameter's accumulated gradient (same layout as [`getparam`](@ref)).
"""
function getgrad(obj::Trainable, which)
    i = param_index(obj, which)
    info = param_info(obj, i)
    data = Vector{Float32}(undef, info.numel)
    check(param_functions(obj).grad(handle(obj), i - 1, data, info.numel))
    return reshape(data, reverse(info.shape))
end

# ---------------------------------------------------------------------------
# Retrieval data

"""
    RetrievalBatch(keys, values, queries, targets)

A batch of retrieval sequences: `keys` and `values` are `L × B` Int32
matrices of ids in `0:S-1` (the C `[B][L]` layout), `queries` and `targets`
are `Q × B`; a query of -1 is padding.
"""
struct RetrievalBatch
    keys::Matrix{Int32}
    values::Matrix{Int32}
    queries::Matrix{Int32}
    targets::Matrix{Int32}

    function RetrievalBatch(keys::AbstractMatrix, values::AbstractMatrix, queries::AbstractMatrix,
            targets::AbstractMatrix)
        size(keys) == size(values) || shape_error("keys is $(size(keys)) but values is $(size(values))")
        size(queries) == size(targets) || shape_error("queries is $(size(queries)) but targets is $(size(targets))")
        size(keys, 2) == size(queries, 2) ||
            shape_error("keys has $(size(keys, 2)) sequences but queries has $(size(queries, 2))")
        new(Matrix{Int32}(keys), Matrix{Int32}(values), Matrix{Int32}(queries), Matrix{Int32}(targets))
    end
end

Base.length(batch::RetrievalBatch) = size(batch.keys, 2)

"""
    DataSource

A data source of any kind ([`RetrievalData`](@ref), [`TokenData`](@ref), [`PairData`](@ref)) whose position a
checkpoint stores ([`save_checkpoint`](@ref), [`load_checkpoint!`](@ref)).
"""
abstract type DataSource end

"""
    RetrievalData(setting, num_keys, seed; num_pairs = 0)

A seeded generator of retrieval sequences: setting 1 (capacity, L = S
distinct keys) or 2 (update, L = 2 S pairs with replacement). `num_pairs`
chooses L: 0 for the training length, S for setting 1, any 1 to 2^17 for
setting 2 (the paper evaluates setting 2 on S pairs).
"""
mutable struct RetrievalData <: DataSource
    ptr::Ptr{L.fwp_retrieval_data}
    seq_len::Int

    function RetrievalData(setting::Integer, num_keys::Integer, seed::Integer; num_pairs::Integer = 0)
        out = Ref{Ptr{L.fwp_retrieval_data}}(C_NULL)
        check(L.fwp_retrieval_data_create_with_length(setting, num_keys, num_pairs, seed, out))
        data = new(out[], 0)
        finalizer(close, data)
        n = Ref{Int64}(0)
        check(L.fwp_retrieval_data_seq_len(data.ptr, n))
        data.seq_len = Int(n[])
        return data
    end
end

"""
    close(data::RetrievalData)

Destroys the generator now; later calls on it throw.
"""
function Base.close(data::RetrievalData)
    if data.ptr != C_NULL
        L.fwp_retrieval_data_destroy(data.ptr)
        data.ptr = C_NULL
    end
    return nothing
end

function handle(data::RetrievalData)
    data.ptr == C_NULL && throw(FwpError(L.FWP_ERR_BAD_STATE, "the RetrievalData is closed"))
    return data.ptr
end

"""
    FastWeights.seq_len(data::RetrievalData) -> Int

L, the number of pairs per sequence (S for setting 1, 2 S for setting 2).
"""
seq_len(data::RetrievalData) = data.seq_len

"""
    data_kind(data::DataSource) -> Symbol

The kind of data source as the library reports it: `:retrieval`,
`:token_file` or `:parallel_text` ([`PairData`](@ref)).
"""
function data_kind(data::DataSource)
    k = Ref{L.fwp_data_kind}(0)
    check(L.fwp_data_get_kind(handle(data), k))
    names = Dict(L.FWP_DATA_RETRIEVAL => :retrieval, L.FWP_DATA_TOKEN_FILE => :token_file,
        L.FWP_DATA_PARALLEL_TEXT => :parallel_text)
    return get(names, k[], Int(k[]))
end

"""
    sample!(data::RetrievalData, batch_size, queries_per_seq = 1) -> RetrievalBatch

Draws `batch_size` sequences and advances the generator. With one query per sequence each is queried
with one of its keys (training); with Q > 1 with its distinct keys in order of
first appearance, at most Q, padded with -1 (evaluation).

With a shard ([`set_shard!`](@ref)), `batch_size` is the global batch (a
multiple of the shard count): the whole batch is drawn and the shard's
`batch_size ÷ count` sequences are returned.
"""
function sample!(data::RetrievalData, batch_size::Integer, queries_per_seq::Integer = 1)
    (batch_size >= 1 && queries_per_seq >= 1) ||
        argument_error("batch_size ($batch_size) and queries_per_seq ($queries_per_seq) must be >= 1")
    rows = shard_rows(data, batch_size)
    keys = Matrix{Int32}(undef, data.seq_len, rows)
    values = similar(keys)
    queries = Matrix{Int32}(undef, queries_per_seq, rows)
    targets = similar(queries)
    check(L.fwp_retrieval_data_sample(handle(data), batch_size, queries_per_seq, keys, values, queries, targets))
    return RetrievalBatch(keys, values, queries, targets)
end

"""
    forward!(model::RetrievalModel, batch::RetrievalBatch; outputs = false)

Forward pass and loss (mean over non-padding queries of 0.5‖onehot(target) −
y‖²). Returns the loss, or `(loss, y)` with `outputs = true` where `y` is
`S × Q × B` (zeros for padding). Changes the model: it keeps what
[`backward!`](@ref) needs.
"""
function forward!(model::RetrievalModel, batch::RetrievalBatch; outputs::Bool = false)
    loss = Ref{Cfloat}(0)
    B, Q = size(batch.keys, 2), size(batch.queries, 1)
    y = outputs ? Array{Float32}(undef, model.num_keys, Q, B) : nothing
    GC.@preserve batch y begin
        raw = L.fwp_retrieval_batch(B, size(batch.keys, 1), Q, pointer(batch.keys), pointer(batch.values),
            pointer(batch.queries), pointer(batch.targets))
        check(L.fwp_retrieval_forward(handle(model), Ref(raw), loss,
            outputs ? pointer(y) : Ptr{Cfloat}(C_NULL), outputs ? length(y) : 0))
    end
    return outputs ? (loss[], y) : loss[]
end

# ---------------------------------------------------------------------------
# Language model (paper section 6.3)

const EVAL_MODES = Dict{Symbol,Int32}(:segments => L.FWP_LM_EVAL_SEGMENTS, :sliding => L.FWP_LM_EVAL_SLIDING,
    :carry => L.FWP_LM_EVAL_CARRY)

"""
    lm_config(; preset = nothing, attention = (;), cutoffs = nothing, kw...) -> LibFwp.fwp_lm_config

The C config of a language model: the library's defaults (`fwp_lm_config_init`:
the paper's small model, 16 layers, d_model 128, 8 heads of 16, d_ff 2048,
linear attention (elu + 1) with the delta rule, dropout 0.1) or a named preset
(`"paper-small"`, `"paper-medium"`, `"cpu-small"`), with the fields named by
the keywords replaced. `attention` holds keywords of the attention layers (as
for [`Layer`](@ref): `d_model`, `num_heads`, `d_head`, `feature_map`, ...);
`cutoffs` is a vector of adaptive-softmax cutoffs (empty: a plain softmax),
passed through with `div_val`. `position` is `:sinusoidal` or `:none`;
`pre_norm` and `tie_embeddings` take `Bool`.
"""
function lm_config(; preset::Union{Nothing,AbstractString} = nothing, attention = NamedTuple(),
        cutoffs::Union{Nothing,AbstractVector{<:Integer}} = nothing, kw...)
    ref = Ref(default_config(L.fwp_lm_config, L.fwp_lm_config_init))
    preset === nothing || check(L.fwp_lm_config_preset(preset, ref))
    cfg = ref[]
    extra = Dict{Symbol,Any}(:attention => with_fields(cfg.attention; attention...))
    if cutoffs !== nothing
        length(cutoffs) <= L.FWP_LM_MAX_CUTOFFS ||
            argument_error("cutoffs has $(length(cutoffs)) values, at most $(L.FWP_LM_MAX_CUTOFFS) are allowed")
        extra[:cutoffs] = ntuple(i -> i <= length(cutoffs) ? Int64(cutoffs[i]) : Int64(0), L.FWP_LM_MAX_CUTOFFS)
        extra[:num_cutoffs] = length(cutoffs)
    end
    return with_fields(cfg; kw..., extra...)
end

"""
    LanguageModel(ctx::Context; vocab_size, preset = nothing, attention = (;), cutoffs = nothing,
                  num_layers = 16, d_ff = 2048, dropout = 0.1f0, position = :sinusoidal,
                  pre_norm = false, tie_embeddings = false, div_val = 1, init_std = 0.02f0, seed = 0)

The paper's word-level language model (section 6.3) with fresh parameters; the
settings are those of [`lm_config`](@ref). Token ids are integers in
`0:vocab_size-1`; a batch of `batch` segments of `T` tokens is a `T × batch`
matrix (the C `[batch][T]` layout). Train it with
[`forward!`](@ref)`(model, inputs, targets)`, [`backward!`](@ref) and an
[`Optimizer`](@ref); score a stream with [`FastWeights.evaluate`](@ref);
decode through a [`State`](@ref)`(model, batch)` with [`step!`](@ref) and
[`generate!`](@ref). Load one from a checkpoint with
[`load_model(LanguageModel, ctx, path)`](@ref load_model).
"""
mutable struct LanguageModel <: Model
    ptr::Ptr{L.fwp_model}
    vocab_size::Int
    logger::Union{Nothing,Base.RefValue{Any}}
    optimizers::Int
    closed::Bool

    # Takes ownership of `ptr`, a model of kind language.
    function LanguageModel(ptr::Ptr{L.fwp_model}, ctx::Context)
        model = new(ptr, 0, ctx.logger, 0, false)
        finalizer(close, model)
        model.vocab_size = config(model).vocab_size
        return model
    end
end

function LanguageModel(ctx::Context; kw...)
    cfg = lm_config(; kw...)
    out = Ref{Ptr{L.fwp_model}}(C_NULL)
    check(L.fwp_lm_create(handle(ctx), Ref(cfg), out))
    return LanguageModel(out[], ctx)
end

"""
    FastWeights.config(model::LanguageModel) -> NamedTuple

The settings the model was created with: `attention` as a `NamedTuple` like
`config(layer)`, `cutoffs` as a vector of the cutoffs in use (a loaded model
reports seed 0).
"""
function config(model::LanguageModel)
    ref = Ref(default_config(L.fwp_lm_config, L.fwp_lm_config_init))
    check(L.fwp_lm_get_config(handle(model), ref))
    cfg = ref[]
    n = clamp(Int(cfg.num_cutoffs), 0, L.FWP_LM_MAX_CUTOFFS)
    return merge(export_config(cfg), (attention = export_config(cfg.attention), cutoffs = collect(Int, cfg.cutoffs[1:n])))
end

"""
    vocab_size(model_or_tokenizer_or_data) -> Int

The number of token ids V of a [`LanguageModel`](@ref), a [`Seq2SeqModel`](@ref),
a [`Tokenizer`](@ref) or a [`TokenData`](@ref) source (every id is in `0:V-1`).
"""
vocab_size(model::LanguageModel) = model.vocab_size

state_pointer(state::Nothing) = Ptr{L.fwp_state}(C_NULL)
state_pointer(state::State) = handle(state)

"""
    forward!(model::LanguageModel, inputs::AbstractMatrix{<:Integer}, targets::AbstractMatrix{<:Integer};
             state = nothing, token_losses = false)

Forward pass over `size(inputs, 2)` segments of `size(inputs, 1)` tokens
(`T × batch` matrices of ids); returns the mean cross-entropy (natural log,
`Float64`) over the scored targets (a negative target is not scored), or
`(loss, losses)` with `token_losses = true` where `losses` is `T × batch`
(0 where not scored). Every segment starts from zero, or from `state` (a
[`State`](@ref)`(model, batch)`), which then keeps the final state: the paper's
"carry over" training. Changes the model: it keeps what
[`backward!`](@ref) needs.
"""
function forward!(model::LanguageModel, inputs::AbstractMatrix{<:Integer}, targets::AbstractMatrix{<:Integer};
        state::Union{Nothing,State} = nothing, token_losses::Bool = false)
    size(inputs) == size(targets) || shape_error("inputs is $(size(inputs)) but targets is $(size(targets))")
    T, batch = size(inputs)
    x, y = Matrix{Int32}(inputs), Matrix{Int32}(targets)
    loss = Ref{Cdouble}(0)
    losses = token_losses ? Matrix{Float32}(undef, T, batch) : nothing
    check(L.fwp_lm_forward(handle(model), x, y, batch, T, state_pointer(state), loss,
        token_losses ? losses : Ptr{Cfloat}(C_NULL)))
    return token_losses ? (loss[], losses) : loss[]
end

"""
    FastWeights.evaluate(model::LanguageModel, tokens::AbstractVector{<:Integer}; mode = :segments, length)
        -> (total_nll, scored, perplexity)

Scores a token stream as the paper does (evaluation mode; the training flag is
restored afterwards): the summed negative log-likelihood of `tokens[2:end]`
given their past. `mode` is `:segments` (independent segments of `length`
tokens), `:sliding` (the authors' sliding window of `length` tokens) or
`:carry` (segments of `length` with the state carried through the stream;
fast-weight layers only).
"""
function evaluate(model::LanguageModel, tokens::AbstractVector{<:Integer}; mode::Symbol = :segments,
        length::Integer)
    haskey(EVAL_MODES, mode) || argument_error("mode = :$mode is not one of carry, segments, sliding")
    ids = Vector{Int32}(tokens)
    nll, scored = Ref{Cdouble}(0), Ref{Int64}(0)
    check(L.fwp_lm_evaluate(handle(model), ids, Base.length(ids), EVAL_MODES[mode], length, nll, scored))
    return (total_nll = nll[], scored = Int(scored[]), perplexity = exp(nll[] / scored[]))
end

"""
    step!(model::LanguageModel, state::State, tokens::AbstractVector{<:Integer}; log_probs = true)
        -> Union{Matrix{Float32},Nothing}

Feeds one token per row of `state` (evaluation mode; the state advances by one
token) and returns the natural-log probabilities of the next token,
`vocab_size × batch` (`nothing` with `log_probs = false`, e.g. while feeding a prompt).
"""
function step!(model::LanguageModel, state::State, tokens::AbstractVector{<:Integer}; log_probs::Bool = true)
    batch = state_batch(state)
    length(tokens) == batch || shape_error("tokens has $(length(tokens)) ids, the state has $batch rows")
    ids = Vector{Int32}(tokens)
    out = log_probs ? Matrix{Float32}(undef, model.vocab_size, batch) : nothing
    check(L.fwp_lm_step(handle(model), handle(state), ids, log_probs ? out : Ptr{Cfloat}(C_NULL)))
    return out
end

sampler_config(; kw...) = with_fields(default_config(L.fwp_sampler_config, L.fwp_sampler_config_init); kw...)

"""
    generate!(model::LanguageModel, state::State, prompt::AbstractVector{<:Integer}; max_new_tokens,
              temperature = 1, top_k = 0, top_p = 1, seed = 0, stop_tokens = Int32[]) -> Vector{Int32}

Continues `prompt` (at least one id): feeds it through `state` (batch 1,
continuing from where it is: [`reset_state!`](@ref) it for a new text), then
samples up to `max_new_tokens` ids: greedily with `temperature = 0`, else from
softmax(log p / temperature) restricted to the `top_k` most likely (0: all)
and to the nucleus `top_p` (1: all), drawn with the generator seeded by
`seed`. Stops before a token of `stop_tokens` (not returned, not fed). The
state is left having consumed the prompt and the returned ids.
"""
function generate!(model::LanguageModel, state::State, prompt::AbstractVector{<:Integer};
        max_new_tokens::Integer, stop_tokens::AbstractVector{<:Integer} = Int32[], kw...)
    max_new_tokens >= 0 || argument_error("max_new_tokens must be >= 0 (got $max_new_tokens)")
    sampler = sampler_config(; kw...)
    ids, stops = Vector{Int32}(prompt), Vector{Int32}(stop_tokens)
    out = Vector{Int32}(undef, max_new_tokens)
    generated = Ref{Int64}(0)
    check(L.fwp_lm_generate(handle(model), handle(state), ids, length(ids), max_new_tokens, Ref(sampler),
        isempty(stops) ? Ptr{Int32}(C_NULL) : stops, length(stops), out, length(out), generated))
    return out[1:min(Int(generated[]), length(out))]
end

"""
    sample_token!(rng_state::Ref{UInt64}, log_probs::AbstractVector{<:Real};
                  temperature = 1, top_k = 0, top_p = 1) -> Int32

Picks a token id (0-based, as the model's ids) from log-probabilities or any
logits (`-Inf` excludes a token; NaN and `+Inf` are rejected) with the sampler
settings of [`generate!`](@ref). `rng_state` is the generator's state: any
value to start; it advances by one draw when sampling (not when greedy).
"""
function sample_token!(rng_state::Base.RefValue{UInt64}, log_probs::AbstractVector{<:Real}; kw...)
    sampler = sampler_config(; kw...)
    values = Vector{Float32}(log_probs)
    token = Ref{Int32}(0)
    check(L.fwp_lm_sample(values, length(values), Ref(sampler), rng_state, token))
    return token[]
end

# ---------------------------------------------------------------------------
# Tokenizers and token files

"""
    Tokenizer

Maps text to `Int32` token ids and back: word level (the WikiText conventions
of the authors' toolkit: [`train_word_tokenizer`](@ref)) or SentencePiece
([`train_sentencepiece`](@ref), when [`sentencepiece_available`](@ref)). Every
line end is `<eos>` (id 0). Encode and decode with
[`FastWeights.encode`](@ref) and [`FastWeights.decode`](@ref); save with
[`save_tokenizer`](@ref), load with [`load_tokenizer`](@ref).
"""
mutable struct Tokenizer
    ptr::Ptr{L.fwp_tokenizer}

    function Tokenizer(ptr::Ptr{L.fwp_tokenizer})
        tokenizer = new(ptr)
        finalizer(close, tokenizer)
        return tokenizer
    end
end

"""
    close(tokenizer::Tokenizer)

Destroys the tokenizer now; later calls on it throw.
"""
function Base.close(tokenizer::Tokenizer)
    if tokenizer.ptr != C_NULL
        L.fwp_tokenizer_destroy(tokenizer.ptr)
        tokenizer.ptr = C_NULL
    end
    return nothing
end

Base.isopen(tokenizer::Tokenizer) = tokenizer.ptr != C_NULL

function handle(tokenizer::Tokenizer)
    tokenizer.ptr == C_NULL && throw(FwpError(L.FWP_ERR_BAD_STATE, "the Tokenizer is closed"))
    return tokenizer.ptr
end

"""
    sentencepiece_available() -> Bool

Whether the loaded libfwp has SentencePiece (else training or loading a
SentencePiece tokenizer throws `:unsupported`).
"""
sentencepiece_available() = L.fwp_tokenizer_sentencepiece_available() != 0

# Calls `f(pointers)` with a C array of NUL-terminated copies of `paths`.
function with_path_array(f, paths)
    names = String[String(p) for p in paths]
    for name in names
        occursin('\0', name) && argument_error("path $(repr(name)) contains a NUL byte")
    end
    pointers = Ptr{UInt8}[pointer(name) for name in names]
    result = GC.@preserve names f(pointers)
    return result
end

"""
    train_word_tokenizer(paths; min_count = 1, max_size = 0) -> Tokenizer

Builds a word-level vocabulary from text files (one path or a vector of
paths), read line by line in order: words seen fewer than `min_count` times
become `<unk>`; `max_size` (0: no limit) keeps the most frequent words,
`<eos>` and `<unk>` included.
"""
function train_word_tokenizer(paths; kw...)
    list = paths isa AbstractString ? [paths] : collect(paths)
    cfg = with_fields(default_config(L.fwp_word_tokenizer_config, L.fwp_word_tokenizer_config_init); kw...)
    out = Ref{Ptr{L.fwp_tokenizer}}(C_NULL)
    with_path_array(list) do pointers
        check(L.fwp_tokenizer_train_word(pointers, length(pointers), Ref(cfg), out))
    end
    return Tokenizer(out[])
end

"""
    train_sentencepiece(paths; model_type = :unigram, vocab_size = 8000, character_coverage = 1f0,
                        byte_fallback = false, num_threads = 1, max_sentence_length = 16384,
                        verbose = false, pad_bos = false) -> Tokenizer

Trains a SentencePiece tokenizer (`model_type` `:unigram` or `:bpe`) on text
files, one sentence per line (deterministic; nothing is written to disk).
`pad_bos = true` also reserves `<pad>` (id 2) and `<bos>` (id 3) for
translation ([`encode_pair_file`](@ref)).
Throws `:unsupported` without SentencePiece.
"""
function train_sentencepiece(paths; kw...)
    list = paths isa AbstractString ? [paths] : collect(paths)
    cfg = with_fields(default_config(L.fwp_sentencepiece_config, L.fwp_sentencepiece_config_init); kw...)
    out = Ref{Ptr{L.fwp_tokenizer}}(C_NULL)
    with_path_array(list) do pointers
        check(L.fwp_tokenizer_train_sentencepiece(pointers, length(pointers), Ref(cfg), out))
    end
    return Tokenizer(out[])
end

"""
    load_tokenizer(path) -> Tokenizer

Loads a tokenizer saved by [`save_tokenizer`](@ref) (verified whole: a
damaged file throws `:format`).
"""
function load_tokenizer(path::AbstractString)
    out = Ref{Ptr{L.fwp_tokenizer}}(C_NULL)
    check(L.fwp_tokenizer_load(path, out))
    return Tokenizer(out[])
end

"""
    save_tokenizer(path, tokenizer::Tokenizer)

Saves the tokenizer (written to a temporary file and renamed into place).
"""
save_tokenizer(path::AbstractString, tokenizer::Tokenizer) = check(L.fwp_tokenizer_save(handle(tokenizer), path))

"""
    tokenizer_kind(tokenizer) -> Symbol

`:word` or `:sentencepiece`.
"""
function tokenizer_kind(tokenizer::Tokenizer)
    k = Ref{L.fwp_tokenizer_kind}(0)
    check(L.fwp_tokenizer_get_kind(handle(tokenizer), k))
    names = Dict(L.FWP_TOKENIZER_WORD => :word, L.FWP_TOKENIZER_SENTENCEPIECE => :sentencepiece)
    return get(names, k[], Int(k[]))
end

function vocab_size(tokenizer::Tokenizer)
    n = Ref{Int64}(0)
    check(L.fwp_tokenizer_vocab_size(handle(tokenizer), n))
    return Int(n[])
end

"""
    eos_id(tokenizer) -> Int32

The id of `<eos>`, the token of every line end (0).
"""
function eos_id(tokenizer::Tokenizer)
    id = Ref{Int32}(0)
    check(L.fwp_tokenizer_eos_id(handle(tokenizer), id))
    return id[]
end

"""
    unk_id(tokenizer) -> Int32

The id of `<unk>`, the token of unknown words or characters.
"""
function unk_id(tokenizer::Tokenizer)
    id = Ref{Int32}(0)
    check(L.fwp_tokenizer_unk_id(handle(tokenizer), id))
    return id[]
end

"""
    token_to_id(tokenizer, token::AbstractString) -> Union{Int32,Nothing}

The id of one token of the vocabulary given by its exact text (a lookup, not an
encoding), or `nothing` if the vocabulary lacks it.
"""
function token_to_id(tokenizer::Tokenizer, token::AbstractString)
    s = String(token)
    id = Ref{Int32}(-1)
    GC.@preserve s check(L.fwp_tokenizer_token_to_id(handle(tokenizer), pointer(s), sizeof(s), id))
    return id[] >= 0 ? id[] : nothing
end

"""
    id_to_token(tokenizer, id::Integer) -> String

The token of an id in `0:vocab_size-1` (else `:out_of_range`).
"""
function id_to_token(tokenizer::Tokenizer, id::Integer)
    n = Ref{Csize_t}(0)
    check(L.fwp_tokenizer_id_to_token(handle(tokenizer), id, Ptr{UInt8}(C_NULL), 0, n))
    buffer = Vector{UInt8}(undef, Int(n[]) + 1)
    check(L.fwp_tokenizer_id_to_token(handle(tokenizer), id, buffer, length(buffer), n))
    return String(buffer[1:Int(n[])])
end

"""
    FastWeights.encode(tokenizer, text::AbstractString; add_eos = false) -> Vector{Int32}

The ids of `text`: every line end is `<eos>`; with `add_eos` a last line
without a terminator is ended too (as a text file is encoded).
"""
function encode(tokenizer::Tokenizer, text::AbstractString; add_eos::Bool = false)
    s = String(text)
    count = Ref{Int64}(0)
    # The text is passed by pointer and length: it need not be NUL-terminated and may hold NUL bytes.
    GC.@preserve s check(L.fwp_tokenizer_encode(handle(tokenizer), pointer(s), sizeof(s), Int32(add_eos),
        Ptr{Int32}(C_NULL), 0, count))
    ids = Vector{Int32}(undef, count[])
    GC.@preserve s check(L.fwp_tokenizer_encode(handle(tokenizer), pointer(s), sizeof(s), Int32(add_eos), ids,
        length(ids), count))
    return ids
end

"""
    FastWeights.decode(tokenizer, ids::AbstractVector{<:Integer}) -> String

The text of `ids`: `<eos>` becomes `"\\n"`; word level joins the words of a
line with single spaces. An id outside the vocabulary throws `:out_of_range`.
"""
function decode(tokenizer::Tokenizer, ids::AbstractVector{<:Integer})
    v = Vector{Int32}(ids)
    n = Ref{Csize_t}(0)
    check(L.fwp_tokenizer_decode(handle(tokenizer), v, length(v), Ptr{UInt8}(C_NULL), 0, n))
    buffer = Vector{UInt8}(undef, Int(n[]) + 1)
    check(L.fwp_tokenizer_decode(handle(tokenizer), v, length(v), buffer, length(buffer), n))
    return String(buffer[1:Int(n[])])
end

"""
    encode_file(tokenizer, text_path, token_path) -> Int

Encodes a text file (line by line, as `encode(...; add_eos = true)`) into a
binary token file for [`TokenData`](@ref) and [`read_token_file`](@ref);
returns the number of tokens written.
"""
function encode_file(tokenizer::Tokenizer, text_path::AbstractString, token_path::AbstractString)
    n = Ref{Int64}(0)
    check(L.fwp_token_file_encode(handle(tokenizer), text_path, token_path, n))
    return Int(n[])
end

"""
    token_file_info(path) -> (vocab_size, num_tokens)

Verifies a whole token file (header, size, checksum, every id below the
vocabulary size) and reports its sizes; a damaged file throws `:format`.
"""
function token_file_info(path::AbstractString)
    v, n = Ref{Int64}(0), Ref{Int64}(0)
    check(L.fwp_token_file_info(path, v, n))
    return (vocab_size = Int(v[]), num_tokens = Int(n[]))
end

"""
    read_token_file(path, range::AbstractUnitRange{<:Integer}) -> Vector{Int32}

The ids at the (1-based) positions `range` of a token file (`:out_of_range`
past its end).
"""
function read_token_file(path::AbstractString, range::AbstractUnitRange{<:Integer})
    first(range) >= 1 || argument_error("range $range must start at 1 or later")
    ids = Vector{Int32}(undef, length(range))
    check(L.fwp_token_file_read(path, first(range) - 1, ids, length(ids)))
    return ids
end

"""
    TokenData(token_path; batch_size = 8, segment_length = 256)

A token file read as the authors' ordered iterator reads a corpus:
`batch_size` contiguous streams, each batch the next segment of
`segment_length` tokens of every stream ([`next_batch!`](@ref)). A checkpoint
stores its position ([`save_checkpoint`](@ref)`(...; data)`), so a resumed run
reads what an uninterrupted one would. The file must not change while the
source uses it.
"""
mutable struct TokenData <: DataSource
    ptr::Ptr{L.fwp_data}
    batch_size::Int
    segment_length::Int

    function TokenData(token_path::AbstractString; kw...)
        cfg = with_fields(default_config(L.fwp_token_data_config, L.fwp_token_data_config_init); kw...)
        out = Ref{Ptr{L.fwp_data}}(C_NULL)
        check(L.fwp_token_data_create(token_path, Ref(cfg), out))
        data = new(out[], Int(cfg.batch_size), Int(cfg.segment_length))
        finalizer(close, data)
        return data
    end
end

"""
    close(data::TokenData)

Destroys the data source now; later calls on it throw.
"""
function Base.close(data::TokenData)
    if data.ptr != C_NULL
        L.fwp_data_destroy(data.ptr)
        data.ptr = C_NULL
    end
    return nothing
end

function handle(data::TokenData)
    data.ptr == C_NULL && throw(FwpError(L.FWP_ERR_BAD_STATE, "the TokenData is closed"))
    return data.ptr
end

"""
    FastWeights.config(data::TokenData) -> NamedTuple

The settings the source was created with (`batch_size`, `segment_length`).
"""
function config(data::TokenData)
    ref = Ref(default_config(L.fwp_token_data_config, L.fwp_token_data_config_init))
    check(L.fwp_token_data_get_config(handle(data), ref))
    return export_config(ref[])
end

"""
    next_batch!(data::TokenData) -> (inputs, targets)

The next batch as two `segment_length × batch_size` `Int32` matrices (each
target is the token after its input); the source moves on by one segment and
starts a new epoch after the last full one. With a shard ([`set_shard!`](@ref))
the matrices hold the shard's `batch_size ÷ count` streams.
"""
function next_batch!(data::TokenData)
    inputs = Matrix{Int32}(undef, data.segment_length, shard_rows(data, data.batch_size))
    targets = similar(inputs)
    check(L.fwp_token_data_next(handle(data), inputs, targets, length(inputs)))
    return (inputs = inputs, targets = targets)
end

function token_data_count(f, data::TokenData)
    n = Ref{Int64}(0)
    check(f(handle(data), n))
    return Int(n[])
end

"""
    data_epoch(data::TokenData) -> Int

The number of completed epochs (0 during the first).
"""
data_epoch(data::TokenData) = token_data_count(L.fwp_token_data_epoch, data)

"""
    data_position(data::TokenData) -> Int

The segment the next batch comes from, in `0:segments_per_epoch(data)-1`.
"""
data_position(data::TokenData) = token_data_count(L.fwp_token_data_position, data)

"""
    segments_per_epoch(data::TokenData) -> Int

The number of batches in one epoch.
"""
segments_per_epoch(data::TokenData) = token_data_count(L.fwp_token_data_segments_per_epoch, data)

vocab_size(data::TokenData) = token_data_count(L.fwp_token_data_vocab_size, data)

"""
    num_tokens(data::TokenData) -> Int

The number of tokens N in the token file.
"""
num_tokens(data::TokenData) = token_data_count(L.fwp_token_data_num_tokens, data)

# ---------------------------------------------------------------------------
# Parallel text (pair files and the pair data source)

function pair_info_struct()
    T = L.fwp_pair_info
    return T(UInt32(sizeof(T)), (zero(fieldtype(T, i)) for i in 2:fieldcount(T))...)
end

pair_info_tuple(info) = NamedTuple{Tuple(n for n in fieldnames(typeof(info)) if n != :struct_size)}(
    Tuple(Int(getfield(info, n)) for n in fieldnames(typeof(info)) if n != :struct_size))

"""
    pair_special_ids(tokenizer) -> (vocab_size, pad, bos, eos, unk)

The model's vocabulary size and the special ids of the pair files a tokenizer
writes: its own `<pad>`/`<bos>` where it has them (SentencePiece trained with
`pad_bos = true`), else ids after its vocabulary (pad = V, bos = V + 1).
"""
function pair_special_ids(tokenizer::Tokenizer)
    v = Ref{Int64}(0)
    pad, bos, eos, unk = Ref{Int32}(0), Ref{Int32}(0), Ref{Int32}(0), Ref{Int32}(0)
    check(L.fwp_pair_special_ids(handle(tokenizer), v, pad, bos, eos, unk))
    return (vocab_size = Int(v[]), pad = Int(pad[]), bos = Int(bos[]), eos = Int(eos[]), unk = Int(unk[]))
end

"""
    encode_pair_file(tokenizer, source_path, target_path, pair_path; max_source_tokens = 0,
                     max_target_tokens = 0, too_long = :skip, empty_lines = :skip) -> NamedTuple

Encodes two line-aligned text files (the WMT convention) with one tokenizer
into a pair file for [`PairData`](@ref), written atomically. Pairs with a side
over its limit (0: none) or without tokens are skipped and counted (`:skip`)
or refused (`:error`, throws `:invalid_argument` naming the line); files of
different line counts throw `:invalid_argument` naming both counts. Returns
what was written (as [`pair_file_info`](@ref)).
"""
function encode_pair_file(tokenizer::Tokenizer, source_path::AbstractString, target_path::AbstractString,
                          pair_path::AbstractString; kw...)
    cfg = with_fields(default_config(L.fwp_pair_encode_config, L.fwp_pair_encode_config_init); kw...)
    info = Ref(pair_info_struct())
    check(L.fwp_pair_file_encode(handle(tokenizer), source_path, target_path, pair_path, Ref(cfg), info))
    return pair_info_tuple(info[])
end

"""
    pair_file_info(path) -> NamedTuple

Verifies a whole pair file and reports what it holds (vocabulary, special
ids, pair and token counts, skipped counts, longest sentences); a damaged
file throws `:format`.
"""
function pair_file_info(path::AbstractString)
    info = Ref(pair_info_struct())
    check(L.fwp_pair_file_info(path, info))
    return pair_info_tuple(info[])
end

"""
    PairData(pair_path; max_tokens = 4096, max_sentences = 0, shuffle = true, seed = 1)

A pair file cut into batches by a token budget, as fairseq's `--max-tokens`:
`B * max(S, T) <= max_tokens` (and `B <= max_sentences` when set). With
`shuffle`, pairs of similar length share a batch and the batch order is
drawn per epoch from the seed; without, batches follow the file order (for
evaluation). A checkpoint stores the position ([`save_checkpoint`](@ref)`(...; data)`).
"""
mutable struct PairData <: DataSource
    ptr::Ptr{L.fwp_data}

    function PairData(pair_path::AbstractString; kw...)
        cfg = with_fields(default_config(L.fwp_pair_data_config, L.fwp_pair_data_config_init); kw...)
        out = Ref{Ptr{L.fwp_data}}(C_NULL)
        check(L.fwp_pair_data_create(pair_path, Ref(cfg), out))
        data = new(out[])
        finalizer(close, data)
        return data
    end
end

"""
    close(data::PairData)

Destroys the data source now; later calls on it throw.
"""
function Base.close(data::PairData)
    if data.ptr != C_NULL
        L.fwp_data_destroy(data.ptr)
        data.ptr = C_NULL
    end
    return nothing
end

function handle(data::PairData)
    data.ptr == C_NULL && throw(FwpError(L.FWP_ERR_BAD_STATE, "the PairData is closed"))
    return data.ptr
end

"""
    FastWeights.config(data::PairData) -> NamedTuple

The settings the source was created with.
"""
function config(data::PairData)
    ref = Ref(default_config(L.fwp_pair_data_config, L.fwp_pair_data_config_init))
    check(L.fwp_pair_data_get_config(handle(data), ref))
    return export_config(ref[])
end

"""
    pair_file_info(data::PairData) -> NamedTuple

What the source's pair file holds.
"""
function pair_file_info(data::PairData)
    info = Ref(pair_info_struct())
    check(L.fwp_pair_data_info(handle(data), info))
    return pair_info_tuple(info[])
end

function pair_shape(f, data::PairData)
    b, s, t = Ref{Int64}(0), Ref{Int64}(0), Ref{Int64}(0)
    check(f(handle(data), b, s, t))
    return (batch_size = Int(b[]), source_length = Int(s[]), target_length = Int(t[]))
end

"""
    peek_batch(data::PairData) -> (batch_size, source_length, target_length)

The shape of the batch [`next_batch!`](@ref) gives next.
"""
peek_batch(data::PairData) = pair_shape(L.fwp_pair_data_peek, data)

"""
    max_batch_shape(data::PairData) -> (batch_size, source_length, target_length)

The largest B, S and T of any batch (each on its own).
"""
max_batch_shape(data::PairData) = pair_shape(L.fwp_pair_data_max_shape, data)

"""
    next_batch!(data::PairData) -> NamedTuple

The next batch: `source` (S × B: x_1..x_n eos, then pad), `target_input`
(T × B: bos y_1..y_m, then pad), `target_output` (T × B: y_1..y_m eos, then
pad; pad means no loss), `source_lengths` and `target_lengths` (B) and
`pair_indices` (B, 0-based pairs of the file). The source moves on by one batch.
"""
function next_batch!(data::PairData)
    shape = peek_batch(data)
    B, S, T = shape.batch_size, shape.source_length, shape.target_length
    source = Matrix{Int32}(undef, S, B)
    target_input = Matrix{Int32}(undef, T, B)
    target_output = similar(target_input)
    source_lengths = Vector{Int32}(undef, B)
    target_lengths = Vector{Int32}(undef, B)
    pair_indices = Vector{Int64}(undef, B)
    check(L.fwp_pair_data_next(handle(data), B, S, T, source, source_lengths, target_input, target_output,
        target_lengths, pair_indices))
    return (source = source, source_lengths = source_lengths, target_input = target_input,
        target_output = target_output, target_lengths = target_lengths, pair_indices = pair_indices)
end

"""
    reset_epoch!(data::PairData, epoch = 0)

Moves to the first batch of `epoch` (e.g. 0 to evaluate a file again).
"""
function reset_epoch!(data::PairData, epoch::Integer = 0)
    check(L.fwp_pair_data_reset(handle(data), epoch))
    return data
end

function pair_data_count(f, data::PairData)
    n = Ref{Int64}(0)
    check(f(handle(data), n))
    return Int(n[])
end

data_epoch(data::PairData) = pair_data_count(L.fwp_pair_data_epoch, data)
data_position(data::PairData) = pair_data_count(L.fwp_pair_data_position, data)

"""
    batches_per_epoch(data::PairData) -> Int

The number of batches in one epoch.
"""
batches_per_epoch(data::PairData) = pair_data_count(L.fwp_pair_data_batches_per_epoch, data)

"""
    get_pair(data::PairData, index) -> (source, target)

Pair `index` (0-based, as `pair_indices`) of the file, without bos/eos.
"""
function get_pair(data::PairData, index::Integer)
    n, m = Ref{Int64}(0), Ref{Int64}(0)
    check(L.fwp_pair_data_get_pair(handle(data), index, Ptr{Int32}(C_NULL), 0, n, Ptr{Int32}(C_NULL), 0, m))
    source, target = Vector{Int32}(undef, n[]), Vector{Int32}(undef, m[])
    check(L.fwp_pair_data_get_pair(handle(data), index, source, length(source), n, target, length(target), m))
    return (source = source, target = target)
end

# ---------------------------------------------------------------------------
# Translation model (paper section 6.2)

"""
    seq2seq_config(; preset = nothing, attention = (;), encoder_attention = (;),
                   decoder_attention = (;), cross_attention = (;), kw...) -> LibFwp.fwp_seq2seq_config

The C config of a translation model: the library's defaults
(`fwp_seq2seq_config_init`: the paper's "Linear" model at fairseq's
Transformer-big sizes, 6 + 6 layers, d_model 1024, 16 heads of 64, FFN 4096,
dropout 0.3, label smoothing 0.1, tied embeddings, post-LN, every attention
elu + 1 with the sum rule) or a named preset (`"paper-big"`, `"base"`,
`"cpu-small"`), with the fields named by the keywords replaced (`vocab_size`,
`pad_id`, `bos_id`, `eos_id`, `encoder_layers`, `decoder_layers`, `d_ff`,
`dropout`, `label_smoothing`, `tie_embeddings`, `position`, `pre_norm`,
`init_std`, `seed`). `attention` holds layer keywords (as for
[`Layer`](@ref)) applied to all three attentions, then each of
`encoder_attention`, `decoder_attention` and `cross_attention` to its own;
all three must have the model's `d_model`.
"""
function seq2seq_config(; preset::Union{Nothing,AbstractString} = nothing, attention = NamedTuple(),
        encoder_attention = NamedTuple(), decoder_attention = NamedTuple(), cross_attention = NamedTuple(), kw...)
    ref = Ref(default_config(L.fwp_seq2seq_config, L.fwp_seq2seq_config_init))
    preset === nothing || check(L.fwp_seq2seq_config_preset(preset, ref))
    cfg = ref[]
    both(a, own) = with_fields(with_fields(a; attention...); own...)
    return with_fields(cfg; kw..., encoder_attention = both(cfg.encoder_attention, encoder_attention),
        decoder_attention = both(cfg.decoder_attention, decoder_attention),
        cross_attention = both(cfg.cross_attention, cross_attention))
end

"""
    Seq2SeqModel(ctx::Context; vocab_size, pad_id = 1, bos_id = 0, eos_id = 2, preset = nothing,
                 attention = (;), encoder_attention = (;), decoder_attention = (;), cross_attention = (;),
                 encoder_layers = 6, decoder_layers = 6, d_ff = 4096, dropout = 0.3f0,
                 label_smoothing = 0.1f0, tie_embeddings = true, position = :sinusoidal,
                 pre_norm = false, init_std = 0.02f0, seed = 0)

The paper's encoder-decoder translation model (section 6.2) with fresh
parameters; the settings are those of [`seq2seq_config`](@ref). Source and
target share one vocabulary with the special ids of the data
([`pair_special_ids`](@ref)). Train it on the batches of a
[`PairData`](@ref) source with [`forward!`](@ref)`(model, batch)`,
[`backward!`](@ref) and an [`Optimizer`](@ref); score with
[`FastWeights.evaluate`](@ref); translate with [`translate`](@ref). Load one
from a checkpoint with [`load_model(Seq2SeqModel, ctx, path)`](@ref load_model).
"""
mutable struct Seq2SeqModel <: Model
    ptr::Ptr{L.fwp_model}
    vocab_size::Int
    pad_id::Int32
    eos_id::Int32
    logger::Union{Nothing,Base.RefValue{Any}}
    optimizers::Int
    closed::Bool

    # Takes ownership of `ptr`, a model of kind seq2seq.
    function Seq2SeqModel(ptr::Ptr{L.fwp_model}, ctx::Context)
        model = new(ptr, 0, 0, 0, ctx.logger, 0, false)
        finalizer(close, model)
        cfg = config(model)
        model.vocab_size, model.pad_id, model.eos_id = cfg.vocab_size, cfg.pad_id, cfg.eos_id
        return model
    end
end

function Seq2SeqModel(ctx::Context; kw...)
    cfg = seq2seq_config(; kw...)
    out = Ref{Ptr{L.fwp_model}}(C_NULL)
    check(L.fwp_seq2seq_create(handle(ctx), Ref(cfg), out))
    return Seq2SeqModel(out[], ctx)
end

"""
    FastWeights.config(model::Seq2SeqModel) -> NamedTuple

The settings the model was created with; the three attentions as
`NamedTuple`s like `config(layer)` (a loaded model reports seed 0).
"""
function config(model::Seq2SeqModel)
    ref = Ref(default_config(L.fwp_seq2seq_config, L.fwp_seq2seq_config_init))
    check(L.fwp_seq2seq_get_config(handle(model), ref))
    cfg = ref[]
    return merge(export_config(cfg), (encoder_attention = export_config(cfg.encoder_attention),
        decoder_attention = export_config(cfg.decoder_attention), cross_attention = export_config(cfg.cross_attention)))
end

vocab_size(model::Seq2SeqModel) = model.vocab_size

# Checks a batch (as next_batch! returns it: S × B and T × B matrices) and
# calls `f(model, batch, loss)`; the arrays stay rooted during the call.
function run_seq2seq(f, model::Seq2SeqModel, batch)
    source, target_input, target_output = Matrix{Int32}(batch.source), Matrix{Int32}(batch.target_input),
        Matrix{Int32}(batch.target_output)
    source_lengths, target_lengths = Vector{Int32}(batch.source_lengths), Vector{Int32}(batch.target_lengths)
    S, B = size(source)
    T = size(target_input, 1)
    size(target_input) == (T, B) || shape_error("target_input is $(size(target_input)), expected ($T, $B)")
    size(target_output) == (T, B) || shape_error("target_output is $(size(target_output)), expected ($T, $B)")
    length(source_lengths) == B || shape_error("source_lengths has $(length(source_lengths)) values, expected $B")
    length(target_lengths) == B || shape_error("target_lengths has $(length(target_lengths)) values, expected $B")
    loss = Ref(L.fwp_seq2seq_loss(0.0, 0.0, 0))
    GC.@preserve source source_lengths target_input target_output target_lengths begin
        raw = L.fwp_seq2seq_batch(pointer(source), pointer(source_lengths), pointer(target_input),
            pointer(target_output), pointer(target_lengths), B, S, T)
        check(f(handle(model), Ref(raw), loss))
    end
    l = loss[]
    return (loss_sum = l.loss_sum, nll_sum = l.nll_sum, tokens = Int(l.tokens),
        mean_loss = l.loss_sum / l.tokens, mean_nll = l.nll_sum / l.tokens)
end

"""
    forward!(model::Seq2SeqModel, batch) -> NamedTuple

Training forward pass of a padded batch of pairs, as [`next_batch!`](@ref)
returns it (`source` S × B, `target_input` and `target_output` T × B,
`source_lengths` and `target_lengths`); returns the sums over the scored
target tokens `(loss_sum, nll_sum, tokens, mean_loss, mean_nll)`.
[`backward!`](@ref) then adds the gradients of `mean_loss` (the
label-smoothed loss per token).
"""
forward!(model::Seq2SeqModel, batch) = run_seq2seq(L.fwp_seq2seq_forward, model, batch)

"""
    FastWeights.evaluate(model::Seq2SeqModel, batch) -> NamedTuple

Scores a padded batch (as [`forward!`](@ref)) in evaluation mode (no dropout),
leaving nothing for a backward; the training flag is unchanged.
"""
evaluate(model::Seq2SeqModel, batch) = run_seq2seq(L.fwp_seq2seq_evaluate, model, batch)

search_config(; kw...) =
    with_fields(default_config(L.fwp_seq2seq_search_config, L.fwp_seq2seq_search_config_init); kw...)

# The library's length limit of a source of n positions (eos included), computed as it does.
max_output_length(cfg, n) = max(0, floor(Int, Float64(cfg.max_len_a) * n + Float64(cfg.max_len_b)))

"""
    translate(model::Seq2SeqModel, sources::AbstractVector{<:AbstractVector{<:Integer}};
              beam_size = 4, length_penalty = 1f0, max_len_a = 1.2f0, max_len_b = 10f0,
              min_length = 1, stop = :finished) -> (tokens, scores)

Translates source sentences given as ids without eos (as [`get_pair`](@ref)
returns them), padded into one batch: each gets the model's eos, then pad.
`beam_size = 1` is greedy decoding. Outputs have at most
`floor(max_len_a * n + max_len_b)` tokens (n the source length with its eos);
`stop` is `:finished` (fairseq's rule) or `:no_better`. Returns the best
hypothesis of each sentence (`Vector{Int32}` without bos, pad and the final
eos) and its score, log p / length^length_penalty.
"""
function translate(model::Seq2SeqModel, sources::AbstractVector{<:AbstractVector{<:Integer}}; kw...)
    isempty(sources) && argument_error("translate: no source sentences")
    any(isempty, sources) && argument_error("translate: source sentence $(findfirst(isempty, sources)) is empty")
    search = search_config(; kw...)
    B = length(sources)
    S = maximum(length, sources) + 1
    source = fill(model.pad_id, S, B)
    lengths = Vector{Int32}(undef, B)
    for (b, s) in enumerate(sources)
        source[1:length(s), b] .= s
        source[length(s) + 1, b] = model.eos_id
        lengths[b] = length(s) + 1
    end
    capacity = max(1, maximum(n -> max_output_length(search, n), lengths))
    output = Matrix{Int32}(undef, capacity, B)
    output_lengths = Vector{Int64}(undef, B)
    scores = Vector{Float32}(undef, B)
    check(L.fwp_seq2seq_translate(handle(model), source, lengths, B, S, Ref(search), output, capacity,
        output_lengths, scores))
    tokens = [output[1:min(Int(output_lengths[b]), capacity), b] for b in 1:B]
    return (tokens = tokens, scores = scores)
end

# ---------------------------------------------------------------------------
# Optimizers

"""
    Optimizer(model_or_layer; kind = :adam, learning_rate = 1f-3, beta1 = 0.9f0, beta2 = 0.999f0,
              eps = 1f-8, weight_decay = 0f0, momentum = 0f0, clip_grad_norm = 0f0,
              lr_schedule = :constant, warmup_steps = 0, total_steps = 0, min_learning_rate = 0f0)

Updates the trainable parameters of a model (any [`Model`](@ref)) or a [`Layer`](@ref) from
their gradients (`kind` is `:sgd`, `:adam` or `:adamw`). Defaults come from
`fwp_optimizer_config_init`. The optimizer keeps its target alive.

`lr_schedule` is `:constant`, `:warmup_cosine` or `:inverse_sqrt`; after `n`
steps the next step uses, with `base = learning_rate`: `base * n / warmup_steps`
while `n < warmup_steps`, then `base` (constant), a half cosine from `base` to
`min_learning_rate` reached at `n = total_steps` and held after
(warmup_cosine), or `max(min_learning_rate, base * sqrt(warmup_steps / n))`
(inverse_sqrt, `warmup_steps >= 1`). See `fwp/optimizer.h`.
"""
mutable struct Optimizer
    ptr::Ptr{L.fwp_optimizer}
    target::Trainable

    function Optimizer(target::Trainable; kw...)
        cfg = with_fields(default_config(L.fwp_optimizer_config, L.fwp_optimizer_config_init); kw...)
        out = Ref{Ptr{L.fwp_optimizer}}(C_NULL)
        create = target isa Model ? L.fwp_optimizer_create_for_model : L.fwp_optimizer_create_for_layer
        check(create(handle(target), Ref(cfg), out))
        opt = new(out[], target)
        target.optimizers += 1
        finalizer(close, opt)
        return opt
    end
end

"""
    close(opt::Optimizer)

Destroys the optimizer now (and its target, if that was closed meanwhile).
"""
function Base.close(opt::Optimizer)
    if opt.ptr != C_NULL
        L.fwp_optimizer_destroy(opt.ptr)
        opt.ptr = C_NULL
        target = opt.target
        target.optimizers -= 1
        target.closed && close(target)
    end
    return nothing
end

Base.isopen(opt::Optimizer) = opt.ptr != C_NULL

function handle(opt::Optimizer)
    opt.ptr == C_NULL && throw(FwpError(L.FWP_ERR_BAD_STATE, "the Optimizer is closed"))
    return opt.ptr
end

"""
    step!(opt::Optimizer) -> Float32

One update of all trainable parameters from their gradients; returns the
global gradient L2 norm before clipping. Throws `:invalid_argument`, changing
nothing, if a gradient is not finite.
"""
function step!(opt::Optimizer)
    norm = Ref{Cfloat}(0)
    check(L.fwp_optimizer_step(handle(opt), norm))
    return norm[]
end

zero_grad!(opt::Optimizer) = check(L.fwp_optimizer_zero_grad(handle(opt)))

"""
    FastWeights.learning_rate(opt::Optimizer) -> Float32

The learning rate the next step uses (the schedule's value after `steps(opt)` steps).
"""
function learning_rate(opt::Optimizer)
    lr = Ref{Cfloat}(0)
    check(L.fwp_optimizer_get_lr(handle(opt), lr))
    return lr[]
end

"""
    set_learning_rate!(opt::Optimizer, lr)

Sets the base (peak) learning rate that the schedule scales: finite, >= 0 and
not below the schedule's `min_learning_rate`. With a constant schedule after its
warm-up this is the learning rate of the next step.
"""
set_learning_rate!(opt::Optimizer, lr::Real) = check(L.fwp_optimizer_set_lr(handle(opt), Cfloat(lr)))

"""
    FastWeights.steps(opt::Optimizer) -> Int

The number of steps taken.
"""
function steps(opt::Optimizer)
    n = Ref{Int64}(0)
    check(L.fwp_optimizer_get_step(handle(opt), n))
    return Int(n[])
end

# ---------------------------------------------------------------------------
# Checkpoints

"""
    save_checkpoint(path, model::Model; optimizer = nothing, data = nothing, state = nothing, metadata = nothing)

Saves the model (and its optimizer, the position of a data source of any kind,
a run `state` of the model, e.g. the memory carried across segments, and a
`metadata` string) to a safetensors file, written to a temporary name and
renamed into place.
"""
function save_checkpoint(path::AbstractString, model::Model; optimizer::Union{Nothing,Optimizer} = nothing,
        data::Union{Nothing,DataSource} = nothing, state::Union{Nothing,State} = nothing,
        metadata::Union{Nothing,AbstractString} = nothing)
    optimizer === nothing || optimizer.target === model ||
        throw(FwpError(L.FWP_ERR_CONTEXT_MISMATCH, "the optimizer does not train this model"))
    opt_ptr = optimizer === nothing ? Ptr{L.fwp_optimizer}(C_NULL) : handle(optimizer)
    data_ptr = data === nothing ? Ptr{L.fwp_data}(C_NULL) : handle(data)
    state_ptr = state === nothing ? Ptr{L.fwp_state}(C_NULL) : handle(state)
    check(L.fwp_checkpoint_save_with_state(path, handle(model), opt_ptr, data_ptr, state_ptr,
        metadata === nothing ? Ptr{UInt8}(C_NULL) : metadata))
end

"""
    load_checkpoint!(path, model::Model; optimizer = nothing, data = nothing, state = nothing)

Loads a checkpoint into `model` (and `optimizer`, `data`, and a run `state`,
which takes the stored batch, contents and positions; the file must hold one)
whose configuration matches the file; either everything is loaded or nothing is
changed.
"""
function load_checkpoint!(path::AbstractString, model::Model; optimizer::Union{Nothing,Optimizer} = nothing,
        data::Union{Nothing,DataSource} = nothing, state::Union{Nothing,State} = nothing)
    opt_ptr = optimizer === nothing ? Ptr{L.fwp_optimizer}(C_NULL) : handle(optimizer)
    data_ptr = data === nothing ? Ptr{L.fwp_data}(C_NULL) : handle(data)
    state_ptr = state === nothing ? Ptr{L.fwp_state}(C_NULL) : handle(state)
    check(L.fwp_checkpoint_load_with_state(path, handle(model), opt_ptr, data_ptr, state_ptr))
end

# ---------------------------------------------------------------------------
# Translation metrics

# Calls f(hypothesis pointers, count, stream pointers, count) with the texts as
# NUL-terminated strings kept alive for the call.
function with_corpus(f, hypotheses, references)
    isempty(references) && argument_error("at least one reference stream is needed")
    for (r, stream) in enumerate(references)
        length(stream) == length(hypotheses) || throw(FwpError(L.FWP_ERR_SHAPE_MISMATCH,
            "reference stream $r has $(length(stream)) lines but there are $(length(hypotheses)) hypotheses"))
    end
    hyp_strings = String[String(h) for h in hypotheses]
    ref_strings = [String[String(line) for line in stream] for stream in references]
    for (i, s) in enumerate(hyp_strings)
        Base.containsnul(s) && argument_error("hypothesis $i contains a NUL byte")
    end
    for (r, stream) in enumerate(ref_strings), (i, s) in enumerate(stream)
        Base.containsnul(s) && argument_error("line $i of reference stream $r contains a NUL byte")
    end
    # Julia strings are NUL-terminated in memory, so their pointers are C strings.
    GC.@preserve hyp_strings ref_strings begin
        hyp_ptrs = Ptr{UInt8}[pointer(s) for s in hyp_strings]
        rows = [Ptr{UInt8}[pointer(s) for s in stream] for stream in ref_strings]
        GC.@preserve rows begin
            stream_ptrs = Ptr{Ptr{UInt8}}[pointer(row) for row in rows]
            return f(hyp_ptrs, length(hyp_ptrs), stream_ptrs, length(stream_ptrs))
        end
    end
end

"""
    bleu(hypotheses, references...; tokenize = :mteval13a, smooth_method = :exp, smooth_value = -1.0,
         max_ngram_order = 4, effective_order = false) -> NamedTuple

Corpus BLEU of the `hypotheses` (strings) against one or more reference
streams, each a vector as long as `hypotheses`, as the sacrebleu package
computes it (its defaults: 13a tokens, exp smoothing, case-sensitive). Other
smoothing: `:none`, `:floor`, `:add_k` (`smooth_value` negative for their
defaults 0.1 and 1); `tokenize = :none` for pre-tokenized text.

Returns `(score, precisions, brevity_penalty, ratio, hyp_len, ref_len, counts,
totals)`: the score and precisions in percent, counts and totals per n-gram order.
"""
function bleu(hypotheses::AbstractVector{<:AbstractString}, references::AbstractVector{<:AbstractString}...; kw...)
    options = with_fields(default_config(L.fwp_bleu_options, L.fwp_bleu_options_init); kw...)
    result = Ref(default_config(L.fwp_bleu_result, L.fwp_bleu_result_init))
    with_corpus(hypotheses, references) do hyps, n, refs, num_refs
        check(L.fwp_bleu(hyps, n, refs, num_refs, Ref(options), result))
    end
    r = result[]
    return (score = r.score, precisions = collect(r.precisions), brevity_penalty = r.brevity_penalty,
        ratio = r.ratio, hyp_len = Int(r.hyp_len), ref_len = Int(r.ref_len), counts = collect(Int, r.counts),
        totals = collect(Int, r.totals))
end

"""
    chrf(hypotheses, references...; char_order = 6, word_order = 0, beta = 2.0, whitespace = false,
         eps_smoothing = false) -> Float64

Corpus chrF (0..100) of the `hypotheses` against one or more reference
streams, as the sacrebleu package computes it (`word_order = 2` is chrF++).
"""
function chrf(hypotheses::AbstractVector{<:AbstractString}, references::AbstractVector{<:AbstractString}...; kw...)
    options = with_fields(default_config(L.fwp_chrf_options, L.fwp_chrf_options_init); kw...)
    result = Ref(default_config(L.fwp_chrf_result, L.fwp_chrf_result_init))
    with_corpus(hypotheses, references) do hyps, n, refs, num_refs
        check(L.fwp_chrf(hyps, n, refs, num_refs, Ref(options), result))
    end
    return result[].score
end

# ---------------------------------------------------------------------------
# Data-parallel training (distributed.h)

"""
    set_shard!(data::DataSource, index, count)

Makes a data source give shard `index` (0-based, as MPI ranks are) of `count`
of every batch, for data-parallel training ([`Dist`](@ref)): `count` ranks
together take the step one process takes on the whole batch.

- [`TokenData`](@ref): the config's `batch_size` (the global number of
  streams, a multiple of `count`) is cut into `count` blocks of streams;
  [`next_batch!`](@ref) gives the shard's.
- [`RetrievalData`](@ref): [`sample!`](@ref)`(data, B)` takes the global `B`
  (a multiple of `count`), draws the whole batch and returns the shard's rows.
- [`PairData`](@ref): each token-budget batch is split into `count` contiguous
  parts (a part may be empty: [`peek_batch`](@ref) then reports `batch_size = 0`).

Every shard walks through the same global batches; a checkpoint stores the
position, not the shard. `(0, 1)` (the default) gives whole batches. A bad
pair throws `:invalid_argument` and changes nothing.
"""
function set_shard!(data::DataSource, index::Integer, count::Integer)
    check(L.fwp_data_set_shard(handle(data), index, count))
    return data
end

"""
    get_shard(data::DataSource) -> (index, count)

The shard a data source gives (`(0, 1)`: whole batches).
"""
function get_shard(data::DataSource)
    index, count = Ref{Int64}(0), Ref{Int64}(0)
    check(L.fwp_data_get_shard(handle(data), index, count))
    return (Int(index[]), Int(count[]))
end

# The rows of one shard of a global batch of `global` rows.
function shard_rows(data::DataSource, global_rows::Integer)
    _, count = get_shard(data)
    global_rows % count == 0 ||
        argument_error("batch_size ($global_rows) must be a multiple of the number of shards ($count) (set_shard!)")
    return global_rows ÷ count
end

"""
    DistConfig(; engine = :mpi, bucket_elements = 4_194_304, timeout_seconds = 600.0,
               mpi_comm = C_NULL, rank = 0, world_size = 0, allreduce = nothing)

Settings of a [`Dist`](@ref) group; defaults come from `fwp_dist_config_init`.
`engine` is `:mpi` or `:nccl` (inside libfwp, when it was built with them:
[`engine_available`](@ref)) or `:callback`: the caller's all-reduce
`allreduce(buffer)`, a function that sums `buffer` (a `Vector{Float32}` or
`Vector{Float64}` over libfwp's memory, valid during the call only) element-wise
over every rank, in place, e.g. `buf -> MPI.Allreduce!(buf, +, comm)` with
MPI.jl. Every rank calls it with buffers of the same type and length in the
same order; an exception fails the collective (`:distributed`, its message
included). For the callback engine `rank` (0-based) and `world_size` are
required; for MPI and NCCL they stay 0 and `mpi_comm` may point to an
`MPI_Comm` of the MPI library libfwp links (`C_NULL`: `MPI_COMM_WORLD`).
"""
struct DistConfig
    raw::L.fwp_dist_config
    allreduce::Any

    function DistConfig(; allreduce = nothing, kw...)
        raw = with_fields(default_config(L.fwp_dist_config, L.fwp_dist_config_init); kw...)
        return new(raw, allreduce)
    end
end

"""
    engine_available(engine::Symbol) -> Bool

Whether this build of libfwp can create a group with `engine` (`:mpi` and
`:nccl` when it was built with them; `:callback` always).
"""
function engine_available(engine::Symbol)
    table = ENUM_FIELDS[:engine]
    haskey(table, engine) ||
        argument_error("engine = :$engine is not one of $(join(sort!(collect(keys(table))), ", "))")
    return L.fwp_dist_engine_available(table[engine]) != 0
end

# What the C trampoline reaches through user_data: the caller's all-reduce and
# why it last failed (put into the error of the collective that failed).
mutable struct DistCallback
    allreduce::Any
    failure::Union{Nothing,String}
end

function dist_allreduce_trampoline(buffer::Ptr{Cvoid}, count::Int64, dtype::Cint, user_data::Ptr{Cvoid})::Cint
    user_data == C_NULL && return Cint(1)
    box = unsafe_pointer_to_objref(user_data)::DistCallback
    try
        (buffer != C_NULL && count >= 1) || error("libfwp passed a bad buffer ($count elements)")
        T = dtype == L.FWP_DIST_FLOAT32 ? Float32 :
            dtype == L.FWP_DIST_FLOAT64 ? Float64 : error("libfwp passed an unknown element type $dtype")
        box.allreduce(unsafe_wrap(Array, Ptr{T}(buffer), Int(count); own = false))
        return Cint(0)
    catch e
        # An exception must not unwind into C; the collective fails instead.
        box.failure = sprint(showerror, e)
        return Cint(1)
    end
end

"""
    Dist(ctx::Context, config::DistConfig)
    Dist(ctx::Context; engine = :mpi, ..., allreduce = nothing)

Joins a data-parallel group (a collective: every rank calls it). `dist.rank`
(0-based) and `dist.world_size` say where this process stands. A step on every
rank is: forward on its shard ([`set_shard!`](@ref)); [`backward!`](@ref);
[`average_gradients!`](@ref)`(dist, model)`; [`step!`](@ref)`(opt)`, after one
[`sync_model!`](@ref) at the start. Every rank makes the same collective calls
in the same order. A failed collective throws `:distributed` and leaves the
group broken; end the job then ([`FastWeights.abort`](@ref)). Throws
`:unsupported` for an engine this build lacks and `:invalid_argument` for a bad
setting. The callback is kept alive by the `Dist` (until `close`).
"""
mutable struct Dist
    ptr::Ptr{L.fwp_dist}
    rank::Int
    world_size::Int
    callback::Union{Nothing,DistCallback}
    logger::Union{Nothing,Base.RefValue{Any}}

    function Dist(ctx::Context, config::DistConfig)
        raw = config.raw
        box = config.allreduce === nothing ? nothing : DistCallback(config.allreduce, nothing)
        if box !== nothing
            callback = @cfunction(dist_allreduce_trampoline, Cint, (Ptr{Cvoid}, Int64, Cint, Ptr{Cvoid}))
            raw = L.fwp_dist_config(raw.struct_size, raw.engine, raw.bucket_elements, raw.timeout_seconds,
                raw.mpi_comm, callback, pointer_from_objref(box), raw.rank, raw.world_size)
        end
        out = Ref{Ptr{L.fwp_dist}}(C_NULL)
        GC.@preserve box check(L.fwp_dist_create(handle(ctx), Ref(raw), out))
        dist = new(out[], 0, 0, box, ctx.logger)
        finalizer(close, dist)
        rank, world_size = Ref{Int32}(0), Ref{Int32}(0)
        check(L.fwp_dist_get_rank(dist.ptr, rank, world_size))
        dist.rank, dist.world_size = Int(rank[]), Int(world_size[])
        return dist
    end
end

# Also `Dist(ctx)`: the defaults (the MPI engine). One method for both, since a
# keyword method also defines the positional signature.
Dist(ctx::Context; kw...) = Dist(ctx, DistConfig(; kw...))

"""
    close(dist::Dist)

Leaves the group now (not a collective); later calls on `dist` throw.
"""
function Base.close(dist::Dist)
    if dist.ptr != C_NULL
        L.fwp_dist_destroy(dist.ptr)
        dist.ptr = C_NULL
    end
    return nothing
end

Base.isopen(dist::Dist) = dist.ptr != C_NULL

function handle(dist::Dist)
    dist.ptr == C_NULL && throw(FwpError(L.FWP_ERR_BAD_STATE, "the Dist is closed"))
    return dist.ptr
end

# check() for collectives: a failure of the caller's all-reduce is named in the error.
function dist_check(dist::Dist, status::Integer)
    status == L.FWP_OK && return nothing
    message = unsafe_string(L.fwp_last_error_message())
    box = dist.callback
    if box !== nothing && box.failure !== nothing
        message *= " (all-reduce callback: $(box.failure))"
        box.failure = nothing
    end
    throw(FwpError(status, message))
end

"""
    sync_model!(dist::Dist, model::Model)

Makes this replica equal to rank 0's (a collective): parameters (trainable and
fixed) and random state; then gives this rank its own dropout stream. Call once
after creating or loading the model on every rank. Models of different sizes
throw `:shape_mismatch`.
"""
function sync_model!(dist::Dist, model::Model)
    dist_check(dist, L.fwp_dist_sync_model(handle(dist), handle(model)))
    return model
end

"""
    average_gradients!(dist::Dist, model::Model, weight = 1.0) -> Float64

Replaces every rank's gradients by their weighted mean over the ranks (a
collective), `sum_r w_r g_r / sum_r w_r` with `w_r` each rank's `weight`
(finite, >= 0): 1 on every rank for equal shards, the number of loss tokens of
the shard for batches by a token budget. Returns `sum_r w_r`. Weights summing
to 0 throw `:invalid_argument` and leave the gradients unchanged.
"""
function average_gradients!(dist::Dist, model::Model, weight::Real = 1.0)
    total = Ref{Cdouble}(0)
    dist_check(dist, L.fwp_dist_average_gradients(handle(dist), handle(model), Cdouble(weight), total))
    return total[]
end

"""
    dist_sum!(dist::Dist, values::Vector{Float64}) -> values

Sums `values` over the ranks, in place (a collective), e.g. losses and token
counts for a progress line. `values` must not be empty.
"""
function dist_sum!(dist::Dist, values::Vector{Float64})
    isempty(values) && argument_error("dist_sum!: values is empty (at least 1 number)")
    dist_check(dist, L.fwp_dist_sum(handle(dist), values, length(values)))
    return values
end

"""
    gather_state!(dist::Dist, local_state::State, global_state::State) -> global_state

Collects every rank's rows of a run state into `global_state`, a state of the
same model with `world_size` times the local batch (a collective): row
`r b + i` (0-based) of the whole becomes row `i` of rank `r`'s `local_state`.
Every rank receives the whole. Softmax layers throw `:unsupported`.
"""
function gather_state!(dist::Dist, local_state::State, global_state::State)
    dist_check(dist, L.fwp_dist_gather_state(handle(dist), handle(local_state), handle(global_state)))
    return global_state
end

"""
    FastWeights.barrier(dist::Dist)

Waits until every rank has called it (a collective).
"""
barrier(dist::Dist) = dist_check(dist, L.fwp_dist_barrier(handle(dist)))

"""
    FastWeights.abort(dist::Dist, code = 1)

Ends the job: with MPI and NCCL every process of the group exits with `code`
(`MPI_Abort`; does not return). With the callback engine it only marks the
group broken and returns; ending the other ranks is then the caller's (e.g.
`MPI.Abort(comm, code)`).
"""
function abort(dist::Dist, code::Integer = 1)
    L.fwp_dist_abort(handle(dist), code)
    return nothing
end

end # module FastWeights
