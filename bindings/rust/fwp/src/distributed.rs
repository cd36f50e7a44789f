//! Data-parallel training (`fwp/distributed.h`): a group of ranks, each with
//! its own replica of a model, that average their gradients before every
//! optimizer step.
//!
//! A step on every rank is
//!
//! ```text
//! forward on the rank's shard of the global batch; model.backward();
//! dist.average_gradients(&mut model, 1.0);   // every rank now holds the same gradient
//! optimizer.step();                          // the same update on every replica
//! ```
//!
//! after one [`Dist::sync_model`] at the start. The shard comes from
//! [`DataSource::set_shard`](crate::DataSource::set_shard) (or is cut by the
//! caller). Three engines do the communication ([`Engine`]): MPI and NCCL
//! inside libfwp (when it was built with them, [`engine_available`]), or the
//! caller's own all-reduce, a Rust closure ([`DistConfig::callback`]): an
//! `mpi` crate communicator, a socket library, or [`ThreadGroup`], which sums
//! between threads of one process.

use std::any::Any;
use std::ffi::c_void;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fwp_sys as sys;

use crate::context::{Context, Logger};
use crate::error::{to_i64, Error, Result, Status};
use crate::layer::{config_enum, config_field, rust_enum};
use crate::model::Model;
use crate::state::State;

rust_enum! {
    /// Who does the communication of a [`Dist`] group.
    Engine: fwp_dist_engine {
        /// MPI inside libfwp (launch with mpirun or srun): host buffers.
        Mpi = FWP_DIST_MPI,
        /// NCCL inside libfwp, on the GPU (CUDA contexts only), bootstrapped over MPI.
        Nccl = FWP_DIST_NCCL,
        /// The caller's all-reduce, a closure ([`DistConfig::callback`]).
        Callback = FWP_DIST_CALLBACK,
    }
}

/// Whether this build of libfwp can create a group with `engine`
/// (MPI and NCCL when it was built with them; the callback engine always).
///
/// ```
/// assert!(fwp::distributed::engine_available(fwp::distributed::Engine::Callback));
/// ```
pub fn engine_available(engine: Engine) -> bool {
    // SAFETY: takes any value.
    unsafe { sys::fwp_dist_engine_available(engine.raw()) != 0 }
}

/// The buffer an all-reduce closure sums over the ranks, in place: host
/// memory of `f32` (gradients) or `f64` ([`Dist::sum`], weights).
#[derive(Debug)]
pub enum AllReduceBuffer<'a> {
    /// `float` elements.
    F32(&'a mut [f32]),
    /// `double` elements.
    F64(&'a mut [f64]),
}

impl AllReduceBuffer<'_> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            AllReduceBuffer::F32(b) => b.len(),
            AllReduceBuffer::F64(b) => b.len(),
        }
    }

    /// Whether the buffer has no elements (libfwp never passes an empty one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The caller's all-reduce: sums the buffer element-wise over every rank, in
/// place, as `MPI_Allreduce(MPI_IN_PLACE, .., MPI_SUM, comm)` does. Every rank
/// is called with buffers of the same type and length in the same order, and
/// every rank must end with the same sums. An `Err` (or a panic, which is
/// caught) fails the collective with [`Status::Distributed`].
pub type AllReduceFn = Box<dyn for<'b> FnMut(AllReduceBuffer<'b>) -> std::result::Result<(), String>>;

/// Settings of a [`Dist`] group, starting from the library's defaults
/// (`fwp_dist_config_init`): the MPI engine, buckets of 4,194,304 gradient
/// elements, a 600 s timeout.
///
/// ```
/// use fwp::distributed::{DistConfig, Engine};
/// let config = DistConfig::default().bucket_elements(1 << 20).timeout_seconds(60.0);
/// assert_eq!(config.get_engine(), Engine::Mpi);
/// assert_eq!(config.get_bucket_elements(), 1 << 20);
/// // One rank that is the whole group: its all-reduce has nothing to add.
/// let single = DistConfig::callback(0, 1, |_buffer| Ok(()));
/// assert_eq!((single.get_engine(), single.get_world_size()), (Engine::Callback, 1));
/// ```
pub struct DistConfig {
    raw: sys::fwp_dist_config,
    allreduce: Option<AllReduceFn>,
}

