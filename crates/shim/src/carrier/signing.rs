//! Who signs a converted image on the server side: the provider's own key on this node, or a
//! signature server (`rune-signd`). Either way the signing itself is `rune-enclave`'s, which
//! checks a server's answer (key size, exponent, pin, signature over the material) before
//! anything is attached, so the shim holds no key material and no TLS client of its own.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::tool::Tools;
use super::CarrierError;
use crate::config::Config;

pub enum Signer {
    /// The provider's key, a PEM file only root can read.
    Key(PathBuf),
    Server {
        address: String,
        token_file: Option<PathBuf>,
        ca_cert: Option<PathBuf>,
        public_key: Option<PathBuf>,
    },
}

fn failed(message: String) -> CarrierError {
    CarrierError::Signing(message)
}

impl Signer {
    /// The signer the configuration names. The provider key is created on first use (RSA-3072,
    /// e=3, mode 0600); an existing one others can read is refused.
    pub fn from_config(config: &Config, tools: &Tools) -> Result<Signer, CarrierError> {
        if let Some(address) = config.signature.address() {
            let s = &config.signature;
            return Ok(Signer::Server {
                address: address.trim_end_matches('/').to_string(),
                token_file: s.token_file.clone(),
                ca_cert: s.ca_cert.clone(),
                public_key: s.public_key.clone(),
            });
        }
        let key = config.enclave_runtime.signing_key();
        ensure_key(&key, tools)?;
        Ok(Signer::Key(key))
    }

    /// The arguments of `rune-enclave sign`/`sign-material` that select this signer.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        match self {
            Signer::Key(key) => {
                args.push("--key".into());
                args.push(key.into());
            }
            Signer::Server {
                address,
                token_file,
                ca_cert,
                public_key,
            } => {
                args.push("--server".into());
                args.push(address.into());
                for (flag, value) in [
                    ("--token-file", token_file),
                    ("--ca-cert", ca_cert),
                    ("--signer", public_key),
                ] {
                    if let Some(v) = value {
                        args.push(flag.into());
                        args.push(v.into());
                    }
                }
            }
        }
        args
    }

    /// What identifies the signer in the conversion cache key: a digest of the key file, or
    /// the server address and the digest of its pinned key. (An unpinned server that changes
    /// its key keeps serving cached images signed by the old one until the cache is cleared.)
    pub fn identity(&self) -> Result<String, CarrierError> {
        let digest = |path: &Path| -> Result<String, CarrierError> {
            let bytes = fs::read(path)
                .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
            Ok(hex::encode(Sha256::digest(bytes)))
        };
        Ok(match self {
            Signer::Key(key) => format!("key:{}", digest(key)?),
            Signer::Server {
                address,
                public_key,
                ..
            } => match public_key {
                Some(p) => format!("server:{address}:pinned:{}", digest(p)?),
                None => format!("server:{address}:unpinned"),
            },
        })
    }
}

/// Rewords a signing tool's failure for the operator of the shim, who set the signer up in
/// the shim's configuration file, not on the tool's command line.
pub fn in_config_terms(e: CarrierError) -> CarrierError {
    const TERMS: &[(&str, &str)] = &[
        ("--token-file", "[signature] token_file"),
        ("--ca-cert", "[signature] ca_cert"),
        ("--signer", "[signature] public_key"),
        ("--server", "[signature] server_address"),
        ("--key", "[enclave_runtime] signing_key"),
    ];
    match e {
        CarrierError::Tool { what, message } => {
            let message = TERMS
                .iter()
                .fold(message, |m, (flag, key)| m.replace(flag, key));
            CarrierError::Tool { what, message }
        }
        other => other,
    }
}

/// Makes sure the provider key exists, creating it once. Concurrent first Creates each
/// generate a key in a private file and link it into place; the first link wins and the
/// others use it, so no lock is held while a key is generated.
fn ensure_key(key: &Path, tools: &Tools) -> Result<(), CarrierError> {
    match fs::metadata(key) {
        Ok(meta) => {
            if meta.mode() & 0o077 != 0 {
                return Err(failed(format!(
                    "signing key {} is readable by other users (mode {:04o}): chmod 0600 it",
                    key.display(),
                    meta.mode() & 0o7777
                )));
            }
            return Ok(());
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(failed(format!(
                "cannot read signing key {}: {e}",
                key.display()
            )))
        }
    }
    let dir = key
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".signing-key-{}-{nanos}.pem", std::process::id()));
    let out = tools.run(
        "create the provider signing key",
        Command::new(tools.find("rune-enclave"))
            .arg("keygen")
            .arg("--out")
            .arg(&tmp),
    )?;
    let linked = fs::hard_link(&tmp, key);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            log::info!(
                "created the provider signing key {} (signer {})",
                key.display(),
                out.trim()
            );
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(failed(format!(
            "cannot create signing key {}: {e}",
            key.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SignatureServer;

    #[test]
    fn tool_errors_name_the_config_keys() {
        let e = in_config_terms(CarrierError::Tool {
            what: "sign".into(),
            message: "refused the token; check that --token-file holds it (--ca-cert, --key)"
                .into(),
        });
        let text = e.to_string();
        assert!(text.contains("[signature] token_file holds"), "{text}");
        assert!(text.contains("[signature] ca_cert"), "{text}");
        assert!(text.contains("[enclave_runtime] signing_key"), "{text}");
        assert!(!text.contains("--"), "{text}");
    }

    #[test]
    fn server_arguments_and_identity() {
        let config = Config {
            signature: SignatureServer {
                server_address: Some("https://signd:9443/".into()),
                token_file: Some("/t".into()),
                ca_cert: None,
                public_key: None,
            },
            ..Config::default()
        };
        let signer = Signer::from_config(&config, &Tools::default()).unwrap();
        let args: Vec<String> = signer
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["--server", "https://signd:9443", "--token-file", "/t"]
        );
        assert_eq!(
            signer.identity().unwrap(),
            "server:https://signd:9443:unpinned"
        );
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("shim-key-{}.pem", std::process::id()));
        fs::write(&path, b"key").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = ensure_key(&path, &Tools::default()).unwrap_err();
        assert!(err.to_string().contains("chmod 0600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        ensure_key(&path, &Tools::default()).unwrap();
        let signer = Signer::Key(path.clone());
        assert!(signer.identity().unwrap().starts_with("key:"));
        fs::remove_file(&path).unwrap();
    }
}
