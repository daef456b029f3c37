//! PAL side: write an enclave runtime PAL in Rust.
//!
//! Implement [`EnclaveRuntime`] and invoke [`export_pal_v3!`](crate::export_pal_v3) once in a
//! `cdylib` crate. The macro exports the seven PAL API v3 symbols, keeps the runtime instance
//! in a process-global, converts the C arguments and never lets a panic unwind into C.
//!
//! See the macro for a complete example; `crates/pal-example` is a real one.
//!
//! Error codes: implementations return `Err(-errno)` (see `include/enclave_pal.h`: `-ENOENT`,
//! `-EACCES`, `-ENOEXEC`, `-ENOMEM`, `-EINVAL`, `-ENOSYS`, ...). A non-negative `Err` would read
//! as success under the PAL return convention, so `Err(e)` with `e > 0` is returned as `-e` and
//! `Err(0)` as `-EIO`. The glue itself returns:
//!
//! | condition | return |
//! |---|---|
//! | a NULL pointer where the ABI needs one, a negative length, a string that is not UTF-8 | `-EINVAL` |
//! | any call but `pal_init` before a successful `pal_init` (or after `pal_destroy`) | `-EINVAL` |
//! | `pal_init` while initialised; `pal_destroy` while another call is in progress | `-EBUSY` |
//! | the implementation panicked (requires `panic = "unwind"`, the default) | `-EFAULT` |
//! | `local_report` returned a length larger than the buffer | `-EOVERFLOW` |

use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// An enclave runtime, as seen by the PAL API. All methods are called from C through the
/// symbols [`export_pal_v3!`](crate::export_pal_v3) generates; `Err` values are negated errnos.
///
/// Calls may arrive concurrently from several threads (a runtime calls [`kill`](Self::kill)
/// while [`exec`](Self::exec) blocks, and `rune exec` starts further processes), hence
/// `Send + Sync`.
pub trait EnclaveRuntime: Sized + Send + Sync + 'static {
    /// `pal_init`: create (or, with `prebuilt = Some((fd, addr))`, adopt a pre-built) enclave.
    /// `args` is the `enclave.runtime.args` string, `log_level` one of `trace`..`off`.
    fn init(args: &str, log_level: &str, prebuilt: Option<(RawFd, u64)>) -> Result<Self, i32>;

    /// `pal_create_process`: start `argv` (whose `argv[0]` is normally `path`) with environment
    /// `env` (`KEY=VALUE` strings) and stdio fds `[stdin, stdout, stderr]`; return its pid, the
    /// identifier later passed to [`exec`](Self::exec) and [`kill`](Self::kill).
    fn create_process(
        &self,
        path: &str,
        argv: &[String],
        env: &[String],
        stdio: [RawFd; 3],
    ) -> Result<i32, i32>;

    /// `pal_exec`: wait for process `pid` to exit and return its exit status.
    fn exec(&self, pid: i32) -> Result<i32, i32>;

    /// `pal_kill`: send `sig` to process `pid`; `pid` -1 means every process.
    fn kill(&self, pid: i32, sig: i32) -> Result<(), i32>;

    /// `pal_destroy`: tear the enclave down. The instance is consumed even if this fails.
    fn destroy(self) -> Result<(), i32>;

    /// `pal_get_local_report`: write a local attestation report for `target_info` into `report`
    /// (432 bytes when called by rune) and return how many bytes were written.
    fn local_report(&self, target_info: &[u8], report: &mut [u8]) -> Result<usize, i32> {
        let _ = (target_info, report);
        Err(-libc::ENOSYS)
    }
}

/// Process-global slot holding the PAL instance between `pal_init` and `pal_destroy`.
///
/// An `Arc` so that each call holds its own reference without keeping the lock: a blocking
/// `exec` must not stop a concurrent `kill`.
pub struct PalState<T> {
    instance: RwLock<Option<Arc<T>>>,
}

impl<T> PalState<T> {
    /// An empty slot (not initialised); `const` so it can be a `static`.
    pub const fn new() -> Self {
        PalState {
            instance: RwLock::new(None),
        }
    }

