//! Run state apart from the weights (`fwp_state`): the fast weights or
//! key/value caches of N sequences, for a layer or for a model's attention layers.

use std::fmt;
use std::ptr::{self, NonNull};

use fwp_sys as sys;

use crate::error::{check, check_len, product, to_i64, to_usize, Result};
use crate::layer::{FastWeights, Layer};
use crate::model::Model;

/// The run state of `batch` sequences for one [`Layer`] (or, with
/// [`State::for_model`], for every attention layer of a model): per attention
/// layer the fast weights W and z, or a softmax layer's key/value cache.
///
/// Several states can run against one layer ([`Layer::forward_with_state`],
/// [`Layer::step_with_state`]); rows can be reordered for beam search. A state
/// keeps the layer or model it was made for alive inside the library, so it may
/// outlive the Rust object it was made from.
///
/// ```
/// use fwp::{Context, Layer, LayerConfig, State};
/// let ctx = Context::cpu()?;
/// let layer = Layer::new(&ctx, &LayerConfig::default().d_model(8).num_heads(2).d_head(4))?;
/// let mut state = State::for_layer(&layer, 3)?;
/// state.reorder(&[2, 2, 0, 1])?; // four hypotheses from three
/// assert_eq!(state.batch()?, 4);
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct State {
    raw: NonNull<sys::fwp_state>,
}

// SAFETY: distinct handles may be used from distinct threads; mutation needs `&mut`.
unsafe impl Send for State {}

impl State {
    fn from_out(out: *mut sys::fwp_state) -> State {
        State { raw: NonNull::new(out).expect("libfwp returned FWP_OK and a NULL state") }
    }

    /// A zero state of `batch` rows for `layer` (one attention layer).
    pub fn for_layer(layer: &Layer, batch: usize) -> Result<State> {
        let mut out = ptr::null_mut();
        // SAFETY: valid layer handle; out receives an owned handle.
        check(unsafe { sys::fwp_state_create_for_layer(layer.as_raw(), to_i64(batch, "batch")?, &mut out) })?;
        Ok(State::from_out(out))
    }

    /// A zero state of `batch` rows for every attention layer of `model`.
    /// Fails with [`Status::Unsupported`](crate::Status::Unsupported) for kinds
    /// that carry no state between calls (the retrieval model).
    pub fn for_model(model: &impl Model, batch: usize) -> Result<State> {
        let mut out = ptr::null_mut();
        // SAFETY: valid model handle; out receives an owned handle.
        check(unsafe { sys::fwp_state_create(model.as_raw(), to_i64(batch, "batch")?, &mut out) })?;
        Ok(State::from_out(out))
    }

    /// The number of rows (sequences).
    pub fn batch(&self) -> Result<usize> {
        let mut batch = 0i64;
        // SAFETY: valid handle and output pointer.
        check(unsafe { sys::fwp_state_batch(self.raw.as_ptr(), &mut batch) })?;
        to_usize(batch, "batch")
    }

    /// The number of attention layers (1 for a layer's state).
    pub fn num_layers(&self) -> Result<usize> {
        let mut count = 0i64;
        // SAFETY: valid handle and output pointer.
        check(unsafe { sys::fwp_state_num_layers(self.raw.as_ptr(), &mut count) })?;
        to_usize(count, "count")
    }

