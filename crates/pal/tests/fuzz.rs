//! Property-based fuzzing of the PAL-side glue (`pal::export::ffi`), the one place this crate
//! reads data it does not control: the strings a runtime passes (`enclave.runtime.args` and
//! the workload's argv and env come from the container's config.json, so any bytes but NUL),
//! the lengths of `pal_get_local_report`, and whatever an implementation returns. The glue must
//! answer with 0 or a negative errno, never unwind into C, and hand the implementation exactly
//! the strings it was given.
//!
//! The loader's side (`pal_get_version` negotiation) reads one integer from a library the node's
//! operator installed; `tests/conformance.rs` covers its range checks with real libraries.
//!
//! `PROPTEST_CASES=100000 cargo test -p enclave-pal --test fuzz` runs more cases.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::os::fd::RawFd;
use std::ptr;

use pal::abi::{PalAttrV1, PalAttrV3, PalCreateProcessArgs, PalStdioFds};
use pal::export::{ffi, PalState};
use pal::EnclaveRuntime;
use proptest::prelude::*;

/// `cases` unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// What the echo runtime returns and saw, for the calling test thread.
struct Script {
    init: Option<i32>,
    create: Result<i32, i32>,
    report: Result<usize, i32>,
    seen: Vec<String>,
}

thread_local! {
    static SCRIPT: RefCell<Script> = const {
        RefCell::new(Script {
            init: None,
            create: Ok(1),
            report: Ok(0),
            seen: Vec::new(),
        })
    };
}

/// A runtime that records its arguments and returns what the test scripted.
struct Echo;

impl EnclaveRuntime for Echo {
    fn init(args: &str, log_level: &str, _prebuilt: Option<(RawFd, u64)>) -> Result<Self, i32> {
        SCRIPT.with_borrow_mut(|s| {
            s.seen = vec![args.to_string(), log_level.to_string()];
            s.init.map_or(Ok(Echo), Err)
        })
    }

    fn create_process(
        &self,
        path: &str,
        argv: &[String],
        env: &[String],
        _stdio: [RawFd; 3],
    ) -> Result<i32, i32> {
        SCRIPT.with_borrow_mut(|s| {
            s.seen = [path.to_string()]
                .into_iter()
                .chain(argv.iter().cloned())
                .chain(env.iter().cloned())
                .collect();
            s.create
        })
    }

    fn exec(&self, _pid: i32) -> Result<i32, i32> {
        Ok(0)
    }

    fn kill(&self, _pid: i32, _sig: i32) -> Result<(), i32> {
        Ok(())
    }

    fn destroy(self) -> Result<(), i32> {
        Ok(())
    }

    fn local_report(&self, target_info: &[u8], report: &mut [u8]) -> Result<usize, i32> {
        let n = target_info.len().min(report.len());
        report[..n].copy_from_slice(&target_info[..n]);
        SCRIPT.with_borrow(|s| s.report)
    }
}

/// Any bytes a C string can hold.
fn c_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => any::<String>().prop_map(|s| s.replace('\0', "").into_bytes()),
        2 => prop::collection::vec(1..=255u8, 0..64),
        1 => (1usize..20_000).prop_map(|n| vec![b'a'; n]),
    ]
}

fn c_string(bytes: &[u8]) -> CString {
    CString::new(bytes).expect("no NUL")
}

