//! Carriers under a real (private) containerd 1.6: `RUNE_CARRIER=software` turns a plain
//! busybox image into a signed software enclave at Create, with the provider's key (server
//! side) or by checking the author's signature (client side).
//!
//! The node is set up as an operator would: a signing key, a signer policy naming it, a report
//! key, the software PAL in a PAL directory, and a shim config file, all private to the test
//! and handed to containerd (and so to the shim and rune) through the environment.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rune_test_support::*;

/// The shim under test and `rune` beside it (built on the spot when this package's tests run
/// alone: cargo builds only this package's binaries for them).
fn binaries() -> Binaries {
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-rune-v2"));
    let beside = shim.with_file_name("rune");
    let rune = if beside.is_file() {
        beside
    } else {
        cargo_build_bin("rune", "rune", "shim-test-rune")
    };
    Binaries::new(shim, rune)
}

/// A private containerd for `node`, with the busybox image imported.
fn containerd(node: &Node) -> Containerd {
    let c = Containerd::start(node.containerd_opts(ContainerdOpts {
        binaries: Some(binaries()),
        ..Default::default()
    }));
    c.import_busybox();
    c
}

const SOFTWARE: &[&str] = &["--env", "RUNE_CARRIER=software"];

/// A long-running command that exits 0 on SIGTERM.
const LOOP: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM; while true; do sleep 0.1; done",
];

