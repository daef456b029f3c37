//! Property-based fuzzing of what this crate reads from an image or a node: `manifest.json`,
//! `signature.json`, the signer policy and PEM keys. Every input is hostile: the parsers must
//! return an error naming the problem, never panic, and a signature must never verify for
//! anything but what was signed.
//!
//! `PROPTEST_CASES=100000 cargo test -p enclave-image --test fuzz` runs more cases.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use enclave_image::{
    generate_key, private_key_from_pem, private_key_to_pem, public_key_from_pem, public_key_to_pem,
    signing_material, EnvPolicy, Manifest, Policy, Signature, MANIFEST_VERSION,
};
use proptest::prelude::*;
use rsa::RsaPrivateKey;
use serde_json::Value;

/// `cases` unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

fn key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| generate_key().expect("keygen"))
}

fn sample() -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        entrypoints: vec!["/bin/busybox".into()],
        trusted_files: BTreeMap::from([
            ("/bin/busybox".into(), "ab".repeat(32)),
            ("/etc/passwd".into(), "01".repeat(32)),
        ]),
        writable_paths: vec!["/tmp".into()],
        env: EnvPolicy {
            default: vec!["PATH=/bin".into()],
            host_allowed: vec!["TZ".into()],
        },
        memory_size: 256 << 20,
        max_threads: 64,
        max_processes: 16,
        debug: false,
        product_id: 1,
        security_version: 2,
    }
}

fn signed() -> &'static (Manifest, Signature) {
    static SIGNED: OnceLock<(Manifest, Signature)> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let manifest = sample();
        let signature = Signature::sign(&manifest, key()).expect("sign");
        (manifest, signature)
    })
}

/// Byte strings that parsers trip over.
const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff\xfe",
    b"\xc3(",
    b"..",
    b"/../",
    b"\n",
    b"\"",
    b"\\u0000",
    b"[",
    b"{",
    b",",
    b"-1",
    b"1e400",
    b"18446744073709551616",
    b"99999999999999999999999999",
];

/// One edit of a byte string; positions are taken modulo its length.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop::sample::select(INTERESTING).prop_map(<[u8]>::to_vec);
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Edit::Flip(at, bits)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Set(at, b)),
        (any::<usize>(), interesting).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Edit::Remove(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        let len = bytes.len();
        match edit {
            Edit::Flip(at, bits) if len > 0 => bytes[at % len] ^= bits,
            Edit::Set(at, b) if len > 0 => bytes[at % len] = *b,
            Edit::Insert(at, new) => {
                let at = at % (len + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Remove(at, n) if len > 0 => {
                let at = at % len;
                bytes.drain(at..(at + n).min(len));
            }
            Edit::Truncate(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..6)
}

/// Strings a hostile image would put where a path, name or value goes.
fn hostile_string() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/", "..", ".", "", "bin", "busybox", "tmp", "\n", "\r", "\0", "=", "PATH", "é",
        "\u{202e}", " ", "\\", "//", "/./", "/../", "x=1", "\u{fffd}",
    ]);
    prop_oneof![
        4 => prop::collection::vec(piece, 0..10).prop_map(|p| p.concat()),
        2 => any::<String>(),
        1 => (1usize..20_000).prop_map(|n| format!("/{}", "a".repeat(n))),
        1 => (1usize..2_000).prop_map(|n| "/a".repeat(n)),
    ]
}

fn hex_digest() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::array::uniform32(any::<u8>()).prop_map(hex::encode),
        1 => hostile_string(),
        1 => prop::array::uniform32(any::<u8>()).prop_map(hex::encode_upper),
    ]
}

