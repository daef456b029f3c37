//! containerd-shim-rune-v2 under a real (private) containerd 1.6, driven with ctr.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rune_test_support::*;

/// The shim binary under test (`RUNE_SHIM_TEST_SHIM` overrides it, e.g. with a release build
/// for the memory measurement).
fn shim_bin() -> PathBuf {
    match std::env::var_os("RUNE_SHIM_TEST_SHIM") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-rune-v2")),
    }
}

/// `RUNE_SHIM_TEST_RUNE`, else `rune` beside this build's shim, else built on the spot (cargo
/// builds only this package's binaries for its tests).
fn rune_bin() -> PathBuf {
    static RUNE: OnceLock<PathBuf> = OnceLock::new();
    RUNE.get_or_init(|| {
        if let Some(p) = std::env::var_os("RUNE_SHIM_TEST_RUNE").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let beside =
            PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-rune-v2")).with_file_name("rune");
        if beside.is_file() {
            return beside;
        }
        cargo_build_bin("rune", "rune", "shim-test-rune")
    })
    .clone()
}

fn binaries() -> Binaries {
    Binaries::new(shim_bin(), rune_bin())
}

fn containerd() -> Containerd {
    let c = Containerd::start(ContainerdOpts::default().binaries(binaries()));
    c.import_busybox();
    c
}

/// A long-running command that exits 0 on SIGTERM.
const LOOP: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM; while true; do sleep 0.1; done",
];

/// `ctr events` running in the background for the daemon.
struct EventLog(Spawned);

impl EventLog {
    fn start(c: &Containerd) -> EventLog {
        let ev = EventLog(Spawned::new(&mut c.ctr_cmd(&["events"])));
        std::thread::sleep(Duration::from_millis(300));
        ev
    }

    fn topics_for(&self, id: &str) -> Vec<String> {
        self.0
            .stdout_now()
            .lines()
            .filter(|l| l.contains(&format!("\"container_id\":\"{id}\"")))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
            .map(str::to_string)
            .collect()
    }

    #[track_caller]
    fn wait_topic(&self, id: &str, topic: &str) {
        let ok = wait_for(Duration::from_secs(10), || {
            self.topics_for(id).iter().any(|t| t == topic).then_some(())
        });
        assert!(
            ok.is_some(),
            "no {topic} event for {id}; got {:?}",
            self.topics_for(id)
        );
    }
}

#[test]
fn run_echo_and_exit_status() {
    let c = containerd();
    let id = unique("echo");
    let o = c.run(&["--rm"], &id, &["echo", "hi"]);
    assert!(o.success(), "{o}\n{}", c.log_tail());
    assert_eq!(o.stdout, "hi\n", "{o}");
    assert_eq!(c.ctr(&["containers", "ls", "-q"]).ok().stdout.trim(), "");
    assert!(!c.rune_state_exists(&id), "rune state left for {id}");

    let id2 = unique("exit");
    let o = c.run(
        &["--rm"],
        &id2,
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
    );
    assert_eq!(o.code(), 7, "{o}\n{}", c.log_tail());
    assert_eq!(o.stdout, "out\n", "{o}");
    assert!(o.stderr.contains("err"), "{o}");

    // Stdin reaches the process and ends with the client's input.
    let mut cmd = c.ctr_cmd(&[
        "run",
        "--runtime",
        RUNTIME,
        "--rm",
        IMAGE_REF,
        &unique("stdin"),
        "sh",
        "-c",
        "wc -c",
    ]);
    let input = fs::File::open("/etc/hostname").expect("open input");
    let expect = fs::metadata("/etc/hostname").expect("stat").len();
    cmd.stdin(input);
    let out = cmd.output().expect("ctr run with stdin");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expect.to_string()
    );

    // One log line per lifecycle event, with the container id.
    let log = c.log();
    for what in ["created", "started", "deleted"] {
        assert!(
            log.contains(&format!("container {id}: {what}")),
            "no {what} line for {id} in the log:\n{}",
            c.log_tail()
        );
    }
    assert!(
        log.contains(&format!("container {id2}: init process"))
            && log.contains("exited with status 7"),
        "{}",
        c.log_tail()
    );
}

