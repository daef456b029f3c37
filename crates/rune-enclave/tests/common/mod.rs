//! Helpers shared by the integration tests: running the built binary, a signing key made
//! once, and root filesystems copied from the host.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_rune-enclave");

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running rune-enclave")
}

/// Runs and insists on success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "rune-enclave {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs and insists on failure with a one-line error; returns that line.
pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert!(
        !out.status.success(),
        "rune-enclave {args:?} should have failed: {}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("rune-enclave: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    errors[0].to_string()
}

pub fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A signing key (and its public key) made once per `target/` with `rune-enclave keygen`:
/// RSA-3072 generation takes seconds.
pub fn key() -> &'static (PathBuf, PathBuf) {
    static KEY: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    KEY.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join("rune-enclave-test-key");
        let pair = (dir.join("key.pem"), dir.join("pub.pem"));
        if pair.0.exists() && pair.1.exists() {
            return pair;
        }
        // Made aside and renamed into place whole, so that test binaries running at once
        // never see half a pair.
        let tmp = base.join(format!("rune-enclave-test-key.{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).expect("mkdir");
        let out = ok(&[
            "keygen",
            "--out",
            s(&tmp.join("key.pem")),
            "--public-out",
            s(&tmp.join("pub.pem")),
        ]);
        assert_eq!(out.trim().len(), 64, "{out}");
        let _ = fs::remove_dir_all(&dir);
        if fs::rename(&tmp, &dir).is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        assert!(pair.0.exists() && pair.1.exists());
        pair
    })
}

pub fn key_path() -> &'static str {
    s(&key().0)
}

pub fn pub_path() -> &'static str {
    s(&key().1)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn file_sha256(path: &Path) -> String {
    sha256_hex(&fs::read(path).expect("read"))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn manifest(rootfs: &Path) -> serde_json::Value {
    let text = fs::read(rootfs.join(".rune-enclave/manifest.json")).expect("manifest.json");
    serde_json::from_slice(&text).expect("manifest json")
}

pub fn trusted(rootfs: &Path) -> serde_json::Map<String, serde_json::Value> {
    manifest(rootfs)["trusted_files"]
        .as_object()
        .expect("trusted_files")
        .clone()
}

pub fn digest_of(rootfs: &Path, key: &str) -> String {
    trusted(rootfs)
        .get(key)
        .unwrap_or_else(|| panic!("{key} is not a trusted file of {}", rootfs.display()))
        .as_str()
        .expect("digest")
        .to_string()
}

/// `/bin/busybox` (static) with `/bin/sh -> busybox` and an empty `/tmp`.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("busybox-rootfs");
    fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    fs::create_dir_all(rootfs.join("tmp")).expect("mkdir");
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox (busybox-static)");
    symlink("busybox", rootfs.join("bin/sh")).expect("symlink");
    rootfs
}

/// A rootfs with Debian's merged-/usr layout: `/bin -> usr/bin`, `/lib -> usr/lib` and the
/// absolute `/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`.
pub fn debian_layout(dir: &Path, name: &str) -> PathBuf {
    let rootfs = dir.join(name);
    for d in ["usr/bin", "usr/lib/x86_64-linux-gnu", "lib64", "etc", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    symlink("usr/bin", rootfs.join("bin")).expect("symlink");
    symlink("usr/lib", rootfs.join("lib")).expect("symlink");
    symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        rootfs.join("lib64/ld-linux-x86-64.so.2"),
    )
    .expect("symlink");
    rootfs
}

/// Copies the host file `host` into `rootfs` at its canonical host path, and, when `host`
/// itself is a symlink (a soname link), that link beside it too.
pub fn copy_from_host(rootfs: &Path, host: &Path) {
    let canonical = fs::canonicalize(host).expect("canonicalize");
    let target = rootfs.join(canonical.strip_prefix("/").expect("absolute"));
    fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    if !target.exists() {
        fs::copy(&canonical, &target).expect("copy");
    }
    let dir = fs::canonicalize(host.parent().expect("parent")).expect("canonicalize dir");
    let link = rootfs
        .join(dir.strip_prefix("/").expect("absolute"))
        .join(host.file_name().expect("name"));
    // Soname links live beside their file; anything else (the interpreter's /lib64 link) is
    // part of the layout the caller made.
    if link != target
        && canonical.parent() == Some(dir.as_path())
        && fs::symlink_metadata(&link).is_err()
    {
        symlink(canonical.file_name().expect("name"), &link).expect("symlink");
    }
}

/// The libraries `ldd` lists for a host program (including the interpreter).
pub fn host_libraries(program: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(program).output().expect("ldd");
    assert!(out.status.success(), "ldd {}", program.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// A Debian-layout rootfs with the host program `program` at the same path and the libraries
/// it needs, except those whose file name starts with one of `leave_out`.
pub fn dynamic_rootfs(dir: &Path, name: &str, program: &Path, leave_out: &[&str]) -> PathBuf {
    let rootfs = debian_layout(dir, name);
    copy_from_host(&rootfs, program);
    for lib in host_libraries(program) {
        let file = lib.file_name().expect("name").to_string_lossy().to_string();
        if leave_out.iter().any(|prefix| file.starts_with(prefix)) {
            continue;
        }
        copy_from_host(&rootfs, &lib);
    }
    rootfs
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
