//! Enclave containers driven through rune directly: the PAL calls rune makes (checked in the
//! call log of the runner PAL, `tests/pals/runner_pal.c`, which really runs programs), what the
//! payload sees, signals, `rune exec` through the init-runelet, delete, the security properties
//! of the init-runelet, and the errors that must leave nothing behind.
//!
//! Every test has its own `--root`, bundle and container ids. Bundles get a writable rootfs so
//! the runner PAL can append to `/pal-calls.log` in it.

mod common;
mod enclave_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;
use enclave_support::*;

const LONG: Duration = Duration::from_secs(15);

/// A payload script (`sh -c SCRIPT zero ARGS...`) that shows its argv on stdout, writes to
/// stderr, saves its env and exits 7.
const SCRIPT: &str = r#"printf '<%s>' "$@"; echo; echo to-stderr >&2; env > /tmp/env.txt; exit 7"#;
/// Arguments with a space, an empty string, quotes, a backslash and non-ASCII text.
const ARGS: [&str; 5] = ["zero", "a b", "", "q\"u'o\\te", "ünï"];
const ARGS_ECHOED: &str = "<a b><><q\"u'o\\te><ünï>\n";

/// Tolerates a `HOME=/root` at the end of a payload env in the log (runc adds HOME when the
/// config has none; whether rune does is checked by `payload_env_matches_a_plain_container`).
fn without_trailing_home(mut env: Vec<String>) -> Vec<String> {
    if env.last().is_some_and(|e| e.starts_with("HOME=")) {
        env.pop();
    }
    env
}

/// Waits until the payload runs (the PAL logged its exec call: `exec pid=` for v2/v3,
/// `exec path=` for v1).
#[track_caller]
fn wait_payload(b: &Bundle) {
    let started = |log: &[String]| {
        log.iter()
            .any(|l| l.starts_with("exec pid=") || l.starts_with("exec path="))
    };
    let log = wait_pal_log(b, LONG, started);
    assert!(started(&log), "the payload never started: {log:#?}");
}

/// `rune run -d` of the bundle; panics unless it succeeds.
#[track_caller]
fn run_detached(root: &Root, b: &Bundle) {
    let o = root.run(&["run", "-d", "--bundle", &b.dir_str(), &b.id]);
    assert!(o.success(), "run -d failed: {o}");
}

#[track_caller]
fn create(root: &Root, b: &Bundle) {
    let o = root.run(&["create", "--bundle", &b.dir_str(), &b.id]);
    assert!(o.success(), "create failed: {o}");
}

/// Init pid of a live container.
#[track_caller]
fn init_pid(root: &Root, id: &str) -> i32 {
    let pid = root.pid(id) as i32;
    assert!(pid > 0, "container {id} has no init pid");
    pid
}

#[track_caller]
fn wait_stopped(root: &Root, id: &str) {
    if let Err(last) = wait_status_for(root, id, "stopped", LONG) {
        panic!("container {id} did not stop: last status {last:?}");
    }
}

// ===========================================================================
// 1. rune run: PAL calls, payload argv/env/stdio, exit status
// ===========================================================================

/// `rune run` of a payload through the runner PAL of `version`: exact call log, argv with
/// spaces/empty strings/quotes, env with the ENCLAVE_* settings stripped (order kept), stdout,
/// stderr, exit status; no host env reaches the payload; nothing is left afterwards.
fn run_through_pal(version: u32) {
    let root = Root::new();
    let pal = runner_pal(version);
    let mut args = vec!["sh", "-c", SCRIPT];
    args.extend(ARGS);
    let mut b = writable_bundle(&root, &args);
    let base = bundle_env(&b);
    let mut env = base.clone();
    env.extend([
        "ENCLAVE_TYPE=software".to_string(),
        "A_FIRST=1".to_string(),
        format!("ENCLAVE_RUNTIME_PATH={}", pal.display()),
        "SPACED=x y".to_string(),
        "ENCLAVE_RUNTIME_ARGS=one,two,,three".to_string(),
        "EMPTY=".to_string(),
        "ENCLAVE_RUNTIME_LOGLEVEL=debug".to_string(),
        "Z_LAST=z".to_string(),
    ]);
    set_env(&mut b, &env);
    let mut expected_env = base.clone();
    expected_env.extend(["A_FIRST=1", "SPACED=x y", "EMPTY=", "Z_LAST=z"].map(String::from));

    let o = run_with_env(
        &root,
        &["run", "--bundle", &b.dir_str(), &b.id],
        &[("RUNE_TEST_HOST_SECRET", "leaked-from-the-host")],
    );
    assert_eq!(o.code(), 7, "the payload's exit status: {o}");
    assert_eq!(o.stdout, ARGS_ECHOED, "payload stdout: {o}");
    assert_eq!(
        o.stderr, "to-stderr\n",
        "payload stderr (and nothing from rune): {o}"
    );

    // The log, exactly.
    let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    argv[0] = "/bin/sh".into(); // resolved through the container's PATH
    let log = normalized(&pal_log(&b));
    let expected: Vec<String> = match version {
        1 => vec![
            r#"init args="one two  three" log_level=debug"#.into(),
            format!(
                "exec path={} argv={} stdio=0,1,2",
                q("/bin/sh"),
                qlist(&argv)
            ),
            "destroy".into(),
        ],
        2 | 3 => {
            let init = if version == 3 {
                r#"init args="one two  three" log_level=debug fd=-1 addr=0"#
            } else {
                r#"init args="one two  three" log_level=debug"#
            };
            let calls = process_calls(&log);
            assert_eq!(calls.len(), 1, "one create_process: {log:#?}");
            let env = calls[0].env.clone().expect("create_process has env");
            assert_eq!(
                without_trailing_home(env),
                expected_env,
                "create_process env: ENCLAVE_* stripped, order kept: {log:#?}"
            );
            let logged_env = calls[0].env.clone().unwrap_or_default();
            vec![
                "get_version".into(),
                init.into(),
                format!(
                    "create_process path={} argv={} env={}",
                    q("/bin/sh"),
                    qlist(&argv),
                    qlist(&logged_env)
                ),
                "exec pid=N".into(),
                "destroy".into(),
            ]
        }
        _ => unreachable!(),
    };
    assert_eq!(log, expected, "PAL call log of a v{version} PAL");

    // What the payload saw.
    let seen = fs::read_to_string(b.rootfs().join("tmp/env.txt")).expect("payload wrote env");
    let seen: Vec<&str> = seen.lines().collect();
    for want in &expected_env {
        assert!(
            seen.contains(&want.as_str()),
            "payload env lacks {want:?}: {seen:#?}"
        );
    }
    for line in &seen {
        assert!(
            !line.starts_with("ENCLAVE_"),
            "payload sees {line:?}: {seen:#?}"
        );
        assert!(
            !line.contains("RUNE_TEST_HOST_SECRET") && !line.contains("_RUNE_SEALED_EXE"),
            "rune's host env reached the payload: {line:?}"
        );
    }
    assert_enclave_gone(&root, &b);
}

#[test]
fn v1_run_calls_argv_output_status() {
    run_through_pal(1);
}

#[test]
fn v2_run_calls_argv_env_output_status() {
    run_through_pal(2);
}

#[test]
fn v3_run_calls_argv_env_output_status() {
    run_through_pal(3);
}

/// The settings work from annotations alone (the OCI-bundle way); nothing is stripped from an
/// env that has no ENCLAVE_* entries.
#[test]
fn annotations_alone_configure_the_enclave() {
    let root = Root::new();
    let mut b = writable_bundle(&root, &["sh", "-c", "echo from-annotations; exit 3"]);
    let env = bundle_env(&b);
    b.set_annotation("enclave.type", "software");
    b.set_annotation("enclave.runtime.path", &runner_pal(2).to_string_lossy());
    b.set_annotation("enclave.runtime.args", "x,y");
    b.set_annotation("enclave.runtime.loglevel", "warning");
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]);
    assert_eq!(o.code(), 3, "{o}");
    assert_eq!(o.stdout, "from-annotations\n", "{o}");
    let log = normalized(&pal_log(&b));
    assert_eq!(
        log[..2],
        ["get_version", r#"init args="x y" log_level=warning"#],
        "{log:#?}"
    );
    let calls = process_calls(&log);
    assert_eq!(calls.len(), 1, "{log:#?}");
    assert_eq!(
        without_trailing_home(calls[0].env.clone().unwrap_or_default()),
        env,
        "{log:#?}"
    );
    assert_eq!(log.last().map(String::as_str), Some("destroy"), "{log:#?}");
    assert_enclave_gone(&root, &b);
}

