//! Parameter access shared by layers and models.

use std::ffi::{c_char, CStr, CString};

use fwp_sys as sys;

use crate::error::{check, check_len, to_i64, to_usize, Error, Result, Status};

/// Description of one parameter tensor of a layer or model.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ParamInfo {
    /// Its name, e.g. `"q_proj.weight"`.
    pub name: String,
    /// Its sizes, row-major (1 to 4 dimensions).
    pub shape: Vec<usize>,
    /// The product of the sizes.
    pub numel: usize,
    /// Whether the optimizer updates it (`false` for fixed buffers).
    pub trainable: bool,
}

impl ParamInfo {
    pub(crate) fn from_raw(raw: &sys::fwp_param_info) -> Result<ParamInfo> {
        let ndim = usize::try_from(raw.ndim)
            .ok()
            .filter(|&n| (1..=sys::FWP_MAX_DIMS).contains(&n))
            .ok_or_else(|| Error::new(Status::Internal, format!("libfwp reported ndim = {}", raw.ndim)))?;
        let shape = raw.shape[..ndim].iter().map(|&s| to_usize(s, "a parameter size")).collect::<Result<Vec<_>>>()?;
        let name = if raw.name.is_null() {
            String::new()
        } else {
            // SAFETY: the name is NUL-terminated and owned by the live object.
            unsafe { CStr::from_ptr(raw.name) }.to_string_lossy().into_owned()
        };
        Ok(ParamInfo { name, shape, numel: to_usize(raw.numel, "numel")?, trainable: raw.trainable != 0 })
    }
}

/// The C functions that enumerate, read and write the parameters of one kind
/// of handle (`fwp_layer_*` or `fwp_model_*`); the parameter methods of
/// layers and of every model type go through one such table.
pub(crate) struct ParamApi<H> {
    pub(crate) num: unsafe extern "C" fn(*const H, *mut i64) -> sys::fwp_status,
    pub(crate) info: unsafe extern "C" fn(*const H, i64, *mut sys::fwp_param_info) -> sys::fwp_status,
    pub(crate) index: unsafe extern "C" fn(*const H, *const c_char, *mut i64) -> sys::fwp_status,
    pub(crate) get: unsafe extern "C" fn(*const H, i64, *mut f32, i64) -> sys::fwp_status,
    pub(crate) set: unsafe extern "C" fn(*mut H, i64, *const f32, i64) -> sys::fwp_status,
    pub(crate) grad: unsafe extern "C" fn(*const H, i64, *mut f32, i64) -> sys::fwp_status,
}

/// The parameter functions of layers.
pub(crate) const LAYER_PARAMS: ParamApi<sys::fwp_layer> = ParamApi {
    num: sys::fwp_layer_num_params,
    info: sys::fwp_layer_param_info,
    index: sys::fwp_layer_param_index,
    get: sys::fwp_layer_get_param,
    set: sys::fwp_layer_set_param,
    grad: sys::fwp_layer_get_grad,
};

/// The parameter functions of models (every kind).
pub(crate) const MODEL_PARAMS: ParamApi<sys::fwp_model> = ParamApi {
    num: sys::fwp_model_num_params,
    info: sys::fwp_model_param_info,
    index: sys::fwp_model_param_index,
    get: sys::fwp_model_get_param,
    set: sys::fwp_model_set_param,
    grad: sys::fwp_model_get_grad,
};

// Every method takes a handle that the caller guarantees to be live and owned
// by the object the call goes through.
impl<H> ParamApi<H> {
    pub(crate) fn num_params(&self, handle: *mut H) -> usize {
        let mut count = 0i64;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { (self.num)(handle, &mut count) }).expect("num_params of a live handle");
        count.max(0) as usize
    }

    pub(crate) fn param_info(&self, handle: *mut H, index: usize) -> Result<ParamInfo> {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_param_info>::zeroed();
        let index = to_i64(index, "index")?;
        // SAFETY: valid handle; info is written on success.
        check(unsafe { (self.info)(handle, index, raw.as_mut_ptr()) })?;
        // SAFETY: zero-initialised and filled by the library.
        ParamInfo::from_raw(unsafe { &raw.assume_init() })
    }

    pub(crate) fn params(&self, handle: *mut H) -> Result<Vec<ParamInfo>> {
        (0..self.num_params(handle)).map(|i| self.param_info(handle, i)).collect()
    }

    pub(crate) fn param_index(&self, handle: *mut H, name: &str) -> Result<usize> {
        let name = CString::new(name).map_err(|_| Error::invalid("name contains a NUL byte"))?;
        let mut index = 0i64;
        // SAFETY: valid handle and NUL-terminated name.
        check(unsafe { (self.index)(handle, name.as_ptr(), &mut index) })?;
        to_usize(index, "index")
    }

    pub(crate) fn param(&self, handle: *mut H, index: usize) -> Result<Vec<f32>> {
        let numel = self.param_info(handle, index)?.numel;
        let mut data = vec![0f32; numel];
        // SAFETY: data holds numel floats.
        check(unsafe { (self.get)(handle, index as i64, data.as_mut_ptr(), numel as i64) })?;
        Ok(data)
    }

    pub(crate) fn set_param(&self, handle: *mut H, index: usize, data: &[f32]) -> Result<()> {
        let numel = self.param_info(handle, index)?.numel;
        check_len(data.len(), numel, "data", "numel")?;
        // SAFETY: data holds numel floats.
        check(unsafe { (self.set)(handle, index as i64, data.as_ptr(), numel as i64) })
    }

    pub(crate) fn grad(&self, handle: *mut H, index: usize) -> Result<Vec<f32>> {
        let numel = self.param_info(handle, index)?.numel;
        let mut data = vec![0f32; numel];
        // SAFETY: data holds numel floats.
        check(unsafe { (self.grad)(handle, index as i64, data.as_mut_ptr(), numel as i64) })?;
        Ok(data)
    }
}
