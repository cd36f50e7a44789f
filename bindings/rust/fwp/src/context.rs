//! Contexts: the device, thread count, random seed and logger shared by objects.

use std::ffi::{c_char, c_void, CStr};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use fwp_sys as sys;

use crate::error::{check, Result};

/// Where computations run.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum Device {
    /// The host CPU.
    #[default]
    Cpu,
    /// An NVIDIA GPU.
    Cuda,
    /// A device code unknown to these bindings.
    Other(i32),
}

impl Device {
    pub(crate) fn raw(self) -> sys::fwp_device {
        match self {
            Device::Cpu => sys::FWP_DEVICE_CPU,
            Device::Cuda => sys::FWP_DEVICE_CUDA,
            Device::Other(v) => sys::fwp_device(v),
        }
    }

    pub(crate) fn from_raw(raw: sys::fwp_device) -> Device {
        match raw {
            sys::FWP_DEVICE_CPU => Device::Cpu,
            sys::FWP_DEVICE_CUDA => Device::Cuda,
            other => Device::Other(other.0),
        }
    }
}

/// Severity of a log message, and the threshold below which messages are dropped.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[non_exhaustive]
pub enum LogLevel {
    /// Debugging detail.
    Debug,
    /// Information.
    Info,
    /// Warnings (the default threshold).
    Warn,
    /// Errors.
    Error,
    /// As a threshold: log nothing.
    Off,
    /// A level unknown to these bindings.
    Other(i32),
}

impl LogLevel {
    pub(crate) fn raw(self) -> sys::fwp_log_level {
        match self {
            LogLevel::Debug => sys::FWP_LOG_DEBUG,
            LogLevel::Info => sys::FWP_LOG_INFO,
            LogLevel::Warn => sys::FWP_LOG_WARN,
            LogLevel::Error => sys::FWP_LOG_ERROR,
            LogLevel::Off => sys::FWP_LOG_OFF,
            LogLevel::Other(v) => sys::fwp_log_level(v),
        }
    }

    pub(crate) fn from_raw(raw: sys::fwp_log_level) -> LogLevel {
        match raw {
            sys::FWP_LOG_DEBUG => LogLevel::Debug,
            sys::FWP_LOG_INFO => LogLevel::Info,
            sys::FWP_LOG_WARN => LogLevel::Warn,
            sys::FWP_LOG_ERROR => LogLevel::Error,
            sys::FWP_LOG_OFF => LogLevel::Off,
            other => LogLevel::Other(other.0),
        }
    }
}

/// A log sink. It may be called from any thread that uses an object of the
/// context, hence `Send + Sync`.
pub(crate) type LogFn = Box<dyn Fn(LogLevel, &str) + Send + Sync + 'static>;

/// Shared ownership of the log sink: the context and every object created from
/// it hold a reference, because the library keeps the C context (and so the
/// callback's user data) alive as long as any of them lives.
pub(crate) type Logger = Option<Arc<LogFn>>;

unsafe extern "C" fn log_trampoline(level: sys::fwp_log_level, message: *const c_char, user_data: *mut c_void) {
    if user_data.is_null() || message.is_null() {
        return;
    }
    // SAFETY: user_data is the `*const LogFn` of an Arc kept alive by every
    // object that can log; the message is valid during the call.
    let sink = unsafe { &*(user_data as *const LogFn) };
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    // A panic must not unwind into C; a failing logger loses its message.
    let _ = catch_unwind(AssertUnwindSafe(|| sink(LogLevel::from_raw(level), &text)));
}

/// Settings of a [`Context`], starting from the library's defaults
/// (`fwp_context_config_init`): CPU, all hardware threads, seed 42, no logging.
///
/// ```
/// let config = fwp::ContextConfig::default().seed(7).num_threads(1);
/// assert_eq!(config.get_seed(), 7);
/// ```
pub struct ContextConfig {
    raw: sys::fwp_context_config,
    logger: Logger,
}

impl Default for ContextConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_context_config>::zeroed();
        // SAFETY: init fills every field of the struct.
        unsafe { sys::fwp_context_config_init(raw.as_mut_ptr()) };
        ContextConfig { raw: unsafe { raw.assume_init() }, logger: None }
    }
}

impl fmt::Debug for ContextConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextConfig")
            .field("device", &self.get_device())
            .field("device_index", &self.raw.device_index)
            .field("num_threads", &self.raw.num_threads)
            .field("seed", &self.raw.seed)
            .field("log_level", &self.get_log_level())
            .field("logger", &self.logger.is_some())
            .finish()
    }
}

