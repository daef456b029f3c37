//! Server-side signing: `sign --server` and `sign-material` against a real `rune-signd`
//! (its library's server, run in this process on a loopback port, plain HTTP or TLS), and
//! against a relay that hands back the real server's answer altered.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use common::*;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

const TOKEN: &str = "remote-signing-test-token-0123456789";

/// A `rune-signd` serving on a loopback port until dropped.
struct SignServer {
    /// Owns the server's tasks; dropping it stops the server.
    _runtime: tokio::runtime::Runtime,
    url: String,
    signer: String,
}

/// The shared test key (`common::key`) is the server's signing key.
fn server_key() -> RsaPrivateKey {
    let pem = fs::read_to_string(key_path()).expect("read the test key");
    enclave_image::private_key_from_pem(&pem).expect("test key")
}

/// A second RSA-3072 e=3 key, not the server's.
fn other_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| enclave_image::generate_key().expect("keygen"))
}

fn start_server(tls: Option<&Tls>) -> SignServer {
    let signer = rune_signd::Signer::new(server_key()).expect("signer");
    let id = signer.id_hex();
    let service = Arc::new(rune_signd::Service::new(
        signer,
        rune_signd::Token::new(TOKEN).expect("token"),
        rune_signd::Audit::new(None, false).expect("audit"),
        rune_signd::DEFAULT_BODY_LIMIT,
    ));
    let acceptor =
        tls.map(|tls| rune_signd::server::tls_acceptor(&tls.cert, &tls.key).expect("TLS acceptor"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    runtime.spawn(async move {
        let _ = rune_signd::server::serve(listener, acceptor, service).await;
    });
    SignServer {
        _runtime: runtime,
        url: format!("{scheme}://{addr}"),
        signer: id,
    }
}

/// A self-signed server certificate for 127.0.0.1 and localhost.
struct Tls {
    cert: PathBuf,
    key: PathBuf,
}

fn tls_files(dir: &Path, name: &str) -> Tls {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("self-signed certificate");
    let tls = Tls {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    fs::write(&tls.cert, certified.cert.pem()).expect("write cert");
    fs::write(&tls.key, certified.key_pair.serialize_pem()).expect("write key");
    tls
}

fn token_file(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join(format!("token-{}", token.len()));
    fs::write(&path, format!("{token}\n")).expect("write token");
    path
}

fn public_pem(key: &RsaPrivateKey) -> String {
    key.to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem")
}

fn signer_hex(key: &RsaPrivateKey) -> String {
    hex(&enclave_image::signer_of(&key.to_public_key()))
}

fn sign_raw(key: &RsaPrivateKey, material: &[u8]) -> Vec<u8> {
    key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(material))
        .expect("sign")
}

/// How the relay alters a 200 answer.
#[derive(Clone, Copy, Debug)]
enum Tamper {
    /// One bit of the signature flipped.
    FlipSignatureBit,
    /// Another key's valid signature, with the server's public key left in place.
    OtherKeysSignature,
    /// Another key's signature, public key and signer: consistent, but not the server's.
    OtherKeyThroughout,
    /// The `signer` field no longer names the public key.
    WrongSignerField,
    NotJson,
    BadBase64,
}

impl Tamper {
    fn apply(self, answer: &[u8], material: &[u8]) -> Vec<u8> {
        if let Tamper::NotJson = self {
            return b"<html>signed, honest</html>".to_vec();
        }
        let mut json: Value = serde_json::from_slice(answer).expect("server JSON");
        let b64 = base64::engine::general_purpose::STANDARD;
        match self {
            Tamper::FlipSignatureBit => {
                let mut raw = b64
                    .decode(json["signature"].as_str().expect("signature"))
                    .expect("base64");
                raw[100] ^= 0x01;
                json["signature"] = b64.encode(raw).into();
            }
            Tamper::OtherKeysSignature => {
                json["signature"] = b64.encode(sign_raw(other_key(), material)).into();
            }
            Tamper::OtherKeyThroughout => {
                json["signature"] = b64.encode(sign_raw(other_key(), material)).into();
                json["publicKey"] = public_pem(other_key()).into();
                json["signer"] = signer_hex(other_key()).into();
            }
            Tamper::WrongSignerField => json["signer"] = "00".repeat(32).into(),
            Tamper::BadBase64 => json["signature"] = "not*base64!".into(),
            Tamper::NotJson => {}
        }
        json.to_string().into_bytes()
    }
}

/// A plain-HTTP relay in front of `upstream` that alters every 200 answer; returns its URL.
fn tampering_relay(upstream: &str, tamper: Tamper) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let upstream = upstream.to_string();
    // Generated here, not while the client waits for an answer: an RSA-3072 key can take
    // longer than the client's read timeout on a loaded machine.
    if matches!(tamper, Tamper::OtherKeyThroughout) {
        other_key();
    }
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = relay(stream, &upstream, tamper);
        }
    });
    url
}

