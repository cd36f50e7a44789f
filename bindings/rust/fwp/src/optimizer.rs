//! Optimizers over the trainable parameters of a model or layer.

use std::fmt;
use std::path::Path;
use std::ptr::{self, NonNull};

use fwp_sys as sys;

use crate::data::DataSource;
use crate::error::{check, Result};
use crate::layer::{config_enum, config_field, rust_enum, Layer};
use crate::lm::LanguageModel;
use crate::model::{self, AnyModel, Model, OtherModel, RetrievalModel};
use crate::seq2seq::Seq2SeqModel;
use crate::state::State;

rust_enum! {
    /// Optimization algorithm.
    OptimizerKind: fwp_optimizer_kind {
        /// SGD with optional momentum and L2 weight decay.
        Sgd = FWP_OPTIMIZER_SGD,
        /// Adam with bias correction; weight decay added to the gradient.
        Adam = FWP_OPTIMIZER_ADAM,
        /// Adam with decoupled weight decay.
        AdamW = FWP_OPTIMIZER_ADAMW,
    }
}

/// How the learning rate changes with the number of steps taken, n (the
/// step about to run is step n + 1). `base` is the configured learning rate
/// ([`OptimizerConfig::learning_rate`], [`Optimizer::set_learning_rate`]).
/// Every schedule starts with a linear warm-up: `base * n / warmup_steps`
/// while `n < warmup_steps`, so the very first step uses 0 when
/// `warmup_steps > 0` (as fairseq and Hugging Face schedules do).
/// The exact formulas are in `fwp/optimizer.h`.
#[derive(Clone, Copy, PartialEq, Debug)]
#[non_exhaustive]
pub enum LrSchedule {
    /// `base` after the warm-up.
    Constant {
        /// Steps of linear warm-up (0 = none).
        warmup_steps: u64,
    },
    /// After the warm-up, a half cosine from `base` down to `min_learning_rate`,
    /// reached when `n = total_steps`; the floor from then on.
    WarmupCosine {
        /// Steps of linear warm-up (0 = none).
        warmup_steps: u64,
        /// Where the decay ends (warm-up included); must exceed `warmup_steps`.
        total_steps: u64,
        /// The floor, in `[0, base]`.
        min_learning_rate: f32,
    },
    /// After the warm-up, `base * sqrt(warmup_steps / n)`, never below
    /// `min_learning_rate` (fairseq's `inverse_sqrt`; with
    /// `base = d_model^-0.5 * warmup_steps^-0.5` the schedule of "Attention is
    /// all you need").
    InverseSqrt {
        /// Steps of linear warm-up (>= 1).
        warmup_steps: u64,
        /// The floor, in `[0, base]`.
        min_learning_rate: f32,
    },
    /// A schedule unknown to these bindings (from a newer libfwp).
    Other(i32),
}

