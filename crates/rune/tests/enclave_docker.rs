//! Enclave containers through the engines: a private dockerd with `--add-runtime rune=<rune>`
//! and a private containerd (io.containerd.runc.v2 shim with `--runc-binary <rune>`). The
//! enclave settings come in as env (`-e ENCLAVE_TYPE=software -e ENCLAVE_RUNTIME_PATH=...`), the
//! way docker and Kubernetes users give them; the PAL is the runner PAL in the shared test cache,
//! which rune (started by the shim on the host) loads.

mod common;
mod enclave_support;

use std::time::{Duration, Instant};

use common::*;
use enclave_support::*;

fn enclave_env(version: u32) -> Vec<String> {
    vec![
        "ENCLAVE_TYPE=software".to_string(),
        format!("ENCLAVE_RUNTIME_PATH={}", runner_pal(version).display()),
        "ENCLAVE_RUNTIME_ARGS=from,docker".to_string(),
    ]
}

// ===========================================================================
// docker
// ===========================================================================

fn dockerd() -> Dockerd {
    let d = Dockerd::start();
    d.load_busybox();
    d
}

/// `docker run --runtime rune --network none -e <enclave env> [opts] IMAGE cmd...`
fn docker_run_args(opts: &[&str], cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["run", "--runtime", "rune", "--network", "none"]
        .map(String::from)
        .to_vec();
    for e in enclave_env(3) {
        v.push("-e".into());
        v.push(e);
    }
    v.extend(opts.iter().map(|s| s.to_string()));
    v.push(IMAGE_REF.into());
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

#[test]
fn docker_run_enclave_output_env_and_status() {
    let d = dockerd();
    let o = d.docker(&docker_run_args(
        &["--rm", "-e", "KEEP=me"],
        &["sh", "-c", "echo hi; env; exit 7"],
    ));
    assert_eq!(o.code(), 7, "exit status: {o}\n{}", d.log_tail());
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("hi"), "{o}");
    assert!(lines.contains(&"KEEP=me"), "{o}");
    assert!(
        !lines.iter().any(|l| l.starts_with("ENCLAVE_")),
        "the payload sees the enclave settings: {o}"
    );
    let ps = d.docker(&["ps", "-aq"]).ok();
    assert_eq!(ps.stdout.trim(), "", "--rm left a container: {ps}");
}

/// The PAL was really used: the payload runs with the init-runelet as PID 1 and the runner
/// PAL's log shows the calls.
#[test]
fn docker_payload_runs_under_the_init_runelet() {
    let d = dockerd();
    let o = d.docker(&docker_run_args(
        &["--rm"],
        &["sh", "-c", "cat /proc/1/comm; cat /pal-calls.log"],
    ));
    assert!(o.success(), "{o}\n{}", d.log_tail());
    let lines: Vec<String> = o.stdout.lines().map(String::from).collect();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("init-runelet"),
        "{o}"
    );
    let log = normalized(&lines[1..]);
    assert_eq!(log.first().map(String::as_str), Some("get_version"), "{o}");
    assert_eq!(
        log.get(1).map(String::as_str),
        Some(r#"init args="from docker" log_level=info fd=-1 addr=0"#),
        "{o}"
    );
    let calls = process_calls(&log);
    assert_eq!(calls.len(), 1, "{o}");
    assert_eq!(
        calls[0].argv[1..],
        ["-c", "cat /proc/1/comm; cat /pal-calls.log"]
    );
}

/// `docker run -t`: the payload gets the container's terminal.
#[test]
fn docker_run_tty() {
    let d = dockerd();
    let args = docker_run_args(&["--rm", "-t"], &["sh", "-c", "tty; echo tty-ok; exit 2"]);
    let (o, text) = run_in_pty(&mut d.docker_cmd(&args), Duration::from_secs(60));
    assert_eq!(o.code(), 2, "{o}\n{}", d.log_tail());
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("tty-ok"), "{text:?}");
}

