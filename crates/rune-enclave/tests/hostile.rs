//! Hostile rootfs content: symlinks that try to leave the rootfs, loops, FIFOs, planted image
//! files. Each is refused or resolved inside the rootfs; nothing outside it is read or written.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use common::*;

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("cstring");
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o755) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

#[test]
fn absolute_symlinks_resolve_inside_the_rootfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    symlink("/etc/shadow", rootfs.join("bin/shadow")).expect("symlink");
    // The host has an /etc/shadow; the rootfs does not: it must not be read.
    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--trust",
        "/bin/shadow",
    ]);
    assert!(
        err.contains("/etc/shadow does not exist in the rootfs"),
        "{err}"
    );

    fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    fs::write(rootfs.join("etc/shadow"), "the rootfs's own").expect("write");
    ok(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--trust",
        "/bin/shadow",
    ]);
    let own = sha256_hex(b"the rootfs's own");
    assert_eq!(digest_of(&rootfs, "/bin/shadow"), own);
    assert_eq!(digest_of(&rootfs, "/etc/shadow"), own);

    // An entrypoint that is an absolute symlink to the host's busybox path resolves to the
    // rootfs's busybox.
    fs::write(rootfs.join("bin/busybox-host-marker"), "x").expect("write");
    symlink("/bin/busybox", rootfs.join("bin/abs-sh")).expect("symlink");
    ok(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/abs-sh",
    ]);
    assert_eq!(
        manifest(&rootfs)["entrypoints"],
        serde_json::json!(["/bin/abs-sh", "/bin/busybox"])
    );
    assert_eq!(
        digest_of(&rootfs, "/bin/abs-sh"),
        file_sha256(&rootfs.join("bin/busybox"))
    );
}

#[test]
fn dot_dot_chains_stop_at_the_rootfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    fs::create_dir_all(rootfs.join("a/b/c")).expect("mkdir");
    symlink(
        "../../../../../../../../../../bin/busybox",
        rootfs.join("a/b/c/up"),
    )
    .expect("symlink");
    // A directory symlink to `..` at the top, then down again.
    symlink("../../../..", rootfs.join("a/escape")).expect("symlink");
    fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").expect("write");

    ok(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/a/b/c/up",
        "--trust",
        "/a/escape/etc/passwd",
    ]);
    let busybox = file_sha256(&rootfs.join("bin/busybox"));
    assert_eq!(digest_of(&rootfs, "/a/b/c/up"), busybox);
    assert_eq!(digest_of(&rootfs, "/bin/busybox"), busybox);
    let passwd = file_sha256(&rootfs.join("etc/passwd"));
    assert_eq!(digest_of(&rootfs, "/a/escape/etc/passwd"), passwd);
    assert_eq!(digest_of(&rootfs, "/etc/passwd"), passwd);
    // A path with `..` is not a manifest key; its canonical path is.
    assert!(!trusted(&rootfs).keys().any(|k| k.contains("..")));
}

#[test]
fn symlink_loops_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    symlink("loop-b", rootfs.join("bin/loop-a")).expect("symlink");
    symlink("/bin/loop-a", rootfs.join("bin/loop-b")).expect("symlink");
    symlink("self", rootfs.join("bin/self")).expect("symlink");
    symlink("dirloop/dirloop", rootfs.join("dirloop")).expect("symlink");
    for path in ["/bin/loop-a", "/bin/self", "/dirloop/x"] {
        let err = fails(&["build", "--rootfs", s(&rootfs), "--entrypoint", path]);
        assert!(err.contains("symlink loop"), "{path}: {err}");
        let err = fails(&[
            "build",
            "--rootfs",
            s(&rootfs),
            "--entrypoint",
            "/bin/sh",
            "--trust",
            path,
        ]);
        assert!(err.contains("symlink loop"), "{path}: {err}");
    }
    // In a trusted directory too.
    fs::create_dir_all(rootfs.join("data")).expect("mkdir");
    symlink("/data/loop", rootfs.join("data/loop")).expect("symlink");
    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--trust",
        "/data",
    ]);
    assert!(
        err.contains("/data/loop") && err.contains("symlink loop"),
        "{err}"
    );
}

