//! Runtime side: load a PAL shared library and drive it through the Enclave Runtime PAL API.
//!
//! Behaviour follows upstream rune (`pal/loader.go`, `pal_linux.go`, `api_v{1,2,3}_linux.go`):
//! version negotiation, the `< 0` failure convention, v1 vs v2/v3 dispatch, and a silently ignored
//! `kill` for v1. Deliberate differences, all of which turn upstream crashes or silent misuse
//! into errors: missing required symbols are refused up front (upstream would call NULL), a
//! `pal_get_version()` result below 1 is refused (upstream treated 0 as "v2 without being v3"),
//! and a local report is cut to the `report_len` the PAL wrote back.

use std::ffi::{c_char, c_int, c_void, CString};
use std::fmt;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};

use libloading::os::unix::{Library, Symbol, RTLD_NOW};

use crate::abi::{
    self, symbols, PalAttrV1, PalAttrV3, PalCreateProcessArgs, PalCreateProcessFn, PalDestroyFn,
    PalExecArgs, PalExecV1Fn, PalExecV2Fn, PalGetLocalReportFn, PalGetVersionFn, PalInitV1Fn,
    PalInitV3Fn, PalKillFn, PalStdioFds, PAL_API_VERSION_3, PAL_API_VERSION_MAX, PAL_NO_ENCLAVE_FD,
    PAL_REPORT_LEN,
};
use crate::error::PalError;

/// Result type of this module.
pub type Result<T, E = PalError> = std::result::Result<T, E>;

/// `pal_init` with the attribute struct of the PAL's version.
#[derive(Clone, Copy)]
enum InitFn {
    V1(PalInitV1Fn),
    V3(PalInitV3Fn),
}

/// `pal_exec` in its v1 form, or the v2/v3 `pal_create_process` + `pal_exec(pid)` pair.
#[derive(Clone, Copy)]
enum ExecFn {
    V1(PalExecV1Fn),
    V2 {
        create_process: PalCreateProcessFn,
        exec: PalExecV2Fn,
    },
}

/// Any C function pointer: symbols as resolved by [`PalLibrary::open`], before negotiation
/// tells which signature each has. Function pointers (unlike raw pointers) are `Send + Sync`.
type AnyFn = unsafe extern "C" fn();

/// A PAL shared library, `dlopen`ed and its symbols resolved, but none of its functions called
/// yet.
///
/// Separate from [`Pal`] because upstream rune loads the PAL on the host, before `pivot_root`
/// ("loaded in host, launched in container"), yet calls `pal_get_version` only later, inside the
/// container: [`PalLibrary::open`] is the first step, [`PalLibrary::negotiate`] the second.
/// [`Pal::load`] does both.
///
/// The library is never unloaded: an enclave runtime may keep threads running inside its code
/// (e.g. Occlum's), and `dlclose` under them would crash the process. Upstream never unloads a
/// PAL either; the runtime process exits after `pal_destroy`. So `PalLibrary` and [`Pal`] only
/// hold function pointers, valid for the rest of the process, and are freely `Send + Sync`.
#[derive(Clone)]
pub struct PalLibrary {
    path: PathBuf,
    get_version: Option<AnyFn>,
    init: AnyFn,
    exec: AnyFn,
    destroy: AnyFn,
    create_process: Option<AnyFn>,
    kill: Option<AnyFn>,
    local_report: Option<AnyFn>,
}

impl fmt::Debug for PalLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PalLibrary")
            .field("path", &self.path)
            .field("has_get_version", &self.get_version.is_some())
            .field("has_create_process", &self.create_process.is_some())
            .field("has_kill", &self.kill.is_some())
            .field("has_local_report", &self.local_report.is_some())
            .finish()
    }
}