/// Env beats annotations for every setting, even when the env value is invalid (an invalid log
/// level becomes `info`, not the annotation's level).
#[test]
fn env_overrides_annotations() {
    let root = Root::new();
    let mut b = writable_bundle(&root, &["sh", "-c", "exit 0"]);
    b.set_annotation("enclave.type", "intelSgx");
    b.set_annotation(
        "enclave.runtime.path",
        "/nonexistent/liberpal-annotation.so",
    );
    b.set_annotation("enclave.runtime.args", "from-annotation");
    b.set_annotation("enclave.runtime.loglevel", "error");
    b.add_env("ENCLAVE_TYPE=software");
    b.add_env(&format!("ENCLAVE_RUNTIME_PATH={}", runner_pal(3).display()));
    b.add_env("ENCLAVE_RUNTIME_ARGS=from-env");
    b.add_env("ENCLAVE_RUNTIME_LOGLEVEL=loud");
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]);
    assert!(o.success(), "{o}");
    let log = pal_log(&b);
    assert_eq!(
        log[..2],
        [
            "get_version",
            r#"init args="from-env" log_level=info fd=-1 addr=0"#
        ],
        "{log:#?}"
    );
    assert_enclave_gone(&root, &b);
}

/// An empty env value counts as unset: the annotation applies, and the empty entry is still
/// removed from the payload's env.
#[test]
fn empty_env_value_falls_back_to_the_annotation() {
    let root = Root::new();
    let mut b = writable_bundle(&root, &["sh", "-c", "env"]);
    b.set_annotation("enclave.type", "software");
    b.set_annotation("enclave.runtime.path", &runner_pal(3).to_string_lossy());
    b.add_env("ENCLAVE_TYPE=");
    b.add_env("ENCLAVE_RUNTIME_ARGS=");
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]);
    assert!(o.success(), "{o}");
    assert!(!o.stdout.contains("ENCLAVE_"), "{o}");
    assert_eq!(
        pal_log(&b).get(1).map(String::as_str),
        Some(r#"init args="" log_level=info fd=-1 addr=0"#)
    );
}

/// Without an enclave type the container is a plain one: the payload is PID 1 (no
/// init-runelet, no PAL) and the other ENCLAVE_* variables stay in its env, as upstream.
#[test]
fn no_type_means_a_plain_container() {
    let root = Root::new();
    let mut b = writable_bundle(&root, &["sh", "-c", "cat /proc/1/comm; env"]);
    b.add_env(&format!("ENCLAVE_RUNTIME_PATH={}", runner_pal(3).display()));
    b.add_env("ENCLAVE_RUNTIME_ARGS=a,b");
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]).ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("sh"), "{o}");
    assert!(lines.contains(&"ENCLAVE_RUNTIME_ARGS=a,b"), "{o}");
    assert!(
        pal_log(&b).is_empty(),
        "the PAL was used: {:#?}",
        pal_log(&b)
    );
    assert!(!enclave_state_dir(&root, &b.id).exists());
}

/// `rune run -d`: the payload's stdout and stderr are rune's, also after rune returned.
#[test]
fn detached_payload_writes_to_runes_stdio() {
    let root = Root::new();
    let script = "sleep 0.5; echo late-out; echo late-err >&2";
    let b = enclave_bundle(&root, &runner_pal(3), &["sh", "-c", script]);
    let mut run = root.spawn(&["run", "-d", "--bundle", &b.dir_str(), &b.id]);
    let o = run.wait_timeout(LONG).expect("run -d returns");
    assert!(o.success(), "{o}");
    wait_stopped(&root, &b.id);
    assert_eq!(run.stdout_now(), "late-out\n");
    assert_eq!(run.stderr_now(), "late-err\n");
    delete_stopped(&root, &b.id);
}

/// Every valid log level reaches pal_init as given.
#[test]
fn valid_log_levels_reach_pal_init() {
    let root = Root::new();
    for level in [
        "trace", "debug", "info", "warning", "error", "fatal", "panic", "off",
    ] {
        let mut b = enclave_bundle(&root, &runner_pal(2), &["true"]);
        b.add_env(&format!("ENCLAVE_RUNTIME_LOGLEVEL={level}"));
        let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]);
        assert!(o.success(), "{level}: {o}");
        assert_eq!(
            pal_log(&b).get(1).map(String::as_str),
            Some(format!(r#"init args="" log_level={level}"#).as_str()),
            "{level}"
        );
    }
}

/// As a shell does: a bare program name is resolved through the container's PATH; one that
/// does not resolve is passed to the PAL verbatim (here: execve fails, status 127).
#[test]
fn argv0_is_resolved_through_the_container_path() {
    let root = Root::new();
    let pal = runner_pal(3);
    let mut b = enclave_bundle(&root, &pal, &["mytool", "arg"]);
    let tool = b.rootfs().join("opt/tools/mytool");
    fs::create_dir_all(tool.parent().expect("parent")).expect("mkdir");
    fs::write(&tool, "#!/bin/sh\necho \"mytool $0 $*\"\n").expect("write tool");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
    let env: Vec<String> = bundle_env(&b)
        .into_iter()
        .map(|e| {
            if e.starts_with("PATH=") {
                "PATH=/nonexistent:/opt/tools:/bin".to_string()
            } else {
                e
            }
        })
        .collect();
    set_env(&mut b, &env);
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]);
    assert!(o.success(), "{o}");
    assert_eq!(o.stdout, "mytool /opt/tools/mytool arg\n", "{o}");
    let calls = process_calls(&pal_log(&b));
    assert_eq!(calls[0].path, "/opt/tools/mytool", "{calls:?}");
    assert_eq!(calls[0].argv, ["/opt/tools/mytool", "arg"], "{calls:?}");

    let mut b2 = enclave_bundle(&root, &pal, &["no-such-program", "x"]);
    set_env(&mut b2, &env); // the same PATH, and the same ENCLAVE_* settings
    let o = root.run(&["run", "--bundle", &b2.dir_str(), &b2.id]);
    assert_eq!(o.code(), 127, "{o}");
    let calls = process_calls(&pal_log(&b2));
    assert_eq!(calls[0].path, "no-such-program", "{calls:?}");
    assert_enclave_gone(&root, &b2);
}

/// The PAL API counts only negative return values as failures.
#[test]
fn positive_pal_return_values_are_success() {
    let root = Root::new();
    let b = enclave_bundle(
        &root,
        &pal("positive_rc_v3.so"),
        &["sh", "-c", "echo ok; exit 4"],
    );
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]);
    assert_eq!(o.code(), 4, "{o}");
    assert_eq!(o.stdout, "ok\n", "{o}");
    let log = normalized(&pal_log(&b));
    assert_eq!(
        log.first().map(String::as_str),
        Some("get_version"),
        "{log:#?}"
    );
    assert_eq!(log.last().map(String::as_str), Some("destroy"), "{log:#?}");
    assert_enclave_gone(&root, &b);
}

