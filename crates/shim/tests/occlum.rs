//! The occlum carrier under a real (private) containerd 1.6.
//!
//! This host has no SGX, no Occlum SDK and no `libocclum-pal.so`, so what is shown here is
//! the shim's part and nothing more: at Create the container's image is converted by the
//! stand-in `occlum` and `sgx_sign` of `tests/fixtures` (they check their arguments and write
//! placeholder enclaves), the SIGSTRUCT material is signed with the node's provider key through
//! `rune-enclave sign-material` (really signed; the stand-in `catsig` checks the signature with
//! openssl), the instance lands in the container's rootfs, the bundle rune is handed says
//! `ENCLAVE_TYPE=intelSgx` with the configured PAL and the instance, a second container is
//! served from the cache, and a bad `OCCLUM_*` setting fails only its own Create.
//!
//! The container then fails where a node without SGX must fail: `rune create` refuses an
//! `intelSgx` enclave on a host without SGX, before any PAL is loaded. Pointing
//! `enclave_runtime_path` at this workspace's example PAL would not change that, and even on a
//! host where it could run, that PAL (a mock) starts the workload as a plain host process and
//! ignores the Occlum instance, so a "hello" from it would prove nothing about Occlum. No test
//! here runs a workload in an Occlum enclave.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rune_test_support::*;

const PAL: &str = "/opt/occlum/build/lib/libocclum-pal.so";

/// `rune` wrapped so that, at `create`, the bundle's config.json and the signed LibOS of the
/// instance in its rootfs are kept in `capture` under the container id (the bundle is gone
/// once the failed Create is cleaned up), then the real rune runs. The shim runs the `rune`
/// beside its own executable, so the shim is linked into `capture` too.
fn capturing_binaries(shim: &Path, real: &Path, capture: &Path) -> Binaries {
    let linked = capture.join("containerd-shim-rune-v2");
    if fs::hard_link(shim, &linked).is_err() {
        fs::copy(shim, &linked).expect("copy the shim beside the rune wrapper");
    }
    let wrapper = capture.join("rune");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             prev=; bundle=; create=\n\
             for a in \"$@\"; do\n\
             \x20 [ \"$prev\" = --bundle ] && bundle=$a\n\
             \x20 [ \"$a\" = create ] && create=1\n\
             \x20 prev=$a\n\
             done\n\
             if [ -n \"$create\" ] && [ -n \"$bundle\" ]; then\n\
             \x20 id=$(basename \"$bundle\")\n\
             \x20 cp \"$bundle/config.json\" \"{dir}/$id.json\"\n\
             \x20 lib=\"$bundle/rootfs/occlum_instance/build/lib/libocclum-libos.signed.so\"\n\
             \x20 [ -f \"$lib\" ] && cp \"$lib\" \"{dir}/$id.signed.so\"\n\
             fi\n\
             exec {real} \"$@\"\n",
            dir = capture.display(),
            real = real.display()
        ),
    )
    .expect("write rune wrapper");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
    Binaries::new(linked, wrapper)
}

fn containerd(node: &Node, capture: &Path) -> Containerd {
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-rune-v2"));
    let beside = shim.with_file_name("rune");
    let rune = if beside.is_file() {
        beside
    } else {
        cargo_build_bin("rune", "rune", "shim-test-rune")
    };
    let c = Containerd::start(node.containerd_opts(ContainerdOpts {
        binaries: Some(capturing_binaries(&shim, &rune, capture)),
        ..Default::default()
    }));
    c.import_busybox();
    c
}

/// A node whose shim runs the occlum carrier with the stand-in SDK tools.
fn node() -> Node {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let node = Node::with_tail(
        "",
        &[],
        &format!(
            "[enclave_runtime.occlum]\nocclum_path = \"{}\"\nenclave_runtime_path = \"{PAL}\"\n",
            fixtures.join("occlum").display()
        ),
    );
    // A top-level key goes before every table.
    let text = fs::read_to_string(&node.config).expect("shim config");
    fs::write(
        &node.config,
        format!(
            "sgx_tool_sign = \"{}\"\n{text}",
            fixtures.join("sgx_sign").display()
        ),
    )
    .expect("shim config");
    node
}

const OCCLUM: &[&str] = &["--rm", "--env", "RUNE_CARRIER=occlum"];

