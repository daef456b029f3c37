//! The occlum carrier under a real containerd. This host has no SGX, no Occlum SDK and no
//! `libocclum-pal.so`: the conversion runs against the stand-in `occlum` and `sgx_sign` of
//! `tests/fixtures` (they check their arguments and write placeholder enclaves), and the
//! container then fails where a node without SGX must fail: rune refuses to start an
//! `intelSgx` enclave. What is shown here is the shim's part: conversion at Create, signing
//! with the node's key, the cache, and a clean failure that leaves nothing behind.

use std::fs;
use std::path::{Path, PathBuf};

use rune_test_support::*;

fn containerd(node: &Node) -> Containerd {
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-rune-v2"));
    let beside = shim.with_file_name("rune");
    let rune = if beside.is_file() {
        beside
    } else {
        cargo_build_bin("rune", "rune", "shim-test-rune")
    };
    let c = Containerd::start(node.containerd_opts(ContainerdOpts {
        binaries: Some(Binaries::new(shim, rune)),
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
            "[enclave_runtime.occlum]\nocclum_path = \"{}\"\n\
             enclave_runtime_path = \"/opt/occlum/build/lib/libocclum-pal.so\"\n",
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

#[test]
fn occlum_conversion_at_create_then_no_sgx() {
    let node = node();
    let c = containerd(&node);

    let id = unique("occlum");
    let o = c.run(OCCLUM, &id, &["/bin/busybox", "echo", "never-printed"]);
    assert!(!o.success(), "{o}");
    assert!(!o.stdout.contains("never-printed"), "{o}");
    assert!(
        o.stderr.contains("SGX"),
        "fails for want of SGX: {o}\n{}",
        c.log_tail()
    );
    let log = c.log();
    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "container {id}: carrier occlum converted and signed"
            ))
        })
        .unwrap_or_else(|| panic!("no conversion logged\n{}", c.log_tail()));
    assert!(
        line.contains("mrenclave ") && line.contains(&format!("signer {}", node.signer)),
        "{line}"
    );
    let _ = c.ctr(&["containers", "rm", &id]);
    assert!(!c.rune_state_exists(&id));

    // The same image and settings: restored from the cache.
    let again = unique("occlum");
    let o = c.run(OCCLUM, &again, &["/bin/busybox", "echo", "never-printed"]);
    assert!(!o.success(), "{o}");
    assert!(
        c.log().contains(&format!(
            "container {again}: carrier occlum restored a cached conversion"
        )),
        "{}",
        c.log_tail()
    );
    let _ = c.ctr(&["containers", "rm", &again]);

    // A bad setting fails that Create, naming it; the shim's containerd runs the next one.
    let bad = unique("occlum");
    let mut opts = OCCLUM.to_vec();
    opts.extend_from_slice(&["--env", "OCCLUM_MAX_NUM_OF_THREADS=many"]);
    let o = c.run(&opts, &bad, &["/bin/busybox", "true"]);
    assert!(o.stderr.contains("OCCLUM_MAX_NUM_OF_THREADS"), "{o}");
    let _ = c.ctr(&["containers", "rm", &bad]);
    let plain = unique("plain");
    let o = c.run(&["--rm"], &plain, &["echo", "plain"]);
    assert_eq!(o.stdout, "plain\n", "{o}");
    assert!(
        c.mounts_matching("rootfs").is_empty(),
        "{:?}",
        c.mounts_matching("rootfs")
    );
}
