//! Models: complete networks with a loss.
//!
//! Every kind of model is a type of its own ([`RetrievalModel`],
//! [`LanguageModel`](crate::LanguageModel), [`Seq2SeqModel`](crate::Seq2SeqModel)) with its own constructor, config and
//! forward pass; what all kinds share (parameters, gradients, backward,
//! training mode, checkpoints, optimizers) is the [`Model`] trait. A
//! checkpoint of unknown kind loads as an [`AnyModel`] to match on.

use std::ffi::CString;
use std::fmt;
use std::path::Path;
use std::ptr::{self, NonNull};

use fwp_sys as sys;

use crate::context::{Context, Logger};
use crate::data::{DataSource, RetrievalBatch};
use crate::error::{check, check_len, product, to_usize, Error, Result, Status};
use crate::layer::{config_enum, config_field, config_flag, rust_enum, FeatureMap, UpdateRule};
use crate::lm::LanguageModel;
use crate::params::{ParamInfo, MODEL_PARAMS};
use crate::seq2seq::Seq2SeqModel;

rust_enum! {
    /// The kind of a model.
    ModelKind: fwp_model_kind {
        /// The paper's synthetic associative-retrieval model (section 6.1).
        Retrieval = FWP_MODEL_RETRIEVAL,
        /// The word-level language model (section 6.3, [`LanguageModel`](crate::LanguageModel)).
        Language = FWP_MODEL_LANGUAGE,
        /// The encoder-decoder translation model (section 6.2, [`Seq2SeqModel`](crate::Seq2SeqModel)).
        Seq2Seq = FWP_MODEL_SEQ2SEQ,
    }
}

/// Settings of the retrieval model, starting from the library's defaults
/// (`fwp_retrieval_config_init`): setting 1, S = 20, d_head 64, DPFP (nu = 1),
/// delta rule with sum normalisation.
///
/// ```
/// let config = fwp::RetrievalConfig::default().num_keys(10);
/// assert_eq!(config.get_num_keys(), 10);
/// assert_eq!(config.get_setting(), 1);
/// ```
#[derive(Clone, Copy)]
pub struct RetrievalConfig {
    raw: sys::fwp_retrieval_config,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_retrieval_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_retrieval_config_init(raw.as_mut_ptr()) };
        RetrievalConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl RetrievalConfig {
    config_field!(
        /// 1 (capacity: L = S pairs without replacement) or 2 (update: trained on L = 2 S pairs with
        /// replacement; any L is accepted, the paper evaluates on S); default 1.
        setting, get_setting: i32);
    config_field!(
        /// S, the size of the key and of the value vocabulary (default 20).
        num_keys, get_num_keys: i64);
    config_field!(
        /// Width of k and q before phi (default 64).
        d_head, get_d_head: i64);
    config_enum!(
        /// The feature map (default DPFP).
        feature_map, get_feature_map: FeatureMap);
    config_field!(
        /// DPFP order nu (default 1).
        dpfp_nu, get_dpfp_nu: i64);
    config_field!(
        /// FAVOR+ random features m (default 64).
        favor_features, get_favor_features: i64);
    config_flag!(
        /// FAVOR+: redraw features at every training forward (default true).
        favor_redraw, get_favor_redraw);
    config_enum!(
        /// The update rule (default delta).
        update_rule, get_update_rule: UpdateRule);
    config_flag!(
        /// Sum-normalise phi (default true, the paper's delta-rule setup).
        sum_normalize, get_sum_normalize);
    config_flag!(
        /// Attention normalisation (default false; the paper's sum-rule setup uses it).
        attn_normalize, get_attn_normalize);
    config_field!(
        /// Epsilon of the normalisations (default 1e-6).
        norm_eps, get_norm_eps: f32);

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_retrieval_config {
        &self.raw
    }
}

impl fmt::Debug for RetrievalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetrievalConfig")
            .field("setting", &self.raw.setting)
            .field("num_keys", &self.raw.num_keys)
            .field("d_head", &self.raw.d_head)
            .field("feature_map", &self.get_feature_map())
            .field("dpfp_nu", &self.raw.dpfp_nu)
            .field("favor_features", &self.raw.favor_features)
            .field("favor_redraw", &self.get_favor_redraw())
            .field("update_rule", &self.get_update_rule())
            .field("sum_normalize", &self.get_sum_normalize())
            .field("attn_normalize", &self.get_attn_normalize())
            .field("norm_eps", &self.raw.norm_eps)
            .finish()
    }
}

