//! The rune command line, driven as containerd's runc shim drives runc:
//! `rune --root <root> --log <bundle>/log.json --log-format json [--systemd-cgroup] <command>`.
//! When a command fails, its message is the last error line it added to log.json (rune writes
//! one JSON line `{"level":"error","msg":...}` there), else what it printed on stderr.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::reaper::{Reaper, Running};

/// Name of the runtime binary looked for next to the shim and on PATH.
pub const DEFAULT_BINARY: &str = "rune";

/// Default state root; the containerd namespace is appended.
pub const DEFAULT_ROOT: &str = "/run/containerd/rune";

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    pub message: String,
}

impl RuntimeError {
    fn new(message: impl Into<String>) -> Self {
        RuntimeError {
            message: message.into(),
        }
    }
}

/// Where the runtime binary is: `name` from the runtime options if set (a path, or a name
/// looked up on PATH), else `rune` next to the shim executable, else `rune` on PATH.
pub fn find_binary(name: &str) -> PathBuf {
    if !name.is_empty() {
        if name.contains('/') {
            return PathBuf::from(name);
        }
        return lookup_path(name).unwrap_or_else(|| PathBuf::from(name));
    }
    find_tool(DEFAULT_BINARY)
}

/// A program installed with the shim: next to the shim executable (a build tree, or one
/// install prefix), else on PATH, else the bare name (so the error names it).
pub fn find_tool(name: &str) -> PathBuf {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        let beside = dir.join(name);
        if beside.is_file() {
            return beside;
        }
    }
    lookup_path(name).unwrap_or_else(|| PathBuf::from(name))
}

fn lookup_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The state root for a namespace: `<root or DEFAULT_ROOT>/<namespace>`.
pub fn state_root(root_option: &str, namespace: &str) -> PathBuf {
    let base = if root_option.is_empty() {
        DEFAULT_ROOT
    } else {
        root_option
    };
    Path::new(base).join(namespace)
}

/// The three descriptors a created process gets as its stdio.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl ChildStdio {
    pub fn null() -> std::io::Result<ChildStdio> {
        let null = || -> std::io::Result<OwnedFd> {
            Ok(fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?
                .into())
        };
        Ok(ChildStdio {
            stdin: null()?,
            stdout: null()?,
            stderr: null()?,
        })
    }
}

#[derive(Clone)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub log: PathBuf,
    pub systemd_cgroup: bool,
    reaper: Option<Arc<Reaper>>,
}

/// Extra flags of `create`.
#[derive(Default, Clone, Copy)]
pub struct CreateFlags {
    pub no_pivot: bool,
    pub no_new_keyring: bool,
}

