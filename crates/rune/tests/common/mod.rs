//! Shared helpers for rune's integration tests.
//!
//! Every test file does `mod common;`. Nothing here depends on rune's
//! internals: the binary under test is driven through its CLI only, so the
//! same tests can be pointed at runc (`RUNE_TEST_BINARY=/usr/sbin/runc`) as a
//! reference implementation.
//!
//! Conventions:
//! * every temporary directory, container id, daemon and namespace name is
//!   unique per process and per call, so test files may run concurrently;
//! * every command runs with a timeout and its stdout/stderr are captured in
//!   files (not pipes), so a container that inherits them can never make a
//!   test hang waiting for EOF;
//! * every resource has a Drop guard that cleans up even when the test panics.

#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Default timeout for a single CLI invocation.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Name of the image built for the docker and containerd tests.
pub const IMAGE_REF: &str = "localhost/rune-busybox:test";

// ---------------------------------------------------------------------------
// Binary under test, unique names, scratch space
// ---------------------------------------------------------------------------

/// The runtime binary under test: `RUNE_TEST_BINARY` if set (e.g.
/// `/usr/sbin/runc` as a reference), else the `rune` binary cargo built.
pub fn rune_bin() -> PathBuf {
    match std::env::var_os("RUNE_TEST_BINARY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_rune")),
    }
}

/// True when the binary under test is the reference runc (only used to
/// label diagnostics, never to relax an assertion).
pub fn testing_reference_runc() -> bool {
    rune_bin().file_name() == Some(OsStr::new("runc"))
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique within this machine for the lifetime of this process:
/// `<prefix>-<pid>-<n>`. Only `[a-z0-9-]` plus what the prefix has.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Directory for caches shared by all test binaries of a run
/// (`target/test-cache`).
pub fn cache_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-cache");
    fs::create_dir_all(&dir).expect("create test cache dir");
    dir
}

/// A directory removed (after unmounting whatever is mounted below it and
/// killing processes rooted in it) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// New empty directory `/tmp/rt-<name>-<pid>-<n>`. Kept short because
    /// unix socket paths live in some of them.
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(&format!("rt-{name}")));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join<P: AsRef<Path>>(&self, p: P) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RUNE_TEST_KEEP").is_some() {
            eprintln!("RUNE_TEST_KEEP: keeping {}", self.path.display());
            return;
        }
        kill_processes_in(&self.path);
        unmount_below(&self.path);
        make_writable(&self.path);
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn make_writable(dir: &Path) {
    // Tests create read-only dirs (bad --root); make them removable again.
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if let Ok(ft) = e.file_type() {
                if ft.is_dir() {
                    let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o755));
                    make_writable(&e.path());
                }
            }
        }
    }
}

/// Lazily unmount every mount point at or below `dir` (deepest first).
pub fn unmount_below(dir: &Path) {
    for _ in 0..3 {
        let mut points: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(dir))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in points {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&p)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Mount points of this process' mount namespace, octal escapes decoded.
pub fn mount_points() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// All pids currently in /proc.
pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Pids whose cwd or root directory is inside `dir`.
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|pid| {
            ["cwd", "root"].iter().any(|what| {
                fs::read_link(format!("/proc/{pid}/{what}"))
                    .map(|p| p.starts_with(dir))
                    .unwrap_or(false)
            })
        })
        .collect()
}

