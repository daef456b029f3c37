//! A PAL written in Rust with `export_pal_v3!` (`crates/pal-example`, package
//! `liberpal-example`), loaded through the loader like any C PAL.
//!
//! The cdylib is built by this test with `cargo build -p liberpal-example` (same target dir and
//! profile as the test), so `cargo test -p enclave-pal` alone is enough; under
//! `cargo test --workspace` it is already built and the nested build is a no-op. Cargo's JSON
//! messages give the exact path of the `.so`.

mod common;

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{crate_dir, strings};
use pal::{Pal, PalError};
use tempfile::TempDir;

fn build_example() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut cmd = Command::new(cargo);
        cmd.current_dir(crate_dir().join("../..")).args([
            "build",
            "-p",
            "liberpal-example",
            "--message-format=json-render-diagnostics",
        ]);
        // Same profile as this test binary (target/<profile>/deps/rust_pal-*).
        let exe = std::env::current_exe().expect("current exe");
        if exe
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            == Some("release".as_ref())
        {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build -p liberpal-example");
        assert!(
            out.status.success(),
            "cargo build -p liberpal-example failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "liberpal_example"
            })
            .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
            .filter_map(|f| f.as_str().map(PathBuf::from))
            .find(|f| f.extension().is_some_and(|e| e == "so"))
            .expect("cargo reported the liberpal_example cdylib")
    })
}

/// Loads a private copy of the example PAL: a distinct file is a distinct dlopen instance, so
/// each test gets fresh PAL globals even though the tests share one process.
fn load_example() -> (TempDir, Pal) {
    let dir = tempfile::tempdir().expect("temp dir");
    let so = dir.path().join("liberpal-example.so");
    fs::copy(build_example(), &so).expect("copy PAL");
    let pal = Pal::load(&so).expect("load liberpal-example");
    (dir, pal)
}

fn devnull() -> File {
    File::open("/dev/null").expect("open /dev/null")
}

fn assert_failed(err: PalError, function: &str, errno: i32) {
    assert!(
        matches!(&err, PalError::CallFailed { function: f, code, .. } if *f == function && *code == -errno),
        "expected {function}() = -{errno}, got: {err}"
    );
}

#[test]
fn lifecycle_runs_payloads_with_exact_argv_env_and_stdio() {
    let (dir, pal) = load_example();
    assert_eq!(pal.version(), 3);
    pal.init("any args", "info", None).expect("init");

    let out_path = dir.path().join("out");
    let err_path = dir.path().join("err");
    let out = File::create(&out_path).expect("create");
    let err = File::create(&err_path).expect("create");
    let stdin = devnull();
    let stdio = [stdin.as_raw_fd(), out.as_raw_fd(), err.as_raw_fd()];
    let argv = strings(&[
        "/bin/sh",
        "-c",
        r#"printf '[%s]' "$0" "$@"; printf '{%s}' "$GREETING" "$EMPTY"; echo oops >&2; exit 7"#,
        "arg0",
        "",
        "two words",
    ]);
    let env = strings(&["GREETING=hello world", "EMPTY="]);
    assert_eq!(pal.exec(&argv, &env, stdio).expect("exec"), 7);
    assert_eq!(
        fs::read_to_string(&out_path).expect("read"),
        "[arg0][][two words]{hello world}{}"
    );
    assert_eq!(fs::read_to_string(&err_path).expect("read"), "oops\n");

    // create_process + kill + wait: the split the runtime uses for signal forwarding.
    let pid = pal
        .create_process(&strings(&["/bin/sleep", "30"]), &[], stdio)
        .expect("create_process");
    assert!(pid > 0);
    pal.kill(pid, libc::SIGTERM).expect("kill");
    assert_eq!(pal.wait(pid).expect("wait"), 128 + libc::SIGTERM);

    let target: Vec<u8> = (0..512).map(|i| (i % 256) as u8).collect();
    let report = pal.local_report(&target).expect("local report");
    assert_eq!(report.len(), 432);
    assert!(report.starts_with(b"liberpal-example: NOT AN SGX REPORT"));
    assert_eq!(&report[320..384], &target[..64]);

    pal.destroy().expect("destroy");
    // The instance is gone: further calls fail, naming the PAL.
    let err = pal.kill(-1, libc::SIGTERM).expect_err("after destroy");
    assert!(err
        .to_string()
        .starts_with(&format!("PAL {}", pal.path().display())));
    assert_failed(err, "pal_kill", libc::EINVAL);
    // And it can be initialised again.
    pal.init("", "info", None).expect("re-init");
    pal.destroy().expect("destroy");
}