impl PalLibrary {
    /// `dlopen(path, RTLD_NOW)` and resolve the seven PAL API symbols. Runs no PAL function
    /// (only the library's ELF initialisers, as any `dlopen` does).
    ///
    /// `path` is handed to `dlopen` as is: one without a `/` is searched for on the library path,
    /// so runtimes should pass absolute paths.
    ///
    /// Errors: the file cannot be loaded (message has the `dlerror()` text); `pal_init`,
    /// `pal_exec` or `pal_destroy`, required by every version, is missing.
    pub fn open(path: impl AsRef<Path>) -> Result<PalLibrary> {
        let path = path.as_ref().to_path_buf();
        // SAFETY: dlopen runs the library's initialisers; loading a PAL means trusting its code,
        // which is the whole point of this API. RTLD_NOW (as upstream) resolves every undefined
        // symbol now, so a PAL with missing dependencies fails here rather than mid-call.
        let library = unsafe { Library::open(Some(path.as_os_str()), RTLD_NOW) }.map_err(|e| {
            PalError::Load {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        let optional = |symbol: &'static str| lookup(&library, symbol);
        let required = |symbol: &'static str| {
            optional(symbol).ok_or_else(|| PalError::MissingSymbol {
                path: path.clone(),
                symbol: symbols::name(symbol),
            })
        };
        let pal = PalLibrary {
            init: required(symbols::INIT)?,
            exec: required(symbols::EXEC)?,
            destroy: required(symbols::DESTROY)?,
            get_version: optional(symbols::GET_VERSION),
            create_process: optional(symbols::CREATE_PROCESS),
            kill: optional(symbols::KILL),
            local_report: optional(symbols::GET_LOCAL_REPORT),
            path: path.clone(),
        };
        // Never dlclose (see the type's docs): give up the handle, keeping the library mapped.
        let _handle = library.into_raw();
        tracing::debug!(pal = %path.display(), "PAL loaded");
        Ok(pal)
    }

    /// The path the PAL was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `pal_get_version()` (absent ⇒ 1), checks the version is 1..=3 and that the symbols
    /// it requires exist (`pal_create_process` for v2/v3), and returns the [`Pal`] to drive it.
    ///
    /// Errors: `unsupported pal api version N`; `pal_create_process` missing in a v2/v3 PAL.
    pub fn negotiate(&self) -> Result<Pal> {
        let path = &self.path;
        let version = match self.get_version {
            None => abi::PAL_API_VERSION_1,
            Some(sym) => {
                // SAFETY: the PAL API defines `pal_get_version` as `int (void)`.
                let get_version = unsafe { as_fn::<PalGetVersionFn>(sym) };
                // SAFETY: takes no arguments; the library stays loaded for good.
                let raw = unsafe { get_version() };
                tracing::debug!(pal = %path.display(), version = raw, "pal_get_version()");
                match u32::try_from(raw) {
                    Ok(v) if (1..=PAL_API_VERSION_MAX).contains(&v) => v,
                    _ => {
                        return Err(PalError::UnsupportedVersion {
                            path: path.clone(),
                            version: raw,
                        })
                    }
                }
            }
        };

        // Each symbol gets the C type the PAL API defines for it at the negotiated version
        // (`abi.rs`, `include/enclave_pal.h`); `pal_init` and `pal_exec` change type with it.
        let init = if version >= PAL_API_VERSION_3 {
            // SAFETY: v3 `int pal_init(pal_attr_v3_t *)`.
            InitFn::V3(unsafe { as_fn::<PalInitV3Fn>(self.init) })
        } else {
            // SAFETY: v1/v2 `int pal_init(pal_attr_v1_t *)`.
            InitFn::V1(unsafe { as_fn::<PalInitV1Fn>(self.init) })
        };
        let exec = if version == abi::PAL_API_VERSION_1 {
            // SAFETY: v1 `int pal_exec(const char *, const char *[], pal_stdio_fds *, int *)`.
            ExecFn::V1(unsafe { as_fn::<PalExecV1Fn>(self.exec) })
        } else {
            let create = self.create_process.ok_or_else(|| PalError::MissingSymbol {
                path: path.clone(),
                symbol: symbols::name(symbols::CREATE_PROCESS),
            })?;
            ExecFn::V2 {
                // SAFETY: v2/v3 `int pal_create_process(pal_create_process_args *)`.
                create_process: unsafe { as_fn::<PalCreateProcessFn>(create) },
                // SAFETY: v2/v3 `int pal_exec(pal_exec_args *)`.
                exec: unsafe { as_fn::<PalExecV2Fn>(self.exec) },
            }
        };
        // SAFETY: `int pal_destroy(void)` in every version.
        let destroy = unsafe { as_fn::<PalDestroyFn>(self.destroy) };
        // Ignored for v1 whatever the library exports: v1 has no kill in its ABI.
        let kill = match version {
            abi::PAL_API_VERSION_1 => None,
            // SAFETY: v2/v3 `int pal_kill(int, int)`.
            _ => self.kill.map(|sym| unsafe { as_fn::<PalKillFn>(sym) }),
        };
        let local_report = match version {
            // SAFETY: v3 `int pal_get_local_report(void *, int, void *, int *)`.
            PAL_API_VERSION_3 => self
                .local_report
                .map(|sym| unsafe { as_fn::<PalGetLocalReportFn>(sym) }),
            _ => None,
        };

        Ok(Pal {
            path: path.clone(),
            version,
            init,
            exec,
            kill,
            destroy,
            local_report,
        })
    }
}

/// A PAL (`liberpal-*.so`) with its API version negotiated: the calls of the PAL API.
///
/// `Pal` is `Send + Sync` and every method takes `&self`: a runtime forwards signals with
/// [`Pal::kill`] from one thread while another is blocked in [`Pal::exec`]/[`Pal::wait`], as
/// upstream rune does; coping with concurrent calls is the PAL's job, as it is upstream.
/// Call order (`init` before processes, `destroy` last) is the caller's responsibility.
/// The library stays loaded for the rest of the process (see [`PalLibrary`]).
#[derive(Clone)]
pub struct Pal {
    path: PathBuf,
    version: u32,
    init: InitFn,
    exec: ExecFn,
    kill: Option<PalKillFn>,
    destroy: PalDestroyFn,
    local_report: Option<PalGetLocalReportFn>,
}

impl fmt::Debug for Pal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pal")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("has_kill", &self.kill.is_some())
            .field("has_local_report", &self.local_report.is_some())
            .finish()
    }
}

