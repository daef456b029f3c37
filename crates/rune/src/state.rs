//! Container state on disk: id validation, lookup under `--root`, and the runc-shaped JSON that
//! containerd and docker parse from `state` and `list`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::{Container, ContainerStatus, State};
use nix::unistd::{access, AccessFlags};
use serde::Serialize;

/// The same rule as runc: ids become directory names, so no separators and no dot-only names.
pub fn validate_id(id: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+-.".contains(c);
    if id.is_empty() || id == "." || id == ".." || id.len() > 1024 || !id.chars().all(allowed) {
        bail!("invalid container id {id:?}: use letters, digits and _ + - . only");
    }
    Ok(())
}

/// Makes sure `--root` exists and can hold new container state.
pub fn ensure_root(root: &Path) -> Result<()> {
    let usable = fs::create_dir_all(root)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            if !root.is_dir() {
                bail!("not a directory");
            }
            access(root, AccessFlags::W_OK | AccessFlags::X_OK).map_err(anyhow::Error::from)
        });
    usable.map_err(|err| {
        anyhow!(
            "state directory --root {} is not usable ({err}): pass a writable directory",
            root.display()
        )
    })
}

pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Loads an existing container, with runc's "does not exist" wording that containerd matches.
pub fn load(root: &Path, id: &str) -> Result<Container> {
    validate_id(id)?;
    let dir = container_dir(root, id);
    if !dir.join("state.json").is_file() {
        bail!("container {id:?} does not exist");
    }
    let state =
        State::load(&dir).with_context(|| format!("cannot read the state of container {id:?}"))?;
    let mut container = Container { state, root: dir };
    refresh_status(&mut container);
    Ok(container)
}

/// The status from the init process, as libcontainer's `refresh_status` computes it, but
/// without its failure when the process exits between two reads of /proc: a process that
/// vanishes is simply stopped.
pub fn refresh_status(container: &mut Container) {
    let alive = container.pid().is_some_and(|pid| {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace()
                    .next()
                    .map(|state| state != "Z" && state != "X")
            })
            .unwrap_or(false)
    });
    let status = match (alive, container.status()) {
        (false, _) => ContainerStatus::Stopped,
        (true, status @ (ContainerStatus::Creating | ContainerStatus::Created)) => status,
        (true, ContainerStatus::Paused) => ContainerStatus::Paused,
        (true, _) => ContainerStatus::Running,
    };
    container.set_status(status);
}

pub fn status_name(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

/// `rune state` output, field for field what runc prints.
#[derive(Serialize)]
pub struct RuncState {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'static str,
    pub id: String,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
}

impl RuncState {
    pub fn of(container: &Container) -> Self {
        let status = container.status();
        let pid = match status {
            ContainerStatus::Stopped => 0,
            _ => container.pid().map_or(0, |p| p.as_raw()),
        };
        // An enclave container runs an effective copy of its bundle; report the user's.
        let bundle = libenclave::EnclaveState::load_from(container.bundle())
            .map(|enclave| enclave.bundle)
            .unwrap_or_else(|| container.bundle().clone());
        Self {
            oci_version: "1.0.2-dev",
            id: container.id().to_string(),
            pid,
            status: status_name(status),
            rootfs: rootfs_of(&bundle),
            bundle,
            created: container
                .created()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .unwrap_or_default(),
            owner: container
                .creator()
                .map(|o| o.to_string_lossy().into_owned())
                .unwrap_or_default(),
            annotations: container.state.annotations.clone(),
        }
    }
}

/// The bundle's rootfs as config.json names it, made absolute; empty when unreadable, as the
/// state of a container whose bundle is gone must still print.
fn rootfs_of(bundle: &Path) -> PathBuf {
    let root = fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v.pointer("/root/path")?.as_str().map(PathBuf::from));
    match root {
        Some(path) => bundle.join(path),
        None => PathBuf::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        for ok in ["abc", "a-b_c.d+e", "0123456789abcdef"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