impl Default for DistConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_dist_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_dist_config_init(raw.as_mut_ptr()) };
        DistConfig { raw: unsafe { raw.assume_init() }, allreduce: None }
    }
}

impl DistConfig {
    /// The callback engine: this process is rank `rank` of `world_size`, and
    /// `allreduce` sums buffers over the ranks ([`AllReduceFn`]). The closure
    /// lives as long as the [`Dist`] made from this config and is called on
    /// the thread that makes the collective call.
    pub fn callback(
        rank: i32,
        world_size: i32,
        allreduce: impl for<'b> FnMut(AllReduceBuffer<'b>) -> std::result::Result<(), String> + 'static,
    ) -> DistConfig {
        DistConfig::default().engine(Engine::Callback).rank(rank).world_size(world_size).allreduce(allreduce)
    }

    config_enum!(
        /// The engine (default [`Engine::Mpi`]).
        engine, get_engine: Engine);
    config_field!(
        /// Gradient elements per all-reduce call, >= 1 (default 4,194,304): the
        /// flat gradient block is reduced in buckets of this size.
        bucket_elements, get_bucket_elements: i64);
    config_field!(
        /// MPI and NCCL: a collective not completed after this many seconds fails
        /// with [`Status::Distributed`]; finite and >= 0, 0 = wait forever
        /// (default 600). The callback engine leaves this to the closure.
        timeout_seconds, get_timeout_seconds: f64);
    config_field!(
        /// Callback engine: this process's rank in `0..world_size` (MPI and NCCL: must stay 0).
        rank, get_rank: i32);
    config_field!(
        /// Callback engine: the number of ranks, >= 1 (MPI and NCCL: must stay 0).
        world_size, get_world_size: i32);

    /// Callback engine: the all-reduce (required there; the other engines
    /// reject one).
    pub fn allreduce(
        mut self,
        allreduce: impl for<'b> FnMut(AllReduceBuffer<'b>) -> std::result::Result<(), String> + 'static,
    ) -> Self {
        self.allreduce = Some(Box::new(allreduce));
        self
    }

    /// Whether an all-reduce closure is set.
    pub fn has_allreduce(&self) -> bool {
        self.allreduce.is_some()
    }

    /// MPI and NCCL: the communicator to use (libfwp takes a duplicate of it);
    /// by default `MPI_COMM_WORLD`.
    ///
    /// # Safety
    ///
    /// `comm` must point to an `MPI_Comm` of the MPI library libfwp was built
    /// against and stay valid until [`Dist::new`] returns.
    pub unsafe fn mpi_comm(mut self, comm: *mut c_void) -> Self {
        self.raw.mpi_comm = comm;
        self
    }

    /// The raw C struct (without the closure), for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_dist_config {
        &self.raw
    }
}

impl fmt::Debug for DistConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistConfig")
            .field("engine", &self.get_engine())
            .field("bucket_elements", &self.raw.bucket_elements)
            .field("timeout_seconds", &self.raw.timeout_seconds)
            .field("mpi_comm", &self.raw.mpi_comm)
            .field("allreduce", &self.allreduce.is_some())
            .field("rank", &self.raw.rank)
            .field("world_size", &self.raw.world_size)
            .finish()
    }
}