impl Pal {
    /// [`PalLibrary::open`] then [`PalLibrary::negotiate`]: `dlopen(path, RTLD_NOW)` the PAL,
    /// call `pal_get_version()` (absent ⇒ 1) and check the symbols that version needs.
    ///
    /// Errors: the file cannot be loaded (message has the `dlerror()` text); the version is not in
    /// 1..=3 (`unsupported pal api version N`); `pal_init`, `pal_exec`, `pal_destroy` or (v2+)
    /// `pal_create_process` is missing.
    pub fn load(path: impl AsRef<Path>) -> Result<Pal> {
        PalLibrary::open(path)?.negotiate()
    }

    /// The path the PAL was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Negotiated API version, 1..=3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `pal_init`. v1/v2 get `pal_attr_v1_t {args, log_level}`; v3 gets `pal_attr_v3_t` with the
    /// pre-built enclave's `(fd, addr)` if given, else `fd = -1, addr = 0`.
    ///
    /// `prebuilt` is ignored (with a warning) for v1/v2 PALs, which cannot take it; upstream only
    /// ever obtains one for v3. Fails if a string contains a NUL byte or `pal_init` returns `< 0`.
    pub fn init(&self, args: &str, log_level: &str, prebuilt: Option<(RawFd, u64)>) -> Result<()> {
        const F: &str = "pal_init";
        let c_args = self.cstring(F, "args", args)?;
        let c_level = self.cstring(F, "log_level", log_level)?;
        let attr_v1 = PalAttrV1 {
            args: c_args.as_ptr(),
            log_level: c_level.as_ptr(),
        };
        tracing::debug!(pal = %self.path.display(), args, log_level, ?prebuilt, "pal_init()");
        let rc = match self.init {
            InitFn::V1(init) => {
                if prebuilt.is_some() {
                    tracing::warn!(
                        pal = %self.path.display(),
                        version = self.version,
                        "pre-built enclave ignored: only PAL API v3 can take one"
                    );
                }
                let mut attr = attr_v1;
                // SAFETY: `attr` and the two strings it points to outlive the call; the PAL
                // (v1/v2) takes `pal_attr_v1_t *`.
                unsafe { init(&mut attr) }
            }
            InitFn::V3(init) => {
                let (fd, addr) = prebuilt.unwrap_or((PAL_NO_ENCLAVE_FD, 0));
                let mut attr = PalAttrV3 { attr_v1, fd, addr };
                // SAFETY: as above, with the v3 attribute struct the v3 PAL expects.
                unsafe { init(&mut attr) }
            }
        };
        self.check(F, rc).map(drop)
    }

