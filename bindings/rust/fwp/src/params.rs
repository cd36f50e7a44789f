//! Parameter access shared by layers and models.

use std::ffi::CStr;

use fwp_sys as sys;

use crate::error::{to_usize, Error, Result, Status};

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

/// Generates the parameter methods of a handle type from the matching C functions.
macro_rules! param_methods {
    ($ty:ty, $what:literal, $num:path, $info:path, $index:path, $get:path, $set:path, $grad:path) => {
        impl $ty {
            #[doc = concat!("The number of parameter tensors of the ", $what, ".")]
            pub fn num_params(&self) -> usize {
                let mut count = 0i64;
                // SAFETY: valid handle and output pointer; the call cannot fail then.
                $crate::error::check(unsafe { $num(self.raw.as_ptr(), &mut count) }).expect(stringify!($num));
                count as usize
            }

            #[doc = concat!("Describes parameter number `index` of the ", $what, ".")]
            pub fn param_info(&self, index: usize) -> $crate::Result<$crate::ParamInfo> {
                let mut raw = std::mem::MaybeUninit::<fwp_sys::fwp_param_info>::zeroed();
                let index = $crate::error::to_i64(index, "index")?;
                // SAFETY: valid handle; info is written on success.
                $crate::error::check(unsafe { $info(self.raw.as_ptr(), index, raw.as_mut_ptr()) })?;
                $crate::ParamInfo::from_raw(unsafe { &raw.assume_init() })
            }

            #[doc = concat!("Describes every parameter of the ", $what, ", in index order.")]
            pub fn params(&self) -> $crate::Result<Vec<$crate::ParamInfo>> {
                (0..self.num_params()).map(|i| self.param_info(i)).collect()
            }

            #[doc = concat!("The index of the ", $what, "'s parameter called `name`.")]
            pub fn param_index(&self, name: &str) -> $crate::Result<usize> {
                let name = std::ffi::CString::new(name)
                    .map_err(|_| $crate::Error::new($crate::Status::InvalidArgument, "name contains a NUL byte"))?;
                let mut index = 0i64;
                // SAFETY: valid handle and NUL-terminated name.
                $crate::error::check(unsafe { $index(self.raw.as_ptr(), name.as_ptr(), &mut index) })?;
                $crate::error::to_usize(index, "index")
            }

            #[doc = concat!("Copies the values of parameter `index` of the ", $what, " (row-major).")]
            pub fn param(&self, index: usize) -> $crate::Result<Vec<f32>> {
                let numel = self.param_info(index)?.numel;
                let mut data = vec![0f32; numel];
                // SAFETY: data holds numel floats.
                $crate::error::check(unsafe {
                    $get(self.raw.as_ptr(), index as i64, data.as_mut_ptr(), numel as i64)
                })?;
                Ok(data)
            }

            #[doc = concat!("Overwrites parameter `index` of the ", $what, "; `data` must hold numel finite floats.")]
            pub fn set_param(&mut self, index: usize, data: &[f32]) -> $crate::Result<()> {
                let numel = self.param_info(index)?.numel;
                $crate::error::check_len(data.len(), numel, "data", "numel")?;
                // SAFETY: data holds numel floats.
                $crate::error::check(unsafe { $set(self.raw.as_ptr(), index as i64, data.as_ptr(), numel as i64) })
            }

            #[doc = concat!("Copies the accumulated gradient of parameter `index` of the ", $what, ".")]
            pub fn grad(&self, index: usize) -> $crate::Result<Vec<f32>> {
                let numel = self.param_info(index)?.numel;
                let mut data = vec![0f32; numel];
                // SAFETY: data holds numel floats.
                $crate::error::check(unsafe {
                    $grad(self.raw.as_ptr(), index as i64, data.as_mut_ptr(), numel as i64)
                })?;
                Ok(data)
            }

            #[doc = concat!("Copies the values of the ", $what, "'s parameter called `name`.")]
            pub fn param_by_name(&self, name: &str) -> $crate::Result<Vec<f32>> {
                self.param(self.param_index(name)?)
            }
        }
    };
}

pub(crate) use param_methods;
