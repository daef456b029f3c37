//! The shim's configuration file, `/etc/inclavare-containers/config.toml` (the path can be
//! changed with `RUNE_SHIM_CONFIG`, for tests). A missing default file means defaults; a file
//! named by `RUNE_SHIM_CONFIG` must exist. A file that cannot be read or does not parse is an
//! error the caller reports on `Create` — the shim itself keeps running.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the configuration is read from unless `RUNE_SHIM_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/inclavare-containers/config.toml";

/// Environment variable overriding [`DEFAULT_PATH`].
pub const PATH_ENV: &str = "RUNE_SHIM_CONFIG";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `trace`, `debug`, `info`, `warn` or `error`; unset means `info`.
    #[serde(default)]
    pub log_level: Option<LogLevel>,
    /// Intel's `sgx_sign`, which the occlum carrier runs (upstream accepted the key but ran a
    /// hard-coded path). Default [`DEFAULT_SGX_SIGN`].
    #[serde(default)]
    pub sgx_tool_sign: Option<PathBuf>,
    #[serde(default)]
    pub containerd: Containerd,
    #[serde(default)]
    pub enclave_runtime: EnclaveRuntime,
    #[serde(default)]
    pub signature: SignatureServer,
    /// Upstream's enclave pool manager socket. Accepted so that an upstream file parses; rune's
    /// conversion cache is local and keyed by content, so epm is not used.
    #[serde(default)]
    pub epm: Option<toml::Table>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Containerd {
    /// containerd's socket (accepted for upstream compatibility, not used).
    #[serde(default)]
    pub socket: Option<String>,
}

/// Who signs converted enclave images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMethod {
    /// The shim converts and signs at Create (the provider's key or a signature server).
    #[default]
    Server,
    /// Images arrive signed by their authors; the shim only verifies them.
    Client,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveRuntime {
    #[serde(default)]
    pub signature_method: SignatureMethod,
    /// The provider's signing key for server-side signing without a signature server;
    /// created (RSA-3072, e=3, mode 0600) when absent. Default [`DEFAULT_SIGNING_KEY`].
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Where converted images are cached. Default [`DEFAULT_CACHE_DIR`].
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// `false` turns the conversion cache off.
    #[serde(default = "yes")]
    pub cache: bool,
    #[serde(default)]
    pub software: SoftwareCarrier,
    #[serde(default)]
    pub occlum: OcclumCarrier,
    /// Upstream's (unimplemented) graphene carrier: accepted, unused.
    #[serde(default)]
    pub graphene: Option<toml::Table>,
}

fn yes() -> bool {
    true
}

impl Default for EnclaveRuntime {
    fn default() -> Self {
        EnclaveRuntime {
            signature_method: SignatureMethod::default(),
            signing_key: None,
            cache_dir: None,
            cache: true,
            software: SoftwareCarrier::default(),
            occlum: OcclumCarrier::default(),
            graphene: None,
        }
    }
}

pub const DEFAULT_SIGNING_KEY: &str = "/etc/inclavare-containers/signing-key.pem";
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/rune/carrier-cache";
pub const DEFAULT_SOFTWARE_PAL: &str = "/usr/local/lib/rune/liberpal-software.so";

impl EnclaveRuntime {
    pub fn signing_key(&self) -> PathBuf {
        self.signing_key
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SIGNING_KEY))
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR))
    }
}

/// `[enclave_runtime.software]`: defaults of the software carrier; a container's
/// `RUNE_SOFTWARE_*` variables override them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftwareCarrier {
    /// The software enclave PAL given to rune. Default [`DEFAULT_SOFTWARE_PAL`].
    #[serde(default)]
    pub enclave_runtime_path: Option<PathBuf>,
    /// Paths the enclave may write. Default `["/tmp"]`.
    #[serde(default)]
    pub writable_paths: Option<Vec<String>>,
    /// Address-space limit per enclave process, e.g. `"256M"`.
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub max_threads: Option<u32>,
    #[serde(default)]
    pub max_processes: Option<u32>,
    /// Client-side mode: the signer policy images must satisfy at Create (the PAL checks the
    /// node policy again at start).
    #[serde(default)]
    pub policy: Option<PathBuf>,
}

