//! The loader against conformance PALs written in C (`tests/pals/*.c`), compiled at test time
//! with `$CC`/`cc`. Each PAL records every call with its arguments (see
//! `tests/pals/conformance.h`), so these tests check call order and the exact bytes that cross
//! the ABI, for v1, v2 and v3.

mod common;

use std::fs::{self, File};
use std::os::fd::AsRawFd;

use common::{q, qv, strings, write_file, TestPal};
use pal::{Pal, PalError, PalLibrary};

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

fn load(p: &TestPal) -> Pal {
    Pal::load(&p.so).expect("load conformance PAL")
}

fn init_line(args: &str, log_level: &str) -> String {
    format!("pal_init args={} log_level={}", q(args), q(log_level))
}

/// Asserts `err` is a call failure of `function` with `code`, and that its message names the
/// PAL path, the function and the code with its errno name.
fn assert_call_failed(err: PalError, p: &TestPal, function: &str, code: i32, name: &str) {
    let msg = err.to_string();
    let code_text = if name.is_empty() {
        code.to_string()
    } else {
        format!("{code} ({name})")
    };
    assert_eq!(
        msg,
        format!(
            "PAL {}: {function}() failed with {code_text}",
            p.so.display()
        )
    );
    assert_eq!(err.code(), Some(code));
}

// ----------------------------------------------------------------------------------------------
// Version negotiation

#[test]
fn v1_without_pal_get_version_is_version_1() {
    let p = TestPal::build("pal_v1.c", &[]);
    let pal = load(&p);
    assert_eq!(pal.version(), 1);
    assert_eq!(pal.path(), p.so.as_path());
}

#[test]
fn reported_versions_1_to_3_are_accepted() {
    for (source, version) in [("pal_v1.c", 1), ("pal_v2.c", 2), ("pal_v3.c", 3)] {
        let define = format!("PAL_REPORTED_VERSION={version}");
        let p = TestPal::build(source, &[&define]);
        let pal = load(&p);
        assert_eq!(pal.version(), version, "{source}");
        pal.init(&p.args(""), "info", None).expect("init");
        assert_eq!(p.call_names(), ["pal_get_version", "pal_init"], "{source}");
    }
}

#[test]
fn version_4_and_nonpositive_versions_are_refused() {
    for version in [4, 0, -1] {
        let define = format!("PAL_REPORTED_VERSION={version}");
        let p = TestPal::build("pal_v3.c", &[&define]);
        let err = Pal::load(&p.so).expect_err("version must be refused");
        assert!(matches!(err, PalError::UnsupportedVersion { version: v, .. } if v == version));
        assert_eq!(
            err.to_string(),
            format!(
                "PAL {}: unsupported pal api version {version}",
                p.so.display()
            )
        );
    }
}

#[test]
fn open_calls_no_pal_function_and_negotiate_calls_get_version() {
    let p = TestPal::build("pal_v3.c", &[]);
    let library = PalLibrary::open(&p.so).expect("open");
    assert_eq!(library.path(), p.so.as_path());
    // The PAL buffers calls made before pal_init, so they all show up in the record below.
    let pal = library.negotiate().expect("negotiate");
    assert_eq!(pal.version(), 3);
    pal.init(&p.args(""), "info", None).expect("init");
    assert_eq!(p.call_names(), ["pal_get_version", "pal_init"]);
}

#[test]
fn version_errors_come_from_negotiate_not_open() {
    let p = TestPal::build("pal_v3.c", &["PAL_REPORTED_VERSION=4"]);
    let library = PalLibrary::open(&p.so).expect("open does not ask the version");
    let err = library.negotiate().expect_err("version 4");
    assert!(
        err.to_string().ends_with("unsupported pal api version 4"),
        "{err}"
    );

    let p = TestPal::build("pal_v2.c", &["PAL_OMIT_CREATE_PROCESS"]);
    let library = PalLibrary::open(&p.so).expect("v1-required symbols are there");
    let err = library
        .negotiate()
        .expect_err("v2 without pal_create_process");
    assert!(matches!(
        err,
        PalError::MissingSymbol {
            symbol: "pal_create_process",
            ..
        }
    ));
}

