//! Helpers for `software_enclave.rs`: the software enclave toolchain (`rune-enclave` and the
//! software PAL, built by cargo like this test binary), the node's signing keys and policies,
//! signed images (static busybox, Debian's python3), OCI archives of them for docker and
//! containerd, and an attack probe run as an unprivileged host user.
//!
//! A test file uses it with `mod common; mod enclave_support; mod software_support;`.

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// The rune-enclave binary and the software PAL, built with the profile of this test binary.
pub struct Tools {
    pub rune_enclave: PathBuf,
    pub pal: PathBuf,
}

/// `cargo build -p rune-enclave -p liberpal-software` (a no-op after `cargo build --workspace`),
/// once per test binary; the paths are the artifacts cargo reports.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut cmd = Command::new(cargo);
        cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .args([
                "build",
                "-p",
                "rune-enclave",
                "-p",
                "liberpal-software",
                "--message-format=json-render-diagnostics",
            ]);
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/<test binary>
        if exe
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            == Some("release".as_ref())
        {
            cmd.arg("--release");
        }
        let out = run_cmd(&mut cmd, None, Duration::from_secs(1800));
        assert!(out.success(), "building the software enclave tools: {out}");
        let mut rune_enclave = None;
        let mut pal = None;
        for m in out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
        {
            if m["target"]["name"] == "rune-enclave" {
                if let Some(e) = m["executable"].as_str() {
                    rune_enclave = Some(PathBuf::from(e));
                }
            }
            if m["target"]["name"] == "liberpal_software" {
                pal = m["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str().map(PathBuf::from))
                    .find(|f| f.extension().is_some_and(|e| e == "so"))
                    .or(pal);
            }
        }
        Tools {
            rune_enclave: rune_enclave.expect("cargo reported no rune-enclave executable"),
            pal: pal.expect("cargo reported no libliberpal_software.so"),
        }
    })
}

/// The software PAL (`libliberpal_software.so`), an absolute host path.
pub fn software_pal() -> PathBuf {
    tools().pal.clone()
}

/// `rune-enclave <args>` (120 s timeout).
#[track_caller]
pub fn rune_enclave<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let mut cmd = Command::new(&tools().rune_enclave);
    cmd.args(args);
    run_cmd(&mut cmd, None, Duration::from_secs(120))
}

// ---------------------------------------------------------------------------
// The node: signing keys, policies, report key
// ---------------------------------------------------------------------------

/// What a node running software enclaves has, for these tests. Kept in the shared test cache
/// (`target/test-cache/software-enclave-node-v1`): RSA-3072 key generation is slow, so the keys
/// are made once for every test binary and run.
pub struct Node {
    pub dir: PathBuf,
    /// The trusted signer's private key and its identity.
    pub key: PathBuf,
    pub signer: String,
    /// A key whose signer no policy lists.
    pub stranger_key: PathBuf,
    pub stranger: String,
    /// `allowed_signers = [signer]`, `allow_debug = false`: the production policy.
    pub policy: PathBuf,
    /// The same signer with `allow_debug = true`.
    pub debug_policy: PathBuf,
    /// 32 bytes, mode 0600: the node's report key.
    pub report_key: PathBuf,
}

