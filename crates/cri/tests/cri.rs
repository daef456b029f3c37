//! Kubernetes' path, without Kubernetes: what kubelet asks of containerd's CRI plugin, sent by
//! this crate's client to a real private containerd 1.6 whose CRI plugin has a runtime
//! handler `rune` (`io.containerd.rune.v2`, as a `RuntimeClass` names it), a locally built
//! pause image, host networking (no CNI) and `restrict_oom_score_adj` (this host withholds
//! CAP_SYS_RESOURCE). The shim and rune are this workspace's build.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rune_cri::api;
use rune_cri::log::{parse_log, Stream};
use rune_cri::{Client, ContainerSpec, PodSpec};
use rune_test_support::*;

const CALL: Duration = Duration::from_secs(120);

/// A private containerd with the CRI plugin for `node` (or no enclave set-up), with the
/// busybox image in the CRI namespace.
fn containerd(node: Option<&Node>) -> Containerd {
    let opts = ContainerdOpts {
        binaries: Some(shim_binaries()),
        ..ContainerdOpts::with_cri()
    };
    let opts = match node {
        Some(n) => n.containerd_opts(opts),
        None => opts,
    };
    let c = Containerd::start(opts);
    c.import_image(CRI_NAMESPACE, &busybox_image_tar());
    c
}

async fn client(c: &Containerd) -> Client {
    let mut client = Client::connect(&c.cri_endpoint()).await.expect("connect");
    client.wait_ready(CALL).await.expect("CRI ready");
    client
}

/// A pod in its own cgroup parent (removed with the daemon) and log directory.
fn pod(c: &Containerd, logs: &Path) -> PodSpec {
    let name = unique("pod");
    let mut pod = PodSpec::new(&name, &unique("uid"), logs.join(&name));
    pod.cgroup_parent = format!("/{name}");
    c.remove_cgroup_on_drop(&name);
    fs::create_dir_all(&pod.log_directory).expect("pod log dir");
    pod
}

fn container(name: &str, argv: &[&str], env: &[(&str, &str)]) -> ContainerSpec {
    let mut spec = ContainerSpec::new(name, IMAGE_REF);
    spec.command = vec![argv[0].to_string()];
    spec.args = argv[1..].iter().map(|s| s.to_string()).collect();
    spec.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    spec
}

/// The stdout lines of the container's CRI log file.
fn log_stdout(pod: &PodSpec, spec: &ContainerSpec) -> Vec<String> {
    let text = fs::read_to_string(pod.log_directory.join(spec.log_path())).unwrap_or_default();
    parse_log(&text)
        .into_iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| l.msg)
        .collect()
}

/// Nothing of the pods is left: no task, no shim, no mount under the daemon's directories,
/// no rune state.
#[track_caller]
fn assert_nothing_left(c: &Containerd) {
    let left = wait_for(Duration::from_secs(10), || {
        let tasks = c.ctr_ns(CRI_NAMESPACE, &["tasks", "ls", "-q"]).stdout;
        let leftovers = (
            tasks.trim().to_string(),
            c.rune_shims(),
            c.mounts_below_dir(),
            c.rune_state_entries(CRI_NAMESPACE),
        );
        (leftovers.0.is_empty()
            && leftovers.1.is_empty()
            && leftovers.2.is_empty()
            && leftovers.3.is_empty())
        .then_some(())
    });
    assert!(
        left.is_some(),
        "left behind: tasks {:?}, shims {:?}, mounts {:?}, rune state {:?}",
        c.ctr_ns(CRI_NAMESPACE, &["tasks", "ls", "-q"]).stdout,
        c.rune_shims(),
        c.mounts_below_dir(),
        c.rune_state_entries(CRI_NAMESPACE)
    );
}

/// A long-running command that exits 0 on SIGTERM.
const LOOP: &[&str] = &[
    "sh",
    "-c",
    "echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done",
];

