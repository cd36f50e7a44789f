//! The word-level language model of the paper (section 6.3): config and
//! presets, the training forward pass, the paper's three evaluation modes,
//! step-by-step decoding through a [`State`], sampling and generation.

use std::ffi::CString;
use std::fmt;
use std::path::Path;
use std::ptr;

use fwp_sys as sys;

use crate::context::Context;
use crate::error::{check, check_len, product, to_i64, to_usize, Error, Result, Status};
use crate::layer::{config_enum, config_field, config_flag, rust_enum, LayerConfig};
use crate::model::{sealed, AnyModel, Handle, Model};
use crate::state::State;

rust_enum! {
    /// The positional encoding of the language model.
    PositionEncoding: fwp_lm_position {
        /// The authors' sinusoids, added to the scaled embedding (the default).
        Sinusoidal = FWP_LM_POSITION_SINUSOIDAL,
        /// No positions (the paper's carried-memory model).
        None = FWP_LM_POSITION_NONE,
    }
}

rust_enum! {
    /// How [`LanguageModel::evaluate`] scores a token stream.
    EvalMode: fwp_lm_eval_mode {
        /// Consecutive independent segments of `length` tokens, each from zero.
        Segments = FWP_LM_EVAL_SEGMENTS,
        /// The authors' sliding window: windows of `length` tokens; the first
        /// scores every position, each later one (shifted by one) only its last.
        Sliding = FWP_LM_EVAL_SLIDING,
        /// RNN mode: segments of `length` with the state carried through the
        /// whole stream. Fast-weight layers only (softmax layers:
        /// [`Status::Unsupported`](crate::Status::Unsupported)).
        Carry = FWP_LM_EVAL_CARRY,
    }
}

/// Settings of a [`LanguageModel`], starting from the library's defaults
/// (`fwp_lm_config_init`: the paper's small model, 16 layers, d_model 128,
/// 8 heads of 16, d_ff 2048, linear attention (elu + 1) with the delta rule,
/// dropout 0.1) or from a named [preset](LmConfig::preset). The vocabulary
/// size has no default and must be set.
///
/// The attention of every layer is a [`LayerConfig`]; change it with
/// [`LmConfig::attention`] or [`LmConfig::map_attention`].
///
/// ```
/// use fwp::{FeatureMap, LmConfig};
/// let config = LmConfig::preset("cpu-small")?
///     .vocab_size(1000)
///     .num_layers(2)
///     .map_attention(|a| a.feature_map(FeatureMap::Dpfp));
/// assert_eq!(config.get_vocab_size(), 1000);
/// assert_eq!(config.get_attention().get_d_model(), 128);
/// assert_eq!(config.get_attention().get_feature_map(), FeatureMap::Dpfp);
/// assert!(LmConfig::preset("no-such-preset").is_err());
/// # Ok::<(), fwp::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct LmConfig {
    raw: sys::fwp_lm_config,
}