/// Converts a path to the NUL-terminated string the C API takes.
pub(crate) fn path_cstring(path: &Path) -> Result<CString> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path
        .to_str()
        .ok_or_else(|| Error::invalid(format!("path {} is not valid Unicode", path.display())))?
        .as_bytes()
        .to_vec();
    CString::new(bytes).map_err(|_| Error::invalid(format!("path {} contains a NUL byte", path.display())))
}

/// Owns one `fwp_model` handle (of any kind) and releases it on drop; the
/// model types wrap it.
pub(crate) struct Handle {
    pub(crate) raw: NonNull<sys::fwp_model>,
    _logger: Logger,
}

// SAFETY: distinct handles may be used from distinct threads; mutation needs `&mut`.
unsafe impl Send for Handle {}

impl Handle {
    pub(crate) fn new(out: *mut sys::fwp_model, ctx: &Context) -> Handle {
        Handle { raw: NonNull::new(out).expect("libfwp returned FWP_OK and a NULL model"), _logger: ctx.logger() }
    }

    fn kind(&self) -> ModelKind {
        kind_of(self.raw.as_ptr())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once; no optimizer can
        // outlive it (an Optimizer borrows its model).
        unsafe { sys::fwp_model_destroy(self.raw.as_ptr()) };
    }
}

fn kind_of(raw: *mut sys::fwp_model) -> ModelKind {
    let mut kind = sys::FWP_MODEL_RETRIEVAL;
    // SAFETY: valid handle and output pointer; the call cannot fail then.
    check(unsafe { sys::fwp_model_get_kind(raw, &mut kind) }).expect("fwp_model_get_kind");
    ModelKind::from_raw(kind)
}

pub(crate) mod sealed {
    /// Keeps [`Model`](super::Model) implemented by this crate's model types only.
    pub trait Sealed {}
}

/// What every kind of model shares: parameters, gradients, backward, training
/// mode and checkpoints. Implemented by [`RetrievalModel`],
/// [`LanguageModel`](crate::LanguageModel), [`Seq2SeqModel`](crate::Seq2SeqModel),
/// [`AnyModel`] and [`OtherModel`]; an
/// [`Optimizer`](crate::Optimizer) trains any of them.
///
/// The forward pass is not here: each kind takes its own inputs (e.g.
/// [`RetrievalModel::forward`]).
///
/// ```
/// use fwp::{Context, Model, RetrievalConfig, RetrievalModel};
/// fn trainable_size(model: &impl Model) -> fwp::Result<usize> {
///     Ok(model.params()?.iter().filter(|p| p.trainable).map(|p| p.numel).sum())
/// }
/// let model = RetrievalModel::new(&Context::cpu()?, &RetrievalConfig::default().num_keys(8).d_head(16))?;
/// assert!(trainable_size(&model)? > 0);
/// # Ok::<(), fwp::Error>(())
/// ```
pub trait Model: sealed::Sealed {
    /// The raw handle, for use with `fwp-sys`. It stays owned by this object.
    fn as_raw(&self) -> *mut sys::fwp_model;

    /// The kind of the model, as the library reports it.
    fn kind(&self) -> ModelKind {
        kind_of(self.as_raw())
    }

