//! The encoder-decoder translation model of the paper (section 6.2): config
//! and presets, the training forward pass over padded batches of pairs, and
//! translation by beam search or greedy decoding (`fwp/seq2seq.h`).

use std::ffi::CString;
use std::fmt;
use std::path::Path;
use std::ptr;

use fwp_sys as sys;

use crate::context::Context;
use crate::error::{check, check_len, product, to_i64, to_usize, Error, Result, Status};
use crate::layer::{config_enum, config_field, config_flag, rust_enum, LayerConfig};
use crate::lm::PositionEncoding;
use crate::model::{sealed, AnyModel, Handle, Model};
use crate::parallel::{PairBatch, SpecialIds};

/// Settings of a [`Seq2SeqModel`], starting from the library's defaults
/// (`fwp_seq2seq_config_init`: the paper's "Linear" model at fairseq's
/// Transformer-big sizes, 6 + 6 layers, d_model 1024, 16 heads of 64, FFN
/// 4096, dropout 0.3, label smoothing 0.1, tied embeddings, post-LN, every
/// attention elu + 1 with the sum rule) or from a named
/// [preset](Seq2SeqConfig::preset). The vocabulary size has no default and
/// must be set, with the special ids of the data
/// ([`Seq2SeqConfig::special_ids`]).
///
/// The three attentions (encoder self-attention, decoder self-attention,
/// cross-attention) are each a [`LayerConfig`]; all must have the model's
/// d_model. [`Seq2SeqConfig::map_attentions`] changes all three at once.
///
/// ```
/// use fwp::{FeatureMap, Seq2SeqConfig};
/// let config = Seq2SeqConfig::preset("cpu-small")?
///     .vocab_size(1000)
///     .encoder_layers(2)
///     .map_attentions(|a| a.feature_map(FeatureMap::Softmax));
/// assert_eq!(config.get_vocab_size(), 1000);
/// assert_eq!(config.get_decoder_layers(), 3);
/// assert_eq!(config.get_cross_attention().get_d_model(), 256);
/// assert_eq!(config.get_encoder_attention().get_feature_map(), FeatureMap::Softmax);
/// assert!(Seq2SeqConfig::preset("no-such-preset").is_err());
/// # Ok::<(), fwp::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Seq2SeqConfig {
    raw: sys::fwp_seq2seq_config,
}

