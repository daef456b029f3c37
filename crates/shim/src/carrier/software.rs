//! The `software` carrier: the container's rootfs becomes a signed software enclave image
//! (`/.rune-enclave/`, see docs/enclave-image.md) run by the software enclave PAL.
//!
//! The manifest trusts the program the container runs (found through its `PATH`, as rune
//! will find it) with its interpreter and libraries, lets the container's environment
//! variables through by name, and makes `/tmp` writable unless told otherwise. Settings come
//! from `[enclave_runtime.software]` and, per container, from these environment variables:
//!
//! | variable | meaning |
//! |---|---|
//! | `RUNE_SOFTWARE_ENTRYPOINTS` | more programs the enclave may start (comma-separated absolute paths), e.g. for `exec` |
//! | `RUNE_SOFTWARE_TRUST` | data the enclave may read (comma-separated absolute paths; a directory means every file under it), e.g. an interpreter's library directory |
//! | `RUNE_SOFTWARE_WRITABLE` | paths the enclave may write (comma-separated), replacing the default |
//! | `RUNE_SOFTWARE_MEMORY` | address-space limit per process (`256M`, `1G`) |
//! | `RUNE_SOFTWARE_MAX_THREADS`, `RUNE_SOFTWARE_MAX_PROCESSES` | limits, at least 1 |
//! | `RUNE_SOFTWARE_DEBUG` | `true`/`false`: mark the image a debug enclave |
//!
//! Mount points of the container (config.json's mounts: `/etc/hosts`, `/etc/resolv.conf` and
//! the like under CRI, volumes) hold what the runtime provides at run time, not the image's
//! files: a trusted path under one is refused, and the mount points under a trusted directory
//! are left out of the trusted files (so the enclave cannot read them).

use std::ffi::OsString;
use std::process::Command;

use oci_spec::runtime::Spec;

use super::signing::in_config_terms;
use super::tool::{field, identity};
use super::{env_of, env_value, program, Carrier, CarrierError, Context, Plan, Signer};
use crate::config::{valid_image_path, valid_size};

pub struct Software;

/// Bumped when the conversion's output changes for the same inputs.
const CONVERSION_VERSION: &str = "1";
const OUTPUT_DIR: &str = ".rune-enclave";

/// The variables of the table in the module documentation.
const ENTRYPOINTS: &str = "RUNE_SOFTWARE_ENTRYPOINTS";
const TRUST: &str = "RUNE_SOFTWARE_TRUST";
const WRITABLE: &str = "RUNE_SOFTWARE_WRITABLE";
const MEMORY: &str = "RUNE_SOFTWARE_MEMORY";
const MAX_THREADS: &str = "RUNE_SOFTWARE_MAX_THREADS";
const MAX_PROCESSES: &str = "RUNE_SOFTWARE_MAX_PROCESSES";
const DEBUG: &str = "RUNE_SOFTWARE_DEBUG";

/// The manifest settings of one container.
#[derive(Debug, PartialEq)]
struct Settings {
    program: String,
    path: String,
    entrypoints: Vec<String>,
    trust: Vec<String>,
    /// Mount points under a trusted directory: `rune-enclave build --exclude`.
    exclude: Vec<String>,
    writable: Vec<String>,
    memory: String,
    max_threads: u32,
    max_processes: u32,
    debug: bool,
    host_env: Vec<String>,
}

fn bad(name: &str, value: &str, fix: &str) -> CarrierError {
    CarrierError::Setting(format!("{name}={value:?}: {fix}"))
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn absolute_paths(name: &str, value: &str) -> Result<Vec<String>, CarrierError> {
    let paths = list(value);
    for p in &paths {
        if !valid_image_path(p) {
            return Err(bad(
                name,
                value,
                "give absolute paths without `..`, separated by commas",
            ));
        }
    }
    Ok(paths)
}

/// rune-enclave's advice for an image without a manifest or signature names the rootfs it
/// looked at: here a temporary task rootfs, which is not where the author should sign.
fn unsigned_in_client_mode(e: CarrierError) -> CarrierError {
    match e {
        CarrierError::Tool { what, message }
            if message.contains("no enclave image")
                || message.contains("no manifest")
                || message.contains("is not signed") =>
        {
            CarrierError::Tool {
                what,
                message: format!(
                    "the image holds no signed software enclave image, which client-side \
                     signing (signature_method = \"client\") requires: its author builds and \
                     signs it into the image's root filesystem with `rune-enclave build` and \
                     `rune-enclave sign` before pushing it, or the node signs it with \
                     signature_method = \"server\" ({})",
                    message.trim()
                ),
            }
        }
        other => other,
    }
}

/// Whether `path` is `dir` or lies under it (both absolute, without `..`).
fn inside(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty()
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The container's mount points under the trusted paths, sorted (they are part of the cache
/// key). A trusted path at or under a mount point is an error: the runtime replaces it.
fn mounted_over(spec: &Spec, trust: &[String]) -> Result<Vec<String>, CarrierError> {
    let mut exclude = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination().to_string_lossy();
        let dest = dest.trim_end_matches('/');
        if dest.is_empty() || !valid_image_path(dest) {
            continue;
        }
        for t in trust {
            if inside(t, dest) {
                return Err(CarrierError::Setting(format!(
                    "{TRUST}: {t} is at or under {dest}, where the container runtime mounts \
                     its own content over the image (a mount of the container's config, such \
                     as CRI's /etc/hosts), so it cannot be trusted; leave it out of {TRUST}"
                )));
            }
            if inside(dest, t) && !exclude.iter().any(|x: &String| x == dest) {
                exclude.push(dest.to_string());
            }
        }
    }
    exclude.sort();
    Ok(exclude)
}

fn positive(name: &str, value: &str) -> Result<u32, CarrierError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| bad(name, value, "give a whole number of at least 1"))
}