    /// Switches between training (`true`, the default) and evaluation mode.
    fn set_training(&mut self, training: bool) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_model_set_training(self.as_raw(), training as i32) })
    }

    /// Backward pass of the last forward: adds dLoss/dparams to the gradients.
    /// Fails with [`Status::BadState`](crate::Status::BadState) without a forward since the last backward.
    fn backward(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_model_backward(self.as_raw()) })
    }

    /// Sets all gradients to zero.
    fn zero_grad(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_model_zero_grad(self.as_raw()) })
    }

    /// The number of parameter tensors of the model.
    fn num_params(&self) -> usize {
        MODEL_PARAMS.num_params(self.as_raw())
    }

    /// Describes parameter number `index` of the model.
    fn param_info(&self, index: usize) -> Result<ParamInfo> {
        MODEL_PARAMS.param_info(self.as_raw(), index)
    }

    /// Describes every parameter of the model, in index order.
    fn params(&self) -> Result<Vec<ParamInfo>> {
        MODEL_PARAMS.params(self.as_raw())
    }

    /// The index of the model's parameter called `name`.
    fn param_index(&self, name: &str) -> Result<usize> {
        MODEL_PARAMS.param_index(self.as_raw(), name)
    }

    /// Copies the values of parameter `index` of the model (row-major).
    fn param(&self, index: usize) -> Result<Vec<f32>> {
        MODEL_PARAMS.param(self.as_raw(), index)
    }

    /// Overwrites parameter `index` of the model; `data` must hold numel finite floats.
    fn set_param(&mut self, index: usize, data: &[f32]) -> Result<()> {
        MODEL_PARAMS.set_param(self.as_raw(), index, data)
    }

    /// Copies the accumulated gradient of parameter `index` of the model.
    fn grad(&self, index: usize) -> Result<Vec<f32>> {
        MODEL_PARAMS.grad(self.as_raw(), index)
    }

    /// Copies the values of the model's parameter called `name`.
    fn param_by_name(&self, name: &str) -> Result<Vec<f32>> {
        self.param(self.param_index(name)?)
    }

    /// Saves the model (and the position of a data source of any kind, to
    /// resume from, and a `user_metadata` string) to a safetensors checkpoint.
    /// To save an optimizer too, use [`Optimizer::save_checkpoint`](crate::Optimizer::save_checkpoint).
    fn save_checkpoint(
        &self,
        path: impl AsRef<Path>,
        data: Option<&dyn DataSource>,
        user_metadata: Option<&str>,
    ) -> Result<()>
    where
        Self: Sized,
    {
        save(path.as_ref(), self.as_raw(), ptr::null(), data, ptr::null(), user_metadata)
    }

    /// Loads a checkpoint into this model (and `data`) whose kind and
    /// configuration match the file; either everything is loaded or nothing is
    /// changed. An optimizer stored in the file is skipped.
    fn load_checkpoint(&mut self, path: impl AsRef<Path>, data: Option<&mut dyn DataSource>) -> Result<()>
    where
        Self: Sized,
    {
        load(path.as_ref(), self.as_raw(), ptr::null_mut(), data, ptr::null_mut())
    }
}

/// The paper's associative-retrieval model (section 6.1): reads S (key, value)
/// pairs through one fast-weight memory and answers queries; the loss is the
/// mean over the queries of 0.5 ||onehot(target) - y||^2.
///
/// The generic operations (parameters, backward, checkpoints) come from the
/// [`Model`] trait.
///
/// ```
/// use fwp::{Context, Model, RetrievalConfig, RetrievalData, RetrievalModel};
/// let ctx = Context::cpu()?;
/// let mut model = RetrievalModel::new(&ctx, &RetrievalConfig::default().num_keys(8).d_head(16))?;
/// let mut data = RetrievalData::new(1, 8, 1)?;
/// let batch = data.sample(4, 1)?;
/// let loss = model.forward(&batch)?;
/// assert!(loss.is_finite());
/// model.backward()?;
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct RetrievalModel {
    handle: Handle,
    num_keys: usize,
}

impl RetrievalModel {
    /// Creates the retrieval model with freshly initialised parameters (seeded through the context).
    pub fn new(ctx: &Context, config: &RetrievalConfig) -> Result<RetrievalModel> {
        let mut out = ptr::null_mut();
        // SAFETY: valid context and config; out receives an owned handle.
        check(unsafe { sys::fwp_model_create_retrieval(ctx.as_raw(), &config.raw, &mut out) })?;
        RetrievalModel::from_handle(Handle::new(out, ctx))
    }

    /// Creates a retrieval model from the configuration and parameters stored
    /// in a checkpoint. A checkpoint of another kind of model fails with
    /// [`Status::Format`](crate::Status::Format) (load it with [`AnyModel::load`]).
    pub fn load(ctx: &Context, path: impl AsRef<Path>) -> Result<RetrievalModel> {
        match AnyModel::load(ctx, path.as_ref())? {
            AnyModel::Retrieval(model) => Ok(model),
            other => Err(Error::new(
                Status::Format,
                format!("{} holds a model of kind {:?}, not a retrieval model", path.as_ref().display(), other.kind()),
            )),
        }
    }