#[test]
fn detached_exec_ps_pause_metrics_kill_delete() {
    let c = containerd();
    let events = EventLog::start(&c);
    let id = unique("det");
    let o = c.run(&["-d"], &id, LOOP);
    assert!(o.success(), "{o}\n{}", c.log_tail());
    c.wait_status(&id, "RUNNING");

    // exec: output and exit status.
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo from-exec; exit 5",
    ]);
    assert_eq!(o.code(), 5, "{o}\n{}", c.log_tail());
    assert_eq!(o.stdout, "from-exec\n", "{o}");
    events.wait_topic(&id, "/tasks/exec-added");
    events.wait_topic(&id, "/tasks/exec-started");

    // A detached exec shows in ps with its exec id.
    c.ctr(&["task", "exec", "-d", "--exec-id", "e2", &id, "sleep", "300"])
        .ok();
    let ps = wait_for(Duration::from_secs(10), || {
        let o = c.ctr(&["task", "ps", &id]);
        (o.success() && o.stdout.contains("e2")).then_some(o)
    })
    .unwrap_or_else(|| panic!("ps never showed e2: {:?}", c.ctr(&["task", "ps", &id])));
    assert!(ps.stdout.lines().count() >= 3, "{ps}");
    // Killing the exec ends it; it is then reported as finished.
    c.ctr(&["task", "kill", "--exec-id", "e2", "-s", "SIGKILL", &id])
        .ok();

    // pause / resume
    c.ctr(&["task", "pause", &id]).ok();
    assert_eq!(c.task_status(&id).as_deref(), Some("PAUSED"));
    events.wait_topic(&id, "/tasks/paused");
    c.ctr(&["task", "resume", &id]).ok();
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
    events.wait_topic(&id, "/tasks/resumed");

    // metrics (cgroup v1 on this host)
    let m = c.ctr(&["task", "metrics", &id]).ok();
    assert!(m.stdout.contains("pids.current"), "{m}");
    assert!(
        m.stdout.contains("memory.usage_in_bytes") || m.stdout.contains("memory.usage"),
        "{m}"
    );

    // kill, wait, delete
    c.ctr(&["task", "kill", &id]).ok();
    c.wait_status(&id, "STOPPED");
    events.wait_topic(&id, "/tasks/exit");
    // Killing a stopped task is NotFound, as with the runc shim.
    let again = c.ctr(&["task", "kill", &id]);
    assert!(!again.success(), "{again}");
    assert!(again.stderr.contains("not found"), "{again}");
    let bundle = c.bundle(&id);
    c.ctr(&["task", "delete", &id]).ok();
    events.wait_topic(&id, "/tasks/delete");
    assert!(c.task_status(&id).is_none());
    assert!(!c.rune_state_exists(&id), "rune state left for {id}");
    let rootfs = bundle.join("rootfs").to_string_lossy().into_owned();
    assert!(
        c.mounts_matching(&rootfs).is_empty(),
        "rootfs still mounted: {:?}",
        c.mounts_matching(&rootfs)
    );
    c.ctr(&["containers", "rm", &id]).ok();
    let topics = events.topics_for(&id);
    for t in ["/tasks/create", "/tasks/start"] {
        assert!(topics.iter().any(|x| x == t), "no {t}: {topics:?}");
    }
    // Order: create, start ... exit, delete.
    let pos = |t: &str| topics.iter().position(|x| x == t).unwrap_or(usize::MAX);
    assert!(pos("/tasks/create") < pos("/tasks/start"), "{topics:?}");
    assert!(pos("/tasks/start") < pos("/tasks/delete"), "{topics:?}");
}