/// Every call of a pod's life with handler `rune`, a plain container; nothing is left after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_through_the_rune_handler() {
    let c = containerd(None);
    let logs = TempDir::new("cri-logs");
    let mut cri = client(&c).await;
    let version = cri.version().await.expect("Version");
    assert_eq!(version.runtime_name, "containerd", "{version:?}");

    let pod = pod(&c, logs.path());
    let sandbox = pod.sandbox_config();
    let pod_id = cri
        .run_pod_sandbox(&sandbox, "rune")
        .await
        .expect("RunPodSandbox");
    let spec = container("app", LOOP, &[("GREETING", "hello")]);
    spec.create_log_dir(&pod).expect("log dir");
    let id = cri
        .create_container(&pod_id, &spec.config(&pod), &sandbox)
        .await
        .expect("CreateContainer");
    cri.start_container(&id).await.expect("StartContainer");

    // The pod's containers share one shim, as upstream's grouping by sandbox id wants.
    let shim = wait_for(Duration::from_secs(10), || c.shim_of_ns(CRI_NAMESPACE, &id));
    assert!(shim.is_some(), "no shim serves {id}\n{}", c.log_tail());
    assert_eq!(
        shim,
        c.shim_of_ns(CRI_NAMESPACE, &pod_id),
        "one shim per pod"
    );

    let started = wait_for(Duration::from_secs(10), || {
        log_stdout(&pod, &spec)
            .contains(&"started".to_string())
            .then_some(())
    });
    assert!(started.is_some(), "log: {:?}", log_stdout(&pod, &spec));

    let exec = cri
        .exec_sync(&id, &["sh", "-c", "echo $GREETING; exit 7"], CALL)
        .await
        .expect("ExecSync");
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "hello\n", "{exec:?}");
    assert_eq!(exec.exit_code, 7, "{exec:?}");

    let status = cri.container_status(&id).await.expect("ContainerStatus");
    assert_eq!(status.state(), api::ContainerState::ContainerRunning);

    cri.stop_container(&id, Duration::from_secs(10))
        .await
        .expect("StopContainer");
    let status = cri.container_status(&id).await.expect("ContainerStatus");
    assert_eq!(status.state(), api::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "the TERM trap exits 0: {status:?}");
    cri.remove_container(&id).await.expect("RemoveContainer");
    cri.stop_pod_sandbox(&pod_id).await.expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod_id)
        .await
        .expect("RemovePodSandbox");
    assert_nothing_left(&c);
}

/// `RUNE_CARRIER=software` in the container's env: converted, signed with the provider's key
/// and run as a software enclave; exec is confined to the entrypoints the container allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn software_carrier_through_cri() {
    let node = Node::new("", &[]);
    let c = containerd(Some(&node));
    let logs = TempDir::new("cri-logs");
    let mut cri = client(&c).await;

    let pod = pod(&c, logs.path());
    let sandbox = pod.sandbox_config();
    let pod_id = cri
        .run_pod_sandbox(&sandbox, "rune")
        .await
        .expect("RunPodSandbox");
    let spec = container(
        "enclave",
        LOOP,
        &[
            ("RUNE_CARRIER", "software"),
            ("RUNE_SOFTWARE_ENTRYPOINTS", "/bin/cat"),
            // CRI mounts its own /etc/hosts and /etc/resolv.conf over the image's: those are
            // left out of the trusted files, the rest of /etc is trusted.
            ("RUNE_SOFTWARE_TRUST", "/etc"),
        ],
    );
    spec.create_log_dir(&pod).expect("log dir");
    let id = cri
        .create_container(&pod_id, &spec.config(&pod), &sandbox)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", c.log_tail()));
    cri.start_container(&id).await.expect("StartContainer");
    let started = wait_for(Duration::from_secs(20), || {
        log_stdout(&pod, &spec)
            .contains(&"started".to_string())
            .then_some(())
    });
    assert!(
        started.is_some(),
        "log: {:?}\n{}",
        log_stdout(&pod, &spec),
        c.log_tail()
    );
    let log = c.log();
    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "container {id}: carrier software converted and signed"
            ))
        })
        .unwrap_or_else(|| panic!("no conversion logged for {id}\n{}", c.log_tail()));
    assert!(
        line.contains("measurement ") && line.contains(&format!("signer {}", node.signer)),
        "{line}"
    );
    // The pod's sandbox is an ordinary container: only the workload was converted.
    assert!(
        !log.contains(&format!("container {pod_id}: carrier")),
        "{log}"
    );

    // An entrypoint the container allowed runs in the enclave; anything else is refused.
    let exec = cri
        .exec_sync(&id, &["/bin/cat", "/proc/self/status"], CALL)
        .await
        .expect("ExecSync");
    assert_eq!(exec.exit_code, 0, "{exec:?}");
    let status = String::from_utf8_lossy(&exec.stdout);
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let refused = cri
        .exec_sync(&id, &["/bin/ls", "/"], CALL)
        .await
        .expect("ExecSync");
    assert_ne!(refused.exit_code, 0, "{refused:?}");
    let passwd = cri
        .exec_sync(&id, &["/bin/cat", "/etc/passwd"], CALL)
        .await
        .expect("ExecSync");
    assert_eq!(passwd.exit_code, 0, "{passwd:?}");
    assert!(
        String::from_utf8_lossy(&passwd.stdout).starts_with("root:"),
        "{passwd:?}"
    );
    let hosts = cri
        .exec_sync(&id, &["/bin/cat", "/etc/hosts"], CALL)
        .await
        .expect("ExecSync");
    assert_ne!(
        hosts.exit_code, 0,
        "the runtime's /etc/hosts is not trusted: {hosts:?}"
    );

    cri.stop_container(&id, Duration::from_secs(10))
        .await
        .expect("StopContainer");
    cri.remove_container(&id).await.expect("RemoveContainer");
    cri.stop_pod_sandbox(&pod_id).await.expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod_id)
        .await
        .expect("RemovePodSandbox");
    assert_nothing_left(&c);
}