/// The node, made once. Its first use also puts the production policy and the report key into
/// this test process's environment (`RUNE_SOFTWARE_ENCLAVE_POLICY`,
/// `RUNE_SOFTWARE_ENCLAVE_REPORT_KEY`), so that the private dockerd and containerd the tests
/// start, and through them the shims and rune, inherit them as a node's daemons would. Every
/// test calls `node()` before it starts any thread or process, and the `OnceLock` makes the
/// others wait until the variables are set, so nothing reads the environment meanwhile.
pub fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = cached_dir("software-enclave-node-v1", |dir| {
            for name in ["node", "stranger"] {
                let o = rune_enclave(&[
                    OsStr::new("keygen"),
                    OsStr::new("--out"),
                    dir.join(format!("{name}.pem")).as_os_str(),
                ])
                .ok();
                let signer = o
                    .stdout
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                assert!(
                    signer.len() == 64 && signer.bytes().all(|b| b.is_ascii_hexdigit()),
                    "keygen printed no signer identity: {o}"
                );
                fs::write(dir.join(format!("{name}.signer")), &signer).expect("write signer");
            }
            let signer = fs::read_to_string(dir.join("node.signer")).expect("signer");
            for (file, debug) in [("policy.toml", false), ("policy-debug.toml", true)] {
                fs::write(
                    dir.join(file),
                    format!("allowed_signers = [\"{signer}\"]\nallow_debug = {debug}\n"),
                )
                .expect("write policy");
            }
            let mut key = [0u8; 32];
            fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
                .expect("random report key");
            let path = dir.join("report.key");
            fs::write(&path, key).expect("write report key");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod key");
        });
        let read = |name: &str| {
            fs::read_to_string(dir.join(name))
                .expect("read node file")
                .trim()
                .to_string()
        };
        let node = Node {
            key: dir.join("node.pem"),
            signer: read("node.signer"),
            stranger_key: dir.join("stranger.pem"),
            stranger: read("stranger.signer"),
            policy: dir.join("policy.toml"),
            debug_policy: dir.join("policy-debug.toml"),
            report_key: dir.join("report.key"),
            dir,
        };
        std::env::set_var(POLICY_ENV, &node.policy);
        std::env::set_var(REPORT_KEY_ENV, &node.report_key);
        node
    })
}

pub const POLICY_ENV: &str = "RUNE_SOFTWARE_ENCLAVE_POLICY";
pub const REPORT_KEY_ENV: &str = "RUNE_SOFTWARE_ENCLAVE_REPORT_KEY";

/// `rune --root <root> <args>` on a node whose policy is `policy` (the report key is the
/// node's).
pub fn rune_cmd<S: AsRef<OsStr>>(root: &Root, args: &[S], policy: &Path) -> Command {
    let mut cmd = root.cmd(args);
    cmd.env(POLICY_ENV, policy)
        .env(REPORT_KEY_ENV, &node().report_key);
    cmd
}

/// Runs `rune --root <root> <args>` with the node's production policy.
#[track_caller]
pub fn rune(root: &Root, args: &[&str]) -> Output {
    run_cmd(&mut rune_cmd(root, args, &node().policy), None, CMD_TIMEOUT)
}

