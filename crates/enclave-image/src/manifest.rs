//! The manifest and its canonical encoding.
//!
//! The measurement is SHA-256 over the canonical encoding, never over the JSON: JSON allows many
//! spellings of one manifest, the encoding allows exactly one. It is a header line followed by
//! `key=value` lines in a fixed order; lists are sorted where order carries no meaning (paths,
//! names) and kept where it does (the default env). No value may contain a newline, which makes
//! the encoding unambiguous.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ImageError;

pub const MANIFEST_VERSION: u32 = 1;
const ENCODING_HEADER: &str = "RUNE-SOFTWARE-ENCLAVE-MANIFEST-V1";

/// The workload's env: `default` entries (`NAME=value`, in order) and the names of host
/// (container) env vars allowed through.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvPolicy {
    #[serde(default)]
    pub default: Vec<String>,
    #[serde(default)]
    pub host_allowed: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    /// Absolute paths of the programs the enclave may start.
    pub entrypoints: Vec<String>,
    /// Absolute path → lowercase hex SHA-256 of the content; every file the enclave may read or
    /// execute.
    pub trusted_files: BTreeMap<String, String>,
    /// Absolute paths (directories or files) the enclave may write.
    #[serde(default)]
    pub writable_paths: Vec<String>,
    #[serde(default)]
    pub env: EnvPolicy,
    /// Hard limit on each enclave process's address space, in bytes.
    pub memory_size: u64,
    pub max_threads: u32,
    pub max_processes: u32,
    pub debug: bool,
    pub product_id: u16,
    pub security_version: u16,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let bytes = fs::read(path).map_err(|e| ImageError::io(path, e))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Invalid {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        manifest.validate().map_err(|e| ImageError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(manifest)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// Refuses what would make the encoding ambiguous or the manifest meaningless.
    pub fn validate(&self) -> Result<(), ImageError> {
        let bad = |what: String| Err(ImageError::Manifest(what));
        if self.version != MANIFEST_VERSION {
            return bad(format!(
                "version {} is not supported (expected {MANIFEST_VERSION})",
                self.version
            ));
        }
        if self.entrypoints.is_empty() {
            return bad("no entrypoints: name at least one program".into());
        }
        for path in self
            .entrypoints
            .iter()
            .chain(self.trusted_files.keys())
            .chain(&self.writable_paths)
        {
            check_path(path)?;
        }
        for entrypoint in &self.entrypoints {
            if !self.trusted_files.contains_key(entrypoint) {
                return bad(format!("entrypoint {entrypoint} is not a trusted file"));
            }
        }
        for (path, digest) in &self.trusted_files {
            if digest.len() != 64
                || !digest
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return bad(format!(
                    "trusted file {path}: digest is not 64 lowercase hex digits"
                ));
            }
        }
        for entry in &self.env.default {
            if !entry.contains('=') || entry.starts_with('=') || entry.contains('\n') {
                return bad(format!("env.default entry {entry:?} is not NAME=value"));
            }
        }
        for name in &self.env.host_allowed {
            if name.is_empty() || name.contains(['=', '\n', '\0']) {
                return bad(format!(
                    "env.host_allowed name {name:?} is not a variable name"
                ));
            }
        }
        if self.memory_size == 0 || self.max_threads == 0 || self.max_processes == 0 {
            return bad("memory_size, max_threads and max_processes must be above 0".into());
        }
        Ok(())
    }

    /// The canonical encoding the measurement is taken over.
    pub fn canonical_encoding(&self) -> Vec<u8> {
        let mut out = String::new();
        let mut line = |key: &str, value: &str| {
            out.push_str(key);
            out.push('=');
            out.push_str(value);
            out.push('\n');
        };
        line("header", ENCODING_HEADER);
        line("version", &self.version.to_string());
        line("debug", if self.debug { "1" } else { "0" });
        line("product_id", &self.product_id.to_string());
        line("security_version", &self.security_version.to_string());
        line("memory_size", &self.memory_size.to_string());
        line("max_threads", &self.max_threads.to_string());
        line("max_processes", &self.max_processes.to_string());
        for entrypoint in sorted(&self.entrypoints) {
            line("entrypoint", entrypoint);
        }
        for entry in &self.env.default {
            line("env_default", entry);
        }
        for name in sorted(&self.env.host_allowed) {
            line("env_host_allowed", name);
        }
        for path in sorted(&self.writable_paths) {
            line("writable_path", path);
        }
        for (path, digest) in &self.trusted_files {
            line("trusted_file", &format!("{digest} {path}"));
        }
        out.into_bytes()
    }

    /// SHA-256 of the canonical encoding.
    pub fn measurement(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_encoding()).into()
    }
}