impl Default for LmConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_lm_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_lm_config_init(raw.as_mut_ptr()) };
        LmConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl LmConfig {
    /// The named preset: `"paper-small"`, `"paper-medium"` or `"cpu-small"`
    /// (see `fwp_lm_config_preset`); the vocabulary size is left 0 to set.
    /// An unknown name fails with [`Status::InvalidArgument`](crate::Status::InvalidArgument),
    /// the message listing the known ones.
    pub fn preset(name: &str) -> Result<LmConfig> {
        let name = CString::new(name).map_err(|_| Error::invalid("the preset name contains a NUL byte"))?;
        let mut config = LmConfig::default();
        // SAFETY: NUL-terminated name; config is a valid struct.
        check(unsafe { sys::fwp_lm_config_preset(name.as_ptr(), &mut config.raw) })?;
        Ok(config)
    }

    config_field!(
        /// Number of token ids V >= 2 (no default: must be set).
        vocab_size, get_vocab_size: i64);
    config_field!(
        /// Number of blocks (default 16).
        num_layers, get_num_layers: i64);
    config_field!(
        /// Inner width of the feed-forward block (default 2048).
        d_ff, get_d_ff: i64);
    config_field!(
        /// Dropout in training mode, in [0, 1) (default 0.1).
        dropout, get_dropout: f32);
    config_field!(
        /// Dropout on attention weights: must be 0 (not built in).
        attn_dropout, get_attn_dropout: f32);
    config_enum!(
        /// The positional encoding (default sinusoidal).
        position, get_position: PositionEncoding);
    config_flag!(
        /// Pre-LayerNorm blocks with a final LayerNorm (default false: post-LayerNorm, the paper).
        pre_norm, get_pre_norm);
    config_flag!(
        /// Tie the output layer's weight to the embedding table (default false).
        tie_embeddings, get_tie_embeddings);
    config_field!(
        /// Adaptive embedding divisor (default 1), used with [`LmConfig::cutoffs`].
        div_val, get_div_val: i64);
    config_field!(
        /// Standard deviation of the embedding, feed-forward and output weights (default 0.02).
        init_std, get_init_std: f32);
    config_field!(
        /// Seed of the parameters, dropout masks and FAVOR+ redraws; 0 (default)
        /// draws it from the context's generator. A loaded model reports 0.
        seed, get_seed: u64);

    /// The attention of every layer, as for [`Layer`](crate::Layer): d_model
    /// (the model's width), heads, d_head, feature map (softmax for the
    /// Transformer baseline), update rule, normalisations. `carry_state` must
    /// be false (memory is carried through a [`State`]).
    pub fn attention(mut self, attention: LayerConfig) -> Self {
        self.raw.attention = attention.raw;
        self
    }

    /// The attention settings of every layer.
    pub fn get_attention(&self) -> LayerConfig {
        LayerConfig { raw: self.raw.attention }
    }

    /// Changes the attention settings with `f`, starting from the current ones.
    pub fn map_attention(self, f: impl FnOnce(LayerConfig) -> LayerConfig) -> Self {
        let attention = f(self.get_attention());
        self.attention(attention)
    }

    /// Adaptive input/softmax cutoffs (ascending token ids; empty: a plain
    /// softmax, the default). More than `FWP_LM_MAX_CUTOFFS` fails with
    /// [`Status::InvalidArgument`](crate::Status::InvalidArgument); the values
    /// themselves are checked when the model is created.
    pub fn cutoffs(mut self, cutoffs: &[i64]) -> Result<Self> {
        let max = sys::FWP_LM_MAX_CUTOFFS as usize;
        if cutoffs.len() > max {
            return Err(Error::invalid(format!("cutoffs has {} values, at most {max} are allowed", cutoffs.len())));
        }
        self.raw.cutoffs = [0; sys::FWP_LM_MAX_CUTOFFS as usize];
        self.raw.cutoffs[..cutoffs.len()].copy_from_slice(cutoffs);
        self.raw.num_cutoffs = cutoffs.len() as i64;
        Ok(self)
    }

    /// The adaptive-softmax cutoffs in use (the first `num_cutoffs`).
    pub fn get_cutoffs(&self) -> &[i64] {
        let n = usize::try_from(self.raw.num_cutoffs).unwrap_or(0).min(self.raw.cutoffs.len());
        &self.raw.cutoffs[..n]
    }

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_lm_config {
        &self.raw
    }
}

impl fmt::Debug for LmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LmConfig")
            .field("vocab_size", &self.raw.vocab_size)
            .field("num_layers", &self.raw.num_layers)
            .field("attention", &self.get_attention())
            .field("d_ff", &self.raw.d_ff)
            .field("dropout", &self.raw.dropout)
            .field("attn_dropout", &self.raw.attn_dropout)
            .field("position", &self.get_position())
            .field("pre_norm", &self.get_pre_norm())
            .field("tie_embeddings", &self.get_tie_embeddings())
            .field("cutoffs", &self.get_cutoffs())
            .field("div_val", &self.raw.div_val)
            .field("init_std", &self.raw.init_std)
            .field("seed", &self.raw.seed)
            .finish()
    }
}

