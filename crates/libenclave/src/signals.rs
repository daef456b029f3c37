//! Signals for processes that stay rune (the init-runelet and the runelet): a handler writes each
//! signal number into a socket and a thread acts on it.
//!
//! A socket, not a pipe, so that the handler can write with MSG_NOSIGNAL: once the reading end
//! is gone, a pipe write raises SIGPIPE, which runs the handler, which writes again, forever.
//!
//! Handlers rather than a blocked mask, because the enclave runtime forks the workload from these
//! processes: a blocked mask would survive its execve and leave the workload deaf to signals,
//! while caught signals return to their default action there.

use std::io::Read;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use crate::error::EnclaveError;

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: send(2) and errno access are async-signal-safe; `byte` outlives the call.
        unsafe {
            let saved = *libc::__errno_location();
            libc::send(
                fd,
                (&byte as *const u8).cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            );
            *libc::__errno_location() = saved;
        }
    }
}

/// Signals that report a fault in this very process keep their default action.
fn is_catchable(signal: Signal) -> bool {
    !matches!(
        signal,
        Signal::SIGKILL
            | Signal::SIGSTOP
            | Signal::SIGSEGV
            | Signal::SIGBUS
            | Signal::SIGILL
            | Signal::SIGFPE
            | Signal::SIGABRT
            | Signal::SIGTRAP
            | Signal::SIGSYS
    )
}

/// The reading end of the signal socket.
pub struct SignalPipe {
    read: UnixStream,
}

impl SignalPipe {
    /// Installs the handler for every catchable signal and unblocks them. Call once per process.
    pub fn install() -> Result<Self, EnclaveError> {
        let (read, write) =
            UnixStream::pair().map_err(|e| EnclaveError::io("creating the signal socket", e))?;
        // The writing end lives as long as the process: the handler may run at any time.
        PIPE_WRITE.store(write.into_raw_fd(), Ordering::Relaxed);

        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let mut mask = SigSet::empty();
        for signal in Signal::iterator().filter(|s| is_catchable(*s)) {
            // SAFETY: the handler only calls async-signal-safe functions.
            unsafe { sigaction(signal, &action) }.map_err(|e| {
                EnclaveError::io(format!("installing a {signal} handler"), e.into())
            })?;
            mask.add(signal);
        }
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&mask), None)
            .map_err(|e| EnclaveError::io("unblocking signals", e.into()))?;
        Ok(Self { read })
    }

    /// Blocks until the next signal arrives.
    pub fn next(&mut self) -> Option<Signal> {
        let mut byte = [0u8; 1];
        loop {
            match self.read.read(&mut byte) {
                Ok(1) => {
                    if let Ok(signal) = Signal::try_from(i32::from(byte[0])) {
                        return Some(signal);
                    }
                }
                Ok(_) => return None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}