/// `256M`, `1G`, `4096`: what `rune-enclave build --memory` accepts.
pub fn valid_size(value: &str) -> bool {
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

/// An absolute path without `..` components, as enclave images name their files.
pub fn valid_image_path(path: &str) -> bool {
    path.starts_with('/') && !path.split('/').any(|c| c == "..")
}

impl SoftwareCarrier {
    /// The checks the carrier applies to a container's `RUNE_SOFTWARE_*` variables, applied to
    /// the node's defaults when the file is read, so that the error names the key.
    fn validate(&self) -> Result<(), String> {
        let section = "[enclave_runtime.software]";
        if let Some(m) = self.memory.as_deref().filter(|m| !valid_size(m)) {
            return Err(format!(
                "{section} memory = {m:?}: give a size in bytes with an optional K, M, G or T \
                 suffix, e.g. \"256M\""
            ));
        }
        for (key, value) in [
            ("max_threads", self.max_threads),
            ("max_processes", self.max_processes),
        ] {
            if value == Some(0) {
                return Err(format!(
                    "{section} {key} = 0: give a whole number of at least 1"
                ));
            }
        }
        for p in self.writable_paths.iter().flatten() {
            if !valid_image_path(p) {
                return Err(format!(
                    "{section} writable_paths: {p:?}: give absolute paths without `..`"
                ));
            }
        }
        Ok(())
    }

    pub fn enclave_runtime_path(&self) -> PathBuf {
        self.enclave_runtime_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOFTWARE_PAL))
    }
}

/// `[enclave_runtime.occlum]`, upstream's keys plus the tool paths upstream hard-coded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcclumCarrier {
    /// The Occlum PAL given to rune as `ENCLAVE_RUNTIME_PATH`. Default [`DEFAULT_OCCLUM_PAL`]
    /// (upstream fell back to `<cwd>/liberpal-occlum.so`, a path inside the container).
    #[serde(default)]
    pub enclave_runtime_path: Option<PathBuf>,
    /// The LibOS library `occlum build` links; its content is part of the conversion cache
    /// key, so that an Occlum upgrade converts images again. Default [`DEFAULT_OCCLUM_LIBOS`].
    #[serde(default)]
    pub enclave_libos_path: Option<PathBuf>,
    /// The `occlum` command. Default [`DEFAULT_OCCLUM`].
    #[serde(default)]
    pub occlum_path: Option<PathBuf>,
}

pub const DEFAULT_OCCLUM_PAL: &str = "/opt/occlum/build/lib/libocclum-pal.so";
pub const DEFAULT_OCCLUM_LIBOS: &str = "/opt/occlum/build/lib/libocclum-libos.so";
pub const DEFAULT_OCCLUM: &str = "/opt/occlum/build/bin/occlum";
/// Intel's `sgx_sign`, as the SGX SDK installs it.
pub const DEFAULT_SGX_SIGN: &str = "/opt/intel/sgxsdk/bin/x64/sgx_sign";

impl OcclumCarrier {
    pub fn enclave_runtime_path(&self) -> PathBuf {
        self.enclave_runtime_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OCCLUM_PAL))
    }

    pub fn enclave_libos_path(&self) -> PathBuf {
        self.enclave_libos_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OCCLUM_LIBOS))
    }

    pub fn occlum_path(&self) -> PathBuf {
        self.occlum_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OCCLUM))
    }
}

/// `[signature]`: a remote signature server (`rune-signd` or upstream's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureServer {
    /// Base URL, e.g. `https://signd.example:9443`. Empty: sign with the provider key.
    #[serde(default)]
    pub server_address: Option<String>,
    /// File holding the bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) the server's TLS certificate must chain to.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// The server's public key (PEM); a signature by any other key is refused.
    #[serde(default)]
    pub public_key: Option<PathBuf>,
}

