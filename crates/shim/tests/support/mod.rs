//! Helpers for the shim's integration tests: a private containerd 1.6 (own config, root, state,
//! sockets, and a mount namespace with a tmpfs on /run, since containerd 1.6 puts shim sockets
//! in /run/containerd/s) whose PATH starts with a directory holding `containerd-shim-rune-v2`
//! and `rune`; `ctr` runs inside that namespace. Adapted from rune's `tests/common` (which
//! cannot be included here: it names rune's own test binary).

#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub const IMAGE_REF: &str = "localhost/rune-busybox:test";
pub const RUNTIME: &str = "io.containerd.rune.v2";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `<prefix>-<pid>-<n>`, unique on this machine while this process lives.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The shim binary under test (`RUNE_SHIM_TEST_SHIM` overrides it, e.g. with a release build
/// for the memory measurement).
pub fn shim_bin() -> PathBuf {
    match std::env::var_os("RUNE_SHIM_TEST_SHIM") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-rune-v2")),
    }
}

/// The rune binary: `target/debug/rune` beside the shim, built with `cargo build -p rune` when
/// absent (into a separate target dir: the running `cargo test` holds the lock on its own).
pub fn rune_bin() -> PathBuf {
    static RUNE: OnceLock<PathBuf> = OnceLock::new();
    RUNE.get_or_init(|| {
        if let Some(p) = std::env::var_os("RUNE_SHIM_TEST_RUNE") {
            return PathBuf::from(p);
        }
        let beside =
            PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-rune-v2")).with_file_name("rune");
        if beside.is_file() {
            return beside;
        }
        let target = workspace_root().join("target/shim-test-rune");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "rune", "--target-dir"])
            .arg(&target)
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build -p rune");
        assert!(status.success(), "cargo build -p rune failed");
        let built = target.join("debug/rune");
        assert!(built.is_file(), "{} missing", built.display());
        built
    })
    .clone()
}

pub fn cache_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-cache");
    fs::create_dir_all(&dir).expect("create test cache dir");
    dir
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(&format!("rs-{name}")));
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
        unmount_below(&self.path);
        let _ = fs::remove_dir_all(&self.path);
    }
}

pub fn mount_points() -> Vec<PathBuf> {
    mount_points_of("self")
}

/// Mount points seen by process `pid` ("self" for this one).
pub fn mount_points_of(pid: &str) -> Vec<PathBuf> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

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

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

fn proc_stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

pub fn proc_start_time(pid: i32) -> Option<u64> {
    proc_stat_fields(pid)?.get(19)?.parse().ok()
}

pub fn proc_ppid(pid: i32) -> Option<i32> {
    proc_stat_fields(pid)?.get(1)?.parse().ok()
}

/// Single-letter state (R, S, Z...) of `pid`, None when it is gone.
pub fn proc_state(pid: i32) -> Option<String> {
    proc_stat_fields(pid)?.first().cloned()
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(proc_state(pid).as_deref(), Some(s) if s != "Z" && s != "X")
}

pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

pub fn kill_exact(pid: i32, start: u64) {
    if pid > 1 && proc_start_time(pid) == Some(start) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// VmRSS and Pss (from smaps_rollup) of `pid`, in KiB.
pub fn memory_kib(pid: i32) -> (u64, u64) {
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&status, "VmRSS:"), field(&rollup, "Pss:"))
}

