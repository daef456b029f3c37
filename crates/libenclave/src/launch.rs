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

/// Where PALs may be loaded from when the node says nothing else: root-owned install
/// directories (rune's own, and where Occlum and Inclavare Containers install theirs).
const DEFAULT_PAL_DIRS: &[&str] = &[
    "/usr/local/lib/rune",
    "/usr/lib/rune",
    "/opt/occlum/build/lib",
    "/usr/lib/inclavare-containers",
];

/// The node's list of PAL directories, colon-separated, replacing the defaults. It comes from
/// rune's own environment (the node's daemons), never from a container.
pub const PAL_DIRS_ENV: &str = "RUNE_PAL_DIRS";

/// Checks that can fail before anything exists: the host serves the type, and the PAL is a
/// file inside one of the node's PAL directories.
///
/// The PAL is named by the container's env or annotations, and rune loads it as root on the
/// host, where its initialisers run: a path the container author chose freely would let any
/// container run code as host root (a library written into a volume, say). So the path must
/// resolve, symlinks followed, to a file beneath a directory the node allows.
pub fn check(config: &EnclaveConfig) -> Result<(), EnclaveError> {
    host::check_available(config.enclave_type)?;
    let path = &config.runtime_path;
    let refuse = |reason: String| EnclaveError::Runtime {
        path: path.clone(),
        reason,
    };
    if !path.is_absolute() {
        return Err(refuse(
            "not an absolute path (ENCLAVE_RUNTIME_PATH is a host path)".into(),
        ));
    }
    let resolved = fs::canonicalize(path).map_err(|e| refuse(e.to_string()))?;
    if !fs::metadata(&resolved)
        .map_err(|e| refuse(e.to_string()))?
        .is_file()
    {
        return Err(refuse("not a file".into()));
    }
    let dirs = PalDirs::of_node(std::env::var(PAL_DIRS_ENV).ok().as_deref());
    if !dirs.existing.iter().any(|dir| resolved.starts_with(dir)) {
        return Err(refuse(dirs.refusal()));
    }
    Ok(())
}

/// The node's PAL directories: as configured, and those of them that exist (resolved).
struct PalDirs {
    /// Whether `RUNE_PAL_DIRS` named them, rather than the defaults.
    from_env: bool,
    named: Vec<String>,
    existing: Vec<PathBuf>,
}

impl PalDirs {
    /// From the value of `RUNE_PAL_DIRS`, if set.
    fn of_node(listed: Option<&str>) -> PalDirs {
        let named: Vec<String> = match listed {
            Some(list) => list
                .split(':')
                .filter(|d| !d.is_empty())
                .map(String::from)
                .collect(),
            None => DEFAULT_PAL_DIRS.iter().map(|d| d.to_string()).collect(),
        };
        // A directory that does not exist holds no PAL, and resolving each one lets a PAL's
        // resolved path be compared with it.
        let existing = named
            .iter()
            .filter_map(|d| fs::canonicalize(d).ok())
            .collect();
        PalDirs {
            from_env: listed.is_some(),
            named,
            existing,
        }
    }

