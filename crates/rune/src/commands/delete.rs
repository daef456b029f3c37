use std::fs;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libcontainer::container::{Container, ContainerStatus};
use nix::sys::signal::{kill, Signal};

use crate::cli::GlobalOpts;
use crate::state;

/// How long a created enclave container gets to destroy its enclave before it is killed.
const ENCLAVE_DESTROY_GRACE: Duration = Duration::from_secs(5);

pub fn delete(global: &GlobalOpts, args: &liboci_cli::Delete) -> Result<u8> {
    let id = args.container_id.as_str();
    state::validate_id(id)?;
    let dir = state::container_dir(&global.root, id);
    if !dir.join("state.json").is_file() {
        // As runc: a directory without state is the remnant of an aborted create, and
        // `--force` on a container that is already gone succeeds.
        if dir.is_dir() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        libenclave::remove_state(&global.root, id);
        if args.force {
            return Ok(0);
        }
        bail!("container {id:?} does not exist");
    }

    let mut container = state::load(&global.root, id)?;
    let status = container.status();
    if matches!(status, ContainerStatus::Running | ContainerStatus::Paused) && !args.force {
        bail!(
            "cannot delete container {id:?}: it is {}; stop it first or use --force",
            state::status_name(status)
        );
    }
    let enclave = libenclave::EnclaveState::load(&global.root, id).is_some();
    if enclave && status == ContainerStatus::Created {
        destroy_enclave(&mut container);
    }
    // libcontainer's delete fails when the killed processes are slow to leave the cgroup; it
    // has then removed nothing yet, so it can simply run again.
    super::retry(|| {
        if !container.root.exists() {
            return Ok(());
        }
        container.delete(args.force).map_err(anyhow::Error::from)
    })
    .with_context(|| format!("cannot delete container {id:?}"))?;
    libenclave::remove_state(&global.root, id);
    tracing::info!(id, "deleted");
    Ok(0)
}

/// A created enclave container holds a built enclave but runs nothing yet; SIGTERM makes its
/// init-runelet call `pal_destroy` and exit, which a plain SIGKILL would skip.
fn destroy_enclave(container: &mut Container) {
    let Some(pid) = container.pid() else { return };
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + ENCLAVE_DESTROY_GRACE;
    while Instant::now() < deadline {
        state::refresh_status(container);
        if container.status() == ContainerStatus::Stopped {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!(
        id = container.id(),
        "the enclave did not stop on SIGTERM; killing it"
    );
}