impl Default for Seq2SeqConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_seq2seq_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_seq2seq_config_init(raw.as_mut_ptr()) };
        Seq2SeqConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl Seq2SeqConfig {
    /// The named preset: `"paper-big"`, `"base"` or `"cpu-small"` (see
    /// `fwp_seq2seq_config_preset`); the vocabulary size and special ids are
    /// left to set. An unknown name fails with
    /// [`Status::InvalidArgument`](crate::Status::InvalidArgument), the message
    /// listing the known ones.
    pub fn preset(name: &str) -> Result<Seq2SeqConfig> {
        let name = CString::new(name).map_err(|_| Error::invalid("the preset name contains a NUL byte"))?;
        let mut config = Seq2SeqConfig::default();
        // SAFETY: NUL-terminated name; config is a valid struct.
        check(unsafe { sys::fwp_seq2seq_config_preset(name.as_ptr(), &mut config.raw) })?;
        Ok(config)
    }

    config_field!(
        /// The shared vocabulary V >= 3 of source and target (no default: must be set).
        vocab_size, get_vocab_size: i64);
    config_field!(
        /// Padding id, in [0, V), not bos or eos (default 1, fairseq's).
        pad_id, get_pad_id: i32);
    config_field!(
        /// Begin-of-sentence id, fed first to the decoder (default 0).
        bos_id, get_bos_id: i32);
    config_field!(
        /// End-of-sentence id (default 2).
        eos_id, get_eos_id: i32);
    config_field!(
        /// Encoder layers, in [1, 1024] (default 6).
        encoder_layers, get_encoder_layers: i64);
    config_field!(
        /// Decoder layers, in [1, 1024] (default 6).
        decoder_layers, get_decoder_layers: i64);
    config_field!(
        /// Inner width of the feed-forward blocks (default 4096).
        d_ff, get_d_ff: i64);
    config_field!(
        /// Dropout in training mode, in [0, 1) (default 0.3).
        dropout, get_dropout: f32);
    config_field!(
        /// Label smoothing epsilon, in [0, 1) (default 0.1).
        label_smoothing, get_label_smoothing: f32);
    config_flag!(
        /// One table for source and target embeddings and the output (default true, the paper).
        tie_embeddings, get_tie_embeddings);
    config_enum!(
        /// The positional encoding (default sinusoidal, fairseq's).
        position, get_position: PositionEncoding);
    config_flag!(
        /// Pre-LayerNorm with a final LayerNorm after each stack (default false: post-LN, the paper).
        pre_norm, get_pre_norm);
    config_field!(
        /// Standard deviation of the embedding, FFN and untied output weights (default 0.02).
        init_std, get_init_std: f32);
    config_field!(
        /// Seed of the parameters, dropout masks and FAVOR+ redraws; 0 (default)
        /// draws it from the context's generator. Not stored in checkpoints.
        seed, get_seed: u64);

    /// Sets the pad, bos and eos ids from those of the data (e.g.
    /// [`pair_special_ids`](crate::pair_special_ids) or [`PairInfo`](crate::PairInfo)).
    pub fn special_ids(self, ids: SpecialIds) -> Self {
        self.pad_id(ids.pad).bos_id(ids.bos).eos_id(ids.eos)
    }

    /// The encoder self-attention (non-causal; see `fwp/seq2seq.h` for the
    /// fields it uses).
    pub fn encoder_attention(mut self, attention: LayerConfig) -> Self {
        self.raw.encoder_attention = attention.raw;
        self
    }

    /// The encoder self-attention settings.
    pub fn get_encoder_attention(&self) -> LayerConfig {
        LayerConfig { raw: self.raw.encoder_attention }
    }

    /// The decoder self-attention (causal; any layer config, the delta rule included).
    pub fn decoder_attention(mut self, attention: LayerConfig) -> Self {
        self.raw.decoder_attention = attention.raw;
        self
    }

    /// The decoder self-attention settings.
    pub fn get_decoder_attention(&self) -> LayerConfig {
        LayerConfig { raw: self.raw.decoder_attention }
    }

    /// The decoder-encoder (cross) attention (non-causal).
    pub fn cross_attention(mut self, attention: LayerConfig) -> Self {
        self.raw.cross_attention = attention.raw;
        self
    }

    /// The cross-attention settings.
    pub fn get_cross_attention(&self) -> LayerConfig {
        LayerConfig { raw: self.raw.cross_attention }
    }

    /// Changes all three attentions with `f` (each from its current settings),
    /// e.g. to set the model's width or the feature map everywhere.
    pub fn map_attentions(self, f: impl Fn(LayerConfig) -> LayerConfig) -> Self {
        let (e, d, c) =
            (f(self.get_encoder_attention()), f(self.get_decoder_attention()), f(self.get_cross_attention()));
        self.encoder_attention(e).decoder_attention(d).cross_attention(c)
    }

    /// The model's width (the encoder attention's d_model; all three must agree).
    pub fn get_d_model(&self) -> i64 {
        self.raw.encoder_attention.d_model
    }

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_seq2seq_config {
        &self.raw
    }
}

impl fmt::Debug for Seq2SeqConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seq2SeqConfig")
            .field("vocab_size", &self.raw.vocab_size)
            .field("pad_id", &self.raw.pad_id)
            .field("bos_id", &self.raw.bos_id)
            .field("eos_id", &self.raw.eos_id)
            .field("encoder_layers", &self.raw.encoder_layers)
            .field("decoder_layers", &self.raw.decoder_layers)
            .field("d_ff", &self.raw.d_ff)
            .field("dropout", &self.raw.dropout)
            .field("label_smoothing", &self.raw.label_smoothing)
            .field("tie_embeddings", &self.get_tie_embeddings())
            .field("position", &self.get_position())
            .field("pre_norm", &self.get_pre_norm())
            .field("init_std", &self.raw.init_std)
            .field("seed", &self.raw.seed)
            .field("encoder_attention", &self.get_encoder_attention())
            .field("decoder_attention", &self.get_decoder_attention())
            .field("cross_attention", &self.get_cross_attention())
            .finish()
    }
}

