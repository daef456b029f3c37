//! Signing (one step and two steps with openssl), verification, tampering, signer policy,
//! inspect, keygen; and a recomputation of measurement, signing material and signer
//! identity from the files alone, as docs/enclave-image.md describes them.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn built(dir: &Path, extra: &[&str]) -> std::path::PathBuf {
    let rootfs = busybox_rootfs(dir);
    let mut args = vec![
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--writable",
        "/tmp",
        "--env",
        "PATH=/bin",
        "--host-env",
        "TZ",
    ];
    args.extend_from_slice(extra);
    ok(&args);
    rootfs
}

fn signature(rootfs: &Path) -> Value {
    let text = fs::read(rootfs.join(".rune-enclave/signature.json")).expect("signature.json");
    serde_json::from_slice(&text).expect("json")
}

fn openssl(args: &[&str]) -> std::process::Output {
    assert!(
        have("openssl"),
        "the openssl CLI is needed (apt-get install openssl)"
    );
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn sign_verify_inspect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = built(
        dir.path(),
        &["--product-id", "5", "--security-version", "2"],
    );
    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(err.contains("not signed"), "{err}");

    let out = ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    let measurement = ok(&["measure", "--rootfs", s(&rootfs)]).trim().to_string();
    let sig = signature(&rootfs);
    assert_eq!(sig["measurement"], measurement.as_str());
    assert!(out.contains(&measurement), "{out}");
    let signer = sig["signer"].as_str().expect("signer").to_string();

    let out = ok(&["verify", "--rootfs", s(&rootfs)]);
    assert!(
        out.contains(&format!("measurement: {measurement}")),
        "{out}"
    );
    assert!(out.contains(&format!("signer: {signer}")), "{out}");
    assert!(out.contains("trusted files: 2 intact"), "{out}");

    let text = ok(&["inspect", "--rootfs", s(&rootfs)]);
    for expected in [
        format!("measurement:       {measurement}"),
        "signature:         valid".to_string(),
        format!("signer:            {signer}"),
        "debug:             false".to_string(),
        "product id:        5".to_string(),
        "security version:  2".to_string(),
        // The symlink's target is listed too: the PAL starts /bin/sh only if it is.
        "entrypoints:       /bin/sh /bin/busybox".to_string(),
        "writable paths:    /tmp".to_string(),
        "memory size:       268435456 (256.0 MiB)".to_string(),
        "max threads:       64".to_string(),
        "max processes:     16".to_string(),
        "trusted files:     2".to_string(),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in {text}");
    }
    let json: Value =
        serde_json::from_str(&ok(&["inspect", "--rootfs", s(&rootfs), "--json"])).expect("json");
    assert_eq!(json["measurement"], measurement.as_str());
    assert_eq!(json["signer"], signer.as_str());
    assert_eq!(json["signature"], "valid");
    assert_eq!(json["product_id"], 5);
    assert_eq!(json["security_version"], 2);
    assert_eq!(json["limits"]["max_threads"], 64);
    assert_eq!(json["counts"]["trusted_files"], 2);
    assert_eq!(json["env"]["host_allowed"], serde_json::json!(["TZ"]));

    ok(&["measure", "--rootfs", s(&rootfs), "--recompute"]);
}

