//! The node's signer policy: which signers' enclaves may run here, and whether debug enclaves
//! may. It belongs to the node's operator, never to the image or the container.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ImageError;
use crate::signature::Verified;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Hex signer identities (`rune-enclave keygen` and `inspect` print them).
    #[serde(default)]
    pub allowed_signers: Vec<String>,
    /// Debug enclaves are for development; production nodes refuse them.
    #[serde(default)]
    pub allow_debug: bool,
    #[serde(skip)]
    pub path: PathBuf,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let text = fs::read_to_string(path).map_err(|e| ImageError::Policy {
            path: path.to_path_buf(),
            reason: format!("{e}; the node needs a signer policy listing allowed_signers"),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ImageError> {
        let mut policy: Policy = toml::from_str(text).map_err(|e| ImageError::Policy {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        for signer in &mut policy.allowed_signers {
            *signer = signer.to_ascii_lowercase();
            if signer.len() != 64 || hex::decode(&*signer).is_err() {
                return Err(ImageError::Policy {
                    path: path.to_path_buf(),
                    reason: format!("allowed signer {signer:?} is not 64 hex digits"),
                });
            }
        }
        policy.path = path.to_path_buf();
        Ok(policy)
    }

    /// Refuses an enclave this node must not run, naming the reason.
    pub fn admit(&self, verified: &Verified) -> Result<(), ImageError> {
        let signer = hex::encode(verified.signer);
        if !self.allowed_signers.contains(&signer) {
            return Err(ImageError::Policy {
                path: self.path.clone(),
                reason: format!("signer {signer} is not in allowed_signers"),
            });
        }
        if verified.debug && !self.allow_debug {
            return Err(ImageError::Policy {
                path: self.path.clone(),
                reason: "the enclave is a debug enclave and allow_debug is false".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(signer: u8, debug: bool) -> Verified {
        Verified {
            measurement: [0; 32],
            signer: [signer; 32],
            debug,
            product_id: 0,
            security_version: 0,
        }
    }

    #[test]
    fn admits_only_listed_signers_and_debug_when_allowed() {
        let text = format!("allowed_signers = [\"{}\"]\n", "AB".repeat(32));
        let policy = Policy::parse(&text, Path::new("p.toml")).expect("parses");
        assert!(policy.admit(&verified(0xab, false)).is_ok());
        let err = policy
            .admit(&verified(0xcd, false))
            .expect_err("unknown signer");
        assert!(err.to_string().contains("not in allowed_signers"), "{err}");
        let err = policy.admit(&verified(0xab, true)).expect_err("debug");
        assert!(err.to_string().contains("debug"), "{err}");
        let text = format!("{text}allow_debug = true\n");
        let policy = Policy::parse(&text, Path::new("p.toml")).expect("parses");
        assert!(policy.admit(&verified(0xab, true)).is_ok());
    }

    #[test]
    fn bad_policies_are_named() {
        for text in [
            "allowed_signers = [\"xyz\"]",
            "nonsense = 1",
            "allowed_signers = 3",
            "[[",
        ] {
            let err = Policy::parse(text, Path::new("/etc/p.toml")).expect_err(text);
            assert!(err.to_string().contains("/etc/p.toml"), "{err}");
        }
    }
}