    /// Runs `argv` to completion inside the enclave runtime and returns its exit status.
    ///
    /// v1: `pal_exec(argv[0], argv, &stdio, &exit)`; `env` is not passed (v1 has no environment).
    /// v2/v3: [`Pal::create_process`] then [`Pal::wait`]. `argv[0]` is the executable path, passed
    /// verbatim (resolving it on `PATH` is the caller's business).
    pub fn exec(&self, argv: &[String], env: &[String], stdio: [RawFd; 3]) -> Result<i32> {
        match self.exec {
            ExecFn::V1(exec) => {
                const F: &str = "pal_exec";
                if !env.is_empty() {
                    tracing::debug!(
                        pal = %self.path.display(),
                        "PAL API v1 has no environment: {} variables not passed",
                        env.len()
                    );
                }
                let mut c_argv = self.cstr_array(F, "argv", argv)?;
                let path = c_argv.first(F, &self.path)?;
                let mut fds = stdio_fds(stdio);
                let mut exit_code: c_int = 0;
                tracing::debug!(pal = %self.path.display(), ?argv, ?stdio, "pal_exec() (v1)");
                // SAFETY: `path`, the NULL-terminated `argv` array and the strings it points to
                // live in `c_argv`; `fds` and `exit_code` are locals; all outlive this blocking
                // call, and the PAL (v1) takes exactly these four arguments.
                let rc = unsafe {
                    exec(
                        path,
                        c_argv.as_mut_ptr().cast::<*const c_char>(),
                        &mut fds,
                        &mut exit_code,
                    )
                };
                self.check(F, rc)?;
                Ok(exit_code)
            }
            ExecFn::V2 { .. } => {
                let pid = self.create_process(argv, env, stdio)?;
                self.wait(pid)
            }
        }
    }

    /// v2/v3 `pal_create_process({argv[0], argv, env, &stdio, &pid})`: starts `argv` and returns
    /// the PAL's pid for it, for [`Pal::wait`] and [`Pal::kill`]. Not available for v1.
    pub fn create_process(
        &self,
        argv: &[String],
        env: &[String],
        stdio: [RawFd; 3],
    ) -> Result<i32> {
        const F: &str = "pal_create_process";
        let ExecFn::V2 { create_process, .. } = self.exec else {
            return Err(self.too_old(F, abi::PAL_API_VERSION_2));
        };
        let mut c_argv = self.cstr_array(F, "argv", argv)?;
        let mut c_env = self.cstr_array(F, "env", env)?;
        let path = c_argv.first(F, &self.path)?;
        let mut fds = stdio_fds(stdio);
        let mut pid: c_int = 0;
        let mut args = PalCreateProcessArgs {
            // The header says `char *`, but PALs must not write through these pointers.
            path: path.cast_mut(),
            argv: c_argv.as_mut_ptr(),
            env: c_env.as_mut_ptr(),
            stdio: &mut fds,
            pid: &mut pid,
        };
        tracing::debug!(pal = %self.path.display(), ?argv, ?env, ?stdio, "pal_create_process()");
        // SAFETY: every pointer in `args` refers to `c_argv`, `c_env`, `fds` or `pid`, all alive
        // until the call returns; the arrays are NULL-terminated as the ABI requires.
        let rc = unsafe { create_process(&mut args) };
        self.check(F, rc)?;
        Ok(pid)
    }

