//! The runelet: the process `rune exec` starts in an enclave container. It joins the container
//! like any exec'd process, then, instead of `execve`, asks the init-runelet to run the program
//! in the enclave with the runelet's stdio, relays signals, and exits with the program's status.
//! To containerd it is the exec'd process: its pid is the one in `--pid-file`.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread;

use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;

use crate::error::EnclaveError;
use crate::process;
use crate::protocol::{self, Request, Response};
use crate::signals::SignalPipe;

/// Exit status when the enclave could not run the program at all, as a shell reports a command
/// it found but could not execute.
const CANNOT_EXECUTE: i32 = 126;

#[derive(Clone)]
pub struct Runelet {
    agent: RawFd,
}

impl Runelet {
    /// `agent` is a connection to the init-runelet's agent socket, open in this process at that
    /// number when libcontainer clones it into the container.
    pub fn new(agent: RawFd) -> Self {
        Self { agent }
    }

    fn run(&self, spec: &Spec) -> Result<i32, EnclaveError> {
        let _ = nix::sys::prctl::set_name(c"runelet");
        // libcontainer hands its processes fds that are closed by their `execve` (the pipe on
        // which `rune exec` waits for that exec, for one); the runelet never execs, so close
        // them itself, or `rune exec` would wait for the whole process instead.
        crate::fds::close_all_except(&[0, 1, 2, self.agent]);
        let signals = SignalPipe::install()?;
        // SAFETY: rune placed the connected agent socket at this fd for this process alone.
        let mut stream = unsafe { UnixStream::from_raw_fd(self.agent) };
        let (argv, env) = process::argv_env(spec);
        protocol::send_with_fds(&stream, &Request::Exec { argv, env }, &[0, 1, 2])?;

        match protocol::receive::<Response>(&mut stream)? {
            Some(Response::Started { .. }) => {}
            Some(Response::Error { message }) => return Err(EnclaveError::Protocol(message)),
            Some(Response::Exited { status }) => return Ok(status),
            None => {
                return Err(EnclaveError::Protocol(
                    "the enclave closed the connection".into(),
                ))
            }
        }

        let mut relay = stream
            .try_clone()
            .map_err(|e| EnclaveError::io("duplicating the agent socket", e))?;
        thread::spawn(move || relay_signals(signals, &mut relay));

        loop {
            match protocol::receive::<Response>(&mut stream)? {
                Some(Response::Exited { status }) => return Ok(status),
                Some(Response::Error { message }) => return Err(EnclaveError::Protocol(message)),
                Some(Response::Started { .. }) => {}
                None => {
                    return Err(EnclaveError::Protocol(
                        "the enclave went away before the process exited".into(),
                    ))
                }
            }
        }
    }
}

fn relay_signals(mut signals: SignalPipe, stream: &mut UnixStream) {
    while let Some(signal) = signals.next() {
        if matches!(signal, Signal::SIGCHLD | Signal::SIGPIPE | Signal::SIGURG) {
            continue;
        }
        if protocol::send(
            stream,
            &Request::Signal {
                signal: signal as i32,
            },
        )
        .is_err()
        {
            return;
        }
    }
}

impl Executor for Runelet {
    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        // The program is resolved by the enclave runtime, which may find it where the
        // container's filesystem has nothing (inside an enclave image).
        Ok(())
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let status = match self.run(spec) {
            Ok(status) => status,
            Err(err) => {
                eprintln!("rune exec: {err}");
                CANNOT_EXECUTE
            }
        };
        std::process::exit(status & 0xff)
    }
}
