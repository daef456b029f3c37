//! The shim's configuration file, `/etc/inclavare-containers/config.toml` (the path can be
//! changed with `RUNE_SHIM_CONFIG`, for tests). A missing file means defaults; a file that does
//! not parse is an error the caller reports on `Create` — the shim itself keeps running.

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

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
    #[serde(default)]
    pub containerd: Containerd,
    /// Tables later features use (`[enclave_runtime]`, `[signature]`, `[epm]`) are accepted and
    /// ignored for now, so that an upstream config file does not break the shim.
    #[serde(default, rename = "enclave_runtime")]
    pub _enclave_runtime: Option<toml::Table>,
    #[serde(default, rename = "signature")]
    pub _signature: Option<toml::Table>,
    #[serde(default, rename = "epm")]
    pub _epm: Option<toml::Table>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Containerd {
    /// containerd's socket (accepted, not used yet).
    #[serde(default)]
    pub socket: Option<String>,
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
    /// The path in force: `RUNE_SHIM_CONFIG` if set and non-empty, else [`DEFAULT_PATH`].
    pub fn path() -> PathBuf {
        match std::env::var_os(PATH_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_PATH),
        }
    }

    /// Reads the configuration; a missing file gives the defaults.
    pub fn load() -> Result<Config, ConfigError> {
        let path = Self::path();
        let shown = path.display().to_string();
        match fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map_err(|message| ConfigError::Parse {
                path: shown,
                message,
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: shown,
                source,
            }),
        }
    }

    /// Parses the text of a configuration file; the error is one line.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))
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
    fn upstream_tables_are_accepted() {
        let c = Config::parse(
            "log_level = \"info\"\n[enclave_runtime]\nsignature_method = \"server\"\n\
             [enclave_runtime.occlum]\nenclave_runtime_path = \"/x.so\"\n[signature]\n\
             server_address = \"http://x\"\n[epm]\nsocket = \"/y\"\n",
        )
        .unwrap();
        assert_eq!(c.log_level, Some(LogLevel::Info));
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            "log_level = ",
            "log_level = \"loud\"",
            "log_level = 3",
            "nonsense = 1",
            "[containerd]\nsock = \"x\"",
        ] {
            let err = Config::parse(bad).unwrap_err();
            assert!(!err.contains('\n'), "{bad:?}: {err}");
            assert!(!err.is_empty());
        }
    }
}