    // A poisoned lock only means a panic happened while it was held; the `Option` inside is
    // still consistent (it is only ever replaced whole), so keep going rather than fail forever.
    fn read(&self) -> RwLockReadGuard<'_, Option<Arc<T>>> {
        self.instance.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<Arc<T>>> {
        self.instance.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> Default for PalState<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The C entry points' bodies, generic over the runtime type. [`export_pal_v3!`] forwards each
/// exported symbol to the function of the same name here; use them directly to hand-write a
/// different export surface.
///
/// [`export_pal_v3!`]: crate::export_pal_v3
pub mod ffi {
    use super::*;
    use crate::abi::{PalAttrV3, PalCreateProcessArgs, PalExecArgs, PAL_API_VERSION_3};

    /// `pal_get_version`: 3.
    pub fn pal_get_version() -> c_int {
        PAL_API_VERSION_3 as c_int
    }

    /// `pal_init(pal_attr_v3_t *attr)`.
    ///
    /// # Safety
    /// `attr` is NULL or points to a valid `pal_attr_v3_t` whose strings are NULL or
    /// NUL-terminated, all valid for the duration of the call.
    pub unsafe fn pal_init<T: EnclaveRuntime>(
        state: &PalState<T>,
        attr: *const PalAttrV3,
    ) -> c_int {
        guard(|| {
            // SAFETY: per this function's contract.
            let attr = unsafe { attr.as_ref() }.ok_or(-libc::EINVAL)?;
            // SAFETY: per this function's contract the strings are NUL-terminated or NULL.
            let args = unsafe { c_str(attr.attr_v1.args) }?;
            // SAFETY: as above.
            let log_level = unsafe { c_str(attr.attr_v1.log_level) }?;
            let prebuilt = (attr.fd >= 0).then_some((attr.fd, attr.addr));
            // Held across `T::init` so two racing `pal_init`s cannot both create an enclave.
            let mut slot = state.write();
            if slot.is_some() {
                return Err(-libc::EBUSY);
            }
            // A panic in `T::init` is caught here, before the guard unwinds, so the lock is
            // not poisoned and the slot stays empty.
            let runtime = catch_unwind(AssertUnwindSafe(|| T::init(args, log_level, prebuilt)))
                .map_err(|_| -libc::EFAULT)?
                .map_err(errno)?;
            *slot = Some(Arc::new(runtime));
            Ok(0)
        })
    }

    /// `pal_create_process(pal_create_process_args *args)`.
    ///
    /// # Safety
    /// `args` is NULL or points to a valid `pal_create_process_args`: `path` NUL-terminated,
    /// `argv` and `env` (`env` may be NULL) NULL-terminated arrays of NUL-terminated strings,
    /// `stdio` and `pid` valid for reads resp. writes; all valid for the duration of the call.
    pub unsafe fn pal_create_process<T: EnclaveRuntime>(
        state: &PalState<T>,
        args: *const PalCreateProcessArgs,
    ) -> c_int {
        guard(|| {
            // SAFETY: per this function's contract.
            let args = unsafe { args.as_ref() }.ok_or(-libc::EINVAL)?;
            non_null(args.path)?;
            non_null(args.argv)?;
            non_null(args.pid)?;
            // SAFETY: per this function's contract.
            let stdio = unsafe { args.stdio.as_ref() }.ok_or(-libc::EINVAL)?;
            // SAFETY: `path` is non-NULL and NUL-terminated per the contract.
            let path = unsafe { c_str(args.path) }?;
            // SAFETY: `argv` is a non-NULL, NULL-terminated array per the contract.
            let argv = unsafe { c_str_array(args.argv.cast_const()) }?;
            // SAFETY: as above; NULL `env` is an empty environment.
            let env = unsafe { c_str_array(args.env.cast_const()) }?;
            let runtime = instance(state)?;
            let pid = runtime
                .create_process(path, &argv, &env, [stdio.stdin, stdio.stdout, stdio.stderr])
                .map_err(errno)?;
            // SAFETY: `pid` is non-NULL and writable per the contract.
            unsafe { args.pid.write(pid) };
            Ok(0)
        })
    }

    /// `pal_exec(pal_exec_args *args)` (v2/v3 form).
    ///
    /// # Safety
    /// `args` is NULL or points to a valid `pal_exec_args` whose `exit_value` is NULL or
    /// writable, valid until the call returns.
    pub unsafe fn pal_exec<T: EnclaveRuntime>(
        state: &PalState<T>,
        args: *const PalExecArgs,
    ) -> c_int {
        guard(|| {
            // SAFETY: per this function's contract.
            let args = unsafe { args.as_ref() }.ok_or(-libc::EINVAL)?;
            non_null(args.exit_value)?;
            let runtime = instance(state)?;
            let status = runtime.exec(args.pid).map_err(errno)?;
            // SAFETY: non-NULL and writable per the contract.
            unsafe { args.exit_value.write(status) };
            Ok(0)
        })
    }

    /// `pal_kill(int pid, int sig)`.
    pub fn pal_kill<T: EnclaveRuntime>(state: &PalState<T>, pid: c_int, sig: c_int) -> c_int {
        guard(|| {
            instance(state)?.kill(pid, sig).map_err(errno)?;
            Ok(0)
        })
    }

    /// `pal_destroy(void)`. Fails with `-EBUSY` (and keeps the instance) while other calls
    /// still hold it, e.g. an `exec` that has not returned.
    pub fn pal_destroy<T: EnclaveRuntime>(state: &PalState<T>) -> c_int {
        guard(|| {
            // Held during the teardown too, so a racing `pal_init` cannot bring up a second
            // enclave before this one is gone.
            let mut slot = state.write();
            let shared = slot.take().ok_or(-libc::EINVAL)?;
            let runtime = match Arc::try_unwrap(shared) {
                Ok(runtime) => runtime,
                Err(shared) => {
                    *slot = Some(shared);
                    return Err(-libc::EBUSY);
                }
            };
            // Caught here, inside the lock's scope, so a panic does not poison it.
            catch_unwind(AssertUnwindSafe(|| runtime.destroy()))
                .map_err(|_| -libc::EFAULT)?
                .map_err(errno)?;
            Ok(0)
        })
    }

    /// `pal_get_local_report(void *target_info, int target_info_len, void *report,
    /// int *report_len)`. On success `*report_len` is set to the length written.
    ///
    /// # Safety
    /// `target_info` is NULL or readable for `target_info_len` bytes; `report_len` is NULL or
    /// points to an `int` holding the size of `report`, which is writable for that many bytes;
    /// all valid for the duration of the call.
    pub unsafe fn pal_get_local_report<T: EnclaveRuntime>(
        state: &PalState<T>,
        target_info: *const c_void,
        target_info_len: c_int,
        report: *mut c_void,
        report_len: *mut c_int,
    ) -> c_int {
        guard(|| {
            let ti_len = usize::try_from(target_info_len).map_err(|_| -libc::EINVAL)?;
            non_null(report)?;
            non_null(report_len)?;
            // SAFETY: non-NULL and readable per the contract.
            let cap = usize::try_from(unsafe { report_len.read() }).map_err(|_| -libc::EINVAL)?;
            if target_info.is_null() && ti_len != 0 {
                return Err(-libc::EINVAL);
            }
            // `&[u8]` and `&mut [u8]` over the same bytes would be undefined behaviour.
            let (ti, rp) = (target_info as usize, report as usize);
            if ti_len != 0
                && cap != 0
                && ti < rp.saturating_add(cap)
                && rp < ti.saturating_add(ti_len)
            {
                return Err(-libc::EINVAL);
            }
            let target: &[u8] = if ti_len == 0 {
                &[]
            } else {
                // SAFETY: non-NULL and readable for `ti_len` bytes per the contract; not
                // overlapping `report` (checked above).
                unsafe { std::slice::from_raw_parts(target_info.cast::<u8>(), ti_len) }
            };
            // SAFETY: non-NULL and writable for `cap` bytes per the contract; no other live
            // reference covers these bytes (checked above).
            let buffer = unsafe { std::slice::from_raw_parts_mut(report.cast::<u8>(), cap) };
            let runtime = instance(state)?;
            let written = runtime.local_report(target, buffer).map_err(errno)?;
            if written > cap {
                return Err(-libc::EOVERFLOW);
            }
            let written = c_int::try_from(written).map_err(|_| -libc::EOVERFLOW)?;
            // SAFETY: non-NULL and writable per the contract.
            unsafe { report_len.write(written) };
            Ok(0)
        })
    }

    /// Runs a call body, turning `Err` and panics into the C return value. Unwinding into C is
    /// undefined behaviour, hence the `catch_unwind` around every entry point.
    fn guard(body: impl FnOnce() -> Result<c_int, c_int>) -> c_int {
        match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(rc)) | Ok(Err(rc)) => rc,
            Err(_) => -libc::EFAULT,
        }
    }

