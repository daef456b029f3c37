//! The init-runelet's side of `rune exec`: it accepts runelets on the container's agent socket
//! and runs each requested process in the same enclave, with the runelet's stdio.

use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

use crate::error::EnclaveError;
use crate::init_runelet::{lock, run_in_enclave, Enclave};
use crate::protocol::{self, Request, Response};

pub(crate) fn serve(enclave: &Arc<Enclave>, listener: RawFd) {
    // SAFETY: rune created this listening socket for the init-runelet and nothing else uses it.
    let listener = unsafe { UnixListener::from_raw_fd(listener) };
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let enclave = enclave.clone();
        thread::spawn(move || {
            if let Err(err) = serve_runelet(enclave, stream) {
                tracing::warn!("runelet: {err}");
            }
        });
    }
}

fn serve_runelet(enclave: Arc<Enclave>, mut stream: UnixStream) -> Result<(), EnclaveError> {
    let Some((request, fds)) = protocol::receive_with_fds::<Request>(&mut stream)? else {
        return Ok(());
    };
    let Request::Exec { argv, env } = request else {
        return refuse(&mut stream, "the first request must be exec");
    };
    if fds.len() != 3 {
        return refuse(
            &mut stream,
            "exec needs exactly three fds: stdin, stdout, stderr",
        );
    }
    if argv.is_empty() {
        return refuse(&mut stream, "exec needs a program to run");
    }
    if !enclave.started.load(Ordering::SeqCst) {
        return refuse(
            &mut stream,
            "the container is created but not started: run `rune start` first",
        );
    }

    let stdio = [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()];
    let mut reply = stream
        .try_clone()
        .map_err(|e| EnclaveError::io("duplicating the runelet socket", e))?;
    let result = run_in_enclave(&enclave, argv, env, stdio, |pid| {
        let _ = protocol::send(
            &mut reply,
            &Response::Started {
                pid: pid.unwrap_or(0),
            },
        );
        // A v1 PAL has no kill, so there is nothing to relay signals to.
        if let (Some(pid), Ok(signals)) = (pid, stream.try_clone()) {
            let enclave = enclave.clone();
            thread::spawn(move || forward_runelet_signals(&enclave, pid, signals));
        }
    });
    drop(fds);
    match result {
        Ok(status) => protocol::send(&mut reply, &Response::Exited { status }),
        Err(err) => protocol::send(
            &mut reply,
            &Response::Error {
                message: err.to_string(),
            },
        ),
    }
}

/// Relays the runelet's signals to its enclave process; if the runelet goes away (killed with
/// SIGKILL, say) before the process exits, the process is killed too.
fn forward_runelet_signals(enclave: &Enclave, pid: i32, mut stream: UnixStream) {
    loop {
        match protocol::receive::<Request>(&mut stream) {
            Ok(Some(Request::Signal { signal })) => {
                let _ = enclave.pal.kill(pid, signal);
            }
            Ok(Some(Request::Exec { .. })) => {}
            Ok(None) | Err(_) => {
                if lock(&enclave.managed).contains(&pid) {
                    let _ = enclave.pal.kill(pid, libc::SIGKILL);
                }
                return;
            }
        }
    }
}

fn refuse(stream: &mut UnixStream, message: &str) -> Result<(), EnclaveError> {
    protocol::send(
        stream,
        &Response::Error {
            message: message.to_string(),
        },
    )
}