rust_enum! {
    /// When a beam search stops working on a sentence.
    BeamStop: fwp_beam_stop {
        /// fairseq's rule: as soon as beam_size hypotheses have finished (the default).
        Finished = FWP_BEAM_STOP_FINISHED,
        /// When no open hypothesis can still beat the best finished one.
        NoBetter = FWP_BEAM_STOP_NO_BETTER,
    }
}

/// How [`Seq2SeqModel::translate`] searches, starting from the library's
/// defaults (`fwp_seq2seq_search_config_init`: beam 4, length penalty 1,
/// at most 1.2 n + 10 tokens, at least 1, fairseq's stopping rule).
///
/// ```
/// use fwp::SearchConfig;
/// let search = SearchConfig::default().beam_size(5).max_len_a(0.0).max_len_b(20.0);
/// assert_eq!(search.get_beam_size(), 5);
/// assert_eq!(search.max_output_length(7), 20);
/// assert_eq!(SearchConfig::greedy().get_beam_size(), 1);
/// ```
#[derive(Clone, Copy)]
pub struct SearchConfig {
    raw: sys::fwp_seq2seq_search_config,
}

impl Default for SearchConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_seq2seq_search_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_seq2seq_search_config_init(raw.as_mut_ptr()) };
        SearchConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl SearchConfig {
    /// Greedy decoding: the defaults with a beam of 1.
    pub fn greedy() -> SearchConfig {
        SearchConfig::default().beam_size(1)
    }

    config_field!(
        /// Beam size >= 1 (default 4); 1 is greedy decoding.
        beam_size, get_beam_size: i64);
    config_field!(
        /// Finished hypotheses score log p / length^length_penalty, eos counted (default 1).
        length_penalty, get_length_penalty: f32);
    config_field!(
        /// Outputs have at most floor(max_len_a * n + max_len_b) tokens, n the
        /// source length with its eos; finite and >= 0 (default 1.2).
        max_len_a, get_max_len_a: f32);
    config_field!(
        /// See `max_len_a`; finite (default 10).
        max_len_b, get_max_len_b: f32);
    config_field!(
        /// Tokens before eos at least (default 1).
        min_length, get_min_length: i64);
    config_enum!(
        /// The stopping rule (default [`BeamStop::Finished`]).
        stop, get_stop: BeamStop);

    /// The length limit of a source of `source_length` positions (its eos
    /// included), floor(max_len_a * n + max_len_b), computed as the library
    /// does; negative limits read as 0.
    pub fn max_output_length(&self, source_length: usize) -> usize {
        let limit = (self.raw.max_len_a as f64 * source_length as f64 + self.raw.max_len_b as f64).floor();
        if limit.is_finite() && limit > 0.0 {
            limit as usize
        } else {
            0
        }
    }

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_seq2seq_search_config {
        &self.raw
    }
}

impl fmt::Debug for SearchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchConfig")
            .field("beam_size", &self.raw.beam_size)
            .field("length_penalty", &self.raw.length_penalty)
            .field("max_len_a", &self.raw.max_len_a)
            .field("max_len_b", &self.raw.max_len_b)
            .field("min_length", &self.raw.min_length)
            .field("stop", &self.get_stop())
            .finish()
    }
}

/// What [`Seq2SeqModel::forward`] and [`Seq2SeqModel::evaluate`] return:
/// sums over the scored target tokens (natural log).
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Seq2SeqLoss {
    /// The label-smoothed loss summed over the scored tokens.
    pub loss_sum: f64,
    /// -log p(target) summed over them (no smoothing).
    pub nll_sum: f64,
    /// Scored target tokens (not padding).
    pub tokens: usize,
}

