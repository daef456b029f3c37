//! Property-based fuzzing of what `rune-signd` reads from the network: request bodies (software
//! and SGX signing material), bearer tokens, and whole requests driven through
//! [`Service::handle`] without a socket. The server must answer every request with a status and
//! a message, never panic, and sign nothing but signing material.
//!
//! `PROPTEST_CASES=100000 cargo test -p rune-signd --test fuzz` runs more cases.

use std::sync::OnceLock;

use base64::Engine;
use proptest::prelude::*;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use rune_signd::sgx::{self, SGX_HEADER, SGX_HEADER2, SGX_MATERIAL_LEN};
use rune_signd::{
    Audit, Body, Material, Request, Service, Signer, SoftwareMaterial, Token, DEFAULT_BODY_LIMIT,
    MATERIAL_HEADER, PUBLIC_KEY_PATH, SIGN_PATH,
};
use sha2::{Digest, Sha256};

const TOKEN: &str = "fuzz-token-0123456789abcdef";

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
    KEY.get_or_init(|| enclave_image::generate_key().expect("keygen"))
}

fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        Service::new(
            Signer::new(key().clone()).expect("signer"),
            Token::new(TOKEN).expect("token"),
            Audit::new(None, false).expect("audit"),
            DEFAULT_BODY_LIMIT,
        )
    })
}

/// Well-formed `sgx_sign gendata` output, written from the layout in `src/sgx.rs`.
fn gendata() -> Vec<u8> {
    let mut body = vec![0u8; SGX_MATERIAL_LEN];
    body[..12].copy_from_slice(&SGX_HEADER);
    body[20..24].copy_from_slice(&0x2026_0101u32.to_le_bytes());
    body[24..40].copy_from_slice(&SGX_HEADER2);
    body[156..164].copy_from_slice(&0x4u64.to_le_bytes());
    body[188..220].copy_from_slice(&[0x5a; 32]);
    body[252..254].copy_from_slice(&3u16.to_le_bytes());
    body
}

fn software() -> impl Strategy<Value = SoftwareMaterial> {
    (
        prop::array::uniform32(any::<u8>()),
        any::<bool>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(
            |(measurement, debug, product_id, security_version)| SoftwareMaterial {
                measurement,
                debug,
                product_id,
                security_version,
            },
        )
}

/// One edit of a byte string; positions are taken modulo its length.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

/// Byte strings that parsers trip over.
const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff\xfe",
    b"\r",
    b"\n",
    b"=",
    b"0",
    b"+",
    b"-",
    b"65536",
    b"99999999999999999999",
    b"A",
    b" ",
];

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Edit::Flip(at, bits)),
        (
            any::<usize>(),
            prop::sample::select(INTERESTING).prop_map(<[u8]>::to_vec)
        )
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1..16usize).prop_map(|(at, n)| Edit::Remove(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ];
    prop::collection::vec(edit, 1..4)
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        let len = bytes.len();
        match edit {
            Edit::Flip(at, bits) if len > 0 => bytes[at % len] ^= bits,
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

/// Bodies a client could send: arbitrary bytes, and valid material of both kinds, edited.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        software().prop_map(|m| m.encode()),
        (software(), edits()).prop_map(|(m, edits)| {
            let mut bytes = m.encode();
            apply(&mut bytes, &edits);
            bytes
        }),
        (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| {
            let mut bytes = gendata();
            bytes[at % SGX_MATERIAL_LEN] ^= bits;
            bytes
        }),
        edits().prop_map(|edits| {
            let mut bytes = gendata();
            apply(&mut bytes, &edits);
            bytes
        }),
    ]
}