fn settings(ctx: &Context, spec: &Spec) -> Result<Settings, CarrierError> {
    let defaults = &ctx.config.enclave_runtime.software;
    let (program, path) = program(spec)?;
    let entrypoints = match env_value(spec, ENTRYPOINTS) {
        Some(v) => absolute_paths(ENTRYPOINTS, &v)?,
        None => Vec::new(),
    };
    let trust = match env_value(spec, TRUST) {
        Some(v) => absolute_paths(TRUST, &v)?,
        None => Vec::new(),
    };
    let exclude = mounted_over(spec, &trust)?;
    let writable = match env_value(spec, WRITABLE) {
        Some(v) => absolute_paths(WRITABLE, &v)?,
        None => defaults
            .writable_paths
            .clone()
            .unwrap_or_else(|| vec!["/tmp".to_string()]),
    };
    let memory = env_value(spec, MEMORY)
        .or_else(|| defaults.memory.clone())
        .unwrap_or_else(|| "256M".to_string());
    if !valid_size(&memory) {
        return Err(bad(
            MEMORY,
            &memory,
            "give a size in bytes with an optional K, M, G or T suffix, e.g. 256M",
        ));
    }
    let max_threads = match env_value(spec, MAX_THREADS) {
        Some(v) => positive(MAX_THREADS, &v)?,
        None => defaults.max_threads.unwrap_or(64),
    };
    let max_processes = match env_value(spec, MAX_PROCESSES) {
        Some(v) => positive(MAX_PROCESSES, &v)?,
        None => defaults.max_processes.unwrap_or(16),
    };
    let debug = match env_value(spec, DEBUG).as_deref() {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => return Err(bad(DEBUG, other, "give true or false")),
    };
    // The container's own variables reach the workload; rune strips its ENCLAVE_* settings
    // before the PAL sees the environment. HOME is added by rune when config.json has none.
    let mut host_env: Vec<String> = env_of(spec)
        .iter()
        .filter_map(|e| e.split_once('=').map(|(name, _)| name.to_string()))
        .filter(|name| !name.is_empty() && !name.starts_with("ENCLAVE_"))
        .chain(std::iter::once("HOME".to_string()))
        .collect();
    host_env.sort();
    host_env.dedup();
    Ok(Settings {
        program,
        path,
        entrypoints,
        trust,
        exclude,
        writable,
        memory,
        max_threads,
        max_processes,
        debug,
        host_env,
    })
}

impl Settings {
    fn build_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--entrypoint".into(), self.program.clone().into()];
        args.push("--search-path".into());
        args.push(self.path.clone().into());
        for e in &self.entrypoints {
            args.push("--entrypoint".into());
            args.push(e.into());
        }
        for t in &self.trust {
            args.push("--trust".into());
            args.push(t.into());
        }
        for x in &self.exclude {
            args.push("--exclude".into());
            args.push(x.into());
        }
        for w in &self.writable {
            args.push("--writable".into());
            args.push(w.into());
        }
        for name in &self.host_env {
            args.push("--host-env".into());
            args.push(name.into());
        }
        args.push("--memory".into());
        args.push(self.memory.clone().into());
        args.push("--max-threads".into());
        args.push(self.max_threads.to_string().into());
        args.push("--max-processes".into());
        args.push(self.max_processes.to_string().into());
        if self.debug {
            args.push("--debug".into());
        }
        args
    }
}

fn describe(output: &str) -> String {
    format!(
        "measurement {} signer {}",
        field(output, "measurement").unwrap_or_else(|| "?".into()),
        field(output, "signer").unwrap_or_else(|| "?".into())
    )
}