/// The payload of an enclave container sees the env a plain container's process sees (runc
/// adds HOME from /etc/passwd when the config has none; upstream rune hands the PAL the init's
/// os.Environ(), which includes it).
#[test]
fn payload_env_matches_a_plain_container() {
    let root = Root::new();
    let script = "env | grep -v -e '^PWD=' -e '^SHLVL=' | sort";
    let plain = writable_bundle(&root, &["sh", "-c", script]);
    let o = root
        .run(&["run", "--bundle", &plain.dir_str(), &plain.id])
        .ok();
    let want = o.stdout;
    let mut mismatches = Vec::new();
    for version in [1, 2, 3] {
        let b = enclave_bundle(&root, &runner_pal(version), &["sh", "-c", script]);
        let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]).ok();
        if o.stdout != want {
            mismatches.push(format!(
                "v{version}: enclave payload env {:?}, plain container env {want:?}",
                o.stdout
            ));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

/// A process with a terminal: the payload gets the container's console as its stdio.
#[test]
fn run_with_a_terminal() {
    let root = Root::new();
    let mut b = enclave_bundle(
        &root,
        &runner_pal(3),
        &["sh", "-c", "tty; echo term-ok; exit 5"],
    );
    b.edit(|c| c["process"]["terminal"] = Value::Bool(true));
    let mut cmd = root.cmd(&["run", "--bundle", &b.dir_str(), &b.id]);
    let (o, text) = run_in_pty(&mut cmd, LONG);
    assert_eq!(o.code(), 5, "{o}");
    assert!(
        text.contains("/dev/pts/"),
        "payload has no terminal: {text:?}"
    );
    assert!(text.contains("term-ok"), "{text:?}");
    assert_enclave_gone(&root, &b);
}

/// `rune run` passes its stdin to the payload.
#[test]
fn run_passes_stdin() {
    let root = Root::new();
    let b = enclave_bundle(&root, &runner_pal(3), &["sh", "-c", "cat; echo end"]);
    let o = root.run_stdin(&["run", "--bundle", &b.dir_str(), &b.id], b"from stdin\n");
    assert!(o.success(), "{o}");
    assert_eq!(o.stdout, "from stdin\nend\n", "{o}");
}

/// pause and resume freeze and thaw the whole enclave container; `ps` lists the init-runelet
/// and the payload.
#[test]
fn pause_resume_and_ps() {
    let root = Root::new();
    let script = "while :; do date +%s%N > /tmp/tick; sleep 0.05; done";
    let b = enclave_bundle(&root, &runner_pal(3), &["sh", "-c", script]);
    run_detached(&root, &b);
    let tick = b.rootfs().join("tmp/tick");
    wait_file(&tick, LONG).expect("payload ticks");
    let pid = init_pid(&root, &b.id);
    let ps = root.run(&["ps", "--format", "json", &b.id]).ok();
    let pids: Vec<i64> = serde_json::from_str(&ps.stdout).expect("ps json");
    assert!(pids.contains(&(pid as i64)) && pids.len() >= 2, "{ps}");

    root.run(&["pause", &b.id]).ok();
    assert_eq!(root.status(&b.id), "paused");
    std::thread::sleep(Duration::from_millis(200));
    let frozen = fs::read_to_string(&tick).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        fs::read_to_string(&tick).unwrap_or_default(),
        frozen,
        "still ticking while paused"
    );
    root.run(&["resume", &b.id]).ok();
    assert_eq!(root.status(&b.id), "running");
    let thawed = wait_for(LONG, || {
        (fs::read_to_string(&tick).unwrap_or_default() != frozen).then_some(())
    });
    assert!(thawed.is_some(), "not ticking after resume");
    root.run(&["kill", &b.id, "TERM"]).ok();
    wait_stopped(&root, &b.id);
    delete_stopped(&root, &b.id);
    assert_enclave_gone(&root, &b);
}

/// `state` and `list` report the user's bundle (not rune's effective copy) and the user's
/// config.json is left untouched.
#[test]
fn state_and_list_report_the_users_bundle() {
    let root = Root::new();
    let b = enclave_bundle(&root, &runner_pal(3), &["sleep", "100"]);
    let before = fs::read(b.config_path()).expect("read config");
    create(&root, &b);
    let state = root.state(&b.id).expect("state");
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["bundle"], b.dir_str(), "{state}");
    assert_eq!(
        state["rootfs"],
        b.rootfs().to_string_lossy().as_ref(),
        "{state}"
    );
    let list = root.run(&["list", "--format", "json"]).ok();
    let entry = list.json();
    let entry = entry
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == b.id.as_str()).cloned())
        .unwrap_or_else(|| panic!("{} not listed: {list}", b.id));
    assert_eq!(entry["bundle"], b.dir_str(), "{list}");
    assert_eq!(entry["status"], "created", "{list}");
    let ids = root.run(&["list", "-q"]).ok();
    assert_eq!(
        ids.stdout.trim(),
        b.id,
        "only the container is listed: {ids}"
    );
    assert_eq!(
        fs::read(b.config_path()).expect("read config"),
        before,
        "config.json changed"
    );
    root.run(&["start", &b.id]).ok();
    let state = root.state(&b.id).expect("state");
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(state["bundle"], b.dir_str(), "{state}");
    root.run(&["kill", &b.id, "KILL"]).ok();
    wait_stopped(&root, &b.id);
    delete_stopped(&root, &b.id);
    assert_enclave_gone(&root, &b);
}

// ===========================================================================
// 2. Signals
// ===========================================================================

/// `rune kill ID TERM` on a payload that does not trap TERM: the init-runelet forwards it with
/// pal_kill(-1, 15), the payload dies, pal_destroy runs, the container stops.
fn kill_term_stops(version: u32) {
    let root = Root::new();
    let b = enclave_bundle(&root, &runner_pal(version), &["sleep", "100"]);
    run_detached(&root, &b);
    wait_payload(&b);
    assert_eq!(root.status(&b.id), "running");
    root.run(&["kill", &b.id, "TERM"]).ok();
    wait_stopped(&root, &b.id);
    let log = normalized(&pal_log(&b));
    let n = log.len();
    assert!(n >= 2, "{log:#?}");
    assert_eq!(log[n - 2..], ["kill pid=-1 sig=15", "destroy"], "{log:#?}");
    delete_stopped(&root, &b.id);
    assert_enclave_gone(&root, &b);
}

#[test]
fn v2_kill_term_stops_the_container() {
    kill_term_stops(2);
}

#[test]
fn v3_kill_term_stops_the_container() {
    kill_term_stops(3);
}

/// Foreground `rune run`: the container killed with TERM makes `run` exit 128+15.
#[test]
fn foreground_run_reports_the_signal_status() {
    let root = Root::new();
    let b = enclave_bundle(&root, &runner_pal(3), &["sleep", "100"]);
    let run = root.spawn(&["run", "--bundle", &b.dir_str(), &b.id]);
    wait_payload(&b);
    root.run(&["kill", &b.id, "TERM"]).ok();
    let o = run.wait(LONG);
    assert_eq!(o.code(), 143, "{o}");
    assert_enclave_gone(&root, &b);
}

/// A payload that traps TERM gets it (and USR1) and keeps running; KILL stops the container.
#[test]
fn trapped_term_is_delivered_and_kill_stops_the_container() {
    let root = Root::new();
    let script = "trap 'echo TERM >> /tmp/trapped' TERM; trap 'echo USR1 >> /tmp/trapped' USR1; \
                  echo ready > /tmp/ready; while :; do sleep 0.1; done";
    let b = enclave_bundle(&root, &runner_pal(3), &["sh", "-c", script]);
    run_detached(&root, &b);
    wait_file(&b.rootfs().join("tmp/ready"), LONG).expect("payload ready");
    root.run(&["kill", &b.id, "TERM"]).ok();
    root.run(&["kill", &b.id, "USR1"]).ok();
    let trapped = wait_for(LONG, || {
        let s = fs::read_to_string(b.rootfs().join("tmp/trapped")).unwrap_or_default();
        (s.contains("TERM") && s.contains("USR1")).then_some(s)
    });
    assert!(
        trapped.is_some(),
        "signals not delivered: {:#?}",
        pal_log(&b)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        root.status(&b.id),
        "running",
        "the trapping payload must keep running"
    );
    let log = pal_log(&b);
    assert!(log.contains(&"kill pid=-1 sig=15".to_string()), "{log:#?}");
    assert!(log.contains(&"kill pid=-1 sig=10".to_string()), "{log:#?}");
    assert!(!log.contains(&"destroy".to_string()), "{log:#?}");

    let pid = init_pid(&root, &b.id);
    root.run(&["kill", &b.id, "KILL"]).ok();
    wait_stopped(&root, &b.id);
    assert!(!alive(pid), "init-runelet {pid} survived SIGKILL");
    delete_stopped(&root, &b.id);
    assert_enclave_gone(&root, &b);
}

