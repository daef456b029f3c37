//! The rune CLI driven directly (runc 1.1 compatible surface).
//!
//! Run against the reference with `RUNE_TEST_BINARY=/usr/sbin/runc`.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A process that runs until SIGTERM (exits 0 on it) and prints `ready`.
const LONG_RUNNING: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done",
];

/// Create + start a long-running container and wait until it runs.
#[track_caller]
fn started(root: &Root, args: &[&str]) -> Bundle {
    let b = Bundle::new(root, args);
    root.run(&["create", "--bundle", &b.dir_str(), &b.id]).ok();
    root.run(&["start", &b.id]).ok();
    root.wait_status(&b.id, "running");
    b
}

#[test]
fn run_true_exits_zero() {
    let root = Root::new();
    let b = Bundle::new(&root, &["true"]);
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]);
    assert_eq!(o.code(), 0, "{o}");
    // A foreground run deletes the container when it exits.
    assert!(
        root.state(&b.id).is_none(),
        "container still exists after run"
    );
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn run_propagates_exit_status() {
    let root = Root::new();
    let b = Bundle::new(&root, &["sh", "-c", "exit 3"]);
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]);
    assert_eq!(o.code(), 3, "{o}");
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn run_killed_by_sigkill_gives_137() {
    let root = Root::new();
    let b = Bundle::new(&root, &["sleep", "1000"]);
    let run = root.spawn(&["run", "--bundle", &b.dir_str(), &b.id]);
    root.wait_status(&b.id, "running");
    root.run(&["kill", &b.id, "KILL"]).ok();
    let o = run.wait(Duration::from_secs(20));
    assert_eq!(o.code(), 137, "run of a SIGKILLed container: {o}");
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn run_of_instantly_exiting_container_never_hangs() {
    let root = Root::new();
    let b = Bundle::new(&root, &["true"]);
    let started = Instant::now();
    for i in 0..50 {
        let o = root.run_timeout(
            &["run", "--bundle", &b.dir_str(), &b.id],
            Duration::from_secs(20),
        );
        assert_eq!(o.code(), 0, "iteration {i}: {o}");
    }
    eprintln!("50 runs took {:?}", started.elapsed());
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn stdout_and_stderr_reach_the_caller() {
    let root = Root::new();
    let b = Bundle::new(&root, &["sh", "-c", "echo to-stdout; echo to-stderr >&2"]);
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]).ok();
    assert_eq!(o.stdout, "to-stdout\n", "{o}");
    assert!(o.stderr.lines().any(|l| l == "to-stderr"), "{o}");
}

