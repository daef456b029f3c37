//! A node set up for enclave containers as an operator would set it up, private to one test:
//! the provider's signing key, a signer policy admitting it, the report key of the software
//! PAL, the PAL in a PAL directory and the shim's config file, all handed to containerd (and
//! so to the shim and rune) through the environment.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::cmd::run_cmd;
use crate::containerd::{Binaries, ContainerdOpts};
use crate::fsutil::TempDir;
use crate::{profile_dir, target_dir, workspace_root};

/// Finds `name` in the profile directory of the running test's build, else builds `package`
/// into `<target>/<sub_target>` (the `cargo test` running us holds the lock on its own target
/// dir, and builds other packages' binaries only when their tests run too).
#[track_caller]
fn built(package: &str, name: &str, sub_target: &str) -> PathBuf {
    let here = profile_dir().join(name);
    if here.is_file() {
        return here;
    }
    let target = target_dir().join(sub_target);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--target-dir"])
        .arg(&target)
        .current_dir(workspace_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo build -p {package}: {e}"));
    assert!(status.success(), "cargo build -p {package} failed");
    let path = target.join("debug").join(name);
    assert!(path.is_file(), "{} missing after the build", path.display());
    path
}

/// The shim and rune under test: those of the running test's build, else built on the spot.
pub fn shim_binaries() -> Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        Binaries::new(
            built("shim-rune", "containerd-shim-rune-v2", "test-support-bins"),
            built("rune", "rune", "test-support-bins"),
        )
    })
    .clone()
}

/// `rune-enclave` and the software PAL of this workspace.
pub fn enclave_tools() -> &'static (PathBuf, PathBuf) {
    static TOOLS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    TOOLS.get_or_init(|| {
        (
            built("rune-enclave", "rune-enclave", "test-support-tools"),
            built(
                "liberpal-software",
                "libliberpal_software.so",
                "test-support-tools",
            ),
        )
    })
}

/// A node's enclave set-up, in a private directory removed on drop.
pub struct Node {
    pub dir: TempDir,
    /// The shim's config file (`RUNE_SHIM_CONFIG`).
    pub config: PathBuf,
    /// The provider's signing key.
    pub key: PathBuf,
    /// Its signer identity (what policies name).
    pub signer: String,
}

impl Node {
    /// Provider key, signer policy admitting it and `extra_signers`, report key, shim config
    /// (`extra_config` is appended to its `[enclave_runtime]` table; `tail` after everything).
    pub fn new(extra_config: &str, extra_signers: &[String]) -> Node {
        Node::with_tail(extra_config, extra_signers, "")
    }

    pub fn with_tail(extra_config: &str, extra_signers: &[String], tail: &str) -> Node {
        let (tool, pal) = enclave_tools();
        let dir = TempDir::new("node");
        let key = dir.join("signing-key.pem");
        let o = run_cmd(
            Command::new(tool).arg("keygen").arg("--out").arg(&key),
            Duration::from_secs(60),
        )
        .ok();
        let signer = o.stdout.trim().to_string();
        let mut signers = vec![signer.clone()];
        signers.extend_from_slice(extra_signers);
        let policy = format!(
            "allowed_signers = [{}]\nallow_debug = false\n",
            signers
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        fs::write(dir.join("policy.toml"), policy).expect("write policy");
        fs::write(dir.join("report.key"), [7u8; 32]).expect("write report key");
        fs::set_permissions(dir.join("report.key"), fs::Permissions::from_mode(0o600))
            .expect("chmod report key");
        let config = dir.join("shim.toml");
        fs::write(
            &config,
            format!(
                "[enclave_runtime]\nsigning_key = \"{}\"\ncache_dir = \"{}\"\n{extra_config}\n\
                 [enclave_runtime.software]\nenclave_runtime_path = \"{}\"\n{tail}\n",
                key.display(),
                dir.join("cache").display(),
                pal.display()
            ),
        )
        .expect("write shim config");
        Node {
            dir,
            config,
            key,
            signer,
        }
    }

    /// `opts` with this node's shim config, environment and tools.
    pub fn containerd_opts(&self, mut opts: ContainerdOpts) -> ContainerdOpts {
        let (tool, pal) = enclave_tools();
        let pal_dir = pal.parent().unwrap_or(Path::new("/"));
        opts.shim_config = Some(self.config.clone());
        opts.env.extend([
            ("RUNE_PAL_DIRS".into(), pal_dir.display().to_string()),
            (
                "RUNE_SOFTWARE_ENCLAVE_POLICY".into(),
                self.dir.join("policy.toml").display().to_string(),
            ),
            (
                "RUNE_SOFTWARE_ENCLAVE_REPORT_KEY".into(),
                self.dir.join("report.key").display().to_string(),
            ),
        ]);
        opts.extra_bins.push(tool.clone());
        opts
    }
}