    /// v2/v3 `pal_exec({pid, &exit})`: blocks until the process created by
    /// [`Pal::create_process`] exits and returns its exit status. Not available for v1.
    pub fn wait(&self, pid: i32) -> Result<i32> {
        const F: &str = "pal_exec";
        let ExecFn::V2 { exec, .. } = self.exec else {
            return Err(self.too_old(F, abi::PAL_API_VERSION_2));
        };
        let mut exit_value: c_int = 0;
        let mut args = PalExecArgs {
            pid,
            exit_value: &mut exit_value,
        };
        tracing::debug!(pal = %self.path.display(), pid, "pal_exec()");
        // SAFETY: `args` and `exit_value` are locals that outlive this blocking call.
        let rc = unsafe { exec(&mut args) };
        self.check(F, rc)?;
        Ok(exit_value)
    }

    /// `pal_kill(pid, sig)`; `pid` -1 means every process of the enclave runtime.
    ///
    /// v1 has no kill: the call is silently ignored, as upstream. For v2/v3 a PAL without
    /// `pal_kill` is an error (`pal_kill() not implemented`).
    pub fn kill(&self, pid: i32, sig: i32) -> Result<()> {
        const F: &str = "pal_kill";
        if self.version == abi::PAL_API_VERSION_1 {
            tracing::debug!(pal = %self.path.display(), pid, sig, "PAL API v1 has no kill: ignored");
            return Ok(());
        }
        let kill = self.kill.ok_or_else(|| PalError::NotImplemented {
            path: self.path.clone(),
            function: F,
        })?;
        tracing::debug!(pal = %self.path.display(), pid, sig, "pal_kill()");
        // SAFETY: two integers by value, as the ABI defines.
        let rc = unsafe { kill(pid, sig) };
        self.check(F, rc).map(drop)
    }

    /// `pal_destroy()`, for every version.
    pub fn destroy(&self) -> Result<()> {
        tracing::debug!(pal = %self.path.display(), "pal_destroy()");
        // SAFETY: no arguments; the PAL stays loaded.
        let rc = unsafe { (self.destroy)() };
        self.check("pal_destroy", rc).map(drop)
    }

    /// v3 `pal_get_local_report(target_info, len, report, &report_len)` with a 432-byte report
    /// buffer (`*report_len = 432` on input). Succeeds only if the PAL returns exactly 0.
    ///
    /// Returns the first `report_len` bytes as written back by the PAL (normally all 432). An empty
    /// `target_info` is passed as NULL with length 0.
    pub fn local_report(&self, target_info: &[u8]) -> Result<Vec<u8>> {
        const F: &str = "pal_get_local_report";
        if self.version < PAL_API_VERSION_3 {
            return Err(self.too_old(F, PAL_API_VERSION_3));
        }
        let get_report = self.local_report.ok_or_else(|| PalError::NotImplemented {
            path: self.path.clone(),
            function: F,
        })?;
        let target_len = c_int::try_from(target_info.len()).map_err(|_| {
            self.invalid(
                F,
                format!(
                    "target_info is {} bytes, more than a C int",
                    target_info.len()
                ),
            )
        })?;
        // The ABI declares `void *target_info`, so give the PAL a private copy it may scribble on
        // rather than a pointer into the caller's shared slice.
        let mut target = target_info.to_vec();
        let target_ptr = if target.is_empty() {
            ptr::null_mut()
        } else {
            target.as_mut_ptr().cast::<c_void>()
        };
        let mut report = vec![0u8; PAL_REPORT_LEN];
        let mut report_len = PAL_REPORT_LEN as c_int;
        tracing::debug!(pal = %self.path.display(), target_len, "pal_get_local_report()");
        // SAFETY: `target` holds `target_len` bytes (or the pointer is NULL and the length 0);
        // `report` holds `report_len` bytes; all outlive the call.
        let rc = unsafe {
            get_report(
                target_ptr,
                target_len,
                report.as_mut_ptr().cast::<c_void>(),
                &mut report_len,
            )
        };
        if rc != 0 {
            return Err(PalError::CallFailed {
                path: self.path.clone(),
                function: F,
                code: rc,
            });
        }
        match usize::try_from(report_len) {
            Ok(len) if len <= PAL_REPORT_LEN => {
                report.truncate(len);
                Ok(report)
            }
            _ => Err(PalError::Protocol {
                path: self.path.clone(),
                function: F,
                reason: format!(
                    "report_len {report_len} written back is outside the {PAL_REPORT_LEN}-byte \
                     buffer"
                ),
            }),
        }
    }

