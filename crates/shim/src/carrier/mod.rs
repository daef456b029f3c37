//! Carriers: per-container conversions of an ordinary bundle into one that runs in an enclave
//! (upstream's "image conversion"), done in `Create` before `rune create`.
//!
//! The carrier is chosen by the container process' environment variable `RUNE_CARRIER`:
//! absent or empty means no carrier (a normal container, run by rune exactly as runc would);
//! `software` and `occlum` name the carriers in this module; anything else fails that Create
//! with `unknown carrier "X"` and the shim keeps serving its other containers.
//!
//! Every carrier has two modes, set by `[enclave_runtime] signature_method`:
//! - server (default): the rootfs is converted and the result signed here, by the provider's key
//!   or a signature server ([`signing`]); results are cached by content ([`cache`]);
//! - client: the image arrives converted and signed by its author; it is only verified.
//!
//! In both, the enclave settings rune needs (`ENCLAVE_TYPE`, `ENCLAVE_RUNTIME_PATH`, ...) are
//! added to the container's environment where the container has not set them itself.

mod cache;
mod occlum;
mod rootfs;
mod signing;
mod software;
mod tool;

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::config::{Config, SignatureMethod};
pub use cache::Cache;
pub use signing::Signer;
pub use tool::Tools;

/// The environment variable of the container process that selects the carrier.
pub const CARRIER_ENV: &str = "RUNE_CARRIER";

/// What a carrier works on.
pub struct Context<'a> {
    pub id: &'a str,
    /// The container's root filesystem, mounted (its writable layer takes what is written).
    pub rootfs: &'a Path,
    pub config: &'a Config,
    pub tools: &'a Tools,
    /// A private directory for this conversion's scratch files, removed afterwards.
    pub work: &'a Path,
}

/// What a conversion depends on and what it produces, decided before any work is done.
#[derive(Debug, Default)]
pub struct Plan {
    /// Every input besides the rootfs content the result depends on (settings, the identity
    /// of tools and signer): the cache key covers them all.
    pub inputs: Vec<(String, String)>,
    /// Paths, relative to the rootfs root, the conversion writes; cached and restored as one.
    pub outputs: Vec<PathBuf>,
    /// Environment entries for rune, added where the container has not set them.
    pub env: Vec<(String, String)>,
    /// Entries of `env` that replace the container's own value: ones the carrier derived
    /// from that value (a path it resolved inside the image, say).
    pub replaces: Vec<&'static str>,
}

/// A conversion of a container bundle, run before `rune create`.
pub trait Carrier {
    /// The name `RUNE_CARRIER` selects it by.
    fn name(&self) -> &'static str;

    /// Checks the container's settings (a bad one is an error naming it) and plans the work.
    fn plan(&self, ctx: &Context, spec: &Spec) -> Result<Plan, CarrierError>;

    /// Server-side mode: writes the signed enclave image into the rootfs (the plan's
    /// outputs). Returns a one-line description for the log (measurement, signer).
    fn convert(&self, ctx: &Context, spec: &Spec, plan: &Plan) -> Result<String, CarrierError>;

    /// Client-side mode: checks that the rootfs already holds an enclave image signed by its
    /// author. Returns the description.
    fn verify(&self, ctx: &Context, spec: &Spec, plan: &Plan) -> Result<String, CarrierError>;
}

#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    #[error(
        "unknown carrier {0:?} (set by {CARRIER_ENV} in the container's environment; \
         known: software, occlum)"
    )]
    Unknown(String),
    /// A setting of the container is wrong; the message names it.
    #[error("{0}")]
    Setting(String),
    #[error("{what}: {message}")]
    Tool { what: String, message: String },
    #[error("signing: {0}")]
    Signing(String),
    #[error("{0}")]
    Io(String),
}

impl CarrierError {
    pub fn io(what: &str, e: std::io::Error) -> CarrierError {
        CarrierError::Io(format!("{what}: {e}"))
    }
}

/// The value of `RUNE_CARRIER` in the process environment of `spec`: the first `RUNE_CARRIER=`
/// entry, as the kernel's getenv would find it. `None` when absent.
pub fn requested(spec: &Spec) -> Option<String> {
    env_value(spec, CARRIER_ENV)
}