    /// Wraps a handle the caller has checked to be of kind retrieval.
    fn from_handle(handle: Handle) -> Result<RetrievalModel> {
        let mut model = RetrievalModel { handle, num_keys: 0 };
        model.num_keys = to_usize(model.config().get_num_keys(), "num_keys")?;
        Ok(model)
    }

    /// The settings the model was created with.
    pub fn config(&self) -> RetrievalConfig {
        let mut config = RetrievalConfig::default();
        // SAFETY: struct_size was set by init; the handle is a retrieval model,
        // so the call cannot fail.
        check(unsafe { sys::fwp_model_get_retrieval_config(self.handle.raw.as_ptr(), &mut config.raw) })
            .expect("fwp_model_get_retrieval_config of a retrieval model");
        config
    }

    /// S, the size of the key and of the value vocabulary.
    pub fn num_keys(&self) -> usize {
        self.num_keys
    }

    /// Forward pass and loss: the mean over the non-padding queries of
    /// 0.5 ||onehot(target) - y||^2. Keeps what [`Model::backward`] needs.
    pub fn forward(&mut self, batch: &RetrievalBatch) -> Result<f32> {
        let raw = batch.as_raw();
        let mut loss = 0f32;
        // SAFETY: the batch's arrays have the lengths its sizes say (checked on construction).
        check(unsafe { sys::fwp_retrieval_forward(self.as_raw(), &raw, &mut loss, ptr::null_mut(), 0) })?;
        Ok(loss)
    }

    /// Like [`RetrievalModel::forward`], also returning the readouts y,
    /// `[B][Q][S]` (zeros for padding queries).
    pub fn forward_with_outputs(&mut self, batch: &RetrievalBatch) -> Result<(f32, Vec<f32>)> {
        let n = product(&[batch.batch_size(), batch.num_queries(), self.num_keys], "B * Q * S")?;
        let mut outputs = vec![0f32; n];
        check_len(outputs.len(), n, "outputs", "B * Q * S")?;
        let raw = batch.as_raw();
        let mut loss = 0f32;
        // SAFETY: outputs holds B*Q*S floats.
        check(unsafe { sys::fwp_retrieval_forward(self.as_raw(), &raw, &mut loss, outputs.as_mut_ptr(), n as i64) })?;
        Ok((loss, outputs))
    }
}

impl sealed::Sealed for RetrievalModel {}
impl Model for RetrievalModel {
    fn as_raw(&self) -> *mut sys::fwp_model {
        self.handle.raw.as_ptr()
    }
}

impl fmt::Debug for RetrievalModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetrievalModel").field("config", &self.config()).finish()
    }
}

/// A model of a kind these bindings have no type for (e.g. loaded by a newer
/// libfwp). The generic operations of [`Model`] work; its forward pass is
/// reachable only through [`sys`](crate::sys).
pub struct OtherModel {
    handle: Handle,
}

impl sealed::Sealed for OtherModel {}
impl Model for OtherModel {
    fn as_raw(&self) -> *mut sys::fwp_model {
        self.handle.raw.as_ptr()
    }
}

impl fmt::Debug for OtherModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtherModel").field("kind", &self.handle.kind()).finish()
    }
}

/// A model of any kind, as loaded from a checkpoint: match on it to reach the
/// kind's own type, or use the generic operations of [`Model`] directly.
///
/// ```no_run
/// use fwp::{AnyModel, Context, Model};
/// let ctx = Context::cpu()?;
/// match AnyModel::load(&ctx, "model.safetensors")? {
///     AnyModel::Retrieval(model) => println!("retrieval model, S = {}", model.num_keys()),
///     AnyModel::Language(model) => println!("language model, {} words", model.vocab_size()),
///     AnyModel::Seq2Seq(model) => println!("translation model, {} ids", model.vocab_size()),
///     other => println!("a {:?} model with {} parameter tensors", other.kind(), other.num_params()),
/// }
/// # Ok::<(), fwp::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyModel {
    /// The associative-retrieval model.
    Retrieval(RetrievalModel),
    /// The language model.
    Language(LanguageModel),
    /// The translation model.
    Seq2Seq(Seq2SeqModel),
    /// A kind without a type in these bindings.
    Other(OtherModel),
}

