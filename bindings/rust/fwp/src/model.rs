//! Models: complete networks with a loss (the paper's retrieval model).

use std::ffi::CString;
use std::fmt;
use std::path::Path;
use std::ptr::{self, NonNull};

use fwp_sys as sys;

use crate::context::{Context, Logger};
use crate::data::{RetrievalBatch, RetrievalData};
use crate::error::{check, check_len, product, Error, Result};
use crate::layer::{config_enum, config_field, config_flag, rust_enum, FeatureMap, UpdateRule};
use crate::params::param_methods;

rust_enum! {
    /// The kind of a model.
    ModelKind: fwp_model_kind {
        /// The paper's synthetic associative-retrieval model (section 6.1).
        Retrieval = FWP_MODEL_RETRIEVAL,
        /// Reserved: language model (section 6.3).
        Language = FWP_MODEL_LANGUAGE,
        /// Reserved: encoder-decoder translation model (section 6.2).
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
        /// 1 (capacity: L = S pairs without replacement) or 2 (update: L = 2 S pairs with replacement); default 1.
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

/// A network with its parameters, gradients and loss (for now the paper's
/// associative-retrieval model).
///
/// ```
/// use fwp::{Context, Model, RetrievalConfig, RetrievalData};
/// let ctx = Context::cpu()?;
/// let mut model = Model::retrieval(&ctx, &RetrievalConfig::default().num_keys(8).d_head(16))?;
/// let mut data = RetrievalData::new(1, 8, 1)?;
/// let batch = data.sample(4, 1)?;
/// let loss = model.retrieval_forward(&batch)?;
/// assert!(loss.is_finite());
/// model.backward()?;
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct Model {
    pub(crate) raw: NonNull<sys::fwp_model>,
    _logger: Logger,
}

// SAFETY: distinct handles may be used from distinct threads; mutation needs `&mut`.
unsafe impl Send for Model {}

impl Model {
    fn from_raw(out: *mut sys::fwp_model, logger: Logger) -> Model {
        Model { raw: NonNull::new(out).expect("libfwp returned FWP_OK and a NULL model"), _logger: logger }
    }

    /// Creates the retrieval model with freshly initialised parameters.
    pub fn retrieval(ctx: &Context, config: &RetrievalConfig) -> Result<Model> {
        let mut out = ptr::null_mut();
        // SAFETY: valid context and config.
        check(unsafe { sys::fwp_model_create_retrieval(ctx.as_raw(), &config.raw, &mut out) })?;
        Ok(Model::from_raw(out, ctx.logger()))
    }

    /// Creates a model from the configuration and parameters stored in a checkpoint.
    pub fn load(ctx: &Context, path: impl AsRef<Path>) -> Result<Model> {
        let path = path_cstring(path.as_ref())?;
        let mut out = ptr::null_mut();
        // SAFETY: valid context and NUL-terminated path.
        check(unsafe { sys::fwp_model_load(ctx.as_raw(), path.as_ptr(), &mut out) })?;
        Ok(Model::from_raw(out, ctx.logger()))
    }

    /// The kind of the model.
    pub fn kind(&self) -> ModelKind {
        let mut kind = sys::FWP_MODEL_RETRIEVAL;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_model_get_kind(self.raw.as_ptr(), &mut kind) }).expect("fwp_model_get_kind");
        ModelKind::from_raw(kind)
    }

    /// The settings of a retrieval model ([`Status::InvalidArgument`](crate::Status::InvalidArgument)
    /// for another kind of model).
    pub fn retrieval_config(&self) -> Result<RetrievalConfig> {
        let mut config = RetrievalConfig::default();
        // SAFETY: struct_size was set by init.
        check(unsafe { sys::fwp_model_get_retrieval_config(self.raw.as_ptr(), &mut config.raw) })?;
        Ok(config)
    }

    /// Switches between training (`true`, the default) and evaluation mode.
    pub fn set_training(&mut self, training: bool) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_model_set_training(self.raw.as_ptr(), training as i32) })
    }

    /// Forward pass and loss of the retrieval model: the mean over the
    /// non-padding queries of 0.5 ||onehot(target) - y||^2. Keeps what
    /// [`Model::backward`] needs.
    pub fn retrieval_forward(&mut self, batch: &RetrievalBatch) -> Result<f32> {
        let raw = batch.as_raw();
        let mut loss = 0f32;
        // SAFETY: the batch's arrays have the lengths its sizes say (checked on construction).
        check(unsafe { sys::fwp_retrieval_forward(self.raw.as_ptr(), &raw, &mut loss, ptr::null_mut(), 0) })?;
        Ok(loss)
    }

    /// Like [`Model::retrieval_forward`], also returning the readouts y,
    /// `[B][Q][S]` (zeros for padding queries).
    pub fn retrieval_forward_with_outputs(&mut self, batch: &RetrievalBatch) -> Result<(f32, Vec<f32>)> {
        let num_keys = usize::try_from(self.retrieval_config()?.get_num_keys())
            .map_err(|_| Error::invalid("num_keys is negative"))?;
        let n = product(&[batch.batch_size(), batch.num_queries(), num_keys], "B * Q * S")?;
        let mut outputs = vec![0f32; n];
        check_len(outputs.len(), n, "outputs", "B * Q * S")?;
        let raw = batch.as_raw();
        let mut loss = 0f32;
        // SAFETY: outputs holds B*Q*S floats.
        check(unsafe {
            sys::fwp_retrieval_forward(self.raw.as_ptr(), &raw, &mut loss, outputs.as_mut_ptr(), n as i64)
        })?;
        Ok((loss, outputs))
    }

    /// Backward pass of the last forward: adds dLoss/dparams to the gradients.
    /// Fails with [`Status::BadState`](crate::Status::BadState) without a forward since the last backward.
    pub fn backward(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_model_backward(self.raw.as_ptr()) })
    }

    /// Sets all gradients to zero.
    pub fn zero_grad(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_model_zero_grad(self.raw.as_ptr()) })
    }

    /// Saves the model (and the state of `data`, to resume from, and a
    /// `user_metadata` string) to a safetensors checkpoint. To save an
    /// optimizer too, use [`Optimizer::save_checkpoint`](crate::Optimizer::save_checkpoint).
    pub fn save_checkpoint(
        &self,
        path: impl AsRef<Path>,
        data: Option<&RetrievalData>,
        user_metadata: Option<&str>,
    ) -> Result<()> {
        save(path.as_ref(), self, ptr::null(), data, user_metadata)
    }

    /// Loads a checkpoint into this model (and `data`) whose configuration
    /// matches the file; either everything is loaded or nothing is changed.
    /// An optimizer stored in the file is skipped.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>, data: Option<&mut RetrievalData>) -> Result<()> {
        load(path.as_ref(), self, ptr::null_mut(), data)
    }

    /// The raw handle, for use with `fwp-sys`. It stays owned by this `Model`.
    pub fn as_raw(&self) -> *mut sys::fwp_model {
        self.raw.as_ptr()
    }
}