impl Seq2SeqLoss {
    /// The mean label-smoothed loss per token: what [`Model::backward`] differentiates.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.tokens as f64
    }

    /// The mean NLL per token.
    pub fn mean_nll(&self) -> f64 {
        self.nll_sum / self.tokens as f64
    }

    /// exp(mean NLL).
    pub fn perplexity(&self) -> f64 {
        self.mean_nll().exp()
    }
}

/// The result of [`Seq2SeqModel::translate`]: the best hypothesis of each
/// sentence (without bos, pad and the final eos) and its score,
/// log p / length^length_penalty (`-inf` when the search found none).
#[derive(Clone, PartialEq, Debug)]
pub struct Translations {
    /// One token list per source sentence, in order.
    pub tokens: Vec<Vec<i32>>,
    /// One score per source sentence.
    pub scores: Vec<f32>,
}

/// The paper's encoder-decoder translation model (section 6.2): fairseq's
/// Transformer with the attention of each of its three kinds chosen
/// separately (linear attention by default), tied embeddings over one shared
/// vocabulary, and the label-smoothed cross-entropy loss.
///
/// Training takes the padded batches of a [`PairData`](crate::PairData)
/// source ([`PairBatch`]); translation runs the encoder once and decodes
/// incrementally with a beam search. The generic operations (parameters,
/// backward, training mode, checkpoints, optimizers) come from the [`Model`]
/// trait.
///
/// Any call that runs the network replaces the activations a pending
/// [`Model::backward`] would use; only [`Seq2SeqModel::forward`] leaves new ones.
///
/// ```
/// use fwp::{Context, Model, SearchConfig, Seq2SeqConfig, Seq2SeqModel};
/// let ctx = Context::cpu()?;
/// let config = Seq2SeqConfig::default().vocab_size(12).encoder_layers(1).decoder_layers(1).d_ff(16)
///     .map_attentions(|a| a.d_model(8).num_heads(2).d_head(4));
/// let mut model = Seq2SeqModel::new(&ctx, &config)?;
/// // Sources without eos (the model's ids: bos 0, pad 1, eos 2 by default).
/// let out = model.translate(&[vec![5, 6, 7], vec![8]], &SearchConfig::greedy())?;
/// assert_eq!(out.tokens.len(), 2);
/// assert!(out.tokens.iter().all(|t| t.iter().all(|&id| id > 2 && id < 12)));
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct Seq2SeqModel {
    handle: Handle,
    vocab_size: usize,
    special: SpecialIds,
}

impl Seq2SeqModel {
    /// Creates a translation model with freshly initialised parameters.
    pub fn new(ctx: &Context, config: &Seq2SeqConfig) -> Result<Seq2SeqModel> {
        let mut out = ptr::null_mut();
        // SAFETY: valid context and config; out receives an owned handle.
        check(unsafe { sys::fwp_seq2seq_create(ctx.as_raw(), &config.raw, &mut out) })?;
        Seq2SeqModel::from_handle(Handle::new(out, ctx))
    }

    /// Creates a translation model from the configuration and parameters
    /// stored in a checkpoint. A checkpoint of another kind of model fails
    /// with [`Status::Format`](crate::Status::Format).
    pub fn load(ctx: &Context, path: impl AsRef<Path>) -> Result<Seq2SeqModel> {
        match AnyModel::load(ctx, path.as_ref())? {
            AnyModel::Seq2Seq(model) => Ok(model),
            other => Err(Error::new(
                Status::Format,
                format!(
                    "{} holds a model of kind {:?}, not a translation model",
                    path.as_ref().display(),
                    other.kind()
                ),
            )),
        }
    }

    /// Wraps a handle the caller has checked to be of kind seq2seq.
    pub(crate) fn from_handle(handle: Handle) -> Result<Seq2SeqModel> {
        let mut model = Seq2SeqModel { handle, vocab_size: 0, special: SpecialIds { pad: 0, bos: 0, eos: 0, unk: -1 } };
        let config = model.config()?;
        model.vocab_size = to_usize(config.get_vocab_size(), "vocab_size")?;
        // The model knows no unk id; -1 says so.
        model.special =
            SpecialIds { pad: config.get_pad_id(), bos: config.get_bos_id(), eos: config.get_eos_id(), unk: -1 };
        Ok(model)
    }

