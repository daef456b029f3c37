//! The occlum carrier's pipeline against the stand-in `occlum` and `sgx_sign` of
//! `tests/fixtures` (this host has neither SGX nor Occlum's SDK: the stand-ins check their
//! arguments and write the files the real tools write, with placeholder enclaves), signing
//! with a node key through this workspace's `rune-enclave`.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::{MountBuilder, ProcessBuilder, Spec};

use super::*;
use crate::carrier::{self, Tools};
use crate::config::Config;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Where this workspace's `rune-enclave` is: the debug build's, else built on the spot into
/// a target dir of its own (the running `cargo test` holds the lock on the usual one).
fn tools_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let debug = workspace.join("target/debug");
    if debug.join("rune-enclave").is_file() {
        return debug;
    }
    let target = workspace.join("target/shim-unit-tools");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "-p", "rune-enclave", "--target-dir"])
        .arg(&target)
        .current_dir(&workspace)
        .status()
        .expect("cargo build");
    assert!(status.success(), "cargo build -p rune-enclave failed");
    target.join("debug")
}

struct Node {
    dir: tempfile::TempDir,
    config: Config,
}

fn node(extra: &str) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "sgx_tool_sign = \"{sgx}\"\n[enclave_runtime]\nsigning_key = \"{key}\"\n\
         cache_dir = \"{cache}\"\n{extra}\n[enclave_runtime.occlum]\n\
         occlum_path = \"{occlum}\"\nenclave_libos_path = \"{libos}\"\n\
         enclave_runtime_path = \"/opt/occlum/build/lib/libocclum-pal.so\"\n",
        sgx = fixtures().join("sgx_sign").display(),
        occlum = fixtures().join("occlum").display(),
        key = dir.path().join("keys/signing-key.pem").display(),
        cache = dir.path().join("cache").display(),
        libos = dir.path().join("no-libos.so").display(),
    );
    let config = Config::parse(&text).expect("config");
    Node { dir, config }
}