/// What the C trampoline reaches through `user_data`: the closure and why it
/// last failed, to put in the error of the call that failed.
struct Callback {
    allreduce: AllReduceFn,
    failure: Option<String>,
    panicked: bool,
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

unsafe extern "C" fn allreduce_trampoline(
    buffer: *mut c_void,
    count: i64,
    dtype: sys::fwp_dist_dtype,
    user_data: *mut c_void,
) -> i32 {
    if user_data.is_null() {
        return 1;
    }
    // SAFETY: user_data is the Box<Callback> owned by the Dist whose
    // collective is running on this thread; nothing else references it now.
    let callback = unsafe { &mut *(user_data as *mut Callback) };
    // A closure that panicked may have been left half-way; it is not called again.
    if callback.panicked {
        callback.failure = Some("the all-reduce closure panicked in an earlier call".to_string());
        return 1;
    }
    let len = match usize::try_from(count) {
        Ok(n) if n >= 1 && !buffer.is_null() => n,
        _ => {
            callback.failure = Some(format!("libfwp passed a bad buffer ({count} elements at {buffer:?})"));
            return 1;
        }
    };
    // SAFETY: libfwp passes `count` host elements of `dtype`, exclusively ours during the call.
    let view = match dtype {
        sys::FWP_DIST_FLOAT32 => {
            AllReduceBuffer::F32(unsafe { std::slice::from_raw_parts_mut(buffer as *mut f32, len) })
        }
        sys::FWP_DIST_FLOAT64 => {
            AllReduceBuffer::F64(unsafe { std::slice::from_raw_parts_mut(buffer as *mut f64, len) })
        }
        other => {
            callback.failure = Some(format!("libfwp passed an unknown element type {}", other.0));
            return 1;
        }
    };
    // A panic must not unwind into C.
    match catch_unwind(AssertUnwindSafe(|| (callback.allreduce)(view))) {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            callback.failure = Some(message);
            1
        }
        Err(payload) => {
            callback.panicked = true;
            callback.failure = Some(format!("the all-reduce closure panicked: {}", panic_text(payload.as_ref())));
            1
        }
    }
}

/// This process's membership of a data-parallel group (`fwp_dist`).
///
/// Every rank makes the same collective calls in the same order. A failed
/// collective ([`Status::Distributed`]) leaves the group broken: every later
/// collective fails too, and the job should end ([`Dist::abort`]). With the
/// callback engine the error message carries the closure's `Err` text or
/// panic message.
///
/// A `Dist` is not `Send`: its closure may hold a communicator bound to the
/// thread that made it. Create it on the thread that trains.
///
/// ```
/// use fwp::distributed::{Dist, DistConfig};
/// use fwp::{Context, Model, RetrievalConfig, RetrievalModel};
/// let ctx = Context::cpu()?;
/// let mut model = RetrievalModel::new(&ctx, &RetrievalConfig::default().num_keys(8).d_head(16))?;
/// // A group of one rank: its all-reduce is the identity.
/// let mut dist = Dist::new(&ctx, DistConfig::callback(0, 1, |_buffer| Ok(())))?;
/// assert_eq!((dist.rank(), dist.world_size()), (0, 1));
/// dist.sync_model(&mut model)?;
/// let mut totals = [1.5, 2.0];
/// dist.sum(&mut totals)?;
/// assert_eq!(totals, [1.5, 2.0]);
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct Dist {
    raw: NonNull<sys::fwp_dist>,
    // Box::into_raw of the closure's state (NULL for MPI and NCCL): a raw
    // pointer, because C calls back into it while `&mut self` is borrowed.
    callback: *mut Callback,
    rank: usize,
    world_size: usize,
    _logger: Logger,
}

