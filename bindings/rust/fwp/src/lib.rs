//! Safe Rust API of **fwp**: fast weight programmers (linear transformers) in
//! C++/CUDA behind a stable C API (Schlag, Irie and Schmidhuber, ICML 2021).
//!
//! The types own their C handles and release them on drop:
//!
//! * [`Context`]: device, thread count, seed and logger;
//! * [`Layer`]: a multi-head fast-weight (or softmax) attention layer with
//!   explicit [`forward`](Layer::forward) / [`backward`](Layer::backward),
//!   parameters, gradients and a fast-weight state carried across segments
//!   (read as [`FastWeights`]);
//! * [`State`]: run state apart from the weights (fast weights or key/value
//!   caches of N sequences) that a layer runs against, copied, reset and
//!   reordered for beam search;
//! * one type per kind of model: [`RetrievalModel`], the paper's
//!   associative-retrieval model with its own config and forward pass; the
//!   operations every kind shares (parameters, gradients, backward, training
//!   mode, checkpoints) are the [`Model`] trait, and [`AnyModel::load`] loads a
//!   checkpoint of any kind as an enum to match on;
//! * [`LanguageModel`] (the paper's word-level language model, section 6.3,
//!   with [`LmConfig`] and presets): the training forward pass with targets,
//!   the paper's evaluation modes ([`EvalMode`]), step-by-step decoding
//!   through a [`State`], and generation with a [`SamplingConfig`];
//! * [`Tokenizer`] (word level or SentencePiece: build, encode, decode, save,
//!   load), token files ([`Tokenizer::encode_file`], [`token_file_info`],
//!   [`read_token_file`]) and the [`TokenData`] source that feeds them to a
//!   model in batches;
//! * parallel text for translation: [`encode_pair_file`] (two line-aligned
//!   files into one pair file), [`pair_file_info`], and the [`PairData`]
//!   source of token-budget batches (a data source of [`DataKind::ParallelText`]);
//! * [`Seq2SeqModel`] (the paper's encoder-decoder translation model, section
//!   6.2, with [`Seq2SeqConfig`] and presets): the training forward pass over
//!   [`PairBatch`]es, evaluation, and translation by beam search or greedy
//!   decoding ([`SearchConfig`]);
//! * [`RetrievalData`] / [`RetrievalBatch`]: seeded retrieval sequences (a
//!   data source of [`DataKind::Retrieval`]; checkpoints store the position of
//!   any [`DataSource`]);
//! * [`Optimizer`]: SGD, Adam or AdamW over a layer or any model, and checkpoints;
//! * [`distributed`]: data-parallel training, a group of ranks (MPI, NCCL, or
//!   the caller's all-reduce as a closure) that average their gradients, and
//!   shards of every batch ([`DataSource::set_shard`]).
//!
//! Every fallible call returns [`Result`]; an [`Error`] carries the library's
//! [`Status`] and its message naming the argument and the problem. Slices are
//! checked against the shapes before any call into C.
//!
//! The library is reference-counted internally, so layers and models need no
//! Rust lifetime tied to their context. An optimizer borrows what it trains.
//! Distinct objects may be used on distinct threads (`Send`); a [`Context`]
//! may also be shared (`Sync`).
//!
//! ```
//! use fwp::{Context, Layer, LayerConfig};
//! let ctx = Context::cpu()?;
//! let mut layer = Layer::new(&ctx, &LayerConfig::default().d_model(16).num_heads(2).d_head(8))?;
//! let y = layer.forward(&vec![0.25; 3 * 16], 1, 3)?;
//! assert_eq!(y.len(), 3 * 16);
//! # Ok::<(), fwp::Error>(())
//! ```
//!
//! The crate links against `libfwp` found by `fwp-sys` (from `FWP_LIB_DIR`,
//! pkg-config, or the project's CMake build directories).
#![deny(missing_docs)]

mod context;
mod data;
pub mod distributed;
mod error;
mod layer;
mod lm;
mod metrics;
mod model;
mod optimizer;
mod parallel;
mod params;
mod seq2seq;
mod state;
mod text;

use std::ffi::CStr;

pub use context::{Context, ContextConfig, Device, LogLevel};
pub use data::{DataKind, DataSource, RetrievalBatch, RetrievalData, TokenBatch, TokenData, TokenDataConfig};
pub use error::{Error, Result, Status};
pub use layer::{Algorithm, FastWeights, FeatureMap, Layer, LayerConfig, UpdateRule};
pub use lm::{EvalMode, Evaluation, LanguageModel, LmConfig, PositionEncoding, SamplingConfig};
pub use metrics::{bleu, chrf, BleuOptions, BleuScore, BleuSmoothing, BleuTokenizer, ChrfOptions};
pub use model::{AnyModel, Model, ModelKind, OtherModel, RetrievalConfig, RetrievalModel};
pub use optimizer::{LrSchedule, Optimizer, OptimizerConfig, OptimizerKind, Trainable};
pub use parallel::{
    encode_pair_file, pair_file_info, pair_special_ids, PairBatch, PairData, PairDataConfig, PairEncodeConfig,
    PairInfo, PairPolicy, PairShape, SpecialIds,
};
pub use params::ParamInfo;
pub use seq2seq::{BeamStop, SearchConfig, Seq2SeqConfig, Seq2SeqLoss, Seq2SeqModel, Translations};
pub use state::State;
pub use text::{
    read_token_file, token_file_info, SentencePieceConfig, SentencePieceModel, TokenFileInfo, Tokenizer, TokenizerKind,
    WordTokenizerConfig,
};

/// The raw C API, re-exported for what the safe types do not cover.
pub use fwp_sys as sys;

/// The version `(major, minor, patch)` of the libfwp loaded at run time.
///
/// ```
/// let (major, _minor, _patch) = fwp::version();
/// assert_eq!(major, fwp::sys::FWP_VERSION_MAJOR);
/// ```
pub fn version() -> (i32, i32, i32) {
    let (mut major, mut minor, mut patch) = (0, 0, 0);
    // SAFETY: valid output pointers.
    unsafe { sys::fwp_version(&mut major, &mut minor, &mut patch) };
    (major, minor, patch)
}

/// The run-time version as a string such as `"0.1.0"`.
pub fn version_string() -> String {
    // SAFETY: a static NUL-terminated string, never NULL.
    unsafe { CStr::from_ptr(sys::fwp_version_string()) }.to_string_lossy().into_owned()
}

/// Whether the loaded libfwp contains the CUDA backend.
pub fn cuda_is_built() -> bool {
    // SAFETY: no arguments.
    unsafe { sys::fwp_cuda_is_built() != 0 }
}

/// The number of CUDA devices visible to this process (0 without CUDA or GPU).
pub fn cuda_device_count() -> Result<usize> {
    let mut count = 0i32;
    // SAFETY: valid output pointer.
    error::check(unsafe { sys::fwp_cuda_device_count(&mut count) })?;
    Ok(count.max(0) as usize)
}

/// The calling thread's last error message of the C library (`""` if none),
/// e.g. for calls made through [`sys`]. The safe API already puts it in [`Error`].
pub fn last_error_message() -> String {
    // SAFETY: a NUL-terminated thread-local string, never NULL; copied at once.
    unsafe { CStr::from_ptr(sys::fwp_last_error_message()) }.to_string_lossy().into_owned()
}

/// Clears the calling thread's last error message.
pub fn clear_error() {
    // SAFETY: no arguments.
    unsafe { sys::fwp_clear_error() }
}