#[test]
fn a_changed_trusted_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = built(dir.path(), &[]);
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    let mut bytes = fs::read(rootfs.join("bin/busybox")).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(rootfs.join("bin/busybox"), &bytes).expect("write");

    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(err.contains("trusted file /bin/busybox"), "{err}");
    assert!(err.contains("content differs"), "{err}");
    assert!(
        err.contains("/bin/sh"),
        "both paths of the file fail: {err}"
    );

    let out = run(&["measure", "--rootfs", s(&rootfs), "--recompute"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("differs: /bin/busybox"), "{stdout}");
    assert!(
        stdout.contains("measurement of the rootfs as it is now"),
        "{stdout}"
    );

    // Signing a stale manifest is refused too.
    let err = fails(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    assert!(
        err.contains("/bin/busybox") && err.contains("build"),
        "{err}"
    );
    let err = fails(&["gen-material", "--rootfs", s(&rootfs), "--out", "-"]);
    assert!(err.contains("/bin/busybox"), "{err}");

    fs::remove_file(rootfs.join("bin/busybox")).expect("rm");
    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(
        err.contains("/bin/busybox does not exist in the rootfs"),
        "{err}"
    );
}

#[test]
fn an_edited_manifest_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = built(dir.path(), &[]);
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    let path = rootfs.join(".rune-enclave/manifest.json");
    let text = fs::read_to_string(&path).expect("read");
    fs::write(
        &path,
        text.replace("\"max_threads\": 64", "\"max_threads\": 65"),
    )
    .expect("write");
    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(err.contains("signature.json"), "{err}");
    assert!(
        err.contains("does not match the signed measurement"),
        "{err}"
    );

    // Making the image debug without re-signing.
    fs::write(&path, text.replace("\"debug\": false", "\"debug\": true")).expect("write");
    assert!(fails(&["verify", "--rootfs", s(&rootfs)]).contains("edited"));

    // Garbage is named with the file.
    fs::write(&path, "{\"version\": 1,").expect("write");
    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(err.contains("manifest.json"), "{err}");

    // A trusted file made writable, signed by the key holder: still refused.
    let bad = text.replace("\"/tmp\"", "\"/bin\"");
    assert_ne!(bad, text);
    fs::write(&path, &bad).expect("write");
    fs::remove_file(rootfs.join(".rune-enclave/signature.json")).expect("rm");
    let material = Command::new(BIN)
        .args(["gen-material", "--rootfs", s(&rootfs), "--out", "-"])
        .output()
        .expect("run");
    assert!(material.status.success());
    let dir2 = tempfile::tempdir().expect("tempdir");
    fs::write(dir2.path().join("m"), &material.stdout).expect("write");
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        key_path(),
        "-out",
        s(&dir2.path().join("sig")),
        s(&dir2.path().join("m")),
    ]);
    ok(&[
        "attach",
        "--rootfs",
        s(&rootfs),
        "--public-key",
        pub_path(),
        "--signature",
        s(&dir2.path().join("sig")),
    ]);
    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(
        err.contains("trusted file /bin/") && err.contains("writable path /bin"),
        "{err}"
    );

    // A forged signature value.
    fs::write(&path, &text).expect("write");
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    ok(&["verify", "--rootfs", s(&rootfs)]);
    let sig_path = rootfs.join(".rune-enclave/signature.json");
    let mut sig = signature(&rootfs);
    let mut raw = unhex(sig["signature"].as_str().expect("hex"));
    raw[100] ^= 1;
    sig["signature"] = Value::String(hex(&raw));
    fs::write(&sig_path, serde_json::to_vec(&sig).expect("json")).expect("write");
    let err = fails(&["verify", "--rootfs", s(&rootfs)]);
    assert!(err.contains("does not verify"), "{err}");
}

#[test]
fn signer_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = built(&dir.path().join("release"), &[]);
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    let signer = signature(&rootfs)["signer"]
        .as_str()
        .expect("signer")
        .to_string();

    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        format!("allowed_signers = [\"{}\"]\n", "ab".repeat(32)),
    )
    .expect("write");
    let err = fails(&["verify", "--rootfs", s(&rootfs), "--policy", s(&policy)]);
    assert!(err.contains("policy.toml"), "{err}");
    assert!(
        err.contains(&format!("signer {signer} is not in allowed_signers")),
        "{err}"
    );

    fs::write(
        &policy,
        format!("allowed_signers = [\"{}\"]\n", signer.to_uppercase()),
    )
    .expect("write");
    let out = ok(&["verify", "--rootfs", s(&rootfs), "--policy", s(&policy)]);
    assert!(out.contains("admits"), "{out}");

    // A debug image under allow_debug = false, then true.
    let debug = built(&dir.path().join("debug"), &["--debug"]);
    ok(&["sign", "--rootfs", s(&debug), "--key", key_path()]);
    let err = fails(&["verify", "--rootfs", s(&debug), "--policy", s(&policy)]);
    assert!(
        err.contains("debug enclave") && err.contains("allow_debug"),
        "{err}"
    );
    fs::write(
        &policy,
        format!("allowed_signers = [\"{signer}\"]\nallow_debug = true\n"),
    )
    .expect("write");
    ok(&["verify", "--rootfs", s(&debug), "--policy", s(&policy)]);

    // Broken and missing policies are named.
    fs::write(&policy, "allowed_signers = [\"nope\"]\n").expect("write");
    let err = fails(&["verify", "--rootfs", s(&rootfs), "--policy", s(&policy)]);
    assert!(
        err.contains("policy.toml") && err.contains("64 hex"),
        "{err}"
    );
    let missing = dir.path().join("missing.toml");
    let err = fails(&["verify", "--rootfs", s(&rootfs), "--policy", s(&missing)]);
    assert!(err.contains("missing.toml"), "{err}");
}

