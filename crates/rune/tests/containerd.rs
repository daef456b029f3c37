//! rune under containerd (io.containerd.runc.v2 shim with
//! `--runc-binary <rune>`), driven with ctr against a private containerd.

mod common;

use std::time::Duration;

use common::*;

fn containerd() -> Containerd {
    let c = Containerd::start();
    c.import_busybox();
    c
}

/// `ctr run --runc-binary <rune> --runc-root <dir> [opts] IMAGE ID cmd...`
fn run_args(c: &Containerd, opts: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "run".into(),
        "--runc-binary".into(),
        rune_bin().to_string_lossy().into_owned(),
        "--runc-root".into(),
        c.runtime_root().to_string_lossy().into_owned(),
    ];
    v.extend(opts.iter().map(|s| s.to_string()));
    v.push(IMAGE_REF.into());
    v.push(id.into());
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

#[test]
fn ctr_run_rm_echo() {
    let c = containerd();
    let id = unique("rune-ctr");
    let o = c.ctr(&run_args(&c, &["--rm"], &id, &["echo", "hi"]));
    assert!(o.success(), "{o}\n{}", c.log_tail());
    assert_eq!(o.stdout, "hi\n", "{o}");
    // --rm removed the container and the task.
    let ls = c.ctr(&["containers", "ls", "-q"]).ok();
    assert_eq!(ls.stdout.trim(), "", "{ls}");
    assert!(
        !c.runtime_root().join(&c.namespace).join(&id).exists(),
        "runtime state left"
    );
}

#[test]
fn ctr_run_exit_status() {
    let c = containerd();
    let id = unique("rune-ctr");
    let o = c.ctr(&run_args(&c, &["--rm"], &id, &["sh", "-c", "exit 7"]));
    assert_eq!(o.code(), 7, "{o}\n{}", c.log_tail());
}

#[test]
fn ctr_detached_exec_ps_kill_delete() {
    let c = containerd();
    let id = unique("rune-ctr");
    let o = c.ctr(&run_args(
        &c,
        &["-d"],
        &id,
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ],
    ));
    assert!(o.success(), "{o}\n{}", c.log_tail());

    let running = wait_for(Duration::from_secs(10), || {
        let ls = c.ctr(&["tasks", "ls"]);
        ls.stdout
            .lines()
            .any(|l| l.starts_with(id.as_str()) && l.contains("RUNNING"))
            .then_some(())
    });
    assert!(
        running.is_some(),
        "task never RUNNING: {}",
        c.ctr(&["tasks", "ls"])
    );
    // The runtime under test keeps the task's state under --runc-root/<ns>/<id>.
    let state_dir = c.runtime_root().join(&c.namespace).join(&id);
    assert!(
        state_dir.is_dir(),
        "no runtime state at {}",
        state_dir.display()
    );

    let e = c.ctr(&["tasks", "exec", "--exec-id", "x", &id, "echo", "in-exec"]);
    assert!(e.success(), "{e}\n{}", c.log_tail());
    assert_eq!(e.stdout, "in-exec\n", "{e}");
    let e = c.ctr(&["tasks", "exec", "--exec-id", "y", &id, "sh", "-c", "exit 4"]);
    assert_eq!(e.code(), 4, "{e}");

    let ps = c.ctr(&["tasks", "ps", &id]).ok();
    let pids: Vec<&str> = ps
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!pids.is_empty(), "{ps}");
    let init_pid = c.ctr(&["tasks", "ls"]).ok();
    let init_pid = init_pid
        .stdout
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .expect("task pid");
    assert!(
        pids.contains(&init_pid.as_str()),
        "init {init_pid} not in ps: {ps}"
    );

    // SIGTERM (default) ends the trap loop; wait for it.
    c.ctr(&["tasks", "kill", &id]).ok();
    let stopped = wait_for(Duration::from_secs(15), || {
        let ls = c.ctr(&["tasks", "ls"]);
        ls.stdout
            .lines()
            .any(|l| l.starts_with(id.as_str()) && l.contains("STOPPED"))
            .then_some(())
    });
    assert!(
        stopped.is_some(),
        "task never STOPPED: {}\n{}",
        c.ctr(&["tasks", "ls"]),
        c.log_tail()
    );

    c.ctr(&["tasks", "delete", &id]).ok();
    c.ctr(&["containers", "delete", &id]).ok();
    let ls = c.ctr(&["containers", "ls", "-q"]).ok();
    assert_eq!(ls.stdout.trim(), "", "{ls}");
    assert!(
        !c.runtime_root().join(&c.namespace).join(&id).exists(),
        "runtime state left"
    );
    assert!(
        cgroup_dirs_named(&id).is_empty(),
        "cgroups left: {:?}",
        cgroup_dirs_named(&id)
    );
}

#[test]
fn ctr_run_tty() {
    let c = containerd();
    let id = unique("rune-ctr");
    let mut cmd = c.ctr_cmd(&run_args(
        &c,
        &["--rm", "-t"],
        &id,
        &["sh", "-c", "tty; exit 3"],
    ));
    let (o, text) = run_in_pty(&mut cmd, Duration::from_secs(60));
    assert_eq!(o.code(), 3, "{o}\n{}", c.log_tail());
    assert!(
        text.lines()
            .any(|l| l.trim_end_matches('\r').starts_with("/dev/pts/")),
        "not a pty: {text:?}"
    );
}