/// The process environment of the config.json rune was given for `id`.
fn bundle_env(capture: &Path, id: &str) -> Vec<String> {
    let path = capture.join(format!("{id}.json"));
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("rune create never saw {id}'s bundle ({e})"));
    let config: serde_json::Value = serde_json::from_str(&text).expect("config.json");
    config["process"]["env"]
        .as_array()
        .expect("process.env")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn occlum_conversion_at_create_then_no_sgx() {
    let node = node();
    let capture = TempDir::new("occlum-capture");
    let c = containerd(&node, capture.path());

    let id = unique("occlum");
    let o = c.run(OCCLUM, &id, &["/bin/busybox", "echo", "never-printed"]);
    assert!(!o.success(), "{o}");
    assert!(!o.stdout.contains("never-printed"), "{o}");
    assert!(
        o.stderr.contains("OCI runtime create failed")
            && o.stderr
                .contains("enclave type intelSgx is not available on this host"),
        "fails for want of SGX: {o}\n{}",
        c.log_tail()
    );
    let log = c.log();
    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "container {id}: carrier occlum converted and signed the image"
            ))
        })
        .unwrap_or_else(|| panic!("no conversion logged\n{}", c.log_tail()));
    assert!(
        line.contains("mrenclave ") && line.contains(&format!("signer {}", node.signer)),
        "{line}"
    );

    // What rune was handed: the enclave settings after the container's own, and the signed
    // instance (signed by catsig with the node key's signature) in the rootfs.
    let env = bundle_env(capture.path(), &id);
    let carrier_at = env.iter().position(|e| e == "RUNE_CARRIER=occlum");
    let tail: Vec<&str> = env.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "ENCLAVE_TYPE=intelSgx",
            &format!("ENCLAVE_RUNTIME_PATH={PAL}"),
            "ENCLAVE_RUNTIME_ARGS=/occlum_instance",
        ],
        "{env:?}"
    );
    assert!(carrier_at.is_some_and(|i| i < env.len() - 3), "{env:?}");
    let signed = fs::read_to_string(capture.join(format!("{id}.signed.so")))
        .expect("a signed LibOS in the rootfs at rune create");
    assert!(
        signed.contains("stand-in catsig SIGSTRUCT: key "),
        "{signed}"
    );
    let _ = c.ctr(&["containers", "rm", &id]);
    assert!(!c.rune_state_exists(&id));
    assert!(
        c.mounts_matching(&id).is_empty(),
        "{:?}",
        c.mounts_matching(&id)
    );

    // The same image and settings: restored from the cache, the same instance handed to rune.
    let again = unique("occlum");
    let o = c.run(OCCLUM, &again, &["/bin/busybox", "echo", "never-printed"]);
    assert!(!o.success(), "{o}");
    let log = c.log();
    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "container {again}: carrier occlum restored a cached conversion"
            ))
        })
        .unwrap_or_else(|| panic!("no cache hit logged\n{}", c.log_tail()));
    assert!(line.contains(&format!("signer {}", node.signer)), "{line}");
    assert_eq!(
        fs::read_to_string(capture.join(format!("{again}.signed.so"))).expect("cached LibOS"),
        signed
    );
    assert!(bundle_env(capture.path(), &again).contains(&"ENCLAVE_TYPE=intelSgx".to_string()));
    let _ = c.ctr(&["containers", "rm", &again]);
}

#[test]
fn bad_occlum_settings_fail_only_that_create() {
    let node = node();
    let capture = TempDir::new("occlum-capture");
    let c = containerd(&node, capture.path());
    // A running container of the same pod, so the same shim serves every Create below.
    let pod = unique("pod");
    let group = format!("io.kubernetes.cri.sandbox-id={pod}");
    let keep = unique("keep");
    c.run(
        &["-d", "--annotation", &group],
        &keep,
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ],
    )
    .ok();
    c.wait_status(&keep, "RUNNING");
    let shim = c.shim_of(&keep).expect("shim");

    for (env, needle) in [
        (
            "OCCLUM_MAX_NUM_OF_THREADS=many",
            "OCCLUM_MAX_NUM_OF_THREADS=\"many\": give a whole number of at least 1",
        ),
        (
            "OCCLUM_USER_SPACE_SIZE=300M",
            "OCCLUM_USER_SPACE_SIZE=\"300M\": give a whole number followed by B, KB, MB",
        ),
        (
            "OCCLUM_DEBUGGABLE=maybe",
            "OCCLUM_DEBUGGABLE=\"maybe\": give true or false",
        ),
        (
            "ENCLAVE_RUNTIME_ARGS=/a,/b",
            "ENCLAVE_RUNTIME_ARGS=\"/a,/b\"",
        ),
    ] {
        let id = unique("bad");
        let mut opts = OCCLUM.to_vec();
        opts.extend_from_slice(&["--annotation", &group, "--env", env]);
        let o = c.run(&opts, &id, &["/bin/busybox", "true"]);
        assert!(!o.success(), "{env}: {o}");
        assert!(o.stderr.contains(needle), "{env}: {o}");
        assert!(
            c.log()
                .contains(&format!("container {id}: carrier occlum: ")),
            "{env}: the shim logs the failure with the container id\n{}",
            c.log_tail()
        );
        assert_eq!(c.task_status(&id), None, "{env}: a task was left");
        assert!(c.mounts_matching(&id).is_empty(), "{env}: mounts left");
        assert!(!c.rune_state_exists(&id), "{env}: rune state left");
        assert!(
            !capture.join(format!("{id}.json")).exists(),
            "{env}: rune create ran"
        );
        assert_eq!(c.shim_of(&keep), Some(shim));
        let _ = c.ctr(&["containers", "rm", &id]);
    }
    // No conversion was started: nothing in the cache, not even scratch.
    let scratch = node.dir.join("cache/tmp");
    let left: Vec<_> = fs::read_dir(&scratch)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{}: {left:?}", scratch.display());

    // The shim still serves the pod: exec into the running container, then stop it.
    assert!(alive(shim), "a failing carrier took the shim down");
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "x",
        &keep,
        "echo",
        "still-here",
    ]);
    assert_eq!(o.stdout, "still-here\n", "{o}");
    c.ctr(&["task", "kill", &keep]).ok();
    c.wait_status(&keep, "STOPPED");
    c.ctr(&["task", "delete", &keep]).ok();
    c.ctr(&["containers", "rm", &keep]).ok();
}