/// A payload ignoring TERM, INT and HUP: KILL still stops the container at once.
#[test]
fn kill_stops_a_payload_that_ignores_signals() {
    let root = Root::new();
    let script = "trap '' TERM INT HUP; echo ready > /tmp/ready; while :; do sleep 0.1; done";
    let b = enclave_bundle(&root, &runner_pal(2), &["sh", "-c", script]);
    run_detached(&root, &b);
    wait_file(&b.rootfs().join("tmp/ready"), LONG).expect("payload ready");
    for sig in ["TERM", "INT", "HUP"] {
        root.run(&["kill", &b.id, sig]).ok();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(root.status(&b.id), "running");
    let start = Instant::now();
    root.run(&["kill", &b.id, "KILL"]).ok();
    wait_stopped(&root, &b.id);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    delete_stopped(&root, &b.id);
    assert_enclave_gone(&root, &b);
}

/// v1 has no pal_kill: `rune kill ID TERM` is not forwarded (no kill line) and, as upstream, the
/// container keeps running; KILL stops it.
#[test]
fn v1_kill_is_not_forwarded_to_the_pal() {
    let root = Root::new();
    let b = enclave_bundle(&root, &runner_pal(1), &["sleep", "100"]);
    run_detached(&root, &b);
    wait_payload(&b);
    root.run(&["kill", &b.id, "TERM"]).ok();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        root.status(&b.id),
        "running",
        "v1: TERM is not forwarded, the payload keeps running"
    );
    let log = pal_log(&b);
    assert!(!log.iter().any(|l| l.starts_with("kill")), "{log:#?}");
    root.run(&["kill", &b.id, "KILL"]).ok();
    wait_stopped(&root, &b.id);
    delete_stopped(&root, &b.id);
    assert_enclave_gone(&root, &b);
}

/// Before start the init-runelet handles TERM itself: it destroys the enclave and exits.
#[test]
fn term_before_start_destroys_the_enclave() {
    for version in [1, 3] {
        let root = Root::new();
        let b = enclave_bundle(&root, &runner_pal(version), &["sleep", "100"]);
        create(&root, &b);
        let pid = init_pid(&root, &b.id);
        assert_eq!(comm(pid), "init-runelet");
        root.run(&["kill", &b.id, "TERM"]).ok();
        wait_stopped(&root, &b.id);
        let log = pal_log(&b);
        assert_eq!(
            log.last().map(String::as_str),
            Some("destroy"),
            "v{version}: {log:#?}"
        );
        assert!(process_calls(&log).is_empty(), "v{version}: {log:#?}");
        delete_stopped(&root, &b.id);
        assert_enclave_gone(&root, &b);
    }
}

/// A TERM sent right after `start` returns reaches the payload (is not lost in the window
/// before the PAL has created it).
#[test]
fn term_right_after_start_is_not_lost() {
    let root = Root::new();
    for _ in 0..5 {
        let b = enclave_bundle(&root, &runner_pal(3), &["sleep", "100"]);
        create(&root, &b);
        root.run(&["start", &b.id]).ok();
        root.run(&["kill", &b.id, "TERM"]).ok();
        if let Err(last) = wait_status_for(&root, &b.id, "stopped", Duration::from_secs(5)) {
            panic!(
                "TERM right after start was lost: status {last:?}, log {:#?}",
                pal_log(&b)
            );
        }
        delete_stopped(&root, &b.id);
    }
}

// ===========================================================================
// 3. rune exec
// ===========================================================================

/// A running v3 enclave container whose payload sleeps.
fn running(root: &Root, version: u32) -> Bundle {
    let b = enclave_bundle(root, &runner_pal(version), &["sleep", "1000"]);
    run_detached(root, &b);
    wait_payload(&b);
    b
}

fn exec_args<'a>(id: &'a str, opts: &[&'a str], cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["exec"];
    v.extend_from_slice(opts);
    v.push(id);
    v.extend_from_slice(cmd);
    v
}

/// argv with spaces, empty strings and quotes; env from -e; stdout, stderr and exit status;
/// the container env (without ENCLAVE_*) is the base of the exec'd process env.
fn exec_through_pal(version: u32) {
    let root = Root::new();
    let mut b = enclave_bundle(&root, &runner_pal(version), &["sleep", "1000"]);
    b.add_env("CONTAINER_VAR=c");
    run_detached(&root, &b);
    wait_payload(&b);
    let before = pal_log(&b).len();

    let script = r#"printf '<%s>' "$@"; echo; echo "NEW=$NEW TERM=$TERM CV=$CONTAINER_VAR"; echo err-out >&2; env > /tmp/exec-env.txt; exit 9"#;
    let mut cmd = vec!["sh", "-c", script];
    cmd.extend(ARGS);
    let o = root.run(&exec_args(
        &b.id,
        &["-e", "NEW=a b", "-e", "TERM=dumb"],
        &cmd,
    ));
    assert_eq!(o.code(), 9, "exit status of the exec'd process: {o}");
    assert!(o.stdout.starts_with(ARGS_ECHOED), "{o}");
    assert_eq!(o.stderr, "err-out\n", "{o}");

    let log = pal_log(&b);
    let calls = process_calls(&log[before..]);
    assert_eq!(calls.len(), 1, "{log:#?}");
    let mut argv: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    argv[0] = "/bin/sh".into();
    assert_eq!(calls[0].path, "/bin/sh", "{log:#?}");
    assert_eq!(calls[0].argv, argv, "{log:#?}");
    let env_file = fs::read_to_string(b.rootfs().join("tmp/exec-env.txt")).unwrap_or_default();
    for line in env_file.lines() {
        assert!(
            !line.starts_with("ENCLAVE_"),
            "exec'd process sees {line:?}"
        );
    }
    if version == 1 {
        // v1 passes no env: the process inherits the init-runelet's, which is the container's.
        assert!(calls[0].env.is_none());
        assert!(o.stdout.contains("CV=c"), "{o}");
    } else {
        assert_eq!(
            o.stdout,
            format!("{ARGS_ECHOED}NEW=a b TERM=dumb CV=c\n"),
            "{o}"
        );
        let env = calls[0].env.clone().unwrap_or_default();
        for want in ["NEW=a b", "TERM=dumb", "CONTAINER_VAR=c"] {
            assert!(
                env.iter().any(|e| e == want),
                "exec env lacks {want:?}: {env:?}"
            );
        }
        assert_eq!(
            env.iter().filter(|e| e.starts_with("TERM=")).count(),
            1,
            "TERM twice: {env:?}"
        );
        assert!(!env.iter().any(|e| e.starts_with("ENCLAVE_")), "{env:?}");
    }
    assert_eq!(
        root.status(&b.id),
        "running",
        "exec must not stop the container"
    );
}

#[test]
fn v1_exec_argv_output_status() {
    exec_through_pal(1);
}

#[test]
fn v2_exec_argv_env_output_status() {
    exec_through_pal(2);
}

#[test]
fn v3_exec_argv_env_output_status() {
    exec_through_pal(3);
}

/// `printf data | rune exec ID cat`: the exec'd process reads rune exec's stdin.
#[test]
fn exec_passes_stdin() {
    let root = Root::new();
    let b = running(&root, 3);
    let data = b"line one\nline two\n\x00binary\xff".to_vec();
    let o = root.run_stdin(&["exec", &b.id, "cat"], &data);
    assert!(o.success(), "{o}");
    // Output is read lossily; compare the same way.
    assert_eq!(o.stdout, String::from_utf8_lossy(&data), "{o}");
    let o = root.run_stdin(
        &["exec", &b.id, "sh", "-c", "read x; echo got-$x"],
        b"hello\n",
    );
    assert_eq!(o.stdout, "got-hello\n", "{o}");
}