fn sorted(items: &[String]) -> Vec<&String> {
    let mut items: Vec<&String> = items.iter().collect();
    items.sort();
    items.dedup();
    items
}

/// Absolute, normalised, printable: no `..`, no `.`, no empty components, no newline or NUL.
fn check_path(path: &str) -> Result<(), ImageError> {
    let ok = path.starts_with('/')
        && !path.contains(['\n', '\0'])
        && (path == "/" || !path.ends_with('/'))
        && path
            .split('/')
            .skip(1)
            .all(|c| path == "/" || (!c.is_empty() && c != "." && c != ".."));
    if ok {
        Ok(())
    } else {
        Err(ImageError::Manifest(format!(
            "path {path:?} must be absolute and normalised (no `.`, `..` or empty components)"
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            entrypoints: vec!["/bin/busybox".into()],
            trusted_files: BTreeMap::from([("/bin/busybox".into(), "ab".repeat(32))]),
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

    #[test]
    fn the_encoding_is_documented_and_stable() {
        let text = String::from_utf8(sample().canonical_encoding()).expect("utf-8");
        let expected = format!(
            "header=RUNE-SOFTWARE-ENCLAVE-MANIFEST-V1\nversion=1\ndebug=0\nproduct_id=1\n\
             security_version=2\nmemory_size=268435456\nmax_threads=64\nmax_processes=16\n\
             entrypoint=/bin/busybox\nenv_default=PATH=/bin\nenv_host_allowed=TZ\n\
             writable_path=/tmp\ntrusted_file={} /bin/busybox\n",
            "ab".repeat(32)
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn every_field_changes_the_measurement() {
        let base = sample().measurement();
        let mut variants = Vec::new();
        let mut m = sample();
        m.debug = true;
        variants.push(m);
        let mut m = sample();
        m.memory_size += 1;
        variants.push(m);
        let mut m = sample();
        m.env.default.push("X=1".into());
        variants.push(m);
        let mut m = sample();
        m.trusted_files
            .insert("/bin/busybox".into(), "cd".repeat(32));
        variants.push(m);
        let mut m = sample();
        m.writable_paths.push("/var".into());
        variants.push(m);
        for variant in variants {
            assert_ne!(variant.measurement(), base, "{variant:?}");
        }
    }

    #[test]
    fn order_of_unordered_lists_does_not_matter() {
        let mut a = sample();
        a.writable_paths = vec!["/a".into(), "/b".into()];
        let mut b = sample();
        b.writable_paths = vec!["/b".into(), "/a".into()];
        assert_eq!(a.measurement(), b.measurement());
    }

    #[test]
    fn hostile_manifests_are_refused() {
        let mut m = sample();
        m.trusted_files
            .insert("/../etc/shadow".into(), "ab".repeat(32));
        assert!(m.validate().is_err());
        let mut m = sample();
        m.writable_paths.push("/tmp\ntrusted_file=x /y".into());
        assert!(m.validate().is_err());
        let mut m = sample();
        m.entrypoints.push("/bin/sh".into());
        assert!(m.validate().unwrap_err().to_string().contains("/bin/sh"));
        let mut m = sample();
        m.trusted_files.insert("/x".into(), "AB".repeat(32));
        assert!(m.validate().is_err());
        assert!(serde_json::from_str::<Manifest>("{\"version\":1}").is_err());
        for cut in 0..sample().to_json().len() {
            let _ = serde_json::from_slice::<Manifest>(&sample().to_json()[..cut]);
        }
    }
}