/// Runs `rune --root <root> <args>` under `policy`.
#[track_caller]
pub fn rune_with_policy(root: &Root, args: &[&str], policy: &Path) -> Output {
    run_cmd(&mut rune_cmd(root, args, policy), None, CMD_TIMEOUT)
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

/// The busybox test image's manifest settings, in `rune-enclave build` arguments.
pub const BUSYBOX_DEFAULT_ENV: &[&str] = &["PATH=/bin", "GREETING=measured", "FOO=manifest-foo"];
pub const BUSYBOX_HOST_ENV: &[&str] = &["FOO", "TZ"];
pub const GREETING: &str = "hello from a measured file\n";

/// Adds the busybox image's extra files to a busybox rootfs (common's: /bin/busybox and
/// relative applet symlinks):
///
/// ```text
/// /data/greeting.txt     trusted (read by the workload)
/// /data/unlisted.txt     present, not in the manifest
/// /usr/bin/unmeasured    a copy of busybox, executable, not in the manifest
/// ```
pub fn add_busybox_extras(rootfs: &Path) {
    fs::create_dir_all(rootfs.join("data")).expect("mkdir /data");
    fs::write(rootfs.join("data/greeting.txt"), GREETING).expect("write greeting");
    fs::write(rootfs.join("data/unlisted.txt"), "not measured\n").expect("write unlisted");
    fs::create_dir_all(rootfs.join("usr/bin")).expect("mkdir /usr/bin");
    fs::copy(
        rootfs.join("bin/busybox"),
        rootfs.join("usr/bin/unmeasured"),
    )
    .expect("copy unmeasured");
}

/// `rune-enclave build` of the busybox image: entrypoints /bin/sh and /bin/busybox, trusted
/// /data/greeting.txt, writable /tmp, [`BUSYBOX_DEFAULT_ENV`], [`BUSYBOX_HOST_ENV`], plus
/// `extra` arguments (`--debug`, ...).
#[track_caller]
pub fn build_busybox_image(rootfs: &Path, extra: &[&str]) {
    let mut args: Vec<String> = vec![
        "build".into(),
        "--rootfs".into(),
        rootfs.to_string_lossy().into_owned(),
    ];
    for a in [
        "--entrypoint",
        "/bin/sh",
        "--entrypoint",
        "/bin/busybox",
        "--trust",
        "/data/greeting.txt",
        "--writable",
        "/tmp",
        "--memory",
        "256M",
    ] {
        args.push(a.into());
    }
    for e in BUSYBOX_DEFAULT_ENV {
        args.push("--env".into());
        args.push(e.to_string());
    }
    for e in BUSYBOX_HOST_ENV {
        args.push("--host-env".into());
        args.push(e.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    rune_enclave(&args).ok();
}

/// `rune-enclave sign --rootfs <rootfs> --key <key>`.
#[track_caller]
pub fn sign(rootfs: &Path, key: &Path) {
    rune_enclave(&[
        OsStr::new("sign"),
        OsStr::new("--rootfs"),
        rootfs.as_os_str(),
        OsStr::new("--key"),
        key.as_os_str(),
    ])
    .ok();
}

/// Extras, build, and sign with the node key (client side, with the CLI).
#[track_caller]
pub fn make_signed_busybox_image(rootfs: &Path, extra_build_args: &[&str]) {
    add_busybox_extras(rootfs);
    build_busybox_image(rootfs, extra_build_args);
    sign(rootfs, &node().key);
}

/// Sets a bundle up as a software enclave container: the `ENCLAVE_*` env naming the software
/// PAL and a writable rootfs.
pub fn make_software_enclave(b: &mut Bundle) {
    b.edit(|c| c["root"]["readonly"] = Value::Bool(false));
    b.add_env("ENCLAVE_TYPE=software");
    b.add_env(&format!(
        "ENCLAVE_RUNTIME_PATH={}",
        software_pal().display()
    ));
}

/// A bundle running `args` as a software enclave container of the signed busybox image.
#[track_caller]
pub fn busybox_enclave_bundle(root: &Root, args: &[&str]) -> Bundle {
    let mut b = Bundle::new(root, args);
    make_signed_busybox_image(&b.rootfs(), &[]);
    make_software_enclave(&mut b);
    b
}

/// The manifest of an image, parsed.
pub fn manifest(rootfs: &Path) -> Value {
    let text = fs::read_to_string(rootfs.join(".rune-enclave/manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest JSON")
}

pub fn write_manifest(rootfs: &Path, m: &Value) {
    fs::write(
        rootfs.join(".rune-enclave/manifest.json"),
        serde_json::to_vec_pretty(m).expect("manifest JSON"),
    )
    .expect("write manifest");
}

/// `cp -a SRC DST` (keeps hard links, symlinks, owners, modes).
#[track_caller]
pub fn cp_a(src: &Path, dst: &Path) {
    sh(&["cp", "-a", &src.to_string_lossy(), &dst.to_string_lossy()]).ok();
}

/// A copy of `src` at `dst` whose regular files are hard links to `src`'s (`cp -al`: a few
/// hundred milliseconds instead of many seconds for the python rootfs); a real copy when they
/// are on different filesystems. Only for trees whose existing files nobody writes in place:
/// new files and directories in the copy are its own, but changing a linked file changes the
/// source too.
#[track_caller]
pub fn link_copy(src: &Path, dst: &Path) {
    let o = sh(&["cp", "-al", &src.to_string_lossy(), &dst.to_string_lossy()]);
    if !o.success() {
        let _ = fs::remove_dir_all(dst);
        cp_a(src, dst);
    }
}

// ---------------------------------------------------------------------------
// Python (Debian bookworm minbase + python3-minimal)
// ---------------------------------------------------------------------------

/// The cached Debian python rootfs built by `scripts/lib/python-rootfs.sh`, or None when
/// debootstrap is not installed (the script exits 3); the caller then skips, loudly.
pub fn python_rootfs() -> Option<PathBuf> {
    static ROOTFS: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/lib/python-rootfs.sh"
            );
            let dir = cache_dir().join("python-rootfs");
            let mut cmd = Command::new("bash");
            cmd.arg(script).arg(&dir);
            let o = run_cmd(&mut cmd, None, Duration::from_secs(1800));
            match o.code() {
                0 => {
                    let path = PathBuf::from(o.stdout.trim());
                    assert!(path.join("usr/bin/python3").exists(), "{o}");
                    Some(path)
                }
                3 => None,
                _ => panic!("scripts/lib/python-rootfs.sh failed: {o}"),
            }
        })
        .clone()
}

/// Prints why a python test is skipped.
pub fn skip_no_debootstrap(test: &str) {
    eprintln!(
        "\n*** SKIPPED {test}: debootstrap is not installed, so there is no Debian python \
         rootfs (apt-get install debootstrap; scripts/install-deps.sh should install it) ***\n"
    );
}

/// The python interpreter's real name in the rootfs (`python3.11` on bookworm).
pub fn python_version_name(rootfs: &Path) -> String {
    fs::read_link(rootfs.join("usr/bin/python3"))
        .expect("/usr/bin/python3 is a symlink")
        .to_string_lossy()
        .into_owned()
}

/// How the python image lays out its standard library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PythonLayout {
    /// Debian's layout, as docs/enclave-image.md builds it: the interpreter plus
    /// `--trust /usr/lib/python3.X`.
    Debian,
    /// The same, plus the pure-Python standard library zipped into `/usr/lib/python3X.zip`
    /// (first on Python's default `sys.path`, imported with no directory listing) and trusted.
    Zipped,
}