    fn instance<T>(state: &PalState<T>) -> Result<Arc<T>, c_int> {
        state.read().clone().ok_or(-libc::EINVAL)
    }
}

/// Maps an implementation's `Err` to a negative return value (see the module docs).
fn errno(e: i32) -> c_int {
    match e {
        e if e < 0 => e,
        0 => -libc::EIO,
        e => -e,
    }
}

fn non_null<P>(p: *const P) -> Result<(), c_int> {
    if p.is_null() {
        Err(-libc::EINVAL)
    } else {
        Ok(())
    }
}

/// Borrows a C string as UTF-8; NULL or invalid UTF-8 is `-EINVAL`.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for `'a`.
unsafe fn c_str<'a>(p: *const c_char) -> Result<&'a str, c_int> {
    non_null(p)?;
    // SAFETY: non-NULL and NUL-terminated per the caller.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| -libc::EINVAL)
}

/// Copies a NULL-terminated array of C strings; a NULL array is empty.
///
/// # Safety
/// `p` is NULL or a NULL-terminated array of NUL-terminated strings.
unsafe fn c_str_array(p: *const *mut c_char) -> Result<Vec<String>, c_int> {
    let mut out = Vec::new();
    if p.is_null() {
        return Ok(out);
    }
    for i in 0.. {
        // SAFETY: the array is NULL-terminated and we stop at the terminator, so `p + i` is in
        // bounds.
        let item = unsafe { p.add(i).read() };
        if item.is_null() {
            break;
        }
        // SAFETY: a non-NULL element is a NUL-terminated string per the caller.
        out.push(unsafe { c_str(item) }?.to_owned());
    }
    Ok(out)
}