impl AnyModel {
    /// Creates a model of the kind, configuration and parameters stored in a checkpoint.
    pub fn load(ctx: &Context, path: impl AsRef<Path>) -> Result<AnyModel> {
        let path = path_cstring(path.as_ref())?;
        let mut out = ptr::null_mut();
        // SAFETY: valid context and NUL-terminated path; out receives an owned handle.
        check(unsafe { sys::fwp_model_load(ctx.as_raw(), path.as_ptr(), &mut out) })?;
        let handle = Handle::new(out, ctx);
        Ok(match handle.kind() {
            ModelKind::Retrieval => AnyModel::Retrieval(RetrievalModel::from_handle(handle)?),
            ModelKind::Language => AnyModel::Language(LanguageModel::from_handle(handle)?),
            ModelKind::Seq2Seq => AnyModel::Seq2Seq(Seq2SeqModel::from_handle(handle)?),
            _ => AnyModel::Other(OtherModel { handle }),
        })
    }

    /// The retrieval model, if this is one.
    pub fn into_retrieval(self) -> Option<RetrievalModel> {
        match self {
            AnyModel::Retrieval(model) => Some(model),
            _ => None,
        }
    }

    /// The language model, if this is one.
    pub fn into_language(self) -> Option<LanguageModel> {
        match self {
            AnyModel::Language(model) => Some(model),
            _ => None,
        }
    }

    /// The translation model, if this is one.
    pub fn into_seq2seq(self) -> Option<Seq2SeqModel> {
        match self {
            AnyModel::Seq2Seq(model) => Some(model),
            _ => None,
        }
    }
}

impl From<Seq2SeqModel> for AnyModel {
    fn from(model: Seq2SeqModel) -> AnyModel {
        AnyModel::Seq2Seq(model)
    }
}

impl From<LanguageModel> for AnyModel {
    fn from(model: LanguageModel) -> AnyModel {
        AnyModel::Language(model)
    }
}

impl From<RetrievalModel> for AnyModel {
    fn from(model: RetrievalModel) -> AnyModel {
        AnyModel::Retrieval(model)
    }
}

impl sealed::Sealed for AnyModel {}
impl Model for AnyModel {
    fn as_raw(&self) -> *mut sys::fwp_model {
        match self {
            AnyModel::Retrieval(model) => model.as_raw(),
            AnyModel::Language(model) => model.as_raw(),
            AnyModel::Seq2Seq(model) => model.as_raw(),
            AnyModel::Other(model) => model.as_raw(),
        }
    }
}

pub(crate) fn save(
    path: &Path,
    model: *mut sys::fwp_model,
    opt: *const sys::fwp_optimizer,
    data: Option<&dyn DataSource>,
    state: *const sys::fwp_state,
    user_metadata: Option<&str>,
) -> Result<()> {
    let path = path_cstring(path)?;
    let meta = user_metadata
        .map(|m| CString::new(m).map_err(|_| Error::invalid("user_metadata contains a NUL byte")))
        .transpose()?;
    // SAFETY: valid handles or NULL, NUL-terminated strings.
    check(unsafe {
        sys::fwp_checkpoint_save_with_state(
            path.as_ptr(),
            model,
            opt,
            data.map_or(ptr::null(), |d| d.as_raw_data()),
            state,
            meta.as_ref().map_or(ptr::null(), |m| m.as_ptr()),
        )
    })
}

pub(crate) fn load(
    path: &Path,
    model: *mut sys::fwp_model,
    opt: *mut sys::fwp_optimizer,
    data: Option<&mut dyn DataSource>,
    state: *mut sys::fwp_state,
) -> Result<()> {
    let path = path_cstring(path)?;
    // SAFETY: valid handles or NULL, NUL-terminated path.
    check(unsafe {
        sys::fwp_checkpoint_load_with_state(
            path.as_ptr(),
            model,
            opt,
            data.map_or(ptr::null_mut(), |d| d.as_raw_data()),
            state,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_nul_bytes_are_rejected() {
        assert_eq!(path_cstring(Path::new("a\0b")).unwrap_err().status(), crate::Status::InvalidArgument);
        assert_eq!(path_cstring(Path::new("dir/model.safetensors")).unwrap().to_bytes(), b"dir/model.safetensors");
    }
}