#[test]
fn kill_all_signals_every_process() {
    let (_dir, pal) = load_example();
    pal.init("", "info", None).expect("init");
    let null = devnull();
    let stdio = [null.as_raw_fd(); 3];
    let a = pal
        .create_process(&strings(&["/bin/sleep", "30"]), &[], stdio)
        .expect("create a");
    let b = pal
        .create_process(&strings(&["/bin/sleep", "30"]), &[], stdio)
        .expect("create b");
    pal.kill(-1, libc::SIGKILL).expect("kill all");
    assert_eq!(pal.wait(a).expect("wait a"), 128 + libc::SIGKILL);
    assert_eq!(pal.wait(b).expect("wait b"), 128 + libc::SIGKILL);
    // Nothing left: kill -1 is still fine, a specific pid is not.
    pal.kill(-1, libc::SIGTERM).expect("kill all, none left");
    assert_failed(
        pal.kill(a, libc::SIGTERM).expect_err("reaped"),
        "pal_kill",
        libc::ESRCH,
    );
    pal.destroy().expect("destroy");
}

#[test]
fn kill_from_another_thread_interrupts_a_blocking_exec() {
    let (_dir, pal) = load_example();
    pal.init("", "info", None).expect("init");
    let null = devnull();
    let stdio = [null.as_raw_fd(); 3];
    std::thread::scope(|s| {
        let runner = s.spawn(|| pal.exec(&strings(&["/bin/sleep", "30"]), &[], stdio));
        // Signal forwarding as the runtime does it: kill(-1) until the payload is gone.
        while !runner.is_finished() {
            pal.kill(-1, libc::SIGTERM).expect("kill");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(
            runner.join().expect("join").expect("exec"),
            128 + libc::SIGTERM
        );
    });
    pal.destroy().expect("destroy");
}

#[test]
fn destroy_reaps_leftover_processes() {
    let (_dir, pal) = load_example();
    pal.init("", "info", None).expect("init");
    let null = devnull();
    let pid = pal
        .create_process(&strings(&["/bin/sleep", "30"]), &[], [null.as_raw_fd(); 3])
        .expect("create");
    pal.destroy().expect("destroy");
    // Reaped by destroy: no such child any more.
    // SAFETY: waitpid with WNOHANG on a pid; the status pointer may be NULL.
    let rc = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(rc, -1);
}

#[test]
fn errors_are_negative_errnos_naming_the_pal() {
    let (_dir, pal) = load_example();
    // A pre-built enclave cannot be adopted by a PAL without enclaves.
    assert_failed(
        pal.init("", "info", Some((3, 0x1000)))
            .expect_err("prebuilt"),
        "pal_init",
        libc::EINVAL,
    );
    // Calls before init.
    assert_failed(
        pal.wait(1).expect_err("before init"),
        "pal_exec",
        libc::EINVAL,
    );
    pal.init("", "info", None).expect("init");
    let err = pal.init("", "info", None).expect_err("double init");
    assert_eq!(
        err.to_string(),
        format!(
            "PAL {}: pal_init() failed with -16 (EBUSY)",
            pal.path().display()
        )
    );

    let null = devnull();
    let stdio = [null.as_raw_fd(); 3];
    assert_failed(
        pal.exec(&strings(&["/nonexistent/payload"]), &[], stdio)
            .expect_err("missing payload"),
        "pal_create_process",
        libc::ENOENT,
    );
    assert_failed(
        pal.create_process(
            &strings(&["/bin/true"]),
            &[],
            [null.as_raw_fd(), 9999, 9999],
        )
        .expect_err("bad fd"),
        "pal_create_process",
        libc::EBADF,
    );
    assert_failed(
        pal.wait(999_999).expect_err("unknown pid"),
        "pal_exec",
        libc::ESRCH,
    );
    assert_failed(
        pal.local_report(&[0; 100]).expect_err("short target info"),
        "pal_get_local_report",
        libc::EINVAL,
    );
    assert_eq!(
        pal.exec(&strings(&["/bin/true"]), &[], stdio)
            .expect("true"),
        0
    );
    assert_eq!(
        pal.exec(&strings(&["/bin/false"]), &[], stdio)
            .expect("false"),
        1
    );
    pal.destroy().expect("destroy");
}