// ---------------------------------------------------------------------------
// Commands with timeouts, output captured in files
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Output {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
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

    #[track_caller]
    pub fn ok(self) -> Output {
        assert!(self.success(), "command failed: {self}");
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n  $ {}\n  exit: {}\n  stdout: {:?}\n  stderr: {:?}",
            self.cmdline,
            self.code(),
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

fn capture_file() -> fs::File {
    let path = std::env::temp_dir().join(unique("rs-out"));
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

/// A spawned process in its own process group, stdout/stderr in files.
pub struct Spawned {
    pub child: Child,
    pub cmdline: String,
    out: fs::File,
    err: fs::File,
    finished: bool,
}

impl Spawned {
    pub fn new(cmd: &mut Command) -> Spawned {
        let out = capture_file();
        let err = capture_file();
        cmd.stdout(out.try_clone().expect("dup"))
            .stderr(err.try_clone().expect("dup"))
            .stdin(Stdio::null())
            .process_group(0);
        let cmdline = describe(cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{cmdline}`: {e}"));
        Spawned {
            child,
            cmdline,
            out,
            err,
            finished: false,
        }
    }

    pub fn stdout_now(&self) -> String {
        read_all(&self.out)
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Output> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.finished = true;
                return Some(Output {
                    cmdline: self.cmdline.clone(),
                    status,
                    stdout: read_all(&self.out),
                    stderr: read_all(&self.err),
                });
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Output {
        match self.wait_timeout(timeout) {
            Some(o) => o,
            None => {
                let out = read_all(&self.out);
                let err = read_all(&self.err);
                self.kill();
                panic!(
                    "timed out after {timeout:?}: `{}`\n  stdout: {out:?}\n  stderr: {err:?}",
                    self.cmdline
                );
            }
        }
    }

    pub fn kill(&mut self) {
        if !self.finished {
            let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
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

#[track_caller]
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> Output {
    Spawned::new(cmd).wait(timeout)
}

#[track_caller]
pub fn sh(argv: &[&str]) -> Output {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    run_cmd(&mut cmd, Duration::from_secs(60))
}

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
// The busybox image (same cache entries as rune's tests)
// ---------------------------------------------------------------------------

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
tester:x:1000:1000:tester:/tmp:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ntester:x:1000:\nnogroup:x:65534:\n";

pub fn cached_dir(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let final_path = cache_dir().join(name);
    if final_path.exists() {
        return final_path;
    }
    let tmp = cache_dir().join(format!(".{name}.tmp-{}", unique("b")));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).expect("create cache temp dir");
    build(&tmp);
    if fs::rename(&tmp, &final_path).is_err() {
        let _ = fs::remove_dir_all(&tmp);
        assert!(
            final_path.exists(),
            "cannot install {}",
            final_path.display()
        );
    }
    final_path
}

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
// Cgroups
// ---------------------------------------------------------------------------

pub fn remove_cgroups_named(name: &str) {
    fn walk(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
        if depth == 0 {
            return;
        }
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let p = e.path();
                    if e.file_name().to_string_lossy() == name {
                        out.push(p.clone());
                    }
                    walk(&p, name, depth - 1, out);
                }
            }
        }
    }
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
        let mut dirs = Vec::new();
        walk(Path::new("/sys/fs/cgroup"), name, 7, &mut dirs);
        if dirs.is_empty() {
            return;
        }
        for d in dirs {
            rm_tree(&d);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// The private containerd
// ---------------------------------------------------------------------------

/// Options of a private containerd.
#[derive(Default, Clone)]
pub struct ContainerdOpts {
    /// `RUNE_SHIM_CONFIG` in the daemon's (and so the shims') environment.
    pub shim_config: Option<PathBuf>,
}

pub struct Containerd {
    pid: i32,
    child: Option<Child>,
    /// Open handle on the daemon's mount namespace: keeps it alive across restarts.
    ns: fs::File,
    ns_id: String,
    pub dir: TempDir,
    pub address: PathBuf,
    pub bin: PathBuf,
    pub namespace: String,
    opts: ContainerdOpts,
    log: PathBuf,
}

impl Containerd {
    #[track_caller]
    pub fn start(opts: ContainerdOpts) -> Containerd {
        let dir = TempDir::new("ctrd");
        let address = dir.join("c.sock");
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).expect("mkdir bin");
        symlink(shim_bin(), bin.join("containerd-shim-rune-v2")).expect("link shim");
        symlink(rune_bin(), bin.join("rune")).expect("link rune");
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

# The CRI plugin is disabled in these tests; this is how a node registers the runtime.
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.rune]
  runtime_type = "{RUNTIME}"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            address = address.display(),
        );
        fs::write(dir.join("config.toml"), config).expect("write containerd config");
        let log = dir.join("containerd.log");
        let script = "set -e; mount -n -t tmpfs -o mode=755 rune-shim-test-run /run; exec \"$@\"";
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ]);
        let (child, pid) = Self::spawn_daemon(cmd, &dir, &bin, &opts, &log);
        let host_ns = fs::read_link("/proc/self/ns/mnt")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let held = wait_for(Duration::from_secs(10), || {
            let handle = fs::File::open(format!("/proc/{pid}/ns/mnt")).ok()?;
            let ns = fs::read_link(format!("/proc/self/fd/{}", handle.as_raw_fd()))
                .ok()?
                .to_string_lossy()
                .into_owned();
            (ns != host_ns).then_some((ns, handle))
        });
        let (ns_id, ns) = held.expect("containerd did not get its own mount namespace");
        let c = Containerd {
            pid,
            child: Some(child),
            ns,
            ns_id,
            dir,
            address,
            bin,
            namespace: unique("rs"),
            opts,
            log,
        };
        c.wait_ready();
        c
    }

    fn spawn_daemon(
        mut cmd: Command,
        dir: &TempDir,
        bin: &Path,
        opts: &ContainerdOpts,
        log: &Path,
    ) -> (Child, i32) {
        cmd.arg("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"));
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path);
        match &opts.shim_config {
            Some(p) => cmd.env("RUNE_SHIM_CONFIG", p),
            // Never the host's /etc/inclavare-containers/config.toml.
            None => cmd.env("RUNE_SHIM_CONFIG", dir.join("no-such-shim-config.toml")),
        };
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("daemon log");
        cmd.stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf)
            .process_group(0);
        let child = cmd.spawn().expect("spawn containerd");
        let pid = child.id() as i32;
        (child, pid)
    }

    #[track_caller]
    fn wait_ready(&self) {
        let mut last = String::new();
        let ready = wait_for(Duration::from_secs(30), || {
            let o = self.ctr(&["version"]);
            last = o.to_string();
            o.success().then_some(())
        });
        assert!(
            ready.is_some(),
            "containerd does not answer: {last}\n{}",
            self.log_tail()
        );
    }

    /// Stops containerd (SIGTERM, as a service manager would; shims keep running) and starts a
    /// new one with the same config, in the same mount namespace.
    #[track_caller]
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let stopped = wait_for(Duration::from_secs(10), || {
                child.try_wait().ok().flatten().map(|_| ())
            });
            if stopped.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!(
            "--mount=/proc/{}/fd/{}",
            std::process::id(),
            self.ns.as_raw_fd()
        ))
        .arg("--");
        let (child, pid) = Self::spawn_daemon(cmd, &self.dir, &self.bin, &self.opts, &self.log);
        self.child = Some(child);
        self.pid = pid;
        self.wait_ready();
    }

    pub fn ctr_cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!(
            "--mount=/proc/{}/fd/{}",
            std::process::id(),
            self.ns.as_raw_fd()
        ))
        .args(["--", "ctr", "-a"])
        .arg(&self.address)
        .arg("-n")
        .arg(&self.namespace)
        .args(args);
        c
    }

    #[track_caller]
    pub fn ctr<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run_cmd(&mut self.ctr_cmd(args), Duration::from_secs(60))
    }

    /// `ctr run --runtime io.containerd.rune.v2 [opts] IMAGE id cmd...`.
    #[track_caller]
    pub fn run(&self, opts: &[&str], id: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--runtime", RUNTIME];
        args.extend_from_slice(opts);
        args.push(IMAGE_REF);
        args.push(id);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

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

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let s = self.log();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The bundle directory containerd gives task `id`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace)
            .join(id)
    }

    /// rune's state directory for `id` (default root, as seen in the daemon's namespace).
    pub fn rune_state_exists(&self, id: &str) -> bool {
        let o = run_cmd(
            Command::new("nsenter")
                .arg(format!(
                    "--mount=/proc/{}/fd/{}",
                    std::process::id(),
                    self.ns.as_raw_fd()
                ))
                .args(["--", "test", "-e"])
                .arg(format!("/run/containerd/rune/{}/{id}", self.namespace)),
            Duration::from_secs(10),
        );
        o.success()
    }

    /// Mount points in the daemon's namespace that mention `needle`.
    pub fn mounts_matching(&self, needle: &str) -> Vec<String> {
        mount_points_of(&self.pid.to_string())
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.contains(needle))
            .collect()
    }

    /// Pids of shim processes of this daemon (`containerd-shim-rune-v2` servers).
    pub fn rune_shims(&self) -> Vec<i32> {
        self.family()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|&p| {
                let c = cmdline(p);
                c.contains("containerd-shim-rune-v2") && c.contains("-socket")
            })
            .collect()
    }

    /// The shim server serving `id` (its `-id`, or a grouped one: found through the address
    /// file in the bundle).
    pub fn shim_of(&self, id: &str) -> Option<i32> {
        let address = fs::read_to_string(self.bundle(id).join("address")).unwrap_or_default();
        let by_id = format!("-id {id} ");
        let procs: Vec<i32> = self.family().into_iter().map(|(p, _)| p).collect();
        let shims = || {
            procs
                .iter()
                .copied()
                .filter(|&p| cmdline(p).contains("containerd-shim"))
        };
        // Ours carry the socket address; the Go shims get theirs as a descriptor.
        shims()
            .find(|&p| !address.trim().is_empty() && cmdline(p).contains(address.trim()))
            .or_else(|| shims().find(|&p| cmdline(p).contains(&by_id)))
    }

    /// (pid, start) of every process in the daemon's mount namespace and their descendants.
    pub fn family(&self) -> Vec<(i32, u64)> {
        let mut procs = Vec::new();
        let mut set: HashSet<i32> = HashSet::new();
        for pid in all_pids() {
            let ns = fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if ns == self.ns_id {
                set.insert(pid);
            }
            if let (Some(ppid), Some(start)) = (proc_ppid(pid), proc_start_time(pid)) {
                procs.push((pid, ppid, start));
            }
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

    /// The shim's TTRPC address for task `id`, reachable from this (host) mount namespace
    /// through the daemon's `/proc/<pid>/root`.
    pub fn shim_address(&self, id: &str) -> String {
        let address = fs::read_to_string(self.bundle(id).join("address")).expect("address file");
        let path = address.trim().trim_start_matches("unix://");
        format!("unix:///proc/{}/root{path}", self.pid)
    }

    /// Status column of `ctr task ls` for `id` (None when not listed).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let o = self.ctr(&["task", "ls"]);
        o.stdout.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.get(2).unwrap_or(&"").to_string())
        })
    }

    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str) {
        let ok = wait_for(Duration::from_secs(20), || {
            (self.task_status(id).as_deref() == Some(status)).then_some(())
        });
        assert!(
            ok.is_some(),
            "task {id} never reached {status}: {:?}\n{}",
            self.task_status(id),
            self.log_tail()
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let tasks = self
                .ctr_cmd(&["tasks", "ls", "-q"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for t in tasks.split_whitespace() {
                let _ = self
                    .ctr_cmd(&["tasks", "kill", "-a", "-s", "SIGKILL", t])
                    .output();
                let _ = self.ctr_cmd(&["tasks", "delete", "-f", t]).output();
            }
        }
        let victims = self.family();
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            if wait_for(Duration::from_secs(5), || {
                child.try_wait().ok().flatten().map(|_| ())
            })
            .is_none()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
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
        remove_cgroups_named(&self.namespace);
    }
}