impl Carrier for Software {
    fn name(&self) -> &'static str {
        "software"
    }

    fn plan(&self, ctx: &Context, spec: &Spec) -> Result<Plan, CarrierError> {
        let s = settings(ctx, spec)?;
        let pal = ctx.config.enclave_runtime.software.enclave_runtime_path();
        // A configured PAL that is not there would only fail later, inside rune, without
        // naming the key that chose it.
        if ctx
            .config
            .enclave_runtime
            .software
            .enclave_runtime_path
            .is_some()
            && !pal.is_file()
        {
            return Err(CarrierError::Setting(format!(
                "enclave_runtime_path in [enclave_runtime.software] of {}: {} is not a file; \
                 install the software PAL there or fix the key",
                crate::config::Config::path().display(),
                pal.display()
            )));
        }
        let mut inputs = vec![
            ("conversion".to_string(), CONVERSION_VERSION.to_string()),
            (
                "rune-enclave".to_string(),
                identity(&ctx.tools.find("rune-enclave")),
            ),
        ];
        for (n, arg) in s.build_args().iter().enumerate() {
            inputs.push((format!("arg{n:03}"), arg.to_string_lossy().into_owned()));
        }
        if ctx.config.enclave_runtime.signature_method == crate::config::SignatureMethod::Server {
            let signer = Signer::from_config(ctx.config, ctx.tools)?;
            inputs.push(("signer".to_string(), signer.identity()?));
        }
        Ok(Plan {
            inputs,
            outputs: vec![OUTPUT_DIR.into()],
            replaces: Vec::new(),
            env: vec![
                ("ENCLAVE_TYPE".to_string(), "software".to_string()),
                (
                    "ENCLAVE_RUNTIME_PATH".to_string(),
                    pal.to_string_lossy().into_owned(),
                ),
            ],
        })
    }

    fn convert(&self, ctx: &Context, spec: &Spec, _plan: &Plan) -> Result<String, CarrierError> {
        let s = settings(ctx, spec)?;
        let tool = ctx.tools.find("rune-enclave");
        ctx.tools.run(
            "build the software enclave image",
            Command::new(&tool)
                .arg("build")
                .arg("--rootfs")
                .arg(ctx.rootfs)
                .args(s.build_args()),
        )?;
        let signer = Signer::from_config(ctx.config, ctx.tools)?;
        let out = ctx
            .tools
            .run(
                "sign the software enclave image",
                Command::new(&tool)
                    .arg("sign")
                    .arg("--rootfs")
                    .arg(ctx.rootfs)
                    .args(signer.args()),
            )
            .map_err(in_config_terms)?;
        Ok(describe(&out))
    }

    fn verify(&self, ctx: &Context, _spec: &Spec, _plan: &Plan) -> Result<String, CarrierError> {
        let mut cmd = Command::new(ctx.tools.find("rune-enclave"));
        cmd.arg("verify").arg("--rootfs").arg(ctx.rootfs);
        if let Some(policy) = &ctx.config.enclave_runtime.software.policy {
            cmd.arg("--policy").arg(policy);
        }
        let out = ctx
            .tools
            .run("verify the client-signed software enclave image", &mut cmd)
            .map_err(unsigned_in_client_mode)?;
        Ok(describe(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carrier::Tools;
    use crate::config::Config;
    use oci_spec::runtime::{MountBuilder, ProcessBuilder};
    use std::path::Path;

    fn spec(args: &[&str], env: &[&str]) -> Spec {
        let mut spec = Spec::default();
        spec.set_process(Some(
            ProcessBuilder::default()
                .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .build()
                .unwrap(),
        ));
        spec
    }

    fn with_ctx<T>(config: &Config, f: impl FnOnce(&Context) -> T) -> T {
        let tools = Tools::default();
        let ctx = Context {
            id: "c",
            rootfs: Path::new("/nonexistent/rootfs"),
            config,
            tools: &tools,
            work: Path::new("/nonexistent/work"),
        };
        f(&ctx)
    }

    #[test]
    fn settings_from_env_and_defaults() {
        let config = Config::default();
        let s = with_ctx(&config, |ctx| {
            settings(
                ctx,
                &spec(
                    &["sh", "-c", "x"],
                    &[
                        "PATH=/bin",
                        "RUNE_CARRIER=software",
                        "ENCLAVE_RUNTIME_LOGLEVEL=debug",
                        "RUNE_SOFTWARE_WRITABLE=/tmp,/var/run",
                        "RUNE_SOFTWARE_MEMORY=64M",
                        "RUNE_SOFTWARE_ENTRYPOINTS=/bin/cat",
                        "RUNE_SOFTWARE_TRUST=/usr/lib/python3.11, /etc/app.conf",
                    ],
                ),
            )
        })
        .unwrap();
        assert_eq!(s.trust, ["/usr/lib/python3.11", "/etc/app.conf"]);
        let args: Vec<String> = s
            .build_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--trust" && w[1] == "/usr/lib/python3.11"),
            "{args:?}"
        );
        assert_eq!(s.program, "sh");
        assert_eq!(s.path, "/bin");
        assert_eq!(s.writable, ["/tmp", "/var/run"]);
        assert_eq!(s.entrypoints, ["/bin/cat"]);
        assert_eq!(s.memory, "64M");
        assert_eq!((s.max_threads, s.max_processes, s.debug), (64, 16, false));
        assert!(s.host_env.contains(&"PATH".to_string()));
        assert!(s.host_env.contains(&"HOME".to_string()));
        assert!(!s.host_env.iter().any(|n| n.starts_with("ENCLAVE_")));
    }

    #[test]
    fn mount_points_are_not_trusted() {
        let config = Config::default();
        let mut with_mounts = spec(&["sh"], &["PATH=/bin", "RUNE_SOFTWARE_TRUST=/etc,/usr/lib"]);
        let mut mounts = with_mounts.mounts().clone().unwrap_or_default();
        for dest in ["/etc/resolv.conf", "/etc/hosts/", "/data"] {
            mounts.push(
                MountBuilder::default()
                    .destination(dest)
                    .typ("bind")
                    .source("/somewhere")
                    .build()
                    .unwrap(),
            );
        }
        with_mounts.set_mounts(Some(mounts.clone()));
        let s = with_ctx(&config, |ctx| settings(ctx, &with_mounts)).unwrap();
        assert_eq!(s.exclude, ["/etc/hosts", "/etc/resolv.conf"]);
        let args: Vec<String> = s
            .build_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = args.iter().position(|a| a == "--exclude").unwrap();
        assert_eq!(args[at + 1], "/etc/hosts");

        for trust in ["/etc/hosts", "/data/x"] {
            let mut named = spec(
                &["sh"],
                &["PATH=/bin", &format!("RUNE_SOFTWARE_TRUST={trust}")],
            );
            named.set_mounts(Some(mounts.clone()));
            let err = with_ctx(&config, |ctx| settings(ctx, &named))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("RUNE_SOFTWARE_TRUST") && err.contains(trust),
                "{err}"
            );
            assert!(err.contains("mounts its own content"), "{err}");
        }
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let config = Config::default();
        for (env, needle) in [
            ("RUNE_SOFTWARE_MEMORY=lots", "RUNE_SOFTWARE_MEMORY=\"lots\""),
            ("RUNE_SOFTWARE_MAX_THREADS=0", "RUNE_SOFTWARE_MAX_THREADS"),
            (
                "RUNE_SOFTWARE_MAX_PROCESSES=-1",
                "RUNE_SOFTWARE_MAX_PROCESSES",
            ),
            ("RUNE_SOFTWARE_DEBUG=maybe", "RUNE_SOFTWARE_DEBUG"),
            ("RUNE_SOFTWARE_WRITABLE=tmp", "absolute paths"),
            ("RUNE_SOFTWARE_ENTRYPOINTS=/a/../b", "without `..`"),
            ("RUNE_SOFTWARE_TRUST=usr/lib", "RUNE_SOFTWARE_TRUST"),
        ] {
            let err = with_ctx(&config, |ctx| settings(ctx, &spec(&["sh"], &[env])))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{env}: {err}");
        }
        assert!(valid_size("256M") && valid_size("1GiB") && valid_size("4096"));
        assert!(!valid_size("M") && !valid_size("12Q") && !valid_size(""));
    }

    #[test]
    fn plan_inputs_cover_the_settings() {
        let mut config = Config::default();
        config.enclave_runtime.signature_method = crate::config::SignatureMethod::Client;
        let a = with_ctx(&config, |ctx| {
            Software.plan(ctx, &spec(&["sh"], &["PATH=/bin"]))
        })
        .unwrap();
        let b = with_ctx(&config, |ctx| {
            Software.plan(
                ctx,
                &spec(&["sh"], &["PATH=/bin", "RUNE_SOFTWARE_MEMORY=1G"]),
            )
        })
        .unwrap();
        assert_ne!(a.inputs, b.inputs);
        assert_eq!(a.outputs, [std::path::PathBuf::from(".rune-enclave")]);
        assert_eq!(
            a.env[0],
            ("ENCLAVE_TYPE".to_string(), "software".to_string())
        );
    }
}
