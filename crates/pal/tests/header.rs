//! `include/enclave_pal.h` is plain C99 and describes the same layout as `src/abi.rs`.

mod common;

use std::mem::{align_of, offset_of, size_of};
use std::process::Command;

use common::{crate_dir, run_cc, write_file};
use pal::abi::{
    PalAttrV1, PalAttrV3, PalCreateProcessArgs, PalExecArgs, PalStdioFds, PAL_API_VERSION_MAX,
    PAL_NO_ENCLAVE_FD, PAL_REPORT_LEN, PAL_TARGET_INFO_LEN,
};

const LAYOUT_PROGRAM: &str = r#"
#include "enclave_pal.h"
#include <stddef.h>
#include <stdio.h>

#define S(t) printf(#t " size=%zu align=%zu\n", sizeof(t), _Alignof(t))
#define O(t, m) printf(#t "." #m "=%zu\n", offsetof(t, m))

int main(void)
{
	S(pal_attr_v1_t); O(pal_attr_v1_t, args); O(pal_attr_v1_t, log_level);
	S(pal_attr_v3_t); O(pal_attr_v3_t, attr_v1); O(pal_attr_v3_t, fd); O(pal_attr_v3_t, addr);
	S(pal_stdio_fds); O(pal_stdio_fds, stdin); O(pal_stdio_fds, stdout); O(pal_stdio_fds, stderr);
	S(pal_create_process_args); O(pal_create_process_args, path);
	O(pal_create_process_args, argv); O(pal_create_process_args, env);
	O(pal_create_process_args, stdio); O(pal_create_process_args, pid);
	S(pal_exec_args); O(pal_exec_args, pid); O(pal_exec_args, exit_value);
	printf("max=%d report=%d target=%d nofd=%d\n", PAL_API_VERSION_MAX, PAL_REPORT_LEN,
	       PAL_TARGET_INFO_LEN, PAL_NO_ENCLAVE_FD);
	return 0;
}
"#;

fn expected() -> String {
    macro_rules! s {
        ($c:literal, $t:ty) => {
            format!(
                "{} size={} align={}\n",
                $c,
                size_of::<$t>(),
                align_of::<$t>()
            )
        };
    }
    macro_rules! o {
        ($c:literal, $t:ty, $m:ident) => {
            format!("{}.{}={}\n", $c, stringify!($m), offset_of!($t, $m))
        };
    }
    [
        s!("pal_attr_v1_t", PalAttrV1),
        o!("pal_attr_v1_t", PalAttrV1, args),
        o!("pal_attr_v1_t", PalAttrV1, log_level),
        s!("pal_attr_v3_t", PalAttrV3),
        o!("pal_attr_v3_t", PalAttrV3, attr_v1),
        o!("pal_attr_v3_t", PalAttrV3, fd),
        o!("pal_attr_v3_t", PalAttrV3, addr),
        s!("pal_stdio_fds", PalStdioFds),
        o!("pal_stdio_fds", PalStdioFds, stdin),
        o!("pal_stdio_fds", PalStdioFds, stdout),
        o!("pal_stdio_fds", PalStdioFds, stderr),
        s!("pal_create_process_args", PalCreateProcessArgs),
        o!("pal_create_process_args", PalCreateProcessArgs, path),
        o!("pal_create_process_args", PalCreateProcessArgs, argv),
        o!("pal_create_process_args", PalCreateProcessArgs, env),
        o!("pal_create_process_args", PalCreateProcessArgs, stdio),
        o!("pal_create_process_args", PalCreateProcessArgs, pid),
        s!("pal_exec_args", PalExecArgs),
        o!("pal_exec_args", PalExecArgs, pid),
        o!("pal_exec_args", PalExecArgs, exit_value),
        format!(
            "max={PAL_API_VERSION_MAX} report={PAL_REPORT_LEN} target={PAL_TARGET_INFO_LEN} \
             nofd={PAL_NO_ENCLAVE_FD}\n"
        ),
    ]
    .concat()
}

#[test]
fn header_layout_matches_abi_rs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = write_file(dir.path(), "layout.c", LAYOUT_PROGRAM.as_bytes());
    let exe = dir.path().join("layout");
    let include = format!("-I{}", crate_dir().join("include").display());
    // C11 only for _Alignof in this probe; the header itself is checked as C99 below.
    run_cc(&[
        "-std=c11",
        "-Wall",
        "-Werror",
        &include,
        src.to_str().expect("UTF-8"),
        "-o",
        exe.to_str().expect("UTF-8"),
    ]);
    let out = Command::new(&exe).output().expect("run layout probe");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected());
}

#[test]
fn header_is_strict_c99_for_every_api_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = write_file(
        dir.path(),
        "use.c",
        b"#include \"enclave_pal.h\"\n#include \"enclave_pal.h\" /* include guard */\n\
          int use_header(pal_exec_args *a);\nint use_header(pal_exec_args *a) { return a->pid; }\n",
    );
    let include = format!("-I{}", crate_dir().join("include").display());
    for define in [
        "",
        "-DENCLAVE_PAL_API_VERSION=1",
        "-DENCLAVE_PAL_API_VERSION=2",
        "-DENCLAVE_PAL_API_VERSION=3",
    ] {
        let mut args = vec![
            "-std=c99",
            "-pedantic-errors",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            include.as_str(),
        ];
        if !define.is_empty() {
            args.push(define);
        }
        args.push(src.to_str().expect("UTF-8"));
        run_cc(&args);
    }
}

#[test]
fn header_rejects_unknown_api_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = write_file(dir.path(), "bad.c", b"#include \"enclave_pal.h\"\n");
    let include = format!("-I{}", crate_dir().join("include").display());
    let out = Command::new(common::cc())
        .args([
            "-std=c99",
            "-fsyntax-only",
            "-DENCLAVE_PAL_API_VERSION=4",
            &include,
        ])
        .arg(&src)
        .output()
        .expect("run cc");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be 1, 2 or 3"));
}
