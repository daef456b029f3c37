//! Helpers for the enclave-container tests (`enclave.rs`, `enclave_engines.rs`): the test PALs
//! compiled from `tests/pals/`, enclave bundles, the runner PAL's call log, and host views of an
//! enclave container's processes.
//!
//! A test file uses it with `mod common; mod enclave_support;` (this module builds on
//! `common`).

#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Where the test PALs' sources are.
pub const PAL_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pals");
/// The PAL API header.
pub const PAL_INCLUDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../pal/include");

/// Every PAL the tests use: output name, source file, `PAL_VERSION`, extra compiler flags.
const PALS: &[(&str, &str, u32, &[&str])] = &[
    ("runner_v1.so", "runner_pal.c", 1, &[]),
    ("runner_v2.so", "runner_pal.c", 2, &[]),
    ("runner_v3.so", "runner_pal.c", 3, &[]),
    ("missing_destroy.so", "missing_destroy_pal.c", 2, &[]),
    (
        "version4.so",
        "bad_version_pal.c",
        3,
        &["-DREPORTED_VERSION=4"],
    ),
    (
        "version0.so",
        "bad_version_pal.c",
        3,
        &["-DREPORTED_VERSION=0"],
    ),
    ("positive_rc_v3.so", "positive_rc_pal.c", 3, &[]),
    ("hang_destroy_v3.so", "hang_destroy_pal.c", 3, &[]),
];

/// The compiled PAL `name` (one of [`PALS`]), e.g. `runner_v3.so`. The PALs are compiled once
/// per content of their sources into the shared test cache, so every test binary of a run (and
/// dockerd/containerd, which must be able to read them: rune loads the PAL on the host) uses the
/// same files.
pub fn pal(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(build_pals);
    let path = dir.join(name);
    assert!(path.is_file(), "no PAL {}", path.display());
    path
}

/// The runner PAL (`tests/pals/runner_pal.c`) of PAL API `version` 1, 2 or 3.
pub fn runner_pal(version: u32) -> PathBuf {
    pal(&format!("runner_v{version}.so"))
}

fn build_pals() -> PathBuf {
    let mut hasher = DefaultHasher::new();
    let mut sources: Vec<PathBuf> = fs::read_dir(PAL_SOURCES)
        .expect("read tests/pals")
        .flatten()
        .map(|e| e.path())
        .collect();
    sources.push(Path::new(PAL_INCLUDE).join("enclave_pal.h"));
    sources.sort();
    for source in &sources {
        source.file_name().hash(&mut hasher);
        fs::read(source).expect("read PAL source").hash(&mut hasher);
    }
    format!("{PALS:?}").hash(&mut hasher);
    let key = format!("enclave-pals-{:016x}", hasher.finish());
    cached_dir(&key, |dir| {
        for (name, source, version, flags) in PALS {
            let mut cmd = Command::new("gcc");
            cmd.args(["-shared", "-fPIC", "-Wall", "-Werror", "-O1"])
                .arg(format!("-DPAL_VERSION={version}"))
                .args(*flags)
                .arg("-I")
                .arg(PAL_INCLUDE)
                .arg("-o")
                .arg(dir.join(name))
                .arg(Path::new(PAL_SOURCES).join(source));
            run_cmd(&mut cmd, None, Duration::from_secs(120)).ok();
        }
    })
}

// ---------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------

/// A bundle for an enclave container of type `software` running `args` through `pal`, with a
/// writable rootfs so that the runner PAL can append to `/pal-calls.log`.
#[track_caller]
pub fn enclave_bundle(root: &Root, pal: &Path, args: &[&str]) -> Bundle {
    let mut b = writable_bundle(root, args);
    b.add_env("ENCLAVE_TYPE=software");
    b.add_env(&format!("ENCLAVE_RUNTIME_PATH={}", pal.display()));
    b
}

/// A plain bundle with a writable rootfs.
#[track_caller]
pub fn writable_bundle(root: &Root, args: &[&str]) -> Bundle {
    let mut b = Bundle::new(root, args);
    b.edit(|c| c["root"]["readonly"] = Value::Bool(false));
    b
}

