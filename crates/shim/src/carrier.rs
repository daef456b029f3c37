//! Carriers: per-container conversions of an ordinary bundle into one that runs in an enclave
//! (upstream's "image conversion"), done in `Create` before `rune create`.
//!
//! The carrier is chosen by the container process' environment variable `RUNE_CARRIER`:
//! absent or empty means no carrier (a normal container, run by rune exactly as runc would);
//! any other value names a carrier. None is implemented yet: every name is refused with
//! `unknown carrier "X"`, which fails that `Create` only. The `software` and `occlum` carriers
//! will be added here, as more arms of [`by_name`].

use std::path::Path;

use oci_spec::runtime::Spec;

/// The environment variable of the container process that selects the carrier.
pub const CARRIER_ENV: &str = "RUNE_CARRIER";

/// A conversion of a container bundle, run before `rune create`.
pub trait Carrier: Send + Sync {
    /// The name `RUNE_CARRIER` selects it by.
    fn name(&self) -> &str;

    /// Converts the bundle in place: `spec` is the bundle's `config.json`, already parsed (the
    /// caller writes it back when this returns Ok); `rootfs` is the container's root file
    /// system, mounted.
    fn convert(&self, bundle: &Path, spec: &mut Spec, rootfs: &Path) -> Result<(), CarrierError>;
}

#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    #[error("unknown carrier {0:?} (set by {CARRIER_ENV} in the container's environment)")]
    Unknown(String),
    /// What a carrier returns when its conversion fails (none is implemented yet).
    #[allow(dead_code)]
    #[error("carrier {carrier}: {message}")]
    Failed { carrier: String, message: String },
}

/// The value of `RUNE_CARRIER` in the process environment of `spec`: the first `RUNE_CARRIER=`
/// entry, as the kernel's getenv would find it. `None` when absent.
pub fn requested(spec: &Spec) -> Option<String> {
    let env = spec.process().as_ref()?.env().as_ref()?;
    env.iter().find_map(|entry| {
        entry
            .strip_prefix(CARRIER_ENV)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_string)
    })
}

/// The carrier `spec` asks for: `Ok(None)` for a normal container.
pub fn select(spec: &Spec) -> Result<Option<Box<dyn Carrier>>, CarrierError> {
    match requested(spec) {
        None => Ok(None),
        Some(name) if name.is_empty() => Ok(None),
        Some(name) => by_name(&name).map(Some),
    }
}

/// The carrier called `name`.
pub fn by_name(name: &str) -> Result<Box<dyn Carrier>, CarrierError> {
    // Real carriers ("software", "occlum") are added here.
    Err(CarrierError::Unknown(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::ProcessBuilder;

    fn spec_with_env(env: &[&str]) -> Spec {
        let mut spec = Spec::default();
        let process = ProcessBuilder::default()
            .args(vec!["sh".to_string()])
            .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap();
        spec.set_process(Some(process));
        spec
    }

    #[test]
    fn absent_or_empty_means_none() {
        assert!(select(&spec_with_env(&["PATH=/bin"])).unwrap().is_none());
        assert!(select(&spec_with_env(&["RUNE_CARRIER="]))
            .unwrap()
            .is_none());
        let mut spec = Spec::default();
        spec.set_process(None);
        assert!(select(&spec).unwrap().is_none());
    }

    #[test]
    fn other_names_are_unknown() {
        let err = select(&spec_with_env(&["RUNE_CARRIERX=1", "RUNE_CARRIER=bogus"]))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("unknown carrier \"bogus\""),
            "{err}"
        );
        assert_eq!(
            requested(&spec_with_env(&["RUNE_CARRIER=a", "RUNE_CARRIER=b"])).as_deref(),
            Some("a")
        );
    }
}
