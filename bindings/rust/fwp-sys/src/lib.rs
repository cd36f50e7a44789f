//! Raw declarations of the C API of libfwp, mirroring `include/fwp/fwp.h`.
//!
//! Everything here is `unsafe` and follows the C header exactly: the same
//! names, the same field order, the same integer widths, and the header's
//! brief descriptions as documentation. The declarations are generated from the
//! headers by `scripts/gen_bindings.py` (into `src/generated.rs`, checked in);
//! the test suite fails when that file differs from a fresh generation, when
//! `scripts/check_bindings.py` finds a declaration that disagrees with the
//! header, or when the `layout` test finds a struct whose size or field
//! offsets differ from the C compiler's.
//!
//! C enums are represented as `#[repr(transparent)]` newtypes over `c_int`
//! with associated constants, not as Rust enums: a value coming from the
//! library (for example a status code added in a later minor version) may be
//! one this crate does not know, and turning it into a Rust enum would be
//! undefined behaviour.
//!
//! For a safe interface use the `fwp` crate.
#![allow(non_camel_case_types)]
#![deny(missing_docs)]

/// Declares a C enum as a transparent `c_int` newtype with one constant per
/// enumerator, so that unknown values from the library stay representable.
macro_rules! c_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)+ }) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub struct $name(pub core::ffi::c_int);
        $(
            $(#[$vmeta])*
            pub const $variant: $name = $name($value);
        )+
    };
}

/// Declares an opaque C struct that is only ever used behind a pointer
/// (the pattern of the Rustonomicon: not constructible, not `Send`, `Sync` or `Unpin`).
macro_rules! opaque {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[repr(C)]
        pub struct $name {
            _data: [u8; 0],
            _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
        }
    };
}

// Everything else is generated from the headers by scripts/gen_bindings.py.
#[rustfmt::skip]
mod generated;
pub use generated::*;

#[cfg(test)]
mod layout;
