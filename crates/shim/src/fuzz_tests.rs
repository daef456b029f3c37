//! Property-based fuzzing of what the shim parses: its config file
//! (`/etc/inclavare-containers/config.toml`, `config.rs`) and the software carrier's settings,
//! which come from the container's environment (`carrier/software.rs`, reached through the
//! carrier's `plan`). Every value is hostile: the shim must refuse it with a message naming it
//! and never panic, since one container's bad settings must not take the shim down.
//!
//! `PROPTEST_CASES=100000 cargo test -p shim-rune --bins fuzz` runs more cases.

use oci_spec::runtime::{ProcessBuilder, Spec};
use proptest::prelude::*;

use crate::carrier::{self, Context, Tools};
use crate::config::{Config, SignatureMethod};

/// `cases` unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// A configuration file using every key the shim knows.
const FULL_CONFIG: &str = r#"log_level = "debug"
sgx_tool_sign = "/opt/intel/sgxsdk/bin/x64/sgx_sign"

[containerd]
socket = "/run/containerd/containerd.sock"

[epm]
socket = "/var/run/epm/epm.sock"

[enclave_runtime]
signature_method = "server"
signing_key = "/etc/inclavare-containers/signing-key.pem"
cache_dir = "/var/lib/rune/carrier-cache"
cache = true

[enclave_runtime.software]
enclave_runtime_path = "/usr/local/lib/rune/liberpal-software.so"
writable_paths = ["/tmp", "/run"]
memory = "256M"
max_threads = 64
max_processes = 16
policy = "/etc/rune/policy.toml"

[enclave_runtime.occlum]
enclave_runtime_path = "/opt/occlum/build/lib/libocclum-pal.so"
enclave_libos_path = "/opt/occlum/build/lib/libocclum-libos.so"
occlum_path = "/opt/occlum/build/bin/occlum"

[signature]
server_address = "https://signd.example:9443"
token_file = "/etc/rune/token"
ca_cert = "/etc/rune/ca.pem"
public_key = "/etc/rune/signd.pem"
"#;

/// Byte strings that parsers trip over.
const INTERESTING: &[&str] = &[
    "\0",
    "\n",
    "\"",
    "'",
    "[",
    "[[",
    "]",
    "=",
    "#",
    "\\u0000",
    "\\",
    "..",
    "/",
    "-1",
    "99999999999999999999999",
    "4294967296",
    "1e400",
    "nan",
    "inf",
    "true",
    "é",
    "\u{202e}",
    "{",
    "}",
    ",",
    " ",
];

/// One edit of a text; positions are taken modulo its length (and moved to a char boundary).
#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, String),
    Remove(usize, usize),
    Truncate(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (
            any::<usize>(),
            prop::sample::select(INTERESTING).prop_map(str::to_string)
        )
            .prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), any::<String>()).prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), 1..32usize).prop_map(|(at, n)| Edit::Remove(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ];
    prop::collection::vec(edit, 1..6)
}

fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, edits: &[Edit]) {
    for edit in edits {
        match edit {
            Edit::Insert(at, s) => {
                let at = boundary(text, *at);
                text.insert_str(at, s);
            }
            Edit::Remove(at, n) => {
                let start = boundary(text, *at);
                let end = boundary(text, start.saturating_add(*n).min(text.len()));
                if end > start {
                    text.replace_range(start..end, "");
                }
            }
            Edit::Truncate(at) => {
                let at = boundary(text, *at);
                text.truncate(at);
            }
        }
    }
}

/// What every parse must satisfy: a config, or a one-line message for the Create error.
fn check_parse(text: &str) -> Result<(), TestCaseError> {
    match Config::parse(text) {
        Ok(config) => {
            // Every accessor works on whatever parsed.
            let _ = (
                config.sgx_sign(),
                config.log_filter(),
                config.signature.address(),
            );
            let _ = (
                config.enclave_runtime.signing_key(),
                config.enclave_runtime.cache_dir(),
            );
        }
        Err(message) => {
            prop_assert!(!message.trim().is_empty());
            prop_assert!(!message.contains('\n'), "{:?}", message);
        }
    }
    Ok(())
}

/// The env names of the software carrier's settings.
const SETTINGS: &[&str] = &[
    "RUNE_SOFTWARE_ENTRYPOINTS",
    "RUNE_SOFTWARE_TRUST",
    "RUNE_SOFTWARE_WRITABLE",
    "RUNE_SOFTWARE_MEMORY",
    "RUNE_SOFTWARE_MAX_THREADS",
    "RUNE_SOFTWARE_MAX_PROCESSES",
    "RUNE_SOFTWARE_DEBUG",
];

fn setting_value() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/usr/bin/python3",
        "/lib",
        "..",
        "/..",
        "/../etc",
        ",",
        ", ",
        "",
        "/",
        "256M",
        "1G",
        "4096",
        "0",
        "1",
        "-1",
        "4294967296",
        "99999999999999999999",
        "K",
        "iB",
        "true",
        "false",
        "TRUE",
        "\0",
        "\n",
        "é",
        "٣",
        " ",
    ]);
    prop_oneof![
        5 => prop::collection::vec(piece, 0..5).prop_map(|p| p.concat()),
        1 => any::<String>(),
        1 => (1usize..5000).prop_map(|n| "/a,".repeat(n)),
    ]
}

