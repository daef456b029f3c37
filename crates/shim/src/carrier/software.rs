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

use std::ffi::OsString;
use std::process::Command;

use oci_spec::runtime::Spec;

use super::signing::in_config_terms;
use super::tool::{field, identity};
use super::{env_of, env_value, program, Carrier, CarrierError, Context, Plan, Signer};

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
        if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
            return Err(bad(
                name,
                value,
                "give absolute paths without `..`, separated by commas",
            ));
        }
    }
    Ok(paths)
}

/// `256M`, `1G`, `4096`: what `rune-enclave build --memory` accepts.
fn valid_size(value: &str) -> bool {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let unit = &value[digits..];
    let unit = unit
        .strip_suffix("iB")
        .or_else(|| unit.strip_suffix('B'))
        .or_else(|| unit.strip_suffix('i'))
        .unwrap_or(unit);
    matches!(unit, "" | "K" | "M" | "G" | "T")
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
            .run("verify the client-signed software enclave image", &mut cmd)?;
        Ok(describe(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carrier::Tools;
    use crate::config::Config;
    use oci_spec::runtime::ProcessBuilder;
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