/// The value of the first `name=` entry of the process environment.
pub fn env_value(spec: &Spec, name: &str) -> Option<String> {
    env_of(spec).iter().find_map(|entry| {
        entry
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_string)
    })
}

/// The process environment of `spec`.
pub fn env_of(spec: &Spec) -> &[String] {
    spec.process()
        .as_ref()
        .and_then(|p| p.env().as_deref())
        .unwrap_or(&[])
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
    match name {
        "software" => Ok(Box::new(software::Software)),
        "occlum" => Ok(Box::new(occlum::Occlum)),
        other => Err(CarrierError::Unknown(other.to_string())),
    }
}

/// A private scratch directory for one conversion, under the cache directory (root's, 0700)
/// so that nothing a container can reach sees the work in progress.
pub fn cache_scratch(config: &Config) -> std::io::Result<cache::Scratch> {
    cache::private_dir(&config.enclave_runtime.cache_dir().join("tmp"), "work-")
}

/// How a conversion went, for the log.
#[derive(Debug)]
pub struct Outcome {
    pub description: String,
    /// Served from the conversion cache.
    pub cached: bool,
}

/// Runs `carrier` on the container: plan, then verify (client mode) or convert through the
/// cache (server mode), then add the enclave settings to `spec`'s environment.
pub fn run(carrier: &dyn Carrier, ctx: &Context, spec: &mut Spec) -> Result<Outcome, CarrierError> {
    let plan = carrier.plan(ctx, spec)?;
    // Settings that cannot be added fail before anything is converted or written.
    let mut with_settings = spec.clone();
    add_env(&mut with_settings, &plan)?;
    let outcome = match ctx.config.enclave_runtime.signature_method {
        SignatureMethod::Client => Outcome {
            description: carrier.verify(ctx, spec, &plan)?,
            cached: false,
        },
        SignatureMethod::Server if !ctx.config.enclave_runtime.cache => Outcome {
            description: carrier.convert(ctx, spec, &plan)?,
            cached: false,
        },
        SignatureMethod::Server => convert_cached(carrier, ctx, spec, &plan)?,
    };
    *spec = with_settings;
    Ok(outcome)
}

fn convert_cached(
    carrier: &dyn Carrier,
    ctx: &Context,
    spec: &Spec,
    plan: &Plan,
) -> Result<Outcome, CarrierError> {
    let dir = ctx.config.enclave_runtime.cache_dir();
    let cache = Cache::open(&dir)
        .map_err(|e| CarrierError::io(&format!("conversion cache {}", dir.display()), e))?;
    // Taken before the conversion writes anything: the key is of what is converted.
    let tree = rootfs::tree_digest(ctx.rootfs)
        .map_err(|e| CarrierError::io("content digest of the rootfs", e))?;
    let key = Cache::key(carrier.name(), &plan.inputs, &tree);
    match cache.restore(carrier.name(), &key, ctx.rootfs, &plan.outputs) {
        Ok(Some(description)) => {
            log::debug!("container {}: conversion cache hit {key}", ctx.id);
            return Ok(Outcome {
                description,
                cached: true,
            });
        }
        Ok(None) => {}
        // A rootfs the cached copy cannot be written into would fail the conversion too.
        Err(e) => return Err(CarrierError::io("restore the cached conversion", e)),
    }
    let description = carrier.convert(ctx, spec, plan)?;
    if let Err(e) = cache.store(
        carrier.name(),
        &key,
        ctx.rootfs,
        &plan.outputs,
        &description,
    ) {
        log::warn!(
            "container {}: conversion not cached ({}): {e}",
            ctx.id,
            dir.display()
        );
    }
    Ok(Outcome {
        description,
        cached: false,
    })
}