/// `rune exec -d --pid-file`: returns as soon as the process started; the pid in the file is
/// the runelet standing for the process, which lives until the process exits.
#[test]
fn exec_detached_returns_at_once_and_pid_file_tracks_the_process() {
    let root = Root::new();
    let b = running(&root, 3);
    let dir = TempDir::new("exec-d");
    let pid_file = dir.join("exec.pid");
    let start = Instant::now();
    let o = root.run(&[
        "exec",
        "-d",
        "--pid-file",
        &pid_file.to_string_lossy(),
        &b.id,
        "sh",
        "-c",
        "sleep 4; echo finished > /tmp/exec-d-done",
    ]);
    let took = start.elapsed();
    assert!(o.success(), "{o}");
    let pid: i32 = fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid in the pid file");
    let still_running = alive(pid);
    assert!(
        took < Duration::from_secs(3),
        "exec -d took {took:?}: it waited for the process (sleep 4) instead of detaching"
    );
    assert!(
        still_running,
        "pid-file process {pid} is gone while the process runs"
    );
    let gone = wait_for(LONG, || (!alive(pid)).then_some(()));
    assert!(
        gone.is_some(),
        "pid-file process {pid} outlives the process"
    );
    assert_eq!(
        fs::read_to_string(b.rootfs().join("tmp/exec-d-done")).unwrap_or_default(),
        "finished\n"
    );
}

/// A signal sent to `rune exec` reaches the exec'd process (relayed through the runelet and
/// the init-runelet's pal_kill); its exit status comes back.
#[test]
fn exec_relays_signals_to_the_process() {
    let root = Root::new();
    let b = running(&root, 3);
    let script = "trap 'echo got; exit 3' TERM; echo ready; sleep 100 & wait";
    let mut exec = root.spawn(&["exec", &b.id, "sh", "-c", script]);
    let ready = wait_for(LONG, || exec.stdout_now().contains("ready").then_some(()));
    assert!(
        ready.is_some(),
        "exec'd process never ready: {:?}",
        exec.stdout_now()
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exec.pid()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let o = exec.wait_timeout(LONG);
    let log = pal_log(&b);
    let o = o.unwrap_or_else(|| panic!("rune exec did not exit after SIGTERM; log {log:#?}"));
    assert_eq!(o.code(), 3, "{o}\nlog: {log:#?}");
    assert!(o.stdout.contains("got"), "{o}");
    assert!(
        normalized(&log).contains(&"kill pid=N sig=15".to_string()),
        "{log:#?}"
    );
}

/// SIGKILL on the runelet (the pid-file process) kills the exec'd process too.
#[test]
fn killing_the_runelet_kills_the_exec_process() {
    let root = Root::new();
    let b = running(&root, 3);
    let dir = TempDir::new("exec-k");
    let pid_file = dir.join("exec.pid");
    let mut exec = root.spawn(&[
        "exec",
        "--pid-file",
        &pid_file.to_string_lossy(),
        &b.id,
        "sh",
        "-c",
        "echo $$ > /tmp/exec-sh.pid; exec sleep 100",
    ]);
    let runelet: i32 = wait_file(&pid_file, LONG)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    wait_file(&b.rootfs().join("tmp/exec-sh.pid"), LONG).expect("process started");
    assert_eq!(comm(runelet), "runelet");
    let before: usize = pal_log(&b).len();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runelet),
        nix::sys::signal::Signal::SIGKILL,
    );
    let log = wait_pal_log(&b, LONG, |l| {
        l[before..]
            .iter()
            .any(|x| normalized(std::slice::from_ref(x))[0] == "kill pid=N sig=9")
    });
    assert!(
        normalized(&log[before..]).contains(&"kill pid=N sig=9".to_string()),
        "{log:#?}"
    );
    let _ = exec.wait_timeout(LONG);
    // Only the payload (sleep 1000) is left in the container.
    let o = root.run(&["exec", &b.id, "ps", "-o", "args"]).ok();
    assert!(!o.stdout.contains("sleep 100\n"), "{o}");
}

/// Several exec'd processes run at the same time in the same enclave.
#[test]
fn concurrent_execs() {
    let root = Root::new();
    let b = running(&root, 2);
    let long = root.spawn(&["exec", &b.id, "sh", "-c", "sleep 5; echo long-done"]);
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let quick = root.run(&["exec", &b.id, "echo", "quick"]).ok();
    assert_eq!(quick.stdout, "quick\n");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "quick exec waited for the long one: {:?}",
        start.elapsed()
    );
    let o = long.wait(LONG);
    assert_eq!(o.stdout, "long-done\n", "{o}");
}

/// Large argv and env go through the agent protocol intact.
#[test]
fn exec_with_large_argv_and_env() {
    let root = Root::new();
    let b = running(&root, 3);
    let big_arg = "a".repeat(100_000);
    let big_env = format!("BIG={}", "e".repeat(100_000));
    let mut cmd = vec!["sh", "-c", "echo ${#1} ${#BIG} $#", "zero", &big_arg];
    let many: Vec<String> = (0..2000).map(|i| format!("arg-{i}")).collect();
    cmd.extend(many.iter().map(String::as_str));
    let o = root.run(&exec_args(&b.id, &["-e", &big_env], &cmd));
    assert!(o.success(), "{}", o.stderr);
    assert_eq!(o.stdout, "100000 100000 2001\n", "stderr {:?}", o.stderr);
}

/// Eight execs at once each get their own stdio and status.
#[test]
fn many_parallel_execs() {
    let root = Root::new();
    let b = running(&root, 2);
    let execs: Vec<(usize, Spawned)> = (0..8)
        .map(|i| {
            let script = format!("sleep 0.5; echo out-{i}; echo err-{i} >&2; exit {i}");
            (i, root.spawn(&["exec", &b.id, "sh", "-c", &script]))
        })
        .collect();
    for (i, exec) in execs {
        let o = exec.wait(LONG);
        assert_eq!(o.code(), i as i32, "{o}");
        assert_eq!(o.stdout, format!("out-{i}\n"), "{o}");
        assert_eq!(o.stderr, format!("err-{i}\n"), "{o}");
    }
}