/// Manifests with every field drawn from hostile values, some of them valid.
fn manifest() -> impl Strategy<Value = Manifest> {
    let path = prop_oneof![
        3 => prop::sample::select(vec!["/bin/busybox", "/bin/sh", "/lib/ld.so", "/etc/passwd", "/"])
            .prop_map(str::to_string),
        1 => hostile_string(),
    ];
    let number = prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()];
    (
        prop_oneof![9 => Just(MANIFEST_VERSION), 1 => any::<u32>()],
        prop::collection::vec(path.clone(), 0..3),
        prop::collection::btree_map(path.clone(), hex_digest(), 0..4),
        prop::collection::vec(path, 0..3),
        prop::collection::vec(hostile_string(), 0..3),
        prop::collection::vec(hostile_string(), 0..3),
        (number, any::<u32>(), any::<u32>()),
        (any::<bool>(), any::<u16>(), any::<u16>()),
    )
        .prop_map(
            |(version, entrypoints, mut trusted, writable, default, host_allowed, limits, id)| {
                // Most entrypoints are also trusted, so that validation gets past that check.
                for e in &entrypoints {
                    trusted.entry(e.clone()).or_insert_with(|| "cd".repeat(32));
                }
                Manifest {
                    version,
                    entrypoints,
                    trusted_files: trusted,
                    writable_paths: writable,
                    env: EnvPolicy {
                        default,
                        host_allowed,
                    },
                    memory_size: limits.0,
                    max_threads: limits.1,
                    max_processes: limits.2,
                    debug: id.0,
                    product_id: id.1,
                    security_version: id.2,
                }
            },
        )
}

/// JSON values a hostile manifest could hold in place of any field.
fn hostile_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(1.5)),
        hostile_string().prop_map(Value::String),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!({"/bin/busybox": 3})),
        Just(serde_json::json!(["/..", "/etc/../etc"])),
    ]
}

/// Loads `bytes` as `manifest.json` through the crate's own loader.
fn load_manifest(dir: &Path, bytes: &[u8]) -> Result<Manifest, enclave_image::ImageError> {
    let path = dir.join("manifest.json");
    std::fs::write(&path, bytes).expect("write");
    Manifest::load(&path)
}

fn load_signature(dir: &Path, bytes: &[u8]) -> Result<Signature, enclave_image::ImageError> {
    let path = dir.join("signature.json");
    std::fs::write(&path, bytes).expect("write");
    Signature::load(&path)
}

/// What every accepted manifest must satisfy: valid, a JSON round trip, an unambiguous
/// canonical encoding (one `key=value` line per item).
fn check_accepted(manifest: &Manifest) {
    manifest.validate().expect("an accepted manifest validates");
    let back: Manifest = serde_json::from_slice(&manifest.to_json()).expect("round trip");
    assert_eq!(&back, manifest);
    let encoding = String::from_utf8(manifest.canonical_encoding()).expect("utf-8");
    let distinct = |items: &[String]| {
        let mut items = items.to_vec();
        items.sort();
        items.dedup();
        items.len()
    };
    let expected_lines = 8
        + distinct(&manifest.entrypoints)
        + manifest.env.default.len()
        + distinct(&manifest.env.host_allowed)
        + distinct(&manifest.writable_paths)
        + manifest.trusted_files.len();
    assert_eq!(encoding.lines().count(), expected_lines, "{encoding:?}");
    assert!(encoding.lines().all(|line| line.contains('=')));
}