/// Appends `NAME=value` for each setting the environment does not have yet, keeping the
/// container's order (upstream rebuilt the list from a map, shuffling it). A setting the
/// container gave another value is kept, except `ENCLAVE_TYPE`: a carrier builds for one
/// enclave type, and running its image as another can only fail later and less clearly; and
/// except the plan's `replaces`, which are rewritten in place.
fn add_env(spec: &mut Spec, plan: &Plan) -> Result<(), CarrierError> {
    let mut env = env_of(spec).to_vec();
    for (name, value) in &plan.env {
        let entry = format!("{name}={value}");
        match env_value(spec, name) {
            None => env.push(entry),
            Some(existing) if name == "ENCLAVE_TYPE" && existing != *value => {
                return Err(CarrierError::Setting(format!(
                    "ENCLAVE_TYPE={existing} conflicts with {CARRIER_ENV}={}, which needs \
                     ENCLAVE_TYPE={value}: remove ENCLAVE_TYPE from the container",
                    requested(spec).unwrap_or_default()
                )));
            }
            Some(_) if plan.replaces.contains(&name.as_str()) => {
                let prefix = format!("{name}=");
                for e in env.iter_mut().filter(|e| e.starts_with(&prefix)) {
                    e.clone_from(&entry);
                }
            }
            Some(_) => {}
        }
    }
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_env(Some(env));
    spec.set_process(Some(process));
    Ok(())
}

/// The first program of the process, with the `PATH` the container will use.
pub fn program(spec: &Spec) -> Result<(String, String), CarrierError> {
    let program = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first())
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| {
            CarrierError::Setting(
                "process.args is empty: a carrier needs the program to run in the enclave".into(),
            )
        })?;
    // rune looks the program up through the last PATH entry of config.json.
    let path = env_of(spec)
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("")
        .to_string();
    Ok((program, path))
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
    fn known_and_unknown_names() {
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
        for name in ["software", "occlum"] {
            let c = select(&spec_with_env(&[&format!("RUNE_CARRIER={name}")]))
                .unwrap()
                .unwrap();
            assert_eq!(c.name(), name);
        }
        assert!(by_name("graphene").is_err());
    }

    fn plan(env: &[(&str, &str)], replaces: Vec<&'static str>) -> Plan {
        Plan {
            inputs: Vec::new(),
            outputs: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            replaces,
        }
    }

    #[test]
    fn settings_are_appended_in_order_and_conflicts_named() {
        let mut spec = spec_with_env(&[
            "PATH=/bin",
            "RUNE_CARRIER=software",
            "ENCLAVE_RUNTIME_PATH=/mine.so",
        ]);
        add_env(
            &mut spec,
            &plan(
                &[
                    ("ENCLAVE_TYPE", "software"),
                    ("ENCLAVE_RUNTIME_PATH", "/p.so"),
                ],
                Vec::new(),
            ),
        )
        .unwrap();
        assert_eq!(
            env_of(&spec),
            [
                "PATH=/bin",
                "RUNE_CARRIER=software",
                "ENCLAVE_RUNTIME_PATH=/mine.so",
                "ENCLAVE_TYPE=software"
            ]
        );
        let mut spec = spec_with_env(&["ENCLAVE_TYPE=intelSgx", "RUNE_CARRIER=software"]);
        let err = add_env(
            &mut spec,
            &plan(&[("ENCLAVE_TYPE", "software")], Vec::new()),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("ENCLAVE_TYPE=intelSgx conflicts"),
            "{err}"
        );
        // A derived value replaces the container's in place.
        let mut spec = spec_with_env(&["ENCLAVE_RUNTIME_ARGS=/link/inst", "A=1"]);
        add_env(
            &mut spec,
            &plan(
                &[("ENCLAVE_RUNTIME_ARGS", "/real/inst")],
                vec!["ENCLAVE_RUNTIME_ARGS"],
            ),
        )
        .unwrap();
        assert_eq!(env_of(&spec), ["ENCLAVE_RUNTIME_ARGS=/real/inst", "A=1"]);
    }

    #[test]
    fn program_and_path() {
        let spec = spec_with_env(&["PATH=/a", "X=1", "PATH=/b:/c"]);
        assert_eq!(
            program(&spec).unwrap(),
            ("sh".to_string(), "/b:/c".to_string())
        );
        let mut spec = Spec::default();
        spec.set_process(Some(
            ProcessBuilder::default()
                .args(Vec::<String>::new())
                .build()
                .unwrap(),
        ));
        assert!(program(&spec)
            .unwrap_err()
            .to_string()
            .contains("process.args is empty"));
    }
}