// ----------------------------------------------------------------------------------------------
// Loading failures

#[test]
fn missing_path_is_a_load_error_with_dlerror_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("liberpal-missing.so");
    let err = Pal::load(&path).expect_err("missing file");
    assert!(matches!(err, PalError::Load { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("PAL {}: failed to load: ", path.display())),
        "{msg}"
    );
    assert!(msg.contains("No such file or directory"), "{msg}");
}

#[test]
fn non_elf_file_is_a_load_error_with_dlerror_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_file(
        dir.path(),
        "liberpal-text.so",
        "this is not a shared library\n".repeat(10).as_bytes(),
    );
    let err = Pal::load(&path).expect_err("not an ELF file");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("PAL {}: failed to load: ", path.display())),
        "{msg}"
    );
    assert!(msg.contains("invalid ELF header"), "{msg}");
}

#[test]
fn missing_required_symbols_are_named() {
    let cases: [(&str, &[&str], &str); 3] = [
        ("empty.c", &[], "pal_init"),
        ("pal_v1.c", &["PAL_OMIT_DESTROY"], "pal_destroy"),
        (
            "pal_v2.c",
            &["PAL_OMIT_CREATE_PROCESS"],
            "pal_create_process",
        ),
    ];
    for (source, defines, symbol) in cases {
        let p = TestPal::build(source, defines);
        let err = Pal::load(&p.so).expect_err("missing symbol");
        assert!(matches!(err, PalError::MissingSymbol { symbol: s, .. } if s == symbol));
        assert_eq!(
            err.to_string(),
            format!("PAL {}: required symbol {symbol} not found", p.so.display())
        );
    }
}

#[test]
fn v1_needs_no_pal_create_process() {
    // pal_v1.c never defines pal_create_process; it must load anyway.
    let p = TestPal::build("pal_v1.c", &[]);
    assert_eq!(load(&p).version(), 1);
}

// ----------------------------------------------------------------------------------------------
// v1

#[test]
fn v1_lifecycle_passes_exact_arguments_and_no_env() {
    let p = TestPal::build("pal_v1.c", &[]);
    let pal = load(&p);
    let args = p.args("exit=7 some tokens");
    pal.init(&args, "debug", None).expect("init");

    let argv = strings(&[
        "/bin/app",
        "",
        "two words",
        "quote\"back\\slash",
        "tab\tnl\n",
        "ü",
    ]);
    let env = strings(&["A=1"]);
    let status = pal.exec(&argv, &env, [10, 11, 12]).expect("exec");
    assert_eq!(status, 7);

    pal.kill(-1, SIGTERM).expect("v1 kill is a no-op");
    pal.kill(5, SIGKILL).expect("v1 kill is a no-op");
    pal.destroy().expect("destroy");

    assert_eq!(
        p.calls(),
        [
            init_line(&args, "debug"),
            format!(
                "pal_exec path={} argv={} stdio=10,11,12 exit_ptr=set",
                q("/bin/app"),
                qv(&argv)
            ),
            "pal_destroy".to_owned(),
        ]
    );
}

#[test]
fn v1_has_no_create_process_wait_or_local_report() {
    let p = TestPal::build("pal_v1.c", &[]);
    let pal = load(&p);
    pal.init(&p.args(""), "info", None).expect("init");
    for err in [
        pal.create_process(&strings(&["/x"]), &[], [0, 1, 2])
            .expect_err("create_process on v1"),
        pal.wait(1).expect_err("wait on v1"),
        pal.local_report(&[0; 512]).expect_err("local_report on v1"),
    ] {
        assert!(matches!(err, PalError::VersionTooOld { version: 1, .. }));
        assert!(
            err.to_string().contains("unsupported pal api version 1"),
            "{err}"
        );
        assert!(err.to_string().contains(&p.so.display().to_string()));
    }
    assert_eq!(p.call_names(), ["pal_init"]);
}

