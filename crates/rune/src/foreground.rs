//! Waiting for a container process in the foreground (`run`, and `exec` without `-d`).
//!
//! libcontainer clones the container's process with `CLONE_PARENT` and no exit signal, so rune
//! gets no SIGCHLD when it exits, and a plain `waitpid` does not see it. Waiting on SIGCHLD is
//! what makes a naive `run` hang beside a zombie when the container exits at once. Here the exit
//! is observed through a pidfd, and reaped with `__WALL`; signals rune receives meanwhile are read
//! from a signalfd and forwarded to the process.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub struct Foreground {
    signals: SignalFd,
}

impl Foreground {
    /// Blocks the signals rune forwards. Call it after the process to wait for was cloned, or
    /// that process starts with them blocked.
    pub fn new(subreaper: bool) -> Result<Self> {
        let mut mask = SigSet::all();
        for sync in [
            Signal::SIGSEGV,
            Signal::SIGBUS,
            Signal::SIGILL,
            Signal::SIGFPE,
            Signal::SIGABRT,
            Signal::SIGTRAP,
        ] {
            mask.remove(sync);
        }
        mask.thread_block().context("cannot block signals")?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("cannot create a signalfd")?;
        if subreaper {
            // Orphans of a container without its own pid namespace come back to rune, which
            // reaps them instead of leaving zombies behind.
            nix::sys::prctl::set_child_subreaper(true).context("cannot become a subreaper")?;
        }
        Ok(Self { signals })
    }

    /// Forwards signals to `pid` until it exits; returns its exit status the way a shell reports
    /// it (128 + N when killed by signal N).
    /// With a terminal, SIGWINCH resizes it instead of reaching the process.
    pub fn wait(&self, pid: Pid, terminal: Option<&OwnedFd>) -> Result<u8> {
        let pidfd = pidfd_open(pid).context("cannot open a pidfd for the container process")?;
        loop {
            if let Some(status) = reap(pid)? {
                return Ok(status);
            }

            let mut fds = [
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(err) => return Err(err).context("poll"),
            }
            self.forward_pending(pid, terminal)?;
        }
    }

    fn forward_pending(&self, pid: Pid, terminal: Option<&OwnedFd>) -> Result<()> {
        while let Some(info) = self.signals.read_signal().context("reading the signalfd")? {
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            // SIGCHLD only means "reap"; the loop does that. SIGURG carries no intent.
            if matches!(signal, Signal::SIGCHLD | Signal::SIGURG) {
                continue;
            }
            if let (Signal::SIGWINCH, Some(master)) = (signal, terminal) {
                crate::tty::resize(master);
                continue;
            }
            tracing::debug!(%pid, ?signal, "forwarding signal");
            match kill(pid, signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(err) => return Err(err).context("forwarding a signal"),
            }
        }
        Ok(())
    }
}

/// Reaps every exited child; returns the status of `pid` once it is among them.
fn reap(pid: Pid) -> Result<Option<u8>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(Some(code as u8)),
            Ok(WaitStatus::Signaled(p, signal, _)) if p == pid => {
                return Ok(Some(128u8.wrapping_add(signal as u8)))
            }
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {
                anyhow::bail!("process {pid} is not a child of rune and cannot be waited for")
            }
            Err(err) => return Err(err).context("waitpid"),
        }
    }
}

fn pidfd_open(pid: Pid) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