    /// Why a PAL outside them is refused, and what the node's administrator can do. With no
    /// directory in effect a bare list would be empty, which tells nothing: then say where the
    /// list comes from and how to set it.
    fn refusal(&self) -> String {
        if !self.existing.is_empty() {
            let existing: Vec<String> = self
                .existing
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            return format!(
                "not in a PAL directory of this node ({}); install the PAL there, or list its \
                 directory in {PAL_DIRS_ENV} in the environment of the daemon that runs rune",
                existing.join(", ")
            );
        }
        let how = format!(
            "set {PAL_DIRS_ENV} to a colon-separated list of root-owned directories in the \
             environment of the daemon that runs rune (dockerd, containerd) and install the \
             PAL in one of them"
        );
        let defaults = DEFAULT_PAL_DIRS.join(", ");
        if !self.from_env {
            format!(
                "no PAL directory is configured on this node: none of the default ones exists \
                 ({defaults}); install the PAL in one of them (`make install` puts \
                 liberpal-software.so in /usr/local/lib/rune), or {how}"
            )
        } else if self.named.is_empty() {
            format!(
                "no PAL directory is configured on this node ({PAL_DIRS_ENV} is set but lists \
                 none); {how}, or unset it for the defaults ({defaults})"
            )
        } else {
            format!(
                "no PAL directory is configured on this node: none of those in {PAL_DIRS_ENV} \
                 exists ({}); {how}",
                self.named.join(", ")
            )
        }
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
    // The resolved path `check` admitted, so that a symlink changed since cannot redirect it.
    let path = fs::canonicalize(&config.runtime_path)
        .map_err(|e| EnclaveError::io(config.runtime_path.display().to_string(), e))?;
    let library = PalLibrary::open(&path)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnclaveType;

    #[test]
    fn pals_load_only_from_the_node_pal_directories() {
        let allowed = std::env::temp_dir().join(format!("rune-pal-dir-{}", std::process::id()));
        let other = allowed.with_extension("other");
        fs::create_dir_all(&allowed).unwrap();
        fs::create_dir_all(&other).unwrap();
        fs::write(allowed.join("liberpal-x.so"), b"").unwrap();
        fs::write(other.join("liberpal-x.so"), b"").unwrap();
        std::os::unix::fs::symlink(other.join("liberpal-x.so"), allowed.join("link.so")).unwrap();
        let config = |path: std::path::PathBuf| EnclaveConfig {
            enclave_type: EnclaveType::Software,
            runtime_path: path,
            runtime_args: String::new(),
            runtime_loglevel: "info".into(),
        };

        std::env::set_var(PAL_DIRS_ENV, &allowed);
        assert!(check(&config(allowed.join("liberpal-x.so"))).is_ok());
        let err = check(&config(other.join("liberpal-x.so"))).unwrap_err();
        assert!(err.to_string().contains(PAL_DIRS_ENV), "{err}");
        // A symlink inside the directory pointing out of it does not count.
        assert!(check(&config(allowed.join("link.so"))).is_err());
        assert!(check(&config(allowed.join("../x/liberpal-x.so"))).is_err());

        // Set but empty: nothing is allowed, and the error says how to change that rather
        // than listing no directory.
        std::env::set_var(PAL_DIRS_ENV, "");
        let err = check(&config(allowed.join("liberpal-x.so")))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("()"), "{err}");
        assert!(err.contains("no PAL directory is configured"), "{err}");
        assert!(err.contains(&format!("set {PAL_DIRS_ENV} to")), "{err}");
        std::env::remove_var(PAL_DIRS_ENV);

        let _ = fs::remove_dir_all(&allowed);
        let _ = fs::remove_dir_all(&other);
    }

    #[test]
    fn refusal_with_no_pal_directory_says_how_to_configure_one() {
        let how = format!(
            "set {PAL_DIRS_ENV} to a colon-separated list of root-owned directories in the \
             environment of the daemon that runs rune"
        );

        let empty = PalDirs::of_node(Some(":"));
        assert!(empty.existing.is_empty());
        let msg = empty.refusal();
        assert!(
            msg.starts_with(&format!(
                "no PAL directory is configured on this node ({PAL_DIRS_ENV} is set but lists \
                 none); {how}"
            )),
            "{msg}"
        );
        assert!(
            msg.contains("unset it for the defaults (/usr/local/lib/rune, "),
            "{msg}"
        );

        let missing = PalDirs::of_node(Some("/nonexistent/rune-pal-a:/nonexistent/rune-pal-b"));
        assert!(missing.existing.is_empty());
        let msg = missing.refusal();
        assert!(
            msg.contains(&format!(
                "none of those in {PAL_DIRS_ENV} exists (/nonexistent/rune-pal-a, \
                 /nonexistent/rune-pal-b); {how}"
            )),
            "{msg}"
        );

        // Built as `of_node(None)` finds them on a node without any of the defaults (this
        // host may have some).
        let defaults = PalDirs {
            from_env: false,
            named: DEFAULT_PAL_DIRS.iter().map(|d| d.to_string()).collect(),
            existing: Vec::new(),
        };
        let msg = defaults.refusal();
        assert!(
            msg.contains(
                "none of the default ones exists (/usr/local/lib/rune, /usr/lib/rune, \
                 /opt/occlum/build/lib, /usr/lib/inclavare-containers); install the PAL in one \
                 of them"
            ),
            "{msg}"
        );
        assert!(msg.contains(&how), "{msg}");

        for msg in [empty.refusal(), missing.refusal(), defaults.refusal()] {
            assert!(!msg.contains("()"), "{msg}");
        }
    }

    #[test]
    fn refusal_lists_the_existing_pal_directories() {
        let dir = std::env::temp_dir();
        let listed = format!("{}:/nonexistent/rune-pal-c", dir.display());
        let dirs = PalDirs::of_node(Some(&listed));
        let resolved = fs::canonicalize(&dir).unwrap();
        assert_eq!(dirs.existing, std::slice::from_ref(&resolved));
        assert_eq!(
            dirs.refusal(),
            format!(
                "not in a PAL directory of this node ({}); install the PAL there, or list its \
                 directory in {PAL_DIRS_ENV} in the environment of the daemon that runs rune",
                resolved.display()
            )
        );
    }
}