fn kill_processes_in(dir: &Path) {
    for _ in 0..20 {
        let pids: Vec<(i32, u64)> = processes_in(dir)
            .into_iter()
            .filter_map(|p| Some((p, proc_start_time(p)?)))
            .collect();
        if pids.is_empty() {
            return;
        }
        for (pid, start) in pids {
            kill_exact(pid, start);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Fields of /proc/<pid>/stat after the command name (field 3 onwards).
fn proc_stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Start time (clock ticks since boot) of `pid`: with the pid, it
/// identifies a process; pids are recycled quickly here (pid_max 32768).
pub fn proc_start_time(pid: i32) -> Option<u64> {
    proc_stat_fields(pid)?.get(19)?.parse().ok()
}

/// Parent pid of `pid`.
pub fn proc_ppid(pid: i32) -> Option<i32> {
    proc_stat_fields(pid)?.get(1)?.parse().ok()
}

/// SIGKILL `pid` only if it is still the process that started at `start`
/// (never a recycled pid, which could be anybody's, even a thread of
/// another test binary).
pub fn kill_exact(pid: i32, start: u64) {
    if pid > 1 && proc_start_time(pid) == Some(start) {
        // Debug aid: RUNE_TEST_KILL_LOG=FILE records every process the
        // cleanup code kills.
        if let Some(log) = std::env::var_os("RUNE_TEST_KILL_LOG") {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let line = format!(
                "test process {} kills {pid}: {}\n",
                std::process::id(),
                String::from_utf8_lossy(&cmd).replace('\0', " "),
            );
            let _ = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(log)
                .and_then(|mut f| f.write_all(line.as_bytes()));
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

// ---------------------------------------------------------------------------
// Running commands with a timeout
// ---------------------------------------------------------------------------

/// Result of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit code; for a command killed by signal N, 128+N (like a shell).
    pub fn code(&self) -> i32 {
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            _ => -1,
        }
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panic with full diagnostics unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> Output {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panic with full diagnostics unless the command exited non-zero.
    #[track_caller]
    pub fn fails(self) -> Output {
        assert!(!self.success(), "command unexpectedly succeeded: {self}");
        self
    }

    /// Non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Assert the error report convention: non-zero exit and exactly one
    /// non-empty line on stderr. Returns that line (lower-cased).
    #[track_caller]
    pub fn one_error_line(&self) -> String {
        assert!(!self.success(), "expected a failure: {self}");
        let lines = self.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one non-empty line on stderr: {self}"
        );
        lines[0].to_lowercase()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n  $ {}\n  exit: {} ({:?})\n  stdout: {:?}\n  stderr: {:?}",
            self.cmdline,
            self.code(),
            self.status,
            truncate(&self.stdout, 4000),
            truncate(&self.stderr, 4000)
        )
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...[{} bytes cut]", &s[..end], s.len() - end)
    }
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            let _ = write!(s, " '{}'", a.replace('\'', "'\\''"));
        } else {
            let _ = write!(s, " {a}");
        }
    }
    s
}

/// An anonymous (already unlinked) scratch file for captured output: the
/// child writes through its copy of the descriptor, we read through ours.
fn capture_file(tag: &str) -> fs::File {
    let path = std::env::temp_dir().join(unique(&format!("rt-out-{tag}")));
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create capture file");
    let _ = fs::remove_file(&path);
    f
}

fn read_all(f: &fs::File) -> String {
    use std::os::unix::fs::FileExt;
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match f.read_at(&mut buf, data.len() as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

/// A spawned process whose stdout/stderr go to files.
pub struct Spawned {
    pub child: Child,
    pub cmdline: String,
    stdout_file: Option<fs::File>,
    stderr_file: Option<fs::File>,
    finished: bool,
}

impl Spawned {
    /// Spawn `cmd` in its own process group, stdio captured in files,
    /// `stdin` written to its stdin (or /dev/null when None).
    pub fn new(cmd: &mut Command, stdin: Option<Vec<u8>>) -> Spawned {
        let out = capture_file("out");
        let err = capture_file("err");
        cmd.stdout(out.try_clone().expect("dup capture file"))
            .stderr(err.try_clone().expect("dup capture file"))
            .process_group(0);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let cmdline = describe(cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{cmdline}`: {e}"));
        if let Some(data) = stdin {
            if let Some(mut pipe) = child.stdin.take() {
                thread::spawn(move || {
                    let _ = pipe.write_all(&data);
                });
            }
        }
        Spawned {
            child,
            cmdline,
            stdout_file: Some(out),
            stderr_file: Some(err),
            finished: false,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stdout_now(&self) -> String {
        self.stdout_file.as_ref().map(read_all).unwrap_or_default()
    }

    pub fn stderr_now(&self) -> String {
        self.stderr_file.as_ref().map(read_all).unwrap_or_default()
    }

    /// Wait up to `timeout`; None if still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Output> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.finished = true;
                    return Some(Output {
                        cmdline: self.cmdline.clone(),
                        status,
                        stdout: self.stdout_now(),
                        stderr: self.stderr_now(),
                    });
                }
                Ok(None) => {}
                Err(e) => panic!("waiting for `{}`: {e}", self.cmdline),
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait up to `timeout`, killing the process group and panicking on
    /// timeout.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Output {
        match self.wait_timeout(timeout) {
            Some(o) => o,
            None => {
                let out = self.stdout_now();
                let err = self.stderr_now();
                self.kill();
                panic!(
                    "timed out after {timeout:?}: `{}`\n  stdout so far: {out:?}\n  stderr so far: {err:?}",
                    self.cmdline
                );
            }
        }
    }

    /// SIGKILL the process group and reap.
    pub fn kill(&mut self) {
        if !self.finished {
            let pgid = nix::unistd::Pid::from_raw(self.pid());
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.finished = true;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run `cmd` to completion with a timeout (panics on timeout).
#[track_caller]
pub fn run_cmd(cmd: &mut Command, stdin: Option<Vec<u8>>, timeout: Duration) -> Output {
    Spawned::new(cmd, stdin).wait(timeout)
}

/// Run a host command given as argv, 60 s timeout.
#[track_caller]
pub fn sh(argv: &[&str]) -> Output {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    run_cmd(&mut cmd, None, Duration::from_secs(60))
}

/// Poll `f` every 20 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// busybox rootfs and OCI image (cached, built atomically)
// ---------------------------------------------------------------------------

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
tester:x:1000:1000:tester:/tmp:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ntester:x:1000:\nnogroup:x:65534:\n";

/// Build `name` in the cache dir with `build` (given a fresh temp dir) and
/// rename it into place. Safe when several processes race: the loser
/// discards its copy and uses the winner's.
pub fn cached_dir(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let final_path = cache_dir().join(name);
    if final_path.exists() {
        return final_path;
    }
    let tmp = cache_dir().join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).expect("create cache temp dir");
    build(&tmp);
    if fs::rename(&tmp, &final_path).is_err() {
        // Somebody else won the race (rename onto a non-empty dir fails).
        let _ = fs::remove_dir_all(&tmp);
        assert!(
            final_path.exists(),
            "cannot install {}",
            final_path.display()
        );
    }
    final_path
}

/// The cached busybox rootfs: /bin/busybox plus one symlink per applet,
/// /etc/passwd and /etc/group (root, tester 1000:1000, nobody), and empty
/// /tmp /proc /sys /dev /root /etc dirs.
pub fn busybox_rootfs() -> PathBuf {
    cached_dir("busybox-rootfs-v1", |dir| {
        for d in [
            "bin", "etc", "tmp", "proc", "sys", "dev", "root", "usr/bin", "var",
        ] {
            fs::create_dir_all(dir.join(d)).expect("mkdir in rootfs");
        }
        fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))
            .expect("chmod /tmp");
        fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy /bin/busybox");
        let list = sh(&["/bin/busybox", "--list"]).ok();
        for applet in list.stdout.split_whitespace() {
            if applet == "busybox" || applet.contains('/') {
                continue;
            }
            symlink("busybox", dir.join("bin").join(applet)).expect("applet symlink");
        }
        fs::write(dir.join("etc/passwd"), PASSWD).expect("write passwd");
        fs::write(dir.join("etc/group"), GROUP).expect("write group");
    })
}

/// Copy a directory tree, preserving symlinks and permissions.
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("mkdir copy dest");
    let perm = fs::metadata(src).expect("stat copy src").permissions();
    for e in fs::read_dir(src).expect("read copy src").flatten() {
        let ft = e.file_type().expect("file type");
        let to = dst.join(e.file_name());
        if ft.is_symlink() {
            symlink(fs::read_link(e.path()).expect("readlink"), &to).expect("symlink copy");
        } else if ft.is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).expect("file copy");
        }
    }
    fs::set_permissions(dst, perm).expect("chmod copy dest");
}

/// OCI image layout (dir) with tag `rune-test`, made with umoci from the
/// busybox rootfs; default cmd `sh`.
pub fn busybox_oci_layout() -> PathBuf {
    let rootfs = busybox_rootfs();
    cached_dir("busybox-oci-v1", |dir| {
        let layout = dir.join("layout");
        let image = format!("{}:rune-test", layout.display());
        sh(&["umoci", "init", "--layout", &layout.to_string_lossy()]).ok();
        sh(&["umoci", "new", "--image", &image]).ok();
        sh(&[
            "umoci",
            "insert",
            "--image",
            &image,
            &rootfs.to_string_lossy(),
            "/",
        ])
        .ok();
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
        let _ = sh(&["umoci", "gc", "--layout", &layout.to_string_lossy()]);
    })
    .join("layout")
}

/// docker-archive tarball of the busybox image, tagged [`IMAGE_REF`]; both
/// `docker load` and `ctr images import` accept it.
pub fn busybox_image_tar() -> PathBuf {
    let layout = busybox_oci_layout();
    cached_dir("busybox-image-tar-v1", |dir| {
        let tar = dir.join("busybox.tar");
        sh(&[
            "skopeo",
            "--insecure-policy",
            "copy",
            &format!("oci:{}:rune-test", layout.display()),
            &format!("docker-archive:{}:{IMAGE_REF}", tar.display()),
        ])
        .ok();
    })
    .join("busybox.tar")
}

// ---------------------------------------------------------------------------
// Runtime root, bundles, containers
// ---------------------------------------------------------------------------

/// A private `--root` directory for the runtime. On drop every container
/// still recorded in it is force-deleted, then the directory is removed.
pub struct Root {
    dir: TempDir,
    path: PathBuf,
}

impl Root {
    pub fn new() -> Root {
        let dir = TempDir::new("root");
        // Let the runtime create the state dir itself.
        let path = dir.join("state");
        Root { dir, path }
    }

    /// The `--root` value.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rune --root <root> <args>`.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(rune_bin());
        c.arg("--root").arg(&self.path).args(args);
        c
    }

    /// Run `rune --root <root> <args>` with the default timeout.
    #[track_caller]
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run_cmd(&mut self.cmd(args), None, CMD_TIMEOUT)
    }

    #[track_caller]
    pub fn run_timeout<S: AsRef<OsStr>>(&self, args: &[S], timeout: Duration) -> Output {
        run_cmd(&mut self.cmd(args), None, timeout)
    }

    #[track_caller]
    pub fn run_stdin<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> Output {
        run_cmd(&mut self.cmd(args), Some(stdin.to_vec()), CMD_TIMEOUT)
    }

    /// Spawn `rune --root <root> <args>` in the background.
    pub fn spawn<S: AsRef<OsStr>>(&self, args: &[S]) -> Spawned {
        Spawned::new(&mut self.cmd(args), None)
    }

    /// `state <id>` parsed, or None when the command fails.
    pub fn state(&self, id: &str) -> Option<Value> {
        let o = self.run(&["state", id]);
        if !o.success() {
            return None;
        }
        Some(o.json())
    }

    /// Status string from `state`, panicking with diagnostics on failure.
    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        let o = self.run(&["state", id]).ok();
        o.json()["status"]
            .as_str()
            .unwrap_or_else(|| panic!("state has no status: {o}"))
            .to_string()
    }

    /// Init pid from `state`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i64 {
        let o = self.run(&["state", id]).ok();
        o.json()["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("state has no pid: {o}"))
    }

    /// Wait until `state` reports `status` (10 s), panicking otherwise.
    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str) {
        let mut last = String::new();
        let found = wait_for(Duration::from_secs(10), || {
            let o = self.run(&["state", id]);
            last = o.to_string();
            if o.success() && o.json()["status"] == status {
                Some(())
            } else {
                None
            }
        });
        assert!(
            found.is_some(),
            "container {id} never reached {status}: {last}"
        );
    }

    /// Force-delete every container recorded in the root.
    pub fn delete_all(&self) {
        if let Ok(rd) = fs::read_dir(&self.path) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    let id = e.file_name().to_string_lossy().into_owned();
                    let _ = run_quiet(self.cmd(&["delete", "--force", &id]));
                }
            }
        }
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::new()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        self.delete_all();
        let _ = &self.dir; // removed by TempDir's drop
    }
}