fn relay(mut stream: TcpStream, upstream: &str, tamper: Tamper) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut material = vec![0; length];
    reader.read_exact(&mut material)?;

    let mut request = ureq::post(&format!("{upstream}{path}"));
    if let Some(authorization) = &authorization {
        request = request.set("Authorization", authorization);
    }
    let (status, answer) = match request.send_bytes(&material) {
        Ok(response) => (response.status(), read_all(response)),
        Err(ureq::Error::Status(code, response)) => (code, read_all(response)),
        Err(e) => (502, e.to_string().into_bytes()),
    };
    let answer = if status == 200 {
        tamper.apply(&answer, &material)
    } else {
        answer
    };
    write!(
        stream,
        "HTTP/1.1 {status} Relayed\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        answer.len()
    )?;
    stream.write_all(&answer)?;
    stream.flush()
}

fn read_all(response: ureq::Response) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = response.into_reader().read_to_end(&mut bytes);
    bytes
}

/// A built, unsigned busybox image.
fn built(dir: &Path) -> PathBuf {
    let rootfs = busybox_rootfs(dir);
    ok(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--writable",
        "/tmp",
        "--product-id",
        "3",
        "--security-version",
        "4",
    ]);
    rootfs
}

fn signature_path(rootfs: &Path) -> PathBuf {
    rootfs.join(".rune-enclave/signature.json")
}

/// The last line of `sign`'s output, which the shim reads: `signer: HEX`.
fn last_line_signer(out: &str) -> String {
    let last = out.lines().last().expect("output");
    last.strip_prefix("signer: ")
        .unwrap_or_else(|| panic!("last line {last:?} is not `signer: HEX`"))
        .to_string()
}

#[test]
fn sign_with_the_server_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(None);
    let rootfs = built(dir.path());
    let token = token_file(dir.path(), TOKEN);
    let out = ok(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url,
        "--token-file",
        s(&token),
    ]);
    assert_eq!(last_line_signer(&out), server.signer, "{out}");
    let measurement = ok(&["measure", "--rootfs", s(&rootfs)]).trim().to_string();
    assert!(
        out.contains(&format!("measurement: {measurement}")),
        "{out}"
    );

    let verified = ok(&["verify", "--rootfs", s(&rootfs)]);
    assert!(
        verified.contains(&format!("signer: {}", server.signer)),
        "{verified}"
    );
    let json: Value =
        serde_json::from_slice(&fs::read(signature_path(&rootfs)).expect("signature.json"))
            .expect("json");
    assert_eq!(json["signer"], server.signer.as_str());
    assert_eq!(json["measurement"], measurement.as_str());

    // The server's key is the one signed with locally: the same (deterministic) signature.
    let remote = fs::read(signature_path(&rootfs)).expect("read");
    let local_out = ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    assert_eq!(fs::read(signature_path(&rootfs)).expect("read"), remote);
    assert_eq!(last_line_signer(&local_out), server.signer);

    // Pinned to the server's own key (PKCS#1 as keygen writes it): accepted; a base URL with
    // a trailing slash is fine.
    let out = ok(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &format!("{}/", server.url),
        "--token-file",
        s(&token),
        "--signer",
        pub_path(),
    ]);
    assert_eq!(last_line_signer(&out), server.signer);
}