#[test]
fn v1_stdio_fds_reach_the_pal() {
    let p = TestPal::build("pal_v1.c", &[]);
    let pal = load(&p);
    pal.init(&p.args("echo"), "info", None).expect("init");
    let out_path = p.dir.path().join("stdout");
    let out = File::create(&out_path).expect("create stdout file");
    let argv = strings(&["/bin/echo", "hello", ""]);
    pal.exec(&argv, &[], [-1, out.as_raw_fd(), -1])
        .expect("exec");
    assert_eq!(
        fs::read_to_string(&out_path).expect("read"),
        "/bin/echo\nhello\n\n"
    );
}

// ----------------------------------------------------------------------------------------------
// v2

#[test]
fn v2_lifecycle_call_order_and_arguments() {
    let p = TestPal::build("pal_v2.c", &[]);
    let pal = load(&p);
    assert_eq!(pal.version(), 2);
    let args = p.args("pid=1234 exit=3");
    pal.init(&args, "info", None).expect("init");

    let argv = strings(&["/usr/bin/payload", "", "a b", "--flag=x"]);
    let env = strings(&["PATH=/usr/bin:/bin", "EMPTY=", "SPACED=a b"]);
    assert_eq!(pal.exec(&argv, &env, [3, 4, 5]).expect("exec"), 3);
    pal.kill(-1, SIGTERM).expect("kill all");
    pal.kill(1234, SIGKILL).expect("kill one");
    pal.destroy().expect("destroy");

    assert_eq!(
        p.calls(),
        [
            "pal_get_version".to_owned(),
            init_line(&args, "info"),
            format!(
                "pal_create_process path={} argv={} env={} stdio=3,4,5 pid_ptr=set",
                q("/usr/bin/payload"),
                qv(&argv),
                qv(&env)
            ),
            "pal_exec pid=1234 exit_ptr=set".to_owned(),
            "pal_kill pid=-1 sig=15".to_owned(),
            "pal_kill pid=1234 sig=9".to_owned(),
            "pal_destroy".to_owned(),
        ]
    );
}

#[test]
fn v2_split_create_process_and_wait() {
    let p = TestPal::build("pal_v2.c", &[]);
    let pal = load(&p);
    pal.init(&p.args("pid=77 exit=255"), "info", None)
        .expect("init");
    let pid = pal
        .create_process(&strings(&["sh"]), &[], [0, 1, 2])
        .expect("create_process");
    assert_eq!(pid, 77);
    assert_eq!(pal.wait(pid).expect("wait"), 255);
    assert_eq!(
        p.calls()[2..],
        [
            format!(
                "pal_create_process path={} argv={} env=[] stdio=0,1,2 pid_ptr=set",
                q("sh"),
                qv(&["sh"])
            ),
            "pal_exec pid=77 exit_ptr=set".to_owned(),
        ]
    );
}

#[test]
fn v2_stdio_fds_reach_the_pal() {
    let p = TestPal::build("pal_v2.c", &[]);
    let pal = load(&p);
    pal.init(&p.args("echo"), "info", None).expect("init");
    let out_path = p.dir.path().join("stdout");
    let err_path = p.dir.path().join("stderr");
    let out = File::create(&out_path).expect("create");
    let errf = File::create(&err_path).expect("create");
    pal.exec(
        &strings(&["prog", "x y"]),
        &strings(&["K=V", "Z="]),
        [-1, out.as_raw_fd(), errf.as_raw_fd()],
    )
    .expect("exec");
    assert_eq!(fs::read_to_string(&out_path).expect("read"), "prog\nx y\n");
    assert_eq!(fs::read_to_string(&err_path).expect("read"), "K=V\nZ=\n");
}

#[test]
fn v2_prebuilt_enclave_is_ignored() {
    let p = TestPal::build("pal_v2.c", &[]);
    let pal = load(&p);
    let args = p.args("");
    pal.init(&args, "info", Some((9, 0x1000))).expect("init");
    assert_eq!(p.calls()[1], init_line(&args, "info"));
}