impl Runtime {
    /// A runtime for the container in `bundle`. Commands run through `reaper` (None: plain
    /// `std` waits, for the `delete` action where nothing else reaps).
    pub fn new(
        binary: PathBuf,
        root: PathBuf,
        bundle: &Path,
        systemd_cgroup: bool,
        reaper: Option<Arc<Reaper>>,
    ) -> Runtime {
        Runtime {
            binary,
            root,
            log: bundle.join("log.json"),
            systemd_cgroup,
            reaper,
        }
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.binary);
        // The shim's own working directory is the bundle of the pod's first container, which
        // may be gone: run in this container's bundle.
        if let Some(bundle) = self.log.parent() {
            cmd.current_dir(bundle);
        }
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json"]);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(args);
        cmd
    }

    fn log_len(&self) -> u64 {
        fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The message of the last error line written to log.json after `offset`.
    pub fn last_error(&self, offset: u64) -> Option<String> {
        let mut f = File::open(&self.log).ok()?;
        let len = f.metadata().ok()?.len();
        let start = if offset <= len { offset } else { 0 };
        f.seek(SeekFrom::Start(start)).ok()?;
        let mut text = String::new();
        f.take(4 << 20).read_to_string(&mut text).ok()?;
        text.lines().rev().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            if v.get("level")?.as_str()? != "error" {
                return None;
            }
            Some(v.get("msg")?.as_str()?.to_string())
        })
    }

    fn describe_failure(&self, what: &str, offset: u64, status: i32, stderr: &str) -> String {
        let detail = self
            .last_error(offset)
            .or_else(|| {
                let s = stderr.trim();
                (!s.is_empty()).then(|| {
                    s.lines()
                        .last()
                        .unwrap_or(s)
                        .trim_start_matches("rune: ")
                        .to_string()
                })
            })
            .unwrap_or_else(|| format!("{} exited with status {status}", self.binary.display()));
        format!("{what}: {detail}")
    }

    /// Runs a command that needs no container stdio; returns its stdout.
    pub fn run<S: AsRef<OsStr>>(
        &self,
        what: &str,
        args: &[S],
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>, RuntimeError> {
        let mut cmd = self.command(args);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let offset = self.log_len();
        log::debug!("running {cmd:?}");
        let (status, out, err) = match &self.reaper {
            Some(reaper) => {
                let mut running = reaper.spawn(&mut cmd).map_err(|e| {
                    RuntimeError::new(format!("{what}: cannot run {}: {e}", self.binary.display()))
                })?;
                if let (Some(data), Some(mut stdin)) = (input, running.stdin.take()) {
                    let _ = stdin.write_all(data);
                }
                let (out, err) = read_both(running.stdout.take(), running.stderr.take());
                (running.wait(), out, err)
            }
            None => {
                let mut child = cmd.spawn().map_err(|e| {
                    RuntimeError::new(format!("{what}: cannot run {}: {e}", self.binary.display()))
                })?;
                if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
                    let _ = stdin.write_all(data);
                }
                let (out, err) = read_both(child.stdout.take(), child.stderr.take());
                let status = child.wait().map(crate::reaper::status_code).unwrap_or(-1);
                (status, out, err)
            }
        };
        if status == 0 {
            Ok(out)
        } else {
            Err(RuntimeError::new(self.describe_failure(
                what,
                offset,
                status,
                &String::from_utf8_lossy(&err),
            )))
        }
    }

    /// Starts a command whose stdio are a container process' stdio (`create`, `exec`); the
    /// caller waits with [`Runtime::finish`].
    fn spawn_with_stdio<S: AsRef<OsStr>>(
        &self,
        what: &str,
        args: &[S],
        stdio: ChildStdio,
    ) -> Result<(Running, u64), RuntimeError> {
        let reaper = self
            .reaper
            .as_ref()
            .ok_or_else(|| RuntimeError::new(format!("{what}: no reaper")))?;
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::from(stdio.stdin))
            .stdout(Stdio::from(stdio.stdout))
            .stderr(Stdio::from(stdio.stderr));
        let offset = self.log_len();
        log::debug!("running {cmd:?}");
        let running = reaper.spawn(&mut cmd).map_err(|e| {
            RuntimeError::new(format!("{what}: cannot run {}: {e}", self.binary.display()))
        })?;
        // `cmd` (and with it the parent's copies of the stdio descriptors) is dropped here.
        Ok((running, offset))
    }

    /// Waits for a command started with stdio; Ok when it succeeded.
    pub fn finish(&self, what: &str, running: Running, offset: u64) -> Result<(), RuntimeError> {
        let status = running.wait();
        if status == 0 {
            Ok(())
        } else {
            Err(RuntimeError::new(
                self.describe_failure(what, offset, status, ""),
            ))
        }
    }

    /// `create --bundle B --pid-file F [--console-socket S] [--no-pivot] [--no-new-keyring] ID`,
    /// started; finish it with [`Runtime::finish`].
    pub fn spawn_create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        flags: CreateFlags,
        stdio: ChildStdio,
    ) -> Result<(Running, u64), RuntimeError> {
        let mut args: Vec<&OsStr> = vec![
            "create".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--pid-file".as_ref(),
            pid_file.as_os_str(),
        ];
        if let Some(s) = console_socket {
            args.push("--console-socket".as_ref());
            args.push(s.as_os_str());
        }
        if flags.no_pivot {
            args.push("--no-pivot".as_ref());
        }
        if flags.no_new_keyring {
            args.push("--no-new-keyring".as_ref());
        }
        args.push(id.as_ref());
        self.spawn_with_stdio("OCI runtime create failed", &args, stdio)
    }

    /// `exec --process F --detach --pid-file P [--console-socket S] ID`, started.
    pub fn spawn_exec(
        &self,
        id: &str,
        process_file: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        stdio: ChildStdio,
    ) -> Result<(Running, u64), RuntimeError> {
        let mut args: Vec<&OsStr> = vec![
            "exec".as_ref(),
            "--process".as_ref(),
            process_file.as_os_str(),
            "--detach".as_ref(),
            "--pid-file".as_ref(),
            pid_file.as_os_str(),
        ];
        if let Some(s) = console_socket {
            args.push("--console-socket".as_ref());
            args.push(s.as_os_str());
        }
        args.push(id.as_ref());
        self.spawn_with_stdio("OCI runtime exec failed", &args, stdio)
    }

    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("OCI runtime start failed", &["start", id], None)
            .map(drop)
    }

    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.push(id);
        args.push(&sig);
        self.run("OCI runtime kill failed", &args, None).map(drop)
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.run("OCI runtime delete failed", &args, None).map(drop)
    }

    pub fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("OCI runtime pause failed", &["pause", id], None)
            .map(drop)
    }

    pub fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("OCI runtime resume failed", &["resume", id], None)
            .map(drop)
    }

    /// `ps --format json ID`: the pids in the container.
    pub fn ps(&self, id: &str) -> Result<Vec<u32>, RuntimeError> {
        let out = self.run(
            "OCI runtime ps failed",
            &["ps", "--format", "json", id],
            None,
        )?;
        let text = String::from_utf8_lossy(&out);
        let text = text.trim();
        if text.is_empty() || text == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(text)
            .map_err(|e| RuntimeError::new(format!("OCI runtime ps: bad output {text:?}: {e}")))
    }

    /// `update --resources - ID` with the LinuxResources JSON on stdin.
    pub fn update(&self, id: &str, resources_json: &[u8]) -> Result<(), RuntimeError> {
        self.run(
            "OCI runtime update failed",
            &["update", "--resources", "-", id],
            Some(resources_json),
        )
        .map(drop)
    }
}