/// `docker run -d`, `docker logs`, `docker exec` (output, env, exit status), `docker stop`
/// (quick: TERM reaches the payload through pal_kill), `docker rm`.
#[test]
fn docker_detached_exec_stop_rm() {
    let d = dockerd();
    let name = unique("rune-enc");
    let o = d.docker(&docker_run_args(
        &["-d", "--name", &name],
        &["sh", "-c", "echo to-the-log; exec sleep 1000"],
    ));
    assert!(o.success(), "{o}\n{}", d.log_tail());
    let running = wait_for(Duration::from_secs(20), || {
        let o = d.docker(&["inspect", "-f", "{{.State.Running}}", &name]);
        (o.stdout.trim() == "true").then_some(())
    });
    assert!(running.is_some(), "not running\n{}", d.log_tail());
    let logged = wait_for(Duration::from_secs(10), || {
        let o = d.docker(&["logs", &name]);
        o.stdout.contains("to-the-log").then_some(())
    });
    assert!(logged.is_some(), "{}", d.docker(&["logs", &name]));

    let e = d.docker(&["exec", &name, "sh", "-c", "echo in-exec; exit 3"]);
    assert_eq!(e.code(), 3, "{e}\n{}", d.log_tail());
    assert_eq!(e.stdout, "in-exec\n", "{e}");
    let e = d.docker(&[
        "exec",
        "-e",
        "X=from exec",
        &name,
        "sh",
        "-c",
        "echo \"$X\"",
    ]);
    assert_eq!(e.stdout, "from exec\n", "{e}");

    let start = Instant::now();
    d.docker(&["stop", "-t", "10", &name]).ok();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "docker stop took {took:?}: TERM did not stop the payload"
    );
    let code = d
        .docker(&["inspect", "-f", "{{.State.ExitCode}}", &name])
        .ok();
    assert_eq!(code.stdout.trim(), "143", "{code}");
    d.docker(&["rm", &name]).ok();
    let ps = d.docker(&["ps", "-aq"]).ok();
    assert_eq!(ps.stdout.trim(), "", "{ps}");
}

/// `docker exec -i`: the exec'd process reads the client's stdin.
#[test]
fn docker_exec_stdin() {
    let d = dockerd();
    let name = unique("rune-enc");
    let o = d.docker(&docker_run_args(
        &["-d", "--name", &name],
        &["sleep", "1000"],
    ));
    assert!(o.success(), "{o}\n{}", d.log_tail());
    let mut exec = Spawned::new(
        &mut d.docker_cmd(&["exec", "-i", &name, "cat"]),
        Some(b"piped\n".to_vec()),
    );
    let o = exec.wait_timeout(Duration::from_secs(20));
    let o = o.unwrap_or_else(|| {
        panic!(
            "docker exec -i ... cat never finished; output so far {:?}",
            exec.stdout_now()
        )
    });
    assert_eq!(o.stdout, "piped\n", "{o}");
    d.docker(&["rm", "-f", &name]).ok();
}

/// The enclave settings are not in the env of a `docker exec` process either (docker hands
/// rune the container's env, ENCLAVE_* included, in `exec --process`).
#[test]
fn docker_exec_env_has_no_enclave_settings() {
    let d = dockerd();
    let name = unique("rune-enc");
    let o = d.docker(&docker_run_args(
        &["-d", "--name", &name],
        &["sleep", "1000"],
    ));
    assert!(o.success(), "{o}\n{}", d.log_tail());
    let e = d.docker(&["exec", "-e", "X=from exec", &name, "env"]);
    assert!(e.success(), "{e}");
    assert!(e.stdout.lines().any(|l| l == "X=from exec"), "{e}");
    let leaked: Vec<&str> = e
        .stdout
        .lines()
        .filter(|l| l.starts_with("ENCLAVE_"))
        .collect();
    assert!(leaked.is_empty(), "docker exec process sees {leaked:?}");
    d.docker(&["rm", "-f", &name]).ok();
}

