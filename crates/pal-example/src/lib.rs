//! `liberpal-example`: an Enclave Runtime PAL (API v3) written in Rust with
//! [`pal::export_pal_v3!`].
//!
//! **There is no enclave here.** Payloads run as ordinary host processes, children of the
//! calling process, and the "local report" is a recognisable fake. It exists to show how a Rust
//! PAL is written and to give runtimes a PAL to test against on machines without SGX. Never use
//! it where confidentiality matters.
//!
//! - `pal_init`: accepts any args; a pre-built enclave fd cannot be adopted (`-EINVAL`).
//! - `pal_create_process`: spawns `path` with `argv` (argv\[0\] kept), exactly the given `env`,
//!   and the given stdio fds (duplicated); returns the host pid.
//! - `pal_exec`: waits for that pid; exit status is the exit code, or 128 + signal number.
//! - `pal_kill`: signals that pid, or all live children for pid -1 (and 0).
//! - `pal_destroy`: SIGKILLs and reaps children still running.
//! - `pal_get_local_report`: needs a 512-byte target info and a 432-byte buffer; writes
//!   [`FAKE_REPORT_MAGIC`] at offset 0 and the first 64 target-info bytes as report data at
//!   offset 320 (where an SGX report body keeps REPORTDATA), zeros elsewhere.

use std::collections::HashSet;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use pal::abi::{PAL_REPORT_LEN, PAL_TARGET_INFO_LEN};
use pal::EnclaveRuntime;

/// First bytes of every fake report, so nobody mistakes it for a real one.
pub const FAKE_REPORT_MAGIC: &[u8] = b"liberpal-example: NOT AN SGX REPORT";
/// Offset of the report data copied from the target info (SGX REPORTDATA in the report body).
pub const REPORT_DATA_OFFSET: usize = 320;
/// Length of the report data.
pub const REPORT_DATA_LEN: usize = 64;

/// The example runtime: the set of host pids it started and has not reaped yet.
pub struct HostRuntime {
    children: Mutex<HashSet<i32>>,
}

impl HostRuntime {
    // A poisoned lock only means a panic elsewhere; the set itself is always consistent.
    fn children(&self) -> MutexGuard<'_, HashSet<i32>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EnclaveRuntime for HostRuntime {
    fn init(_args: &str, _log_level: &str, prebuilt: Option<(RawFd, u64)>) -> Result<Self, i32> {
        if prebuilt.is_some() {
            return Err(-libc::EINVAL);
        }
        Ok(HostRuntime {
            children: Mutex::new(HashSet::new()),
        })
    }

    fn create_process(
        &self,
        path: &str,
        argv: &[String],
        env: &[String],
        stdio: [RawFd; 3],
    ) -> Result<i32, i32> {
        let mut cmd = Command::new(path);
        if let Some((arg0, rest)) = argv.split_first() {
            cmd.arg0(arg0).args(rest);
        }
        cmd.env_clear();
        for entry in env {
            // Entries without '=' are not variables; execve would pass them, Command cannot.
            if let Some((key, value)) = entry.split_once('=') {
                cmd.env(key, value);
            }
        }
        let [stdin, stdout, stderr] = stdio;
        cmd.stdin(dup_stdio(stdin)?)
            .stdout(dup_stdio(stdout)?)
            .stderr(dup_stdio(stderr)?);
        // Hold the lock across spawn so a concurrent kill(-1) sees the child as soon as it exists.
        let mut children = self.children();
        let child = cmd.spawn().map_err(neg_errno)?;
        let pid = i32::try_from(child.id()).map_err(|_| -libc::EOVERFLOW)?;
        children.insert(pid);
        // Dropping `Child` neither kills nor reaps it: `exec` reaps it by pid.
        Ok(pid)
    }

    fn exec(&self, pid: i32) -> Result<i32, i32> {
        if !self.children().contains(&pid) {
            return Err(-libc::ESRCH);
        }
        // Wait without reaping first: while the child is an unreaped zombie its pid cannot be
        // reused, so a concurrent `kill` that still finds it in the set cannot hit a stranger.
        wait_exited(pid)?;
        let mut children = self.children();
        children.remove(&pid);
        let status = reap(pid)?;
        drop(children);
        Ok(if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            libc::WEXITSTATUS(status)
        })
    }

    fn kill(&self, pid: i32, sig: i32) -> Result<(), i32> {
        let children = self.children();
        let targets: Vec<i32> = match pid {
            -1 | 0 => children.iter().copied().collect(),
            pid if children.contains(&pid) => vec![pid],
            _ => return Err(-libc::ESRCH),
        };
        for target in targets {
            // SAFETY: kill(2) takes two integers; `target` is our unreaped child, so the pid
            // cannot have been recycled for another process.
            if unsafe { libc::kill(target, sig) } != 0 {
                return Err(neg_errno(io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    fn destroy(self) -> Result<(), i32> {
        let children = std::mem::take(&mut *self.children());
        for pid in children {
            // SAFETY: as in `kill`: an unreaped child of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // Best effort: the child is gone either way once SIGKILL lands.
            let _ = reap(pid);
        }
        Ok(())
    }

    fn local_report(&self, target_info: &[u8], report: &mut [u8]) -> Result<usize, i32> {
        if target_info.len() != PAL_TARGET_INFO_LEN || report.len() < PAL_REPORT_LEN {
            return Err(-libc::EINVAL);
        }
        let report = &mut report[..PAL_REPORT_LEN];
        report.fill(0);
        report[..FAKE_REPORT_MAGIC.len()].copy_from_slice(FAKE_REPORT_MAGIC);
        report[REPORT_DATA_OFFSET..REPORT_DATA_OFFSET + REPORT_DATA_LEN]
            .copy_from_slice(&target_info[..REPORT_DATA_LEN]);
        Ok(PAL_REPORT_LEN)
    }
}

pal::export_pal_v3!(HostRuntime);

fn neg_errno(e: io::Error) -> i32 {
    -e.raw_os_error().unwrap_or(libc::EIO)
}

/// A duplicate of the caller's fd for the child's stdio; the caller keeps its own.
fn dup_stdio(fd: RawFd) -> Result<Stdio, i32> {
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table; it fails with EBADF for a
    // closed fd, which is what we check before borrowing it.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(-libc::EBADF);
    }
    // SAFETY: `fd` is open (checked above) and the PAL ABI makes the caller keep it open for
    // the duration of this call; the borrow ends before we return.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned: OwnedFd = borrowed.try_clone_to_owned().map_err(neg_errno)?;
    Ok(Stdio::from(owned))
}

/// Blocks until `pid` has exited, leaving it unreaped.
fn wait_exited(pid: i32) -> Result<(), i32> {
    let id = libc::id_t::try_from(pid).map_err(|_| -libc::ESRCH)?;
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value (plain C struct), and waitid writes
        // only into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(neg_errno(err));
        }
    }
}

/// Reaps `pid` and returns its wait status.
fn reap(pid: i32) -> Result<i32, i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(neg_errno(err));
        }
    }
}