#[test]
fn v2_without_pal_kill_reports_not_implemented() {
    let p = TestPal::build("pal_v2.c", &["PAL_OMIT_KILL"]);
    let pal = load(&p);
    pal.init(&p.args(""), "info", None).expect("init");
    let err = pal.kill(-1, SIGTERM).expect_err("no pal_kill");
    assert!(matches!(
        err,
        PalError::NotImplemented {
            function: "pal_kill",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        format!("PAL {}: pal_kill() not implemented", p.so.display())
    );
    // Everything else still works.
    assert_eq!(pal.exec(&strings(&["x"]), &[], [0, 1, 2]).expect("exec"), 0);
    pal.destroy().expect("destroy");
}

#[test]
fn v2_has_no_local_report() {
    let p = TestPal::build("pal_v2.c", &[]);
    let pal = load(&p);
    let err = pal.local_report(&[0; 512]).expect_err("v2");
    assert!(
        err.to_string().contains("unsupported pal api version 2"),
        "{err}"
    );
}

// ----------------------------------------------------------------------------------------------
// v3

#[test]
fn v3_init_passes_fd_minus_one_and_addr_zero() {
    let p = TestPal::build("pal_v3.c", &[]);
    let pal = load(&p);
    assert_eq!(pal.version(), 3);
    let args = p.args("");
    pal.init(&args, "warning", None).expect("init");
    let argv = strings(&["/bin/hello_world"]);
    assert_eq!(pal.exec(&argv, &[], [0, 1, 2]).expect("exec"), 0);
    pal.kill(42, SIGTERM).expect("kill");
    pal.destroy().expect("destroy");
    assert_eq!(
        p.calls(),
        [
            "pal_get_version".to_owned(),
            format!("{} fd=-1 addr=0", init_line(&args, "warning")),
            format!(
                "pal_create_process path={} argv={} env=[] stdio=0,1,2 pid_ptr=set",
                q("/bin/hello_world"),
                qv(&argv)
            ),
            "pal_exec pid=42 exit_ptr=set".to_owned(),
            "pal_kill pid=42 sig=15".to_owned(),
            "pal_destroy".to_owned(),
        ]
    );
}

#[test]
fn v3_init_passes_prebuilt_enclave() {
    let p = TestPal::build("pal_v3.c", &[]);
    let pal = load(&p);
    let args = p.args("");
    pal.init(&args, "info", Some((7, 0x7f00_0000_0000)))
        .expect("init");
    assert_eq!(
        p.calls()[1],
        format!(
            "{} fd=7 addr={}",
            init_line(&args, "info"),
            0x7f00_0000_0000u64
        )
    );
}

#[test]
fn v3_local_report_round_trip() {
    let p = TestPal::build("pal_v3.c", &[]);
    let pal = load(&p);
    pal.init(&p.args(""), "info", None).expect("init");
    let target: Vec<u8> = (0..512u32).map(|i| (i * 7 % 251) as u8).collect();
    let sum: u64 = target.iter().map(|&b| u64::from(b)).sum();
    let report = pal.local_report(&target).expect("local report");
    assert_eq!(report.len(), 432);
    for (i, &b) in report.iter().enumerate() {
        assert_eq!(b, (i as u8).wrapping_add(target[0]), "report byte {i}");
    }
    assert_eq!(
        p.calls()[2],
        format!(
            "pal_get_local_report target_info=set target_info_len=512 report=set report_len=432 \
             target_info_sum={sum}"
        )
    );
}

#[test]
fn v3_local_report_with_empty_target_info_passes_null() {
    let p = TestPal::build("pal_v3.c", &[]);
    let pal = load(&p);
    pal.init(&p.args(""), "info", None).expect("init");
    assert_eq!(pal.local_report(&[]).expect("report").len(), 432);
    assert_eq!(
        p.calls()[2],
        "pal_get_local_report target_info=NULL target_info_len=0 report=set report_len=432 \
         target_info_sum=0"
    );
}

#[test]
fn v3_local_report_succeeds_only_on_zero() {
    for (rc, name) in [(1, ""), (-22, "EINVAL"), (-38, "ENOSYS")] {
        let p = TestPal::build("pal_v3.c", &[]);
        let pal = load(&p);
        pal.init(&p.args(&format!("report_rc={rc}")), "info", None)
            .expect("init");
        let err = pal.local_report(&[1; 512]).expect_err("non-zero rc");
        assert_call_failed(err, &p, "pal_get_local_report", rc, name);
    }
}

#[test]
fn v3_local_report_honours_report_len_written_back() {
    let p = TestPal::build("pal_v3.c", &[]);
    let pal = load(&p);
    pal.init(&p.args("report_len=100"), "info", None)
        .expect("init");
    assert_eq!(pal.local_report(&[3; 512]).expect("report").len(), 100);

    let p = TestPal::build("pal_v3.c", &[]);
    let pal = load(&p);
    pal.init(&p.args("report_len=500"), "info", None)
        .expect("init");
    let err = pal.local_report(&[3; 512]).expect_err("too long");
    assert!(matches!(err, PalError::Protocol { .. }), "{err}");
}

#[test]
fn v3_without_local_report_reports_not_implemented() {
    let p = TestPal::build("pal_v3.c", &["PAL_OMIT_LOCAL_REPORT"]);
    let pal = load(&p);
    pal.init(&p.args(""), "info", None).expect("init");
    let err = pal.local_report(&[0; 512]).expect_err("missing");
    assert_eq!(
        err.to_string(),
        format!(
            "PAL {}: pal_get_local_report() not implemented",
            p.so.display()
        )
    );
}

// ----------------------------------------------------------------------------------------------
// Return-value convention

#[test]
fn negative_returns_are_errors_naming_path_function_and_code() {
    for source in ["pal_v1.c", "pal_v2.c", "pal_v3.c"] {
        let p = TestPal::build(source, &[]);
        let pal = load(&p);
        let err = pal
            .init(&p.args("init_rc=-22"), "info", None)
            .expect_err("init_rc=-22");
        assert_call_failed(err, &p, "pal_init", -22, "EINVAL");
    }

    let p = TestPal::build("pal_v1.c", &[]);
    let pal = load(&p);
    pal.init(&p.args("exec_rc=-2 destroy_rc=-4242"), "info", None)
        .expect("init");
    let err = pal
        .exec(&strings(&["x"]), &[], [0, 1, 2])
        .expect_err("exec");
    assert_call_failed(err, &p, "pal_exec", -2, "ENOENT");
    let err = pal.destroy().expect_err("destroy");
    assert_call_failed(err, &p, "pal_destroy", -4242, "");

    let p = TestPal::build("pal_v2.c", &[]);
    let pal = load(&p);
    pal.init(
        &p.args("create_rc=-8 kill_rc=-3 destroy_rc=-1"),
        "info",
        None,
    )
    .expect("init");
    let err = pal
        .exec(&strings(&["x"]), &[], [0, 1, 2])
        .expect_err("create");
    assert_call_failed(err, &p, "pal_create_process", -8, "ENOEXEC");
    // pal_exec is not called after a failed pal_create_process.
    assert_eq!(
        p.call_names(),
        ["pal_get_version", "pal_init", "pal_create_process"]
    );
    let err = pal.kill(-1, SIGTERM).expect_err("kill");
    assert_call_failed(err, &p, "pal_kill", -3, "ESRCH");
    let err = pal.destroy().expect_err("destroy");
    assert_call_failed(err, &p, "pal_destroy", -1, "EPERM");

    let p = TestPal::build("pal_v3.c", &[]);
    let pal = load(&p);
    pal.init(&p.args("exec_rc=-12"), "info", None)
        .expect("init");
    let err = pal
        .exec(&strings(&["x"]), &[], [0, 1, 2])
        .expect_err("exec");
    assert_call_failed(err, &p, "pal_exec", -12, "ENOMEM");
}

#[test]
fn positive_returns_are_success() {
    for source in ["pal_v2.c", "pal_v3.c"] {
        let p = TestPal::build(source, &[]);
        let pal = load(&p);
        pal.init(
            &p.args("init_rc=5 create_rc=1 exec_rc=2 kill_rc=3 destroy_rc=4 exit=9"),
            "info",
            None,
        )
        .expect("positive init rc is success");
        assert_eq!(pal.exec(&strings(&["x"]), &[], [0, 1, 2]).expect("exec"), 9);
        pal.kill(-1, SIGTERM).expect("kill");
        pal.destroy().expect("destroy");
    }
    let p = TestPal::build("pal_v1.c", &[]);
    let pal = load(&p);
    pal.init(
        &p.args("init_rc=1 exec_rc=1 destroy_rc=1 exit=4"),
        "info",
        None,
    )
    .expect("init");
    assert_eq!(pal.exec(&strings(&["x"]), &[], [0, 1, 2]).expect("exec"), 4);
    pal.destroy().expect("destroy");
}

// ----------------------------------------------------------------------------------------------
// Arguments that cannot cross the ABI

#[test]
fn nul_bytes_are_errors_and_nothing_is_called() {
    let p = TestPal::build("pal_v2.c", &[]);
    let pal = load(&p);

    let err = pal
        .init(&p.args("a\0b"), "info", None)
        .expect_err("NUL in args");
    assert!(matches!(
        err,
        PalError::InvalidArgument {
            function: "pal_init",
            ..
        }
    ));
    assert!(
        err.to_string().contains("args contains a NUL byte"),
        "{err}"
    );
    let err = pal
        .init(&p.args(""), "in\0fo", None)
        .expect_err("NUL in log_level");
    assert!(
        err.to_string().contains("log_level contains a NUL"),
        "{err}"
    );
    assert!(p.calls().is_empty(), "pal_init must not have been called");

    pal.init(&p.args(""), "info", None).expect("init");
    let err = pal
        .exec(&strings(&["/bin/x", "a\0b"]), &[], [0, 1, 2])
        .expect_err("NUL in argv");
    assert!(
        err.to_string()
            .contains("argv[1] contains a NUL byte at offset 1"),
        "{err}"
    );
    let err = pal
        .exec(&strings(&["/bin/x"]), &strings(&["A=\0"]), [0, 1, 2])
        .expect_err("NUL in env");
    assert!(
        err.to_string().contains("env[0] contains a NUL byte"),
        "{err}"
    );
    let err = pal.exec(&[], &[], [0, 1, 2]).expect_err("empty argv");
    assert!(err.to_string().contains("argv is empty"), "{err}");
    assert_eq!(p.call_names(), ["pal_get_version", "pal_init"]);

    let p1 = TestPal::build("pal_v1.c", &[]);
    let pal1 = load(&p1);
    pal1.init(&p1.args(""), "info", None).expect("init");
    let err = pal1
        .exec(&strings(&["/bin/\0x"]), &[], [0, 1, 2])
        .expect_err("NUL in v1 path");
    assert!(matches!(
        err,
        PalError::InvalidArgument {
            function: "pal_exec",
            ..
        }
    ));
    assert_eq!(p1.call_names(), ["pal_init"]);
}

#[test]
fn pal_and_library_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pal>();
    assert_send_sync::<PalLibrary>();
}

#[test]
fn kill_can_run_while_another_thread_uses_the_pal() {
    let p = TestPal::build("pal_v3.c", &[]);
    let pal = load(&p);
    pal.init(&p.args(""), "info", None).expect("init");
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..50 {
                pal.exec(&strings(&["x"]), &[], [0, 1, 2]).expect("exec");
            }
        });
        s.spawn(|| {
            for _ in 0..50 {
                pal.kill(-1, SIGTERM).expect("kill");
            }
        });
    });
    let names = p.call_names();
    assert_eq!(names.iter().filter(|n| *n == "pal_kill").count(), 50);
    assert_eq!(names.iter().filter(|n| *n == "pal_exec").count(), 50);
}