/// The process env of the bundle's config.json.
pub fn bundle_env(b: &Bundle) -> Vec<String> {
    b.config["process"]["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Replace the process env of the bundle.
pub fn set_env(b: &mut Bundle, env: &[String]) {
    b.edit(|c| c["process"]["env"] = serde_json::json!(env));
}

/// `<root>/@enclave/<id>`: rune's own state for an enclave container.
pub fn enclave_state_dir(root: &Root, id: &str) -> PathBuf {
    root.path().join("@enclave").join(id)
}

/// Nothing left for the bundle's container: common's checks (state dir, cgroups, mounts,
/// processes) and rune's enclave state.
#[track_caller]
pub fn assert_enclave_gone(root: &Root, b: &Bundle) {
    assert_gone(root, &b.id, b.dir());
}

#[track_caller]
pub fn assert_gone(root: &Root, id: &str, bundle: &Path) {
    assert_nothing_left(root, id, bundle);
    let dir = enclave_state_dir(root, id);
    assert!(
        !dir.exists(),
        "enclave state {} left behind: {:?}",
        dir.display(),
        fs::read_dir(&dir).map(|rd| rd.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
}

// ---------------------------------------------------------------------------
// The runner PAL's call log
// ---------------------------------------------------------------------------

/// The runner PAL's call log in the bundle's rootfs (`/pal-calls.log`), one entry per line.
pub fn pal_log(b: &Bundle) -> Vec<String> {
    pal_log_at(&b.rootfs().join("pal-calls.log"))
}

pub fn pal_log_at(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Wait (up to `timeout`) until the log satisfies `pred`; returns the log either way.
pub fn wait_pal_log(
    b: &Bundle,
    timeout: Duration,
    pred: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let found = wait_for(timeout, || {
        let log = pal_log(b);
        pred(&log).then_some(log)
    });
    found.unwrap_or_else(|| pal_log(b))
}

/// The log with the PAL's process ids (which depend on the container's pid namespace) replaced
/// by `N`: `exec pid=N`, and `kill pid=N` for positive pids (`kill pid=-1` is kept).
pub fn normalized(log: &[String]) -> Vec<String> {
    log.iter()
        .map(|line| {
            for prefix in ["exec pid=", "kill pid="] {
                if let Some(rest) = line.strip_prefix(prefix) {
                    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    if !digits.is_empty() {
                        return format!("{prefix}N{}", &rest[digits.len()..]);
                    }
                }
            }
            line.clone()
        })
        .collect()
}

/// A string as the runner PAL writes it: in double quotes, `"` and `\` escaped (as JSON for the
/// printable strings the tests use).
pub fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string to JSON")
}

/// A list as the runner PAL writes it: `["a","b"]`.
pub fn qlist<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s.as_ref())).collect();
    format!("[{}]", quoted.join(","))
}

/// A `create_process` (v2/v3) or v1 `exec` line taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessCall {
    pub path: String,
    pub argv: Vec<String>,
    /// None for a v1 `exec` line (v1 has no env).
    pub env: Option<Vec<String>>,
}

/// Parses `create_process path=".." argv=[..] env=[..]` or `exec path=".." argv=[..] stdio=..`.
pub fn parse_process_call(line: &str) -> Option<ProcessCall> {
    let rest = line
        .strip_prefix("create_process path=")
        .or_else(|| line.strip_prefix("exec path="))?;
    let (path, rest) = json_prefix(rest)?;
    let rest = rest.strip_prefix(" argv=")?;
    let (argv, rest) = json_prefix(rest)?;
    let env = match rest.strip_prefix(" env=") {
        Some(rest) => Some(json_prefix(rest)?.0),
        None => None,
    };
    Some(ProcessCall {
        path: serde_json::from_value(path).ok()?,
        argv: serde_json::from_value(argv).ok()?,
        env: match env {
            Some(env) => Some(serde_json::from_value(env).ok()?),
            None => None,
        },
    })
}

/// The JSON value at the start of `s` and what follows it.
fn json_prefix(s: &str) -> Option<(Value, &str)> {
    let mut stream = serde_json::Deserializer::from_str(s).into_iter::<Value>();
    let value = stream.next()?.ok()?;
    Some((value, &s[stream.byte_offset()..]))
}

/// Process calls (`create_process`, or v1 `exec path=`) in the log.
pub fn process_calls(log: &[String]) -> Vec<ProcessCall> {
    log.iter().filter_map(|l| parse_process_call(l)).collect()
}

// ---------------------------------------------------------------------------
// Host views of processes
// ---------------------------------------------------------------------------