/// A bad carrier setting fails that container's StartContainer; the pod and its shim go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_carrier_fails_that_container_only() {
    let node = Node::new("", &[]);
    let c = containerd(Some(&node));
    let logs = TempDir::new("cri-logs");
    let mut cri = client(&c).await;
    let pod = pod(&c, logs.path());
    let sandbox = pod.sandbox_config();
    let pod_id = cri
        .run_pod_sandbox(&sandbox, "rune")
        .await
        .expect("RunPodSandbox");

    for (name, env, needle) in [
        ("unknown", ("RUNE_CARRIER", "sgx-magic"), "sgx-magic"),
        (
            "badmem",
            ("RUNE_SOFTWARE_MEMORY", "lots"),
            "RUNE_SOFTWARE_MEMORY",
        ),
    ] {
        let mut envs = vec![env];
        if env.0 != "RUNE_CARRIER" {
            envs.push(("RUNE_CARRIER", "software"));
        }
        let spec = container(name, &["true"], &envs);
        spec.create_log_dir(&pod).expect("log dir");
        // CreateContainer only records the container: containerd 1.6 creates its task (the
        // shim's Create, where carriers run) at StartContainer.
        let id = cri
            .create_container(&pod_id, &spec.config(&pod), &sandbox)
            .await
            .expect("CreateContainer");
        let err = cri
            .start_container(&id)
            .await
            .expect_err("StartContainer with a bad carrier setting");
        let msg = err.to_string();
        assert!(
            msg.contains(needle) && msg.contains("StartContainer") && msg.contains(&id),
            "{msg}"
        );
        let status = cri.container_status(&id).await.expect("ContainerStatus");
        assert_ne!(
            status.state(),
            api::ContainerState::ContainerRunning,
            "{status:?}"
        );
        cri.remove_container(&id).await.expect("RemoveContainer");
        assert!(
            c.rune_state_entries(CRI_NAMESPACE).iter().all(|e| e != &id),
            "rune state left for {id}"
        );
    }

    // The pod's shim is still there and serves the next container.
    let spec = container("fine", &["echo", "still-serving"], &[]);
    spec.create_log_dir(&pod).expect("log dir");
    let id = cri
        .create_container(&pod_id, &spec.config(&pod), &sandbox)
        .await
        .expect("CreateContainer");
    cri.start_container(&id).await.expect("StartContainer");
    let status = cri.wait_exited(&id, Some(CALL)).await.expect("exit");
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(log_stdout(&pod, &spec), ["still-serving"]);

    cri.remove_container(&id).await.expect("RemoveContainer");
    cri.stop_pod_sandbox(&pod_id).await.expect("StopPodSandbox");
    cri.remove_pod_sandbox(&pod_id)
        .await
        .expect("RemovePodSandbox");
    assert_nothing_left(&c);
}