/// Copies the python rootfs to `rootfs` (hard links: nothing here or in the tests changes a file
/// of it in place) and builds and signs its image: entrypoints
/// `/usr/bin/python3` and `/usr/bin/python3.X`, the standard library trusted, /tmp writable.
/// Returns the interpreter's name (`python3.11`).
#[track_caller]
pub fn make_signed_python_image(source: &Path, rootfs: &Path, layout: PythonLayout) -> String {
    if rootfs.exists() {
        fs::remove_dir_all(rootfs).expect("remove old rootfs");
    }
    link_copy(source, rootfs);
    let py = python_version_name(rootfs);
    let version = py.trim_start_matches("python");
    let stdlib = format!("/usr/lib/{py}");
    let mut args: Vec<String> = [
        "build",
        "--rootfs",
        &rootfs.to_string_lossy(),
        "--entrypoint",
        "/usr/bin/python3",
        "--entrypoint",
        &format!("/usr/bin/{py}"),
        "--trust",
        &stdlib,
        "--writable",
        "/tmp",
        "--env",
        "PATH=/usr/bin:/bin",
        "--env",
        "PYTHONDONTWRITEBYTECODE=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if layout == PythonLayout::Zipped {
        let zip = format!("/usr/lib/python{}.zip", version.replace('.', ""));
        zip_stdlib(rootfs, &stdlib, &zip);
        args.push("--trust".into());
        args.push(zip);
    }
    rune_enclave(&args).ok();
    sign(rootfs, &node().key);
    py
}