    /// The settings the model was created with (a loaded model reports seed 0).
    pub fn config(&self) -> Result<Seq2SeqConfig> {
        let mut config = Seq2SeqConfig::default();
        // SAFETY: struct_size was set by init; valid handle.
        check(unsafe { sys::fwp_seq2seq_get_config(self.as_raw(), &mut config.raw) })?;
        Ok(config)
    }

    /// V, the shared vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The model's pad, bos and eos ids (`unk` is -1: the model has none).
    pub fn special_ids(&self) -> SpecialIds {
        self.special
    }

    /// Checks every array of a batch against its shape before C reads it.
    fn raw_batch(batch: &PairBatch) -> Result<sys::fwp_seq2seq_batch> {
        let shape = batch.shape;
        let (b, s, t) = (shape.batch_size, shape.source_length, shape.target_length);
        check_len(batch.source.len(), product(&[b, s], "B * S")?, "source", "batch_size * source_length")?;
        check_len(batch.source_lengths.len(), b, "source_lengths", "batch_size")?;
        let n = product(&[b, t], "B * T")?;
        check_len(batch.target_input.len(), n, "target_input", "batch_size * target_length")?;
        check_len(batch.target_output.len(), n, "target_output", "batch_size * target_length")?;
        check_len(batch.target_lengths.len(), b, "target_lengths", "batch_size")?;
        Ok(sys::fwp_seq2seq_batch {
            source: batch.source.as_ptr(),
            source_lengths: batch.source_lengths.as_ptr(),
            target_input: batch.target_input.as_ptr(),
            target_output: batch.target_output.as_ptr(),
            target_lengths: batch.target_lengths.as_ptr(),
            batch: to_i64(b, "batch_size")?,
            source_length: to_i64(s, "source_length")?,
            target_length: to_i64(t, "target_length")?,
        })
    }

    fn run(
        &mut self,
        batch: &PairBatch,
        f: unsafe extern "C" fn(
            *mut sys::fwp_model,
            *const sys::fwp_seq2seq_batch,
            *mut sys::fwp_seq2seq_loss,
        ) -> sys::fwp_status,
    ) -> Result<Seq2SeqLoss> {
        let raw = Seq2SeqModel::raw_batch(batch)?;
        let mut loss = sys::fwp_seq2seq_loss { loss_sum: 0.0, nll_sum: 0.0, tokens: 0 };
        // SAFETY: the batch's arrays hold the sizes its shape says (checked
        // above) and outlive the call; valid handle and output pointer.
        check(unsafe { f(self.as_raw(), &raw, &mut loss) })?;
        Ok(Seq2SeqLoss { loss_sum: loss.loss_sum, nll_sum: loss.nll_sum, tokens: to_usize(loss.tokens, "tokens")? })
    }

    /// Training forward pass of a padded batch (training mode: dropout on);
    /// [`Model::backward`] then adds the gradients of the mean label-smoothed
    /// loss, `loss_sum / tokens`. Ids and lengths are checked before anything runs.
    pub fn forward(&mut self, batch: &PairBatch) -> Result<Seq2SeqLoss> {
        self.run(batch, sys::fwp_seq2seq_forward)
    }

    /// Scores a padded batch in evaluation mode (no dropout), leaving nothing
    /// for a backward; the training flag is unchanged.
    pub fn evaluate(&mut self, batch: &PairBatch) -> Result<Seq2SeqLoss> {
        self.run(batch, sys::fwp_seq2seq_evaluate)
    }

