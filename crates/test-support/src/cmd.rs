//! Commands with time-outs. Output goes to unlinked files rather than pipes so that a
//! daemon a command leaves behind (holding the write end) cannot make the test hang.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::unique;

#[derive(Debug, Clone)]
pub struct Output {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code, or 128 + the signal that ended the process (as a shell reports it).
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

/// The command line as a shell would need it, for messages and for `script -c`.
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

/// A spawned process in its own process group (so a time-out kills all it started),
/// stdout/stderr in files.
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

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stdout_now(&self) -> String {
        read_all(&self.out)
    }

    pub fn stderr_now(&self) -> String {
        read_all(&self.err)
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

/// `argv` with a minute's time-out.
#[track_caller]
pub fn sh(argv: &[&str]) -> Output {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    run_cmd(&mut cmd, Duration::from_secs(60))
}

/// Polls `f` every 20 ms until it gives a value or `timeout` passes.
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