/// How a token is picked from log-probabilities, starting from the library's
/// defaults (`fwp_sampler_config_init`): temperature 1, no top-k, no top-p, seed 0.
///
/// ```
/// let sampler = fwp::SamplingConfig::default().temperature(0.8).top_k(40).seed(7);
/// assert_eq!(sampler.get_top_k(), 40);
/// // Greedy: the most likely token, the lowest id among ties.
/// let mut rng = 0u64;
/// assert_eq!(fwp::SamplingConfig::greedy().sample(&[-3.0, -0.1, -2.0], &mut rng)?, 1);
/// # Ok::<(), fwp::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct SamplingConfig {
    raw: sys::fwp_sampler_config,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_sampler_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_sampler_config_init(raw.as_mut_ptr()) };
        SamplingConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl SamplingConfig {
    /// Greedy decoding: temperature 0 (argmax).
    pub fn greedy() -> SamplingConfig {
        SamplingConfig::default().temperature(0.0)
    }

    config_field!(
        /// 0: greedy; > 0: sample from softmax(log_probs / temperature) (default 1).
        temperature, get_temperature: f32);
    config_field!(
        /// Keep only the `top_k` most likely tokens; 0 (default): off.
        top_k, get_top_k: i64);
    config_field!(
        /// Keep the smallest set of most likely tokens whose probability reaches
        /// `top_p`, in (0, 1]; 1 (default): off.
        top_p, get_top_p: f32);
    config_field!(
        /// Seed of [`LanguageModel::generate`]'s generator (default 0).
        seed, get_seed: u64);

    /// Picks a token from `log_probs` (log-probabilities or any logits;
    /// `-inf` excludes a token, NaN and `+inf` are rejected). `rng_state` is
    /// the generator's state: any value to start, advanced by one draw when
    /// sampling (not when greedy).
    pub fn sample(&self, log_probs: &[f32], rng_state: &mut u64) -> Result<i32> {
        let mut token = 0i32;
        // SAFETY: log_probs holds len floats; valid config and output pointers.
        check(unsafe {
            sys::fwp_lm_sample(log_probs.as_ptr(), to_i64(log_probs.len(), "vocab")?, &self.raw, rng_state, &mut token)
        })?;
        Ok(token)
    }

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_sampler_config {
        &self.raw
    }
}

impl fmt::Debug for SamplingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamplingConfig")
            .field("temperature", &self.raw.temperature)
            .field("top_k", &self.raw.top_k)
            .field("top_p", &self.raw.top_p)
            .field("seed", &self.raw.seed)
            .finish()
    }
}

/// The result of [`LanguageModel::evaluate`]: the summed negative
/// log-likelihood (natural log) of the scored tokens.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Evaluation {
    /// The summed NLL of the scored tokens.
    pub total_nll: f64,
    /// The number of scored tokens (every token but the first).
    pub scored: usize,
}

impl Evaluation {
    /// The mean NLL per scored token.
    pub fn mean_nll(&self) -> f64 {
        self.total_nll / self.scored as f64
    }

    /// exp(mean NLL).
    pub fn perplexity(&self) -> f64 {
        self.mean_nll().exp()
    }
}