/// Serving execs leaks neither fds nor threads in the init-runelet.
#[test]
fn agent_leaks_no_fds_or_threads() {
    let root = Root::new();
    let b = running(&root, 3);
    let pid = init_pid(&root, &b.id);
    let threads = |pid: i32| {
        fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // One exec first: anything created once (lazily) is not a leak.
    root.run(&["exec", &b.id, "true"]).ok();
    let fds_before = fds_of(pid);
    let threads_before = threads(pid);
    for i in 0..20 {
        let o = root.run(&["exec", &b.id, "sh", "-c", &format!("exit {}", i % 3)]);
        assert_eq!(o.code(), i % 3, "{o}");
    }
    let o = root.run(&["exec", &b.id, "echo", "x"]);
    assert!(o.success(), "{o}");
    let settled = wait_for(Duration::from_secs(5), || {
        (fds_of(pid).len() == fds_before.len() && threads(pid) == threads_before).then_some(())
    });
    assert!(
        settled.is_some(),
        "fds {} -> {} ({:?}), threads {threads_before} -> {}",
        fds_before.len(),
        fds_of(pid).len(),
        fds_of(pid),
        threads(pid)
    );
}

/// Exec before start is refused with a clear message; the container stays created and starts
/// normally afterwards.
#[test]
fn exec_before_start_is_refused() {
    let root = Root::new();
    let b = enclave_bundle(
        &root,
        &runner_pal(3),
        &["sh", "-c", "echo started; sleep 1000"],
    );
    create(&root, &b);
    let o = root.run(&["exec", &b.id, "echo", "too-early"]);
    let line = o.one_error_line();
    assert!(line.contains("start"), "unclear message: {o}");
    assert!(!o.stdout.contains("too-early"), "{o}");
    assert_eq!(root.status(&b.id), "created");
    let pid = init_pid(&root, &b.id);
    assert!(alive(pid));
    assert!(process_calls(&pal_log(&b)).is_empty(), "{:#?}", pal_log(&b));
    root.run(&["start", &b.id]).ok();
    wait_payload(&b);
    assert_eq!(root.status(&b.id), "running");
    let o = root.run(&["exec", &b.id, "echo", "now"]).ok();
    assert_eq!(o.stdout, "now\n");
}

/// Exec into a stopped enclave container fails cleanly.
#[test]
fn exec_into_a_stopped_container_fails() {
    let root = Root::new();
    let b = enclave_bundle(&root, &runner_pal(3), &["true"]);
    run_detached(&root, &b);
    wait_stopped(&root, &b.id);
    let o = root.run(&["exec", &b.id, "echo", "x"]);
    let line = o.one_error_line();
    assert!(
        line.contains("not running") || line.contains("stopped"),
        "{o}"
    );
    delete_stopped(&root, &b.id);
    assert_enclave_gone(&root, &b);
}

/// The exec'd process has only stdio open (nothing of rune's or the init-runelet's leaks).
#[test]
fn exec_process_has_only_stdio() {
    let root = Root::new();
    let b = running(&root, 3);
    let o = root.run(&["exec", &b.id, "ls", "/proc/self/fd"]).ok();
    let fds: Vec<&str> = o.stdout.split_whitespace().collect();
    // 3 is ls's own directory fd.
    assert_eq!(fds, ["0", "1", "2", "3"], "{o}");
}

/// `rune exec --process FILE` (how docker and containerd exec): the enclave settings in the
/// process env are stripped as they are at create, so the exec'd process never sees them.
#[test]
fn exec_process_file_env_is_stripped() {
    let root = Root::new();
    let b = running(&root, 3);
    let dir = TempDir::new("procjson");
    let process = serde_json::json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["env"],
        "env": [
            "PATH=/usr/bin:/bin",
            "ENCLAVE_TYPE=software",
            "ENCLAVE_RUNTIME_PATH=/host/path/liberpal.so",
            "KEEP=1",
            "ENCLAVE_RUNTIME_ARGS=a,b"
        ],
        "cwd": "/"
    });
    let path = dir.join("process.json");
    fs::write(&path, process.to_string()).expect("write process.json");
    let o = root
        .run(&["exec", "--process", &path.to_string_lossy(), &b.id])
        .ok();
    assert!(o.stdout.lines().any(|l| l == "KEEP=1"), "{o}");
    let leaked: Vec<&str> = o
        .stdout
        .lines()
        .filter(|l| l.starts_with("ENCLAVE_"))
        .collect();
    assert!(
        leaked.is_empty(),
        "exec --process: the process sees {leaked:?}"
    );
}

/// `rune exec --user 1000:1000` must not run the process as root: honour the user or refuse.
#[test]
fn exec_user_is_honoured_or_refused() {
    let root = Root::new();
    let b = running(&root, 3);
    let o = root.run(&["exec", "--user", "1000:1000", &b.id, "id", "-u"]);
    if o.success() {
        assert_eq!(
            o.stdout,
            "1000\n",
            "exec --user 1000:1000 ran as uid {}",
            o.stdout.trim()
        );
    } else {
        o.one_error_line();
    }
}

/// `rune exec --cwd /tmp`: honour the working directory or refuse.
#[test]
fn exec_cwd_is_honoured_or_refused() {
    let root = Root::new();
    let b = running(&root, 3);
    let o = root.run(&["exec", "--cwd", "/tmp", &b.id, "pwd"]);
    if o.success() {
        assert_eq!(
            o.stdout,
            "/tmp\n",
            "exec --cwd /tmp ran in {}",
            o.stdout.trim()
        );
    } else {
        o.one_error_line();
    }
}

/// `rune exec -t` is interactive: output shows up while the process runs and input reaches it.
#[test]
fn exec_with_a_terminal_is_interactive() {
    let root = Root::new();
    let b = running(&root, 3);
    let mut cmd = root.cmd(&[
        "exec",
        "-t",
        &b.id,
        "sh",
        "-c",
        "tty; echo prompt; read x; echo got-$x; exit 6",
    ]);
    let (o, text) = pty_dialogue(&mut cmd, "prompt", b"hello\n", LONG);
    let o = o.unwrap_or_else(|| panic!("rune exec -t never finished; terminal so far {text:?}"));
    assert_eq!(o.code(), 6, "{o}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("got-hello"), "{text:?}");
}

/// The payload runs as the configured user (the init-runelet drops to it before the PAL runs).
#[test]
fn payload_runs_as_the_configured_user() {
    let root = Root::new();
    let mut b = enclave_bundle(&root, &runner_pal(3), &["sh", "-c", "id -u; id -g"]);
    b.add_env("ENCLAVE_RUNTIME_ARGS=record=/tmp/pal.log");
    b.edit(|c| {
        c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    });
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]);
    assert!(o.success(), "{o}");
    assert_eq!(o.stdout, "1000\n1000\n", "{o}");
    let log = pal_log_at(&b.rootfs().join("tmp/pal.log"));
    assert_eq!(log.last().map(String::as_str), Some("destroy"), "{log:#?}");
    assert_enclave_gone(&root, &b);
}

// ===========================================================================
// 4. Delete
// ===========================================================================

