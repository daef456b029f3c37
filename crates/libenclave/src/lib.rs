//! Enclave containers: OCI containers whose init process runs the workload through an enclave
//! runtime (a PAL) instead of `execve`.
//!
//! rune uses this crate in three places: at create it reads the enclave settings
//! ([`EnclaveConfig`]), checks the host ([`host`]), keeps the settings ([`EnclaveState`]) and
//! hands libcontainer an [`InitRunelet`] as the container's executor; at exec it hands it a
//! [`Runelet`]. Nothing here knows about the shim or the command line.

mod agent;
mod config;
mod error;
mod exec;
mod fds;
#[cfg(test)]
mod fuzz_tests;
pub mod host;
mod init_runelet;
pub mod launch;
mod process;
mod protocol;
mod runelet;
mod sealed;
mod signals;
mod state;

pub use config::{EnclaveConfig, EnclaveType};
pub use error::EnclaveError;
pub use exec::adapt_exec_process;
pub use init_runelet::InitRunelet;
pub use runelet::Runelet;
pub use sealed::ensure_sealed_exe;
pub use state::{connect_agent, listen_agent, remove as remove_state, EnclaveState};