/// Run without panicking (used in Drop); 20 s timeout.
fn run_quiet(mut cmd: Command) -> Option<Output> {
    let mut s = Spawned::new(&mut cmd, None);
    let r = s.wait_timeout(Duration::from_secs(20));
    if r.is_none() {
        s.kill();
    }
    r
}

/// An OCI bundle: `config.json` generated by `rune spec` and edited, and a
/// copy of the busybox rootfs. Carries a unique container id. On drop the
/// container is force-deleted and the directory removed.
pub struct Bundle {
    pub id: String,
    pub config: Value,
    root_path: PathBuf,
    dir: TempDir,
}

impl Bundle {
    /// New bundle for a container in `root`. Process: `args`,
    /// terminal=false. Everything else is the runtime's `spec` default.
    #[track_caller]
    pub fn new(root: &Root, args: &[&str]) -> Bundle {
        let dir = TempDir::new("bundle");
        let spec = run_cmd(
            Command::new(rune_bin()).arg("spec").current_dir(dir.path()),
            None,
            CMD_TIMEOUT,
        );
        assert!(spec.success(), "`spec` failed: {spec}");
        let text = fs::read_to_string(dir.join("config.json")).expect("spec wrote no config.json");
        let config: Value = serde_json::from_str(&text).expect("spec wrote invalid JSON");
        copy_tree(&busybox_rootfs(), &dir.join("rootfs"));
        let mut b = Bundle {
            id: unique("rt"),
            config,
            root_path: root.path().to_path_buf(),
            dir,
        };
        b.edit(|c| {
            c["process"]["terminal"] = Value::Bool(false);
            c["process"]["args"] = serde_json::json!(args);
        });
        b
    }