#[test]
fn terminal_run_and_exec() {
    let c = containerd();
    let id = unique("tty");
    let ctr = describe(&c.ctr_cmd(&[
        "run",
        "--runtime",
        RUNTIME,
        "-t",
        "--rm",
        IMAGE_REF,
        &id,
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo tty-ok-$((6*7)); exit 3",
    ]));
    let o = run_cmd(
        Command::new("script").args(["-qec", &ctr, "/dev/null"]),
        Duration::from_secs(60),
    );
    assert_eq!(o.code(), 3, "{o}\n{}", c.log_tail());
    assert!(o.stdout.contains("tty-ok-42"), "{o}");

    // An interactive shell fed through the pty.
    let id2 = unique("tty");
    c.run(&["-d"], &id2, LOOP).ok();
    c.wait_status(&id2, "RUNNING");
    let exec = describe(&c.ctr_cmd(&["task", "exec", "-t", "--exec-id", "t1", &id2, "sh"]));
    let o = run_cmd(
        Command::new("sh").args([
            "-c",
            &format!(
                "(sleep 1; printf 'echo in-pty-$((7*6))\\nexit 4\\n') | script -qec \"{}\" /dev/null",
                exec.replace('"', "\\\"")
            ),
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(o.code(), 4, "{o}\n{}", c.log_tail());
    assert!(o.stdout.contains("in-pty-42"), "{o}");
}

#[test]
fn bogus_carrier_fails_cleanly_and_pod_shares_one_shim() {
    let c = containerd();
    let pod = unique("pod");
    let group = format!("io.kubernetes.cri.sandbox-id={pod}");
    let a = unique("pa");
    let b = unique("pb");
    c.run(&["-d", "--annotation", &group], &a, LOOP).ok();
    c.run(&["-d", "--annotation", &group], &b, LOOP).ok();
    c.wait_status(&a, "RUNNING");
    c.wait_status(&b, "RUNNING");
    let shim_a = c.shim_of(&a).expect("shim of a");
    assert_eq!(
        c.shim_of(&b),
        Some(shim_a),
        "pod members on different shims"
    );
    assert_eq!(
        c.rune_shims().len(),
        1,
        "one shim per pod: {:?}",
        c.rune_shims()
    );

    // A container asking for an unknown carrier fails its Create only.
    let bad = unique("bad");
    let o = c.run(
        &[
            "--rm",
            "--annotation",
            &group,
            "--env",
            "RUNE_CARRIER=bogus",
        ],
        &bad,
        &["echo", "never"],
    );
    assert!(!o.success(), "{o}");
    assert!(o.stderr.contains("unknown carrier \"bogus\""), "{o}");
    assert!(!o.stdout.contains("never"), "{o}");
    let _ = c.ctr(&["containers", "rm", &bad]);
    // The pod's shim is still up and serves the pod.
    assert!(alive(shim_a), "the pod's shim died");
    let o = c.ctr(&["task", "exec", "--exec-id", "x", &a, "echo", "still-here"]);
    assert_eq!(o.stdout, "still-here\n", "{o}\n{}", c.log_tail());

    // An empty RUNE_CARRIER is a normal container.
    let empty = unique("empty");
    let o = c.run(
        &["--rm", "--env", "RUNE_CARRIER="],
        &empty,
        &["echo", "plain"],
    );
    assert_eq!(o.stdout, "plain\n", "{o}\n{}", c.log_tail());

    // Delete one member: the shim stays for the other; delete both: it goes.
    c.ctr(&["task", "kill", &a]).ok();
    c.wait_status(&a, "STOPPED");
    c.ctr(&["task", "delete", &a]).ok();
    assert!(alive(shim_a), "shim left while b runs");
    c.ctr(&["task", "exec", "--exec-id", "y", &b, "true"]).ok();
    c.ctr(&["task", "kill", &b]).ok();
    c.wait_status(&b, "STOPPED");
    c.ctr(&["task", "delete", &b]).ok();
    let gone = wait_for(Duration::from_secs(10), || (!alive(shim_a)).then_some(()));
    assert!(gone.is_some(), "shim still running after its pod is gone");
}

#[test]
fn config_file_invalid_then_valid() {
    let dir = TempDir::new("shimcfg");
    let cfg = dir.join("config.toml");
    fs::write(&cfg, "log_level = \"loud\"\n").expect("write config");
    let c = Containerd::start(
        ContainerdOpts::default()
            .binaries(binaries())
            .shim_config(&cfg),
    );
    c.import_busybox();
    let id = unique("cfg");
    let o = c.run(&["--rm"], &id, &["echo", "hi"]);
    assert!(!o.success(), "{o}");
    assert!(o.stderr.contains("invalid shim config"), "{o}");
    let _ = c.ctr(&["containers", "rm", &id]);

    fs::write(
        &cfg,
        "log_level = \"debug\"\n[containerd]\nsocket = \"/run/containerd/containerd.sock\"\n",
    )
    .expect("write config");
    let id2 = unique("cfg");
    let o = c.run(&["--rm"], &id2, &["echo", "hi"]);
    assert_eq!(o.stdout, "hi\n", "{o}\n{}", c.log_tail());
    assert!(
        c.log().contains(&format!("create {id2}: bundle")),
        "no debug line with log_level = debug:\n{}",
        c.log_tail()
    );
}

#[test]
fn shim_sigkill_then_delete_cleans_up() {
    let c = containerd();
    let id = unique("kill9");
    c.run(&["-d"], &id, &["sleep", "1000"]).ok();
    c.wait_status(&id, "RUNNING");
    let shim = c.shim_of(&id).expect("shim pid");
    let bundle = c.bundle(&id);
    let init: i32 = fs::read_to_string(bundle.join("init.pid"))
        .expect("init.pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(init));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill shim");
    // containerd notices, runs `containerd-shim-rune-v2 delete` (rune delete --force, unmount).
    let _ = wait_for(Duration::from_secs(15), || {
        c.task_status(&id).is_none().then_some(())
    });
    let o = c.ctr(&["task", "delete", &id]);
    assert!(
        o.success() || o.stderr.contains("not found"),
        "{o}\n{}",
        c.log_tail()
    );
    assert!(c.task_status(&id).is_none(), "task still listed");
    let dead = wait_for(Duration::from_secs(10), || (!alive(init)).then_some(()));
    assert!(dead.is_some(), "container process {init} survived");
    assert!(!c.rune_state_exists(&id), "rune state left for {id}");
    let rootfs = bundle.join("rootfs").to_string_lossy().into_owned();
    assert!(
        c.mounts_matching(&rootfs).is_empty(),
        "rootfs still mounted"
    );
    c.ctr(&["containers", "rm", &id]).ok();
    assert!(
        c.log().contains("cleaning up after shim disconnected"),
        "{}",
        c.log_tail()
    );
}

#[test]
fn containerd_restart_keeps_container_manageable() {
    let mut c = containerd();
    let id = unique("restart");
    c.run(&["-d"], &id, LOOP).ok();
    c.wait_status(&id, "RUNNING");
    let shim = c.shim_of(&id).expect("shim pid");
    c.restart();
    assert!(alive(shim), "shim died with containerd");
    c.wait_status(&id, "RUNNING");
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "r1",
        &id,
        "echo",
        "after-restart",
    ]);
    assert_eq!(o.stdout, "after-restart\n", "{o}\n{}", c.log_tail());
    c.ctr(&["task", "pause", &id]).ok();
    c.ctr(&["task", "resume", &id]).ok();
    c.ctr(&["task", "kill", &id]).ok();
    c.wait_status(&id, "STOPPED");
    c.ctr(&["task", "delete", &id]).ok();
    c.ctr(&["containers", "rm", &id]).ok();
    let gone = wait_for(Duration::from_secs(10), || (!alive(shim)).then_some(()));
    assert!(gone.is_some(), "shim still running");
}

#[test]
fn oom_event() {
    let c = containerd();
    let events = EventLog::start(&c);
    let id = unique("oom");
    let o = c.run(
        &["--rm", "--memory-limit", "16777216"],
        &id,
        &[
            "sh",
            "-c",
            "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    assert_eq!(o.code(), 137, "{o}\n{}", c.log_tail());
    events.wait_topic(&id, "/tasks/oom");
}

/// Resident memory of the shim per running container, rune shim vs containerd-shim-runc-v2
/// (one container per shim, as `ctr run -d` gives). Prints the numbers.
#[test]
fn shim_memory_vs_runc() {
    let c = containerd();
    let n = 3;
    let mut rune = Vec::new();
    let mut runc = Vec::new();
    for i in 0..n {
        let a = unique(&format!("mr{i}"));
        c.run(&["-d"], &a, &["sleep", "1000"]).ok();
        let b = unique(&format!("mc{i}"));
        let o = c.ctr(&[
            "run",
            "--runtime",
            "io.containerd.runc.v2",
            "-d",
            IMAGE_REF,
            &b,
            "sleep",
            "1000",
        ]);
        assert!(o.success(), "{o}");
        rune.push(a);
        runc.push(b);
    }
    // Let them settle.
    std::thread::sleep(Duration::from_secs(2));
    let measure = |ids: &[String]| {
        ids.iter()
            .map(|id| {
                let pid = c.shim_of(id).unwrap_or_else(|| panic!("no shim for {id}"));
                memory_kib(pid)
            })
            .collect::<Vec<_>>()
    };
    let a = measure(&rune);
    let b = measure(&runc);
    let avg = |v: &[(u64, u64)]| {
        (
            v.iter().map(|x| x.0).sum::<u64>() / v.len() as u64,
            v.iter().map(|x| x.1).sum::<u64>() / v.len() as u64,
        )
    };
    let (ra, pa) = avg(&a);
    let (rb, pb) = avg(&b);
    eprintln!(
        "shim memory per running container (KiB, avg of {n}): \
         containerd-shim-rune-v2 ({}) RSS {ra} PSS {pa}; containerd-shim-runc-v2 RSS {rb} PSS {pb}",
        shim_bin().display()
    );
    // Grouped: three containers of one pod on one shim.
    let pod = format!("io.containerd.runc.v2.group={}", unique("g"));
    let mut grouped = Vec::new();
    for i in 0..n {
        let id = unique(&format!("mg{i}"));
        c.run(&["-d", "--annotation", &pod], &id, &["sleep", "1000"])
            .ok();
        grouped.push(id);
    }
    std::thread::sleep(Duration::from_secs(1));
    let pid = c.shim_of(&grouped[0]).expect("group shim");
    let (gr, gp) = memory_kib(pid);
    eprintln!(
        "one rune shim for a pod of {n} containers: RSS {gr} KiB PSS {gp} KiB ({} KiB RSS per container)",
        gr / n as u64
    );
    assert!(
        ra < rb,
        "rune shim RSS {ra} KiB not below runc shim {rb} KiB"
    );
}

/// The RPCs ctr 1.6 has no command for, straight over the shim's TTRPC socket.
#[test]
fn direct_ttrpc_update_stats_checkpoint_connect() {
    use containerd_shim::protos::protobuf::well_known_types::any::Any;
    use containerd_shim::protos::protobuf::{Message, MessageField};
    use containerd_shim::protos::shim::shim;
    use containerd_shim::protos::ttrpc::{self, context};
    use containerd_shim::protos::TaskClient;

    let c = containerd();
    let id = unique("direct");
    c.run(&["-d"], &id, LOOP).ok();
    c.wait_status(&id, "RUNNING");
    let client =
        TaskClient::new(ttrpc::Client::connect(&c.shim_address(&id)).expect("connect to the shim"));
    let ctx = || context::with_timeout(10_000_000_000);
    let code = |e: ttrpc::Error| match e {
        ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a status: {other:?}"),
    };

    // Connect: our pid and the task's.
    let conn = client
        .connect(
            ctx(),
            &shim::ConnectRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("connect");
    let init: u32 = fs::read_to_string(c.bundle(&id).join("init.pid"))
        .expect("init.pid")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(conn.task_pid, init);
    assert_eq!(Some(conn.shim_pid as i32), c.shim_of(&id));

    // Update: the memory limit lands in the container's cgroup.
    let limit: u64 = 48 * 1024 * 1024;
    let resources = format!("{{\"memory\":{{\"limit\":{limit}}}}}");
    client
        .update(
            ctx(),
            &shim::UpdateTaskRequest {
                id: id.clone(),
                resources: MessageField::some(Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
                        .into(),
                    value: resources.into_bytes(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("update");
    let cgroup = fs::read_to_string(format!("/proc/{init}/cgroup")).expect("cgroup");
    let mem = cgroup
        .lines()
        .find_map(|l| {
            let parts: Vec<&str> = l.splitn(3, ':').collect();
            (parts.len() == 3 && parts[1].split(',').any(|c| c == "memory"))
                .then(|| parts[2].to_string())
        })
        .expect("memory cgroup");
    let got = fs::read_to_string(format!("/sys/fs/cgroup/memory{mem}/memory.limit_in_bytes"))
        .expect("memory.limit_in_bytes");
    assert_eq!(got.trim(), limit.to_string());

    // Stats: cgroup v1 metrics on this host.
    let stats = client
        .stats(
            ctx(),
            &shim::StatsRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("stats");
    let any = stats.stats.into_option().expect("stats data");
    assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    let m = containerd_shim::protos::cgroups::metrics::Metrics::parse_from_bytes(&any.value)
        .expect("metrics decode");
    assert!(m.pids.current >= 1, "{m:?}");
    assert_eq!(m.memory.usage.limit, limit);

    // Checkpoint is not supported, clearly.
    let err = client
        .checkpoint(
            ctx(),
            &shim::CheckpointTaskRequest {
                id: id.clone(),
                path: "/tmp/nowhere".into(),
                ..Default::default()
            },
        )
        .expect_err("checkpoint");
    let (status, message) = code(err);
    assert_eq!(status, ttrpc::Code::UNIMPLEMENTED);
    assert!(message.contains("not supported"), "{message}");

    // Unknown ids are NotFound.
    let err = client
        .state(
            ctx(),
            &shim::StateRequest {
                id: "nope".into(),
                ..Default::default()
            },
        )
        .expect_err("state of nothing");
    assert_eq!(code(err).0, ttrpc::Code::NOT_FOUND);
    let err = client
        .close_io(
            ctx(),
            &shim::CloseIORequest {
                id: id.clone(),
                exec_id: "nope".into(),
                stdin: true,
                ..Default::default()
            },
        )
        .expect_err("close_io of nothing");
    assert_eq!(code(err).0, ttrpc::Code::NOT_FOUND);

    // Wait returns once the task is killed.
    client
        .kill(
            ctx(),
            &shim::KillRequest {
                id: id.clone(),
                signal: 9,
                ..Default::default()
            },
        )
        .expect("kill");
    let w = client
        .wait(
            ctx(),
            &shim::WaitRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("wait");
    assert_eq!(w.exit_status, 137);
    assert!(w.exited_at.is_some());
    drop(client);
    c.ctr(&["task", "delete", &id]).ok();
}