/// The word-level language model of the paper (section 6.3): token embeddings
/// with sinusoidal positions, blocks of fast-weight (or softmax) attention and
/// a feed-forward layer, a softmax output and the cross-entropy loss.
///
/// Token ids are `i32` in `0..vocab_size`; batches are row-major
/// `[batch][length]` slices. The generic operations (parameters, backward,
/// training mode, checkpoints, optimizers) come from the [`Model`] trait. A
/// [`State`] made by [`LanguageModel::new_state`] carries the memory across
/// segments ([`LanguageModel::forward_with_state`]) and decodes token by token
/// ([`LanguageModel::step`], [`LanguageModel::generate`]).
///
/// Any call that runs the network replaces the activations a pending
/// [`Model::backward`] would use; only the forward passes leave new ones.
///
/// ```
/// use fwp::{Context, LanguageModel, LmConfig, Model, SamplingConfig};
/// let ctx = Context::cpu()?;
/// let config = LmConfig::default().vocab_size(20).num_layers(1).d_ff(32)
///     .map_attention(|a| a.d_model(16).num_heads(2).d_head(8));
/// let mut model = LanguageModel::new(&ctx, &config)?;
/// let inputs = [1, 2, 3, 4, 5, 6];
/// let targets = [2, 3, 4, 5, 6, 7];
/// let loss = model.forward(&inputs, &targets, 2, 3)?;
/// assert!(loss > 0.0);
/// model.backward()?;
/// let mut state = model.new_state(1)?;
/// let tokens = model.generate(&mut state, &[1, 2], 4, &SamplingConfig::greedy(), &[])?;
/// assert!(tokens.len() <= 4);
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct LanguageModel {
    handle: Handle,
    vocab_size: usize,
}

impl LanguageModel {
    /// Creates a language model with freshly initialised parameters.
    pub fn new(ctx: &Context, config: &LmConfig) -> Result<LanguageModel> {
        let mut out = ptr::null_mut();
        // SAFETY: valid context and config; out receives an owned handle.
        check(unsafe { sys::fwp_lm_create(ctx.as_raw(), &config.raw, &mut out) })?;
        LanguageModel::from_handle(Handle::new(out, ctx))
    }

    /// Creates a language model from the configuration and parameters stored
    /// in a checkpoint. A checkpoint of another kind of model fails with
    /// [`Status::Format`](crate::Status::Format).
    pub fn load(ctx: &Context, path: impl AsRef<Path>) -> Result<LanguageModel> {
        match AnyModel::load(ctx, path.as_ref())? {
            AnyModel::Language(model) => Ok(model),
            other => Err(Error::new(
                Status::Format,
                format!("{} holds a model of kind {:?}, not a language model", path.as_ref().display(), other.kind()),
            )),
        }
    }

    /// Wraps a handle the caller has checked to be of kind language.
    pub(crate) fn from_handle(handle: Handle) -> Result<LanguageModel> {
        let mut model = LanguageModel { handle, vocab_size: 0 };
        model.vocab_size = to_usize(model.config()?.get_vocab_size(), "vocab_size")?;
        Ok(model)
    }

    /// The settings the model was created with (a loaded model reports seed 0).
    pub fn config(&self) -> Result<LmConfig> {
        let mut config = LmConfig::default();
        // SAFETY: struct_size was set by init; valid handle.
        check(unsafe { sys::fwp_lm_get_config(self.as_raw(), &mut config.raw) })?;
        Ok(config)
    }

    /// V, the number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// A zero run state of `batch` sequences for this model (per layer: fast
    /// weights, or a key/value cache for softmax layers).
    pub fn new_state(&self, batch: usize) -> Result<State> {
        State::for_model(self, batch)
    }

    fn check_segments(&self, inputs: &[i32], targets: &[i32], batch: usize, length: usize) -> Result<usize> {
        let n = product(&[batch, length], "batch * length")?;
        check_len(inputs.len(), n, "inputs", "batch * length")?;
        check_len(targets.len(), n, "targets", "batch * length")?;
        Ok(n)
    }