/// Exports the PAL API v3 C symbols (`pal_get_version`, `pal_init`, `pal_create_process`,
/// `pal_exec`, `pal_kill`, `pal_destroy`, `pal_get_local_report`) for a type implementing
/// [`EnclaveRuntime`]. Invoke once, at any module level, in a `cdylib` crate:
///
/// ```
/// use std::os::fd::RawFd;
///
/// /// A runtime that runs nothing: every process exits 0 at once.
/// struct Nop;
///
/// impl pal::EnclaveRuntime for Nop {
///     fn init(_args: &str, _log_level: &str, prebuilt: Option<(RawFd, u64)>) -> Result<Self, i32> {
///         match prebuilt {
///             None => Ok(Nop),
///             Some(_) => Err(-libc::ENOSYS), // cannot adopt a pre-built enclave
///         }
///     }
///     fn create_process(&self, _: &str, _: &[String], _: &[String], _: [RawFd; 3]) -> Result<i32, i32> {
///         Ok(1)
///     }
///     fn exec(&self, pid: i32) -> Result<i32, i32> {
///         if pid == 1 { Ok(0) } else { Err(-libc::ESRCH) }
///     }
///     fn kill(&self, _pid: i32, _sig: i32) -> Result<(), i32> {
///         Ok(())
///     }
///     fn destroy(self) -> Result<(), i32> {
///         Ok(())
///     }
/// }
///
/// pal::export_pal_v3!(Nop);
/// # fn main() {}
/// ```
///
/// The instance lives in a static between `pal_init` and `pal_destroy`. The generated functions
/// are checked at compile time against the [`abi`](crate::abi) function-pointer types.
#[macro_export]
macro_rules! export_pal_v3 {
    ($runtime:ty) => {
        const _: () = {
            static PAL_STATE: $crate::export::PalState<$runtime> = $crate::export::PalState::new();

            /// PAL API: returns 3.
            #[unsafe(no_mangle)]
            pub extern "C" fn pal_get_version() -> ::std::ffi::c_int {
                $crate::export::ffi::pal_get_version()
            }

            /// PAL API v3 `pal_init`.
            ///
            /// # Safety
            /// See `enclave_pal.h`.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn pal_init(
                attr: *mut $crate::abi::PalAttrV3,
            ) -> ::std::ffi::c_int {
                // SAFETY: forwarded unchanged; the caller upholds the ABI contract.
                unsafe { $crate::export::ffi::pal_init(&PAL_STATE, attr) }
            }

            /// PAL API v2/v3 `pal_create_process`.
            ///
            /// # Safety
            /// See `enclave_pal.h`.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn pal_create_process(
                args: *mut $crate::abi::PalCreateProcessArgs,
            ) -> ::std::ffi::c_int {
                // SAFETY: forwarded unchanged; the caller upholds the ABI contract.
                unsafe { $crate::export::ffi::pal_create_process(&PAL_STATE, args) }
            }

            /// PAL API v2/v3 `pal_exec`.
            ///
            /// # Safety
            /// See `enclave_pal.h`.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn pal_exec(
                args: *mut $crate::abi::PalExecArgs,
            ) -> ::std::ffi::c_int {
                // SAFETY: forwarded unchanged; the caller upholds the ABI contract.
                unsafe { $crate::export::ffi::pal_exec(&PAL_STATE, args) }
            }

            /// PAL API v2/v3 `pal_kill`.
            #[unsafe(no_mangle)]
            pub extern "C" fn pal_kill(
                pid: ::std::ffi::c_int,
                sig: ::std::ffi::c_int,
            ) -> ::std::ffi::c_int {
                $crate::export::ffi::pal_kill(&PAL_STATE, pid, sig)
            }

            /// PAL API `pal_destroy`.
            #[unsafe(no_mangle)]
            pub extern "C" fn pal_destroy() -> ::std::ffi::c_int {
                $crate::export::ffi::pal_destroy(&PAL_STATE)
            }

            /// PAL API v3 `pal_get_local_report`.
            ///
            /// # Safety
            /// See `enclave_pal.h`.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn pal_get_local_report(
                target_info: *mut ::std::ffi::c_void,
                target_info_len: ::std::ffi::c_int,
                report: *mut ::std::ffi::c_void,
                report_len: *mut ::std::ffi::c_int,
            ) -> ::std::ffi::c_int {
                // SAFETY: forwarded unchanged; the caller upholds the ABI contract.
                unsafe {
                    $crate::export::ffi::pal_get_local_report(
                        &PAL_STATE,
                        target_info,
                        target_info_len,
                        report,
                        report_len,
                    )
                }
            }

            // The exported signatures must be exactly the ABI's; a mismatch fails to compile.
            const _: $crate::abi::PalGetVersionFn = pal_get_version;
            const _: $crate::abi::PalInitV3Fn = pal_init;
            const _: $crate::abi::PalCreateProcessFn = pal_create_process;
            const _: $crate::abi::PalExecV2Fn = pal_exec;
            const _: $crate::abi::PalKillFn = pal_kill;
            const _: $crate::abi::PalDestroyFn = pal_destroy;
            const _: $crate::abi::PalGetLocalReportFn = pal_get_local_report;
        };
    };
}
