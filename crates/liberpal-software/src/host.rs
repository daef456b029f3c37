//! Host-side state, captured by an ELF constructor when rune `dlopen`s the PAL.
//!
//! rune loads the PAL on the host, before the container exists, then clones itself into the
//! container and calls `pal_init` there. The constructor below runs at `dlopen`, in host
//! context, so the node's signer policy and report key are read from the host's filesystem
//! and the host's environment; the container's process inherits them as process memory. The
//! workload, whose files are the container's rootfs, can neither read the key nor swap the
//! policy: neither is ever looked up inside the container.
//!
//! A constructor must not abort, print or unwind into the dynamic loader: every failure is kept
//! (as an errno and a message) and reported by `pal_init`.

use std::ffi::{c_void, OsString};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use enclave_image::Policy;

/// Overrides [`DEFAULT_POLICY_PATH`] (read from rune's environment on the host).
pub const POLICY_ENV: &str = "RUNE_SOFTWARE_ENCLAVE_POLICY";
/// Overrides [`DEFAULT_REPORT_KEY_PATH`] (read from rune's environment on the host).
pub const REPORT_KEY_ENV: &str = "RUNE_SOFTWARE_ENCLAVE_REPORT_KEY";
/// Test and debug knob: the directory, as seen by `pal_init` (inside the container), that holds
/// the enclave image instead of `/` (read from rune's environment on the host).
pub const ROOT_ENV: &str = "RUNE_SOFTWARE_ENCLAVE_ROOT";
/// The node's signer policy (TOML, [`enclave_image::Policy`]).
pub const DEFAULT_POLICY_PATH: &str = "/etc/rune/software-enclave.toml";
/// The node's report key: 32 random bytes, created (mode 0600, directory 0700) when absent.
pub const DEFAULT_REPORT_KEY_PATH: &str = "/var/lib/rune/software-enclave/report.key";
/// Length of the report key.
pub const REPORT_KEY_LEN: usize = 32;

/// A failure captured at load time, reported by `pal_init`.
#[derive(Clone, Debug)]
pub(crate) struct HostError {
    /// Positive errno for `pal_init` to return negated.
    pub errno: i32,
    pub message: String,
}

impl HostError {
    fn io(what: String, e: &io::Error) -> Self {
        HostError {
            errno: e.raw_os_error().unwrap_or(libc::EACCES),
            message: format!("{what}: {e}"),
        }
    }
}

/// What the constructor captured.
pub(crate) struct HostState {
    pub policy: Result<Policy, HostError>,
    pub report_key: Result<[u8; REPORT_KEY_LEN], HostError>,
    pub root: Result<PathBuf, HostError>,
}

static HOST: OnceLock<HostState> = OnceLock::new();

/// The state captured at load time; `None` if the constructor did not capture anything (the
/// crate was linked into a program as an rlib instead of being loaded as a shared object).
pub(crate) fn state() -> Option<&'static HostState> {
    HOST.get()
}

/// Runs at `dlopen` (and at program start when the library is a direct dependency).
extern "C" fn capture_at_load() {
    // `catch_unwind` is a last resort: nothing below is expected to panic.
    let _ = std::panic::catch_unwind(|| {
        if loaded_as_shared_object() {
            let _ = HOST.set(HostState::capture());
        }
    });
}

// The constructor. `#[used]` keeps it when the crate is linked statically as an rlib too; there
// `loaded_as_shared_object` makes it a no-op, so a program that links the rlib for
// `verify_report` never creates a report key as a side effect of starting.
#[used]
#[link_section = ".init_array"]
static CAPTURE_AT_LOAD: extern "C" fn() = capture_at_load;

/// Whether this code lives in a shared object (the PAL `.so`) rather than in the main program.
/// In doubt, `false`: then nothing is captured and `pal_init` says so.
fn loaded_as_shared_object() -> bool {
    let own = capture_at_load as *const c_void;
    // SAFETY: getauxval only reads the auxiliary vector.
    let main_phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as *const c_void;
    if main_phdr.is_null() {
        return false;
    }
    match (object_base(own), object_base(main_phdr)) {
        (Some(own_base), Some(main_base)) => own_base != main_base,
        _ => false,
    }
}