/// A small image: an executable, a library directory reached through a symlink, and the
/// hostile links an image may carry.
fn rootfs(at: &Path) -> PathBuf {
    let root = at.join("rootfs");
    for d in ["bin", "usr/lib", "etc", "tmp", "proc", "dev"] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    fs::write(root.join("bin/hello"), "#!/bin/sh\necho hello\n").expect("write");
    fs::set_permissions(root.join("bin/hello"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(root.join("usr/lib/libapp.so"), "not really a library").expect("write");
    symlink("usr/lib", root.join("lib")).expect("symlink");
    symlink("/etc/shadow", root.join("etc/shadow-link")).expect("symlink");
    symlink("../../../../../../etc", root.join("etc/climb")).expect("symlink");
    symlink("/", root.join("rootlink")).expect("symlink");
    root
}

fn spec(args: &[&str], env: &[&str]) -> Spec {
    let mut spec = Spec::default();
    spec.set_process(Some(
        ProcessBuilder::default()
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .cwd("/")
            .build()
            .expect("process"),
    ));
    spec.set_mounts(Some(Vec::new()));
    spec
}

fn run(node: &Node, root: &Path, spec: &mut Spec) -> Result<carrier::Outcome, CarrierError> {
    let tools = Tools::with_dir(tools_dir());
    let work = tempfile::tempdir().expect("work");
    let ctx = Context {
        id: "occlum-test",
        rootfs: root,
        config: &node.config,
        tools: &tools,
        work: work.path(),
    };
    carrier::run(&Occlum, &ctx, spec)
}

fn env(spec: &Spec) -> Vec<String> {
    spec.process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default()
}

#[test]
fn converts_signs_and_caches_an_instance() {
    let node = node("");
    let at = tempfile::tempdir().expect("tempdir");
    let root = rootfs(at.path());
    let mut s = spec(
        &["hello"],
        &[
            "PATH=/usr/bin:/bin",
            "RUNE_CARRIER=occlum",
            "OCCLUM_MAX_NUM_OF_THREADS=8",
        ],
    );
    let outcome = run(&node, &root, &mut s).expect("conversion");
    assert!(!outcome.cached);
    assert!(
        outcome.description.starts_with("mrenclave ") && outcome.description.contains(" signer "),
        "{}",
        outcome.description
    );

    // The instance is in the image, signed, with the settings asked for.
    let instance = root.join(INSTANCE_DIR);
    let signed = fs::read(instance.join(SIGNED_LIBOS)).expect("signed enclave");
    assert!(!signed.is_empty());
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(instance.join("Occlum.json")).expect("Occlum.json"))
            .expect("JSON");
    assert_eq!(json["resource_limits"]["max_num_of_threads"], 8);
    assert_eq!(json["entry_points"], serde_json::json!(["/bin/hello"]));
    assert!(
        !instance.join("image").exists(),
        "the plain image copy is sealed, not shipped"
    );
    // rune is told what to load and where the instance is.
    let env = env(&s);
    assert!(
        env.contains(&"ENCLAVE_TYPE=intelSgx".to_string()),
        "{env:?}"
    );
    assert!(
        env.contains(&"ENCLAVE_RUNTIME_PATH=/opt/occlum/build/lib/libocclum-pal.so".to_string()),
        "{env:?}"
    );
    assert!(
        env.contains(&format!("ENCLAVE_RUNTIME_ARGS=/{INSTANCE_DIR}")),
        "{env:?}"
    );
    // The provider key was created once, private.
    let key = node.dir.path().join("keys/signing-key.pem");
    let mode = fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The same image again comes from the cache, with the same description.
    let again = rootfs(&at.path().join("again"));
    let mut s2 = spec(
        &["hello"],
        &[
            "PATH=/usr/bin:/bin",
            "RUNE_CARRIER=occlum",
            "OCCLUM_MAX_NUM_OF_THREADS=8",
        ],
    );
    let cached = run(&node, &again, &mut s2).expect("cached conversion");
    assert!(cached.cached);
    assert_eq!(cached.description, outcome.description);
    assert_eq!(
        fs::read(again.join(INSTANCE_DIR).join(SIGNED_LIBOS)).expect("restored"),
        signed
    );

    // Another setting is another enclave: converted again.
    let other = rootfs(&at.path().join("other"));
    let mut s3 = spec(
        &["hello"],
        &[
            "PATH=/usr/bin:/bin",
            "RUNE_CARRIER=occlum",
            "OCCLUM_MAX_NUM_OF_THREADS=9",
        ],
    );
    assert!(!run(&node, &other, &mut s3).expect("conversion").cached);
}

#[test]
fn hostile_links_never_reach_outside_the_rootfs() {
    let node = node("cache = false");
    let at = tempfile::tempdir().expect("tempdir");
    let root = rootfs(at.path());
    // The instance directory reached through a link to the host's root stays in the image.
    let mut s = spec(
        &["/bin/hello"],
        &[
            "PATH=/bin",
            "RUNE_CARRIER=occlum",
            "ENCLAVE_RUNTIME_ARGS=/rootlink/etc/climb/occlum",
        ],
    );
    let host_etc_before: Vec<_> = fs::read_dir("/etc")
        .expect("/etc")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    run(&node, &root, &mut s).expect("conversion");
    assert!(
        !Path::new("/etc/occlum").exists(),
        "wrote into the host's /etc"
    );
    assert!(root.join("etc/occlum").join(SIGNED_LIBOS).is_file());
    let env = env(&s);
    assert!(
        env.contains(&"ENCLAVE_RUNTIME_ARGS=/etc/occlum".to_string()),
        "{env:?}"
    );
    let host_etc_after: Vec<_> = fs::read_dir("/etc")
        .expect("/etc")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(host_etc_before.len(), host_etc_after.len());
    // The links themselves are still links in the image, unchanged.
    assert_eq!(
        fs::read_link(root.join("etc/shadow-link")).expect("link"),
        Path::new("/etc/shadow")
    );
}

#[test]
fn a_program_outside_the_image_is_refused() {
    let node = node("cache = false");
    let at = tempfile::tempdir().expect("tempdir");
    let root = rootfs(at.path());
    // /rootlink/bin/sh exists on the host, not in the image.
    for program in ["/rootlink/bin/sh", "sh", "bin/hello"] {
        let mut s = spec(&[program], &["PATH=/bin", "RUNE_CARRIER=occlum"]);
        let e = run(&node, &root, &mut s).expect_err(program).to_string();
        assert!(e.contains("process.args[0]"), "{program}: {e}");
    }
}

#[test]
fn bad_settings_and_mounts_name_the_fix() {
    let node = node("cache = false");
    let at = tempfile::tempdir().expect("tempdir");
    let root = rootfs(at.path());
    for (extra, needle) in [
        ("OCCLUM_USER_SPACE_SIZE=lots", "OCCLUM_USER_SPACE_SIZE"),
        ("OCCLUM_MAX_NUM_OF_THREADS=0", "OCCLUM_MAX_NUM_OF_THREADS"),
        ("OCCLUM_PRODUCT_ID=70000", "OCCLUM_PRODUCT_ID"),
        ("ENCLAVE_RUNTIME_ARGS=/a,/b", "ENCLAVE_RUNTIME_ARGS"),
        ("ENCLAVE_TYPE=software", "ENCLAVE_TYPE"),
    ] {
        let mut s = spec(
            &["/bin/hello"],
            &["PATH=/bin", "RUNE_CARRIER=occlum", extra],
        );
        let e = run(&node, &root, &mut s).expect_err(extra).to_string();
        assert!(e.contains(needle), "{extra}: {e}");
    }
    // An instance under one of the container's mounts would be hidden by it.
    let mut s = spec(
        &["/bin/hello"],
        &[
            "PATH=/bin",
            "RUNE_CARRIER=occlum",
            "ENCLAVE_RUNTIME_ARGS=/tmp/inst",
        ],
    );
    s.set_mounts(Some(vec![MountBuilder::default()
        .destination("/tmp")
        .typ("tmpfs")
        .source("tmpfs")
        .build()
        .expect("mount")]));
    let e = run(&node, &root, &mut s).expect_err("hidden").to_string();
    assert!(e.contains("hidden by the container's mount on /tmp"), "{e}");
    assert!(!root.join(INSTANCE_DIR).exists());
}

#[test]
fn a_failing_tool_is_named() {
    let at = tempfile::tempdir().expect("tempdir");
    let broken = at.path().join("sgx_sign");
    fs::write(
        &broken,
        "#!/bin/sh\necho 'Error: the enclave is too large' >&2\nexit 1\n",
    )
    .expect("write");
    fs::set_permissions(&broken, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut node = node("cache = false");
    node.config.sgx_tool_sign = Some(broken);
    let root = rootfs(at.path());
    let mut s = spec(&["/bin/hello"], &["PATH=/bin", "RUNE_CARRIER=occlum"]);
    let e = run(&node, &root, &mut s)
        .expect_err("gendata fails")
        .to_string();
    assert!(
        e.contains("sgx_sign gendata") && e.contains("the enclave is too large"),
        "{e}"
    );
    assert!(
        !root.join(INSTANCE_DIR).exists(),
        "nothing written on failure"
    );

    let mut node = self::node("cache = false");
    node.config.enclave_runtime.occlum.occlum_path = Some(at.path().join("no-occlum"));
    let mut s = spec(&["/bin/hello"], &["PATH=/bin", "RUNE_CARRIER=occlum"]);
    let e = run(&node, &root, &mut s)
        .expect_err("no occlum")
        .to_string();
    assert!(e.contains("occlum init") && e.contains("no-occlum"), "{e}");
}

#[test]
fn client_mode_needs_a_signed_instance() {
    let node = node("signature_method = \"client\"");
    let at = tempfile::tempdir().expect("tempdir");
    let root = rootfs(at.path());
    let mut s = spec(&["/bin/hello"], &["PATH=/bin", "RUNE_CARRIER=occlum"]);
    let e = run(&node, &root, &mut s).expect_err("unsigned").to_string();
    assert!(e.contains("no signed Occlum instance"), "{e}");

    // An instance the author built and signed into the image is accepted as it is.
    let server = self::node("cache = false");
    let mut s = spec(&["/bin/hello"], &["PATH=/bin", "RUNE_CARRIER=occlum"]);
    run(&server, &root, &mut s).expect("author's conversion");
    let mut s = spec(&["/bin/hello"], &["PATH=/bin", "RUNE_CARRIER=occlum"]);
    let outcome = run(&node, &root, &mut s).expect("client-signed instance");
    assert!(
        outcome
            .description
            .contains("client-signed Occlum instance"),
        "{}",
        outcome.description
    );
    assert!(env(&s).contains(&"ENCLAVE_TYPE=intelSgx".to_string()));
}

/// The stand-in's listing of the image it sealed into the instance in `root`.
fn sealed_listing(root: &Path, instance: &Path) -> String {
    fs::read_to_string(root.join(instance).join("build/mount/__ROOT/image.list"))
        .expect("the stand-in's image listing")
}

#[test]
fn directories_linked_out_of_the_image_are_followed_inside_the_copy() {
    let node = node("cache = false");
    let at = tempfile::tempdir().expect("tempdir");
    let root = rootfs(at.path());
    // A host directory the image's links name; nothing may be written to or read from it.
    let outside = at.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("secret"), "host secret").expect("write");
    let inside = outside.strip_prefix("/").expect("absolute tempdir");
    let climb = Path::new("../../../../../../../../../..").join(inside);
    // Where `occlum init` puts Occlum's own files (lib, lib64, opt), the image has links
    // leading out of the rootfs: absolute, climbing, and a chain of links.
    fs::remove_file(root.join("lib")).expect("rm lib");
    symlink(&outside, root.join("lib")).expect("symlink");
    symlink(&climb, root.join("opt")).expect("symlink");
    symlink("/rootlink/opt", root.join("lib64")).expect("symlink");
    symlink(outside.join("secret"), root.join("etc/passwd")).expect("symlink");
    let host_before = fs::read_dir(&outside).expect("outside").count();

    let mut s = spec(&["/bin/hello"], &["PATH=/bin", "RUNE_CARRIER=occlum"]);
    run(&node, &root, &mut s).expect("conversion");

    // Nothing reached the host directory.
    assert_eq!(
        fs::read_dir(&outside).expect("outside").count(),
        host_before
    );
    assert_eq!(
        fs::read_to_string(outside.join("secret")).expect("secret"),
        "host secret"
    );
    // Occlum's loader landed where the container will find it through the link: at the
    // same path inside the image. (The stand-in build also refused any link of the copy that
    // leads out of it when followed on the host.)
    let listing = sealed_listing(&root, Path::new(INSTANCE_DIR));
    for file in ["libc.so", "ld-musl-x86_64.so.1"] {
        let line = format!("f {}/{file} ", inside.display());
        assert!(listing.lines().any(|l| l == line), "{line:?} in\n{listing}");
    }
    // The file link was copied as a link, never read; the image's own links are unchanged.
    assert!(
        listing.lines().any(|l| l.starts_with("l etc/passwd ")),
        "{listing}"
    );
    assert!(!listing.contains("host secret"), "{listing}");
    assert_eq!(fs::read_link(root.join("lib")).expect("link"), outside);
    assert_eq!(fs::read_link(root.join("opt")).expect("link"), climb);
    assert!(
        !root.join(inside).exists(),
        "the rootfs itself gains no copy"
    );
}

/// An executable script at `path` running `body`.
fn script(path: &Path, body: &str) -> PathBuf {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_path_buf()
}

#[test]
fn every_failing_step_is_named_and_leaves_no_instance() {
    let at = tempfile::tempdir().expect("tempdir");
    let occlum = fixtures().join("occlum");
    let sgx_sign = fixtures().join("sgx_sign");
    let failing_build = script(
        &at.path().join("occlum-build-fails"),
        &format!(
            "[ \"$1\" = build ] && {{ echo 'Error: no space left for the SEFS image' >&2; \
             exit 1; }}\nexec {} \"$@\"",
            occlum.display()
        ),
    );
    let junk_material = script(
        &at.path().join("sgx-sign-junk"),
        "while [ $# -gt 1 ]; do [ \"$1\" = -out ] && out=$2; shift; done\n\
         printf 'not SIGSTRUCT' > \"$out\"",
    );
    let failing_catsig = script(
        &at.path().join("sgx-sign-catsig-fails"),
        &format!(
            "[ \"$1\" = catsig ] && {{ echo 'Error: the signature does not verify' >&2; \
             exit 1; }}\nexec {} \"$@\"",
            sgx_sign.display()
        ),
    );
    let bad_key = at.path().join("bad-key.pem");
    fs::write(&bad_key, "not a key\n").expect("write");
    fs::set_permissions(&bad_key, fs::Permissions::from_mode(0o600)).expect("chmod");

    type Setup = Box<dyn Fn(&mut Config)>;
    let cases: Vec<(Setup, &[&str])> = vec![
        (
            Box::new(move |c| c.enclave_runtime.occlum.occlum_path = Some(failing_build.clone())),
            &["occlum build: no space left for the SEFS image"],
        ),
        (
            Box::new(move |c| c.sgx_tool_sign = Some(junk_material.clone())),
            &[
                "sgx_sign gendata",
                "not the 256-byte SIGSTRUCT",
                "sgx_tool_sign",
            ],
        ),
        (
            Box::new(move |c| c.enclave_runtime.signing_key = Some(bad_key.clone())),
            &[
                "sign the SGX signing material",
                "[enclave_runtime] signing_key",
            ],
        ),
        (
            Box::new(move |c| c.sgx_tool_sign = Some(failing_catsig.clone())),
            &["sgx_sign catsig: the signature does not verify"],
        ),
        (
            Box::new(|c| c.sgx_tool_sign = Some("/nonexistent/sgx_sign".into())),
            &["sgx_sign gendata", "cannot run /nonexistent/sgx_sign"],
        ),
    ];
    for (setup, needles) in cases {
        let mut node = node("cache = false");
        setup(&mut node.config);
        let root = rootfs(&at.path().join(unique_dir()));
        let mut s = spec(&["/bin/hello"], &["PATH=/bin", "RUNE_CARRIER=occlum"]);
        let e = run(&node, &root, &mut s).expect_err(needles[0]).to_string();
        for needle in needles {
            assert!(e.contains(needle), "{needle:?} in {e}");
        }
        assert!(
            !root.join(INSTANCE_DIR).exists(),
            "{e}: an instance was written"
        );
        assert!(
            !env(&s).iter().any(|e| e.starts_with("ENCLAVE_")),
            "{e}: settings added on failure"
        );
    }
}

fn unique_dir() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("case-{}", N.fetch_add(1, Ordering::Relaxed))
}

