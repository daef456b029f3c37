//! Runs the real `rune-signd` binary over TLS on an ephemeral loopback port.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use base64::Engine;
use enclave_image::{
    public_key_from_pem, signer_of, signing_material, EnvPolicy, Manifest, Signature,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

const TOKEN: &str = "integration-test-token-0123456789";

struct Server {
    child: Child,
    addr: String,
    stderr: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    cert_pem: String,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
                .expect("self-signed cert");
        let cert_pem = certified.cert.pem();
        fs::write(dir.path().join("tls.crt"), &cert_pem).expect("write cert");
        fs::write(
            dir.path().join("tls.key"),
            certified.key_pair.serialize_pem(),
        )
        .expect("write key");
        fs::write(dir.path().join("token"), format!("{TOKEN}\n")).expect("write token");
        Self { dir, cert_pem }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self) -> Command {
        self.command_on("127.0.0.1:0")
    }

    fn command_on(&self, listen: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rune-signd"));
        command
            .arg("--listen")
            .arg(listen)
            .arg("--key")
            .arg(self.path("signing.pem"))
            .arg("--token-file")
            .arg(self.path("token"));
        command
    }

    fn start(&self) -> Server {
        let mut command = self.command();
        command
            .arg("--tls-cert")
            .arg(self.path("tls.crt"))
            .arg("--tls-key")
            .arg(self.path("tls.key"))
            .arg("--audit-log")
            .arg(self.path("audit.log"));
        start(command, &self.path("stderr"))
    }

    fn agent(&self) -> ureq::Agent {
        let mut roots = rustls::RootCertStore::empty();
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("cert der");
        roots.add(cert).expect("add root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        ureq::AgentBuilder::new()
            .tls_config(Arc::new(config))
            .build()
    }
}

fn start(mut command: Command, stderr: &Path) -> Server {
    let log = fs::File::create(stderr).expect("stderr file");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn rune-signd");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read stdout");
    let Some(rest) = line.strip_prefix("listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "rune-signd did not start: stdout {line:?}, stderr {:?}",
            fs::read_to_string(stderr).unwrap_or_default()
        );
    };
    let addr = rest.split(' ').next().expect("address").to_string();
    Server {
        child,
        addr,
        stderr: stderr.to_path_buf(),
    }
}

/// (status, body) whatever the status.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Vec<u8>) {
    let mut request = agent.request(method, url);
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let result = match body {
        Some(body) => request.set("Content-Type", "text/plain").send_bytes(body),
        None => request.call(),
    };
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let mut bytes = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut bytes)
        .expect("read body");
    (status, bytes)
}

fn manifest() -> Manifest {
    Manifest {
        version: 1,
        entrypoints: vec!["/bin/app".into()],
        trusted_files: BTreeMap::from([
            ("/bin/app".to_string(), "ab".repeat(32)),
            ("/lib/libc.so.6".to_string(), "cd".repeat(32)),
        ]),
        writable_paths: vec!["/tmp".into()],
        env: EnvPolicy {
            default: vec!["PATH=/bin".into()],
            host_allowed: vec!["TZ".into()],
        },
        memory_size: 64 << 20,
        max_threads: 8,
        max_processes: 2,
        debug: false,
        product_id: 3,
        security_version: 9,
    }
}