impl ContextConfig {
    /// Sets the device (default CPU).
    pub fn device(mut self, device: Device) -> Self {
        self.raw.device = device.raw();
        self
    }
    /// Sets the CUDA device ordinal (default 0).
    pub fn device_index(mut self, index: i32) -> Self {
        self.raw.device_index = index;
        self
    }
    /// Sets the number of CPU threads; 0 (default) means all hardware threads.
    pub fn num_threads(mut self, threads: i32) -> Self {
        self.raw.num_threads = threads;
        self
    }
    /// Sets the seed of all randomness drawn through the context (default 42).
    pub fn seed(mut self, seed: u64) -> Self {
        self.raw.seed = seed;
        self
    }
    /// Sets the level below which messages are dropped (default [`LogLevel::Warn`]).
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.raw.log_level = level.raw();
        self
    }
    /// Sends the library's log messages to `sink` (default: no logging).
    pub fn logger(mut self, sink: impl Fn(LogLevel, &str) + Send + Sync + 'static) -> Self {
        self.logger = Some(Arc::new(Box::new(sink)));
        self
    }
    /// The device.
    pub fn get_device(&self) -> Device {
        Device::from_raw(self.raw.device)
    }
    /// The CUDA device ordinal.
    pub fn get_device_index(&self) -> i32 {
        self.raw.device_index
    }
    /// The requested number of CPU threads (0 = all).
    pub fn get_num_threads(&self) -> i32 {
        self.raw.num_threads
    }
    /// The seed.
    pub fn get_seed(&self) -> u64 {
        self.raw.seed
    }
    /// The log threshold.
    pub fn get_log_level(&self) -> LogLevel {
        LogLevel::from_raw(self.raw.log_level)
    }
}

/// A device, a thread count, a random seed and a logger, shared by the layers
/// and models created from it.
///
/// The library reference-counts contexts: a layer or model keeps what it needs
/// alive, so a `Context` may be dropped before the objects created from it.
/// A context may be shared between threads (`Send + Sync`).
///
/// ```
/// let ctx = fwp::Context::new(&fwp::ContextConfig::default().num_threads(1))?;
/// assert_eq!(ctx.device(), fwp::Device::Cpu);
/// assert_eq!(ctx.num_threads(), 1);
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct Context {
    raw: NonNull<sys::fwp_context>,
    logger: Logger,
}

// SAFETY: the C API allows a context to be shared by objects used on different
// threads (its state is immutable after creation except for a mutex-guarded RNG).
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

impl Context {
    /// Creates a context.
    ///
    /// Fails with [`Status::Unsupported`](crate::Status::Unsupported) for CUDA in a
    /// build without CUDA, [`Status::Device`](crate::Status::Device) when there is
    /// no such GPU, and [`Status::InvalidArgument`](crate::Status::InvalidArgument)
    /// or [`Status::OutOfRange`](crate::Status::OutOfRange) for bad fields.
    pub fn new(config: &ContextConfig) -> Result<Context> {
        let mut raw_config = config.raw;
        if let Some(sink) = &config.logger {
            raw_config.log_callback = Some(log_trampoline);
            raw_config.log_user_data = Arc::as_ptr(sink) as *mut c_void;
        } else {
            raw_config.log_callback = None;
            raw_config.log_user_data = ptr::null_mut();
        }
        let mut out = ptr::null_mut();
        // SAFETY: the config is fully initialised; out receives an owned handle.
        check(unsafe { sys::fwp_context_create(&raw_config, &mut out) })?;
        let raw = NonNull::new(out).expect("fwp_context_create returned FWP_OK and NULL");
        Ok(Context { raw, logger: config.logger.clone() })
    }

    /// A CPU context with the library's default settings.
    pub fn cpu() -> Result<Context> {
        Context::new(&ContextConfig::default())
    }

    /// The device the context computes on.
    pub fn device(&self) -> Device {
        let mut device = sys::FWP_DEVICE_CPU;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_context_get_device(self.raw.as_ptr(), &mut device) }).expect("fwp_context_get_device");
        Device::from_raw(device)
    }

    /// The number of CPU threads the context uses (>= 1).
    pub fn num_threads(&self) -> i32 {
        let mut threads = 0;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_context_get_num_threads(self.raw.as_ptr(), &mut threads) })
            .expect("fwp_context_get_num_threads");
        threads
    }

    /// The raw handle, for use with `fwp-sys`. It stays owned by this `Context`.
    pub fn as_raw(&self) -> *mut sys::fwp_context {
        self.raw.as_ptr()
    }

    pub(crate) fn logger(&self) -> Logger {
        self.logger.clone()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once.
        unsafe { sys::fwp_context_destroy(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("device", &self.device()).field("num_threads", &self.num_threads()).finish()
    }
}