#[test]
fn client_mode_refuses_an_unsigned_instance() {
    let node = node("signature_method = \"client\"");
    let at = tempfile::tempdir().expect("tempdir");
    let root = rootfs(at.path());
    // Built but never signed: the unsigned LibOS is there, the signed one is not.
    let lib = root.join(INSTANCE_DIR).join("build/lib");
    fs::create_dir_all(&lib).expect("mkdir");
    fs::write(lib.join("libocclum-libos.so"), "unsigned").expect("write");
    let mut s = spec(&["/bin/hello"], &["PATH=/bin", "RUNE_CARRIER=occlum"]);
    let e = run(&node, &root, &mut s).expect_err("unsigned").to_string();
    assert!(
        e.contains("no signed Occlum instance")
            && e.contains("libocclum-libos.signed.so is missing"),
        "{e}"
    );
    // A signed enclave that is a link (to the host's, say) is not the image's own file.
    symlink(
        "/opt/occlum/build/lib/libocclum-libos.signed.so",
        lib.join("libocclum-libos.signed.so"),
    )
    .expect("symlink");
    let mut s = spec(&["/bin/hello"], &["PATH=/bin", "RUNE_CARRIER=occlum"]);
    let e = run(&node, &root, &mut s).expect_err("link").to_string();
    assert!(e.contains("is not a file"), "{e}");
    assert!(!env(&s).iter().any(|e| e.starts_with("ENCLAVE_")), "{s:?}");
}
