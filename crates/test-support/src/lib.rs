//! Helpers shared by rune's integration tests that drive real daemons: a private containerd
//! 1.6 (own config, root, state, sockets, and a mount namespace with a tmpfs on /run), with or
//! without its CRI plugin; busybox and pause images built locally (no registry is reachable);
//! commands with time-outs; and the process, mount and cgroup checks that tell whether a test
//! leaked anything.
//!
//! Nothing here names a test binary of a particular crate: the binaries under test are passed
//! in as [`Binaries`], and the workspace's target directory is found from the running test
//! executable's location (`target/<profile>/deps/<test>`).

pub mod cgroup;
pub mod cmd;
pub mod containerd;
pub mod fsutil;
pub mod image;
pub mod node;
pub mod procs;

pub use cgroup::remove_cgroups_named;
pub use cmd::{describe, run_cmd, sh, wait_for, Output, Spawned};
pub use containerd::{Binaries, Containerd, ContainerdOpts, CriOpts, CRI_NAMESPACE, RUNTIME};
pub use fsutil::{cached_dir, mount_points, mount_points_of, unmount_below, TempDir};
pub use image::{
    busybox_image_tar, busybox_oci_layout, busybox_rootfs, pause_image_tar, IMAGE_REF,
    PAUSE_IMAGE_REF,
};
pub use node::{enclave_tools, shim_binaries, Node};
pub use procs::{
    alive, all_pids, cmdline, kill_exact, memory_kib, proc_ppid, proc_start_time, proc_state,
};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `<prefix>-<pid>-<n>`, unique on this machine while this process lives.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// The workspace's root directory (this crate lives in `crates/test-support`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| manifest.join("../.."))
}

/// The profile directory the running test executable was built into (`target/debug` for
/// `target/debug/deps/<test>-<hash>`): the binaries of the same build sit there.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let dir = exe.parent().unwrap_or(Path::new("/")).to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(&dir).to_path_buf()
    } else {
        dir
    }
}

/// The workspace's target directory: `CARGO_TARGET_DIR` when the caller's cargo used one,
/// else the nearest ancestor of the test executable that cargo tagged with `CACHEDIR.TAG`,
/// else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    profile_dir()
        .ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `<target>/test-cache`: images and root filesystems built once and shared by every test
/// crate (the same entries as rune's own tests use).
pub fn cache_dir() -> PathBuf {
    let dir = target_dir().join("test-cache");
    std::fs::create_dir_all(&dir).expect("create test cache dir");
    dir
}

/// Builds `bin` of `package` into `<target>/<sub_target>` and returns its path. A separate
/// target directory, because the `cargo test` that runs us may hold the lock on its own.
#[track_caller]
pub fn cargo_build_bin(package: &str, bin: &str, sub_target: &str) -> PathBuf {
    let target = target_dir().join(sub_target);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--bin", bin, "--target-dir"])
        .arg(&target)
        .current_dir(workspace_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo build -p {package}: {e}"));
    assert!(status.success(), "cargo build -p {package} failed");
    let built = target.join("debug").join(bin);
    assert!(built.is_file(), "{} missing", built.display());
    built
}