fn check_error(err: &dyn std::error::Error) {
    assert!(
        !err.to_string().trim().is_empty(),
        "an error without a message"
    );
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn manifest_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().expect("tempdir");
        match load_manifest(dir.path(), &bytes) {
            Ok(manifest) => check_accepted(&manifest),
            Err(err) => check_error(&err),
        }
    }

    #[test]
    fn manifest_from_mutated_json(edits in edits()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = sample().to_json();
        apply(&mut bytes, &edits);
        match load_manifest(dir.path(), &bytes) {
            Ok(manifest) => check_accepted(&manifest),
            Err(err) => check_error(&err),
        }
    }

    #[test]
    fn manifest_with_a_hostile_field(
        field in prop::sample::select(vec![
            "version", "entrypoints", "trusted_files", "writable_paths", "env", "memory_size",
            "max_threads", "max_processes", "debug", "product_id", "security_version", "extra",
        ]),
        value in hostile_json(),
        drop in any::<bool>(),
    ) {
        let mut json = serde_json::to_value(sample()).expect("json");
        let object = json.as_object_mut().expect("object");
        if drop {
            object.remove(field);
        } else {
            object.insert(field.to_string(), value);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        match load_manifest(dir.path(), json.to_string().as_bytes()) {
            Ok(manifest) => check_accepted(&manifest),
            Err(err) => check_error(&err),
        }
    }

    #[test]
    fn manifest_structure_validates_or_names_the_problem(manifest in manifest()) {
        match manifest.validate() {
            Ok(()) => {
                check_accepted(&manifest);
                let dir = tempfile::tempdir().expect("tempdir");
                let loaded = load_manifest(dir.path(), &manifest.to_json()).expect("loads");
                prop_assert_eq!(&loaded, &manifest);
                prop_assert_eq!(loaded.measurement(), manifest.measurement());
                for path in manifest.trusted_files.keys().chain(&manifest.writable_paths) {
                    prop_assert!(path.starts_with('/'));
                    prop_assert!(!path.split('/').any(|c| c == ".." || c == "."), "{}", path);
                }
            }
            Err(err) => check_error(&err),
        }
    }

    #[test]
    fn policy_from_arbitrary_text(text in any::<String>()) {
        match Policy::parse(&text, Path::new("/etc/rune/policy.toml")) {
            Ok(policy) => {
                for signer in &policy.allowed_signers {
                    prop_assert_eq!(signer.len(), 64);
                    prop_assert!(signer.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
                }
            }
            Err(err) => {
                check_error(&err);
                prop_assert!(err.to_string().contains("/etc/rune/policy.toml"), "{}", err);
            }
        }
    }

    #[test]
    fn policy_from_mutated_text(edits in edits(), signer in hex_digest()) {
        let mut bytes = format!(
            "# the node's signer policy\nallowed_signers = [\"{}\", \"{signer}\"]\nallow_debug = false\n",
            "ab".repeat(32)
        )
        .into_bytes();
        apply(&mut bytes, &edits);
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok(());
        };
        match Policy::parse(&text, Path::new("policy.toml")) {
            Ok(policy) => {
                prop_assert!(policy.allowed_signers.iter().all(|s| s.len() == 64 && hex::decode(s).is_ok()));
            }
            Err(err) => check_error(&err),
        }
    }

    #[test]
    fn signature_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().expect("tempdir");
        match load_signature(dir.path(), &bytes) {
            Ok(signature) => {
                let err = signature.verify(&sample()).expect_err("random bytes never verify");
                check_error(&err);
            }
            Err(err) => check_error(&err),
        }
    }

    #[test]
    fn mutated_signature_file_never_verifies_for_other_content(edits in edits()) {
        let (manifest, signature) = signed();
        let mut bytes = signature.to_json();
        apply(&mut bytes, &edits);
        let dir = tempfile::tempdir().expect("tempdir");
        let Ok(loaded) = load_signature(dir.path(), &bytes) else {
            return Ok(());
        };
        match loaded.verify(manifest) {
            // Hex is read case-insensitively and the modulus as a number, so a few edits keep
            // the signature valid; they never change what it says.
            Ok(verified) => {
                prop_assert_eq!(verified.measurement, manifest.measurement());
                prop_assert_eq!(hex::encode(verified.signer), signature.signer.clone());
                let raw = |s: &Signature| hex::decode(&s.signature).expect("hex");
                prop_assert_eq!(raw(&loaded), raw(signature));
            }
            Err(err) => check_error(&err),
        }
    }
}