/// Base address of the loaded object containing `addr`.
fn object_base(addr: *const c_void) -> Option<usize> {
    // SAFETY: an all-zero Dl_info (pointers and integers) is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the dynamic loader's tables and writes `info`.
    let found = unsafe { libc::dladdr(addr, &mut info) };
    (found != 0 && !info.dli_fbase.is_null()).then_some(info.dli_fbase as usize)
}

impl HostState {
    fn capture() -> HostState {
        let policy_path = env_path(POLICY_ENV).unwrap_or_else(|| DEFAULT_POLICY_PATH.into());
        let policy = Policy::load(&policy_path).map_err(|e| HostError {
            errno: match fs::metadata(&policy_path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => libc::ENOENT,
                _ => libc::EACCES,
            },
            message: e.to_string(),
        });
        let key_path = env_path(REPORT_KEY_ENV).unwrap_or_else(|| DEFAULT_REPORT_KEY_PATH.into());
        let report_key = load_or_create_key(&key_path);
        let root = match env_path(ROOT_ENV) {
            None => Ok(PathBuf::from("/")),
            Some(root) => check_root(root),
        };
        HostState {
            policy,
            report_key,
            root,
        }
    }
}

/// A non-empty environment variable as a path.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn check_root(root: PathBuf) -> Result<PathBuf, HostError> {
    // Not canonicalised here: the path is resolved later, inside the container.
    if root.is_absolute() {
        Ok(root)
    } else {
        Err(HostError {
            errno: libc::EINVAL,
            message: format!(
                "{ROOT_ENV}={}: the image root must be an absolute path",
                root.display()
            ),
        })
    }
}

/// Reads the report key at `path`, creating it first when it does not exist.
pub(crate) fn load_or_create_key(path: &Path) -> Result<[u8; REPORT_KEY_LEN], HostError> {
    let what = || format!("report key {}", path.display());
    match read_key(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_key(path).map_err(|e| HostError::io(format!("creating {}", what()), &e))
        }
        other => other.map_err(|e| HostError::io(what(), &e)),
    }
}

/// Reads an existing key: a regular file of exactly 32 bytes, owned by us, private to us.
fn read_key(path: &Path) -> io::Result<[u8; REPORT_KEY_LEN]> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidData, why));
    if !meta.is_file() {
        return invalid("not a regular file".into());
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return invalid(format!(
            "owned by uid {}, not by uid {euid} that runs rune",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return invalid(format!(
            "mode {:04o} lets other users read or replace it (chmod 600)",
            meta.mode() & 0o7777
        ));
    }
    if meta.len() != REPORT_KEY_LEN as u64 {
        return invalid(format!(
            "{} bytes long, expected {REPORT_KEY_LEN}",
            meta.len()
        ));
    }
    let mut key = [0u8; REPORT_KEY_LEN];
    file.read_exact(&mut key)?;
    Ok(key)
}

/// Creates the key atomically: written to a private temporary file, then `link`ed into place,
/// which never replaces an existing key. If another rune won the race, its key is used.
fn create_key(path: &Path) -> io::Result<[u8; REPORT_KEY_LEN]> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mut key = [0u8; REPORT_KEY_LEN];
    fill_random(&mut key)?;

    let mut tmp_name = OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(&key)?;
        file.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(e),
    }
}

fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            continue;
        }
        filled += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_created_private_and_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/report.key");
        let key = load_or_create_key(&path).expect("create");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        assert_eq!(load_or_create_key(&path).expect("read"), key);
        assert_ne!(key, [0; REPORT_KEY_LEN]);
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path().join("a/b")).expect("ls").count(), 1);
    }

    #[test]
    fn unsafe_keys_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("report.key");
        fs::write(&path, [7u8; 32]).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_create_key(&path).expect_err("world readable");
        assert!(err.message.contains("chmod 600"), "{}", err.message);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(load_or_create_key(&path).expect("ok"), [7u8; 32]);
        fs::write(&path, [7u8; 31]).expect("write");
        let err = load_or_create_key(&path).expect_err("short");
        assert!(err.message.contains("31 bytes"), "{}", err.message);
    }

    #[test]
    fn the_constructor_does_nothing_inside_a_program() {
        // This unit-test binary links the crate statically: the constructor ran at start-up and
        // must have recognised that it is not in a shared object.
        assert!(!loaded_as_shared_object());
        assert!(state().is_none());
    }
}
