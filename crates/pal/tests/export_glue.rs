//! The PAL-side glue (`pal::export::ffi`, which `export_pal_v3!` forwards to), called directly
//! with C-shaped arguments: NULL handling, UTF-8, error-code normalisation, panics, state.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::os::fd::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pal::abi::{PalAttrV1, PalAttrV3, PalCreateProcessArgs, PalExecArgs, PalStdioFds};
use pal::export::{ffi, PalState};
use pal::EnclaveRuntime;

const EINVAL: c_int = -libc::EINVAL;

thread_local! {
    /// What the probe runtime saw, for the calling test thread.
    static SEEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn seen() -> Vec<String> {
    SEEN.with(|s| s.borrow().clone())
}

fn note(s: String) {
    SEEN.with(|v| v.borrow_mut().push(s));
}

static BLOCKING_EXEC_ENTERED: AtomicBool = AtomicBool::new(false);
static BLOCKING_EXEC_RELEASE: AtomicBool = AtomicBool::new(false);

/// Test runtime whose behaviour is chosen by its inputs.
struct Probe;

impl EnclaveRuntime for Probe {
    fn init(args: &str, log_level: &str, prebuilt: Option<(RawFd, u64)>) -> Result<Self, i32> {
        note(format!("init {args:?} {log_level:?} {prebuilt:?}"));
        match args {
            "panic" => panic!("init panics"),
            "fail" => Err(-libc::EACCES),
            "positive" => Err(libc::ENOEXEC),
            "zero" => Err(0),
            _ => Ok(Probe),
        }
    }

    fn create_process(
        &self,
        path: &str,
        argv: &[String],
        env: &[String],
        stdio: [RawFd; 3],
    ) -> Result<i32, i32> {
        note(format!("create {path:?} {argv:?} {env:?} {stdio:?}"));
        Ok(100 + argv.len() as i32)
    }

    fn exec(&self, pid: i32) -> Result<i32, i32> {
        match pid {
            666 => panic!("exec panics"),
            1000 => {
                BLOCKING_EXEC_ENTERED.store(true, Ordering::SeqCst);
                while !BLOCKING_EXEC_RELEASE.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(0)
            }
            -5 => Err(-libc::ECHILD),
            pid => Ok(pid + 1),
        }
    }

    fn kill(&self, pid: i32, sig: i32) -> Result<(), i32> {
        note(format!("kill {pid} {sig}"));
        Ok(())
    }

    fn destroy(self) -> Result<(), i32> {
        note("destroy".to_owned());
        Ok(())
    }

    fn local_report(&self, target_info: &[u8], report: &mut [u8]) -> Result<usize, i32> {
        if target_info.is_empty() {
            return Ok(report.len() + 1); // more than the buffer: the glue must refuse it
        }
        report.fill(target_info[0]);
        Ok(report.len() - 1)
    }
}

/// A runtime that keeps the default `local_report`.
struct Minimal;

impl EnclaveRuntime for Minimal {
    fn init(_: &str, _: &str, _: Option<(RawFd, u64)>) -> Result<Self, i32> {
        Ok(Minimal)
    }
    fn create_process(
        &self,
        _: &str,
        _: &[String],
        _: &[String],
        _: [RawFd; 3],
    ) -> Result<i32, i32> {
        Ok(1)
    }
    fn exec(&self, _: i32) -> Result<i32, i32> {
        Ok(0)
    }
    fn kill(&self, _: i32, _: i32) -> Result<(), i32> {
        Ok(())
    }
    fn destroy(self) -> Result<(), i32> {
        Ok(())
    }
}

fn init<T: EnclaveRuntime>(state: &PalState<T>, args: &str, fd: c_int, addr: u64) -> c_int {
    let args = CString::new(args).expect("no NUL");
    let level = CString::new("info").expect("no NUL");
    let attr = PalAttrV3 {
        attr_v1: PalAttrV1 {
            args: args.as_ptr(),
            log_level: level.as_ptr(),
        },
        fd,
        addr,
    };
    // SAFETY: `attr` and its strings are valid for the call.
    unsafe { ffi::pal_init(state, &attr) }
}

fn exec<T: EnclaveRuntime>(state: &PalState<T>, pid: c_int) -> Result<c_int, c_int> {
    let mut exit = -1;
    let args = PalExecArgs {
        pid,
        exit_value: &mut exit,
    };
    // SAFETY: `args` and `exit` are valid for the call.
    match unsafe { ffi::pal_exec(state, &args) } {
        0 => Ok(exit),
        rc => Err(rc),
    }
}

/// Owned C strings and the NULL-terminated array over them.
struct CArray {
    _strings: Vec<CString>,
    ptrs: Vec<*mut c_char>,
}

fn c_array(items: &[&[u8]]) -> CArray {
    let strings: Vec<CString> = items
        .iter()
        .map(|s| CString::new(*s).expect("no NUL"))
        .collect();
    let ptrs = strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain([ptr::null_mut()])
        .collect();
    CArray {
        _strings: strings,
        ptrs,
    }
}

#[test]
fn version_is_3() {
    assert_eq!(ffi::pal_get_version(), 3);
}

#[test]
fn init_converts_attributes_and_prebuilt_enclave() {
    let state = PalState::<Probe>::new();
    assert_eq!(init(&state, "a b", -1, 0), 0);
    let state = PalState::<Probe>::new();
    assert_eq!(init(&state, "", 9, 0xdead_0000), 0);
    assert_eq!(
        seen(),
        [
            "init \"a b\" \"info\" None",
            "init \"\" \"info\" Some((9, 3735879680))"
        ]
    );
}

#[test]
fn init_rejects_null_and_double_init() {
    let state = PalState::<Probe>::new();
    // SAFETY: NULL is allowed by the contract.
    assert_eq!(unsafe { ffi::pal_init(&state, ptr::null()) }, EINVAL);
    let attr = PalAttrV3 {
        attr_v1: PalAttrV1 {
            args: ptr::null(),
            log_level: ptr::null(),
        },
        fd: -1,
        addr: 0,
    };
    // SAFETY: `attr` is valid; its NULL strings are allowed by the contract.
    assert_eq!(unsafe { ffi::pal_init(&state, &attr) }, EINVAL);
    assert_eq!(init(&state, "", -1, 0), 0);
    assert_eq!(init(&state, "", -1, 0), -libc::EBUSY);
}

#[test]
fn init_error_codes_are_negative() {
    for (args, rc) in [
        ("fail", -libc::EACCES),
        ("positive", -libc::ENOEXEC),
        ("zero", -libc::EIO),
    ] {
        let state = PalState::<Probe>::new();
        assert_eq!(init(&state, args, -1, 0), rc, "{args}");
        // Still uninitialised: a later init works.
        assert_eq!(init(&state, "", -1, 0), 0);
    }
}

#[test]
fn panics_become_efault_and_do_not_wedge_the_state() {
    let state = PalState::<Probe>::new();
    assert_eq!(init(&state, "panic", -1, 0), -libc::EFAULT);
    assert_eq!(init(&state, "", -1, 0), 0);
    assert_eq!(exec(&state, 666), Err(-libc::EFAULT));
    assert_eq!(exec(&state, 1), Ok(2));
    assert_eq!(ffi::pal_destroy(&state), 0);
}

#[test]
fn calls_before_init_or_after_destroy_are_einval() {
    let state = PalState::<Probe>::new();
    assert_eq!(exec(&state, 1), Err(EINVAL));
    assert_eq!(ffi::pal_kill(&state, -1, 15), EINVAL);
    assert_eq!(ffi::pal_destroy(&state), EINVAL);
    assert_eq!(init(&state, "", -1, 0), 0);
    assert_eq!(ffi::pal_kill(&state, -1, 15), 0);
    assert_eq!(ffi::pal_destroy(&state), 0);
    assert_eq!(ffi::pal_kill(&state, -1, 15), EINVAL);
    assert_eq!(ffi::pal_destroy(&state), EINVAL);
    assert_eq!(seen(), ["init \"\" \"info\" None", "kill -1 15", "destroy"]);
}

#[test]
fn create_process_converts_arrays_and_writes_pid() {
    let state = PalState::<Probe>::new();
    assert_eq!(init(&state, "", -1, 0), 0);
    let path = CString::new("/bin/app").expect("no NUL");
    let mut argv = c_array(&[b"/bin/app", b"", b"a b"]);
    let mut env = c_array(&[b"A=1"]);
    let mut stdio = PalStdioFds {
        stdin: 3,
        stdout: 4,
        stderr: 5,
    };
    let mut pid = 0;
    let mut args = PalCreateProcessArgs {
        path: path.as_ptr().cast_mut(),
        argv: argv.ptrs.as_mut_ptr(),
        env: env.ptrs.as_mut_ptr(),
        stdio: &mut stdio,
        pid: &mut pid,
    };
    // SAFETY: every pointer in `args` is valid for the call.
    assert_eq!(unsafe { ffi::pal_create_process(&state, &args) }, 0);
    assert_eq!(pid, 103);

    // NULL env is an empty environment.
    args.env = ptr::null_mut();
    // SAFETY: as above; NULL env is allowed.
    assert_eq!(unsafe { ffi::pal_create_process(&state, &args) }, 0);
    assert_eq!(
        seen()[1..],
        [
            "create \"/bin/app\" [\"/bin/app\", \"\", \"a b\"] [\"A=1\"] [3, 4, 5]",
            "create \"/bin/app\" [\"/bin/app\", \"\", \"a b\"] [] [3, 4, 5]",
        ]
    );

    // Required pointers.
    for field in ["args", "path", "argv", "stdio", "pid"] {
        let mut bad = args;
        match field {
            "path" => bad.path = ptr::null_mut(),
            "argv" => bad.argv = ptr::null_mut(),
            "stdio" => bad.stdio = ptr::null_mut(),
            "pid" => bad.pid = ptr::null_mut(),
            _ => {}
        }
        let p: *const PalCreateProcessArgs = if field == "args" { ptr::null() } else { &bad };
        // SAFETY: valid or NULL pointers only.
        let rc = unsafe { ffi::pal_create_process(&state, p) };
        assert_eq!(rc, EINVAL, "{field}");
    }

    // Strings that are not UTF-8.
    let mut latin1 = c_array(&[b"/bin/app", b"caf\xe9"]);
    args.argv = latin1.ptrs.as_mut_ptr();
    // SAFETY: valid pointers.
    assert_eq!(unsafe { ffi::pal_create_process(&state, &args) }, EINVAL);
    assert_eq!(
        seen().len(),
        3,
        "runtime must not be called with bad arguments"
    );
}

#[test]
fn exec_writes_exit_value_and_normalises_errors() {
    let state = PalState::<Probe>::new();
    assert_eq!(init(&state, "", -1, 0), 0);
    assert_eq!(exec(&state, 41), Ok(42));
    assert_eq!(exec(&state, -5), Err(-libc::ECHILD));
    let args = PalExecArgs {
        pid: 1,
        exit_value: ptr::null_mut(),
    };
    // SAFETY: valid pointer with a NULL member, allowed by the contract.
    assert_eq!(unsafe { ffi::pal_exec(&state, &args) }, EINVAL);
    // SAFETY: NULL is allowed.
    assert_eq!(unsafe { ffi::pal_exec(&state, ptr::null()) }, EINVAL);
}

#[test]
fn destroy_while_a_call_is_in_flight_is_ebusy() {
    static STATE: PalState<Probe> = PalState::new();
    assert_eq!(init(&STATE, "", -1, 0), 0);
    let waiter = std::thread::spawn(|| exec(&STATE, 1000));
    while !BLOCKING_EXEC_ENTERED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // exec holds the instance: destroy must refuse rather than pull it away.
    assert_eq!(ffi::pal_destroy(&STATE), -libc::EBUSY);
    // kill is not blocked by the running exec.
    assert_eq!(ffi::pal_kill(&STATE, -1, 15), 0);
    BLOCKING_EXEC_RELEASE.store(true, Ordering::SeqCst);
    assert_eq!(waiter.join().expect("join"), Ok(0));
    assert_eq!(ffi::pal_destroy(&STATE), 0);
}

fn report<T: EnclaveRuntime>(
    state: &PalState<T>,
    target: *const c_void,
    target_len: c_int,
    buf: &mut [u8],
) -> (c_int, c_int) {
    let mut len = buf.len() as c_int;
    // SAFETY: `target` is readable for `target_len` bytes (or NULL), `buf` writable for `len`.
    let rc = unsafe {
        ffi::pal_get_local_report(state, target, target_len, buf.as_mut_ptr().cast(), &mut len)
    };
    (rc, len)
}

#[test]
fn local_report_buffers_and_lengths() {
    let state = PalState::<Probe>::new();
    assert_eq!(init(&state, "", -1, 0), 0);
    let target = [7u8; 512];
    let mut buf = [0u8; 432];
    assert_eq!(
        report(&state, target.as_ptr().cast(), 512, &mut buf),
        (0, 431)
    );
    assert!(buf.iter().all(|&b| b == 7));

    // The runtime claims more than the buffer: refused.
    assert_eq!(report(&state, ptr::null(), 0, &mut buf).0, -libc::EOVERFLOW);
    // Bad arguments.
    assert_eq!(report(&state, ptr::null(), 5, &mut buf).0, EINVAL);
    assert_eq!(
        report(&state, target.as_ptr().cast(), -1, &mut buf).0,
        EINVAL
    );
    let mut len = 432;
    // SAFETY: NULL report is allowed by the contract.
    let rc = unsafe {
        ffi::pal_get_local_report(
            &state,
            target.as_ptr().cast(),
            512,
            ptr::null_mut(),
            &mut len,
        )
    };
    assert_eq!(rc, EINVAL);
    // SAFETY: NULL report_len is allowed by the contract.
    let rc = unsafe {
        ffi::pal_get_local_report(
            &state,
            target.as_ptr().cast(),
            512,
            buf.as_mut_ptr().cast(),
            ptr::null_mut(),
        )
    };
    assert_eq!(rc, EINVAL);
    // Overlapping target info and report.
    let mut both = [1u8; 600];
    let base = both.as_mut_ptr();
    let mut len = 400;
    // SAFETY: both ranges lie inside `both`; the glue must refuse to alias them.
    let rc = unsafe {
        ffi::pal_get_local_report(&state, base.cast(), 300, base.add(100).cast(), &mut len)
    };
    assert_eq!(rc, EINVAL);
}

#[test]
fn default_local_report_is_enosys() {
    let state = PalState::<Minimal>::new();
    assert_eq!(init(&state, "", -1, 0), 0);
    let mut buf = [0u8; 432];
    assert_eq!(
        report(&state, [0u8; 512].as_ptr().cast(), 512, &mut buf).0,
        -libc::ENOSYS
    );
}
