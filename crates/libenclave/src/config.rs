//! Which containers are enclave containers, and with which enclave runtime.
//!
//! The settings come from the process env (`ENCLAVE_TYPE`, ...) or, when a variable is absent,
//! from the matching annotation (`enclave.type`, ...). Env wins because docker and Kubernetes users
//! can only set env; OCI bundle authors use annotations. Matched env entries are removed from the
//! workload's env: they configure the runtime, not the program.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::EnclaveError;

/// One setting: its env name and its annotation key.
struct Setting {
    env: &'static str,
    annotation: &'static str,
}

const TYPE: Setting = Setting {
    env: "ENCLAVE_TYPE",
    annotation: "enclave.type",
};
const RUNTIME_PATH: Setting = Setting {
    env: "ENCLAVE_RUNTIME_PATH",
    annotation: "enclave.runtime.path",
};
const RUNTIME_ARGS: Setting = Setting {
    env: "ENCLAVE_RUNTIME_ARGS",
    annotation: "enclave.runtime.args",
};
const RUNTIME_LOGLEVEL: Setting = Setting {
    env: "ENCLAVE_RUNTIME_LOGLEVEL",
    annotation: "enclave.runtime.loglevel",
};

/// The PAL log levels upstream accepts; anything else becomes `info`, as upstream does.
const LOG_LEVELS: [&str; 8] = [
    "trace", "debug", "info", "warning", "error", "fatal", "panic", "off",
];

/// The kinds of enclave a container can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnclaveType {
    /// Intel SGX, through a PAL such as Occlum's.
    #[serde(rename = "intelSgx")]
    IntelSgx,
    /// AWS Nitro Enclaves.
    #[serde(rename = "AwsNitroEnclaves")]
    AwsNitroEnclaves,
    /// Jailhouse cells.
    #[serde(rename = "Jailhouse")]
    Jailhouse,
    /// rune's software enclave: measured, signed and confined, without memory encryption.
    #[serde(rename = "software")]
    Software,
    /// An enclave isolated by KVM.
    #[serde(rename = "kvm")]
    Kvm,
}

impl EnclaveType {
    pub const ALL: [EnclaveType; 5] = [
        EnclaveType::IntelSgx,
        EnclaveType::AwsNitroEnclaves,
        EnclaveType::Jailhouse,
        EnclaveType::Software,
        EnclaveType::Kvm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EnclaveType::IntelSgx => "intelSgx",
            EnclaveType::AwsNitroEnclaves => "AwsNitroEnclaves",
            EnclaveType::Jailhouse => "Jailhouse",
            EnclaveType::Software => "software",
            EnclaveType::Kvm => "kvm",
        }
    }
}

impl EnclaveType {
    /// What this form of enclave protects, for the operator's log: a software enclave must
    /// never pass for a hardware one.
    pub fn protection(self) -> &'static str {
        match self {
            EnclaveType::IntelSgx => "hardware enclave: encrypted, integrity-protected memory",
            EnclaveType::AwsNitroEnclaves => "hardware-isolated VM without host access",
            EnclaveType::Jailhouse => "partitioned cell",
            EnclaveType::Software => {
                "software enclave: measured, signed and confined; no memory encryption, \
                 host root and the kernel can read it"
            }
            EnclaveType::Kvm => "KVM-isolated enclave; the host kernel is trusted",
        }
    }
}

impl fmt::Display for EnclaveType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EnclaveType {
    type Err = EnclaveError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| EnclaveError::UnknownType(s.to_string()))
    }
}

/// An enclave container's settings, kept in its state so that exec, kill and delete know them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnclaveConfig {
    #[serde(rename = "type")]
    pub enclave_type: EnclaveType,
    /// The PAL, a host path.
    pub runtime_path: PathBuf,
    /// Handed to `pal_init`; commas in the setting become spaces, as upstream.
    pub runtime_args: String,
    pub runtime_loglevel: String,
}

impl EnclaveConfig {
    /// Reads the settings from `spec` and strips the matched env entries from it. `Ok(None)` means
    /// a normal container, and then `spec` is left exactly as it was.
    pub fn from_spec(spec: &mut Spec) -> Result<Option<Self>, EnclaveError> {
        let annotations = spec.annotations().clone().unwrap_or_default();
        let mut env = spec
            .process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default();

        let Some(type_name) = take(&mut env, &annotations, &TYPE) else {
            return Ok(None);
        };
        let enclave_type = type_name.parse()?;
        let runtime_path = take(&mut env, &annotations, &RUNTIME_PATH)
            .map(PathBuf::from)
            .ok_or(EnclaveError::NoRuntimePath)?;
        let runtime_args = take(&mut env, &annotations, &RUNTIME_ARGS)
            .unwrap_or_default()
            .replace(',', " ");
        let runtime_loglevel = take(&mut env, &annotations, &RUNTIME_LOGLEVEL)
            .filter(|level| LOG_LEVELS.contains(&level.as_str()))
            .unwrap_or_else(|| "info".to_string());

        if let Some(process) = spec.process_mut() {
            process.set_env(Some(env));
        }
        Ok(Some(Self {
            enclave_type,
            runtime_path,
            runtime_args,
            runtime_loglevel,
        }))
    }
}