#[test]
fn process_env_and_cwd_from_config() {
    let root = Root::new();
    let mut b = Bundle::new(&root, &["sh", "-c", "echo \"$GREETING\"; pwd; id -u"]);
    b.add_env("GREETING=hello world");
    b.edit(|c| {
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    let o = root.run(&["run", "--bundle", &b.dir_str(), &b.id]).ok();
    assert_eq!(o.stdout, "hello world\n/tmp\n1000\n", "{o}");
}

#[test]
fn create_start_state_kill_delete() {
    let root = Root::new();
    let mut b = Bundle::new(&root, LONG_RUNNING);
    b.set_annotation("org.example.rune-test", "annotated");
    let pid_file = b.dir().join("init.pid");
    let create = root
        .run(&[
            "create",
            "--bundle",
            &b.dir_str(),
            "--pid-file",
            &pid_file.to_string_lossy(),
            &b.id,
        ])
        .ok();
    assert!(
        create.stdout.is_empty(),
        "create printed on stdout: {create}"
    );

    let st = root.state(&b.id).expect("state after create");
    assert_eq!(st["id"], b.id.as_str(), "{st}");
    assert_eq!(st["status"], "created", "{st}");
    let pid = st["pid"].as_i64().expect("pid in state");
    assert!(pid > 0, "{st}");
    let bundle_in_state = st["bundle"].as_str().expect("bundle in state");
    assert_eq!(
        fs::canonicalize(bundle_in_state).expect("bundle path exists"),
        fs::canonicalize(b.dir()).expect("canonicalize"),
        "{st}"
    );
    assert!(
        st.get("ociVersion").is_some(),
        "state lacks ociVersion: {st}"
    );
    assert_eq!(
        st["annotations"]["org.example.rune-test"], "annotated",
        "state lacks the config's annotations: {st}"
    );
    let pid_text = fs::read_to_string(&pid_file).expect("--pid-file written");
    assert_eq!(
        pid_text.trim().parse::<i64>().ok(),
        Some(pid),
        "pid file {pid_text:?} vs {st}"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "init {pid} not alive"
    );

    root.run(&["start", &b.id]).ok();
    root.wait_status(&b.id, "running");
    assert_eq!(root.pid(&b.id), pid, "pid changed on start");
    // Starting twice is an error.
    root.run(&["start", &b.id]).fails();

    root.run(&["kill", &b.id, "KILL"]).ok();
    root.wait_status(&b.id, "stopped");
    root.run(&["delete", &b.id]).ok();
    assert!(root.state(&b.id).is_none(), "state works after delete");
    assert_nothing_left(&root, &b.id, b.dir());
}

/// As under runc, an ignored SIGHUP or SIGINT (rune started by nohup, say) is not passed on
/// to the workload; other ignored signals are.
#[test]
fn ignored_hup_and_int_are_not_inherited() {
    let root = Root::new();
    let b = Bundle::new(&root, &["sh", "-c", "cat /proc/self/status"]);
    let mut cmd = root.cmd(&["run", "--bundle", &b.dir_str(), &b.id]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGUSR2] {
                libc::signal(sig, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    let o = run_cmd(&mut cmd, None, CMD_TIMEOUT);
    assert_eq!(o.code(), 0, "{o}");
    let ignored = o
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).expect("SigIgn is hex"))
        .unwrap_or_else(|| panic!("no SigIgn line: {o}"));
    let bit = |sig: i32| 1u64 << (sig - 1);
    assert_eq!(
        ignored & bit(libc::SIGHUP),
        0,
        "SIGHUP ignored: {ignored:#x}"
    );
    assert_eq!(
        ignored & bit(libc::SIGINT),
        0,
        "SIGINT ignored: {ignored:#x}"
    );
    assert_ne!(
        ignored & bit(libc::SIGUSR2),
        0,
        "SIGUSR2 not ignored: {ignored:#x}"
    );
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn kill_accepts_signal_names_and_numbers() {
    let root = Root::new();
    let b = Bundle::new(
        &root,
        &[
            "sh",
            "-c",
            "trap 'echo got-usr1' USR1; trap 'echo got-hup' HUP; trap 'exit 0' TERM; echo ready; \
             while true; do sleep 0.1; done",
        ],
    );
    // create passes its stdio to the container: capture it in a file.
    let create = root.spawn(&["create", "--bundle", &b.dir_str(), &b.id]);
    let create_out = create.wait(CMD_TIMEOUT);
    assert!(create_out.success(), "{create_out}");
    root.run(&["start", &b.id]).ok();
    root.wait_status(&b.id, "running");
    // The container writes to the (now unlinked) file that was create's
    // stdout; read it through the init's fd 1.
    let pid = root.pid(&b.id);
    let out_path = format!("/proc/{pid}/fd/1");
    let count = |what: &str| {
        fs::read_to_string(&out_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == what)
            .count()
    };
    assert!(wait_for(Duration::from_secs(10), || (count("ready") == 1)
        .then_some(()))
    .is_some());

    for (n, sig) in ["USR1", "SIGUSR1", "10"].into_iter().enumerate() {
        root.run(&["kill", &b.id, sig]).ok();
        let expected_usr1 = n + 1;
        let got = wait_for(Duration::from_secs(10), || {
            (count("got-usr1") == expected_usr1).then_some(())
        });
        assert!(
            got.is_some(),
            "signal {sig} not delivered; output: {:?}",
            fs::read_to_string(&out_path)
        );
    }
    // One at a time: a standard signal still pending is not queued twice.
    for (n, sig) in ["HUP", "SIGHUP", "1"].into_iter().enumerate() {
        root.run(&["kill", &b.id, sig]).ok();
        let expected_hup = n + 1;
        let got = wait_for(Duration::from_secs(10), || {
            (count("got-hup") == expected_hup).then_some(())
        });
        assert!(
            got.is_some(),
            "signal {sig} not delivered; output: {:?}",
            fs::read_to_string(&out_path)
        );
    }
    assert_eq!(root.status(&b.id), "running");

    // Default signal is SIGTERM, which the trap turns into exit 0.
    root.run(&["kill", &b.id]).ok();
    root.wait_status(&b.id, "stopped");
    root.run(&["delete", &b.id]).ok();
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn kill_by_number_terminates() {
    let root = Root::new();
    let b = started(&root, &["sleep", "1000"]);
    root.run(&["kill", &b.id, "9"]).ok();
    root.wait_status(&b.id, "stopped");
    root.run(&["delete", &b.id]).ok();
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn kill_all_reaches_every_process() {
    let root = Root::new();
    // init ignores TERM; its children don't.
    let b = started(
        &root,
        &[
            "sh",
            "-c",
            "trap '' TERM; sleep 1000 & sleep 1001 & while true; do sleep 0.1; done",
        ],
    );
    let ps = wait_for(Duration::from_secs(10), || {
        let o = root.run(&["ps", "--format", "json", &b.id]).ok();
        let pids = o.json();
        (pids.as_array().map(|a| a.len()).unwrap_or(0) >= 3).then_some(pids)
    })
    .expect("container never had 3 processes");
    let pids: Vec<i64> = ps
        .as_array()
        .expect("array")
        .iter()
        .filter_map(Value::as_i64)
        .collect();

    root.run(&["kill", "--all", &b.id, "KILL"]).ok();
    root.wait_status(&b.id, "stopped");
    let alive = wait_for(Duration::from_secs(5), || {
        let alive: Vec<_> = pids
            .iter()
            .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        alive.is_empty().then_some(())
    });
    assert!(alive.is_some(), "processes {pids:?} survived kill --all");
    root.run(&["delete", &b.id]).ok();
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn list_table_json_and_quiet() {
    let root = Root::new();
    let a = Bundle::new(&root, &["sleep", "1000"]);
    let b = Bundle::new(&root, &["sleep", "1000"]);
    root.run(&["create", "--bundle", &a.dir_str(), &a.id]).ok();
    root.run(&["create", "--bundle", &b.dir_str(), &b.id]).ok();
    root.run(&["start", &b.id]).ok();
    root.wait_status(&b.id, "running");

    let table = root.run(&["list"]).ok();
    let mut lines = table.stdout.lines();
    let header = lines.next().expect("table has a header");
    for col in ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"] {
        assert!(header.contains(col), "header lacks {col}: {table}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{table}");
    let row_a = rows
        .iter()
        .find(|r| r.split_whitespace().next() == Some(a.id.as_str()));
    let row_b = rows
        .iter()
        .find(|r| r.split_whitespace().next() == Some(b.id.as_str()));
    assert!(row_a.expect("row for a").contains("created"), "{table}");
    assert!(row_b.expect("row for b").contains("running"), "{table}");

    let json = root.run(&["list", "--format", "json"]).ok();
    let arr = json.json();
    let arr = arr
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {json}"));
    assert_eq!(arr.len(), 2, "{json}");
    for (bundle, status) in [(&a, "created"), (&b, "running")] {
        let item = arr
            .iter()
            .find(|i| i["id"] == bundle.id.as_str())
            .unwrap_or_else(|| panic!("{} missing: {json}", bundle.id));
        assert_eq!(item["status"], status, "{json}");
        assert!(item["pid"].as_i64().unwrap_or(0) > 0, "{json}");
        assert!(item["bundle"].is_string(), "{json}");
    }

    let quiet = root.run(&["list", "-q"]).ok();
    let mut ids: Vec<&str> = quiet.stdout.lines().collect();
    ids.sort();
    let mut want = vec![a.id.as_str(), b.id.as_str()];
    want.sort();
    assert_eq!(ids, want, "{quiet}");
}

#[test]
fn list_of_empty_root() {
    let root = Root::new();
    let o = root.run(&["list", "--format", "json"]).ok();
    let v = o.json();
    assert!(
        v.is_null() || v.as_array().map(|a| a.is_empty()).unwrap_or(false),
        "empty root lists something: {o}"
    );
    let o = root.run(&["list", "-q"]).ok();
    assert_eq!(o.stdout.trim(), "", "{o}");
}

#[test]
fn ps_json_contains_init_pid() {
    let root = Root::new();
    let b = started(&root, &["sleep", "1000"]);
    let pid = root.pid(&b.id);
    let o = root.run(&["ps", "--format", "json", &b.id]).ok();
    let pids = o.json();
    let pids = pids
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {o}"));
    assert!(
        pids.iter().any(|p| p.as_i64() == Some(pid)),
        "init {pid} missing: {o}"
    );
    let table = root.run(&["ps", &b.id]).ok();
    assert!(table.stdout.contains("PID"), "{table}");
    assert!(table.stdout.contains(&pid.to_string()), "{table}");
}

#[test]
fn exec_env_cwd_user_args_and_status() {
    let root = Root::new();
    let b = started(&root, LONG_RUNNING);

    let o = root
        .run(&[
            "exec",
            "-e",
            "FOO=bar baz",
            &b.id,
            "sh",
            "-c",
            "echo \"$FOO\"",
        ])
        .ok();
    assert_eq!(o.stdout, "bar baz\n", "{o}");

    let o = root.run(&["exec", "--cwd", "/tmp", &b.id, "pwd"]).ok();
    assert_eq!(o.stdout, "/tmp\n", "{o}");

    let o = root.run(&["exec", "-u", "1000:1000", &b.id, "id"]).ok();
    assert!(
        o.stdout.contains("uid=1000") && o.stdout.contains("gid=1000"),
        "{o}"
    );
    let o = root.run(&["exec", "-u", "1000", &b.id, "id", "-u"]).ok();
    assert_eq!(o.stdout, "1000\n", "{o}");

    let o = root.run(&["exec", &b.id, "echo", "a b  c", "d"]).ok();
    assert_eq!(o.stdout, "a b  c d\n", "{o}");

    let o = root.run(&["exec", &b.id, "sh", "-c", "echo err >&2; exit 5"]);
    assert_eq!(o.code(), 5, "{o}");
    assert!(o.stderr.lines().any(|l| l == "err"), "{o}");

    // The exec'd processes are gone, init is still running.
    assert_eq!(root.status(&b.id), "running");
}

#[test]
fn exec_process_file() {
    let root = Root::new();
    let b = started(&root, LONG_RUNNING);
    let process = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo \"$FROM_FILE\"; pwd; exit 4"],
        "env": ["PATH=/bin:/usr/bin", "FROM_FILE=yes it is"],
        "cwd": "/tmp"
    });
    let path = b.dir().join("process.json");
    fs::write(&path, process.to_string()).expect("write process.json");
    let o = root.run(&["exec", "--process", &path.to_string_lossy(), &b.id]);
    assert_eq!(o.code(), 4, "{o}");
    assert_eq!(o.stdout, "yes it is\n/tmp\n", "{o}");
}

#[test]
fn exec_detached() {
    let root = Root::new();
    let b = started(&root, LONG_RUNNING);
    let t = Instant::now();
    let o = root.run(&["exec", "-d", &b.id, "sleep", "1000"]).ok();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "exec -d did not detach"
    );
    assert!(o.stdout.is_empty(), "{o}");
    let found = wait_for(Duration::from_secs(10), || {
        let o = root.run(&["exec", &b.id, "ps"]).ok();
        o.stdout.contains("sleep 1000").then_some(())
    });
    assert!(
        found.is_some(),
        "detached process not running in the container"
    );
    let ps = root.run(&["ps", "--format", "json", &b.id]).ok();
    assert!(
        ps.json().as_array().map(|a| a.len()).unwrap_or(0) >= 2,
        "{ps}"
    );
}

/// freezer.state of the v1 freezer cgroup of `pid`.
fn freezer_state(pid: i64) -> String {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    let path = cg
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrl.split(',')
                .any(|c| c == "freezer")
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no freezer cgroup for {pid}: {cg}"));
    fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state"))
        .unwrap_or_else(|e| panic!("freezer.state of {path}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn pause_and_resume() {
    let root = Root::new();
    let b = started(&root, &["sleep", "1000"]);
    root.run(&["pause", &b.id]).ok();
    assert_eq!(root.status(&b.id), "paused");
    let pid = root.pid(&b.id);
    assert_eq!(freezer_state(pid), "FROZEN");
    root.run(&["resume", &b.id]).ok();
    assert_eq!(root.status(&b.id), "running");
    assert_eq!(freezer_state(pid), "THAWED");
    // Still works after resume.
    let o = root.run(&["exec", &b.id, "echo", "alive"]).ok();
    assert_eq!(o.stdout, "alive\n");
}

#[test]
fn events_stats_prints_memory_json() {
    let root = Root::new();
    let b = started(&root, &["sleep", "1000"]);
    let ev = root.spawn(&["events", "--stats", &b.id]);
    let line = wait_for(Duration::from_secs(10), || {
        let out = ev.stdout_now();
        out.lines()
            .next()
            .filter(|_| out.contains('\n'))
            .map(str::to_string)
    });
    drop(ev); // kills it if still running
    let line = line.expect("events --stats printed no line within 10 s");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["type"], "stats", "{line}");
    assert_eq!(v["id"], b.id.as_str(), "{line}");
    let mem = &v["data"]["memory"];
    assert!(
        mem.is_object() && !mem.as_object().map(|m| m.is_empty()).unwrap_or(true),
        "no memory data: {line}"
    );
}

/// `events --stats` output follows runc's `types.Stats` schema
/// (runc/types/events.go): `memory.usage.usage`, `cpu.usage.total`,
/// `pids.current`.
#[test]
fn events_stats_uses_runc_schema() {
    let root = Root::new();
    let b = started(&root, &["sleep", "1000"]);
    let ev = root.spawn(&["events", "--stats", &b.id]);
    let line = wait_for(Duration::from_secs(10), || {
        let out = ev.stdout_now();
        out.lines()
            .next()
            .filter(|_| out.contains('\n'))
            .map(str::to_string)
    });
    drop(ev);
    let line = line.expect("events --stats printed no line within 10 s");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let d = &v["data"];
    assert!(
        d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "no data.memory.usage.usage: {line}"
    );
    assert!(
        d["memory"]["usage"]["limit"].as_u64().unwrap_or(0) > 0,
        "no data.memory.usage.limit: {line}"
    );
    assert!(
        d["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "no data.cpu.usage.total: {line}"
    );
    assert!(
        d["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "no data.pids.current: {line}"
    );
}

#[test]
fn update_memory_limit() {
    let root = Root::new();
    let b = started(&root, LONG_RUNNING);
    let read_limit = || {
        root.run(&[
            "exec",
            &b.id,
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ])
        .ok()
        .stdout
        .trim()
        .to_string()
    };
    root.run(&["update", "--memory", "67108864", &b.id]).ok();
    assert_eq!(read_limit(), "67108864");

    let res = b.dir().join("resources.json");
    fs::write(&res, json!({"memory": {"limit": 100663296}}).to_string()).expect("write resources");
    root.run(&["update", "--resources", &res.to_string_lossy(), &b.id])
        .ok();
    assert_eq!(read_limit(), "100663296");

    root.run_stdin(
        &["update", "--resources", "-", &b.id],
        json!({"memory": {"limit": 134217728}})
            .to_string()
            .as_bytes(),
    )
    .ok();
    assert_eq!(read_limit(), "134217728");
}

#[test]
fn spec_writes_config_and_refuses_to_overwrite() {
    let dir = TempDir::new("spec");
    let mut cmd = std::process::Command::new(rune_bin());
    cmd.arg("spec").current_dir(dir.path());
    let o = run_cmd(&mut cmd, None, CMD_TIMEOUT).ok();
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("no config.json ({e}): {o}"));
    let c: Value = serde_json::from_str(&text).expect("config.json is JSON");
    assert!(
        c["ociVersion"]
            .as_str()
            .map(|v| v.starts_with("1."))
            .unwrap_or(false),
        "{c}"
    );
    assert_eq!(c["root"]["path"], "rootfs", "{c}");
    assert!(
        c["process"]["args"]
            .as_array()
            .map(|a| !a.is_empty())
            .unwrap_or(false),
        "{c}"
    );
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    for want in ["pid", "mount", "network", "ipc", "uts"] {
        assert!(ns.contains(&want), "spec lacks {want} namespace: {ns:?}");
    }

    // Does not overwrite.
    fs::write(&path, "{\"mine\": true}").expect("rewrite");
    let mut cmd = std::process::Command::new(rune_bin());
    cmd.arg("spec").current_dir(dir.path());
    let o = run_cmd(&mut cmd, None, CMD_TIMEOUT);
    let line = o.one_error_line();
    assert!(
        line.contains("config.json") || line.contains("exist"),
        "{o}"
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), "{\"mine\": true}");

    // --bundle writes elsewhere.
    let other = TempDir::new("spec-bundle");
    let mut cmd = std::process::Command::new(rune_bin());
    cmd.args(["spec", "--bundle"])
        .arg(other.path())
        .current_dir(dir.path());
    run_cmd(&mut cmd, None, CMD_TIMEOUT).ok();
    let c: Value = serde_json::from_str(
        &fs::read_to_string(other.join("config.json")).expect("spec --bundle wrote config.json"),
    )
    .expect("JSON");
    assert_eq!(c["root"]["path"], "rootfs");
}

#[test]
fn spec_rootless() {
    let dir = TempDir::new("spec-rootless");
    let mut cmd = std::process::Command::new(rune_bin());
    cmd.args(["spec", "--rootless"]).current_dir(dir.path());
    run_cmd(&mut cmd, None, CMD_TIMEOUT).ok();
    let c: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("config.json")).expect("config.json"))
            .expect("JSON");
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert!(
        ns.contains(&"user"),
        "rootless spec lacks user namespace: {ns:?}"
    );
    assert!(
        !ns.contains(&"network"),
        "rootless spec has a network namespace: {ns:?}"
    );
    let maps = c["linux"]["uidMappings"].as_array().expect("uidMappings");
    assert!(!maps.is_empty(), "{c}");
    assert!(
        c["linux"]["gidMappings"]
            .as_array()
            .map(|a| !a.is_empty())
            .unwrap_or(false),
        "{c}"
    );
}

#[test]
fn features_prints_json() {
    let o = sh(&[&rune_bin().to_string_lossy(), "features"]).ok();
    let v = o.json();
    assert!(v.is_object(), "{o}");
    assert!(v["ociVersionMin"].is_string(), "{o}");
    assert!(v["ociVersionMax"].is_string(), "{o}");
}

#[test]
fn version() {
    let o = sh(&[&rune_bin().to_string_lossy(), "--version"]).ok();
    let first = o.stdout.lines().next().unwrap_or_default();
    assert!(first.contains("version"), "{o}");
    // docker/containerd parse a `spec: <version>` line.
    assert!(o.stdout.lines().any(|l| l.starts_with("spec: 1.")), "{o}");
}

#[test]
fn log_file_in_json_format() {
    let root = Root::new();
    let b = Bundle::new(&root, &["true"]);
    let log = b.dir().join("rune.log");
    let log_s = log.to_string_lossy().into_owned();
    // Successful run with --debug: something is logged.
    let o = root.run(&[
        "--debug",
        "--log",
        &log_s,
        "--log-format",
        "json",
        "run",
        "--bundle",
        &b.dir_str(),
        &b.id,
    ]);
    assert_eq!(o.code(), 0, "{o}");
    // A failure: the error is logged with level error.
    let o = root.run(&[
        "--log",
        &log_s,
        "--log-format",
        "json",
        "state",
        "no-such-container-xyz",
    ]);
    assert!(!o.success(), "{o}");
    let text = fs::read_to_string(&log).expect("--log file written");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "too few log lines: {text}");
    for l in &lines {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line not JSON ({e}): {l}"));
        assert!(v["level"].is_string(), "no level: {l}");
        assert!(v["msg"].is_string(), "no msg: {l}");
    }
    assert!(
        lines.iter().any(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            v["level"] == "error" && v["msg"].as_str().map(|m| !m.is_empty()).unwrap_or(false)
        }),
        "no error entry: {text}"
    );
}

