//! The fast-weight attention layer.

use std::fmt;
use std::ptr::{self, NonNull};

use fwp_sys as sys;

use crate::context::{Context, Logger};
use crate::error::{check, check_len, product, to_i64, to_usize, Result};
use crate::params::{ParamInfo, LAYER_PARAMS};

/// Declares a Rust view of a C enum with an `Other` variant for unknown values.
macro_rules! rust_enum {
    ($(#[$meta:meta])* $name:ident : $raw:ident { $($(#[$vmeta:meta])* $variant:ident = $c:ident,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value unknown to these bindings (from a newer libfwp).
            Other(i32),
        }
        impl $name {
            #[allow(dead_code)]
            pub(crate) fn raw(self) -> sys::$raw {
                match self {
                    $($name::$variant => sys::$c,)+
                    $name::Other(v) => sys::$raw(v),
                }
            }
            #[allow(dead_code)]
            pub(crate) fn from_raw(raw: sys::$raw) -> $name {
                match raw {
                    $(sys::$c => $name::$variant,)+
                    other => $name::Other(other.0),
                }
            }
        }
    };
}
pub(crate) use rust_enum;

rust_enum! {
    /// The feature map phi, or softmax attention.
    FeatureMap: fwp_feature_map {
        /// elu(x) + 1; d_dot = d_head ("Linear Transformer").
        Elu = FWP_FEATURE_MAP_ELU,
        /// FAVOR+ positive orthogonal random features; d_dot = 2 m.
        Favor = FWP_FEATURE_MAP_FAVOR,
        /// Deterministic parameter-free projection; d_dot = 2 d_head nu.
        Dpfp = FWP_FEATURE_MAP_DPFP,
        /// No feature map: causal softmax attention (the baseline).
        Softmax = FWP_FEATURE_MAP_SOFTMAX,
    }
}

rust_enum! {
    /// How the fast weights are written.
    UpdateRule: fwp_update_rule {
        /// Sum rule (linear attention): W += v phi(k)^T.
        Sum = FWP_UPDATE_SUM,
        /// Delta rule with a learned beta: W += beta (v - W phi(k)) phi(k)^T.
        Delta = FWP_UPDATE_DELTA,
    }
}

rust_enum! {
    /// Algorithm for the fast-weight recurrence over a sequence (results agree to rounding).
    Algorithm: fwp_algorithm {
        /// Pick the faster for the shape.
        Auto = FWP_ALGORITHM_AUTO,
        /// Step by step, one rank-1 update per token.
        Recurrent = FWP_ALGORITHM_RECURRENT,
        /// Chunkwise parallel.
        Chunked = FWP_ALGORITHM_CHUNKED,
    }
}

/// Settings of a [`Layer`], starting from the library's defaults
/// (`fwp_layer_config_init`): d_model 128, 8 heads of 16, DPFP (nu = 1),
/// delta rule, sum normalisation, no attention normalisation, scaled output,
/// no biases, init std 0.02, automatic algorithm, no state carry.
///
/// ```
/// use fwp::{FeatureMap, LayerConfig, UpdateRule};
/// let config = LayerConfig::default()
///     .d_model(32).num_heads(2).d_head(8)
///     .feature_map(FeatureMap::Elu).update_rule(UpdateRule::Sum);
/// assert_eq!(config.get_d_model(), 32);
/// assert_eq!(LayerConfig::default().get_feature_map(), FeatureMap::Dpfp);
/// ```
#[derive(Clone, Copy)]
pub struct LayerConfig {
    pub(crate) raw: sys::fwp_layer_config,
}

impl Default for LayerConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_layer_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_layer_config_init(raw.as_mut_ptr()) };
        LayerConfig { raw: unsafe { raw.assume_init() } }
    }
}