    /// Bundle directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn dir_str(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Edit the config and write it back.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        f(&mut self.config);
        self.save();
    }

    pub fn save(&self) {
        fs::write(
            self.config_path(),
            serde_json::to_vec_pretty(&self.config).expect("serialize config"),
        )
        .expect("write config.json");
    }

    /// Set an annotation (`annotations.<key> = <value>`).
    pub fn set_annotation(&mut self, key: &str, value: &str) {
        self.edit(|c| {
            if !c["annotations"].is_object() {
                c["annotations"] = serde_json::json!({});
            }
            c["annotations"][key] = Value::String(value.to_string());
        });
    }

    /// Add an environment variable to the process.
    pub fn add_env(&mut self, kv: &str) {
        self.edit(|c| {
            if let Some(env) = c["process"]["env"].as_array_mut() {
                env.push(Value::String(kv.to_string()));
            } else {
                c["process"]["env"] = serde_json::json!([kv]);
            }
        });
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let mut cmd = Command::new(rune_bin());
        cmd.arg("--root")
            .arg(&self.root_path)
            .args(["delete", "--force", &self.id]);
        let _ = run_quiet(cmd);
        // Empty cgroups a failed create or delete may have leaked (the
        // assertions about them ran before this).
        kill_processes_in(self.dir.path());
        remove_cgroups_named(&self.id);
        // TempDir's drop kills leftovers, unmounts and removes the dir.
    }
}

