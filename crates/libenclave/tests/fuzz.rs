//! Property-based fuzzing of the enclave settings a container's config.json carries (env
//! `ENCLAVE_*` and `enclave.*` annotations) and of the enclave state rune reads back. The
//! container's author controls config.json: every value is hostile. The agent protocol is
//! fuzzed in `src/fuzz_tests.rs` (it is private to the crate).
//!
//! `PROPTEST_CASES=100000 cargo test -p libenclave --test fuzz` runs more cases.

use std::collections::HashMap;

use libenclave::{EnclaveConfig, EnclaveState, EnclaveType};
use oci_spec::runtime::Spec;
use proptest::prelude::*;

/// `cases` unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

const SETTINGS: [(&str, &str); 4] = [
    ("ENCLAVE_TYPE", "enclave.type"),
    ("ENCLAVE_RUNTIME_PATH", "enclave.runtime.path"),
    ("ENCLAVE_RUNTIME_ARGS", "enclave.runtime.args"),
    ("ENCLAVE_RUNTIME_LOGLEVEL", "enclave.runtime.loglevel"),
];

const LOG_LEVELS: [&str; 8] = [
    "trace", "debug", "info", "warning", "error", "fatal", "panic", "off",
];

/// Values a hostile config.json puts in a setting.
fn value() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "software",
        "kvm",
        "intelSgx",
        "SOFTWARE",
        "/usr/lib/liberpal-software.so",
        "../../etc/passwd",
        "/",
        "",
        "=",
        ",",
        "\n",
        "\0",
        "debug",
        " ",
        "é",
        "ENCLAVE_TYPE=kvm",
    ]);
    prop_oneof![
        4 => prop::collection::vec(piece, 0..4).prop_map(|p| p.concat()),
        1 => any::<String>(),
        1 => (1usize..10_000).prop_map(|n| ",".repeat(n)),
    ]
}

/// An env entry: one of the settings, a near miss of a name, or anything.
fn env_entry() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        4 => prop::sample::select(SETTINGS.iter().map(|(env, _)| *env).collect::<Vec<_>>())
            .prop_map(str::to_string),
        1 => prop::sample::select(vec!["PATH", "ENCLAVE_TYPE ", "enclave_type", "ENCLAVE_", ""])
            .prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop_oneof![
        6 => (name.clone(), value()).prop_map(|(n, v)| format!("{n}={v}")),
        1 => name,
        1 => any::<String>(),
    ]
}

fn annotations() -> impl Strategy<Value = HashMap<String, String>> {
    let key = prop_oneof![
        4 => prop::sample::select(SETTINGS.iter().map(|(_, a)| *a).collect::<Vec<_>>())
            .prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop::collection::hash_map(key, value(), 0..5)
}

fn spec(env: Option<Vec<String>>, annotations: Option<HashMap<String, String>>) -> Spec {
    let mut spec = Spec::default();
    let mut process = spec.process().clone().expect("default spec has a process");
    process.set_env(env);
    spec.set_process(Some(process));
    spec.set_annotations(annotations);
    spec
}

fn env_of(spec: &Spec) -> Vec<String> {
    spec.process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default()
}

fn named(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(name, _)| name)
}

/// The invariants of [`EnclaveConfig::from_spec`] for any spec.
fn check(mut spec: Spec) -> Result<(), TestCaseError> {
    let before = spec.clone();
    match EnclaveConfig::from_spec(&mut spec) {
        Ok(None) => prop_assert_eq!(spec, before, "a normal container's spec is untouched"),
        Ok(Some(config)) => {
            prop_assert!(EnclaveType::ALL.contains(&config.enclave_type));
            prop_assert!(!config.runtime_path.as_os_str().is_empty());
            prop_assert!(!config.runtime_args.contains(','));
            prop_assert!(LOG_LEVELS.contains(&config.runtime_loglevel.as_str()));
            // The settings configure rune, never the workload: none is left in its env, and
            // every other entry is kept in order.
            let kept: Vec<String> = env_of(&before)
                .into_iter()
                .filter(|e| {
                    SETTINGS
                        .iter()
                        .all(|(env, _)| named(e) != *env || !e.contains('='))
                })
                .collect();
            prop_assert_eq!(env_of(&spec), kept);
            // The settings survive rune's state file.
            let json = serde_json::to_vec(&config).expect("json");
            let back: EnclaveConfig = serde_json::from_slice(&json).expect("round trip");
            prop_assert_eq!(back, config);
        }
        Err(err) => prop_assert!(!err.to_string().trim().is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn settings_from_env_and_annotations(
        env in prop::option::weighted(0.9, prop::collection::vec(env_entry(), 0..8)),
        annotations in prop::option::weighted(0.7, annotations()),
    ) {
        check(spec(env, annotations))?;
    }

    #[test]
    fn settings_from_a_mutated_config_json(
        at in any::<usize>(),
        bytes in prop::collection::vec(any::<u8>(), 0..8),
        cut in any::<usize>(),
        truncate in any::<bool>(),
    ) {
        let base = spec(
            Some(vec![
                "PATH=/bin".into(),
                "ENCLAVE_TYPE=software".into(),
                "ENCLAVE_RUNTIME_PATH=/usr/lib/liberpal-software.so".into(),
                "ENCLAVE_RUNTIME_ARGS=a,b".into(),
            ]),
            Some(HashMap::from([("enclave.runtime.loglevel".into(), "debug".into())])),
        );
        let mut json = serde_json::to_vec(&base).expect("json");
        let at = at % (json.len() + 1);
        json.splice(at..at, bytes);
        if truncate {
            json.truncate(cut % (json.len() + 1));
        }
        // oci-spec refuses what is not a spec; whatever it accepts must be handled.
        if let Ok(parsed) = serde_json::from_slice::<Spec>(&json) {
            check(parsed)?;
        }
    }

    #[test]
    fn state_files_from_arbitrary_bytes(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            (value(), value()).prop_map(|(t, p)| serde_json::json!({
                "type": t, "runtime_path": p, "runtime_args": "", "runtime_loglevel": "info",
                "bundle": "/b"
            }).to_string().into_bytes()),
        ],
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("enclave.json"), &bytes).expect("write");
        if let Some(state) = EnclaveState::load_from(dir.path()) {
            prop_assert!(EnclaveType::ALL.contains(&state.config.enclave_type));
        }
    }
}
