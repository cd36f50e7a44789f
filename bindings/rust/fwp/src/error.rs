//! Status codes and the error type of every fallible call.

use std::ffi::CStr;
use std::fmt;

use fwp_sys as sys;

/// The kind of failure, mirroring `fwp_status` of the C API.
///
/// Values are fixed by the C header. A code this version of the bindings does
/// not know (from a newer libfwp) is kept as [`Status::Other`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Status {
    /// A value is out of its allowed range or inconsistent.
    InvalidArgument,
    /// A required pointer argument is NULL.
    NullPointer,
    /// Sizes do not match each other or the object.
    ShapeMismatch,
    /// An index or enum value is out of range.
    OutOfRange,
    /// The call is not valid now (e.g. backward before forward).
    BadState,
    /// The operation is not available in this build or configuration.
    Unsupported,
    /// No usable GPU, or a CUDA/cuBLAS error.
    Device,
    /// Host or device memory could not be allocated.
    OutOfMemory,
    /// A file could not be opened, read, written or renamed.
    Io,
    /// A file is truncated, corrupted or not what was expected.
    Format,
    /// Handles from different contexts (or an optimizer of another model) were combined.
    ContextMismatch,
    /// A bug in fwp.
    Internal,
    /// A collective of a distributed group failed or timed out (a rank died,
    /// hangs, or its all-reduce closure failed); the group cannot go on
    /// ([`Dist`](crate::distributed::Dist)).
    Distributed,
    /// A status code unknown to these bindings.
    Other(i32),
}

impl Status {
    /// Converts a C status code (which must not be `FWP_OK`).
    pub(crate) fn from_raw(status: sys::fwp_status) -> Status {
        match status {
            sys::FWP_ERR_INVALID_ARGUMENT => Status::InvalidArgument,
            sys::FWP_ERR_NULL_POINTER => Status::NullPointer,
            sys::FWP_ERR_SHAPE_MISMATCH => Status::ShapeMismatch,
            sys::FWP_ERR_OUT_OF_RANGE => Status::OutOfRange,
            sys::FWP_ERR_BAD_STATE => Status::BadState,
            sys::FWP_ERR_UNSUPPORTED => Status::Unsupported,
            sys::FWP_ERR_DEVICE => Status::Device,
            sys::FWP_ERR_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::FWP_ERR_IO => Status::Io,
            sys::FWP_ERR_FORMAT => Status::Format,
            sys::FWP_ERR_CONTEXT_MISMATCH => Status::ContextMismatch,
            sys::FWP_ERR_INTERNAL => Status::Internal,
            sys::FWP_ERR_DISTRIBUTED => Status::Distributed,
            other => Status::Other(other.0),
        }
    }

    /// The C status code.
    pub fn code(self) -> i32 {
        match self {
            Status::InvalidArgument => sys::FWP_ERR_INVALID_ARGUMENT.0,
            Status::NullPointer => sys::FWP_ERR_NULL_POINTER.0,
            Status::ShapeMismatch => sys::FWP_ERR_SHAPE_MISMATCH.0,
            Status::OutOfRange => sys::FWP_ERR_OUT_OF_RANGE.0,
            Status::BadState => sys::FWP_ERR_BAD_STATE.0,
            Status::Unsupported => sys::FWP_ERR_UNSUPPORTED.0,
            Status::Device => sys::FWP_ERR_DEVICE.0,
            Status::OutOfMemory => sys::FWP_ERR_OUT_OF_MEMORY.0,
            Status::Io => sys::FWP_ERR_IO.0,
            Status::Format => sys::FWP_ERR_FORMAT.0,
            Status::ContextMismatch => sys::FWP_ERR_CONTEXT_MISMATCH.0,
            Status::Internal => sys::FWP_ERR_INTERNAL.0,
            Status::Distributed => sys::FWP_ERR_DISTRIBUTED.0,
            Status::Other(code) => code,
        }
    }