impl SignatureServer {
    /// The server address when one is configured (an empty string means none, as upstream).
    pub fn address(&self) -> Option<&str> {
        self.server_address
            .as_deref()
            .filter(|a| !a.trim().is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    #[serde(alias = "warning")]
    Warn,
    Error,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Trace => log::LevelFilter::Trace,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Error => log::LevelFilter::Error,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read shim config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid shim config {path}: {message}")]
    Parse { path: String, message: String },
}

impl Config {
    /// The file named by `RUNE_SHIM_CONFIG`, if set and non-empty.
    fn path_from_env() -> Option<PathBuf> {
        std::env::var_os(PATH_ENV)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    }

    /// The path in force: `RUNE_SHIM_CONFIG` if set and non-empty, else [`DEFAULT_PATH`].
    pub fn path() -> PathBuf {
        Self::path_from_env().unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// Reads the configuration; a missing default file gives the defaults.
    pub fn load() -> Result<Config, ConfigError> {
        match Self::path_from_env() {
            Some(path) => Self::load_from(&path, true),
            None => Self::load_from(Path::new(DEFAULT_PATH), false),
        }
    }

    /// Reads `path`; `named` says a user named it explicitly, so it must exist.
    fn load_from(path: &Path, named: bool) -> Result<Config, ConfigError> {
        let mut shown = path.display().to_string();
        if named {
            shown.push_str(&format!(" (named by {PATH_ENV})"));
        }
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|message| ConfigError::Parse {
                path: shown,
                message,
            }),
            // Only the default file may be absent: a named file that is missing is a mistake,
            // and the defaults would write keys and caches to the host's default paths.
            Err(e) if e.kind() == ErrorKind::NotFound && !named => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: shown,
                source,
            }),
        }
    }

    /// Parses the text of a configuration file; the error is one line.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config =
            toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        config.enclave_runtime.software.validate()?;
        Ok(config)
    }

    /// The `sgx_sign` in force.
    pub fn sgx_sign(&self) -> PathBuf {
        self.sgx_tool_sign
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SGX_SIGN))
    }

    /// The log level filter this configuration asks for.
    pub fn log_filter(&self) -> log::LevelFilter {
        self.log_level.unwrap_or(LogLevel::Info).filter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::default().log_filter(), log::LevelFilter::Info);
    }

    #[test]
    fn known_keys() {
        let c = Config::parse(
            "log_level = \"debug\"\n[containerd]\nsocket = \"/run/containerd/containerd.sock\"\n",
        )
        .unwrap();
        assert_eq!(c.log_level, Some(LogLevel::Debug));
        assert_eq!(c.log_filter(), log::LevelFilter::Debug);
        assert_eq!(
            c.containerd.socket.as_deref(),
            Some("/run/containerd/containerd.sock")
        );
    }

    #[test]
    fn carrier_keys() {
        let c = Config::parse(
            "sgx_tool_sign = \"/opt/sgx_sign\"\n[enclave_runtime]\nsignature_method = \"client\"\n\
             signing_key = \"/k.pem\"\ncache = false\n[enclave_runtime.software]\n\
             enclave_runtime_path = \"/p.so\"\nwritable_paths = [\"/tmp\", \"/run\"]\n\
             memory = \"64M\"\n[signature]\nserver_address = \"https://s:9443\"\n\
             token_file = \"/t\"\n",
        )
        .unwrap();
        assert_eq!(c.enclave_runtime.signature_method, SignatureMethod::Client);
        assert_eq!(c.enclave_runtime.signing_key(), PathBuf::from("/k.pem"));
        assert!(!c.enclave_runtime.cache);
        assert_eq!(
            c.enclave_runtime.software.enclave_runtime_path(),
            PathBuf::from("/p.so")
        );
        assert_eq!(c.signature.address(), Some("https://s:9443"));
        let d = Config::default();
        assert_eq!(d.enclave_runtime.signature_method, SignatureMethod::Server);
        assert!(Config::parse("").unwrap().enclave_runtime.cache);
        assert_eq!(d.signature.address(), None);
        assert_eq!(
            d.enclave_runtime.cache_dir(),
            PathBuf::from(DEFAULT_CACHE_DIR)
        );
    }

    #[test]
    fn occlum_keys_and_defaults() {
        let c = Config::parse(
            "sgx_tool_sign = \"/sdk/sgx_sign\"\n[enclave_runtime.occlum]\n\
             enclave_runtime_path = \"/pal.so\"\nenclave_libos_path = \"/libos.so\"\n\
             occlum_path = \"/bin/occlum\"\n",
        )
        .expect("parses");
        assert_eq!(c.sgx_sign(), PathBuf::from("/sdk/sgx_sign"));
        let o = &c.enclave_runtime.occlum;
        assert_eq!(o.enclave_runtime_path(), PathBuf::from("/pal.so"));
        assert_eq!(o.enclave_libos_path(), PathBuf::from("/libos.so"));
        assert_eq!(o.occlum_path(), PathBuf::from("/bin/occlum"));
        let d = Config::default();
        assert_eq!(d.sgx_sign(), PathBuf::from(DEFAULT_SGX_SIGN));
        let o = &d.enclave_runtime.occlum;
        assert_eq!(o.enclave_runtime_path(), PathBuf::from(DEFAULT_OCCLUM_PAL));
        assert_eq!(o.enclave_libos_path(), PathBuf::from(DEFAULT_OCCLUM_LIBOS));
        assert_eq!(o.occlum_path(), PathBuf::from(DEFAULT_OCCLUM));
        assert!(Config::parse("[enclave_runtime.occlum]\nocclum = \"/x\"\n").is_err());
    }

    #[test]
    fn upstream_tables_are_accepted() {
        let c = Config::parse(
            "log_level = \"info\"\nsgx_tool_sign = \"/opt/intel/sgxsdk/bin/x64/sgx_sign\"\n\
             [containerd]\nsocket = \"/run/containerd/containerd.sock\"\n[enclave_runtime]\n\
             signature_method = \"server\"\n[enclave_runtime.occlum]\n\
             enclave_runtime_path = \"/x.so\"\nenclave_libos_path = \"/l.so\"\n\
             [enclave_runtime.graphene]\n[signature]\nserver_address = \"http://x\"\n\
             [epm]\nsocket = \"/y\"\n",
        )
        .unwrap();
        assert_eq!(c.log_level, Some(LogLevel::Info));
    }

    #[test]
    fn software_defaults_are_checked_like_the_variables() {
        for (text, needle) in [
            (
                "memory = \"lots\"",
                "[enclave_runtime.software] memory = \"lots\"",
            ),
            (
                "max_threads = 0",
                "[enclave_runtime.software] max_threads = 0",
            ),
            (
                "max_processes = 0",
                "[enclave_runtime.software] max_processes = 0",
            ),
            ("writable_paths = [\"tmp\"]", "writable_paths: \"tmp\""),
            ("writable_paths = [\"/a/../b\"]", "without `..`"),
        ] {
            let err = Config::parse(&format!("[enclave_runtime.software]\n{text}\n")).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(!err.contains("RUNE_SOFTWARE_"), "{text}: {err}");
        }
        let ok = "[enclave_runtime.software]\nmemory = \"1GiB\"\nwritable_paths = [\"/run\"]\n";
        assert!(Config::parse(ok).is_ok());
    }

    #[test]
    fn only_the_default_file_may_be_missing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("config.toml");
        assert_eq!(
            Config::load_from(&missing, false).unwrap(),
            Config::default()
        );
        let err = Config::load_from(&missing, true).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("named by RUNE_SHIM_CONFIG"), "{err}");
        fs::write(&missing, "log_level = \"debug\"\n").unwrap();
        assert_eq!(
            Config::load_from(&missing, true).unwrap().log_level,
            Some(LogLevel::Debug)
        );
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            "log_level = ",
            "log_level = \"loud\"",
            "log_level = 3",
            "nonsense = 1",
            "[containerd]\nsock = \"x\"",
            "[enclave_runtime]\nsignature_method = \"both\"",
            "[enclave_runtime.software]\nwritable_paths = \"/tmp\"",
            "[signature]\nserver = \"x\"",
        ] {
            let err = Config::parse(bad).unwrap_err();
            assert!(!err.contains('\n'), "{bad:?}: {err}");
            assert!(!err.is_empty());
        }
    }
}