/// Settings of an [`Optimizer`], starting from the library's defaults
/// (`fwp_optimizer_config_init`): Adam, learning rate 1e-3, betas 0.9 / 0.999,
/// eps 1e-8, no weight decay, no momentum, no gradient clipping, a constant
/// learning rate.
///
/// ```
/// use fwp::{LrSchedule, OptimizerConfig, OptimizerKind};
/// let config = OptimizerConfig::default().kind(OptimizerKind::Sgd).learning_rate(0.1);
/// assert_eq!(config.get_learning_rate(), 0.1);
/// assert_eq!(OptimizerConfig::default().get_kind(), OptimizerKind::Adam);
/// let cosine = LrSchedule::WarmupCosine { warmup_steps: 100, total_steps: 1000, min_learning_rate: 1e-5 };
/// assert_eq!(OptimizerConfig::default().schedule(cosine).get_schedule(), cosine);
/// assert_eq!(OptimizerConfig::default().get_schedule(), LrSchedule::Constant { warmup_steps: 0 });
/// ```
#[derive(Clone, Copy)]
pub struct OptimizerConfig {
    raw: sys::fwp_optimizer_config,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_optimizer_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_optimizer_config_init(raw.as_mut_ptr()) };
        OptimizerConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl OptimizerConfig {
    config_enum!(
        /// The algorithm (default Adam).
        kind, get_kind: OptimizerKind);
    config_field!(
        /// The learning rate (default 1e-3).
        learning_rate, get_learning_rate: f32);
    config_field!(
        /// Adam's beta1 (default 0.9).
        beta1, get_beta1: f32);
    config_field!(
        /// Adam's beta2 (default 0.999).
        beta2, get_beta2: f32);
    config_field!(
        /// Adam's epsilon (default 1e-8).
        eps, get_eps: f32);
    config_field!(
        /// Weight decay (default 0).
        weight_decay, get_weight_decay: f32);
    config_field!(
        /// SGD momentum (default 0).
        momentum, get_momentum: f32);
    config_field!(
        /// Clip the global gradient L2 norm to this before each step; 0 (default) = off.
        clip_grad_norm, get_clip_grad_norm: f32);

    /// The learning-rate schedule (default: constant, no warm-up).
    pub fn schedule(mut self, schedule: LrSchedule) -> Self {
        // Step counts beyond i64 are passed on saturated, for the library to reject with its message.
        let steps = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (kind, warmup, total, floor) = match schedule {
            LrSchedule::Constant { warmup_steps } => (sys::FWP_LR_CONSTANT, steps(warmup_steps), 0, 0.0),
            LrSchedule::WarmupCosine { warmup_steps, total_steps, min_learning_rate } => {
                (sys::FWP_LR_WARMUP_COSINE, steps(warmup_steps), steps(total_steps), min_learning_rate)
            }
            LrSchedule::InverseSqrt { warmup_steps, min_learning_rate } => {
                (sys::FWP_LR_INVERSE_SQRT, steps(warmup_steps), 0, min_learning_rate)
            }
            LrSchedule::Other(v) => {
                (sys::fwp_lr_schedule(v), self.raw.warmup_steps, self.raw.total_steps, self.raw.min_learning_rate)
            }
        };
        self.raw.lr_schedule = kind;
        self.raw.warmup_steps = warmup;
        self.raw.total_steps = total;
        self.raw.min_learning_rate = floor;
        self
    }

    /// The learning-rate schedule.
    pub fn get_schedule(&self) -> LrSchedule {
        let warmup_steps = self.raw.warmup_steps.max(0) as u64;
        match self.raw.lr_schedule {
            sys::FWP_LR_CONSTANT => LrSchedule::Constant { warmup_steps },
            sys::FWP_LR_WARMUP_COSINE => LrSchedule::WarmupCosine {
                warmup_steps,
                total_steps: self.raw.total_steps.max(0) as u64,
                min_learning_rate: self.raw.min_learning_rate,
            },
            sys::FWP_LR_INVERSE_SQRT => {
                LrSchedule::InverseSqrt { warmup_steps, min_learning_rate: self.raw.min_learning_rate }
            }
            other => LrSchedule::Other(other.0),
        }
    }

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_optimizer_config {
        &self.raw
    }
}

impl fmt::Debug for OptimizerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OptimizerConfig")
            .field("kind", &self.get_kind())
            .field("learning_rate", &self.raw.learning_rate)
            .field("beta1", &self.raw.beta1)
            .field("beta2", &self.raw.beta2)
            .field("eps", &self.raw.eps)
            .field("weight_decay", &self.raw.weight_decay)
            .field("momentum", &self.raw.momentum)
            .field("clip_grad_norm", &self.raw.clip_grad_norm)
            .field("schedule", &self.get_schedule())
            .finish()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Layer {}
    impl Sealed for crate::RetrievalModel {}
    impl Sealed for crate::LanguageModel {}
    impl Sealed for crate::Seq2SeqModel {}
    impl Sealed for crate::AnyModel {}
    impl Sealed for crate::OtherModel {}
}

