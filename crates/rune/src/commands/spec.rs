use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use libenclave::EnclaveType;
use nix::unistd::{getegid, geteuid};
use oci_spec::runtime::Spec;

/// Where `rune spec --enclave` points the template when no PAL is named.
const DEFAULT_PAL: &str = "/usr/local/lib/rune/liberpal-software.so";

/// Writes a starting config.json, runc's default, and never overwrites one.
pub fn spec(args: &crate::cli::Spec) -> Result<u8> {
    let mut spec = if args.rootless {
        Spec::rootless(geteuid().as_raw(), getegid().as_raw())
    } else {
        Spec::default()
    };
    if args.enclave {
        let enclave_type: EnclaveType = args.enclave_type.parse()?;
        let pal = args
            .enclave_runtime_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PAL));
        enclave_template(&mut spec, enclave_type, &pal);
    }

    let path = args
        .bundle
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("config.json");
    write_new(&path, &spec)?;
    Ok(0)
}

/// The enclave settings as annotations, where OCI bundle authors set them (docker and Kubernetes
/// users set the `ENCLAVE_*` env instead). No terminal: enclave workloads are services.
fn enclave_template(spec: &mut Spec, enclave_type: EnclaveType, pal: &Path) {
    let annotations = HashMap::from([
        ("enclave.type".to_string(), enclave_type.name().to_string()),
        (
            "enclave.runtime.path".to_string(),
            pal.display().to_string(),
        ),
        ("enclave.runtime.args".to_string(), String::new()),
        ("enclave.runtime.loglevel".to_string(), "info".to_string()),
    ]);
    spec.set_annotations(Some(annotations));
    if let Some(mut process) = spec.process().clone() {
        process.set_terminal(Some(false));
        spec.set_process(Some(process));
    }
}

fn write_new(path: &Path, spec: &Spec) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|err| match err.kind() {
            ErrorKind::AlreadyExists => {
                anyhow!(
                    "{} exists: remove it first, rune spec does not overwrite",
                    path.display()
                )
            }
            _ => anyhow!("cannot create {}: {err}", path.display()),
        })?;
    let mut text = serde_json::to_string_pretty(spec)?;
    text.push('\n');
    file.write_all(text.as_bytes())
        .map_err(|err| anyhow!("cannot write {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enclave_template_is_read_back_as_an_enclave_container() {
        let mut spec = Spec::default();
        enclave_template(&mut spec, EnclaveType::Kvm, Path::new("/opt/pal.so"));
        let config = libenclave::EnclaveConfig::from_spec(&mut spec)
            .expect("valid settings")
            .expect("an enclave container");
        assert_eq!(config.enclave_type, EnclaveType::Kvm);
        assert_eq!(config.runtime_path, PathBuf::from("/opt/pal.so"));
        assert_eq!(
            spec.process().as_ref().and_then(|p| p.terminal()),
            Some(false)
        );
    }
}