#[test]
fn fifos_and_other_non_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    mkfifo(&rootfs.join("bin/fifo"));
    symlink("fifo", rootfs.join("bin/to-fifo")).expect("symlink");
    // Neither would return: reading a FIFO blocks until a writer comes.
    for path in ["/bin/fifo", "/bin/to-fifo"] {
        let err = fails(&["build", "--rootfs", s(&rootfs), "--entrypoint", path]);
        assert!(err.contains("a FIFO, not a regular file"), "{path}: {err}");
        let err = fails(&[
            "build",
            "--rootfs",
            s(&rootfs),
            "--entrypoint",
            "/bin/sh",
            "--trust",
            path,
        ]);
        assert!(err.contains("a FIFO"), "{path}: {err}");
    }
    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--trust",
        "/bin",
    ]);
    assert!(err.contains("/bin/fifo is a FIFO"), "{err}");

    // A FIFO planted where a trusted file was, after signing: verify fails, and does not hang.
    fs::remove_file(rootfs.join("bin/fifo")).expect("rm");
    fs::remove_file(rootfs.join("bin/to-fifo")).expect("rm");
    ok(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/sh"]);
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    fs::rename(rootfs.join("bin/busybox"), rootfs.join("bin/real")).expect("mv");
    mkfifo(&rootfs.join("bin/busybox"));
    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(
        err.contains("/bin/busybox") && err.contains("FIFO"),
        "{err}"
    );
}

#[test]
fn malformed_elf_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    let mut bytes = fs::read(rootfs.join("bin/busybox")).expect("read");
    // Program headers pointing far past the end of the file.
    bytes.truncate(4096);
    bytes[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    fs::write(rootfs.join("bin/broken"), &bytes).expect("write");
    fs::set_permissions(rootfs.join("bin/broken"), fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/broken",
    ]);
    assert!(err.contains("malformed ELF"), "{err}");
    fs::write(rootfs.join("bin/broken"), b"\x7fELF").expect("write");
    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/broken",
    ]);
    assert!(err.contains("/bin/broken"), "{err}");
}

#[test]
fn planted_image_files_are_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).expect("mkdir");
    fs::write(outside.join("manifest.json"), "host file").expect("write");

    // /.rune-enclave itself a symlink out of the rootfs: refused.
    let rootfs = busybox_rootfs(&dir.path().join("one"));
    symlink(&outside, rootfs.join(".rune-enclave")).expect("symlink");
    let err = fails(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/sh"]);
    assert!(err.contains(".rune-enclave: not a directory"), "{err}");
    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(err.contains(".rune-enclave: not a directory"), "{err}");
    assert_eq!(
        fs::read_to_string(outside.join("manifest.json")).expect("read"),
        "host file"
    );

    // manifest.json and signature.json symlinks inside a real image directory: replaced,
    // never written through; and never read.
    let rootfs = busybox_rootfs(&dir.path().join("two"));
    fs::create_dir_all(rootfs.join(".rune-enclave")).expect("mkdir");
    symlink(
        outside.join("manifest.json"),
        rootfs.join(".rune-enclave/manifest.json"),
    )
    .expect("symlink");
    let err = fails(&["measure", "--rootfs", s(&rootfs)]);
    assert!(err.contains("manifest.json: not a regular file"), "{err}");
    symlink(
        outside.join("signature.json"),
        rootfs.join(".rune-enclave/signature.json"),
    )
    .expect("symlink");
    ok(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/sh"]);
    assert_eq!(
        fs::read_to_string(outside.join("manifest.json")).expect("read"),
        "host file"
    );
    let meta = fs::symlink_metadata(rootfs.join(".rune-enclave/manifest.json")).expect("lstat");
    assert!(meta.is_file());
    // The stale signature link was removed, not followed.
    assert!(fs::symlink_metadata(rootfs.join(".rune-enclave/signature.json")).is_err());

    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    fs::remove_file(rootfs.join(".rune-enclave/signature.json")).expect("rm");
    symlink(
        outside.join("manifest.json"),
        rootfs.join(".rune-enclave/signature.json"),
    )
    .expect("symlink");
    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(err.contains("signature.json: not a regular file"), "{err}");
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    assert_eq!(
        fs::read_to_string(outside.join("manifest.json")).expect("read"),
        "host file"
    );
    ok(&["verify", "--rootfs", s(&rootfs)]);
}

/// A trusted path checked at verify time goes through the same confinement: replacing a
/// trusted file by an absolute symlink to the host file with the same content still resolves
/// inside the rootfs.
#[test]
fn verify_resolves_inside_the_rootfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    ok(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/sh"]);
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    // /bin/sh -> /bin/busybox (absolute): from the host this is the host's busybox, which has
    // the same content; inside the rootfs it is the rootfs's, which is removed.
    fs::remove_file(rootfs.join("bin/sh")).expect("rm");
    symlink("/bin/busybox", rootfs.join("bin/sh")).expect("symlink");
    ok(&["verify", "--rootfs", s(&rootfs)]);
    fs::remove_file(rootfs.join("bin/busybox")).expect("rm");
    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(err.contains("trusted file /bin/busybox"), "{err}");
    assert!(err.contains("/bin/sh"), "{err}");
}
