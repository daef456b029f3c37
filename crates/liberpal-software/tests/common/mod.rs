//! Test harness: the PAL built as a real `.so`, a static probe program, signing keys, signed
//! test images, and child processes that load the PAL like rune does.
//!
//! Every scenario runs in a child process (this test binary again, running only the
//! `child_entry` test): the PAL's constructor reads its host-side configuration from the
//! environment at `dlopen`, `pal_init` makes the calling process non-dumpable, and the enclave
//! processes are children of the caller; a fresh process per scenario keeps all of that apart.
//! The child gets `RUNE_SOFTWARE_ENCLAVE_{POLICY,REPORT_KEY,ROOT}` the way rune on a host
//! would, with `ROOT` pointing at the test image's rootfs (instead of a `pivot_root`).
#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use enclave_image::{
    digest_file, generate_key, manifest_path, signature_path, signer_of, EnvPolicy, Manifest,
    Signature, MANIFEST_VERSION,
};
use rsa::RsaPrivateKey;
use tempfile::TempDir;

/// Which scenario the child runs.
pub const SCENARIO_ENV: &str = "LIBERPAL_SW_TEST_SCENARIO";
/// The PAL `.so` the child loads.
pub const PAL_ENV: &str = "LIBERPAL_SW_TEST_PAL";
/// The test image's directory (rootfs, policy, key, scratch).
pub const DIR_ENV: &str = "LIBERPAL_SW_TEST_DIR";

/// Memory limit of the test images.
pub const MEMORY_SIZE: u64 = 512 << 20;
pub const MAX_PROCESSES: u32 = 16;
pub const MAX_THREADS: u32 = 8;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the PAL with `cargo build -p liberpal-software` (same target dir and profile as this
/// test; a no-op after `cargo build --workspace`) and returns the `.so` cargo reports.
pub fn pal_so() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut cmd = Command::new(cargo);
        cmd.current_dir(crate_dir().join("../..")).args([
            "build",
            "-p",
            "liberpal-software",
            "--message-format=json-render-diagnostics",
        ]);
        let exe = std::env::current_exe().expect("current exe");
        if exe
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            == Some("release".as_ref())
        {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build -p liberpal-software");
        assert!(
            out.status.success(),
            "cargo build -p liberpal-software failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "liberpal_software"
            })
            .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
            .filter_map(|f| f.as_str().map(PathBuf::from))
            .find(|f| f.extension().is_some_and(|e| e == "so"))
            .expect("cargo reported the liberpal_software cdylib")
    })
}

/// `tests/fixtures/probe.c`, compiled statically (`$CC` or `cc`) once per test binary.
pub fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("liberpal-software");
        fs::create_dir_all(&dir).expect("mkdir");
        let out = dir.join("probe");
        let tmp = dir.join(format!("probe.{}", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        let src = crate_dir().join("tests/fixtures/probe.c");
        let result = Command::new(&cc)
            .args(["-static", "-O2", "-Wall", "-Wextra", "-o"])
            .arg(&tmp)
            .arg(&src)
            .output()
            .expect("run the C compiler ($CC or cc)");
        assert!(
            result.status.success(),
            "{cc} -static {} failed (a static libc, libc6-dev, is needed):\n{}",
            src.display(),
            String::from_utf8_lossy(&result.stderr)
        );
        fs::rename(&tmp, &out).expect("rename");
        out
    })
}

/// The node's trusted signer and a stranger. RSA-3072 key generation is slow: once each.
pub fn node_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| generate_key().expect("keygen"))
}

pub fn stranger_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| generate_key().expect("keygen"))
}

pub fn signer_hex(key: &RsaPrivateKey) -> String {
    hex::encode(signer_of(&key.to_public_key()))
}

/// A signed test image in a temporary directory:
///
/// ```text
/// rootfs/bin/busybox        static busybox, entrypoint
/// rootfs/bin/sh -> busybox  entrypoint
/// rootfs/bin/ls -> busybox  a symlink that is NOT an entrypoint (nor trusted)
/// rootfs/bin/probe          tests/fixtures/probe.c, entrypoint
/// rootfs/data/trusted.txt   trusted, not an entrypoint
/// rootfs/data/untrusted.txt not in the manifest
/// rootfs/tmp/               writable
/// rootfs/tmp/bb             a copy of busybox: executable, but not measured
/// rootfs/.rune-enclave/     manifest.json, signature.json
/// policy.toml               the node's policy: the node key, allow_debug = false
/// keys/report.key           not there: the PAL creates it
/// ```
pub struct TestImage {
    pub dir: TempDir,
    pub root: PathBuf,
    pub manifest: Manifest,
}