/// Two-step signing with the openssl CLI, and openssl checking what rune-enclave wrote.
#[test]
fn two_step_signing_with_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = built(&dir.path().join("two"), &["--security-version", "9"]);
    let material = dir.path().join("material.bin");
    ok(&[
        "gen-material",
        "--rootfs",
        s(&rootfs),
        "--out",
        s(&material),
    ]);
    let stdout_material = Command::new(BIN)
        .args(["gen-material", "--rootfs", s(&rootfs), "--out", "-"])
        .output()
        .expect("run");
    assert_eq!(stdout_material.stdout, fs::read(&material).expect("read"));

    let sig = dir.path().join("sig.bin");
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        key_path(),
        "-out",
        s(&sig),
        s(&material),
    ]);
    assert_eq!(fs::metadata(&sig).expect("sig").len(), 384);

    // The PKCS#1 public key keygen wrote, and an SPKI one from openssl, both work.
    let spki = dir.path().join("pub-spki.pem");
    openssl(&["rsa", "-in", key_path(), "-pubout", "-out", s(&spki)]);
    for public in [pub_path(), s(&spki)] {
        let out = ok(&[
            "attach",
            "--rootfs",
            s(&rootfs),
            "--public-key",
            public,
            "--signature",
            s(&sig),
        ]);
        assert!(out.contains("(verified)"), "{out}");
        ok(&["verify", "--rootfs", s(&rootfs)]);
    }
    let two_step = fs::read(rootfs.join(".rune-enclave/signature.json")).expect("read");

    // PKCS#1 v1.5 is deterministic: one-step signing writes the very same file.
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    assert_eq!(
        fs::read(rootfs.join(".rune-enclave/signature.json")).expect("read"),
        two_step
    );

    // openssl verifies the signature in signature.json over the material.
    let sig_json = signature(&rootfs);
    let from_json = dir.path().join("from-json.bin");
    fs::write(
        &from_json,
        unhex(sig_json["signature"].as_str().expect("hex")),
    )
    .expect("write");
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        s(&spki),
        "-signature",
        s(&from_json),
        s(&material),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));

    // Bad signatures are refused before anything is written.
    fs::remove_file(rootfs.join(".rune-enclave/signature.json")).expect("rm");
    let other = dir.path().join("other.bin");
    fs::write(&other, b"some other material\n").expect("write");
    let bad = dir.path().join("bad.bin");
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        key_path(),
        "-out",
        s(&bad),
        s(&other),
    ]);
    let err = fails(&[
        "attach",
        "--rootfs",
        s(&rootfs),
        "--public-key",
        pub_path(),
        "--signature",
        s(&bad),
    ]);
    assert!(
        err.contains("--signature") && err.contains("gen-material"),
        "{err}"
    );
    let hexed = dir.path().join("hex.txt");
    fs::write(&hexed, hex(&fs::read(&sig).expect("read"))).expect("write");
    let err = fails(&[
        "attach",
        "--rootfs",
        s(&rootfs),
        "--public-key",
        pub_path(),
        "--signature",
        s(&hexed),
    ]);
    assert!(err.contains("768 bytes") && err.contains("384"), "{err}");
    let err = fails(&[
        "attach",
        "--rootfs",
        s(&rootfs),
        "--public-key",
        key_path(),
        "--signature",
        s(&sig),
    ]);
    assert!(err.contains("--public-key"), "{err}");
    assert!(!rootfs.join(".rune-enclave/signature.json").exists());

    // A key of the wrong shape (RSA-2048, e=65537) is refused for signing.
    let small = dir.path().join("small.pem");
    openssl(&["genrsa", "-out", s(&small), "2048"]);
    let err = fails(&["sign", "--rootfs", s(&rootfs), "--key", s(&small)]);
    assert!(err.contains("--key") && err.contains("RSA-3072"), "{err}");
}

