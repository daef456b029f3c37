//! Server-side signing through a remote signature server: the shim converts a container with
//! `RUNE_CARRIER=software` and has the image signed by a real `rune-signd` (this workspace's
//! build) over TLS with a bearer token, instead of with the node's own key. A wrong token
//! fails that container's Create, clearly, and nothing else. (Tampered or substituted server
//! answers are refused by `rune-enclave`, which the shim runs: crates/rune-enclave/tests.)

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rune_test_support::*;

/// A running `rune-signd` on a free loopback port, killed on drop.
struct Signd {
    child: Child,
    url: String,
    ca: PathBuf,
    signer: String,
    audit: PathBuf,
}

impl Drop for Signd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signd_binary() -> PathBuf {
    let here = profile_dir().join("rune-signd");
    if here.is_file() {
        here
    } else {
        cargo_build_bin("rune-signd", "rune-signd", "shim-test-signd")
    }
}

impl Signd {
    fn start(dir: &Path, token: &str) -> Signd {
        let (tool, _) = enclave_tools();
        let key = dir.join("server-key.pem");
        let o = run_cmd(
            Command::new(tool).arg("keygen").arg("--out").arg(&key),
            Duration::from_secs(60),
        )
        .ok();
        let signer = o.stdout.trim().to_string();
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("certificate");
        let (cert, tls_key) = (dir.join("server.crt"), dir.join("server.key"));
        fs::write(&cert, certified.cert.pem()).expect("write cert");
        fs::write(&tls_key, certified.key_pair.serialize_pem()).expect("write key");
        let token_file = dir.join("server-token");
        fs::write(&token_file, format!("{token}\n")).expect("write token");
        let audit = dir.join("audit.log");
        let mut child = Command::new(signd_binary())
            .args(["--listen", "127.0.0.1:0", "--key"])
            .arg(&key)
            .arg("--token-file")
            .arg(&token_file)
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&tls_key)
            .arg("--audit-log")
            .arg(&audit)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rune-signd");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the bound address");
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Signd {
            child,
            url: format!("https://{addr}"),
            ca: cert,
            signer,
            audit,
        }
    }
}

/// A node whose shim signs through `signd` with `token`.
fn node(signd: &Signd, dir: &Path, token: &str) -> Node {
    let token_file = dir.join(format!("client-token-{}", token.len()));
    fs::write(&token_file, format!("{token}\n")).expect("write token");
    Node::with_tail(
        "",
        std::slice::from_ref(&signd.signer),
        &format!(
            "[signature]\nserver_address = \"{}\"\ntoken_file = \"{}\"\nca_cert = \"{}\"\n",
            signd.url,
            token_file.display(),
            signd.ca.display()
        ),
    )
}

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

const TOKEN: &str = "a-bearer-token-of-enough-length";

#[test]
fn the_signature_server_signs_with_a_valid_token() {
    let dir = TempDir::new("signd");
    let signd = Signd::start(dir.path(), TOKEN);
    let node = node(&signd, dir.path(), TOKEN);
    let c = containerd(&node);

    let id = unique("remote");
    let o = c.run(
        &["--rm", "--env", "RUNE_CARRIER=software"],
        &id,
        &["sh", "-c", "echo signed-remotely"],
    );
    assert_eq!(o.stdout, "signed-remotely\n", "{o}\n{}", c.log_tail());
    let log = c.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("container {id}: carrier software converted")))
        .unwrap_or_else(|| panic!("no conversion line\n{}", c.log_tail()));
    // The server's key signed, not the node's own.
    assert!(line.contains(&format!("signer {}", signd.signer)), "{line}");
    assert!(!line.contains(&node.signer), "{line}");
    let audit = fs::read_to_string(&signd.audit).expect("audit log");
    assert_eq!(
        audit.lines().count(),
        1,
        "one audit line per signature: {audit}"
    );
}

#[test]
fn a_wrong_token_fails_that_create_only() {
    let dir = TempDir::new("signd");
    let signd = Signd::start(dir.path(), TOKEN);
    let node = node(&signd, dir.path(), "not-the-token-the-server-wants");
    let c = containerd(&node);

    let id = unique("badtoken");
    let o = c.run(
        &["--rm", "--env", "RUNE_CARRIER=software"],
        &id,
        &["echo", "never"],
    );
    assert!(!o.success(), "{o}");
    assert!(!o.stdout.contains("never"), "{o}");
    eprintln!("the refused Create said: {}", o.stderr.trim());
    assert!(
        o.stderr.contains("signature server") && o.stderr.contains("[signature] token_file"),
        "the error names the refused token: {o}\n{}",
        c.log_tail()
    );
    let _ = c.ctr(&["containers", "rm", &id]);
    assert!(!c.rune_state_exists(&id));
    assert!(
        fs::read_to_string(&signd.audit)
            .unwrap_or_default()
            .is_empty(),
        "nothing was signed"
    );

    // The shim's containerd still runs plain containers.
    let id = unique("plain");
    let o = c.run(&["--rm"], &id, &["echo", "plain"]);
    assert_eq!(o.stdout, "plain\n", "{o}");
}