/// Something an [`Optimizer`] can train: a [`Layer`] or a model of any kind
/// (every type that implements [`Model`]).
pub trait Trainable: sealed::Sealed {
    #[doc(hidden)]
    fn create_optimizer(&mut self, config: &sys::fwp_optimizer_config) -> Result<NonNull<sys::fwp_optimizer>>;
}

fn create_for_model(model: &impl Model, config: &sys::fwp_optimizer_config) -> Result<NonNull<sys::fwp_optimizer>> {
    let mut out = ptr::null_mut();
    // SAFETY: valid model and config.
    check(unsafe { sys::fwp_optimizer_create_for_model(model.as_raw(), config, &mut out) })?;
    Ok(NonNull::new(out).expect("fwp_optimizer_create_for_model returned FWP_OK and NULL"))
}

/// Every model type is trainable through the generic model functions.
macro_rules! trainable_models {
    ($($ty:ty),+) => {$(
        impl Trainable for $ty {
            fn create_optimizer(&mut self, config: &sys::fwp_optimizer_config) -> Result<NonNull<sys::fwp_optimizer>> {
                create_for_model(self, config)
            }
        }
    )+};
}
trainable_models!(RetrievalModel, LanguageModel, Seq2SeqModel, AnyModel, OtherModel);

impl Trainable for Layer {
    fn create_optimizer(&mut self, config: &sys::fwp_optimizer_config) -> Result<NonNull<sys::fwp_optimizer>> {
        let mut out = ptr::null_mut();
        // SAFETY: valid layer and config.
        check(unsafe { sys::fwp_optimizer_create_for_layer(self.raw.as_ptr(), config, &mut out) })?;
        Ok(NonNull::new(out).expect("fwp_optimizer_create_for_layer returned FWP_OK and NULL"))
    }
}

/// Updates the trainable parameters of a model (any [`Model`] type) or a [`Layer`] from their gradients.
///
/// The optimizer borrows what it trains mutably for its whole life (the C
/// library requires the model or layer to outlive its optimizer); reach it
/// through [`Optimizer::target`] and [`Optimizer::target_mut`].
///
/// ```
/// use fwp::{Context, Layer, LayerConfig, Optimizer, OptimizerConfig};
/// let ctx = Context::cpu()?;
/// let mut layer = Layer::new(&ctx, &LayerConfig::default().d_model(8).num_heads(1).d_head(8))?;
/// let mut opt = Optimizer::new(&mut layer, &OptimizerConfig::default().learning_rate(0.01))?;
/// let x: Vec<f32> = (0..3 * 8).map(|i| (i as f32 * 0.37).sin()).collect();
/// let y = opt.target_mut().forward(&x, 1, 3)?;
/// opt.target_mut().backward(&y, 1, 3)?; // gradient of 0.5 * ||y||^2
/// let grad_norm = opt.step()?;
/// assert!(grad_norm > 0.0);
/// assert_eq!(opt.steps(), 1);
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct Optimizer<'a, T: Trainable> {
    raw: NonNull<sys::fwp_optimizer>,
    target: &'a mut T,
}

// SAFETY: the optimizer and its target move together; distinct handles may be
// used from distinct threads.
unsafe impl<T: Trainable + Send> Send for Optimizer<'_, T> {}