    fn forward_raw(
        &mut self,
        inputs: &[i32],
        targets: &[i32],
        batch: usize,
        length: usize,
        state: Option<&mut State>,
        token_losses: Option<&mut [f32]>,
    ) -> Result<f64> {
        let mut loss = 0f64;
        // SAFETY: inputs/targets (and token_losses) hold batch * length values
        // (checked by the callers); the handles are valid or NULL.
        check(unsafe {
            sys::fwp_lm_forward(
                self.as_raw(),
                inputs.as_ptr(),
                targets.as_ptr(),
                to_i64(batch, "batch")?,
                to_i64(length, "length")?,
                state.map_or(ptr::null_mut(), |s| s.as_raw()),
                &mut loss,
                token_losses.map_or(ptr::null_mut(), |t| t.as_mut_ptr()),
            )
        })?;
        Ok(loss)
    }

    /// Forward pass over `batch` segments of `length` tokens, every one starting
    /// from zero; returns the mean cross-entropy (natural log) over the scored
    /// targets (a negative target is not scored). Keeps what
    /// [`Model::backward`] needs.
    pub fn forward(&mut self, inputs: &[i32], targets: &[i32], batch: usize, length: usize) -> Result<f64> {
        self.check_segments(inputs, targets, batch, length)?;
        self.forward_raw(inputs, targets, batch, length, None, None)
    }

    /// [`LanguageModel::forward`] starting from `state` (batch rows) and leaving
    /// the final state there: the paper's "carry over" training. Gradients do
    /// not flow into earlier segments.
    pub fn forward_with_state(
        &mut self,
        state: &mut State,
        inputs: &[i32],
        targets: &[i32],
        batch: usize,
        length: usize,
    ) -> Result<f64> {
        self.check_segments(inputs, targets, batch, length)?;
        self.forward_raw(inputs, targets, batch, length, Some(state), None)
    }

    /// [`LanguageModel::forward`] (from `state` if given) that also returns
    /// each position's loss, `[batch][length]` (0 where not scored).
    pub fn forward_with_token_losses(
        &mut self,
        state: Option<&mut State>,
        inputs: &[i32],
        targets: &[i32],
        batch: usize,
        length: usize,
    ) -> Result<(f64, Vec<f32>)> {
        let n = self.check_segments(inputs, targets, batch, length)?;
        let mut losses = vec![0f32; n];
        let loss = self.forward_raw(inputs, targets, batch, length, state, Some(&mut losses))?;
        Ok((loss, losses))
    }

    /// Scores a token stream as the paper does (evaluation mode; the training
    /// flag is restored afterwards): the NLL of `tokens[1..]` given their past,
    /// in segments or windows of `length` tokens.
    ///
    /// ```
    /// # use fwp::{Context, EvalMode, LanguageModel, LmConfig};
    /// # let config = LmConfig::default().vocab_size(10).num_layers(1).d_ff(16)
    /// #     .map_attention(|a| a.d_model(8).num_heads(2).d_head(4));
    /// # let mut model = LanguageModel::new(&Context::cpu()?, &config)?;
    /// let tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    /// let eval = model.evaluate(&tokens, EvalMode::Carry, 4)?;
    /// assert_eq!(eval.scored, 8);
    /// assert!(eval.perplexity() > 1.0);
    /// # Ok::<(), fwp::Error>(())
    /// ```
    pub fn evaluate(&mut self, tokens: &[i32], mode: EvalMode, length: usize) -> Result<Evaluation> {
        let (mut total_nll, mut scored) = (0f64, 0i64);
        // SAFETY: tokens holds len ids; valid output pointers.
        check(unsafe {
            sys::fwp_lm_evaluate(
                self.as_raw(),
                tokens.as_ptr(),
                to_i64(tokens.len(), "tokens.len()")?,
                mode.raw(),
                to_i64(length, "length")?,
                &mut total_nll,
                &mut scored,
            )
        })?;
        Ok(Evaluation { total_nll, scored: to_usize(scored, "scored")? })
    }

    /// Checks that `tokens` has one id per row of `state` (the C call takes
    /// the batch from the state, so a shorter slice must never reach it).
    fn check_step(&self, state: &State, tokens: &[i32]) -> Result<usize> {
        let batch = state.batch()?;
        check_len(tokens.len(), batch, "tokens", "the state's batch")?;
        Ok(batch)
    }