    /// The library's short description of the status (`fwp_status_string`).
    pub fn description(self) -> String {
        // SAFETY: fwp_status_string accepts any value and returns a static string.
        unsafe { CStr::from_ptr(sys::fwp_status_string(sys::fwp_status(self.code()))) }.to_string_lossy().into_owned()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

/// A failed call: the status and the message that names the argument and the problem.
///
/// Errors from the library carry `fwp_last_error_message()`, read on the
/// calling thread right after the failing call. The bindings raise the same
/// statuses themselves for problems they detect before calling C (e.g. a slice
/// of the wrong length).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    /// Creates an error with a status and a message.
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    /// The kind of failure.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The message, e.g. `"fwp_layer_create: config->d_head must be >= 1 (got 0)"`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Builds the error of a failed C call from the thread's last error message.
    pub(crate) fn from_last(status: sys::fwp_status) -> Error {
        // SAFETY: the message is a NUL-terminated thread-local string, never NULL,
        // valid until the next fwp call on this thread; it is copied at once.
        let message = unsafe { CStr::from_ptr(sys::fwp_last_error_message()) }.to_string_lossy().into_owned();
        Error { status: Status::from_raw(status), message }
    }

    pub(crate) fn shape(message: impl Into<String>) -> Error {
        Error::new(Status::ShapeMismatch, message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(Status::InvalidArgument, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

/// The result type of fallible calls.
pub type Result<T> = std::result::Result<T, Error>;

/// Turns a C status into a `Result`.
pub(crate) fn check(status: sys::fwp_status) -> Result<()> {
    if status == sys::FWP_OK {
        Ok(())
    } else {
        Err(Error::from_last(status))
    }
}

/// Converts a size to the C API's `int64_t`.
pub(crate) fn to_i64(value: usize, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::invalid(format!("{what} = {value} does not fit in int64_t")))
}

/// Converts a size reported by the C API to `usize`.
pub(crate) fn to_usize(value: i64, what: &str) -> Result<usize> {
    usize::try_from(value).map_err(|_| Error::new(Status::Internal, format!("libfwp reported {what} = {value}")))
}

/// The product of sizes, or an error on overflow.
pub(crate) fn product(sizes: &[usize], what: &str) -> Result<usize> {
    sizes
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| Error::invalid(format!("{what}: the size {sizes:?} overflows")))
}

/// Checks the length of a slice against the expected element count.
pub(crate) fn check_len(len: usize, expected: usize, what: &str, formula: &str) -> Result<()> {
    if len == expected {
        Ok(())
    } else {
        Err(Error::shape(format!("{what} has {len} elements, expected {formula} = {expected}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip() {
        for code in 1..=13 {
            let status = Status::from_raw(sys::fwp_status(code));
            assert!(!matches!(status, Status::Other(_)), "code {code} is known");
            assert_eq!(status.code(), code);
            assert!(!status.description().is_empty());
        }
        assert_eq!(Status::from_raw(sys::fwp_status(99)), Status::Other(99));
        assert_eq!(Status::Other(99).code(), 99);
        assert_eq!(Status::Other(99).description(), "unknown status");
    }

    #[test]
    fn ok_is_not_an_error() {
        assert!(check(sys::FWP_OK).is_ok());
    }

    #[test]
    fn size_helpers() {
        assert_eq!(product(&[2, 3, 4], "x").unwrap(), 24);
        assert_eq!(product(&[usize::MAX, 2], "x").unwrap_err().status(), Status::InvalidArgument);
        let err = check_len(5, 6, "y", "batch * d_model").unwrap_err();
        assert_eq!(err.status(), Status::ShapeMismatch);
        assert_eq!(err.message(), "y has 5 elements, expected batch * d_model = 6");
        assert!(to_i64(usize::MAX, "n").is_err());
        assert!(to_usize(-1, "n").is_err());
    }
}