impl<'a, T: Trainable> Optimizer<'a, T> {
    /// Creates an optimizer over the trainable parameters of `target`.
    pub fn new(target: &'a mut T, config: &OptimizerConfig) -> Result<Optimizer<'a, T>> {
        let raw = target.create_optimizer(&config.raw)?;
        Ok(Optimizer { raw, target })
    }

    /// The model or layer being trained.
    pub fn target(&self) -> &T {
        self.target
    }

    /// The model or layer being trained, for forward and backward passes.
    pub fn target_mut(&mut self) -> &mut T {
        self.target
    }

    /// One update of all trainable parameters from their current gradients;
    /// returns the global gradient L2 norm before clipping. Fails with
    /// [`Status::InvalidArgument`](crate::Status::InvalidArgument), changing
    /// nothing, if a gradient is not finite.
    pub fn step(&mut self) -> Result<f32> {
        let mut norm = 0f32;
        // SAFETY: valid handle; the target is alive (borrowed).
        check(unsafe { sys::fwp_optimizer_step(self.raw.as_ptr(), &mut norm) })?;
        Ok(norm)
    }

    /// Zeroes the gradients of the optimizer's parameters.
    pub fn zero_grad(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_optimizer_zero_grad(self.raw.as_ptr()) })
    }

    /// The learning rate the next step uses: the schedule's value after
    /// [`steps`](Self::steps) steps.
    pub fn learning_rate(&self) -> f32 {
        let mut lr = 0f32;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_optimizer_get_lr(self.raw.as_ptr(), &mut lr) }).expect("fwp_optimizer_get_lr");
        lr
    }

    /// Sets the base (peak) learning rate that the schedule scales: finite, >= 0
    /// and not below the schedule's `min_learning_rate`. With a constant
    /// schedule after its warm-up this is the learning rate of the next step.
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_optimizer_set_lr(self.raw.as_ptr(), lr) })
    }

    /// The number of steps taken.
    pub fn steps(&self) -> u64 {
        let mut steps = 0i64;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_optimizer_get_step(self.raw.as_ptr(), &mut steps) }).expect("fwp_optimizer_get_step");
        steps as u64
    }

    /// The raw handle, for use with `fwp-sys`. It stays owned by this `Optimizer`.
    pub fn as_raw(&self) -> *mut sys::fwp_optimizer {
        self.raw.as_ptr()
    }
}

/// Checkpoints of a model with its optimizer (any kind of model).
impl<T: Trainable + Model> Optimizer<'_, T> {
    /// Saves the model, this optimizer's state, the position of `data` (a data source of any kind) and a
    /// `user_metadata` string to a safetensors checkpoint, so that training
    /// resumes exactly. The file is written to a temporary name and renamed.
    pub fn save_checkpoint(
        &self,
        path: impl AsRef<Path>,
        data: Option<&dyn DataSource>,
        user_metadata: Option<&str>,
    ) -> Result<()> {
        model::save(path.as_ref(), self.target.as_raw(), self.raw.as_ptr(), data, ptr::null(), user_metadata)
    }

    /// Like [`save_checkpoint`](Self::save_checkpoint), and also a run state of the model (the
    /// memory carried across segments, or a decoding state), so that training with carried
    /// memory resumes exactly.
    pub fn save_checkpoint_with_state(
        &self,
        path: impl AsRef<Path>,
        data: Option<&dyn DataSource>,
        state: &State,
        user_metadata: Option<&str>,
    ) -> Result<()> {
        model::save(path.as_ref(), self.target.as_raw(), self.raw.as_ptr(), data, state.as_raw(), user_metadata)
    }

    /// Restores the model, this optimizer and `data` from a checkpoint whose
    /// configuration matches; either everything is loaded or nothing is changed.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>, data: Option<&mut dyn DataSource>) -> Result<()> {
        model::load(path.as_ref(), self.target.as_raw(), self.raw.as_ptr(), data, ptr::null_mut())
    }

    /// Like [`load_checkpoint`](Self::load_checkpoint), and also the run state the file holds
    /// (saved by [`save_checkpoint_with_state`](Self::save_checkpoint_with_state)): `state` takes
    /// its batch, contents and positions. A file without a state is an error.
    pub fn load_checkpoint_with_state(
        &mut self,
        path: impl AsRef<Path>,
        data: Option<&mut dyn DataSource>,
        state: &mut State,
    ) -> Result<()> {
        model::load(path.as_ref(), self.target.as_raw(), self.raw.as_ptr(), data, state.as_raw())
    }
}

impl<T: Trainable> Drop for Optimizer<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once, before the borrow of its target ends.
        unsafe { sys::fwp_optimizer_destroy(self.raw.as_ptr()) };
    }
}

impl<T: Trainable> fmt::Debug for Optimizer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Optimizer").field("learning_rate", &self.learning_rate()).field("steps", &self.steps()).finish()
    }
}