/// Zips every `.py` file of the standard library (not lib-dynload, `__pycache__` or the
/// package directories) into `zip` inside the rootfs: a stored (uncompressed) zip, which
/// Python's zipimport reads with no module of its own. Written here because python3-minimal has
/// no `zipfile` to do it and busybox has no zip.
fn zip_stdlib(rootfs: &Path, stdlib: &str, zip: &str) {
    fn collect(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read stdlib dir")
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let ft = e.file_type().expect("file type");
            let rel_name = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if ft.is_dir() {
                if ![
                    "lib-dynload",
                    "__pycache__",
                    "site-packages",
                    "dist-packages",
                ]
                .contains(&name.as_str())
                {
                    collect(&e.path(), &rel_name, out);
                }
            } else if ft.is_file() && name.ends_with(".py") {
                out.push((rel_name, e.path()));
            }
        }
    }
    let mut files = Vec::new();
    collect(&rootfs.join(stdlib.trim_start_matches('/')), "", &mut files);
    assert!(
        files.iter().any(|(n, _)| n == "encodings/__init__.py"),
        "no encodings package under {stdlib}"
    );
    let mut zipped = Vec::new();
    let mut central = Vec::new();
    for (name, path) in &files {
        let data = fs::read(path).expect("read stdlib file");
        let offset = zipped.len() as u32;
        let crc = crc32(&data);
        let size = u32::try_from(data.len()).expect("file under 4 GiB");
        let name_len = u16::try_from(name.len()).expect("short name");
        // local file header: version 2.0, no flags, stored, 1980-01-01 00:00
        let fixed = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
            v.extend_from_slice(&0x21u16.to_le_bytes());
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&name_len.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
        };
        zipped.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        fixed(&mut zipped);
        zipped.extend_from_slice(name.as_bytes());
        zipped.extend_from_slice(&data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        fixed(&mut central);
        // comment length, disk number, internal attributes (2 bytes each), external (4)
        central.extend_from_slice(&[0u8; 10]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let count = u16::try_from(files.len()).expect("under 65536 files");
    let cd_offset = zipped.len() as u32;
    let cd_size = central.len() as u32;
    zipped.extend_from_slice(&central);
    zipped.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    zipped.extend_from_slice(&[0u8; 4]);
    zipped.extend_from_slice(&count.to_le_bytes());
    zipped.extend_from_slice(&count.to_le_bytes());
    zipped.extend_from_slice(&cd_size.to_le_bytes());
    zipped.extend_from_slice(&cd_offset.to_le_bytes());
    zipped.extend_from_slice(&0u16.to_le_bytes());
    fs::write(rootfs.join(zip.trim_start_matches('/')), zipped).expect("write stdlib zip");
}

/// CRC-32 (IEEE 802.3, as zip uses it).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A bundle whose rootfs is the signed python image (`layout`) running `args`.
#[track_caller]
pub fn python_enclave_bundle(
    root: &Root,
    source: &Path,
    layout: PythonLayout,
    args: &[&str],
) -> Bundle {
    let mut b = Bundle::new(root, args);
    make_signed_python_image(source, &b.rootfs(), layout);
    make_software_enclave(&mut b);
    b
}

// ---------------------------------------------------------------------------
// OCI archives for docker and containerd
// ---------------------------------------------------------------------------

/// A docker-archive of an image whose only layer is `rootfs`, named `name` (e.g.
/// `localhost/rune-sw-busybox:signed`), made with umoci and skopeo in `work`. `docker load` and
/// `ctr images import` both accept it.
#[track_caller]
pub fn image_archive(rootfs: &Path, work: &Path, name: &str) -> PathBuf {
    let layout = work.join("oci");
    let image = format!("{}:t", layout.display());
    let tar = work.join("image.tar");
    fs::create_dir_all(work).expect("mkdir image work dir");
    let _ = fs::remove_dir_all(&layout);
    let _ = fs::remove_file(&tar);
    sh(&["umoci", "init", "--layout", &layout.to_string_lossy()]).ok();
    sh(&["umoci", "new", "--image", &image]).ok();
    let mut insert = Command::new("umoci");
    insert
        .args(["insert", "--image", &image])
        .arg(rootfs)
        .arg("/");
    run_cmd(&mut insert, None, Duration::from_secs(600)).ok();
    sh(&[
        "umoci",
        "config",
        "--image",
        &image,
        "--config.cmd",
        "sh",
        "--config.env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--config.workingdir",
        "/",
    ])
    .ok();
    let mut copy = Command::new("skopeo");
    copy.args(["--insecure-policy", "copy", "--quiet"])
        .arg(format!("oci:{image}"))
        .arg(format!("docker-archive:{}:{name}", tar.display()));
    run_cmd(&mut copy, None, Duration::from_secs(600)).ok();
    let _ = fs::remove_dir_all(&layout);
    tar
}

/// `-e ENCLAVE_TYPE=software -e ENCLAVE_RUNTIME_PATH=<software PAL>` for docker and ctr.
pub fn enclave_env() -> Vec<String> {
    vec![
        "ENCLAVE_TYPE=software".to_string(),
        format!("ENCLAVE_RUNTIME_PATH={}", software_pal().display()),
    ]
}

// ---------------------------------------------------------------------------
// Attacks from an unprivileged host process
// ---------------------------------------------------------------------------

const PEEK_C: &str = r#"
/* peek PID: what an unprivileged host process can do to PID. One line per attempt:
 *   <what>=ok | <what>=<ERRNO NAME>
 * ptrace_attach (PTRACE_ATTACH, detached again on success), ptrace_seize, mem_open (open
 * /proc/PID/mem), mem_read (pread at the first mapping, only when both opens succeeded),
 * maps_open, environ_open, vm_readv (process_vm_readv of 8 bytes at the first mapping, or at
 * 0x400000 when the maps are not readable). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *name(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ESRCH: return "ESRCH";
    case ENOENT: return "ENOENT";
    case EIO: return "EIO";
    case EFAULT: return "EFAULT";
    default: { static char buf[32]; snprintf(buf, sizeof buf, "errno%d", e); return buf; }
    }
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    pid_t pid = atoi(argv[1]);
    char path[64];
    unsigned long addr = 0x400000;

    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    if (maps) {
        unsigned long start;
        if (fscanf(maps, "%lx-", &start) == 1) addr = start;
        fclose(maps);
        printf("maps_open=ok\n");
    } else {
        printf("maps_open=%s\n", name(errno));
    }

    if (ptrace(PTRACE_ATTACH, pid, 0, 0) == 0) {
        waitpid(pid, NULL, __WALL);
        ptrace(PTRACE_DETACH, pid, 0, 0);
        printf("ptrace_attach=ok\n");
    } else {
        printf("ptrace_attach=%s\n", name(errno));
    }
    if (ptrace(PTRACE_SEIZE, pid, 0, 0) == 0) {
        ptrace(PTRACE_DETACH, pid, 0, 0);
        printf("ptrace_seize=ok\n");
    } else {
        printf("ptrace_seize=%s\n", name(errno));
    }

    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        char b[8];
        printf("mem_open=ok\n");
        if (pread(fd, b, sizeof b, (off_t)addr) > 0) printf("mem_read=ok\n");
        else printf("mem_read=%s\n", name(errno));
        close(fd);
    } else {
        printf("mem_open=%s\n", name(errno));
    }

    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    fd = open(path, O_RDONLY);
    if (fd >= 0) { printf("environ_open=ok\n"); close(fd); }
    else printf("environ_open=%s\n", name(errno));

    char buf[8];
    struct iovec local = { buf, sizeof buf }, remote = { (void *)addr, sizeof buf };
    if (process_vm_readv(pid, &local, 1, &remote, 1, 0) > 0) printf("vm_readv=ok\n");
    else printf("vm_readv=%s\n", name(errno));
    return 0;
}
"#;

/// The `peek` probe (above), compiled into `dir` (a test's temporary directory under /tmp,
/// which every user can reach). Returns the binary.
#[track_caller]
pub fn peek_probe(dir: &Path) -> PathBuf {
    let src = dir.join("peek.c");
    fs::write(&src, PEEK_C).expect("write peek.c");
    let bin = dir.join("peek");
    sh(&[
        "gcc",
        "-O1",
        "-Wall",
        "-Werror",
        "-o",
        &bin.to_string_lossy(),
        &src.to_string_lossy(),
    ])
    .ok();
    for p in [dir, bin.as_path()] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod peek");
    }
    bin
}

/// Runs the `peek` probe (from [`peek_probe`]) against `pid` as uid:gid `uid` with no supplementary groups and no
/// capabilities (setpriv). Returns its `what -> result` lines.
#[track_caller]
pub fn peek_as(probe: &Path, uid: u32, pid: i32) -> Vec<(String, String)> {
    let o = sh(&[
        "setpriv",
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        &probe.to_string_lossy(),
        &pid.to_string(),
    ])
    .ok();
    o.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Value of `what` in a peek result.
pub fn peeked<'a>(result: &'a [(String, String)], what: &str) -> &'a str {
    result
        .iter()
        .find(|(k, _)| k == what)
        .map(|(_, v)| v.as_str())
        .unwrap_or("missing")
}

/// A line of `/proc/<pid>/limits` starting with `name` (e.g. `Max core file size`), split into
/// (soft, hard).
pub fn limit_of(pid: i32, name: &str) -> Option<(String, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut fields = line[name.len()..].split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

/// The first `Name:` field of `/proc/<pid>/status`.
pub fn status_field(pid: i32, name: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}
