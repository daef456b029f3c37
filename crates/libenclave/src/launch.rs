//! Setting up an enclave container on the host, just before libcontainer creates it.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::runtime::Spec;
use pal::PalLibrary;

use crate::config::EnclaveConfig;
use crate::error::EnclaveError;
use crate::host;
use crate::init_runelet::{HostFd, InitRunelet};
use crate::state::{self, EnclaveState};

/// Checks that can fail before anything exists: the host serves the type, the PAL is a file.
pub fn check(config: &EnclaveConfig) -> Result<(), EnclaveError> {
    host::check_available(config.enclave_type)?;
    let path = &config.runtime_path;
    if !path.is_absolute() {
        return Err(EnclaveError::Runtime {
            path: path.clone(),
            reason: "not an absolute path (ENCLAVE_RUNTIME_PATH is a host path)".into(),
        });
    }
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(EnclaveError::Runtime {
            path: path.clone(),
            reason: "not a file".into(),
        }),
        Err(e) => Err(EnclaveError::Runtime {
            path: path.clone(),
            reason: e.to_string(),
        }),
    }
}

/// What libcontainer needs to create an enclave container.
pub struct Launch {
    /// The bundle to hand libcontainer: the effective config.json beside rune's enclave state.
    pub bundle: PathBuf,
    pub executor: InitRunelet,
    // Held open until the init-runelet has inherited it.
    _agent: UnixListener,
}

/// Loads the PAL on the host, writes the effective config (enclave devices added, enclave
/// settings out of the env) and opens the agent socket. On error nothing is left behind.
pub fn prepare(
    root: &Path,
    id: &str,
    bundle: &Path,
    spec: &Spec,
    config: &EnclaveConfig,
) -> Result<Launch, EnclaveError> {
    let host_fds = open_fds();
    let library = PalLibrary::open(&config.runtime_path)?;
    let pal_fds: Vec<HostFd> = open_fds()
        .into_iter()
        .filter(|fd| !host_fds.contains(fd))
        .collect();

    let mut effective = spec.clone();
    host::add_host_resources(&mut effective, config.enclave_type)?;
    let state = EnclaveState {
        config: config.clone(),
        bundle: bundle.to_path_buf(),
    };
    let result = state.create(root, id, &effective).and_then(|dir| {
        let agent = state::listen_agent(root, id)?;
        let executor = InitRunelet::new(
            Arc::new(library),
            config.clone(),
            agent.as_raw_fd(),
            host_fds,
            pal_fds,
        );
        Ok(Launch {
            bundle: dir,
            executor,
            _agent: agent,
        })
    });
    if result.is_err() {
        state::remove(root, id);
    }
    result
}

/// The fds open now, each with the identity of what it refers to: the number alone is not
/// enough, as an fd closed later (the directory listing's own, for one) gets reused by
/// libcontainer before the container's init runs.
fn open_fds() -> Vec<HostFd> {
    crate::fds::open_fds()
        .into_iter()
        .filter_map(HostFd::of)
        .collect()
}