/// `docker exec -d` returns once the process started (docker waits for `rune exec -d`).
#[test]
fn docker_exec_detached_returns_at_once() {
    let d = dockerd();
    let name = unique("rune-enc");
    let o = d.docker(&docker_run_args(
        &["-d", "--name", &name],
        &["sleep", "1000"],
    ));
    assert!(o.success(), "{o}\n{}", d.log_tail());
    let start = Instant::now();
    let e = d.docker(&[
        "exec",
        "-d",
        &name,
        "sh",
        "-c",
        "sleep 6; touch /tmp/exec-d-done",
    ]);
    let took = start.elapsed();
    assert!(e.success(), "{e}");
    assert!(
        took < Duration::from_secs(4),
        "docker exec -d took {took:?}: it waited for the process (sleep 6)"
    );
    let done = wait_for(Duration::from_secs(15), || {
        d.docker(&["exec", &name, "test", "-e", "/tmp/exec-d-done"])
            .success()
            .then_some(())
    });
    assert!(done.is_some(), "the detached process never finished");
    d.docker(&["rm", "-f", &name]).ok();
}

// ===========================================================================
// containerd
// ===========================================================================

fn containerd() -> Containerd {
    let c = Containerd::start();
    c.import_busybox();
    c
}

/// `ctr run --runc-binary <rune> --runc-root <dir> --env <enclave env> [opts] IMAGE ID cmd...`
fn ctr_run_args(c: &Containerd, opts: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "run".into(),
        "--runc-binary".into(),
        rune_bin().to_string_lossy().into_owned(),
        "--runc-root".into(),
        c.runtime_root().to_string_lossy().into_owned(),
    ];
    for e in enclave_env(3) {
        v.push("--env".into());
        v.push(e);
    }
    v.extend(opts.iter().map(|s| s.to_string()));
    v.push(IMAGE_REF.into());
    v.push(id.into());
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

/// Task status from `ctr task ls` (RUNNING, STOPPED, ...), None when not listed.
fn task_status(c: &Containerd, id: &str) -> Option<String> {
    let o = c.ctr(&["tasks", "ls"]);
    o.stdout.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&id)).then(|| f.last().copied().unwrap_or("").to_string())
    })
}

#[test]
fn ctr_run_enclave_output_env_and_status() {
    let c = containerd();
    let id = unique("rune-enc");
    let o = c.ctr(&ctr_run_args(
        &c,
        &["--rm", "--env", "KEEP=me"],
        &id,
        &["sh", "-c", "echo hi; cat /proc/1/comm; env; exit 5"],
    ));
    assert_eq!(o.code(), 5, "{o}\n{}", c.log_tail());
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[..2], ["hi", "init-runelet"], "{o}");
    assert!(lines.contains(&"KEEP=me"), "{o}");
    assert!(!lines.iter().any(|l| l.starts_with("ENCLAVE_")), "{o}");
    let ls = c.ctr(&["containers", "ls", "-q"]).ok();
    assert_eq!(ls.stdout.trim(), "", "{ls}");
    let state_root = c.runtime_root().join(&c.namespace);
    assert!(!state_root.join(&id).exists(), "runtime state left");
    assert!(
        !state_root.join("@enclave").join(&id).exists(),
        "enclave state left"
    );
}

/// `ctr run --tty`: the payload gets the container's terminal.
#[test]
fn ctr_run_tty() {
    let c = containerd();
    let id = unique("rune-enc");
    let args = ctr_run_args(
        &c,
        &["--rm", "--tty"],
        &id,
        &["sh", "-c", "tty; echo tty-ok; exit 2"],
    );
    let (o, text) = run_in_pty(&mut c.ctr_cmd(&args), Duration::from_secs(60));
    assert_eq!(o.code(), 2, "{o}\n{}", c.log_tail());
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("tty-ok"), "{text:?}");
}