/// What docs/enclave-image.md says a third party does, done here from the JSON files alone.
#[test]
fn measurement_material_and_signer_recomputed_from_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = built(
        dir.path(),
        &[
            "--entrypoint",
            "/bin/busybox",
            "--env",
            "HOME=/",
            "--writable",
            "/var",
            "--debug",
            "--product-id",
            "3",
        ],
    );
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    let m = manifest(&rootfs);
    let sig = signature(&rootfs);

    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_str().expect("string").to_string())
            .collect()
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v.dedup();
        v
    };
    let mut enc = String::new();
    let mut line = |k: &str, v: &str| enc.push_str(&format!("{k}={v}\n"));
    line("header", "RUNE-SOFTWARE-ENCLAVE-MANIFEST-V1");
    line("version", &m["version"].to_string());
    line("debug", if m["debug"] == true { "1" } else { "0" });
    for key in [
        "product_id",
        "security_version",
        "memory_size",
        "max_threads",
        "max_processes",
    ] {
        line(key, &m[key].to_string());
    }
    for e in sorted(strings(&m["entrypoints"])) {
        line("entrypoint", &e);
    }
    for e in strings(&m["env"]["default"]) {
        line("env_default", &e);
    }
    for e in sorted(strings(&m["env"]["host_allowed"])) {
        line("env_host_allowed", &e);
    }
    for e in sorted(strings(&m["writable_paths"])) {
        line("writable_path", &e);
    }
    let files = m["trusted_files"].as_object().expect("object");
    let mut paths: Vec<&String> = files.keys().collect();
    paths.sort();
    for path in paths {
        line(
            "trusted_file",
            &format!("{} {path}", files[path].as_str().expect("digest")),
        );
    }
    let measurement = sha256_hex(enc.as_bytes());
    assert_eq!(measurement, ok(&["measure", "--rootfs", s(&rootfs)]).trim());
    assert_eq!(sig["measurement"], measurement.as_str());

    let material = format!(
        "RUNE-SOFTWARE-ENCLAVE-SIGNING-MATERIAL-V1\nmeasurement={measurement}\ndebug=1\n\
         product_id=3\nsecurity_version=0\n"
    );
    let out = Command::new(BIN)
        .args(["gen-material", "--rootfs", s(&rootfs), "--out", "-"])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8(out.stdout).expect("utf-8"), material);

    // Signer: SHA-256 of the modulus as 384 little-endian bytes.
    let mut modulus = unhex(sig["modulus"].as_str().expect("modulus"));
    assert_eq!(modulus.len(), 384);
    modulus.reverse();
    assert_eq!(sig["signer"], sha256_hex(&modulus).as_str());
    assert_eq!(sig["exponent"], 3);
    // And the modulus is the key's, as openssl prints it.
    let out = openssl(&["rsa", "-in", key_path(), "-noout", "-modulus"]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.trim().trim_start_matches("Modulus=").to_lowercase(),
        sig["modulus"].as_str().expect("modulus")
    );
}

#[test]
fn keygen_writes_a_private_key_and_refuses_to_overwrite() {
    let (private, public) = key();
    let mode = fs::metadata(private).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = fs::read_to_string(private).expect("read");
    assert!(
        pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "PKCS#1 PEM"
    );
    assert!(fs::read_to_string(public)
        .expect("read")
        .starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    let out = openssl(&["rsa", "-in", s(private), "-noout", "-text"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3072 bit") && text.contains("publicExponent: 3 "),
        "{text}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let existing = dir.path().join("existing.pem");
    fs::write(&existing, "precious").expect("write");
    let fresh = dir.path().join("fresh.pem");
    let err = fails(&["keygen", "--out", s(&existing)]);
    assert!(
        err.contains("existing.pem") && err.contains("refusing to overwrite"),
        "{err}"
    );
    let err = fails(&["keygen", "--out", s(&fresh), "--public-out", s(&existing)]);
    assert!(err.contains("existing.pem"), "{err}");
    let err = fails(&["keygen", "--out", s(&fresh), "--public-out", s(&fresh)]);
    assert!(err.contains("same file"), "{err}");
    // A dangling symlink is not written through either.
    let link = dir.path().join("link.pem");
    std::os::unix::fs::symlink(dir.path().join("target.pem"), &link).expect("symlink");
    let err = fails(&["keygen", "--out", s(&link)]);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(fs::read_to_string(&existing).expect("read"), "precious");
    assert!(!fresh.exists() && !dir.path().join("target.pem").exists());
}