/// What a parsed body must satisfy.
fn check_material(body: &[u8], material: &Material) {
    match material {
        Material::Software(m) => assert_eq!(m.encode(), body, "only the canonical spelling"),
        Material::Sgx(m) => {
            assert_eq!(body.len(), SGX_MATERIAL_LEN);
            assert_eq!(&body[..12], &SGX_HEADER);
            assert_eq!(&body[24..40], &SGX_HEADER2);
            assert!(body[44..128].iter().all(|&b| b == 0));
            assert!(body[136..140].iter().all(|&b| b == 0));
            assert!(body[220..236].iter().all(|&b| b == 0));
            assert_eq!(&m.mrenclave[..], &body[188..220]);
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn material_from_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..300), sgx in any::<bool>()) {
        match Material::parse(&body, sgx) {
            Ok(material) => {
                prop_assert!(sgx || matches!(material, Material::Software(_)));
                check_material(&body, &material);
            }
            Err(err) => prop_assert!(!err.0.trim().is_empty() && !err.to_string().is_empty()),
        }
    }

    #[test]
    fn material_from_mutated_bodies(body in body(), sgx in any::<bool>()) {
        match Material::parse(&body, sgx) {
            Ok(material) => {
                prop_assert!(sgx || matches!(material, Material::Software(_)));
                check_material(&body, &material);
            }
            Err(err) => prop_assert!(!err.0.trim().is_empty()),
        }
    }

    #[test]
    fn software_material_round_trips(material in software()) {
        prop_assert_eq!(SoftwareMaterial::parse(&material.encode()), Ok(material.clone()));
        prop_assert!(material.encode().starts_with(MATERIAL_HEADER.as_bytes()));
    }

    #[test]
    fn software_material_edits_change_or_refuse(material in software(), edits in edits()) {
        let mut body = material.encode();
        apply(&mut body, &edits);
        match SoftwareMaterial::parse(&body) {
            Ok(parsed) => {
                prop_assert_eq!(parsed.encode(), body.clone());
                prop_assert_eq!(parsed == material, body == material.encode());
            }
            Err(err) => prop_assert!(!err.0.is_empty()),
        }
    }

    #[test]
    fn sgx_material_of_any_length_and_content(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            prop::collection::vec(any::<u8>(), SGX_MATERIAL_LEN),
            prop::collection::vec(any::<u8>(), SGX_MATERIAL_LEN - 12).prop_map(|rest| {
                let mut body = SGX_HEADER.to_vec();
                body.extend(rest);
                body
            }),
        ],
    ) {
        match sgx::parse(&body) {
            Ok(material) => check_material(&body, &Material::Sgx(material)),
            Err(err) => prop_assert!(!err.is_empty()),
        }
    }

    #[test]
    fn the_image_crate_writes_material_the_server_accepts(
        debug in any::<bool>(),
        product_id in any::<u16>(),
        security_version in any::<u16>(),
        memory_size in 1..u64::MAX,
    ) {
        let mut manifest = enclave_image::Manifest {
            version: enclave_image::MANIFEST_VERSION,
            entrypoints: vec!["/bin/sh".into()],
            trusted_files: [("/bin/sh".to_string(), "ab".repeat(32))].into(),
            writable_paths: Vec::new(),
            env: Default::default(),
            memory_size,
            max_threads: 1,
            max_processes: 1,
            debug,
            product_id,
            security_version,
        };
        manifest.validate().expect("valid");
        let body = enclave_image::signing_material(&manifest);
        let parsed = SoftwareMaterial::parse(&body).expect("accepted");
        prop_assert_eq!(parsed.measurement, manifest.measurement());
        prop_assert_eq!((parsed.debug, parsed.product_id, parsed.security_version),
            (debug, product_id, security_version));
        manifest.debug = !debug;
        prop_assert_ne!(SoftwareMaterial::parse(&enclave_image::signing_material(&manifest)), Ok(parsed));
    }

    #[test]
    fn tokens_and_authorization_headers(token in any::<String>(), header in any::<String>()) {
        match Token::new(&token) {
            Ok(parsed) => {
                prop_assert!(token.len() >= 16 && token.bytes().all(|b| b.is_ascii_graphic()));
                let bearer = format!("Bearer {token}");
                prop_assert!(parsed.accepts(Some(&bearer)));
                let expected = header
                    .split_once(' ')
                    .is_some_and(|(s, t)| s.eq_ignore_ascii_case("bearer") && t.trim() == token);
                prop_assert_eq!(parsed.accepts(Some(&header)), expected);
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
        let server = Token::new(TOKEN).expect("token");
        prop_assert!(!server.accepts(Some(&header)) || header.contains(TOKEN));
    }
}

proptest! {
    // A signed answer costs an RSA-3072 signature: fewer cases.
    #![proptest_config(config(128))]

    #[test]
    fn requests_get_an_answer_and_only_material_is_signed(
        method in prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE", "", "post", "GET\0"]),
        path in prop_oneof![
            4 => Just(SIGN_PATH.to_string()),
            1 => Just(PUBLIC_KEY_PATH.to_string()),
            1 => prop::sample::select(vec!["/", "/ping", "/healthz", "/api/v1/signature/pkcs1/", "//", "/../api"]).prop_map(str::to_string),
            1 => any::<String>(),
        ],
        authorization in prop_oneof![
            4 => Just(Some(format!("Bearer {TOKEN}"))),
            1 => Just(None),
            1 => any::<String>().prop_map(Some),
        ],
        raw in prop_oneof![4 => body().prop_map(Some), 1 => Just(None)],
    ) {
        let body = match &raw {
            Some(bytes) => Body::Complete(bytes.clone()),
            None => Body::TooLarge,
        };
        let response = service().handle(Request {
            method: method.to_string(),
            path: path.clone(),
            authorization: authorization.clone(),
            client: "192.0.2.7:1234".parse().expect("addr"),
            body,
        });
        prop_assert!([200, 400, 401, 404, 405, 413].contains(&response.status), "{}", response.status);
        if response.status >= 400 {
            prop_assert!(!String::from_utf8_lossy(&response.body).trim().is_empty());
        }
        if response.status == 200 && path == SIGN_PATH {
            let authorized = authorization.as_deref().is_some_and(|a| a.contains(TOKEN));
            prop_assert!(method == "POST" && authorized);
            let raw = raw.expect("a complete body");
            prop_assert!(Material::parse(&raw, true).is_ok(), "signed a body that is not material");
            let json: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
            let signature = base64::engine::general_purpose::STANDARD
                .decode(json["signature"].as_str().expect("signature"))
                .expect("base64");
            key().to_public_key()
                .verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(&raw), &signature)
                .expect("the signature is over the body");
        }
    }
}