    /// Translates source sentences given as token ids without eos (as
    /// [`PairData::pair`](crate::PairData::pair) returns them): they are
    /// padded into one batch (each with the model's eos, then pad) and
    /// translated together. Empty sentences are refused.
    pub fn translate<S: AsRef<[i32]>>(&mut self, sources: &[S], search: &SearchConfig) -> Result<Translations> {
        if sources.is_empty() {
            return Err(Error::invalid("translate: no source sentences"));
        }
        let mut length = 0usize;
        for (i, s) in sources.iter().enumerate() {
            if s.as_ref().is_empty() {
                return Err(Error::invalid(format!("translate: source sentence {i} is empty")));
            }
            length = length.max(s.as_ref().len() + 1);
        }
        let mut padded = vec![self.special.pad; product(&[sources.len(), length], "batch * source_length")?];
        let mut lengths = Vec::with_capacity(sources.len());
        for (row, s) in padded.chunks_exact_mut(length).zip(sources) {
            let s = s.as_ref();
            row[..s.len()].copy_from_slice(s);
            row[s.len()] = self.special.eos;
            lengths.push(i32::try_from(s.len() + 1).map_err(|_| Error::invalid("a source sentence is too long"))?);
        }
        self.translate_padded(&padded, &lengths, sources.len(), length, search)
    }

    /// Translates a padded batch as `fwp_seq2seq_translate` takes it:
    /// `source` is `[batch][source_length]`, each row x_1..x_n eos then pad,
    /// and `source_lengths[b]` = n + 1. The output capacity is sized from the
    /// search's length limit.
    pub fn translate_padded(
        &mut self,
        source: &[i32],
        source_lengths: &[i32],
        batch: usize,
        source_length: usize,
        search: &SearchConfig,
    ) -> Result<Translations> {
        check_len(
            source.len(),
            product(&[batch, source_length], "batch * source_length")?,
            "source",
            "batch * source_length",
        )?;
        check_len(source_lengths.len(), batch, "source_lengths", "batch")?;
        // The longest output any row may get; the library checks each row's own.
        let capacity = source_lengths
            .iter()
            .map(|&n| search.max_output_length(usize::try_from(n).unwrap_or(0)))
            .max()
            .unwrap_or(0)
            .max(1);
        let mut output = vec![0i32; product(&[batch, capacity], "batch * capacity")?];
        let mut output_lengths = vec![0i64; batch];
        let mut scores = vec![0f32; batch];
        // SAFETY: source holds batch * source_length ids and source_lengths
        // batch values (checked above); output holds batch * capacity ids,
        // output_lengths and scores batch values each; valid handle and config.
        check(unsafe {
            sys::fwp_seq2seq_translate(
                self.as_raw(),
                source.as_ptr(),
                source_lengths.as_ptr(),
                to_i64(batch, "batch")?,
                to_i64(source_length, "source_length")?,
                &search.raw,
                output.as_mut_ptr(),
                to_i64(capacity, "capacity")?,
                output_lengths.as_mut_ptr(),
                scores.as_mut_ptr(),
            )
        })?;
        let mut tokens = Vec::with_capacity(batch);
        for (row, &n) in output.chunks_exact(capacity).zip(&output_lengths) {
            let n = to_usize(n, "output_length")?;
            if n > capacity {
                return Err(Error::new(Status::Internal, format!("libfwp wrote {n} tokens into a row of {capacity}")));
            }
            tokens.push(row[..n].to_vec());
        }
        Ok(Translations { tokens, scores })
    }
}

impl sealed::Sealed for Seq2SeqModel {}
impl Model for Seq2SeqModel {
    fn as_raw(&self) -> *mut sys::fwp_model {
        self.handle.raw.as_ptr()
    }
}

impl fmt::Debug for Seq2SeqModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seq2SeqModel").field("config", &self.config().ok()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_means() {
        let loss = Seq2SeqLoss { loss_sum: 3.0, nll_sum: 2.0 * std::f64::consts::LN_2, tokens: 2 };
        assert!((loss.mean_loss() - 1.5).abs() < 1e-12);
        assert!((loss.perplexity() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn output_length_limit_matches_the_formula() {
        let search = SearchConfig::default();
        // floor(1.2 * 5 + 10) = 16; computed in double from the float fields, as the library does.
        assert_eq!(search.max_output_length(5), 16);
        assert_eq!(search.max_len_a(0.0).max_len_b(-3.0).max_output_length(4), 0);
    }
}