#[test]
fn a_missing_or_wrong_token_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(None);
    let rootfs = built(dir.path());

    let err = fails(&["sign", "--rootfs", s(&rootfs), "--server", &server.url]);
    assert!(
        err.contains("the signature server refused the token"),
        "{err}"
    );
    assert!(err.contains("missing bearer token"), "{err}");
    assert!(err.contains("--token-file"), "{err}");
    assert!(!signature_path(&rootfs).exists());

    let wrong = token_file(dir.path(), "not-the-servers-token-at-all");
    let err = fails(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url,
        "--token-file",
        s(&wrong),
    ]);
    assert!(
        err.contains("the signature server refused the token"),
        "{err}"
    );
    assert!(err.contains("invalid bearer token"), "{err}");
    assert!(
        !err.contains("not-the-servers-token"),
        "the token leaked: {err}"
    );
    assert!(!signature_path(&rootfs).exists());

    // A signature already there stays as it was.
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    let before = fs::read(signature_path(&rootfs)).expect("read");
    fails(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url,
        "--token-file",
        s(&wrong),
    ]);
    assert_eq!(fs::read(signature_path(&rootfs)).expect("read"), before);

    // An empty token file is a local mistake, named before anything is sent.
    let empty = dir.path().join("empty-token");
    fs::write(&empty, "\n").expect("write");
    let err = fails(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url,
        "--token-file",
        s(&empty),
    ]);
    assert!(
        err.contains("--token-file") && err.contains("empty"),
        "{err}"
    );
}

#[test]
fn tampered_answers_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(None);
    let token = token_file(dir.path(), TOKEN);
    let rootfs = built(dir.path());
    for (tamper, expected) in [
        (Tamper::FlipSignatureBit, "tampered or wrong signature"),
        (Tamper::OtherKeysSignature, "tampered or wrong signature"),
        (
            Tamper::WrongSignerField,
            "is not the identity of its publicKey",
        ),
        (Tamper::NotJson, "not JSON"),
        (Tamper::BadBase64, "not base64"),
    ] {
        let relay = tampering_relay(&server.url, tamper);
        let err = fails(&[
            "sign",
            "--rootfs",
            s(&rootfs),
            "--server",
            &relay,
            "--token-file",
            s(&token),
        ]);
        assert!(err.contains(expected), "{tamper:?}: {err}");
        assert!(
            !signature_path(&rootfs).exists(),
            "{tamper:?}: a signature was written"
        );
    }

    // A consistent answer under another key is a valid signature by someone else: only a
    // pin tells it apart from the server's.
    let relay = tampering_relay(&server.url, Tamper::OtherKeyThroughout);
    let err = fails(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &relay,
        "--token-file",
        s(&token),
        "--signer",
        pub_path(),
    ]);
    assert!(err.contains("not the --signer"), "{err}");
    assert!(err.contains(&signer_hex(other_key())), "{err}");
    assert!(err.contains(&server.signer), "{err}");
    assert!(!signature_path(&rootfs).exists());
    let out = ok(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &relay,
        "--token-file",
        s(&token),
    ]);
    assert_eq!(last_line_signer(&out), signer_hex(other_key()));
}

#[test]
fn a_pin_on_another_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(None);
    let token = token_file(dir.path(), TOKEN);
    let rootfs = built(dir.path());
    let other_pub = dir.path().join("other.pem");
    fs::write(&other_pub, public_pem(other_key())).expect("write");
    let err = fails(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url,
        "--token-file",
        s(&token),
        "--signer",
        s(&other_pub),
    ]);
    assert!(err.contains("not the --signer"), "{err}");
    assert!(err.contains(s(&other_pub)), "{err}");
    assert!(!signature_path(&rootfs).exists());

    // A pin that is not an enclave key is named before anything is sent.
    let bad = dir.path().join("bad.pem");
    fs::write(&bad, "not a key").expect("write");
    let err = fails(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url,
        "--token-file",
        s(&token),
        "--signer",
        s(&bad),
    ]);
    assert!(err.contains("--signer") && err.contains("bad.pem"), "{err}");
}

