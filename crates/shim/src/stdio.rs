//! A process' stdio as containerd gives it: paths of FIFOs (or `file://` URIs) for stdin,
//! stdout and stderr, any of them empty for none.
//!
//! Without a terminal, stdout and stderr are the FIFOs themselves, opened read-write (so that
//! opening never blocks and a writer never gets EPIPE when the client goes away, as the runc
//! shim's extra reader does) and handed to rune, which hands them to the process; no copying.
//! Stdin is a pipe the shim feeds from the FIFO, so that `CloseIO` can end it.
//! With a terminal, rune sends the pty master through a console socket and the shim copies
//! stdin FIFO -> master and master -> stdout FIFO.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::reaper::Running;
use crate::runtime::ChildStdio;

const COPY_STACK: usize = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Opens an output target: a FIFO or file path, or a `fifo://` / `file://` URI.
fn open_output(target: &str) -> io::Result<File> {
    if target.is_empty() {
        return OpenOptions::new().write(true).open("/dev/null");
    }
    if let Some(rest) = target.strip_prefix("file://") {
        let path = Path::new(rest);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        return OpenOptions::new().append(true).create(true).open(path);
    }
    if target.starts_with("binary://") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("stdio {target:?}: binary:// logging is not supported by this shim"),
        ));
    }
    let path = target.strip_prefix("fifo://").unwrap_or(target);
    // Read-write: never blocks on a FIFO with no reader yet, never EPIPE.
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| named(path, e))
}

/// The error with the path in it: a FIFO made by the client in a directory this shim's
/// mount namespace does not see is the usual cause.
fn named(path: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{path}: {e}"))
}

/// Opens the stdin FIFO without blocking; the copier waits for a writer with poll.
fn open_input(target: &str) -> io::Result<File> {
    let path = target.strip_prefix("fifo://").unwrap_or(target);
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| named(path, e))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// A thread copying the stdin FIFO into `dst` until the FIFO's writer closes it or the copy
/// is cancelled (by dropping the [`StdinCopy`]'s cancel end).
pub struct StdinCopy {
    cancel: Option<OwnedFd>,
    _thread: Option<JoinHandle<()>>,
}

impl StdinCopy {
    fn start(fifo: File, dst: File) -> io::Result<StdinCopy> {
        let (cancel_r, cancel_w) = pipe()?;
        let thread = std::thread::Builder::new()
            .name("stdin".into())
            .stack_size(COPY_STACK)
            .spawn(move || copy_stdin(fifo, dst, cancel_r))?;
        Ok(StdinCopy {
            cancel: Some(cancel_w),
            _thread: Some(thread),
        })
    }

    /// Stops feeding stdin: the process sees end of file once the copy stops.
    pub fn close(&mut self) {
        self.cancel = None;
    }
}

