//! `rune-cri`'s command line on its own: what a user sees for a wrong or missing argument,
//! `--help` and `--version`. No CRI runtime is involved: each case fails or finishes before
//! rune-cri connects to one.

use std::process::Command;
use std::time::Duration;

use rune_test_support::*;

/// Exit status of rune-cri's own failures, usage errors included.
const FAILURE: i32 = 125;

#[track_caller]
fn rune_cri(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rune-cri"));
    cmd.args(args);
    run_cmd(&mut cmd, Duration::from_secs(30))
}

#[test]
fn run_without_image_names_the_missing_argument() {
    let o = rune_cri(&["run"]);
    assert_eq!(o.code(), FAILURE, "{o}");
    assert!(o.stdout.is_empty(), "{o}");
    assert!(
        o.stderr
            .contains("the following required arguments were not provided"),
        "{o}"
    );
    assert!(o.stderr.contains("--image <IMAGE>"), "{o}");
    // The whole of clap's message: the usage line and the pointer to --help come too.
    assert!(o.stderr.contains("Usage: rune-cri run"), "{o}");
    assert!(o.stderr.contains("--help"), "{o}");
}

#[test]
fn run_without_image_with_other_arguments_names_image() {
    let o = rune_cri(&[
        "run",
        "--endpoint",
        "unix:///nonexistent.sock",
        "--",
        "true",
    ]);
    assert_eq!(o.code(), FAILURE, "{o}");
    assert!(o.stderr.contains("--image <IMAGE>"), "{o}");
}

#[test]
fn invalid_value_shows_the_whole_message() {
    let o = rune_cri(&["run", "--image", "busybox", "--env", "NOEQUALS"]);
    assert_eq!(o.code(), FAILURE, "{o}");
    assert!(o.stderr.contains("\"NOEQUALS\" is not KEY=VALUE"), "{o}");
    assert!(o.stderr.contains("--env <KEY=VALUE>"), "{o}");
    assert!(o.stderr.contains("--help"), "{o}");
}

#[test]
fn unknown_subcommand_fails_with_usage() {
    let o = rune_cri(&["frobnicate"]);
    assert_eq!(o.code(), FAILURE, "{o}");
    assert!(o.stderr.contains("frobnicate"), "{o}");
    assert!(o.stderr.contains("Usage: rune-cri"), "{o}");
}

#[test]
fn bare_rune_cri_lists_the_commands() {
    let o = rune_cri(&[]);
    assert_eq!(o.code(), FAILURE, "{o}");
    assert!(o.stdout.is_empty(), "{o}");
    assert!(o.stderr.contains("A kubelet-like CRI client"), "{o}");
    assert!(o.stderr.contains("Commands:"), "{o}");
    assert!(
        o.stderr.lines().any(|l| l.trim_start().starts_with("run ")),
        "{o}"
    );
    assert!(o.stderr.contains("Usage: rune-cri"), "{o}");
}

#[test]
fn help_and_version_go_to_stdout_with_status_0() {
    for args in [
        &["--help"][..],
        &["help"],
        &["run", "--help"],
        &["help", "run"],
    ] {
        let o = rune_cri(args);
        assert_eq!(o.code(), 0, "{o}");
        assert!(o.stderr.is_empty(), "{o}");
        assert!(o.stdout.contains("Usage: rune-cri"), "{o}");
    }
    let o = rune_cri(&["run", "--help"]);
    assert!(o.stdout.contains("--image <IMAGE>"), "{o}");
    assert!(o.stdout.contains("Exit status:"), "{o}");

    let o = rune_cri(&["--version"]);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stderr.is_empty(), "{o}");
    assert!(
        o.stdout
            .starts_with(&format!("rune-cri {}", env!("CARGO_PKG_VERSION"))),
        "{o}"
    );
}