/// The pod sandboxes the runtime knows of, through CRI.
fn pod_sandboxes(c: &Containerd) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let mut cri = client(c).await;
        cri.pod_sandboxes_labelled(&Default::default())
            .await
            .expect("ListPodSandbox")
    })
}

/// `rune-cri run`, as `make demo` calls it: the output, an exec's output and the exit code
/// pass through; a missing image, a carrier that fails the container's start, `--timeout` and
/// SIGTERM leave no pod behind.
#[test]
fn rune_cri_run_end_to_end() {
    let node = Node::new("", &[]);
    let c = containerd(Some(&node));
    let bin = env!("CARGO_BIN_EXE_rune-cri");
    let endpoint = c.cri_endpoint();
    // The pods' cgroups under one parent of this test's, removed with the daemon.
    let cgroup = unique("rune-cri");
    c.remove_cgroup_on_drop(&cgroup);
    let cgroup_parent = format!("/{cgroup}");
    let rune_cri = || {
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--endpoint", &endpoint, "--runtime-handler", "rune"])
            .args(["--cgroup-parent", &cgroup_parent]);
        cmd
    };
    let run = |args: &[&str]| run_cmd(rune_cri().args(args), CALL);

    let o = run(&[
        "--image",
        IMAGE_REF,
        "--env",
        "RUNE_CARRIER=software",
        "--env",
        "RUNE_SOFTWARE_ENTRYPOINTS=/bin/echo",
        "--exec",
        "/bin/echo exec-ok",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; sleep 3; exit 5",
    ]);
    assert_eq!(o.code(), 5, "{o}\n{}", c.log_tail());
    let mut stdout: Vec<&str> = o.stdout.lines().collect();
    stdout.sort_unstable();
    assert_eq!(stdout, ["exec-ok", "out"], "{o}");
    assert_eq!(o.stderr, "err\n", "{o}");
    assert!(c.log().contains("carrier software converted and signed"));
    assert_nothing_left(&c);

    let o = run(&["--image", "localhost/no-such-image:1", "--", "true"]);
    assert_eq!(o.code(), 125, "{o}");
    assert!(
        o.stderr.contains("localhost/no-such-image:1") && o.stderr.contains("not on the node"),
        "{o}"
    );

    // The sandbox runs, the container is created, then its task's Create fails in the shim
    // (StartContainer): the pod goes too.
    let o = run(&[
        "--image",
        IMAGE_REF,
        "--env",
        "RUNE_CARRIER=sgx-magic",
        "--",
        "true",
    ]);
    assert_eq!(o.code(), 125, "{o}");
    assert!(
        o.stderr.contains("StartContainer") && o.stderr.contains("sgx-magic"),
        "{o}"
    );
    assert_eq!(pod_sandboxes(&c), Vec::<String>::new());
    let left = c.ctr_ns(CRI_NAMESPACE, &["containers", "ls", "-q"]).stdout;
    assert!(left.trim().is_empty(), "containers left: {left}");
    assert_nothing_left(&c);

    // --timeout stops a container that runs too long.
    let o = run(&[
        "--image",
        IMAGE_REF,
        "--timeout",
        "2",
        "--stop-timeout",
        "1",
        "--",
        "sleep",
        "60",
    ]);
    assert_eq!(o.code(), 124, "{o}");
    assert_eq!(pod_sandboxes(&c), Vec::<String>::new());
    assert_nothing_left(&c);

    // SIGTERM while the container runs: the pod is removed, the status is a shell's.
    let running = Spawned::new(
        rune_cri()
            .args(["--image", IMAGE_REF, "--stop-timeout", "1", "--"])
            .args(LOOP),
    );
    let started = wait_for(Duration::from_secs(60), || {
        running.stdout_now().contains("started").then_some(())
    });
    assert!(started.is_some(), "{}", running.stderr_now());
    sh(&["kill", "-TERM", &running.pid().to_string()]).ok();
    let o = running.wait(CALL);
    assert_eq!(o.code(), 143, "{o}");
    assert!(o.stderr.contains("interrupted"), "{o}");
    assert_eq!(pod_sandboxes(&c), Vec::<String>::new());
    assert_nothing_left(&c);
}