    /// Feeds one token per row of `state` (evaluation mode) and returns the
    /// log-probabilities of the next one, `[batch][vocab_size]`; the state
    /// advances by one token.
    pub fn step(&mut self, state: &mut State, tokens: &[i32]) -> Result<Vec<f32>> {
        let batch = self.check_step(state, tokens)?;
        let mut log_probs = vec![0f32; product(&[batch, self.vocab_size], "batch * vocab_size")?];
        // SAFETY: tokens holds batch ids and log_probs batch * V floats; valid handles.
        check(unsafe { sys::fwp_lm_step(self.as_raw(), state.as_raw(), tokens.as_ptr(), log_probs.as_mut_ptr()) })?;
        Ok(log_probs)
    }

    /// Like [`LanguageModel::step`] without the log-probabilities (e.g. while
    /// feeding a prompt): only the state advances.
    pub fn feed(&mut self, state: &mut State, tokens: &[i32]) -> Result<()> {
        self.check_step(state, tokens)?;
        // SAFETY: tokens holds batch ids; NULL log_probs is allowed; valid handles.
        check(unsafe { sys::fwp_lm_step(self.as_raw(), state.as_raw(), tokens.as_ptr(), ptr::null_mut()) })
    }

    /// Continues `prompt` (at least one token): feeds it through `state` (batch
    /// 1, continuing from where it is), then samples up to `max_new_tokens`
    /// tokens with `sampler` (its seed seeds the draws). Stops early at a token
    /// of `stop_tokens`, which is neither returned nor fed. The state is left
    /// having consumed the prompt and the returned tokens.
    pub fn generate(
        &mut self,
        state: &mut State,
        prompt: &[i32],
        max_new_tokens: usize,
        sampler: &SamplingConfig,
        stop_tokens: &[i32],
    ) -> Result<Vec<i32>> {
        let mut out = vec![0i32; max_new_tokens];
        let mut generated = 0i64;
        // SAFETY: prompt and stop_tokens hold their lengths in ids, out holds
        // max_new_tokens (passed as its capacity); valid handles.
        check(unsafe {
            sys::fwp_lm_generate(
                self.as_raw(),
                state.as_raw(),
                prompt.as_ptr(),
                to_i64(prompt.len(), "prompt.len()")?,
                to_i64(max_new_tokens, "max_new_tokens")?,
                &sampler.raw,
                if stop_tokens.is_empty() { ptr::null() } else { stop_tokens.as_ptr() },
                to_i64(stop_tokens.len(), "stop_tokens.len()")?,
                out.as_mut_ptr(),
                to_i64(out.len(), "capacity")?,
                &mut generated,
            )
        })?;
        out.truncate(to_usize(generated, "generated")?.min(max_new_tokens));
        Ok(out)
    }
}

impl sealed::Sealed for LanguageModel {}
impl Model for LanguageModel {
    fn as_raw(&self) -> *mut sys::fwp_model {
        self.handle.raw.as_ptr()
    }
}

impl fmt::Debug for LanguageModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanguageModel").field("config", &self.config().ok()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_are_bounded_and_read_back() {
        let config = LmConfig::default().cutoffs(&[10, 20]).unwrap().div_val(2);
        assert_eq!(config.get_cutoffs(), &[10, 20]);
        assert_eq!(config.get_div_val(), 2);
        assert_eq!(LmConfig::default().cutoffs(&[1; 9]).unwrap_err().status(), Status::InvalidArgument);
        assert!(LmConfig::default().cutoffs(&[]).unwrap().get_cutoffs().is_empty());
    }

    #[test]
    fn evaluation_perplexity() {
        let eval = Evaluation { total_nll: 2.0 * std::f64::consts::LN_2, scored: 2 };
        assert!((eval.perplexity() - 2.0).abs() < 1e-12);
    }
}