/// Deleting a created, never started enclave container destroys the enclave (the init-runelet
/// calls pal_destroy) and leaves nothing.
#[test]
fn delete_of_a_created_container_destroys_the_enclave() {
    for version in [1, 2, 3] {
        let root = Root::new();
        let b = enclave_bundle(&root, &runner_pal(version), &["sleep", "100"]);
        create(&root, &b);
        assert!(enclave_state_dir(&root, &b.id).is_dir());
        let o = root.run(&["delete", &b.id]);
        assert!(o.success(), "v{version}: {o}");
        let log = pal_log(&b);
        let want: &[&str] = match version {
            1 => &[r#"init args="" log_level=info"#, "destroy"],
            2 => &["get_version", r#"init args="" log_level=info"#, "destroy"],
            _ => &[
                "get_version",
                r#"init args="" log_level=info fd=-1 addr=0"#,
                "destroy",
            ],
        };
        assert_eq!(log, want, "v{version}");
        assert_enclave_gone(&root, &b);
    }
}

/// A created container whose pal_destroy never returns is still deleted (after a grace
/// period), leaving nothing.
#[test]
fn delete_of_a_created_container_with_a_hanging_destroy() {
    let root = Root::new();
    let b = enclave_bundle(&root, &pal("hang_destroy_v3.so"), &["sleep", "100"]);
    create(&root, &b);
    let pid = init_pid(&root, &b.id);
    let start = Instant::now();
    let o = root.run_timeout(&["delete", &b.id], Duration::from_secs(60));
    assert!(o.success(), "{o}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "delete took {:?}",
        start.elapsed()
    );
    assert!(!alive(pid), "init-runelet {pid} survived delete");
    assert_eq!(
        pal_log(&b).last().map(String::as_str),
        Some("destroy (hangs)"),
        "{:#?}",
        pal_log(&b)
    );
    assert_enclave_gone(&root, &b);
}

/// `delete --force` of a running enclave container, and of one whose payload exited.
#[test]
fn delete_force_running_and_delete_stopped() {
    let root = Root::new();
    let b = running(&root, 3);
    let pid = init_pid(&root, &b.id);
    let o = root.run(&["delete", &b.id]);
    assert!(
        !o.success(),
        "deleting a running container without --force: {o}"
    );
    root.run(&["delete", "--force", &b.id]).ok();
    assert!(!alive(pid));
    assert_enclave_gone(&root, &b);

    let b = enclave_bundle(&root, &runner_pal(2), &["true"]);
    run_detached(&root, &b);
    wait_stopped(&root, &b.id);
    assert!(enclave_state_dir(&root, &b.id).is_dir());
    delete_stopped(&root, &b.id);
    assert_enclave_gone(&root, &b);
}

/// An id can be used again once its enclave container is deleted.
#[test]
fn id_is_reusable_after_delete() {
    let root = Root::new();
    let mut b = enclave_bundle(&root, &runner_pal(3), &["sh", "-c", "exit 2"]);
    let id = b.id.clone();
    for _ in 0..2 {
        create(&root, &b);
        root.run(&["delete", &id]).ok();
        assert_enclave_gone(&root, &b);
    }
    let o = root.run(&["run", "--bundle", &b.dir_str(), &id]);
    assert_eq!(o.code(), 2, "{o}");
    b.id = id;
    assert_enclave_gone(&root, &b);
}

// ===========================================================================
// 5. Security
// ===========================================================================

/// /proc/1/exe inside the container is rune's sealed in-memory copy: not the host binary, not
/// writable from the host or from inside.
#[test]
fn proc1_exe_is_a_sealed_copy() {
    let root = Root::new();
    let script = "readlink /proc/1/exe > /tmp/exe-link; \
                  if [ -w /proc/1/exe ]; then echo writable; fi > /tmp/exe-w; \
                  (echo x >> /proc/1/exe) 2>/dev/null && echo WROTE > /tmp/exe-wrote; \
                  echo done > /tmp/exe-checked; sleep 1000";
    let b = enclave_bundle(&root, &runner_pal(3), &["sh", "-c", script]);
    let rune = fs::canonicalize(rune_bin()).expect("rune binary");
    let before = fs::read(&rune).expect("read rune");
    run_detached(&root, &b);
    wait_file(&b.rootfs().join("tmp/exe-checked"), LONG).expect("payload checked");
    let pid = init_pid(&root, &b.id);
    let link = fs::read_link(format!("/proc/{pid}/exe")).expect("readlink exe");
    assert_ne!(link, rune, "init-runelet runs the host binary");
    assert!(
        link.to_string_lossy().starts_with("/memfd:"),
        "init-runelet exe {link:?}"
    );
    let inside = fs::read_to_string(b.rootfs().join("tmp/exe-link")).unwrap_or_default();
    assert_ne!(
        inside.trim(),
        rune.to_string_lossy(),
        "inside, /proc/1/exe is the host binary"
    );
    assert_eq!(
        fs::read_to_string(b.rootfs().join("tmp/exe-w")).unwrap_or_default(),
        "",
        "/proc/1/exe writable from inside"
    );
    assert!(
        !b.rootfs().join("tmp/exe-wrote").exists(),
        "wrote to /proc/1/exe from inside"
    );
    // Even root on the host cannot write through it.
    let written = fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/exe"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
    assert!(
        written.is_err(),
        "/proc/{pid}/exe is writable from the host"
    );
    assert_eq!(
        fs::read(&rune).expect("read rune"),
        before,
        "the host binary changed"
    );
}

/// The runelet of `rune exec` also runs from a sealed copy.
#[test]
fn runelet_exe_is_a_sealed_copy() {
    let root = Root::new();
    let b = running(&root, 3);
    let dir = TempDir::new("exec-exe");
    let pid_file = dir.join("exec.pid");
    let exec = root.spawn(&[
        "exec",
        "--pid-file",
        &pid_file.to_string_lossy(),
        &b.id,
        "sleep",
        "3",
    ]);
    let pid: i32 = wait_file(&pid_file, LONG)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let link = fs::read_link(format!("/proc/{pid}/exe")).expect("readlink exe");
    assert!(
        link.to_string_lossy().starts_with("/memfd:"),
        "runelet exe {link:?}"
    );
    assert_ne!(link, fs::canonicalize(rune_bin()).expect("rune"));
    let _ = exec.wait(LONG);
}

/// The payload's fds are exactly stdio, for every PAL version, with --log and --pid-file given.
#[test]
fn payload_has_only_stdio() {
    for version in [1, 2, 3] {
        let root = Root::new();
        let dir = TempDir::new("fds");
        let b = enclave_bundle(&root, &runner_pal(version), &["ls", "/proc/self/fd"]);
        let o = root.run(&[
            "--log",
            &dir.join("rune.log").to_string_lossy(),
            "run",
            "--pid-file",
            &dir.join("pid").to_string_lossy(),
            "--bundle",
            &b.dir_str(),
            &b.id,
        ]);
        assert!(o.success(), "{o}");
        let fds: Vec<&str> = o.stdout.split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2", "3"], "v{version}: {o}");
    }
}

/// Host files rune had open (the --log file, the bundle's config.json, rune's state) are not
/// open in the init-runelet, before or after start.
#[test]
fn init_runelet_holds_no_host_files() {
    let root = Root::new();
    let dir = TempDir::new("irfds");
    let log_file = dir.join("rune.log");
    let b = enclave_bundle(&root, &runner_pal(3), &["sleep", "1000"]);
    let o = root.run(&[
        "--log",
        &log_file.to_string_lossy(),
        "create",
        "--pid-file",
        &dir.join("pid").to_string_lossy(),
        "--bundle",
        &b.dir_str(),
        &b.id,
    ]);
    assert!(o.success(), "{o}");
    let pid = init_pid(&root, &b.id);
    let forbidden = |target: &str| {
        let t = Path::new(target);
        t == log_file
            || t.starts_with(b.dir()) && !t.starts_with(b.rootfs())
            || t.starts_with(root.path())
    };
    let check = |when: &str| {
        let fds = fds_of(pid);
        assert!(!fds.is_empty(), "cannot read the fds of {pid}");
        let bad: Vec<_> = fds.iter().filter(|(_, t)| forbidden(t)).collect();
        assert!(
            bad.is_empty(),
            "{when}: init-runelet {pid} holds {bad:?} (all: {fds:?})"
        );
    };
    check("created");
    root.run(&["--log", &log_file.to_string_lossy(), "start", &b.id])
        .ok();
    wait_payload(&b);
    check("running");
}

/// The init-runelet (which never execs, so close-on-exec does not help) holds no directory fd:
/// a directory fd from the host, such as a procfs handle of the host's pid namespace, would let
/// code running in the init-runelet (the PAL, an in-process enclave runtime) see or reach
/// outside the container.
#[test]
fn init_runelet_holds_no_directory_fds() {
    let root = Root::new();
    let b = enclave_bundle(&root, &runner_pal(3), &["sleep", "1000"]);
    create(&root, &b);
    let pid = init_pid(&root, &b.id);
    let describe = |n: i32| {
        let path = format!("/proc/{pid}/fd/{n}");
        let meta = fs::metadata(&path).ok()?;
        if !meta.is_dir() {
            return None;
        }
        use std::os::unix::fs::MetadataExt;
        let entries: Vec<String> = fs::read_dir(&path)
            .map(|rd| {
                rd.flatten()
                    .take(8)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        Some(format!(
            "fd {n} -> {:?} (dev {}, inode {}, entries {entries:?}...)",
            fs::read_link(&path).unwrap_or_default(),
            meta.dev(),
            meta.ino()
        ))
    };
    for when in ["created", "running"] {
        if when == "running" {
            root.run(&["start", &b.id]).ok();
            wait_payload(&b);
        }
        let dirs: Vec<String> = fds_of(pid)
            .into_iter()
            .filter_map(|(n, _)| describe(n))
            .collect();
        assert!(
            dirs.is_empty(),
            "{when}: init-runelet {pid} holds directory fds: {dirs:#?}"
        );
    }
}

/// PID 1 reaps orphans: double-forked processes that exit leave no zombie in the container.
fn reaps_orphans(version: u32) {
    let root = Root::new();
    let script =
        "(sleep 0.2 &); (sleep 0.2 &); (sleep 0.3 &); echo forked > /tmp/forked; sleep 1000";
    let b = enclave_bundle(&root, &runner_pal(version), &["sh", "-c", script]);
    run_detached(&root, &b);
    wait_file(&b.rootfs().join("tmp/forked"), LONG).expect("payload forked");
    let pid = init_pid(&root, &b.id);
    std::thread::sleep(Duration::from_millis(300));
    let mut zombies = Vec::new();
    let reaped = wait_for(Duration::from_secs(3), || {
        zombies = children_of(pid)
            .into_iter()
            .filter(|(_, s)| s == "Z")
            .collect();
        zombies.is_empty().then_some(())
    });
    assert!(
        reaped.is_some(),
        "zombies left under the init-runelet {pid}: {zombies:?} (children {:?})",
        children_of(pid)
    );
    // The payload itself is untouched.
    assert_eq!(root.status(&b.id), "running");
}

#[test]
fn v2_pid1_reaps_orphans() {
    reaps_orphans(2);
}

#[test]
fn v3_pid1_reaps_orphans() {
    reaps_orphans(3);
}

// ===========================================================================
// 6. Errors: one stderr line, non-zero exit, nothing left behind
// ===========================================================================

/// Runs `create` and then `run` of the bundle (a fresh id each); both must fail with exactly one
/// stderr line containing every string of `want`, and leave nothing behind.
#[track_caller]
fn assert_refused(root: &Root, b: &mut Bundle, want: &[&str]) {
    for cmd in ["create", "run"] {
        b.id = unique("rt-err");
        let o = root.run(&[cmd, "--bundle", &b.dir_str(), &b.id]);
        let line = o.one_error_line();
        for w in want {
            assert!(
                line.contains(&w.to_lowercase()),
                "{cmd}: the error does not mention {w:?}: {o}"
            );
        }
        assert!(
            !o.stdout.contains("payload-ran"),
            "{cmd}: the payload ran: {o}"
        );
        assert_enclave_gone(root, b);
        assert!(root.state(&b.id).is_none(), "{cmd}: state still answers");
    }
}

fn error_bundle(root: &Root, env: &[&str]) -> Bundle {
    let mut b = writable_bundle(root, &["sh", "-c", "echo payload-ran"]);
    for e in env {
        b.add_env(e);
    }
    b
}

#[test]
fn error_pal_path_missing() {
    let root = Root::new();
    let path = "/nonexistent/dir/liberpal-missing.so";
    let mut b = error_bundle(
        &root,
        &[
            "ENCLAVE_TYPE=software",
            &format!("ENCLAVE_RUNTIME_PATH={path}"),
        ],
    );
    assert_refused(&root, &mut b, &[path]);
}

#[test]
fn error_pal_not_an_elf() {
    let root = Root::new();
    let dir = TempDir::new("notelf");
    let path = dir.join("liberpal-text.so");
    fs::write(
        &path,
        "this is a text file, not a shared library\n".repeat(40),
    )
    .expect("write");
    let p = path.to_string_lossy().into_owned();
    let mut b = error_bundle(
        &root,
        &[
            "ENCLAVE_TYPE=software",
            &format!("ENCLAVE_RUNTIME_PATH={p}"),
        ],
    );
    assert_refused(&root, &mut b, &[&p]);
}

#[test]
fn error_pal_path_relative_or_directory() {
    let root = Root::new();
    let mut b = error_bundle(
        &root,
        &[
            "ENCLAVE_TYPE=software",
            "ENCLAVE_RUNTIME_PATH=liberpal-relative.so",
        ],
    );
    assert_refused(&root, &mut b, &["liberpal-relative.so"]);
    let dir = TempDir::new("paldir");
    let p = dir.path().to_string_lossy().into_owned();
    let mut b = error_bundle(
        &root,
        &[
            "ENCLAVE_TYPE=software",
            &format!("ENCLAVE_RUNTIME_PATH={p}"),
        ],
    );
    assert_refused(&root, &mut b, &[&p]);
}

#[test]
fn error_pal_missing_a_required_symbol() {
    let root = Root::new();
    let p = pal("missing_destroy.so").to_string_lossy().into_owned();
    let mut b = error_bundle(
        &root,
        &[
            "ENCLAVE_TYPE=software",
            &format!("ENCLAVE_RUNTIME_PATH={p}"),
        ],
    );
    assert_refused(&root, &mut b, &[&p, "pal_destroy"]);
}

#[test]
fn error_unsupported_pal_version() {
    let root = Root::new();
    for (name, version) in [("version4.so", "4"), ("version0.so", "0")] {
        let p = pal(name).to_string_lossy().into_owned();
        let mut b = error_bundle(
            &root,
            &[
                "ENCLAVE_TYPE=software",
                &format!("ENCLAVE_RUNTIME_PATH={p}"),
            ],
        );
        assert_refused(&root, &mut b, &[&p, "version", version]);
        // pal_get_version was asked, pal_init never.
        assert_eq!(
            pal_log(&b),
            ["get_version", "get_version"],
            "{name}: create and run"
        );
    }
}

#[test]
fn error_pal_init_fails() {
    let root = Root::new();
    for version in [1, 2, 3] {
        let p = runner_pal(version).to_string_lossy().into_owned();
        let mut b = error_bundle(
            &root,
            &[
                "ENCLAVE_TYPE=software",
                &format!("ENCLAVE_RUNTIME_PATH={p}"),
                "ENCLAVE_RUNTIME_ARGS=init_fail",
            ],
        );
        assert_refused(&root, &mut b, &[&p, "pal_init", "-22"]);
        let log = pal_log(&b);
        assert!(
            !log.iter()
                .any(|l| l.starts_with("create_process") || l.starts_with("exec")),
            "v{version}: {log:#?}"
        );
    }
}

#[test]
fn error_enclave_type_not_available() {
    let root = Root::new();
    let p = runner_pal(3).to_string_lossy().into_owned();
    for t in ["intelSgx", "AwsNitroEnclaves", "Jailhouse"] {
        let mut b = error_bundle(
            &root,
            &[
                &format!("ENCLAVE_TYPE={t}"),
                &format!("ENCLAVE_RUNTIME_PATH={p}"),
            ],
        );
        assert_refused(&root, &mut b, &[t]);
        assert!(pal_log(&b).is_empty(), "{t}: the PAL was called");
    }
    // The same from the annotation.
    let mut b = error_bundle(&root, &[]);
    b.set_annotation("enclave.type", "intelSgx");
    b.set_annotation("enclave.runtime.path", &p);
    assert_refused(&root, &mut b, &["intelSgx"]);
}

#[test]
fn error_unknown_enclave_type() {
    let root = Root::new();
    let p = runner_pal(3).to_string_lossy().into_owned();
    let mut b = error_bundle(
        &root,
        &["ENCLAVE_TYPE=bogus", &format!("ENCLAVE_RUNTIME_PATH={p}")],
    );
    assert_refused(&root, &mut b, &["bogus"]);
}

#[test]
fn error_no_runtime_path() {
    let root = Root::new();
    let mut b = error_bundle(&root, &["ENCLAVE_TYPE=software"]);
    assert_refused(&root, &mut b, &["ENCLAVE_RUNTIME_PATH"]);
}

// ===========================================================================
// kvm
// ===========================================================================

/// A kvm enclave container sees /dev/kvm and can open it (device node and device cgroup rule
/// added by rune); a plain container does not get it.
#[test]
fn kvm_enclave_sees_dev_kvm() {
    if fs::metadata("/dev/kvm").is_err() {
        eprintln!("no /dev/kvm on this host: skipped");
        return;
    }
    let root = Root::new();
    let script = "test -c /dev/kvm && echo is-char; exec 3<>/dev/kvm && echo opened";
    let mut b = writable_bundle(&root, &["sh", "-c", script]);
    b.add_env("ENCLAVE_TYPE=kvm");
    b.add_env(&format!("ENCLAVE_RUNTIME_PATH={}", runner_pal(3).display()));
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]);
    assert!(o.success(), "{o}");
    assert_eq!(o.stdout, "is-char\nopened\n", "{o}");
    assert_enclave_gone(&root, &b);

    let plain = writable_bundle(
        &root,
        &["sh", "-c", "test -e /dev/kvm && echo has-kvm; true"],
    );
    let o = root
        .run(&["run", "--bundle", &plain.dir_str(), &plain.id])
        .ok();
    assert_eq!(o.stdout, "", "a plain container sees /dev/kvm: {o}");
}