fn copy_stdin(mut fifo: File, mut dst: File, cancel: OwnedFd) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (data, stop) = {
            let mut fds = [
                PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
                PollFd::new(cancel.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if stop {
            return;
        }
        if data {
            match fifo.read(&mut buf) {
                // Every writer closed the FIFO: end of input.
                Ok(0) => return,
                Ok(n) => {
                    if dst.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// What the shim keeps of a process' stdio once it is created.
#[derive(Default)]
pub struct ProcessIo {
    pub paths: StdioPaths,
    pub stdin: Option<StdinCopy>,
    /// The pty master, for ResizePty.
    pub console: Option<File>,
    /// The master -> stdout copy; joined (bounded) before the process is deleted.
    pub output: Option<JoinHandle<()>>,
}

impl ProcessIo {
    pub fn close_stdin(&mut self) {
        if let Some(s) = self.stdin.as_mut() {
            s.close();
        }
    }

    /// Waits up to `timeout` for the terminal output copy to drain.
    pub fn wait_output(&mut self, timeout: Duration) {
        if let Some(handle) = self.output.take() {
            let deadline = Instant::now() + timeout;
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }

    pub fn close(&mut self) {
        self.close_stdin();
        self.stdin = None;
        self.console = None;
    }
}

/// The stdio prepared for `rune create`/`rune exec` of one process.
pub struct Prepared {
    pub child: ChildStdio,
    pub io: ProcessIo,
    pub console_socket: Option<ConsoleSocket>,
}

/// Opens the targets in `paths` and builds the descriptors for the runtime.
pub fn prepare(paths: &StdioPaths) -> io::Result<Prepared> {
    let mut io = ProcessIo {
        paths: paths.clone(),
        ..Default::default()
    };
    if paths.terminal {
        // The process gets the pty; the runtime itself needs nothing.
        let socket = ConsoleSocket::new()?;
        return Ok(Prepared {
            child: ChildStdio::null()?,
            io,
            console_socket: Some(socket),
        });
    }
    let stdin: OwnedFd = if paths.stdin.is_empty() {
        File::open("/dev/null")?.into()
    } else {
        let fifo = open_input(&paths.stdin)?;
        let (r, w) = pipe()?;
        io.stdin = Some(StdinCopy::start(fifo, File::from(w))?);
        r
    };
    let stdout: OwnedFd = open_output(&paths.stdout)?.into();
    let stderr: OwnedFd = if !paths.stderr.is_empty() && paths.stderr == paths.stdout {
        stdout.try_clone()?
    } else {
        open_output(&paths.stderr)?.into()
    };
    Ok(Prepared {
        child: ChildStdio {
            stdin,
            stdout,
            stderr,
        },
        io,
        console_socket: None,
    })
}

/// A unix socket the runtime sends the pty master to (`--console-socket`).
pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> io::Result<ConsoleSocket> {
        let template = std::env::temp_dir().join("rune-pty-XXXXXX");
        let dir = nix::unistd::mkdtemp(&template).map_err(io::Error::from)?;
        let path = dir.join("pty.sock");
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        listener.set_nonblocking(true)?;
        Ok(ConsoleSocket {
            dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receives the pty master while `runtime` runs; gives up when it has exited without
    /// sending one.
    pub fn receive(&self, runtime: &mut Running) -> io::Result<File> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false)?;
                    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                    return recv_fd(&stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if runtime.try_wait().is_some() {
                // One last look: it may have connected just before exiting.
                if let Ok((stream, _)) = self.listener.accept() {
                    stream.set_nonblocking(false)?;
                    return recv_fd(&stream);
                }
                return Err(io::Error::other("the runtime sent no console"));
            }
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(50u16));
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn recv_fd(stream: &std::os::unix::net::UnixStream) -> io::Result<File> {
    let mut buf = vec![0u8; 4096];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let mut owned: Vec<OwnedFd> = fds
                .into_iter()
                .map(|fd| {
                    // SAFETY: the kernel just installed these descriptors in this process for
                    // us (SCM_RIGHTS); nothing else owns them.
                    unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
                })
                .collect();
            if !owned.is_empty() {
                return Ok(File::from(owned.remove(0)));
            }
        }
    }
    Err(io::Error::other("no descriptor on the console socket"))
}

/// Starts copying between the pty `master` and the stdio targets; returns the master (kept for
/// resizing) in `io`.
pub fn attach_console(io: &mut ProcessIo, master: File) -> io::Result<()> {
    let out_target = open_output(&io.paths.stdout)?;
    let reader = master.try_clone()?;
    let handle = std::thread::Builder::new()
        .name("console".into())
        .stack_size(COPY_STACK)
        .spawn(move || copy_console(reader, out_target))?;
    io.output = Some(handle);
    if !io.paths.stdin.is_empty() {
        let fifo = open_input(&io.paths.stdin)?;
        io.stdin = Some(StdinCopy::start(fifo, master.try_clone()?)?);
    }
    io.console = Some(master);
    Ok(())
}

fn copy_console(mut master: File, mut out: File) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match master.read(&mut buf) {
            // EIO: every slave descriptor is closed, the processes are gone.
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Sets the window size of a pty master.
pub fn resize(master: &File, width: u32, height: u32) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height.min(u16::MAX as u32) as u16,
        ws_col: width.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which is valid for the call; the
    // descriptor is open for the duration of the borrow.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_copy_ends_on_writer_close_and_cancel() {
        let dir = std::env::temp_dir().join(format!("shim-stdio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let paths = StdioPaths {
            stdin: fifo.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let mut prepared = prepare(&paths).unwrap();
        // No writer yet: the process must not see end of file.
        let mut reader = File::from(prepared.child.stdin);
        std::thread::sleep(Duration::from_millis(50));
        let mut w = OpenOptions::new().write(true).open(&fifo).unwrap();
        w.write_all(b"hello").unwrap();
        drop(w);
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello");

        // Cancel before any writer: end of file for the process.
        let mut prepared2 = prepare(&paths).unwrap();
        prepared2.io.close_stdin();
        let mut reader2 = File::from(prepared2.child.stdin);
        let mut got2 = String::new();
        reader2.read_to_string(&mut got2).unwrap();
        assert_eq!(got2, "");
        prepared.io.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