/// The fds of `pid` as (number, link target), from the host.
pub fn fds_of(pid: i32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n: i32 = e.file_name().to_str()?.parse().ok()?;
                    let target = fs::read_link(e.path()).ok()?;
                    Some((n, target.to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

/// `State:` letter of `pid` (R, S, Z, ...).
pub fn proc_state(pid: i32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    after.split_whitespace().next().map(str::to_string)
}

/// Children of `pid` (host pids), with their state.
pub fn children_of(pid: i32) -> Vec<(i32, String)> {
    all_pids()
        .into_iter()
        .filter(|&p| proc_ppid(p) == Some(pid))
        .filter_map(|p| Some((p, proc_state(p)?)))
        .collect()
}

/// `comm` of `pid`.
pub fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Whether `pid` still exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(proc_state(pid).as_deref(), Some(s) if s != "Z" && s != "X")
}

/// Waits for a file to exist and be non-empty; returns its content.
pub fn wait_file(path: &Path, timeout: Duration) -> Option<String> {
    wait_for(timeout, || {
        fs::read_to_string(path).ok().filter(|s| !s.is_empty())
    })
}

/// Runs `rune --root <root> <args>` with extra environment variables for rune itself.
#[track_caller]
pub fn run_with_env<S: AsRef<std::ffi::OsStr>>(
    root: &Root,
    args: &[S],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = root.cmd(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_cmd(&mut cmd, None, CMD_TIMEOUT)
}

/// Status of the container from `state`, or None when `state` fails.
pub fn status_of(root: &Root, id: &str) -> Option<String> {
    root.state(id)
        .and_then(|s| s["status"].as_str().map(str::to_string))
}

/// Waits until the container's status is `status`; the last status seen otherwise.
pub fn wait_status_for(
    root: &Root,
    id: &str,
    status: &str,
    timeout: Duration,
) -> Result<(), Option<String>> {
    let mut last = None;
    let found = wait_for(timeout, || {
        last = status_of(root, id);
        (last.as_deref() == Some(status)).then_some(())
    });
    found.ok_or(last)
}

/// `rune delete ID` of a stopped container; on failure, panics with what is still in the
/// container's cgroups (and whether a second attempt a moment later succeeds).
#[track_caller]
pub fn delete_stopped(root: &Root, id: &str) {
    let o = root.run(&["delete", id]);
    if o.success() {
        return;
    }
    let mut left = Vec::new();
    for dir in cgroup_dirs_named(id) {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let tasks = fs::read_to_string(dir.join("tasks")).unwrap_or_default();
        let describe = |list: &str| -> Vec<String> {
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .map(|p| format!("{p} {} {:?}", comm(p), proc_state(p)))
                .collect()
        };
        left.push(format!(
            "{}: procs {:?} tasks {:?}",
            dir.display(),
            describe(&procs),
            describe(&tasks)
        ));
    }
    std::thread::sleep(Duration::from_millis(500));
    let retry = root.run(&["delete", id]);
    panic!(
        "delete of stopped container {id} failed: {o}\n  cgroups then: {left:#?}\n  \
         a retry 0.5 s later: exit {}, stderr {:?}",
        retry.code(),
        retry.stderr
    );
}

/// Runs `cmd` on a fresh pseudo-terminal; once the terminal output contains `trigger`, writes
/// `input` to it. Returns the exit output (None on timeout, the process group then killed) and
/// everything read from the terminal.
// The child is reaped by try_wait (normal path) or wait (timeout path).
#[allow(clippy::zombie_processes)]
pub fn pty_dialogue(
    cmd: &mut Command,
    trigger: &str,
    input: &[u8],
    timeout: Duration,
) -> (Option<Output>, String) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    use std::time::Instant;

    let pty = nix::pty::openpty(None, None).expect("openpty");
    let master: OwnedFd = pty.master;
    let slave: OwnedFd = pty.slave;
    for fd in [&master, &slave] {
        let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    let _ = fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let cmdline = describe(cmd);
    cmd.stdin(Stdio::from(slave.try_clone().expect("dup slave")))
        .stdout(Stdio::from(slave.try_clone().expect("dup slave")))
        .stderr(Stdio::from(slave))
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn `{cmdline}`: {e}"));
    let mut master = fs::File::from(master);
    let mut data = Vec::new();
    let mut sent = false;
    let deadline = Instant::now() + timeout;
    let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
    loop {
        {
            let mut fds = [nix::poll::PollFd::new(
                master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16));
        }
        let mut buf = [0u8; 4096];
        if let Ok(n) = master.read(&mut buf) {
            data.extend_from_slice(&buf[..n]);
        }
        if !sent && String::from_utf8_lossy(&data).contains(trigger) {
            let _ = master.write_all(input);
            sent = true;
        }
        if exited.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some((status, Instant::now()));
            }
        }
        if let Some((status, at)) = exited {
            if at.elapsed() > Duration::from_millis(300) {
                let text = String::from_utf8_lossy(&data).into_owned();
                let out = Output {
                    cmdline,
                    status,
                    stdout: text.clone(),
                    stderr: String::new(),
                };
                return (Some(out), text);
            }
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.kill();
            let _ = child.wait();
            return (None, String::from_utf8_lossy(&data).into_owned());
        }
    }
}