/// Removes the enclave settings from an env list: they configure rune, not programs.
pub fn strip_settings(env: &mut Vec<String>) {
    let names = [
        TYPE.env,
        RUNTIME_PATH.env,
        RUNTIME_ARGS.env,
        RUNTIME_LOGLEVEL.env,
    ];
    env.retain(|entry| {
        let name = entry
            .split_once('=')
            .map_or(entry.as_str(), |(name, _)| name);
        !names.contains(&name)
    });
}

/// The env value of `setting` (removing every entry of that name) or else its annotation. An
/// empty value counts as unset.
fn take(
    env: &mut Vec<String>,
    annotations: &HashMap<String, String>,
    setting: &Setting,
) -> Option<String> {
    let mut found = None;
    env.retain(|entry| match entry.split_once('=') {
        Some((name, value)) if name == setting.env => {
            if found.is_none() {
                found = Some(value.to_string());
            }
            false
        }
        _ => true,
    });
    found
        .filter(|v| !v.is_empty())
        .or_else(|| annotations.get(setting.annotation).cloned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(env: &[&str], annotations: &[(&str, &str)]) -> Spec {
        let mut spec = Spec::default();
        let mut process = spec.process().clone().expect("default spec has a process");
        process.set_env(Some(env.iter().map(|s| s.to_string()).collect()));
        spec.set_process(Some(process));
        let annotations: HashMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        spec.set_annotations(Some(annotations));
        spec
    }

    fn env_of(spec: &Spec) -> Vec<String> {
        spec.process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default()
    }

    #[test]
    fn no_type_is_a_normal_container_and_the_spec_is_untouched() {
        let mut spec = spec_with(&["PATH=/bin", "ENCLAVE_RUNTIME_PATH=/x.so"], &[]);
        let before = env_of(&spec);
        assert_eq!(EnclaveConfig::from_spec(&mut spec).expect("parses"), None);
        assert_eq!(env_of(&spec), before);
    }

    #[test]
    fn env_wins_over_annotations_and_is_stripped() {
        let mut spec = spec_with(
            &[
                "PATH=/bin",
                "ENCLAVE_TYPE=software",
                "ENCLAVE_RUNTIME_PATH=/env.so",
                "ENCLAVE_RUNTIME_ARGS=a,b,c",
                "KEEP=1",
            ],
            &[
                ("enclave.type", "kvm"),
                ("enclave.runtime.path", "/annotation.so"),
                ("enclave.runtime.loglevel", "debug"),
            ],
        );
        let config = EnclaveConfig::from_spec(&mut spec)
            .expect("parses")
            .expect("enclave");
        assert_eq!(config.enclave_type, EnclaveType::Software);
        assert_eq!(config.runtime_path, PathBuf::from("/env.so"));
        assert_eq!(config.runtime_args, "a b c");
        assert_eq!(config.runtime_loglevel, "debug");
        assert_eq!(env_of(&spec), vec!["PATH=/bin", "KEEP=1"]);
    }

    #[test]
    fn annotations_alone_configure_an_enclave() {
        let mut spec = spec_with(
            &["PATH=/bin"],
            &[
                ("enclave.type", "software"),
                ("enclave.runtime.path", "/a.so"),
            ],
        );
        let config = EnclaveConfig::from_spec(&mut spec)
            .expect("parses")
            .expect("enclave");
        assert_eq!(config.runtime_path, PathBuf::from("/a.so"));
        assert_eq!(config.runtime_args, "");
        assert_eq!(config.runtime_loglevel, "info");
    }

    #[test]
    fn one_character_values_are_honoured() {
        // Upstream drops env values of length 1; rune does not.
        let mut spec = spec_with(
            &[
                "ENCLAVE_TYPE=kvm",
                "ENCLAVE_RUNTIME_PATH=/p.so",
                "ENCLAVE_RUNTIME_ARGS=x",
            ],
            &[],
        );
        let config = EnclaveConfig::from_spec(&mut spec)
            .expect("parses")
            .expect("enclave");
        assert_eq!(config.runtime_args, "x");
    }

    #[test]
    fn bad_settings_are_named() {
        let mut spec = spec_with(&["ENCLAVE_TYPE=sgx2"], &[]);
        let err = EnclaveConfig::from_spec(&mut spec).expect_err("unknown type");
        assert!(err.to_string().contains("sgx2"), "{err}");
        let mut spec = spec_with(&["ENCLAVE_TYPE=software"], &[]);
        let err = EnclaveConfig::from_spec(&mut spec).expect_err("no path");
        assert!(err.to_string().contains("ENCLAVE_RUNTIME_PATH"), "{err}");
    }

    #[test]
    fn invalid_log_levels_become_info() {
        let mut spec = spec_with(
            &[
                "ENCLAVE_TYPE=software",
                "ENCLAVE_RUNTIME_PATH=/p.so",
                "ENCLAVE_RUNTIME_LOGLEVEL=loud",
            ],
            &[],
        );
        let config = EnclaveConfig::from_spec(&mut spec)
            .expect("parses")
            .expect("enclave");
        assert_eq!(config.runtime_loglevel, "info");
    }
}
