//! The runelet ↔ init-runelet protocol, over a unix stream socket in the container's state
//! directory. Each message is a 4-byte little-endian length and a JSON body; the first request
//! carries the runelet's stdin, stdout and stderr as SCM_RIGHTS.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use serde::{Deserialize, Serialize};

use crate::error::EnclaveError;

/// Larger messages are refused: argv and env of one process fit well within it.
const MAX_MESSAGE: u32 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Run a process in the enclave with the fds sent alongside as its stdio.
    Exec { argv: Vec<String>, env: Vec<String> },
    /// Deliver a signal to that process.
    Signal { signal: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Started { pid: i32 },
    Exited { status: i32 },
    Error { message: String },
}

pub fn send<T: Serialize>(stream: &mut UnixStream, message: &T) -> Result<(), EnclaveError> {
    let body = serde_json::to_vec(message).map_err(|e| EnclaveError::Protocol(e.to_string()))?;
    let mut framed = (body.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&body);
    stream
        .write_all(&framed)
        .map_err(|e| EnclaveError::io("writing to the enclave agent socket", e))
}

/// Sends a message with file descriptors attached to its first byte.
pub fn send_with_fds<T: Serialize>(
    stream: &UnixStream,
    message: &T,
    fds: &[RawFd],
) -> Result<(), EnclaveError> {
    let body = serde_json::to_vec(message).map_err(|e| EnclaveError::Protocol(e.to_string()))?;
    let header = (body.len() as u32).to_le_bytes();
    let iov = [IoSlice::new(&header), IoSlice::new(&body)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let sent = sendmsg::<UnixAddr>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| EnclaveError::io("sending stdio to the enclave agent", e.into()))?;
    if sent != header.len() + body.len() {
        let mut rest = stream;
        let mut all = header.to_vec();
        all.extend_from_slice(&body);
        rest.write_all(&all[sent..])
            .map_err(|e| EnclaveError::io("writing to the enclave agent socket", e))?;
    }
    Ok(())
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub fn receive<T: for<'de> Deserialize<'de>>(
    stream: &mut UnixStream,
) -> Result<Option<T>, EnclaveError> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(EnclaveError::io("reading from the enclave agent socket", e)),
    }
    read_body(stream, u32::from_le_bytes(header), Vec::new()).map(|(m, _)| Some(m))
}

/// Reads one message and the fds attached to it.
pub fn receive_with_fds<T: for<'de> Deserialize<'de>>(
    stream: &mut UnixStream,
) -> Result<Option<(T, Vec<OwnedFd>)>, EnclaveError> {
    let mut header = [0u8; 4];
    let mut space = nix::cmsg_space!([RawFd; 3]);
    let (read, fds) = {
        let mut iov = [IoSliceMut::new(&mut header)];
        let msg = recvmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| EnclaveError::io("reading from the enclave agent socket", e.into()))?;
        let mut fds = Vec::new();
        for cmsg in msg
            .cmsgs()
            .map_err(|e| EnclaveError::io("reading fds from the enclave agent socket", e.into()))?
        {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: SCM_RIGHTS installed these fds in our table; each is owned once here.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    if read == 0 {
        return Ok(None);
    }
    if read < header.len() {
        stream
            .read_exact(&mut header[read..])
            .map_err(|e| EnclaveError::io("reading from the enclave agent socket", e))?;
    }
    read_body(stream, u32::from_le_bytes(header), fds).map(Some)
}

fn read_body<T: for<'de> Deserialize<'de>>(
    stream: &mut UnixStream,
    len: u32,
    fds: Vec<OwnedFd>,
) -> Result<(T, Vec<OwnedFd>), EnclaveError> {
    if len > MAX_MESSAGE {
        return Err(EnclaveError::Protocol(format!(
            "enclave agent message of {len} bytes refused (limit {MAX_MESSAGE})"
        )));
    }
    let mut body = vec![0u8; len as usize];
    stream
        .read_exact(&mut body)
        .map_err(|e| EnclaveError::io("reading from the enclave agent socket", e))?;
    let message = serde_json::from_slice(&body)
        .map_err(|e| EnclaveError::Protocol(format!("malformed enclave agent message: {e}")))?;
    Ok((message, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fds_round_trip() {
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        let request = Request::Exec {
            argv: vec!["echo".into(), "a b".into(), String::new()],
            env: vec!["X=1 2".into(), "EMPTY=".into()],
        };
        let stdin = std::io::stdin().as_raw_fd();
        send_with_fds(&a, &request, &[stdin, stdin, stdin]).expect("send");
        let (got, fds) = receive_with_fds::<Request>(&mut b)
            .expect("receive")
            .expect("message");
        assert_eq!(got, request);
        assert_eq!(fds.len(), 3);

        let mut a = a;
        send(&mut a, &Request::Signal { signal: 15 }).expect("send");
        assert_eq!(
            receive::<Request>(&mut b).expect("receive"),
            Some(Request::Signal { signal: 15 })
        );
        drop(a);
        assert_eq!(receive::<Request>(&mut b).expect("eof"), None);
    }

    #[test]
    fn hostile_input_is_refused_without_panicking() {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        a.write_all(&u32::MAX.to_le_bytes()).expect("write");
        assert!(receive::<Request>(&mut b).is_err());

        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        a.write_all(&5u32.to_le_bytes()).expect("write");
        a.write_all(b"{\"x\":").expect("write");
        assert!(receive::<Request>(&mut b).is_err());
    }
}