impl Dist {
    /// Joins the group (a collective: every rank calls it). Fails with
    /// [`Status::Unsupported`] for an engine this build lacks (or NCCL on a
    /// CPU context), [`Status::InvalidArgument`] for a bad field (named), and
    /// [`Status::Distributed`] or [`Status::Device`] when the engine does not start.
    pub fn new(ctx: &Context, config: DistConfig) -> Result<Dist> {
        let DistConfig { mut raw, allreduce } = config;
        let callback = match allreduce {
            Some(allreduce) => {
                let state = Box::into_raw(Box::new(Callback { allreduce, failure: None, panicked: false }));
                raw.allreduce = Some(allreduce_trampoline);
                raw.user_data = state as *mut c_void;
                state
            }
            None => {
                raw.allreduce = None;
                raw.user_data = ptr::null_mut();
                ptr::null_mut()
            }
        };
        let free_callback = |state: *mut Callback| {
            if !state.is_null() {
                // SAFETY: made by Box::into_raw above and not given to a live group.
                drop(unsafe { Box::from_raw(state) });
            }
        };
        let mut out = ptr::null_mut();
        // SAFETY: a valid context and config; out receives an owned handle.
        let status = unsafe { sys::fwp_dist_create(ctx.as_raw(), &raw, &mut out) };
        if status != sys::FWP_OK {
            let err = Error::from_last(status);
            free_callback(callback);
            return Err(err);
        }
        let raw = NonNull::new(out).expect("fwp_dist_create returned FWP_OK and NULL");
        let mut dist = Dist { raw, callback, rank: 0, world_size: 0, _logger: ctx.logger() };
        let (mut rank, mut world_size) = (0i32, 0i32);
        // SAFETY: valid handle and output pointers.
        dist.check(unsafe { sys::fwp_dist_get_rank(dist.raw.as_ptr(), &mut rank, &mut world_size) })?;
        dist.rank =
            usize::try_from(rank).map_err(|_| Error::new(Status::Internal, format!("libfwp reported rank {rank}")))?;
        dist.world_size = usize::try_from(world_size)
            .map_err(|_| Error::new(Status::Internal, format!("libfwp reported world_size {world_size}")))?;
        Ok(dist)
    }

    /// Turns a status into a `Result`; a failed collective's error carries why
    /// the closure failed.
    fn check(&mut self, status: sys::fwp_status) -> Result<()> {
        if status == sys::FWP_OK {
            return Ok(());
        }
        let err = Error::from_last(status);
        if self.callback.is_null() {
            return Err(err);
        }
        // SAFETY: the collective has returned; C holds no reference into the state now.
        let failure = unsafe { (*self.callback).failure.take() };
        match failure {
            Some(why) => Err(Error::new(err.status(), format!("{} (all-reduce closure: {why})", err.message()))),
            None => Err(err),
        }
    }

    /// This process's rank, in `0..world_size()`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Makes this replica equal to rank 0's (a collective): parameters
    /// (trainable and fixed) and random state; then gives this rank its own
    /// dropout stream. Call once after creating or loading the model on every
    /// rank. Ranks holding models of different sizes fail with
    /// [`Status::ShapeMismatch`].
    pub fn sync_model(&mut self, model: &mut impl Model) -> Result<()> {
        // SAFETY: valid handles.
        let status = unsafe { sys::fwp_dist_sync_model(self.raw.as_ptr(), model.as_raw()) };
        self.check(status)
    }

    /// Replaces every rank's gradients by their weighted mean over the ranks
    /// (a collective): `sum_r w_r g_r / sum_r w_r` with `w_r` each rank's
    /// `weight` (finite, >= 0): 1 on every rank for equal shards, the number
    /// of loss tokens of the shard for batches by a token budget. Returns
    /// `sum_r w_r`. Weights summing to 0 fail with
    /// [`Status::InvalidArgument`], leaving the gradients unchanged.
    pub fn average_gradients(&mut self, model: &mut impl Model, weight: f64) -> Result<f64> {
        let mut total = 0f64;
        // SAFETY: valid handles and output pointer.
        let status = unsafe { sys::fwp_dist_average_gradients(self.raw.as_ptr(), model.as_raw(), weight, &mut total) };
        self.check(status)?;
        Ok(total)
    }

    /// Sums `values` over the ranks, in place (a collective), e.g. losses and
    /// token counts for a progress line. `values` must not be empty.
    pub fn sum(&mut self, values: &mut [f64]) -> Result<()> {
        if values.is_empty() {
            return Err(Error::invalid("Dist::sum: values is empty (at least 1 number)"));
        }
        let count = to_i64(values.len(), "values.len()")?;
        // SAFETY: values holds count numbers.
        let status = unsafe { sys::fwp_dist_sum(self.raw.as_ptr(), values.as_mut_ptr(), count) };
        self.check(status)
    }