/// What the glue hands the implementation: the string if it is UTF-8.
fn utf8(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

/// The return convention of the module docs for an implementation's `Err(e)`.
fn expected_errno(e: i32) -> c_int {
    match e {
        e if e < 0 => e,
        0 => -libc::EIO,
        e => -e,
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn init_with_any_strings_and_results(
        args in c_bytes(),
        log_level in c_bytes(),
        result in prop::option::of(any::<i32>()),
    ) {
        static STATE: PalState<Echo> = PalState::new();
        SCRIPT.with_borrow_mut(|s| {
            s.init = result;
            s.seen.clear();
        });
        let (c_args, c_level) = (c_string(&args), c_string(&log_level));
        let attr = PalAttrV3 {
            attr_v1: PalAttrV1 { args: c_args.as_ptr(), log_level: c_level.as_ptr() },
            fd: -1,
            addr: 0,
        };
        // SAFETY: `attr` and its strings live until the call returns.
        let rc = unsafe { ffi::pal_init(&STATE, &attr) };
        let seen = SCRIPT.with_borrow(|s| s.seen.clone());
        match (utf8(&args), utf8(&log_level)) {
            (Some(args), Some(level)) => {
                prop_assert_eq!(seen, vec![args, level]);
                prop_assert_eq!(rc, result.map_or(0, expected_errno));
            }
            _ => {
                prop_assert_eq!(rc, -libc::EINVAL);
                prop_assert!(seen.is_empty(), "the implementation saw a string that is not UTF-8");
            }
        }
        if rc == 0 {
            prop_assert_eq!(ffi::pal_destroy(&STATE), 0);
        }
    }

    #[test]
    fn create_process_with_any_argv_and_env(
        path in c_bytes(),
        argv in prop::collection::vec(c_bytes(), 0..6),
        env in prop::option::of(prop::collection::vec(c_bytes(), 0..6)),
        result in prop_oneof![any::<i32>().prop_map(Ok), any::<i32>().prop_map(Err)],
    ) {
        static STATE: PalState<Echo> = PalState::new();
        let (args, level) = (c_string(b""), c_string(b"info"));
        let attr = PalAttrV3 {
            attr_v1: PalAttrV1 { args: args.as_ptr(), log_level: level.as_ptr() },
            fd: -1,
            addr: 0,
        };
        SCRIPT.with_borrow_mut(|s| s.init = None);
        // SAFETY: as above. An instance left by an earlier case is fine: EBUSY.
        let rc = unsafe { ffi::pal_init(&STATE, &attr) };
        prop_assert!(rc == 0 || rc == -libc::EBUSY, "{}", rc);

        SCRIPT.with_borrow_mut(|s| {
            s.create = result;
            s.seen.clear();
        });
        let c_path = c_string(&path);
        let c_argv: Vec<CString> = argv.iter().map(|a| c_string(a)).collect();
        let mut argv_ptrs: Vec<*mut c_char> =
            c_argv.iter().map(|a| a.as_ptr().cast_mut()).chain([ptr::null_mut()]).collect();
        let c_env: Option<Vec<CString>> =
            env.as_ref().map(|e| e.iter().map(|v| c_string(v)).collect());
        let mut env_ptrs: Option<Vec<*mut c_char>> = c_env.as_ref().map(|e| {
            e.iter().map(|v| v.as_ptr().cast_mut()).chain([ptr::null_mut()]).collect()
        });
        let mut stdio = PalStdioFds { stdin: 0, stdout: 1, stderr: 2 };
        let mut pid: c_int = -12345;
        let args = PalCreateProcessArgs {
            path: c_path.as_ptr().cast_mut(),
            argv: argv_ptrs.as_mut_ptr(),
            env: env_ptrs.as_mut().map_or(ptr::null_mut(), |e| e.as_mut_ptr()),
            stdio: &mut stdio,
            pid: &mut pid,
        };
        // SAFETY: every pointer in `args` is valid, and the arrays NULL-terminated, until the
        // call returns.
        let rc = unsafe { ffi::pal_create_process(&STATE, &args) };

        let strings: Option<Vec<String>> = [&path]
            .into_iter()
            .chain(&argv)
            .chain(env.iter().flatten())
            .map(|b| utf8(b))
            .collect();
        match strings {
            Some(strings) => {
                prop_assert_eq!(SCRIPT.with_borrow(|s| s.seen.clone()), strings);
                match result {
                    Ok(expected) => {
                        prop_assert_eq!(rc, 0);
                        prop_assert_eq!(pid, expected);
                    }
                    Err(e) => {
                        prop_assert_eq!(rc, expected_errno(e));
                        prop_assert_eq!(pid, -12345);
                    }
                }
            }
            None => {
                prop_assert_eq!(rc, -libc::EINVAL);
                prop_assert_eq!(pid, -12345);
            }
        }
    }

    #[test]
    fn local_report_with_any_lengths_and_results(
        target in prop::collection::vec(any::<u8>(), 0..600),
        claimed_target_len in prop_oneof![Just(None), any::<c_int>().prop_map(Some)],
        capacity in 0usize..600,
        claimed_capacity in prop_oneof![Just(None), (-5..0 as c_int).prop_map(Some)],
        result in prop_oneof![
            (0usize..700).prop_map(Ok),
            Just(Ok(usize::MAX)),
            Just(Ok(c_int::MAX as usize + 1)),
            any::<i32>().prop_map(Err),
        ],
    ) {
        static STATE: PalState<Echo> = PalState::new();
        let (args, level) = (c_string(b""), c_string(b"info"));
        let attr = PalAttrV3 {
            attr_v1: PalAttrV1 { args: args.as_ptr(), log_level: level.as_ptr() },
            fd: -1,
            addr: 0,
        };
        SCRIPT.with_borrow_mut(|s| {
            s.init = None;
            s.report = result;
        });
        // SAFETY: as above.
        let rc = unsafe { ffi::pal_init(&STATE, &attr) };
        prop_assert!(rc == 0 || rc == -libc::EBUSY, "{}", rc);

        // Only lengths the buffers really have are passed, or negative ones: a longer claim
        // would be the caller's bug, not input the glue can check.
        let target_len = match claimed_target_len {
            Some(n) if n < 0 => n,
            _ => c_int::try_from(target.len()).expect("small"),
        };
        let mut report = vec![0u8; capacity];
        let mut report_len: c_int =
            claimed_capacity.unwrap_or_else(|| c_int::try_from(capacity).expect("small"));
        // SAFETY: `target` is readable for `target_len` bytes (or the length is negative) and
        // `report` writable for `report_len` bytes (or it is negative).
        let rc = unsafe {
            ffi::pal_get_local_report(
                &STATE,
                target.as_ptr().cast::<c_void>(),
                target_len,
                report.as_mut_ptr().cast::<c_void>(),
                &mut report_len,
            )
        };
        prop_assert!(rc <= 0);
        if target_len < 0 || claimed_capacity.is_some() {
            prop_assert_eq!(rc, -libc::EINVAL);
        } else {
            match result {
                Ok(n) if n <= capacity => {
                    prop_assert_eq!(rc, 0);
                    prop_assert_eq!(report_len as usize, n);
                }
                Ok(_) => prop_assert_eq!(rc, -libc::EOVERFLOW),
                Err(e) => prop_assert_eq!(rc, expected_errno(e)),
            }
        }
    }

    #[test]
    fn errno_names_any_code(code in any::<i32>()) {
        if let Some(name) = pal::errno_name(code) {
            prop_assert!(name.starts_with('E') && code > 0);
        }
    }
}
