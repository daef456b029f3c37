//! What rune keeps on disk for an enclave container, beside libcontainer's state: the enclave
//! settings, the user's bundle, the effective config.json libcontainer runs (with the enclave's
//! devices added and the settings removed from the env) and the init-runelet's agent socket.
//!
//! It lives in `<root>/@enclave/<id>/`: `@` cannot occur in a container id, and libcontainer
//! insists on creating `<root>/<id>/` itself.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::config::EnclaveConfig;
use crate::error::EnclaveError;

const STATE_FILE: &str = "enclave.json";
const AGENT_SOCKET: &str = "agent.sock";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnclaveState {
    #[serde(flatten)]
    pub config: EnclaveConfig,
    /// The bundle the user gave; libcontainer runs the effective copy in this directory.
    pub bundle: PathBuf,
}

/// The per-container directory.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join("@enclave").join(id)
}

impl EnclaveState {
    pub fn load(root: &Path, id: &str) -> Option<Self> {
        Self::load_from(&dir(root, id))
    }

    /// The state kept beside the effective bundle libcontainer records for the container.
    pub fn load_from(bundle: &Path) -> Option<Self> {
        let bytes = fs::read(bundle.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the effective config.json (rootfs made absolute, so it still points into the
    /// user's bundle) and the state; returns the directory to hand libcontainer as the bundle.
    pub fn create(&self, root: &Path, id: &str, spec: &Spec) -> Result<PathBuf, EnclaveError> {
        let dir = dir(root, id);
        fs::create_dir_all(&dir)
            .map_err(|e| EnclaveError::io(format!("creating {}", dir.display()), e))?;

        let mut effective = spec.clone();
        if let Some(mut root_fs) = effective.root().clone() {
            let absolute = self.bundle.join(root_fs.path());
            root_fs.set_path(absolute);
            effective.set_root(Some(root_fs));
        }
        write_atomically(
            &dir.join("config.json"),
            &serde_json::to_vec_pretty(&effective),
        )?;
        write_atomically(&dir.join(STATE_FILE), &serde_json::to_vec_pretty(self))?;
        Ok(dir)
    }
}

fn write_atomically(
    path: &Path,
    body: &Result<Vec<u8>, serde_json::Error>,
) -> Result<(), EnclaveError> {
    let body = body
        .as_ref()
        .map_err(|e| EnclaveError::Protocol(format!("{}: {e}", path.display())))?;
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)
        .map_err(|e| EnclaveError::io(format!("writing {}", tmp.display()), e))?;
    file.write_all(body)
        .map_err(|e| EnclaveError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| EnclaveError::io(format!("writing {}", path.display()), e))
}

/// Removes everything rune kept for the container.
pub fn remove(root: &Path, id: &str) {
    let dir = dir(root, id);
    let _ = fs::remove_dir_all(&dir);
    if let Some(parent) = dir.parent() {
        // Only succeeds when no other enclave container is left.
        let _ = fs::remove_dir(parent);
    }
}

/// The directory as a short path: socket paths are limited to 108 bytes and container state
/// paths under containerd easily exceed that, so sockets are reached through `/proc/self/fd`.
fn short_dir(root: &Path, id: &str) -> Result<(OwnedFd, PathBuf), EnclaveError> {
    let dir = dir(root, id);
    let fd = open(
        &dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| EnclaveError::io(format!("opening {}", dir.display()), e.into()))?;
    // SAFETY: open(2) just returned this fd and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let short = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    Ok((fd, short))
}

/// Listens on the container's agent socket; the init-runelet inherits the listener.
pub fn listen_agent(root: &Path, id: &str) -> Result<UnixListener, EnclaveError> {
    let (_dir, short) = short_dir(root, id)?;
    UnixListener::bind(short.join(AGENT_SOCKET))
        .map_err(|e| EnclaveError::io("listening on the enclave agent socket", e))
}

/// Connects to the init-runelet of a running enclave container.
pub fn connect_agent(root: &Path, id: &str) -> Result<UnixStream, EnclaveError> {
    let (_dir, short) = short_dir(root, id)?;
    UnixStream::connect(short.join(AGENT_SOCKET))
        .map_err(|e| EnclaveError::io("connecting to the enclave agent socket", e))
}