// ---------------------------------------------------------------------------
// Leftover checks
// ---------------------------------------------------------------------------

/// Does cgroup directory name `dir` stand for container/name `name`?
/// Exactly `name`, or a `:`-separated part of it equal to `name` (cgroupfs
/// dirs made from systemd-style paths like `:youki:<id>` or `system.slice:
/// runc:<id>`), or `<prefix>-<name>.scope` / `<name>.scope`.
pub fn cgroup_name_matches(dir: &str, name: &str) -> bool {
    dir == name
        || dir.split(':').any(|part| {
            part == name
                || part
                    .strip_suffix(".scope")
                    .map(|p| p == name || p.ends_with(&format!("-{name}")))
                    .unwrap_or(false)
        })
}

/// Cgroup directories for `name` (see [`cgroup_name_matches`]) under
/// /sys/fs/cgroup/*/ (up to 6 levels deep).
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
        if depth == 0 {
            return;
        }
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let p = e.path();
                    if cgroup_name_matches(&e.file_name().to_string_lossy(), name) {
                        out.push(p.clone());
                    }
                    walk(&p, name, depth - 1, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 7, &mut out);
    out
}

/// What is left behind for container `id` (state dir, cgroups, mounts,
/// processes). Empty when clean.
pub fn leftovers(root: &Path, id: &str, bundle: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let state = root.join(id);
    if state.exists() {
        found.push(format!("state dir {} exists", state.display()));
    }
    for cg in cgroup_dirs_named(id) {
        found.push(format!("cgroup {} exists", cg.display()));
    }
    let bundle_s = bundle.to_string_lossy();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        if unescape_mountinfo(line).contains(&*bundle_s) {
            found.push(format!("mount: {line}"));
        }
    }
    for pid in processes_in(bundle) {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        found.push(format!("process {pid} ({cmdline}) lives in the bundle"));
    }
    found
}

