//! Enclave Runtime PAL API (v1, v2, v3), ABI-compatible with Inclavare Containers' `rune`.
//!
//! A PAL ("platform abstraction layer", `liberpal-*.so`) is the shared library through which an
//! enclave runtime (Occlum, Graphene, the skeleton, ...) is driven. This crate serves both sides:
//!
//! - runtimes load a PAL with [`Pal::load`] and drive it (`init`, `exec`/`create_process` +
//!   `wait`, `kill`, `destroy`, `local_report`), see [`loader`];
//! - PALs written in Rust implement [`EnclaveRuntime`] and export the C symbols with
//!   [`export_pal_v3!`], see [`export`].
//!
//! [`abi`] has the `#[repr(C)]` structs, identical to `include/enclave_pal.h`.

pub mod abi;
mod error;
pub mod export;
pub mod loader;

pub use error::{errno_name, PalError};
pub use export::EnclaveRuntime;
pub use loader::{Pal, PalLibrary};
