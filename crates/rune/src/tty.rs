//! A terminal for a foreground container (`run` or `exec -t` without `--console-socket`), as runc
//! gives one: rune listens on a private console socket, receives the pty master that the
//! container's process sends there, puts the caller's terminal in raw mode and copies bytes both
//! ways until the process exits.

use std::fs::File;
use std::io::{self, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};

use anyhow::{anyhow, Context, Result};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use nix::sys::termios::{self, SetArg, Termios};

/// A console socket rune itself listens on.
pub struct ConsoleSocket {
    path: PathBuf,
    accept: Option<JoinHandle<Result<OwnedFd>>>,
}

/// The console socket a container process gets: rune's own when the process wants a terminal
/// in the foreground and the caller gave no socket (as runc does), else the caller's, made
/// absolute because libcontainer links it from inside the state directory.
pub fn console_for(
    wants_terminal: bool,
    detach: bool,
    given: Option<&PathBuf>,
    dir: &Path,
    id: &str,
) -> Result<(Option<ConsoleSocket>, Option<PathBuf>)> {
    if wants_terminal && !detach && given.is_none() {
        let own = ConsoleSocket::listen(dir, id)?;
        let path = own.path().to_path_buf();
        return Ok((Some(own), Some(path)));
    }
    Ok((None, absolute_socket(given)?))
}

/// The caller's `--console-socket`, absolute.
pub fn absolute_socket(given: Option<&PathBuf>) -> Result<Option<PathBuf>> {
    given
        .map(|p| {
            std::path::absolute(p).with_context(|| format!("--console-socket {}", p.display()))
        })
        .transpose()
}

impl ConsoleSocket {
    /// Listens on a socket in `dir` (the state root, private to root) and waits in the background
    /// for the container to send its pty master.
    pub fn listen(dir: &Path, id: &str) -> Result<Self> {
        let path = dir.join(format!(".console-{id}-{}", std::process::id()));
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on console socket {}", path.display()))?;
        let accept = thread::spawn(move || receive_master(&listener));
        Ok(Self {
            path,
            accept: Some(accept),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master, once the container has sent it.
    pub fn into_master(mut self) -> Result<OwnedFd> {
        let accept = self
            .accept
            .take()
            .ok_or_else(|| anyhow!("the pty master was already taken"))?;
        accept
            .join()
            .map_err(|_| anyhow!("the console socket thread panicked"))?
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn receive_master(listener: &UnixListener) -> Result<OwnedFd> {
    let (stream, _) = listener
        .accept()
        .context("accepting on the console socket")?;
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receiving the pty master")?;
    for cmsg in msg.cmsgs().context("reading the pty master message")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just installed this fd in our table; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(anyhow!(
        "the container sent no pty master on the console socket"
    ))
}

/// Copies between the caller's stdio and the pty until the container side closes.
pub struct Proxy {
    master: OwnedFd,
    output: JoinHandle<()>,
    saved: Option<Termios>,
}

impl Proxy {
    pub fn start(master: OwnedFd) -> Result<Self> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                .context("cannot put the terminal in raw mode")?;
        }
        resize(&master);

        let mut from_pty = File::from(master.try_clone()?);
        let output = thread::spawn(move || {
            let mut stdout = io::stdout();
            let _ = io::copy(&mut from_pty, &mut stdout);
            let _ = stdout.flush();
        });
        let mut to_pty = File::from(master.try_clone()?);
        // Never joined: it blocks in read(stdin) and ends with rune.
        thread::spawn(move || {
            let _ = io::copy(&mut io::stdin(), &mut to_pty);
        });
        Ok(Self {
            master,
            output,
            saved,
        })
    }

    pub fn master(&self) -> &OwnedFd {
        &self.master
    }

    /// Waits for the output to drain and gives the caller its terminal back.
    pub fn finish(self) {
        let _ = self.output.join();
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Gives the pty the size of the caller's terminal.
pub fn resize(master: &OwnedFd) {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into `size`, which outlives the call.
    let got = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut size) };
    if got == 0 {
        // SAFETY: TIOCSWINSZ reads one winsize from `size`; the fd is a pty master we own.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
}