    /// Applies the `< 0 is failure` convention; positive values are success, as upstream.
    fn check(&self, function: &'static str, rc: c_int) -> Result<c_int> {
        if rc < 0 {
            tracing::debug!(pal = %self.path.display(), function, rc, "PAL call failed");
            Err(PalError::CallFailed {
                path: self.path.clone(),
                function,
                code: rc,
            })
        } else {
            Ok(rc)
        }
    }

    fn too_old(&self, function: &'static str, required: u32) -> PalError {
        PalError::VersionTooOld {
            path: self.path.clone(),
            function,
            version: self.version,
            required,
        }
    }

    fn invalid(&self, function: &'static str, reason: String) -> PalError {
        PalError::InvalidArgument {
            path: self.path.clone(),
            function,
            reason,
        }
    }

    fn cstring(&self, function: &'static str, what: &str, s: &str) -> Result<CString> {
        CString::new(s).map_err(|e| {
            self.invalid(
                function,
                format!("{what} contains a NUL byte at offset {}", e.nul_position()),
            )
        })
    }

    fn cstr_array(
        &self,
        function: &'static str,
        what: &str,
        items: &[String],
    ) -> Result<CStrArray> {
        let strings = items
            .iter()
            .enumerate()
            .map(|(i, s)| self.cstring(function, &format!("{what}[{i}]"), s))
            .collect::<Result<Vec<_>>>()?;
        Ok(CStrArray::new(strings))
    }
}

/// Owned C strings plus the NULL-terminated `char *` array pointing into them.
struct CStrArray {
    // Each CString's heap buffer stays put when the Vec moves, so `ptrs` stays valid.
    _strings: Vec<CString>,
    ptrs: Vec<*mut c_char>,
}

impl CStrArray {
    fn new(strings: Vec<CString>) -> Self {
        let ptrs = strings
            .iter()
            .map(|s| s.as_ptr().cast_mut())
            .chain(std::iter::once(ptr::null_mut()))
            .collect();
        CStrArray {
            _strings: strings,
            ptrs,
        }
    }

    /// `argv[0]`, the executable path; an empty argv cannot be run.
    fn first(&self, function: &'static str, path: &Path) -> Result<*const c_char> {
        match self.ptrs.first() {
            Some(p) if !p.is_null() => Ok(p.cast_const()),
            _ => Err(PalError::InvalidArgument {
                path: path.to_path_buf(),
                function,
                reason: "argv is empty: argv[0] is the executable".into(),
            }),
        }
    }

    fn as_mut_ptr(&mut self) -> *mut *mut c_char {
        self.ptrs.as_mut_ptr()
    }
}

fn stdio_fds([stdin, stdout, stderr]: [RawFd; 3]) -> PalStdioFds {
    PalStdioFds {
        stdin,
        stdout,
        stderr,
    }
}

/// `dlsym`; a NULL result counts as absent (glibc can return NULL without an error for a symbol
/// whose value is 0, and calling that would crash).
fn lookup(library: &Library, symbol: &'static str) -> Option<AnyFn> {
    // SAFETY: the symbol is read as a plain address, which is valid whatever it points to.
    let sym: Symbol<*mut c_void> = unsafe { library.get(symbol.as_bytes()) }.ok()?;
    let sym = NonNull::new(*sym)?;
    // SAFETY: on the platforms dlopen exists on, function and data pointers have the same size
    // and representation (POSIX requires it for dlsym); `AnyFn` is only a placeholder type,
    // never called, until `as_fn` gives it its real signature.
    Some(unsafe { std::mem::transmute::<NonNull<c_void>, AnyFn>(sym) })
}

/// Gives a resolved symbol its real function-pointer type `F`.
///
/// # Safety
/// `F` must be an `extern "C"` function pointer type matching the symbol's real signature.
unsafe fn as_fn<F: Copy>(sym: AnyFn) -> F {
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<AnyFn>()) };
    // SAFETY: both are function pointers of the same size (asserted above); the caller vouches
    // for the signature.
    unsafe { std::mem::transmute_copy::<AnyFn, F>(&sym) }
}