/// Assert that nothing is left behind for `id` (retrying for up to 3 s,
/// since cgroup removal can trail process exit slightly).
#[track_caller]
pub fn assert_nothing_left(root: &Root, id: &str, bundle: &Path) {
    let mut last = Vec::new();
    let clean = wait_for(Duration::from_secs(3), || {
        last = leftovers(root.path(), id, bundle);
        if last.is_empty() {
            Some(())
        } else {
            None
        }
    });
    assert!(
        clean.is_some(),
        "left behind for {id}:\n  {}",
        last.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Daemons (containerd, dockerd) in a private mount namespace
// ---------------------------------------------------------------------------

/// Helper for a daemon started as
/// `unshare --mount --propagation private sh -c 'mount tmpfs on /run ...; exec daemon'`.
///
/// The private mount namespace with fresh tmpfs on /run (and /etc/docker
/// for dockerd) guarantees the daemon and everything it starts (shims, whose
/// sockets containerd 1.6 hardcodes under /run/containerd/s, FIFOs, rootfs
/// and overlay mounts, trust keys) never touch the host's /run/containerd,
/// /run/docker, /var/run/docker.sock or /etc/docker. All mounts vanish with
/// the namespace.
struct NsDaemon {
    child: Spawned,
    /// `mnt:[inode]` of the daemon's namespace ("" if unknown).
    mnt_ns: String,
    /// Open handle on that namespace: keeps it (and so its inode number)
    /// alive, so that `mnt_ns` can never name a recycled namespace of
    /// somebody else's while we look for our processes by it.
    _mnt_ns_handle: Option<fs::File>,
    log: PathBuf,
}

impl NsDaemon {
    fn start(mut daemon: Command, extra_tmpfs: &[&str], log: PathBuf) -> NsDaemon {
        let mut script = String::from("set -e; mount -n -t tmpfs -o mode=755 rune-test-run /run; ");
        for p in extra_tmpfs {
            let _ = write!(
                script,
                "if [ -d {p} ]; then mount -n -t tmpfs -o mode=755 rune-test {p}; fi; "
            );
        }
        script.push_str("exec \"$@\"");
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
        ]);
        cmd.arg(daemon.get_program()).args(daemon.get_args());
        for (k, v) in daemon.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let logf = fs::File::create(&log).expect("create daemon log");
        let errf = logf.try_clone().expect("dup log");
        let cmdline = describe(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(logf)
            .stderr(errf)
            .process_group(0);
        let _ = &mut daemon;
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{cmdline}`: {e}"));
        let pid = child.id();
        let host_ns = fs::read_link("/proc/self/ns/mnt")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Wait until the exec'd daemon is in its own namespace; hold it.
        let held = wait_for(Duration::from_secs(10), || {
            let handle = fs::File::open(format!("/proc/{pid}/ns/mnt")).ok()?;
            let ns = fs::read_link(format!("/proc/self/fd/{}", handle.as_raw_fd()))
                .ok()?
                .to_string_lossy()
                .into_owned();
            (ns != host_ns).then_some((ns, handle))
        });
        let (mnt_ns, mnt_ns_handle) = match held {
            Some((ns, h)) => (ns, Some(h)),
            None => (String::new(), None),
        };
        NsDaemon {
            child: Spawned {
                child,
                cmdline,
                stdout_file: None,
                stderr_file: None,
                finished: false,
            },
            mnt_ns,
            _mnt_ns_handle: mnt_ns_handle,
            log,
        }
    }

    fn pid(&self) -> i32 {
        self.child.pid()
    }

    fn alive(&mut self) -> bool {
        if self.child.finished {
            return false;
        }
        match self.child.child.try_wait() {
            Ok(None) => true,
            _ => {
                // Reaped: its pid may be recycled from now on.
                self.child.finished = true;
                false
            }
        }
    }

    fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// (pid, start time) of every process in the daemon's mount namespace
    /// and of all their descendants (container processes live in their own
    /// namespaces, but descend from the shims).
    fn family(&mut self) -> Vec<(i32, u64)> {
        let mut procs = Vec::new();
        let mut set: HashSet<i32> = HashSet::new();
        for pid in all_pids() {
            let ns = fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !self.mnt_ns.is_empty() && ns == self.mnt_ns {
                set.insert(pid);
            }
            if let (Some(ppid), Some(start)) = (proc_ppid(pid), proc_start_time(pid)) {
                procs.push((pid, ppid, start));
            }
        }
        if self.alive() {
            set.insert(self.pid());
        }
        loop {
            let before = set.len();
            for &(pid, ppid, _) in &procs {
                if set.contains(&ppid) {
                    set.insert(pid);
                }
            }
            if set.len() == before {
                break;
            }
        }
        procs
            .into_iter()
            .filter(|(pid, _, _)| set.contains(pid) && *pid > 1)
            .map(|(pid, _, start)| (pid, start))
            .collect()
    }

    /// SIGTERM the daemon, give it `grace`, then SIGKILL it and every
    /// process of its namespace/descendants.
    fn stop(&mut self, grace: Duration) {
        let victims = self.family();
        if self.alive() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid()),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if self.child.wait_timeout(grace).is_none() {
            self.child.kill();
        }
        for _ in 0..50 {
            let mut left = self.family();
            left.extend(
                victims
                    .iter()
                    .copied()
                    .filter(|&(p, start)| proc_start_time(p) == Some(start)),
            );
            if left.is_empty() {
                break;
            }
            for (pid, start) in left {
                kill_exact(pid, start);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.child.wait();
        self.child.finished = true;
    }
}

/// Remove (empty) cgroup directories named `name` anywhere under
/// /sys/fs/cgroup, children first.
pub fn remove_cgroups_named(name: &str) {
    fn rm_tree(p: &Path) {
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    rm_tree(&e.path());
                }
            }
        }
        let _ = fs::remove_dir(p);
    }
    for _ in 0..20 {
        let dirs = cgroup_dirs_named(name);
        if dirs.is_empty() {
            return;
        }
        for d in dirs {
            rm_tree(&d);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A private containerd (own root, state, sockets, mount namespace).
/// `ctr()` runs ctr against it, inside its mount namespace (ctr creates
/// FIFOs under /run/containerd/fifo, which must be visible to the shim).
pub struct Containerd {
    daemon: NsDaemon,
    pub dir: TempDir,
    pub address: PathBuf,
    /// containerd namespace used by `ctr()` (also the cgroup parent name).
    pub namespace: String,
}

impl Containerd {
    #[track_caller]
    pub fn start() -> Containerd {
        let dir = TempDir::new("ctrd");
        let address = dir.join("c.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  address = ""
  level = "debug"

[metrics]
  address = ""
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            address = address.display(),
        );
        fs::write(dir.join("config.toml"), config).expect("write containerd config");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(dir.join("config.toml"));
        let mut daemon = NsDaemon::start(cmd, &[], dir.join("containerd.log"));
        let up = wait_for(Duration::from_secs(20), || {
            if !daemon.alive() {
                return Some(false);
            }
            address.exists().then_some(true)
        });
        let ok = up == Some(true);
        let c = Containerd {
            daemon,
            dir,
            address,
            namespace: unique("rune-test"),
        };
        if !ok {
            let tail = c.daemon.log_tail();
            drop(c);
            panic!("containerd did not come up:\n{tail}");
        }
        // Wait until it answers.
        let mut last = String::new();
        let ready = wait_for(Duration::from_secs(20), || {
            let o = c.ctr(&["version"]);
            last = o.to_string();
            o.success().then_some(())
        });
        if ready.is_none() {
            let tail = c.daemon.log_tail();
            drop(c);
            panic!("containerd does not answer: {last}\n{tail}");
        }
        c
    }

    /// Root given to the runtime for containerd's tasks (`--runc-root`).
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.join("runtime-root")
    }

    /// `nsenter -t <containerd> -m ctr -a <sock> -n <ns> <args>` command.
    pub fn ctr_cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.daemon.pid().to_string())
            .args(["-m", "--", "ctr", "-a"])
            .arg(&self.address)
            .arg("-n")
            .arg(&self.namespace)
            .args(args);
        c
    }

    #[track_caller]
    pub fn ctr<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run_cmd(&mut self.ctr_cmd(args), None, Duration::from_secs(60))
    }

    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// Import the busybox image ([`IMAGE_REF`]).
    #[track_caller]
    pub fn import_busybox(&self) {
        let tar = busybox_image_tar();
        let o = self.ctr(&["images", "import", &tar.to_string_lossy()]);
        assert!(
            o.success(),
            "ctr images import failed: {o}\n{}",
            self.log_tail()
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.daemon.alive() {
            // Kill and delete whatever tasks/containers are left.
            let tasks = run_quiet(self.ctr_cmd(&["tasks", "ls", "-q"]))
                .map(|o| o.stdout)
                .unwrap_or_default();
            for t in tasks.split_whitespace() {
                let _ = run_quiet(self.ctr_cmd(&["tasks", "kill", "-a", "-s", "SIGKILL", t]));
                let _ = run_quiet(self.ctr_cmd(&["tasks", "delete", "-f", t]));
            }
            let ctrs = run_quiet(self.ctr_cmd(&["containers", "ls", "-q"]))
                .map(|o| o.stdout)
                .unwrap_or_default();
            for c in ctrs.split_whitespace() {
                let _ = run_quiet(self.ctr_cmd(&["containers", "delete", c]));
            }
        }
        self.daemon.stop(Duration::from_secs(5));
        remove_cgroups_named(&self.namespace);
        // TempDir's drop unmounts and removes the directory.
    }
}

/// A private dockerd (own data-root, exec-root, socket, config file, its
/// own managed containerd, mount namespace), with runtime `rune` =
/// [`rune_bin`]. `docker()` runs the docker client against it
/// (DOCKER_HOST is set only for that child).
pub struct Dockerd {
    daemon: NsDaemon,
    pub dir: TempDir,
    pub host: String,
    /// Cgroup parent for its containers (removed on drop).
    pub cgroup_parent: String,
}

impl Dockerd {
    #[track_caller]
    pub fn start() -> Dockerd {
        let dir = TempDir::new("dockerd");
        let sock = dir.join("d.sock");
        let host = format!("unix://{}", sock.display());
        let cgroup_parent = unique("rune-test-docker");
        fs::write(dir.join("daemon.json"), "{}\n").expect("write daemon.json");
        fs::create_dir_all(dir.join("cli")).expect("docker cli config dir");
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(&host)
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--cgroup-parent",
                &cgroup_parent,
                "--add-runtime",
            ])
            .arg(format!("rune={}", rune_bin().display()));
        let mut daemon = NsDaemon::start(cmd, &["/etc/docker"], dir.join("dockerd.log"));
        let up = wait_for(Duration::from_secs(30), || {
            if !daemon.alive() {
                return Some(false);
            }
            sock.exists().then_some(true)
        });
        if up != Some(true) {
            let tail = daemon.log_tail();
            daemon.stop(Duration::from_secs(5));
            panic!("dockerd did not come up:\n{tail}");
        }
        let d = Dockerd {
            daemon,
            dir,
            host,
            cgroup_parent,
        };
        let mut last = String::new();
        let ready = wait_for(Duration::from_secs(30), || {
            let o = d.docker(&["version"]);
            last = o.to_string();
            o.success().then_some(())
        });
        if ready.is_none() {
            let tail = d.daemon.log_tail();
            drop(d);
            panic!("dockerd does not answer: {last}\n{tail}");
        }
        d
    }

    /// `docker <args>` against this daemon (DOCKER_HOST, private
    /// DOCKER_CONFIG).
    pub fn docker_cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .args(args);
        c
    }

    #[track_caller]
    pub fn docker<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run_cmd(&mut self.docker_cmd(args), None, Duration::from_secs(60))
    }

    #[track_caller]
    pub fn docker_stdin<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> Output {
        run_cmd(
            &mut self.docker_cmd(args),
            Some(stdin.to_vec()),
            Duration::from_secs(60),
        )
    }

    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// `docker load` the busybox image ([`IMAGE_REF`]).
    #[track_caller]
    pub fn load_busybox(&self) {
        let tar = busybox_image_tar();
        let o = self.docker(&["load", "-i", &tar.to_string_lossy()]);
        assert!(o.success(), "docker load failed: {o}\n{}", self.log_tail());
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.daemon.alive() {
            let ids = run_quiet(self.docker_cmd(&["ps", "-aq"]))
                .map(|o| o.stdout)
                .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = run_quiet(self.docker_cmd(&args));
            }
        }
        self.daemon.stop(Duration::from_secs(10));
        remove_cgroups_named(&self.cgroup_parent);
    }
}

// ---------------------------------------------------------------------------
// Pseudo-terminal runner
// ---------------------------------------------------------------------------

/// Run `cmd` with stdin/stdout/stderr on a fresh pseudo-terminal; return
/// (exit output, everything read from the terminal).
#[track_caller]
// The child is reaped by try_wait (normal path) or wait (timeout path).
#[allow(clippy::zombie_processes)]
pub fn run_in_pty(cmd: &mut Command, timeout: Duration) -> (Output, String) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};

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
    let mut master_file = fs::File::from(master);
    let mut data = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut status = None;
    let mut quiet_since: Option<Instant> = None;
    loop {
        let mut buf = [0u8; 4096];
        let mut got = false;
        {
            let mut fds = [nix::poll::PollFd::new(
                master_file.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16));
        }
        match master_file.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                got = true;
            }
            Err(_) => {}
        }
        if status.is_none() {
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
            }
        }
        if let Some(s) = status {
            // Drain for a little while after exit.
            if got {
                quiet_since = None;
            } else {
                let q = *quiet_since.get_or_insert_with(Instant::now);
                if q.elapsed() > Duration::from_millis(300) {
                    let out = Output {
                        cmdline,
                        status: s,
                        stdout: String::from_utf8_lossy(&data).into_owned(),
                        stderr: String::new(),
                    };
                    let text = out.stdout.clone();
                    return (out, text);
                }
            }
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "timed out after {timeout:?}: `{cmdline}`; terminal so far: {:?}",
                String::from_utf8_lossy(&data)
            );
        }
    }
}