/// Generates a consuming setter and a getter for a plain config field.
macro_rules! config_field {
    ($(#[$doc:meta])* $field:ident, $getter:ident : $ty:ty) => {
        $(#[$doc])*
        pub fn $field(mut self, value: $ty) -> Self {
            self.raw.$field = value;
            self
        }
        #[doc = concat!("The value of `", stringify!($field), "`.")]
        pub fn $getter(&self) -> $ty {
            self.raw.$field
        }
    };
}
pub(crate) use config_field;

/// Generates a consuming setter and a getter for a 0/1 flag field.
macro_rules! config_flag {
    ($(#[$doc:meta])* $field:ident, $getter:ident) => {
        $(#[$doc])*
        pub fn $field(mut self, value: bool) -> Self {
            self.raw.$field = value as i32;
            self
        }
        #[doc = concat!("Whether `", stringify!($field), "` is set.")]
        pub fn $getter(&self) -> bool {
            self.raw.$field != 0
        }
    };
}
pub(crate) use config_flag;

/// Generates a consuming setter and a getter for an enum field.
macro_rules! config_enum {
    ($(#[$doc:meta])* $field:ident, $getter:ident : $ty:ident) => {
        $(#[$doc])*
        pub fn $field(mut self, value: $ty) -> Self {
            self.raw.$field = value.raw();
            self
        }
        #[doc = concat!("The value of `", stringify!($field), "`.")]
        pub fn $getter(&self) -> $ty {
            $ty::from_raw(self.raw.$field)
        }
    };
}
pub(crate) use config_enum;

impl LayerConfig {
    config_field!(
        /// Input and output width (default 128).
        d_model, get_d_model: i64);
    config_field!(
        /// Number of heads H (default 8).
        num_heads, get_num_heads: i64);
    config_field!(
        /// Width of q, k, v per head (default 16).
        d_head, get_d_head: i64);
    config_enum!(
        /// The feature map (default DPFP).
        feature_map, get_feature_map: FeatureMap);
    config_field!(
        /// DPFP order nu >= 1 (default 1); used only by DPFP.
        dpfp_nu, get_dpfp_nu: i64);
    config_field!(
        /// FAVOR+ random features m >= 1 (default 64); used only by FAVOR+.
        favor_features, get_favor_features: i64);
    config_flag!(
        /// FAVOR+: draw new features at every training forward (default true).
        favor_redraw, get_favor_redraw);
    config_enum!(
        /// The update rule (default delta); must be sum for softmax.
        update_rule, get_update_rule: UpdateRule);
    config_flag!(
        /// phi(x) / (sum phi(x) + norm_eps) (default true); must be false for softmax.
        sum_normalize, get_sum_normalize);
    config_flag!(
        /// Divide o_t by (z_t . phi(q_t) + norm_eps) (default false); must be false for softmax.
        attn_normalize, get_attn_normalize);
    config_field!(
        /// Epsilon of both normalisations (default 1e-6, must be > 0).
        norm_eps, get_norm_eps: f32);
    config_flag!(
        /// Scale fast-weight outputs by 1/sqrt(d_head) (default true).
        scale_output, get_scale_output);
    config_flag!(
        /// Biases on all projections (default false).
        use_bias, get_use_bias);
    config_field!(
        /// Standard deviation of the initial weights (default 0.02).
        init_std, get_init_std: f32);
    config_enum!(
        /// The algorithm of the recurrence (default automatic).
        algorithm, get_algorithm: Algorithm);
    config_field!(
        /// Chunk length of the chunked algorithm; 0 (default) = automatic.
        chunk_size, get_chunk_size: i64);
    config_flag!(
        /// Every forward starts from the layer's state and leaves the final
        /// state there (default false: memory only through [`Layer::set_state`]).
        carry_state, get_carry_state);

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_layer_config {
        &self.raw
    }
}

impl fmt::Debug for LayerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerConfig")
            .field("d_model", &self.raw.d_model)
            .field("num_heads", &self.raw.num_heads)
            .field("d_head", &self.raw.d_head)
            .field("feature_map", &self.get_feature_map())
            .field("dpfp_nu", &self.raw.dpfp_nu)
            .field("favor_features", &self.raw.favor_features)
            .field("favor_redraw", &self.get_favor_redraw())
            .field("update_rule", &self.get_update_rule())
            .field("sum_normalize", &self.get_sum_normalize())
            .field("attn_normalize", &self.get_attn_normalize())
            .field("norm_eps", &self.raw.norm_eps)
            .field("scale_output", &self.get_scale_output())
            .field("use_bias", &self.get_use_bias())
            .field("init_std", &self.raw.init_std)
            .field("algorithm", &self.get_algorithm())
            .field("chunk_size", &self.raw.chunk_size)
            .field("carry_state", &self.get_carry_state())
            .finish()
    }
}

/// A copy in host memory of the fast weights of `batch` rows (a layer's own
/// state, its gradient, or one layer of a [`State`](crate::State)).
///
/// `w` is laid out as `[batch][heads][d_head][d_dot]` and `z` as
/// `[batch][heads][d_dot]`, row-major.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct FastWeights {
    /// Batch rows B (0 when the layer holds no state: all zeros).
    pub batch: usize,
    /// The fast weights W.
    pub w: Vec<f32>,
    /// The normaliser z.
    pub z: Vec<f32>,
}

/// A multi-head fast-weight (or softmax) attention layer with its parameters,
/// gradients and state, for use inside your own training loop.
///
/// Inputs and outputs are row-major `[batch][seq_len][d_model]` slices.
///
/// ```
/// use fwp::{Context, Layer, LayerConfig};
/// let ctx = Context::cpu()?;
/// let mut layer = Layer::new(&ctx, &LayerConfig::default().d_model(16).num_heads(2).d_head(8))?;
/// let (batch, seq_len) = (2, 5);
/// let x = vec![0.1f32; batch * seq_len * 16];
/// let y = layer.forward(&x, batch, seq_len)?;
/// assert_eq!(y.len(), x.len());
/// let dx = layer.backward(&vec![1.0; y.len()], batch, seq_len)?;
/// assert_eq!(dx.len(), x.len());
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct Layer {
    pub(crate) raw: NonNull<sys::fwp_layer>,
    d_model: usize,
    _logger: Logger,
}

// SAFETY: distinct handles may be used from distinct threads; `&mut self` on
// every mutating call and the absence of `Sync` keep one handle on one thread at a time.
unsafe impl Send for Layer {}

impl Layer {
    /// Creates a layer with freshly initialised parameters (seeded through the context).
    pub fn new(ctx: &Context, config: &LayerConfig) -> Result<Layer> {
        let mut out = ptr::null_mut();
        // SAFETY: valid context and config; out receives an owned handle.
        check(unsafe { sys::fwp_layer_create(ctx.as_raw(), &config.raw, &mut out) })?;
        let raw = NonNull::new(out).expect("fwp_layer_create returned FWP_OK and NULL");
        // Owned from here on, so an error below still releases the handle.
        let mut layer = Layer { raw, d_model: 0, _logger: ctx.logger() };
        layer.d_model = to_usize(layer.config()?.get_d_model(), "d_model")?;
        Ok(layer)
    }

    /// The settings the layer was created with.
    pub fn config(&self) -> Result<LayerConfig> {
        let mut config = LayerConfig::default();
        // SAFETY: struct_size was set by init.
        check(unsafe { sys::fwp_layer_get_config(self.raw.as_ptr(), &mut config.raw) })?;
        Ok(config)
    }

    /// The input and output width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// The feature dimension d_dot of phi (0 for softmax attention).
    pub fn feature_dim(&self) -> usize {
        let mut d_dot = 0i64;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_layer_feature_dim(self.raw.as_ptr(), &mut d_dot) }).expect("fwp_layer_feature_dim");
        d_dot as usize
    }

    /// Switches between training (`true`, the default) and evaluation mode
    /// (FAVOR+ then uses its fixed features).
    pub fn set_training(&mut self, training: bool) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_layer_set_training(self.raw.as_ptr(), training as i32) })
    }

    fn sequence_len(&self, batch: usize, seq_len: usize) -> Result<usize> {
        product(&[batch, seq_len, self.d_model], "batch * seq_len * d_model")
    }

    /// Forward pass over `x` (`[batch][seq_len][d_model]`) into `y` (same shape).
    /// Keeps what [`Layer::backward`] needs.
    pub fn forward_into(&mut self, x: &[f32], batch: usize, seq_len: usize, y: &mut [f32]) -> Result<()> {
        let n = self.sequence_len(batch, seq_len)?;
        check_len(x.len(), n, "x", "batch * seq_len * d_model")?;
        check_len(y.len(), n, "y", "batch * seq_len * d_model")?;
        let (b, t) = (to_i64(batch, "batch")?, to_i64(seq_len, "seq_len")?);
        // SAFETY: x and y hold n floats each and cannot overlap (& and &mut).
        check(unsafe { sys::fwp_layer_forward(self.raw.as_ptr(), x.as_ptr(), b, t, y.as_mut_ptr()) })
    }

    /// Forward pass; returns `y` (`[batch][seq_len][d_model]`).
    pub fn forward(&mut self, x: &[f32], batch: usize, seq_len: usize) -> Result<Vec<f32>> {
        let mut y = vec![0f32; self.sequence_len(batch, seq_len)?];
        self.forward_into(x, batch, seq_len, &mut y)?;
        Ok(y)
    }

    /// Backward pass of the last forward: adds the parameter gradients to the
    /// layer's gradients, computes the gradient of the initial state, and writes
    /// dL/dx into `dx` when given. The final state's gradient is taken as zero.
    pub fn backward_into(&mut self, dy: &[f32], batch: usize, seq_len: usize, dx: Option<&mut [f32]>) -> Result<()> {
        let n = self.sequence_len(batch, seq_len)?;
        check_len(dy.len(), n, "dy", "batch * seq_len * d_model")?;
        let dx_ptr = match dx {
            Some(dx) => {
                check_len(dx.len(), n, "dx", "batch * seq_len * d_model")?;
                dx.as_mut_ptr()
            }
            None => ptr::null_mut(),
        };
        let (b, t) = (to_i64(batch, "batch")?, to_i64(seq_len, "seq_len")?);
        // SAFETY: dy holds n floats; dx is NULL or holds n floats.
        check(unsafe { sys::fwp_layer_backward(self.raw.as_ptr(), dy.as_ptr(), b, t, dx_ptr) })
    }

    /// Backward pass of the last forward; returns dL/dx.
    pub fn backward(&mut self, dy: &[f32], batch: usize, seq_len: usize) -> Result<Vec<f32>> {
        let mut dx = vec![0f32; self.sequence_len(batch, seq_len)?];
        self.backward_into(dy, batch, seq_len, Some(&mut dx))?;
        Ok(dx)
    }

    /// Sets all parameter gradients to zero.
    pub fn zero_grad(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_layer_zero_grad(self.raw.as_ptr()) })
    }

    /// The sizes `(w, z)` of the fast-weight state for `batch` rows:
    /// `batch * H * d_head * d_dot` and `batch * H * d_dot`.
    /// Fails with [`Status::Unsupported`](crate::Status::Unsupported) for softmax attention.
    pub fn state_size(&self, batch: usize) -> Result<(usize, usize)> {
        let (mut w, mut z) = (0i64, 0i64);
        // SAFETY: valid handle and output pointers.
        check(unsafe { sys::fwp_layer_state_size(self.raw.as_ptr(), to_i64(batch, "batch")?, &mut w, &mut z) })?;
        Ok((to_usize(w, "w_count")?, to_usize(z, "z_count")?))
    }

    /// Sets the fast-weight state for `batch` rows, the initial state of the
    /// next forward or step; `None` means zeros. Later forwards must use this batch.
    pub fn set_state(&mut self, batch: usize, w: Option<&[f32]>, z: Option<&[f32]>) -> Result<()> {
        let (w_count, z_count) = self.state_size(batch)?;
        if let Some(w) = w {
            check_len(w.len(), w_count, "w", "batch * heads * d_head * d_dot")?;
        }
        if let Some(z) = z {
            check_len(z.len(), z_count, "z", "batch * heads * d_dot")?;
        }
        let w_ptr = w.map_or(ptr::null(), |w| w.as_ptr());
        let z_ptr = z.map_or(ptr::null(), |z| z.as_ptr());
        // SAFETY: the slices hold the counts passed (or are NULL).
        check(unsafe {
            sys::fwp_layer_set_state(
                self.raw.as_ptr(),
                to_i64(batch, "batch")?,
                w_ptr,
                w_count as i64,
                z_ptr,
                z_count as i64,
            )
        })
    }

    /// Copies the fast-weight state out: with `carry_state` (or after
    /// [`Layer::step`]) the final state of the last forward, otherwise the state last set.
    pub fn state(&self) -> Result<FastWeights> {
        let mut batch = 0i64;
        // First ask for the batch only, then copy with the matching sizes.
        // SAFETY: NULL buffers are allowed.
        check(unsafe {
            sys::fwp_layer_get_state(self.raw.as_ptr(), &mut batch, ptr::null_mut(), 0, ptr::null_mut(), 0)
        })?;
        let batch = to_usize(batch, "batch")?;
        if batch == 0 {
            return Ok(FastWeights::default());
        }
        let (w_count, z_count) = self.state_size(batch)?;
        let mut state = FastWeights { batch, w: vec![0f32; w_count], z: vec![0f32; z_count] };
        let mut reported = 0i64;
        // SAFETY: the buffers hold the counts passed.
        check(unsafe {
            sys::fwp_layer_get_state(
                self.raw.as_ptr(),
                &mut reported,
                state.w.as_mut_ptr(),
                w_count as i64,
                state.z.as_mut_ptr(),
                z_count as i64,
            )
        })?;
        Ok(state)
    }

    /// The gradient of the loss with respect to the initial state of the last
    /// backward, as [`FastWeights`] for `batch` rows (the batch of that backward).
    /// Fails with [`Status::BadState`](crate::Status::BadState) before any backward.
    pub fn state_grad(&self, batch: usize) -> Result<FastWeights> {
        let (w_count, z_count) = self.state_size(batch)?;
        let mut grad = FastWeights { batch, w: vec![0f32; w_count], z: vec![0f32; z_count] };
        // SAFETY: the buffers hold the counts passed.
        check(unsafe {
            sys::fwp_layer_get_state_grad(
                self.raw.as_ptr(),
                grad.w.as_mut_ptr(),
                w_count as i64,
                grad.z.as_mut_ptr(),
                z_count as i64,
            )
        })?;
        Ok(grad)
    }

    /// Forgets the state (fast weights, normaliser, softmax key/value cache).
    pub fn reset_state(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_layer_reset_state(self.raw.as_ptr()) })
    }

    /// Recurrent inference: consumes one token per batch row (`x`:
    /// `[batch][d_model]`) and updates the state; returns `y` (`[batch][d_model]`).
    /// T steps give the outputs of one forward over T tokens with `carry_state`.
    pub fn step(&mut self, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        let n = product(&[batch, self.d_model], "batch * d_model")?;
        check_len(x.len(), n, "x", "batch * d_model")?;
        let mut y = vec![0f32; n];
        // SAFETY: x and y hold n floats.
        check(unsafe { sys::fwp_layer_step(self.raw.as_ptr(), x.as_ptr(), to_i64(batch, "batch")?, y.as_mut_ptr()) })?;
        Ok(y)
    }

    /// The raw handle, for use with `fwp-sys`. It stays owned by this `Layer`.
    pub fn as_raw(&self) -> *mut sys::fwp_layer {
        self.raw.as_ptr()
    }
}

