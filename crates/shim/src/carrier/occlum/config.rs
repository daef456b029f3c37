//! The instance's `Occlum.json`: upstream's defaults for Occlum 0.21 with the container's
//! `OCCLUM_*` overrides. Every override is checked here, and a bad one fails the Create naming
//! the variable; upstream logged the parse error and wrote 0 or false instead (0 threads, a
//! product id of 0), which surfaced much later as an enclave that would not start.
//!
//! An empty value means the default, as an empty `ENCLAVE_*` setting does for rune.

use serde_json::json;

use crate::carrier::CarrierError;

pub const USER_SPACE_SIZE: &str = "OCCLUM_USER_SPACE_SIZE";
pub const KERNEL_SPACE_HEAP_SIZE: &str = "OCCLUM_KERNEL_SPACE_HEAP_SIZE";
pub const KERNEL_SPACE_STACK_SIZE: &str = "OCCLUM_KERNEL_SPACE_STACK_SIZE";
pub const MAX_NUM_OF_THREADS: &str = "OCCLUM_MAX_NUM_OF_THREADS";
pub const PROCESS_DEFAULT_STACK_SIZE: &str = "OCCLUM_PROCESS_DEFAULT_STACK_SIZE";
pub const PROCESS_DEFAULT_HEAP_SIZE: &str = "OCCLUM_PROCESS_DEFAULT_HEAP_SIZE";
pub const PROCESS_DEFAULT_MMAP_SIZE: &str = "OCCLUM_PROCESS_DEFAULT_MMAP_SIZE";
pub const PRODUCT_ID: &str = "OCCLUM_PRODUCT_ID";
pub const VERSION_NUMBER: &str = "OCCLUM_VERSION_NUMBER";
pub const DEBUGGABLE: &str = "OCCLUM_DEBUGGABLE";
pub const DEFAULT_ENV: &str = "OCCLUM_DEFAULT_ENV";
pub const UNTRUSTED_ENV: &str = "OCCLUM_UNTRUSTED_ENV";

/// Everything `Occlum.json` is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct OcclumSettings {
    /// The program the container runs, as the PAL will be asked to start it.
    pub entry_point: String,
    pub user_space_size: String,
    pub kernel_space_heap_size: String,
    pub kernel_space_stack_size: String,
    pub max_num_of_threads: u32,
    pub default_stack_size: String,
    pub default_heap_size: String,
    pub default_mmap_size: String,
    /// SIGSTRUCT ISVPRODID, 16 bits.
    pub product_id: u16,
    /// SIGSTRUCT ISVSVN, 16 bits.
    pub version_number: u16,
    pub debuggable: bool,
    /// `NAME=value` entries the enclave's processes start with.
    pub default_env: Vec<String>,
    /// Names of variables the host may pass in.
    pub untrusted_env: Vec<String>,
}

fn bad(name: &str, value: &str, fix: &str) -> CarrierError {
    CarrierError::Setting(format!("{name}={value:?}: {fix}"))
}