/// Reads two pipes to their ends without letting either fill up.
pub(crate) fn read_both<A: Read + AsFd, B: Read + AsFd>(
    a: Option<A>,
    b: Option<B>,
) -> (Vec<u8>, Vec<u8>) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let (mut a, mut b) = (a, b);
    let mut buf = [0u8; 4096];
    while a.is_some() || b.is_some() {
        let (ra, rb) = {
            let mut fds = Vec::with_capacity(2);
            if let Some(a) = &a {
                fds.push(PollFd::new(a.as_fd(), PollFlags::POLLIN));
            }
            if let Some(b) = &b {
                fds.push(PollFd::new(b.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let mut it = fds.iter();
            let ra = a.as_ref().map(|_| it.next().is_some_and(ready));
            let rb = b.as_ref().map(|_| it.next().is_some_and(ready));
            (ra.unwrap_or(false), rb.unwrap_or(false))
        };
        if ra {
            if let Some(r) = a.as_mut() {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => a = None,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        }
        if rb {
            if let Some(r) = b.as_mut() {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => b = None,
                    Ok(n) => err.extend_from_slice(&buf[..n]),
                }
            }
        }
    }
    (out, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_after_offset() {
        let dir = std::env::temp_dir().join(format!("shim-rt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let rt = Runtime::new("rune".into(), "/x".into(), &dir, false, None);
        fs::write(
            &rt.log,
            "{\"level\":\"error\",\"msg\":\"old\"}\n{\"level\":\"info\",\"msg\":\"x\"}\n",
        )
        .unwrap();
        assert_eq!(rt.last_error(0).as_deref(), Some("old"));
        let off = rt.log_len();
        assert_eq!(rt.last_error(off), None);
        let mut f = fs::OpenOptions::new().append(true).open(&rt.log).unwrap();
        f.write_all(b"not json\n{\"level\":\"error\",\"msg\":\"container not running\"}\n")
            .unwrap();
        assert_eq!(rt.last_error(off).as_deref(), Some("container not running"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn roots() {
        assert_eq!(
            state_root("", "k8s.io"),
            PathBuf::from("/run/containerd/rune/k8s.io")
        );
        assert_eq!(state_root("/r", "default"), PathBuf::from("/r/default"));
    }
}