/// Parameters of the layer (the same operations as on every [`Model`](crate::Model)).
impl Layer {
    /// The number of parameter tensors of the layer.
    pub fn num_params(&self) -> usize {
        LAYER_PARAMS.num_params(self.raw.as_ptr())
    }

    /// Describes parameter number `index` of the layer.
    pub fn param_info(&self, index: usize) -> Result<ParamInfo> {
        LAYER_PARAMS.param_info(self.raw.as_ptr(), index)
    }

    /// Describes every parameter of the layer, in index order.
    pub fn params(&self) -> Result<Vec<ParamInfo>> {
        LAYER_PARAMS.params(self.raw.as_ptr())
    }

    /// The index of the layer's parameter called `name`.
    pub fn param_index(&self, name: &str) -> Result<usize> {
        LAYER_PARAMS.param_index(self.raw.as_ptr(), name)
    }

    /// Copies the values of parameter `index` of the layer (row-major).
    pub fn param(&self, index: usize) -> Result<Vec<f32>> {
        LAYER_PARAMS.param(self.raw.as_ptr(), index)
    }

    /// Overwrites parameter `index` of the layer; `data` must hold numel finite floats.
    pub fn set_param(&mut self, index: usize, data: &[f32]) -> Result<()> {
        LAYER_PARAMS.set_param(self.raw.as_ptr(), index, data)
    }

    /// Copies the accumulated gradient of parameter `index` of the layer.
    pub fn grad(&self, index: usize) -> Result<Vec<f32>> {
        LAYER_PARAMS.grad(self.raw.as_ptr(), index)
    }

    /// Copies the values of the layer's parameter called `name`.
    pub fn param_by_name(&self, name: &str) -> Result<Vec<f32>> {
        self.param(self.param_index(name)?)
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once; no optimizer can
        // outlive it (an Optimizer borrows its layer).
        unsafe { sys::fwp_layer_destroy(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layer").field("config", &self.config().ok()).finish()
    }
}
