//! C ABI of the Enclave Runtime PAL API, mirroring `include/enclave_pal.h`.
//!
//! These are the structures upstream rune actually passes (its cgo wrappers and the skeleton
//! PAL's `liberpal-skeleton.h`), with natural C alignment. Upstream's `spec_v2.md` marks them
//! `__attribute__((packed))`, but no shipped runtime or PAL packs them, so neither do we: a
//! packed layout would put `pal_attr_v3_t.fd` at 16 and `addr` at 20 and break every real PAL.
//!
//! The layout is checked at compile time below, and `tests/header.rs` checks that a C compiler
//! sees the same sizes and offsets through the header.

use std::ffi::{c_char, c_int};
use std::mem::{align_of, offset_of, size_of};

/// API version 1: `pal_init(pal_attr_v1_t *)`, `pal_exec(path, argv, stdio, &exit_code)`,
/// `pal_destroy()`. A PAL that does not export `pal_get_version` is version 1.
pub const PAL_API_VERSION_1: u32 = 1;
/// API version 2: adds `pal_get_version`, `pal_create_process` + `pal_exec(pal_exec_args *)`,
/// `pal_kill` and environment passing.
pub const PAL_API_VERSION_2: u32 = 2;
/// API version 3: `pal_init(pal_attr_v3_t *)` (pre-built enclave fd/addr) and
/// `pal_get_local_report`.
pub const PAL_API_VERSION_3: u32 = 3;
/// Highest API version this crate speaks; a PAL reporting more is refused.
pub const PAL_API_VERSION_MAX: u32 = PAL_API_VERSION_3;

/// Size of the report buffer handed to `pal_get_local_report`: an SGX `REPORT` (384-byte body,
/// 32-byte key id, 16-byte MAC), upstream's `intelsgx.ReportLength`.
pub const PAL_REPORT_LEN: usize = 432;
/// Size of an SGX `TARGETINFO`, what runtimes normally pass as `target_info`.
pub const PAL_TARGET_INFO_LEN: usize = 512;

/// `fd` value in [`PalAttrV3`] meaning "no pre-built enclave: create one".
pub const PAL_NO_ENCLAVE_FD: c_int = -1;

/// Symbol names, NUL-terminated for `dlsym`; [`symbols::name`] strips the NUL for messages.
pub mod symbols {
    /// `int pal_get_version(void)` (optional; absent means version 1).
    pub const GET_VERSION: &str = "pal_get_version\0";
    /// `int pal_init(pal_attr_v1_t *)` (v1, v2) / `int pal_init(pal_attr_v3_t *)` (v3).
    pub const INIT: &str = "pal_init\0";
    /// `int pal_create_process(pal_create_process_args *)` (v2, v3; required there).
    pub const CREATE_PROCESS: &str = "pal_create_process\0";
    /// v1: `int pal_exec(path, argv, stdio, exit_code)`; v2/v3: `int pal_exec(pal_exec_args *)`.
    pub const EXEC: &str = "pal_exec\0";
    /// `int pal_kill(int pid, int sig)` (v2, v3; optional).
    pub const KILL: &str = "pal_kill\0";
    /// `int pal_destroy(void)` (all versions; required).
    pub const DESTROY: &str = "pal_destroy\0";
    /// `int pal_get_local_report(void *, int, void *, int *)` (v3; optional).
    pub const GET_LOCAL_REPORT: &str = "pal_get_local_report\0";

    /// The symbol's name without its terminating NUL.
    pub fn name(symbol: &'static str) -> &'static str {
        symbol.trim_end_matches('\0')
    }
}

/// `pal_attr_v1_t`: the argument of `pal_init` for API versions 1 and 2.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PalAttrV1 {
    /// `enclave.runtime.args`, NUL-terminated; never NULL when passed by this crate's loader.
    pub args: *const c_char,
    /// `enclave.runtime.loglevel` (`trace`..`off`), NUL-terminated.
    pub log_level: *const c_char,
}

/// `pal_attr_v3_t`: the argument of `pal_init` for API version 3.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PalAttrV3 {
    /// The v1 attributes, first so a v3 PAL can be handed a pointer usable as `pal_attr_v1_t *`.
    pub attr_v1: PalAttrV1,
    /// Device fd of a pre-built enclave (enclave pool), or [`PAL_NO_ENCLAVE_FD`] (-1).
    pub fd: c_int,
    /// Base address the pre-built enclave is mapped at, or 0.
    pub addr: u64,
}

/// `pal_stdio_fds`: the payload's stdin, stdout and stderr, as fds of the calling process.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PalStdioFds {
    /// Payload stdin.
    pub stdin: c_int,
    /// Payload stdout.
    pub stdout: c_int,
    /// Payload stderr.
    pub stderr: c_int,
}

/// `pal_create_process_args`: the argument of `pal_create_process` (v2, v3).
///
/// The pointers are `*mut` only because the upstream header declares them `char *`/`char **`;
/// a PAL must treat the strings and arrays as read-only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PalCreateProcessArgs {
    /// Executable path (`argv[0]` as given by the runtime).
    pub path: *mut c_char,
    /// NULL-terminated argument vector, `argv[0]` included.
    pub argv: *mut *mut c_char,
    /// NULL-terminated `KEY=VALUE` environment vector.
    pub env: *mut *mut c_char,
    /// The payload's stdio fds.
    pub stdio: *mut PalStdioFds,
    /// Out: the PAL's id for the new process, later passed to `pal_exec`/`pal_kill`.
    pub pid: *mut c_int,
}