#[test]
fn https_needs_and_uses_the_ca_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = tls_files(dir.path(), "server");
    let server = start_server(Some(&tls));
    assert!(server.url.starts_with("https://127.0.0.1:"));
    let token = token_file(dir.path(), TOKEN);
    let rootfs = built(dir.path());

    let out = ok(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url,
        "--token-file",
        s(&token),
        "--ca-cert",
        s(&tls.cert),
    ]);
    assert_eq!(last_line_signer(&out), server.signer);
    let verified = ok(&["verify", "--rootfs", s(&rootfs)]);
    assert!(verified.contains(&server.signer), "{verified}");
    fs::remove_file(signature_path(&rootfs)).expect("rm");

    // Without a CA: refused before connecting, saying what is missing.
    let err = fails(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url,
        "--token-file",
        s(&token),
    ]);
    assert!(err.contains("https needs --ca-cert"), "{err}");

    // Another CA: the TLS handshake fails, and the message points at --ca-cert.
    let stranger = tls_files(dir.path(), "stranger");
    let err = fails(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url,
        "--token-file",
        s(&token),
        "--ca-cert",
        s(&stranger.cert),
    ]);
    assert!(err.contains("cannot get a signature"), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");
    assert!(!signature_path(&rootfs).exists());

    // A CA file without a certificate.
    let err = fails(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url,
        "--ca-cert",
        s(&token),
    ]);
    assert!(
        err.contains("--ca-cert") && err.contains("CERTIFICATE"),
        "{err}"
    );

    // --ca-cert on plain http is a mistake, not ignored.
    let err = fails(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--server",
        &server.url.replace("https://", "http://"),
        "--ca-cert",
        s(&tls.cert),
    ]);
    assert!(err.contains("only used for https"), "{err}");
    assert!(!signature_path(&rootfs).exists());
}