fn env_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (prop::sample::select(SETTINGS), setting_value())
            .prop_map(|(name, value)| format!("{name}={value}")),
        1 => setting_value().prop_map(|v| format!("PATH={v}")),
        1 => any::<String>(),
        1 => (any::<String>(), any::<String>()).prop_map(|(n, v)| format!("{n}={v}")),
    ]
}

fn spec(args: Vec<String>, env: Vec<String>) -> Spec {
    let mut spec = Spec::default();
    let process = ProcessBuilder::default()
        .args(args)
        .env(env)
        .build()
        .expect("process");
    spec.set_process(Some(process));
    spec
}

/// Checks the software carrier's plan for `spec`: the build arguments it would pass to
/// `rune-enclave build` hold only values that passed the settings' checks.
fn check_plan(spec: &Spec) -> Result<(), TestCaseError> {
    let mut config = Config::default();
    // Client mode plans without looking for a signing key or a signature server.
    config.enclave_runtime.signature_method = SignatureMethod::Client;
    let tools = Tools::new(None);
    let scratch = std::env::temp_dir();
    let ctx = Context {
        id: "fuzz",
        rootfs: &scratch,
        config: &config,
        tools: &tools,
        work: &scratch,
    };
    let software = carrier::by_name("software").expect("the software carrier");
    match software.plan(&ctx, spec) {
        Ok(plan) => {
            let mut args = plan
                .inputs
                .iter()
                .filter(|(key, _)| key.starts_with("arg"))
                .map(|(_, value)| value.as_str());
            let mut entrypoints = 0;
            while let Some(flag) = args.next() {
                if flag == "--debug" {
                    continue;
                }
                let value = args.next();
                prop_assert!(value.is_some(), "{} without a value", flag);
                let value = value.unwrap_or_default();
                match flag {
                    // The first --entrypoint is the program, found through PATH by the build.
                    "--entrypoint" if entrypoints == 0 => entrypoints += 1,
                    "--entrypoint" | "--trust" | "--writable" | "--exclude" => {
                        prop_assert!(value.starts_with('/'), "{} {:?}", flag, value);
                        prop_assert!(!value.split('/').any(|c| c == ".."), "{} {:?}", flag, value);
                        prop_assert!(!value.contains(','), "{} {:?}", flag, value);
                    }
                    "--max-threads" | "--max-processes" => {
                        let number = value.parse::<u32>();
                        prop_assert!(number.is_ok_and(|n| n >= 1), "{} {:?}", flag, value);
                    }
                    "--memory" => {
                        let digit = value.starts_with(|c: char| c.is_ascii_digit());
                        prop_assert!(digit, "{:?}", value);
                    }
                    "--host-env" => {
                        prop_assert!(!value.is_empty() && !value.contains('='));
                        prop_assert!(!value.starts_with("ENCLAVE_"));
                    }
                    "--search-path" => {}
                    other => prop_assert!(false, "unexpected argument {:?}", other),
                }
            }
        }
        Err(err) => prop_assert!(!err.to_string().trim().is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn config_from_arbitrary_text(text in any::<String>()) {
        check_parse(&text)?;
    }

    #[test]
    fn config_from_mutated_text(edits in edits()) {
        let mut text = FULL_CONFIG.to_string();
        apply(&mut text, &edits);
        check_parse(&text)?;
    }

    #[test]
    fn config_with_a_hostile_value(
        key in prop::sample::select(vec![
            "log_level", "sgx_tool_sign", "signature_method", "cache", "max_threads",
            "writable_paths", "memory", "server_address", "enclave_runtime_path",
        ]),
        value in prop_oneof![
            prop::sample::select(INTERESTING).prop_map(|s| format!("{s:?}")),
            any::<String>().prop_map(|s| format!("{s:?}")),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("[1, \"a\", []]".to_string()),
            Just("{ a = 1 }".to_string()),
            Just("1979-05-27T07:32:00Z".to_string()),
        ],
    ) {
        let text: String = FULL_CONFIG
            .lines()
            .map(|line| match line.split_once(" = ") {
                Some((k, _)) if k == key => format!("{k} = {value}\n"),
                _ => format!("{line}\n"),
            })
            .collect();
        check_parse(&text)?;
    }

    #[test]
    fn software_settings_from_the_container_env(
        program in prop_oneof![
            3 => Just("python3".to_string()),
            1 => Just("/bin/sh".to_string()),
            1 => any::<String>(),
        ],
        env in prop::collection::vec(env_entry(), 0..8),
        no_args in prop::bool::weighted(0.05),
    ) {
        let args = if no_args { Vec::new() } else { vec![program] };
        check_plan(&spec(args, env))?;
    }
}

#[test]
fn deeply_nested_config_is_refused() {
    for depth in [100, 100_000] {
        let arrays = format!(
            "[enclave_runtime.software]\nwritable_paths = {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let tables = format!("epm = {}{}\n", "{ a = ".repeat(depth), "}".repeat(depth));
        let keys = format!("[epm]\n{}= 1\n", "a.".repeat(depth));
        for text in [arrays, tables, keys] {
            // Shallow nesting may parse (epm takes any table); deep nesting must be an error,
            // not a stack overflow.
            match Config::parse(&text) {
                Ok(_) => assert!(depth < 1000, "depth {depth} parsed"),
                Err(message) => assert!(!message.trim().is_empty()),
            }
        }
    }
}