/// `pal_exec_args`: the argument of `pal_exec` in v2 and v3.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PalExecArgs {
    /// Process id returned by `pal_create_process`.
    pub pid: c_int,
    /// Out: the payload's exit status.
    pub exit_value: *mut c_int,
}

/// `int pal_get_version(void)`.
pub type PalGetVersionFn = unsafe extern "C" fn() -> c_int;
/// `int pal_init(pal_attr_v1_t *attr)` (v1, v2).
pub type PalInitV1Fn = unsafe extern "C" fn(attr: *mut PalAttrV1) -> c_int;
/// `int pal_init(pal_attr_v3_t *attr)` (v3).
pub type PalInitV3Fn = unsafe extern "C" fn(attr: *mut PalAttrV3) -> c_int;
/// `int pal_exec(const char *path, const char *argv[], pal_stdio_fds *stdio, int *exit_code)`
/// (v1).
pub type PalExecV1Fn = unsafe extern "C" fn(
    path: *const c_char,
    argv: *const *const c_char,
    stdio: *mut PalStdioFds,
    exit_code: *mut c_int,
) -> c_int;
/// `int pal_create_process(pal_create_process_args *args)` (v2, v3).
pub type PalCreateProcessFn = unsafe extern "C" fn(args: *mut PalCreateProcessArgs) -> c_int;
/// `int pal_exec(pal_exec_args *args)` (v2, v3).
pub type PalExecV2Fn = unsafe extern "C" fn(args: *mut PalExecArgs) -> c_int;
/// `int pal_kill(int pid, int sig)` (v2, v3).
pub type PalKillFn = unsafe extern "C" fn(pid: c_int, sig: c_int) -> c_int;
/// `int pal_destroy(void)`.
pub type PalDestroyFn = unsafe extern "C" fn() -> c_int;
/// `int pal_get_local_report(void *target_info, int target_info_len, void *report,
/// int *report_len)` (v3).
pub type PalGetLocalReportFn = unsafe extern "C" fn(
    target_info: *mut std::ffi::c_void,
    target_info_len: c_int,
    report: *mut std::ffi::c_void,
    report_len: *mut c_int,
) -> c_int;

// Layout assertions. Portable ones first (they follow from C's layout rules on any target),
// then the exact LP64 numbers upstream's PALs were built with.
const PTR: usize = size_of::<*const c_char>();
const _: () = assert!(size_of::<PalAttrV1>() == 2 * PTR);
const _: () = assert!(offset_of!(PalAttrV1, args) == 0);
const _: () = assert!(offset_of!(PalAttrV1, log_level) == PTR);
const _: () = assert!(offset_of!(PalAttrV3, attr_v1) == 0);
const _: () = assert!(offset_of!(PalAttrV3, fd) == size_of::<PalAttrV1>());
const _: () = assert!(offset_of!(PalAttrV3, addr) % align_of::<u64>() == 0);
const _: () = assert!(size_of::<PalStdioFds>() == 12);
const _: () = assert!(align_of::<PalStdioFds>() == 4);
const _: () = assert!(offset_of!(PalStdioFds, stdin) == 0);
const _: () = assert!(offset_of!(PalStdioFds, stdout) == 4);
const _: () = assert!(offset_of!(PalStdioFds, stderr) == 8);
const _: () = assert!(size_of::<PalCreateProcessArgs>() == 5 * PTR);
const _: () = assert!(offset_of!(PalCreateProcessArgs, path) == 0);
const _: () = assert!(offset_of!(PalCreateProcessArgs, argv) == PTR);
const _: () = assert!(offset_of!(PalCreateProcessArgs, env) == 2 * PTR);
const _: () = assert!(offset_of!(PalCreateProcessArgs, stdio) == 3 * PTR);
const _: () = assert!(offset_of!(PalCreateProcessArgs, pid) == 4 * PTR);
const _: () = assert!(offset_of!(PalExecArgs, pid) == 0);
const _: () = assert!(offset_of!(PalExecArgs, exit_value) == PTR);

#[cfg(target_pointer_width = "64")]
mod lp64 {
    use super::*;
    const _: () = assert!(size_of::<PalAttrV1>() == 16 && align_of::<PalAttrV1>() == 8);
    const _: () = assert!(size_of::<PalAttrV3>() == 32 && align_of::<PalAttrV3>() == 8);
    const _: () = assert!(offset_of!(PalAttrV3, fd) == 16);
    const _: () = assert!(offset_of!(PalAttrV3, addr) == 24);
    const _: () = assert!(size_of::<PalCreateProcessArgs>() == 40);
    const _: () = assert!(align_of::<PalCreateProcessArgs>() == 8);
    const _: () = assert!(size_of::<PalExecArgs>() == 16 && align_of::<PalExecArgs>() == 8);
    const _: () = assert!(offset_of!(PalExecArgs, exit_value) == 8);
}