#[test]
fn signs_over_tls_with_token_and_audits() {
    let setup = Setup::new();
    assert!(!setup.path("signing.pem").exists());
    let server = setup.start();
    let mode = fs::metadata(setup.path("signing.pem"))
        .expect("key created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key mode {mode:o}");

    let agent = setup.agent();
    let base = format!("https://{}", server.addr);
    let sign_url = format!("{base}/api/v1/signature/pkcs1");
    let key_url = format!("{base}/api/v1/signature/public-key");

    assert_eq!(
        call(&agent, "GET", &format!("{base}/ping"), None, None),
        (200, b"ping".to_vec())
    );
    assert_eq!(
        call(&agent, "GET", &format!("{base}/healthz"), None, None),
        (200, b"ok".to_vec())
    );

    // The public key, only with the token.
    assert_eq!(call(&agent, "GET", &key_url, None, None).0, 401);
    let (status, pem) = call(&agent, "GET", &key_url, Some(TOKEN), None);
    assert_eq!(status, 200);
    let pem = String::from_utf8(pem).expect("utf8 pem");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let public = public_key_from_pem(&pem).expect("public key");

    // Signing the material of a manifest; the signature attaches.
    let manifest = manifest();
    let material = signing_material(&manifest);
    let (status, body) = call(&agent, "POST", &sign_url, Some(TOKEN), Some(&material));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["publicKey"].as_str(), Some(pem.as_str()));
    let signer_hex = hex::encode(signer_of(&public));
    assert_eq!(json["signer"].as_str(), Some(signer_hex.as_str()));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(json["signature"].as_str().expect("signature field"))
        .expect("base64");
    assert_eq!(raw.len(), 384);
    let attached = Signature::attach(&manifest, &public, &raw).expect("signature attaches");
    assert_eq!(attached.signer, signer_hex);
    let verified = attached.verify(&manifest).expect("verifies");
    assert_eq!(verified.measurement, manifest.measurement());

    // A tampered signature is refused.
    let mut tampered = raw.clone();
    tampered[100] ^= 0x01;
    assert!(Signature::attach(&manifest, &public, &tampered).is_err());
    // So is the signature for a different manifest.
    let mut other = manifest.clone();
    other.security_version += 1;
    assert!(Signature::attach(&other, &public, &raw).is_err());

    // No token, a wrong token.
    let (status, body) = call(&agent, "POST", &sign_url, None, Some(&material));
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, _) = call(
        &agent,
        "POST",
        &sign_url,
        Some("not-the-right-token-at-all"),
        Some(&material),
    );
    assert_eq!(status, 401);

    // Not signing material; too large.
    let (status, body) = call(
        &agent,
        "POST",
        &sign_url,
        Some(TOKEN),
        Some(b"hello, sign me"),
    );
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("RUNE-SOFTWARE-ENCLAVE-SIGNING-MATERIAL-V1"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let mut padded = material.clone();
    padded.extend_from_slice(b"trailing\n");
    assert_eq!(
        call(&agent, "POST", &sign_url, Some(TOKEN), Some(&padded)).0,
        400
    );
    let huge = vec![b'a'; 100 * 1024];
    assert_eq!(
        call(&agent, "POST", &sign_url, Some(TOKEN), Some(&huge)).0,
        413
    );
    assert_eq!(
        call(&agent, "GET", &format!("{base}/nope"), None, None).0,
        404
    );

    // Exactly one audit line, for the one signature, in the file and on stderr.
    let audit = fs::read_to_string(setup.path("audit.log")).expect("audit log");
    let lines: Vec<&str> = audit.lines().collect();
    assert_eq!(lines.len(), 1, "{audit}");
    let entry: serde_json::Value = serde_json::from_str(lines[0]).expect("audit json");
    assert_eq!(entry["event"], "sign");
    assert_eq!(
        entry["measurement"].as_str(),
        Some(hex::encode(manifest.measurement()).as_str())
    );
    assert_eq!(entry["signer"].as_str(), Some(signer_hex.as_str()));
    assert!(entry["client"]
        .as_str()
        .expect("client")
        .starts_with("127.0.0.1:"));
    assert!(entry["time"].as_str().expect("time").ends_with('Z'));
    let stderr = fs::read_to_string(&server.stderr).expect("stderr");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("\"event\":\"sign\""))
            .count(),
        1,
        "{stderr}"
    );
    drop(server);

    // Restarting reuses the key.
    let server = setup.start();
    let (status, again) = call(
        &setup.agent(),
        "GET",
        &format!("https://{}/api/v1/signature/public-key", server.addr),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(again).expect("utf8"), pem);
}

fn fails(mut command: Command) -> String {
    let output = command.output().expect("run rune-signd");
    assert!(!output.status.success(), "it should have refused to start");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn refuses_bad_configuration() {
    let setup = Setup::new();
    fs::write(setup.path("signing.pem"), "not a key").expect("write");
    let mut command = setup.command();
    command.arg("--insecure-plain-http");
    let stderr = fails(command);
    assert!(stderr.contains("signing key"), "{stderr}");

    // No TLS and no explicit plain-HTTP flag.
    let stderr = fails(setup.command());
    assert!(stderr.contains("--tls-cert"), "{stderr}");

    // Plain HTTP off loopback.
    let mut command = setup.command_on("0.0.0.0:0");
    command.arg("--insecure-plain-http");
    let stderr = fails(command);
    assert!(stderr.contains("loopback"), "{stderr}");

    // A short token.
    fs::write(setup.path("token"), "short\n").expect("write");
    let mut command = setup.command();
    command.arg("--insecure-plain-http");
    let stderr = fails(command);
    assert!(stderr.contains("at least 16"), "{stderr}");
}

#[test]
fn plain_http_on_loopback_when_asked() {
    let setup = Setup::new();
    let mut command = setup.command();
    command.arg("--insecure-plain-http");
    let server = start(command, &setup.path("stderr"));
    let agent = ureq::AgentBuilder::new().build();
    let base = format!("http://{}", server.addr);
    assert_eq!(
        call(&agent, "GET", &format!("{base}/healthz"), None, None),
        (200, b"ok".to_vec())
    );
    let material = signing_material(&manifest());
    let (status, _) = call(
        &agent,
        "POST",
        &format!("{base}/api/v1/signature/pkcs1"),
        Some(TOKEN),
        Some(&material),
    );
    assert_eq!(status, 200);
}