    /// Collects every rank's rows of a run state into `global`, a state of the
    /// same model with `world_size` times `local`'s batch (a collective): row
    /// `r b + i` of `global` becomes row `i` of rank `r`'s `local`. Every rank
    /// receives the whole. Softmax layers fail with [`Status::Unsupported`].
    pub fn gather_state(&mut self, local: &State, global: &mut State) -> Result<()> {
        // SAFETY: valid handles (`&` and `&mut` cannot be the same state).
        let status = unsafe { sys::fwp_dist_gather_state(self.raw.as_ptr(), local.as_raw(), global.as_raw()) };
        self.check(status)
    }

    /// Waits until every rank has called it (a collective).
    pub fn barrier(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        let status = unsafe { sys::fwp_dist_barrier(self.raw.as_ptr()) };
        self.check(status)
    }

    /// Ends the job: with MPI and NCCL every process of the group exits with
    /// `code` (`MPI_Abort`; this call does not return). With the callback
    /// engine it only marks the group broken and returns; ending the other
    /// ranks is then the caller's (e.g. [`ThreadGroup::abort`]).
    pub fn abort(&mut self, code: i32) {
        // SAFETY: valid handle.
        unsafe { sys::fwp_dist_abort(self.raw.as_ptr(), code) }
    }

    /// The raw handle, for use with `fwp-sys`. It stays owned by this `Dist`.
    pub fn as_raw(&self) -> *mut sys::fwp_dist {
        self.raw.as_ptr()
    }
}

impl Drop for Dist {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once; after destroy no
        // collective can call the closure, which is freed last.
        unsafe { sys::fwp_dist_destroy(self.raw.as_ptr()) };
        if !self.callback.is_null() {
            drop(unsafe { Box::from_raw(self.callback) });
        }
    }
}

impl fmt::Debug for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dist")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("callback", &!self.callback.is_null())
            .finish()
    }
}