impl TestImage {
    pub fn new() -> TestImage {
        TestImage::with(|_| {})
    }

    /// An image whose manifest `customize` adjusts before signing.
    pub fn with(customize: impl FnOnce(&mut Manifest)) -> TestImage {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        for sub in ["bin", "data", "tmp", ".rune-enclave"] {
            fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy /bin/busybox");
        fs::copy(probe(), root.join("bin/probe")).expect("copy probe");
        fs::copy("/bin/busybox", root.join("tmp/bb")).expect("copy busybox");
        symlink("busybox", root.join("bin/sh")).expect("symlink");
        symlink("busybox", root.join("bin/ls")).expect("symlink");
        fs::write(root.join("data/trusted.txt"), "measured\n").expect("write");
        fs::write(root.join("data/untrusted.txt"), "not measured\n").expect("write");
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o777)).expect("chmod");

        let digest = |p: &str| digest_file(&root.join(p.trim_start_matches('/'))).expect("digest");
        let trusted = ["/bin/busybox", "/bin/sh", "/bin/probe", "/data/trusted.txt"];
        let mut manifest = Manifest {
            version: MANIFEST_VERSION,
            entrypoints: vec!["/bin/busybox".into(), "/bin/sh".into(), "/bin/probe".into()],
            trusted_files: trusted
                .iter()
                .map(|p| ((*p).to_owned(), digest(p)))
                .collect::<BTreeMap<_, _>>(),
            writable_paths: vec!["/tmp".into()],
            env: EnvPolicy {
                default: vec![
                    "PATH=/bin".into(),
                    "GREETING=from-manifest".into(),
                    "TZ=UTC".into(),
                ],
                host_allowed: vec!["TZ".into(), "LANG".into()],
            },
            memory_size: MEMORY_SIZE,
            max_threads: MAX_THREADS,
            max_processes: MAX_PROCESSES,
            debug: false,
            product_id: 7,
            security_version: 3,
        };
        customize(&mut manifest);
        let image = TestImage {
            dir,
            root,
            manifest,
        };
        image.write_manifest(&image.manifest);
        image.sign_with(node_key());
        image.write_policy(&[node_key()], false);
        image
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn policy_path(&self) -> PathBuf {
        self.path().join("policy.toml")
    }

    pub fn key_path(&self) -> PathBuf {
        self.path().join("keys/report.key")
    }

    /// A file of the rootfs by its in-image path.
    pub fn file(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Writes `manifest` as the image's manifest.json, without signing it.
    pub fn write_manifest(&self, manifest: &Manifest) {
        fs::write(manifest_path(&self.root), manifest.to_json()).expect("write manifest");
    }

    /// Signs the current manifest with `key` into signature.json.
    pub fn sign_with(&self, key: &RsaPrivateKey) {
        let signature = Signature::sign(&self.manifest, key).expect("sign");
        fs::write(signature_path(&self.root), signature.to_json()).expect("write signature");
    }

    pub fn write_policy(&self, signers: &[&RsaPrivateKey], allow_debug: bool) {
        let signers: Vec<String> = signers
            .iter()
            .map(|k| format!("\"{}\"", signer_hex(k)))
            .collect();
        fs::write(
            self.policy_path(),
            format!(
                "allowed_signers = [{}]\nallow_debug = {allow_debug}\n",
                signers.join(", ")
            ),
        )
        .expect("write policy");
    }

    /// Runs `scenario` in a child process that loads the PAL with this image's host settings.
    pub fn run(&self, scenario: &str) -> ChildRun {
        self.run_with(scenario, &[])
    }

    pub fn run_with(&self, scenario: &str, env: &[(&str, &OsString)]) -> ChildRun {
        let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
        cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(SCENARIO_ENV, scenario)
            .env(PAL_ENV, pal_so())
            .env(DIR_ENV, self.path())
            .env(liberpal_software::POLICY_ENV, self.policy_path())
            .env(liberpal_software::REPORT_KEY_ENV, self.key_path())
            .env(liberpal_software::ROOT_ENV, &self.root);
        for (name, value) in env {
            cmd.env(name, value);
        }
        let output = cmd.output().expect("run the scenario child");
        ChildRun {
            scenario: scenario.to_owned(),
            output,
        }
    }
}

/// A finished scenario child.
pub struct ChildRun {
    pub scenario: String,
    pub output: Output,
}

impl ChildRun {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Panics with the child's output unless every assertion in it held.
    pub fn assert_passed(&self) -> &Self {
        assert!(
            self.output.status.success(),
            "scenario {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.scenario,
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// The lines the PAL wrote on the child's stderr.
    pub fn pal_lines(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.starts_with("software enclave: "))
            .map(str::to_owned)
            .collect()
    }
}