/// `ctr run -d`, `ctr task exec` (output, exit status), `ctr task kill` (TERM stops the
/// payload), `ctr task delete`, `ctr container delete`: nothing left.
#[test]
fn ctr_detached_exec_kill_delete() {
    let c = containerd();
    let id = unique("rune-enc");
    let o = c.ctr(&ctr_run_args(&c, &["-d"], &id, &["sleep", "1000"]));
    assert!(o.success(), "{o}\n{}", c.log_tail());
    let running = wait_for(Duration::from_secs(20), || {
        (task_status(&c, &id).as_deref() == Some("RUNNING")).then_some(())
    });
    assert!(running.is_some(), "{}", c.ctr(&["tasks", "ls"]));
    let state_root = c.runtime_root().join(&c.namespace);
    assert!(
        state_root.join("@enclave").join(&id).is_dir(),
        "no enclave state under the shim's --root {}",
        state_root.display()
    );

    let e = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo in-exec; exit 4",
    ]);
    assert_eq!(e.code(), 4, "{e}\n{}", c.log_tail());
    assert_eq!(e.stdout, "in-exec\n", "{e}");
    let e = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e2",
        &id,
        "echo",
        "a b",
        "",
        "c",
    ]);
    assert_eq!(e.stdout, "a b  c\n", "{e}");

    let start = Instant::now();
    c.ctr(&["tasks", "kill", &id]).ok();
    let stopped = wait_for(Duration::from_secs(10), || {
        (task_status(&c, &id).as_deref() == Some("STOPPED")).then_some(())
    });
    assert!(
        stopped.is_some(),
        "SIGTERM did not stop the task: {}",
        c.ctr(&["tasks", "ls"])
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    c.ctr(&["tasks", "delete", &id]).ok();
    c.ctr(&["containers", "delete", &id]).ok();
    let ls = c.ctr(&["containers", "ls", "-q"]).ok();
    assert_eq!(ls.stdout.trim(), "", "{ls}");
    assert!(!state_root.join(&id).exists(), "runtime state left");
    assert!(
        !state_root.join("@enclave").join(&id).exists(),
        "enclave state left"
    );
    assert!(
        cgroup_dirs_named(&id).is_empty(),
        "{:?}",
        cgroup_dirs_named(&id)
    );
}

/// The enclave settings are not in the env of a `ctr task exec` process (containerd hands rune
/// the container's process env, ENCLAVE_* included, in `exec --process`).
#[test]
fn ctr_exec_env_has_no_enclave_settings() {
    let c = containerd();
    let id = unique("rune-enc");
    let o = c.ctr(&ctr_run_args(&c, &["-d"], &id, &["sleep", "1000"]));
    assert!(o.success(), "{o}\n{}", c.log_tail());
    let e = c.ctr(&["tasks", "exec", "--exec-id", "env1", &id, "env"]);
    assert!(e.success(), "{e}");
    let leaked: Vec<&str> = e
        .stdout
        .lines()
        .filter(|l| l.starts_with("ENCLAVE_"))
        .collect();
    assert!(leaked.is_empty(), "ctr task exec process sees {leaked:?}");
}

/// `ctr task exec --detach` returns once the process started.
#[test]
fn ctr_exec_detached_returns_at_once() {
    let c = containerd();
    let id = unique("rune-enc");
    let o = c.ctr(&ctr_run_args(&c, &["-d"], &id, &["sleep", "1000"]));
    assert!(o.success(), "{o}\n{}", c.log_tail());
    let start = Instant::now();
    let e = c.ctr(&[
        "tasks",
        "exec",
        "--detach",
        "--exec-id",
        "d1",
        &id,
        "sh",
        "-c",
        "sleep 6",
    ]);
    let took = start.elapsed();
    assert!(e.success(), "{e}\n{}", c.log_tail());
    assert!(
        took < Duration::from_secs(4),
        "ctr task exec --detach took {took:?}: it waited for the process (sleep 6)"
    );
}