#[test]
fn key_and_server_are_exclusive_and_one_is_required() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = built(dir.path());
    let stderr = |args: &[&str]| {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = stderr(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--key",
        key_path(),
        "--server",
        "http://127.0.0.1:1",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = stderr(&["sign", "--rootfs", s(&rootfs)]);
    assert!(err.contains("--key") && err.contains("--server"), "{err}");
    let err = stderr(&[
        "sign",
        "--rootfs",
        s(&rootfs),
        "--key",
        key_path(),
        "--token-file",
        "/dev/null",
    ]);
    assert!(
        err.contains("cannot be used with") && err.contains("'--token-file <FILE>'"),
        "{err}"
    );
    let err = fails(&["sign", "--rootfs", s(&rootfs), "--server", "127.0.0.1:9443"]);
    assert!(err.contains("http:// or https://"), "{err}");
    assert!(!signature_path(&rootfs).exists());
}

/// SGX signing material as `sgx_sign gendata` writes it (SIGSTRUCT header and body), which
/// rune-signd accepts.
fn sgx_material() -> Vec<u8> {
    let mut body = vec![0u8; rune_signd::sgx::SGX_MATERIAL_LEN];
    body[..12].copy_from_slice(&rune_signd::sgx::SGX_HEADER);
    body[20..24].copy_from_slice(&0x2025_0601u32.to_le_bytes());
    body[24..40].copy_from_slice(&rune_signd::sgx::SGX_HEADER2);
    body[156..164].copy_from_slice(&0x4u64.to_le_bytes());
    body[188..220].copy_from_slice(&[0xa7; 32]);
    body[252..254].copy_from_slice(&9u16.to_le_bytes());
    body[254..256].copy_from_slice(&1u16.to_le_bytes());
    rune_signd::sgx::parse(&body).expect("well-formed SGX material");
    body
}

/// Checks `signature` over `material` with the PEM public key, with the rsa crate and with
/// openssl; returns the signer identity of the key.
fn check_material_signature(material: &Path, signature: &Path, public: &Path) -> String {
    let raw = fs::read(signature).expect("signature");
    assert_eq!(raw.len(), 384);
    let pem = fs::read_to_string(public).expect("public key");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let key = enclave_image::public_key_from_pem(&pem).expect("RSA-3072 e=3 public key");
    let bytes = fs::read(material).expect("material");
    key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(&bytes), &raw)
        .expect("the signature verifies over the material");
    for path in [signature, public] {
        let mode = fs::metadata(path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", path.display());
    }
    if have("openssl") {
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify", s(public), "-signature"])
            .arg(signature)
            .arg(material)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    hex(&enclave_image::signer_of(&key))
}

fn no_temporaries(dir: &Path) {
    let left: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn sign_material_with_a_key_and_with_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).expect("mkdir");
    let material = dir.path().join("gendata.bin");
    fs::write(&material, sgx_material()).expect("write");
    let sig = out_dir.join("signature.bin");
    let public = out_dir.join("public.pem");

    let out = ok(&[
        "sign-material",
        "--material",
        s(&material),
        "--key",
        key_path(),
        "--signature-out",
        s(&sig),
        "--public-key-out",
        s(&public),
    ]);
    let local_signer = check_material_signature(&material, &sig, &public);
    assert_eq!(last_line_signer(&out), local_signer);
    let local_signature = fs::read(&sig).expect("read");
    no_temporaries(&out_dir);

    // With the server (same key): outputs replaced, the same deterministic signature.
    let server = start_server(None);
    assert_eq!(server.signer, local_signer);
    fs::write(&sig, "stale").expect("write");
    fs::write(&public, "stale").expect("write");
    let token = token_file(dir.path(), TOKEN);
    let out = ok(&[
        "sign-material",
        "--material",
        s(&material),
        "--server",
        &server.url,
        "--token-file",
        s(&token),
        "--signer",
        pub_path(),
        "--signature-out",
        s(&sig),
        "--public-key-out",
        s(&public),
    ]);
    assert_eq!(last_line_signer(&out), server.signer);
    assert_eq!(
        check_material_signature(&material, &sig, &public),
        server.signer
    );
    assert_eq!(fs::read(&sig).expect("read"), local_signature);
    no_temporaries(&out_dir);

    // The software-enclave material from gen-material works as well.
    let rootfs = built(dir.path());
    let soft = dir.path().join("material.txt");
    ok(&["gen-material", "--rootfs", s(&rootfs), "--out", s(&soft)]);
    ok(&[
        "sign-material",
        "--material",
        s(&soft),
        "--server",
        &server.url,
        "--token-file",
        s(&token),
        "--signature-out",
        s(&sig),
        "--public-key-out",
        s(&public),
    ]);
    check_material_signature(&soft, &sig, &public);
    // ... and attaches to the image it was made for.
    ok(&[
        "attach",
        "--rootfs",
        s(&rootfs),
        "--public-key",
        s(&public),
        "--signature",
        s(&sig),
    ]);
    ok(&["verify", "--rootfs", s(&rootfs)]);
}

#[test]
fn sign_material_refusals_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(None);
    let token = token_file(dir.path(), TOKEN);
    let material = dir.path().join("gendata.bin");
    fs::write(&material, sgx_material()).expect("write");
    let sig = dir.path().join("sig.bin");
    let public = dir.path().join("pub.pem");
    let sign = |server_url: &str, material: &Path, extra: &[&str]| {
        let mut args = vec![
            "sign-material",
            "--material",
            s(material),
            "--server",
            server_url,
            "--signature-out",
            s(&sig),
            "--public-key-out",
            s(&public),
        ];
        args.extend_from_slice(extra);
        fails(&args)
    };
    let with_token = ["--token-file", s(&token)];

    let relay = tampering_relay(&server.url, Tamper::FlipSignatureBit);
    let err = sign(&relay, &material, &with_token);
    assert!(err.contains("tampered or wrong signature"), "{err}");

    let relay = tampering_relay(&server.url, Tamper::OtherKeyThroughout);
    let err = sign(
        &relay,
        &material,
        &["--token-file", s(&token), "--signer", pub_path()],
    );
    assert!(err.contains("not the --signer"), "{err}");

    let err = sign(&server.url, &material, &[]);
    assert!(
        err.contains("the signature server refused the token"),
        "{err}"
    );

    // The server signs only signing material; its 400 message is passed on.
    let junk = dir.path().join("junk.bin");
    fs::write(&junk, b"please sign this").expect("write");
    let err = sign(&server.url, &junk, &with_token);
    assert!(err.contains("400"), "{err}");
    assert!(err.contains("refused to sign"), "{err}");

    assert!(!sig.exists() && !public.exists());
    no_temporaries(dir.path());

    let err = fails(&[
        "sign-material",
        "--material",
        s(&material),
        "--key",
        key_path(),
        "--signature-out",
        s(&sig),
        "--public-key-out",
        s(&sig),
    ]);
    assert!(err.contains("the same file"), "{err}");
    assert!(!sig.exists());
}
