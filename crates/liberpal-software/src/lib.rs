//! `liberpal-software`: the PAL (Enclave Runtime PAL API v3) of rune's enclave type
//! `software`, installed as `liberpal-software.so`.
//!
//! A software enclave is **measured, signed and confined, but not encrypted**: its image is
//! verified against a signature the node's policy admits, and its processes run with a reduced
//! view of the system (Landlock, seccomp, rlimits). Its memory is ordinary process memory: the
//! host kernel and host root can read it. `README.md` lists what is and is not enforced.
//!
//! - **Load time** (an ELF constructor, on the host): the node's signer policy and report key
//!   are read into process memory (`src/host.rs`).
//! - `pal_init`: `/.rune-enclave/{manifest,signature}.json` are loaded from the container's
//!   rootfs, the signature verified, the signer and debug flag admitted by the policy, every
//!   trusted file hashed. A failure is a negative errno plus one line on stderr.
//! - `pal_create_process`: only manifest entrypoints; the environment filtered by the manifest;
//!   the process confined before `execve` (`src/sandbox.rs`).
//! - `pal_exec`, `pal_kill`, `pal_destroy`: wait for, signal, kill the processes it started.
//! - `pal_get_local_report`: an HMAC-SHA256 report ([`report`]); [`verify_report`] checks it.
//!
//! As an rlib this crate is for verifiers ([`verify_report`]); its constructor does nothing
//! unless the code runs from a shared object, so linking it never touches the node's key.

mod host;
mod image;
mod log;
pub mod report;
mod runtime;
mod sandbox;

pub use host::{
    DEFAULT_POLICY_PATH, DEFAULT_REPORT_KEY_PATH, POLICY_ENV, REPORT_KEY_ENV, REPORT_KEY_LEN,
    ROOT_ENV,
};
pub use report::{verify_report, ReportBody, ReportError, REPORT_LEN};

pal::export_pal_v3!(runtime::SoftwareEnclave);
