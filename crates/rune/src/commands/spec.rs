use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use nix::unistd::{getegid, geteuid};
use oci_spec::runtime::Spec;

/// Writes a starting config.json, runc's default, and never overwrites one.
pub fn spec(args: &liboci_cli::Spec) -> Result<u8> {
    let spec = if args.rootless {
        Spec::rootless(geteuid().as_raw(), getegid().as_raw())
    } else {
        Spec::default()
    };
    let path = args
        .bundle
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("config.json");

    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|err| match err.kind() {
            ErrorKind::AlreadyExists => {
                anyhow!(
                    "{} exists: remove it first, rune spec does not overwrite",
                    path.display()
                )
            }
            _ => anyhow!("cannot create {}: {err}", path.display()),
        })?;
    let mut text = serde_json::to_string_pretty(&spec)?;
    text.push('\n');
    file.write_all(text.as_bytes())
        .map_err(|err| anyhow!("cannot write {}: {err}", path.display()))?;
    Ok(0)
}