    /// Back to new sequences: zero fast weights, empty caches; the batch is kept.
    pub fn reset(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_state_reset(self.raw.as_ptr()) })
    }

    /// Makes this state a copy of `src` (same layers and batch).
    pub fn copy_from(&mut self, src: &State) -> Result<()> {
        // SAFETY: two valid handles (`&mut self` and `&src` cannot be the same object).
        check(unsafe { sys::fwp_state_copy(self.raw.as_ptr(), src.raw.as_ptr()) })
    }

    /// Row `r` becomes old row `rows[r]`; rows may repeat or be dropped, and
    /// `rows.len()` is the new batch.
    pub fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        let rows = rows.iter().map(|&r| to_i64(r, "rows[..]")).collect::<Result<Vec<i64>>>()?;
        // SAFETY: rows holds rows.len() indices.
        check(unsafe { sys::fwp_state_reorder(self.raw.as_ptr(), rows.as_ptr(), rows.len() as i64) })
    }

    /// The sizes `(w, z)` of the fast weights of attention layer `layer`.
    /// Fails with [`Status::Unsupported`](crate::Status::Unsupported) for a softmax layer.
    pub fn size(&self, layer: usize) -> Result<(usize, usize)> {
        let (mut w, mut z) = (0i64, 0i64);
        // SAFETY: valid handle and output pointers.
        check(unsafe { sys::fwp_state_size(self.raw.as_ptr(), to_i64(layer, "layer")?, &mut w, &mut z) })?;
        Ok((to_usize(w, "w_count")?, to_usize(z, "z_count")?))
    }

    /// Copies the fast weights of attention layer `layer` out.
    pub fn get(&self, layer: usize) -> Result<FastWeights> {
        let (w_count, z_count) = self.size(layer)?;
        let mut out = FastWeights { batch: self.batch()?, w: vec![0f32; w_count], z: vec![0f32; z_count] };
        // SAFETY: the buffers hold the counts passed.
        check(unsafe {
            sys::fwp_state_get(
                self.raw.as_ptr(),
                layer as i64,
                out.w.as_mut_ptr(),
                w_count as i64,
                out.z.as_mut_ptr(),
                z_count as i64,
            )
        })?;
        Ok(out)
    }

    /// Overwrites the fast weights of attention layer `layer` (`None` = zeros).
    pub fn set(&mut self, layer: usize, w: Option<&[f32]>, z: Option<&[f32]>) -> Result<()> {
        let (w_count, z_count) = self.size(layer)?;
        if let Some(w) = w {
            check_len(w.len(), w_count, "w", "batch * heads * d_head * d_dot")?;
        }
        if let Some(z) = z {
            check_len(z.len(), z_count, "z", "batch * heads * d_dot")?;
        }
        // SAFETY: the slices hold the counts passed (or are NULL).
        check(unsafe {
            sys::fwp_state_set(
                self.raw.as_ptr(),
                layer as i64,
                w.map_or(ptr::null(), |w| w.as_ptr()),
                w_count as i64,
                z.map_or(ptr::null(), |z| z.as_ptr()),
                z_count as i64,
            )
        })
    }

    /// The number of tokens in the key/value cache of softmax layer `layer`.
    pub fn cache_len(&self, layer: usize) -> Result<usize> {
        let mut length = 0i64;
        // SAFETY: valid handle and output pointer.
        check(unsafe { sys::fwp_state_cache_length(self.raw.as_ptr(), to_i64(layer, "layer")?, &mut length) })?;
        to_usize(length, "length")
    }

    /// The raw handle, for use with `fwp-sys`. It stays owned by this `State`.
    pub fn as_raw(&self) -> *mut sys::fwp_state {
        self.raw.as_ptr()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once.
        unsafe { sys::fwp_state_destroy(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State").field("batch", &self.batch().ok()).field("num_layers", &self.num_layers().ok()).finish()
    }
}

impl Layer {
    /// [`Layer::forward`] against `state` instead of the layer's own: starts
    /// from it and leaves the final state there (the layer's state is untouched).
    /// `batch` must be the state's batch.
    pub fn forward_with_state(&mut self, state: &mut State, x: &[f32], batch: usize, seq_len: usize) -> Result<Vec<f32>> {
        let n = product(&[batch, seq_len, self.d_model()], "batch * seq_len * d_model")?;
        check_len(x.len(), n, "x", "batch * seq_len * d_model")?;
        let mut y = vec![0f32; n];
        // SAFETY: x and y hold n floats; both handles are valid.
        check(unsafe {
            sys::fwp_layer_forward_with_state(
                self.as_raw(),
                state.as_raw(),
                x.as_ptr(),
                to_i64(batch, "batch")?,
                to_i64(seq_len, "seq_len")?,
                y.as_mut_ptr(),
            )
        })?;
        Ok(y)
    }

    /// [`Layer::step`] against `state` instead of the layer's own.
    pub fn step_with_state(&mut self, state: &mut State, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        let n = product(&[batch, self.d_model()], "batch * d_model")?;
        check_len(x.len(), n, "x", "batch * d_model")?;
        let mut y = vec![0f32; n];
        // SAFETY: x and y hold n floats; both handles are valid.
        check(unsafe {
            sys::fwp_layer_step_with_state(self.as_raw(), state.as_raw(), x.as_ptr(), to_i64(batch, "batch")?, y.as_mut_ptr())
        })?;
        Ok(y)
    }
}