/// The bytes `size` stands for, when it is what Occlum's configuration accepts: a whole
/// number of at least 1 followed by `B`, `KB`, `MB`, `GB` or `TB` (binary multiples).
pub fn size_bytes(size: &str) -> Option<u64> {
    let digits = size.bytes().take_while(u8::is_ascii_digit).count();
    let number: u64 = size.get(..digits)?.parse().ok().filter(|n| *n > 0)?;
    let factor: u64 = match size.get(digits..)? {
        "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(factor)
}

impl OcclumSettings {
    /// Upstream's defaults, running `entry_point`.
    pub fn defaults(entry_point: String) -> OcclumSettings {
        OcclumSettings {
            entry_point,
            user_space_size: "300MB".into(),
            kernel_space_heap_size: "32MB".into(),
            kernel_space_stack_size: "1MB".into(),
            max_num_of_threads: 32,
            default_stack_size: "4MB".into(),
            default_heap_size: "32MB".into(),
            default_mmap_size: "80MB".into(),
            product_id: 0,
            version_number: 0,
            debuggable: true,
            default_env: vec!["OCCLUM=yes".into()],
            untrusted_env: vec!["EXAMPLE".into()],
        }
    }

    /// The defaults overridden by the variables `env` finds (the container's environment).
    pub fn from_env(
        entry_point: String,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<OcclumSettings, CarrierError> {
        let mut s = OcclumSettings::defaults(entry_point);
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        for (name, field) in [
            (USER_SPACE_SIZE, &mut s.user_space_size),
            (KERNEL_SPACE_HEAP_SIZE, &mut s.kernel_space_heap_size),
            (KERNEL_SPACE_STACK_SIZE, &mut s.kernel_space_stack_size),
            (PROCESS_DEFAULT_STACK_SIZE, &mut s.default_stack_size),
            (PROCESS_DEFAULT_HEAP_SIZE, &mut s.default_heap_size),
            (PROCESS_DEFAULT_MMAP_SIZE, &mut s.default_mmap_size),
        ] {
            if let Some(v) = set(name) {
                if size_bytes(&v).is_none() {
                    return Err(bad(
                        name,
                        &v,
                        "give a whole number followed by B, KB, MB, GB or TB, e.g. 300MB",
                    ));
                }
                *field = v;
            }
        }
        if let Some(v) = set(MAX_NUM_OF_THREADS) {
            s.max_num_of_threads =
                v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    bad(MAX_NUM_OF_THREADS, &v, "give a whole number of at least 1")
                })?;
        }
        for (name, field) in [
            (PRODUCT_ID, &mut s.product_id),
            (VERSION_NUMBER, &mut s.version_number),
        ] {
            if let Some(v) = set(name) {
                // SIGSTRUCT holds both in 16 bits; sgx_sign would refuse a larger one.
                *field = v
                    .parse::<u16>()
                    .map_err(|_| bad(name, &v, "give a whole number from 0 to 65535"))?;
            }
        }
        if let Some(v) = set(DEBUGGABLE) {
            s.debuggable = match v.as_str() {
                "1" => true,
                "0" => false,
                t if t.eq_ignore_ascii_case("true") => true,
                f if f.eq_ignore_ascii_case("false") => false,
                _ => return Err(bad(DEBUGGABLE, &v, "give true or false")),
            };
        }
        if let Some(v) = set(DEFAULT_ENV) {
            s.default_env = list(&v);
            if s.default_env.is_empty()
                || s.default_env.iter().any(|e| {
                    e.split_once('=')
                        .is_none_or(|(name, _)| !valid_env_name(name))
                })
            {
                return Err(bad(
                    DEFAULT_ENV,
                    &v,
                    "give NAME=value entries separated by commas, e.g. OCCLUM=yes,HOME=/root",
                ));
            }
        }
        if let Some(v) = set(UNTRUSTED_ENV) {
            s.untrusted_env = list(&v);
            if s.untrusted_env.is_empty() || !s.untrusted_env.iter().all(|n| valid_env_name(n)) {
                return Err(bad(
                    UNTRUSTED_ENV,
                    &v,
                    "give variable names separated by commas, e.g. TZ,LANG",
                ));
            }
        }
        Ok(s)
    }

    /// The `Occlum.json` text (Occlum 0.21 layout). `occlum build` fills in the MAC of the
    /// image layer it builds.
    pub fn occlum_json(&self) -> Result<String, CarrierError> {
        let config = json!({
            "resource_limits": {
                "user_space_size": self.user_space_size,
                "kernel_space_heap_size": self.kernel_space_heap_size,
                "kernel_space_stack_size": self.kernel_space_stack_size,
                "max_num_of_threads": self.max_num_of_threads,
            },
            "process": {
                "default_stack_size": self.default_stack_size,
                "default_heap_size": self.default_heap_size,
                "default_mmap_size": self.default_mmap_size,
            },
            "entry_points": [self.entry_point],
            "env": {
                "default": self.default_env,
                "untrusted": self.untrusted_env,
            },
            "metadata": {
                "product_id": self.product_id,
                "version_number": self.version_number,
                "debuggable": self.debuggable,
            },
            "mount": [
                {
                    "target": "/",
                    "type": "unionfs",
                    "options": {
                        "layers": [
                            {
                                "target": "/",
                                "type": "sefs",
                                "source": "./build/mount/__ROOT",
                                "options": { "MAC": "" },
                            },
                            {
                                "target": "/",
                                "type": "sefs",
                                "source": "./run/mount/__ROOT",
                            },
                        ],
                    },
                },
                { "target": "/host", "type": "hostfs", "source": "." },
                {
                    "target": "/tmp",
                    "type": "sefs",
                    "source": "./run/mount/tmp",
                    "options": { "temporary": true },
                },
                { "target": "/proc", "type": "procfs" },
                { "target": "/dev", "type": "devfs" },
            ],
        });
        let mut text = serde_json::to_string_pretty(&config)
            .map_err(|e| CarrierError::Io(format!("cannot write Occlum.json: {e}")))?;
        text.push('\n');
        Ok(text)
    }
}