/// A rank's copy of its buffer while the others arrive.
#[derive(Clone)]
enum Contribution {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Contribution {
    fn of(buffer: &AllReduceBuffer<'_>) -> Contribution {
        match buffer {
            AllReduceBuffer::F32(b) => Contribution::F32(b.to_vec()),
            AllReduceBuffer::F64(b) => Contribution::F64(b.to_vec()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Contribution::F32(v) => format!("{} f32", v.len()),
            Contribution::F64(v) => format!("{} f64", v.len()),
        }
    }
}

struct Round {
    /// Completed rounds; a waiting rank is released when it changes.
    generation: u64,
    arrived: usize,
    slots: Vec<Option<Contribution>>,
    /// The sums of the last completed round. Kept until the next round
    /// completes, which no rank can reach before it has read this one.
    result: Option<Contribution>,
    broken: Option<String>,
}

/// An in-process all-reduce for ranks that are threads of one process, each
/// with its own context and replica (e.g. one thread per GPU, or tests of
/// data-parallel code without MPI). Each rank's closure calls
/// [`ThreadGroup::all_reduce`]; the last rank to arrive adds the buffers in
/// rank order, so every rank receives bitwise the same sums.
///
/// A rank that fails on its own should call [`ThreadGroup::abort`] so that the
/// others stop waiting; so does the timeout.
///
/// ```
/// use std::sync::Arc;
/// use fwp::distributed::{AllReduceBuffer, ThreadGroup};
/// let group = Arc::new(ThreadGroup::new(2));
/// let sums: Vec<Vec<f64>> = std::thread::scope(|s| {
///     let workers: Vec<_> = (0..2)
///         .map(|rank| {
///             let group = Arc::clone(&group);
///             s.spawn(move || {
///                 let mut values = vec![rank as f64 + 1.0, 10.0];
///                 group.all_reduce(rank, AllReduceBuffer::F64(&mut values)).unwrap();
///                 values
///             })
///         })
///         .collect();
///     workers.into_iter().map(|w| w.join().unwrap()).collect()
/// });
/// assert_eq!(sums, vec![vec![3.0, 20.0], vec![3.0, 20.0]]);
/// ```
pub struct ThreadGroup {
    world_size: usize,
    timeout: Option<Duration>,
    round: Mutex<Round>,
    changed: Condvar,
}

impl ThreadGroup {
    /// A group of `world_size` ranks (>= 1; 0 is taken as 1) that waits for
    /// the others without a time limit.
    pub fn new(world_size: usize) -> ThreadGroup {
        let world_size = world_size.max(1);
        ThreadGroup {
            world_size,
            timeout: None,
            round: Mutex::new(Round {
                generation: 0,
                arrived: 0,
                slots: vec![None; world_size],
                result: None,
                broken: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// Makes a rank that waits longer than `timeout` for the others break the
    /// group (its collective and every later one fail).
    pub fn with_timeout(mut self, timeout: Duration) -> ThreadGroup {
        self.timeout = Some(timeout);
        self
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// A [`DistConfig`] of the callback engine for rank `rank` of this group.
    pub fn config(self: &Arc<Self>, rank: usize) -> DistConfig {
        let group = Arc::clone(self);
        let to_i32 = |v: usize| i32::try_from(v).unwrap_or(-1);
        DistConfig::callback(to_i32(rank), to_i32(self.world_size), move |buffer| group.all_reduce(rank, buffer))
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        // A rank that panicked while holding the lock left consistent data
        // behind (every update is complete before it can panic).
        self.round.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Breaks the group: every rank waiting now and every later call fails with `reason`.
    pub fn abort(&self, reason: &str) {
        let mut round = self.lock();
        if round.broken.is_none() {
            round.broken = Some(reason.to_string());
        }
        self.changed.notify_all();
    }

    /// Rank `rank`'s part of one all-reduce: waits until every rank has called
    /// it, then leaves the element-wise sums over the ranks (added in rank
    /// order) in `buffer`.
    pub fn all_reduce(&self, rank: usize, buffer: AllReduceBuffer<'_>) -> std::result::Result<(), String> {
        let mut buffer = buffer;
        let mut round = self.lock();
        if let Some(why) = &round.broken {
            return Err(format!("the thread group is broken: {why}"));
        }
        if rank >= self.world_size {
            return Err(format!("rank {rank} is not in a group of {}", self.world_size));
        }
        if round.slots[rank].is_some() {
            return Err(format!("rank {rank} entered the same all-reduce twice"));
        }
        round.slots[rank] = Some(Contribution::of(&buffer));
        round.arrived += 1;
        let generation = round.generation;
        if round.arrived == self.world_size {
            let slots: Vec<Contribution> =
                round.slots.iter_mut().map(|s| s.take().expect("every rank arrived")).collect();
            round.arrived = 0;
            match add_in_rank_order(slots) {
                Ok(sum) => {
                    round.result = Some(sum);
                    round.generation += 1;
                }
                Err(why) => round.broken = Some(why),
            }
            self.changed.notify_all();
        } else {
            let deadline = self.timeout.map(|t| Instant::now() + t);
            while round.generation == generation && round.broken.is_none() {
                round = match deadline {
                    None => self.changed.wait(round).unwrap_or_else(|p| p.into_inner()),
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            round.broken = Some(format!(
                                "rank {rank} waited more than {:.3} s for the other ranks",
                                self.timeout.unwrap_or_default().as_secs_f64()
                            ));
                            self.changed.notify_all();
                            break;
                        }
                        self.changed.wait_timeout(round, deadline - now).unwrap_or_else(|p| p.into_inner()).0
                    }
                };
            }
        }
        if round.generation == generation {
            let why = round.broken.clone().unwrap_or_default();
            return Err(format!("the thread group is broken: {why}"));
        }
        match (round.result.as_ref(), &mut buffer) {
            (Some(Contribution::F32(sum)), AllReduceBuffer::F32(out)) => out.copy_from_slice(sum),
            (Some(Contribution::F64(sum)), AllReduceBuffer::F64(out)) => out.copy_from_slice(sum),
            _ => return Err("internal error: the sums do not match the buffer".to_string()),
        }
        Ok(())
    }
}

/// The element-wise sum of every rank's buffer, added in rank order, or why
/// the buffers cannot be added (ranks passed different types or lengths).
fn add_in_rank_order(slots: Vec<Contribution>) -> std::result::Result<Contribution, String> {
    let mut slots = slots.into_iter();
    let mut sum = slots.next().expect("a group has at least one rank");
    for (rank, next) in slots.enumerate().map(|(i, c)| (i + 1, c)) {
        match (&mut sum, &next) {
            (Contribution::F32(acc), Contribution::F32(v)) if acc.len() == v.len() => {
                acc.iter_mut().zip(v).for_each(|(a, b)| *a += b)
            }
            (Contribution::F64(acc), Contribution::F64(v)) if acc.len() == v.len() => {
                acc.iter_mut().zip(v).for_each(|(a, b)| *a += b)
            }
            _ => {
                return Err(format!(
                    "rank 0 passed {} elements but rank {rank} passed {}",
                    sum.describe(),
                    next.describe()
                ))
            }
        }
    }
    Ok(sum)
}

impl fmt::Debug for ThreadGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadGroup").field("world_size", &self.world_size).field("timeout", &self.timeout).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_group_sums_in_rank_order_and_reports_mismatches() {
        let group = Arc::new(ThreadGroup::new(3));
        let results: Vec<std::result::Result<Vec<f32>, String>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..3)
                .map(|rank| {
                    let group = Arc::clone(&group);
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for round in 0..4 {
                            let mut v = vec![rank as f32 + round as f32, 0.5];
                            group.all_reduce(rank, AllReduceBuffer::F32(&mut v))?;
                            out.extend(v);
                        }
                        Ok(out)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let want: Vec<f32> = (0..4).flat_map(|round| [3.0 + 3.0 * round as f32, 1.5]).collect();
        for r in &results {
            assert_eq!(r.as_ref().unwrap(), &want);
        }

        // Ranks that pass buffers of different lengths break the group, for all of them.
        let group = Arc::new(ThreadGroup::new(2));
        let errors: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..2)
                .map(|rank| {
                    let group = Arc::clone(&group);
                    s.spawn(move || {
                        let mut v = vec![1.0f64; rank + 1];
                        group.all_reduce(rank, AllReduceBuffer::F64(&mut v)).unwrap_err()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(
            errors.iter().all(|e| e.contains("rank 0 passed 1 f64 elements but rank 1 passed 2 f64")),
            "{errors:?}"
        );
        let mut v = [1.0f64];
        assert!(group.all_reduce(0, AllReduceBuffer::F64(&mut v)).unwrap_err().contains("broken"));
    }

    #[test]
    fn thread_group_times_out_and_aborts() {
        let group = ThreadGroup::new(2).with_timeout(Duration::from_millis(50));
        let mut v = [1.0f32];
        let err = group.all_reduce(0, AllReduceBuffer::F32(&mut v)).unwrap_err();
        assert!(err.contains("waited more than 0.050 s"), "{err}");
        assert_eq!(
            group.all_reduce(5, AllReduceBuffer::F32(&mut v)).unwrap_err(),
            format!("the thread group is broken: rank 0 waited more than 0.050 s for the other ranks")
        );

        let group = Arc::new(ThreadGroup::new(2));
        std::thread::scope(|s| {
            let waiter = {
                let group = Arc::clone(&group);
                s.spawn(move || group.all_reduce(1, AllReduceBuffer::F32(&mut [2.0f32])))
            };
            std::thread::sleep(Duration::from_millis(20));
            group.abort("rank 0 could not open its data");
            assert!(waiter.join().unwrap().unwrap_err().contains("rank 0 could not open its data"));
        });
        let single = ThreadGroup::new(1);
        assert_eq!(
            single.all_reduce(1, AllReduceBuffer::F32(&mut [1.0])).unwrap_err(),
            "rank 1 is not in a group of 1"
        );
    }
}