proptest! {
    // Each case is an RSA verification or a PEM parse: fewer of them.
    #![proptest_config(config(256))]

    #[test]
    fn a_bit_flip_in_the_signature_never_verifies(byte in any::<usize>(), bit in 0..8u8) {
        let (manifest, signature) = signed();
        let mut raw = hex::decode(&signature.signature).expect("hex");
        let at = byte % raw.len();
        raw[at] ^= 1 << bit;
        let mut forged = signature.clone();
        forged.signature = hex::encode(&raw);
        let err = forged.verify(manifest).expect_err("flipped signature verified");
        check_error(&err);
        prop_assert!(Signature::attach(manifest, &key().to_public_key(), &raw).is_err());
    }

    #[test]
    fn a_changed_manifest_never_verifies(other in manifest()) {
        let (manifest, signature) = signed();
        match signature.verify(&other) {
            // Only a manifest with the same measurement and identity fields: the same signed
            // content (e.g. the same lists in another order).
            Ok(verified) => {
                prop_assert_eq!(signing_material(&other), signing_material(manifest));
                prop_assert_eq!(verified.measurement, manifest.measurement());
            }
            Err(err) => check_error(&err),
        }
    }

    #[test]
    fn a_bit_flip_in_the_signed_content_never_verifies(
        byte in any::<usize>(),
        bit in 0..8u8,
        field in 0..4usize,
    ) {
        let (manifest, signature) = signed();
        let mut edited = manifest.clone();
        match field {
            0 => edited.debug = !edited.debug,
            1 => edited.product_id ^= 1 << (bit % 8),
            2 => edited.security_version ^= 1 << (bit % 8),
            _ => {
                // A bit of a trusted file's digest (kept hex by flipping within the digit).
                let (path, digest) = edited.trusted_files.iter().next().expect("a file");
                let mut digest = digest.clone().into_bytes();
                let at = byte % digest.len();
                digest[at] = if digest[at] == b'0' { b'1' } else { b'0' };
                let digest = String::from_utf8(digest).expect("ascii");
                edited.trusted_files.insert(path.clone(), digest);
            }
        }
        prop_assert!(signature.verify(&edited).is_err());
    }

    #[test]
    fn keys_from_arbitrary_text(text in any::<String>()) {
        let err = private_key_from_pem(&text).expect_err("random text is no key");
        check_error(&err);
        let err = public_key_from_pem(&text).expect_err("random text is no key");
        check_error(&err);
    }

    #[test]
    fn keys_from_mutated_pem(edits in edits(), public in any::<bool>()) {
        let pem = if public {
            public_key_to_pem(&key().to_public_key()).expect("pem")
        } else {
            private_key_to_pem(key()).expect("pem")
        };
        let mut bytes = pem.into_bytes();
        apply(&mut bytes, &edits);
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok(());
        };
        // A key that still parses must still be the shape enclave signing needs.
        if public {
            match public_key_from_pem(&text) {
                Ok(parsed) => prop_assert!(public_key_from_pem(&public_key_to_pem(&parsed).expect("pem")).is_ok()),
                Err(err) => check_error(&err),
            }
        } else {
            match private_key_from_pem(&text) {
                Ok(parsed) => prop_assert!(private_key_from_pem(&private_key_to_pem(&parsed).expect("pem")).is_ok()),
                Err(err) => check_error(&err),
            }
        }
    }
}

#[test]
fn deeply_nested_documents_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for depth in [200, 100_000] {
        let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        check_error(&load_manifest(dir.path(), json.as_bytes()).expect_err("nested"));
        check_error(&load_signature(dir.path(), json.as_bytes()).expect_err("nested"));
        let toml = format!(
            "allowed_signers = {}{}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        check_error(&Policy::parse(&toml, Path::new("p.toml")).expect_err("nested"));
        let toml = format!("{}= 1", "a.".repeat(depth));
        check_error(&Policy::parse(&toml, Path::new("p.toml")).expect_err("nested"));
    }
}