/// Comma-separated entries, empty ones dropped. Entries are not trimmed: a value may hold
/// spaces, and a name that does is refused rather than silently changed.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && !name.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<OcclumSettings, CarrierError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OcclumSettings::from_env("/bin/hello".into(), |n| map.get(n).cloned())
    }

    #[test]
    fn defaults_are_upstreams() {
        let s = from(&[]).expect("defaults");
        assert_eq!(s, OcclumSettings::defaults("/bin/hello".into()));
        let v: serde_json::Value =
            serde_json::from_str(&s.occlum_json().expect("json")).expect("Occlum.json is JSON");
        assert_eq!(v["resource_limits"]["user_space_size"], "300MB");
        assert_eq!(v["resource_limits"]["kernel_space_heap_size"], "32MB");
        assert_eq!(v["resource_limits"]["kernel_space_stack_size"], "1MB");
        assert_eq!(v["resource_limits"]["max_num_of_threads"], 32);
        assert_eq!(v["process"]["default_stack_size"], "4MB");
        assert_eq!(v["process"]["default_heap_size"], "32MB");
        assert_eq!(v["process"]["default_mmap_size"], "80MB");
        assert_eq!(v["entry_points"], json!(["/bin/hello"]));
        assert_eq!(v["env"]["default"], json!(["OCCLUM=yes"]));
        assert_eq!(v["env"]["untrusted"], json!(["EXAMPLE"]));
        assert_eq!(v["metadata"]["debuggable"], true);
        assert_eq!(v["metadata"]["product_id"], 0);
        assert_eq!(v["mount"][0]["type"], "unionfs");
        assert_eq!(
            v["mount"][0]["options"]["layers"][0]["source"],
            "./build/mount/__ROOT"
        );
        assert_eq!(v["mount"][2]["options"]["temporary"], true);
        assert_eq!(v["mount"].as_array().map(Vec::len), Some(5));
        // The cache key covers this text: it must not vary between runs.
        assert_eq!(
            s.occlum_json().expect("json"),
            from(&[]).expect("defaults").occlum_json().expect("json")
        );
    }

    #[test]
    fn overrides_apply() {
        let s = from(&[
            (USER_SPACE_SIZE, "1400MB"),
            (KERNEL_SPACE_HEAP_SIZE, "64MB"),
            (KERNEL_SPACE_STACK_SIZE, "2MB"),
            (MAX_NUM_OF_THREADS, "64"),
            (PROCESS_DEFAULT_STACK_SIZE, "8MB"),
            (PROCESS_DEFAULT_HEAP_SIZE, "256MB"),
            (PROCESS_DEFAULT_MMAP_SIZE, "1120MB"),
            (PRODUCT_ID, "7"),
            (VERSION_NUMBER, "65535"),
            (DEBUGGABLE, "false"),
            (DEFAULT_ENV, "LD_LIBRARY_PATH=/a:/b,OCCLUM=yes"),
            (UNTRUSTED_ENV, "TZ,LANG"),
            // Empty: the default.
            ("OCCLUM_UNUSED", ""),
        ])
        .expect("valid overrides");
        assert_eq!(s.user_space_size, "1400MB");
        assert_eq!(s.kernel_space_heap_size, "64MB");
        assert_eq!(s.kernel_space_stack_size, "2MB");
        assert_eq!(s.max_num_of_threads, 64);
        assert_eq!(s.default_stack_size, "8MB");
        assert_eq!(s.default_heap_size, "256MB");
        assert_eq!(s.default_mmap_size, "1120MB");
        assert_eq!(
            (s.product_id, s.version_number, s.debuggable),
            (7, 65535, false)
        );
        assert_eq!(s.default_env, ["LD_LIBRARY_PATH=/a:/b", "OCCLUM=yes"]);
        assert_eq!(s.untrusted_env, ["TZ", "LANG"]);
        let text = s.occlum_json().expect("json");
        assert!(text.contains("\"user_space_size\": \"1400MB\""), "{text}");
        assert!(text.contains("\"debuggable\": false"), "{text}");
        assert_eq!(
            from(&[(USER_SPACE_SIZE, ""), (DEBUGGABLE, "")]).expect("empty is default"),
            OcclumSettings::defaults("/bin/hello".into())
        );
        assert!(from(&[(DEBUGGABLE, "TRUE")]).expect("bool").debuggable);
        assert!(!from(&[(DEBUGGABLE, "0")]).expect("bool").debuggable);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value, needle) in [
            (USER_SPACE_SIZE, "300M", "e.g. 300MB"),
            (USER_SPACE_SIZE, "lots", "B, KB, MB, GB or TB"),
            (KERNEL_SPACE_HEAP_SIZE, "0MB", "whole number"),
            (KERNEL_SPACE_STACK_SIZE, "1.5MB", "whole number"),
            (PROCESS_DEFAULT_STACK_SIZE, "-4MB", "whole number"),
            (PROCESS_DEFAULT_HEAP_SIZE, "32 MB", "whole number"),
            (PROCESS_DEFAULT_MMAP_SIZE, "99999999999TB", "whole number"),
            (MAX_NUM_OF_THREADS, "0", "at least 1"),
            (MAX_NUM_OF_THREADS, "many", "at least 1"),
            (PRODUCT_ID, "65536", "0 to 65535"),
            (VERSION_NUMBER, "-1", "0 to 65535"),
            (DEBUGGABLE, "yes", "true or false"),
            (DEFAULT_ENV, "OCCLUM", "NAME=value"),
            (DEFAULT_ENV, "=x", "NAME=value"),
            (DEFAULT_ENV, ",", "NAME=value"),
            (UNTRUSTED_ENV, "TZ=UTC", "variable names"),
            (UNTRUSTED_ENV, "TZ, LANG", "variable names"),
        ] {
            let err = from(&[(name, value)]).expect_err(value).to_string();
            assert!(err.starts_with(&format!("{name}={value:?}: ")), "{err}");
            assert!(err.contains(needle), "{name}={value}: {err}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size_bytes("300MB"), Some(300 << 20));
        assert_eq!(size_bytes("1B"), Some(1));
        assert_eq!(size_bytes("2TB"), Some(2 << 40));
        for bad in ["", "MB", "300", "300mb", "300 MB", "0KB", "3.5GB", "300MiB"] {
            assert_eq!(size_bytes(bad), None, "{bad}");
        }
    }
}
