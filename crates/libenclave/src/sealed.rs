//! Running rune from a sealed in-memory copy of itself.
//!
//! An enclave container's init-runelet (and each runelet) stays a rune process inside the
//! container for its whole life, so `/proc/1/exe` there would be the host's rune binary: the
//! CVE-2019-5736 path to overwriting it. Before creating such a process rune re-executes itself
//! from a memfd sealed against writes, so `/proc/<pid>/exe` points at that copy instead.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

use crate::error::EnclaveError;

const MARKER: &str = "_RUNE_SEALED_EXE";

/// Returns when the current process runs from a sealed copy; otherwise replaces it with one
/// running the same command line.
pub fn ensure_sealed_exe() -> Result<(), EnclaveError> {
    if std::env::var_os(MARKER).is_some() {
        return Ok(());
    }

    let io_err = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| EnclaveError::io(what, e)
    };
    let mut exe = File::open("/proc/self/exe").map_err(io_err("opening /proc/self/exe"))?;
    let memfd = memfd_create(
        c"rune",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| EnclaveError::io("memfd_create", e.into()))?;
    let mut copy = File::from(memfd);
    io::copy(&mut exe, &mut copy).map_err(io_err("copying rune into a memfd"))?;
    fcntl(
        copy.as_raw_fd(),
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SEAL
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE,
        ),
    )
    .map_err(|e| EnclaveError::io("sealing the memfd", e.into()))?;

    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| EnclaveError::Protocol(format!("argument with a NUL byte: {e}")))?;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut entry = k.into_encoded_bytes();
            entry.push(b'=');
            entry.extend(v.into_encoded_bytes());
            CString::new(entry).ok()
        })
        .collect();
    env.push(
        CString::new(format!("{MARKER}=1")).map_err(|e| EnclaveError::Protocol(e.to_string()))?,
    );

    match nix::unistd::fexecve(copy.as_raw_fd(), &args, &env) {
        Err(err) => Err(EnclaveError::io(
            "re-executing rune from its sealed copy",
            err.into(),
        )),
        Ok(never) => match never {},
    }
}