#[test]
fn software_carrier_converts_signs_caches_and_runs() {
    let node = Node::new("", &[]);
    let mut c = containerd(&node);

    // First container: converted and signed with the provider key, which the policy admits.
    let id = unique("sw");
    let mut opts = vec!["--rm"];
    opts.extend_from_slice(SOFTWARE);
    let o = c.run(&opts, &id, &["sh", "-c", "echo hello-enclave; exit 3"]);
    assert_eq!(o.stdout, "hello-enclave\n", "{o}\n{}", c.log_tail());
    assert_eq!(o.code(), 3, "{o}");
    let log = c.log();
    assert!(
        log.contains(&format!(
            "container {id}: carrier software converted and signed"
        )),
        "{}",
        c.log_tail()
    );
    assert!(log.contains("measurement "), "{}", c.log_tail());

    // The same image again: the conversion comes from the cache.
    let again = unique("sw");
    let o = c.run(&opts, &again, &["sh", "-c", "echo hello-again"]);
    assert_eq!(o.stdout, "hello-again\n", "{o}\n{}", c.log_tail());
    assert!(
        c.log().contains(&format!(
            "container {again}: carrier software restored a cached conversion"
        )),
        "{}",
        c.log_tail()
    );
    // Another command is another manifest: converted, not served the first one's image.
    let other = unique("sw");
    let o = c.run(
        &["--rm", "--env", "RUNE_CARRIER=software"],
        &other,
        &["echo", "other-program"],
    );
    assert_eq!(o.stdout, "other-program\n", "{o}\n{}", c.log_tail());
    assert!(
        c.log().contains(&format!(
            "container {other}: carrier software converted and signed"
        )),
        "{}",
        c.log_tail()
    );

    // A detached one: exec through the enclave, refusal of a program outside the image's
    // entrypoints, containerd restarted under it, then kill and delete.
    let d = unique("swd");
    let mut dopts = vec!["-d", "--env", "RUNE_SOFTWARE_ENTRYPOINTS=/bin/echo"];
    dopts.extend_from_slice(SOFTWARE);
    c.run(&dopts, &d, LOOP).ok();
    c.wait_status(&d, "RUNNING");
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &d,
        "/bin/echo",
        "exec-ok",
    ]);
    assert_eq!(o.stdout, "exec-ok\n", "{o}\n{}", c.log_tail());
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        &d,
        "/bin/cat",
        "/etc/passwd",
    ]);
    assert!(!o.success(), "cat is no entrypoint of this enclave: {o}");
    assert!(!o.stdout.contains("root:"), "{o}");

    c.restart();
    assert_eq!(c.task_status(&d).as_deref(), Some("RUNNING"));
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e3",
        &d,
        "/bin/echo",
        "after-restart",
    ]);
    assert_eq!(o.stdout, "after-restart\n", "{o}\n{}", c.log_tail());

    c.ctr(&["task", "kill", &d]).ok();
    c.wait_status(&d, "STOPPED");
    c.ctr(&["task", "delete", &d]).ok();
    c.ctr(&["containers", "rm", &d]).ok();
    assert!(!c.rune_state_exists(&d), "rune state left for {d}");
    assert!(
        c.mounts_matching(&d).is_empty(),
        "{:?}",
        c.mounts_matching(&d)
    );

    // The key was used, not replaced, and is still root's alone.
    let mode = fs::metadata(&node.key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn bad_settings_fail_that_create_and_leave_nothing() {
    let node = Node::new("", &[]);
    let c = containerd(&node);
    let pod = unique("pod");
    let group = format!("io.kubernetes.cri.sandbox-id={pod}");
    let keep = unique("keep");
    c.run(&["-d", "--annotation", &group], &keep, LOOP).ok();
    c.wait_status(&keep, "RUNNING");
    let shim = c.shim_of(&keep).expect("shim");

    for (env, needle) in [
        ("RUNE_SOFTWARE_MEMORY=lots", "RUNE_SOFTWARE_MEMORY=\"lots\""),
        ("RUNE_SOFTWARE_WRITABLE=/bin", "holds the trusted file"),
        ("ENCLAVE_TYPE=intelSgx", "ENCLAVE_TYPE=intelSgx conflicts"),
    ] {
        let id = unique("bad");
        let o = c.run(
            &[
                "--rm",
                "--annotation",
                &group,
                "--env",
                "RUNE_CARRIER=software",
                "--env",
                env,
            ],
            &id,
            &["echo", "never"],
        );
        assert!(!o.success(), "{env}: {o}");
        assert!(o.stderr.contains(needle), "{env}: {o}");
        assert!(!o.stdout.contains("never"));
        let _ = c.ctr(&["containers", "rm", &id]);
        assert!(c.mounts_matching(&id).is_empty(), "{env}: mounts left");
        assert!(!c.rune_state_exists(&id), "{env}: rune state left");
    }
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
}

/// A busybox image signed by its author before packing, imported as `image_ref`.
fn client_signed_image(c: &Containerd, work: &Path, image_ref: &str) -> String {
    let (tool, _) = enclave_tools();
    let rootfs = work.join("rootfs");
    sh(&[
        "cp",
        "-a",
        &busybox_rootfs().to_string_lossy(),
        &rootfs.to_string_lossy(),
    ])
    .ok();
    let key = work.join("author.pem");
    let author = run_cmd(
        Command::new(tool).arg("keygen").arg("--out").arg(&key),
        Duration::from_secs(60),
    )
    .ok()
    .stdout
    .trim()
    .to_string();
    run_cmd(
        Command::new(tool)
            .args(["build", "--rootfs"])
            .arg(&rootfs)
            .args([
                "--entrypoint",
                "/bin/sh",
                "--writable",
                "/tmp",
                "--host-env",
                "PATH",
            ]),
        Duration::from_secs(60),
    )
    .ok();
    run_cmd(
        Command::new(tool)
            .args(["sign", "--rootfs"])
            .arg(&rootfs)
            .arg("--key")
            .arg(&key),
        Duration::from_secs(60),
    )
    .ok();
    let tar = image_archive(&rootfs, work, image_ref);
    c.ctr(&["images", "import", &tar.to_string_lossy()]).ok();
    author
}

#[test]
fn client_side_signing_is_verified() {
    // The author's signer is not known yet: start with a policy of the provider key only,
    // then write the final policy before containerd starts.
    let node = Node::new("signature_method = \"client\"", &[]);
    let c = containerd(&node);
    let work = TempDir::new("client");
    let image = "localhost/rune-busybox-signed:test";
    let author = client_signed_image(&c, work.path(), image);
    fs::write(
        node.dir.join("policy.toml"),
        format!("allowed_signers = [\"{author}\"]\nallow_debug = false\n"),
    )
    .expect("policy");

    // Unsigned image in client mode: refused at Create, clearly.
    let id = unique("unsigned");
    let o = c.run(
        &["--rm", "--env", "RUNE_CARRIER=software"],
        &id,
        &["echo", "never"],
    );
    assert!(!o.success(), "{o}");
    assert!(
        o.stderr
            .contains("verify the client-signed software enclave image"),
        "{o}"
    );
    assert!(
        o.stderr
            .contains("its author builds and signs it into the image"),
        "{o}"
    );
    let _ = c.ctr(&["containers", "rm", &id]);

    // The signed image runs, verified, with the author's signer.
    let id = unique("signed");
    let o = c.ctr(&[
        "run",
        "--runtime",
        RUNTIME,
        "--rm",
        "--env",
        "RUNE_CARRIER=software",
        image,
        &id,
        "/bin/sh",
        "-c",
        "echo signed-by-author",
    ]);
    assert_eq!(o.stdout, "signed-by-author\n", "{o}\n{}", c.log_tail());
    assert!(
        c.log().contains(&format!("signer {author}")),
        "{}",
        c.log_tail()
    );

    // Tampered after signing (a file changed in a layer on top): refused.
    let tampered_root = work.join("rootfs");
    fs::write(tampered_root.join("bin/extra"), b"#!/bin/sh\n").expect("write");
    fs::remove_file(tampered_root.join("bin/sh")).expect("rm sh");
    fs::write(
        tampered_root.join("bin/sh"),
        b"#!/bin/busybox sh\necho evil\n",
    )
    .expect("write");
    let tar = image_archive(
        &tampered_root,
        work.path(),
        "localhost/rune-busybox-tampered:test",
    );
    c.ctr(&["images", "import", &tar.to_string_lossy()]).ok();
    let id = unique("tampered");
    let o = c.ctr(&[
        "run",
        "--runtime",
        RUNTIME,
        "--rm",
        "--env",
        "RUNE_CARRIER=software",
        "localhost/rune-busybox-tampered:test",
        &id,
        "/bin/sh",
        "-c",
        "echo evil-ran",
    ]);
    assert!(!o.success(), "{o}");
    assert!(!o.stdout.contains("evil"), "{o}");
    assert!(
        o.stderr.contains("/bin/sh"),
        "the error names the changed file: {o}"
    );
    let _ = c.ctr(&["containers", "rm", &id]);
}

/// A docker archive of `rootfs` named `image_ref`, built with umoci and skopeo.
fn image_archive(rootfs: &Path, work: &Path, image_ref: &str) -> PathBuf {
    let layout = work.join(unique("layout"));
    let image = format!("{}:t", layout.display());
    sh(&["umoci", "init", "--layout", &layout.to_string_lossy()]).ok();
    sh(&["umoci", "new", "--image", &image]).ok();
    sh(&[
        "umoci",
        "insert",
        "--image",
        &image,
        &rootfs.to_string_lossy(),
        "/",
    ])
    .ok();
    sh(&[
        "umoci",
        "config",
        "--image",
        &image,
        "--config.cmd",
        "sh",
        "--config.env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ])
    .ok();
    let tar = work.join(format!("{}.tar", unique("image")));
    sh(&[
        "skopeo",
        "--insecure-policy",
        "copy",
        &format!("oci:{image}"),
        &format!("docker-archive:{}:{image_ref}", tar.display()),
    ])
    .ok();
    tar
}