pub(crate) fn save(
    path: &Path,
    model: &Model,
    opt: *const sys::fwp_optimizer,
    data: Option<&RetrievalData>,
    user_metadata: Option<&str>,
) -> Result<()> {
    let path = path_cstring(path)?;
    let meta = user_metadata
        .map(|m| CString::new(m).map_err(|_| Error::invalid("user_metadata contains a NUL byte")))
        .transpose()?;
    // SAFETY: valid handles or NULL, NUL-terminated strings.
    check(unsafe {
        sys::fwp_checkpoint_save(
            path.as_ptr(),
            model.raw.as_ptr(),
            opt,
            data.map_or(ptr::null(), |d| d.raw.as_ptr()),
            meta.as_ref().map_or(ptr::null(), |m| m.as_ptr()),
        )
    })
}

pub(crate) fn load(
    path: &Path,
    model: &mut Model,
    opt: *mut sys::fwp_optimizer,
    data: Option<&mut RetrievalData>,
) -> Result<()> {
    let path = path_cstring(path)?;
    // SAFETY: valid handles or NULL, NUL-terminated path.
    check(unsafe {
        sys::fwp_checkpoint_load(
            path.as_ptr(),
            model.raw.as_ptr(),
            opt,
            data.map_or(ptr::null_mut(), |d| d.raw.as_ptr()),
        )
    })
}

param_methods!(
    Model,
    "model",
    sys::fwp_model_num_params,
    sys::fwp_model_param_info,
    sys::fwp_model_param_index,
    sys::fwp_model_get_param,
    sys::fwp_model_set_param,
    sys::fwp_model_get_grad
);

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once; no optimizer can
        // outlive it (an Optimizer borrows its model).
        unsafe { sys::fwp_model_destroy(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model").field("kind", &self.kind()).finish()
    }
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