#[test]
fn pid_file_of_run_detached_matches_state() {
    let root = Root::new();
    let b = Bundle::new(&root, &["sleep", "1000"]);
    let pid_file = b.dir().join("pid");
    let o = root.spawn(&[
        "run",
        "-d",
        "--pid-file",
        &pid_file.to_string_lossy(),
        "--bundle",
        &b.dir_str(),
        &b.id,
    ]);
    let o = o.wait(CMD_TIMEOUT);
    assert!(o.success(), "{o}");
    assert_eq!(root.status(&b.id), "running");
    let pid = root.pid(&b.id);
    let text = fs::read_to_string(&pid_file).expect("pid file");
    assert_eq!(text.trim(), pid.to_string());
    root.run(&["delete", "--force", &b.id]).ok();
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn run_with_terminal_under_pty() {
    let root = Root::new();
    let mut b = Bundle::new(
        &root,
        &["sh", "-c", "tty; [ -t 0 ] && echo stdin-is-tty; exit 6"],
    );
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let mut cmd = root.cmd(&["run", "--bundle", &b.dir_str(), &b.id]);
    let (o, text) = run_in_pty(&mut cmd, Duration::from_secs(30));
    assert_eq!(o.code(), 6, "{o}");
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "not a pty: {text:?}"
    );
    assert!(lines.contains(&"stdin-is-tty"), "{text:?}");
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn exec_tty_under_pty() {
    let root = Root::new();
    let b = started(&root, LONG_RUNNING);
    let mut cmd = root.cmd(&["exec", "-t", &b.id, "sh", "-c", "tty; exit 2"]);
    let (o, text) = run_in_pty(&mut cmd, Duration::from_secs(30));
    assert_eq!(o.code(), 2, "{o}");
    assert!(
        text.lines()
            .any(|l| l.trim_end_matches('\r').starts_with("/dev/pts/")),
        "not a pty: {text:?}"
    );
}

#[test]
fn create_with_console_socket() {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::{IoSliceMut, Read as _, Write as _};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixListener;

    let root = Root::new();
    let mut b = Bundle::new(&root, &["sh", "-c", "tty; read x; echo \"got $x\""]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let sock = b.dir().join("console.sock");
    let listener = UnixListener::bind(&sock).expect("bind console socket");
    let acceptor = std::thread::spawn(move || -> Result<OwnedFd, String> {
        let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| e.to_string())?;
        for c in msg.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: fd was just received through SCM_RIGHTS; nothing
                    // else in this process knows or owns it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err("no fd in console socket message".into())
    });
    let o = root.run(&[
        "create",
        "--console-socket",
        &sock.to_string_lossy(),
        "--bundle",
        &b.dir_str(),
        &b.id,
    ]);
    assert!(o.success(), "{o}");
    let master = acceptor
        .join()
        .expect("acceptor thread")
        .expect("pty master received");
    let mut master = fs::File::from(master);
    root.run(&["start", &b.id]).ok();

    // Read from the pty master in a thread; the reads block.
    let mut reader = master.try_clone().expect("dup master");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    let read_until = |needle: &str, text: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !text.contains(needle) && Instant::now() < deadline {
            if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
        text.contains(needle)
    };
    assert!(
        read_until("/dev/pts/", &mut text),
        "no tty line from the console: {text:?}"
    );
    master.write_all(b"hello\n").expect("write to console");
    assert!(
        read_until("got hello", &mut text),
        "console input not received: {text:?}"
    );
    root.wait_status(&b.id, "stopped");
    root.run(&["delete", &b.id]).ok();
    assert_nothing_left(&root, &b.id, b.dir());
}

/// `kill` racing with the container's death (what a shim does) must not
/// break the foreground `run`'s cleanup (exit 128+9, state removed) nor
/// resurrect the deleted container's state. Two busy threads widen the
/// race window the way a loaded machine does.
#[test]
fn kill_racing_with_exit_leaves_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let root = Root::new();
    let b = Bundle::new(&root, &["sleep", "1000"]);
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(31).wrapping_add(1);
                }
                x
            })
        })
        .collect();
    let mut failures = Vec::new();
    for i in 0..20 {
        let run = root.spawn(&["run", "--bundle", &b.dir_str(), &b.id]);
        root.wait_status(&b.id, "running");
        let kill = root.run(&["kill", &b.id, "KILL"]);
        if !kill.success() {
            failures.push(format!(
                "iteration {i}: kill of a running container failed: {kill}"
            ));
        }
        let out = run.wait(Duration::from_secs(20));
        if out.code() != 137 {
            failures.push(format!("iteration {i}: {out}"));
        }
        let left = wait_for(Duration::from_secs(3), || {
            let l = leftovers(root.path(), &b.id, b.dir());
            l.is_empty().then_some(())
        });
        if left.is_none() {
            failures.push(format!(
                "iteration {i}: left behind: {:?}",
                leftovers(root.path(), &b.id, b.dir())
            ));
            // Clear it so the next iteration can reuse the id.
            let _ = root.run(&["delete", "--force", &b.id]);
            let _ = fs::remove_dir_all(root.path().join(&b.id));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        let _ = h.join();
    }
    assert!(
        failures.is_empty(),
        "{} of 20 failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
