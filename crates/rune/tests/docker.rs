//! rune as a docker runtime: a private dockerd started with
//! `--add-runtime rune=<rune>`; every container runs with `--runtime rune`.

mod common;

use std::time::Duration;

use common::*;

/// A private dockerd with the busybox image loaded.
fn dockerd() -> Dockerd {
    let d = Dockerd::start();
    d.load_busybox();
    d
}

/// `docker run --rm --runtime rune --network none [opts] IMAGE cmd...`
fn run_args<'a>(opts: &[&'a str], cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--rm", "--runtime", "rune", "--network", "none"];
    v.extend_from_slice(opts);
    v.push(IMAGE_REF);
    v.extend_from_slice(cmd);
    v
}

#[test]
fn docker_run_echo() {
    let d = dockerd();
    let o = d.docker(&run_args(&[], &["echo", "hello"]));
    assert!(o.success(), "{o}\n{}", d.log_tail());
    assert_eq!(o.stdout, "hello\n", "{o}");
    // --rm: nothing left.
    let ps = d.docker(&["ps", "-aq"]).ok();
    assert_eq!(ps.stdout.trim(), "", "{ps}");
}

#[test]
fn docker_run_exit_status() {
    let d = dockerd();
    let o = d.docker(&run_args(
        &[],
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
    ));
    assert_eq!(o.code(), 7, "{o}\n{}", d.log_tail());
    assert_eq!(o.stdout, "out\n", "{o}");
    assert!(o.stderr.lines().any(|l| l == "err"), "{o}");
}

#[test]
fn docker_detached_exec_stop_rm() {
    let d = dockerd();
    let name = unique("rune-dk");
    let o = d.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--runtime",
        "rune",
        "--network",
        "none",
        IMAGE_REF,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    assert!(o.success(), "{o}\n{}", d.log_tail());
    let running = d
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.HostConfig.Runtime}}",
            &name,
        ])
        .ok();
    assert_eq!(running.stdout.trim(), "true rune", "{running}");
    // The runtime under test is what dockerd registered as `rune`...
    let runtimes = d.docker(&["info", "--format", "{{json .Runtimes}}"]).ok();
    assert_eq!(
        runtimes.json()["rune"]["path"].as_str(),
        Some(&*rune_bin().to_string_lossy()),
        "{runtimes}"
    );
    // ...and it keeps the container's state under the --root dockerd gives
    // it (<exec-root>/runtime-<name>/moby; 20.10 uses runtime-runc for all).
    let full_id = d
        .docker(&["inspect", "-f", "{{.Id}}", &name])
        .ok()
        .stdout
        .trim()
        .to_string();
    let state_dirs = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d.dir.join("exec"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("runtime-"))
                    .map(|e| e.path().join("moby").join(&full_id))
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        !state_dirs().is_empty(),
        "no runtime state for {full_id} under {}/exec",
        d.dir.path().display()
    );

    let e = d.docker(&["exec", &name, "sh", "-c", "echo in-exec; exit 3"]);
    assert_eq!(e.code(), 3, "{e}\n{}", d.log_tail());
    assert_eq!(e.stdout, "in-exec\n", "{e}");
    let e = d
        .docker(&[
            "exec",
            "-e",
            "X=y z",
            "-w",
            "/tmp",
            &name,
            "sh",
            "-c",
            "echo \"$X\"; pwd",
        ])
        .ok();
    assert_eq!(e.stdout, "y z\n/tmp\n", "{e}");

    let top = d.docker(&["top", &name]).ok();
    assert!(top.stdout.contains("sh -c"), "{top}");

    let started = std::time::Instant::now();
    d.docker(&["stop", "-t", "10", &name]).ok();
    // The TERM trap makes it stop quickly, with exit code 0.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        started.elapsed()
    );
    let st = d
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            &name,
        ])
        .ok();
    assert_eq!(st.stdout.trim(), "exited 0", "{st}");

    // Restart it and remove it while running.
    d.docker(&["start", &name]).ok();
    let st = d
        .docker(&["inspect", "-f", "{{.State.Running}}", &name])
        .ok();
    assert_eq!(st.stdout.trim(), "true", "{st}\n{}", d.log_tail());
    d.docker(&["rm", "-f", &name]).ok();
    let ps = d.docker(&["ps", "-aq"]).ok();
    assert_eq!(ps.stdout.trim(), "", "{ps}");
    assert!(
        state_dirs().is_empty(),
        "runtime state left: {:?}",
        state_dirs()
    );
    let cgroups = wait_for(Duration::from_secs(3), || {
        cgroup_dirs_named(&full_id).is_empty().then_some(())
    });
    assert!(
        cgroups.is_some(),
        "cgroups left: {:?}",
        cgroup_dirs_named(&full_id)
    );
}

#[test]
fn docker_run_interactive_stdin() {
    let d = dockerd();
    let input = b"line one\nline two\n".to_vec();
    let o = d.docker_stdin(&run_args(&["-i"], &["cat"]), &input);
    assert!(o.success(), "{o}\n{}", d.log_tail());
    assert_eq!(o.stdout.as_bytes(), &input[..], "{o}");
    let o = d.docker_stdin(&run_args(&["-i"], &["wc", "-l"]), &input);
    assert!(o.success(), "{o}");
    assert_eq!(o.stdout.trim(), "2", "{o}");
}

#[test]
fn docker_run_tty() {
    let d = dockerd();
    let mut cmd = d.docker_cmd(&run_args(
        &["-t"],
        &["sh", "-c", "tty; [ -t 0 ] && echo stdin-is-tty"],
    ));
    let (o, text) = run_in_pty(&mut cmd, Duration::from_secs(60));
    assert!(o.success(), "{o}\n{}", d.log_tail());
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "tty output is not a /dev/pts path: {text:?}"
    );
    assert!(lines.contains(&"stdin-is-tty"), "{text:?}");
}

#[test]
fn docker_run_memory_limit() {
    let d = dockerd();
    let o = d.docker(&run_args(
        &["--memory", "64m"],
        &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
    ));
    assert!(o.success(), "{o}\n{}", d.log_tail());
    assert_eq!(o.stdout.trim(), "67108864", "{o}");
}
