//! The enclave image as `pal_init` admits it, and the image-derived decisions of
//! `pal_create_process`: which paths are entrypoints, and the environment.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use enclave_image::{
    verify_files, EnvPolicy, ImageError, Manifest, Policy, SignedImage, Verified, IMAGE_DIR,
    MANIFEST_FILE, SIGNATURE_FILE,
};

/// A failure with the errno to return and the one line that explains it.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub errno: i32,
    pub message: String,
}

impl Refusal {
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Refusal {
            errno,
            message: message.into(),
        }
    }
}

/// Loads the image under `root`, checks its signature, admits it with `policy` and verifies
/// every trusted file. The errno says what kind of failure it was: `ENOENT` no image,
/// `ENOEXEC` an image that cannot be parsed, `EACCES` anything that fails a check.
pub(crate) fn load_and_admit(
    root: &Path,
    policy: &Policy,
) -> Result<(Manifest, Verified), Refusal> {
    let image = SignedImage::load(root).map_err(|e| {
        let errno = match &e {
            ImageError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                libc::ENOENT
            }
            ImageError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            _ => libc::ENOEXEC,
        };
        let message = match errno {
            libc::ENOENT => format!(
                "no enclave image: {e} (a software enclave's rootfs holds /{IMAGE_DIR}/\
                 {MANIFEST_FILE} and /{IMAGE_DIR}/{SIGNATURE_FILE})"
            ),
            _ => format!("enclave image: {e}"),
        };
        Refusal::new(errno, message)
    })?;
    let verified = image.verify().map_err(|e| {
        let errno = match e {
            ImageError::Manifest(_) => libc::ENOEXEC,
            _ => libc::EACCES,
        };
        Refusal::new(errno, e.to_string())
    })?;
    policy
        .admit(&verified)
        .map_err(|e| Refusal::new(libc::EACCES, e.to_string()))?;
    let manifest = image.manifest;
    check_trusted_not_writable(&manifest)?;
    // Known cost: every start hashes every trusted file again (about +150 ms for a 100 MB
    // image on a 2-core machine). A verification cache keyed by file identity would remove it,
    // but only if the cache itself cannot be written by the workload or the image.
    verify_files(root, &manifest).map_err(|e| Refusal::new(libc::EACCES, e.to_string()))?;
    Ok((manifest, verified))
}

/// A trusted file at or beneath a writable path could be rewritten by the enclave after it was
/// verified; such an image is refused rather than silently left open.
fn check_trusted_not_writable(manifest: &Manifest) -> Result<(), Refusal> {
    for trusted in manifest.trusted_files.keys() {
        for writable in &manifest.writable_paths {
            if is_at_or_beneath(trusted, writable) {
                return Err(Refusal::new(
                    libc::EACCES,
                    format!(
                        "manifest: trusted file {trusted} is beneath writable path {writable}: \
                         it could be changed after verification"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn is_at_or_beneath(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// Resolves the absolute `path` as if `root` were `/` (as `chroot` would): symlinks are followed,
/// absolute targets restart at `root`, `..` never leaves it. Returns the resolved path relative
/// to the image (e.g. `/bin/busybox`); the last component must exist.
pub(crate) fn resolve_in_root(root: &Path, path: &str) -> io::Result<String> {
    const MAX_SYMLINKS: usize = 40;
    if !path.starts_with('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path",
        ));
    }
    let mut pending: VecDeque<OsString> = components(Path::new(path)).collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut symlinks = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let mut host = root.to_path_buf();
        host.extend(&resolved);
        host.push(&name);
        let meta = std::fs::symlink_metadata(&host)?;
        if meta.file_type().is_symlink() {
            symlinks += 1;
            if symlinks > MAX_SYMLINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = std::fs::read_link(&host)?;
            if target.is_absolute() {
                resolved.clear();
            }
            for (i, part) in components(&target).enumerate() {
                pending.insert(i, part);
            }
        } else {
            if !pending.is_empty() && !meta.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            resolved.push(name);
        }
    }
    let mut out = String::new();
    for part in &resolved {
        out.push('/');
        out.push_str(&String::from_utf8_lossy(part.as_bytes()));
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The normal and `..` components of a path (`/`, `.` and empty ones dropped).
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Where the in-image absolute `path` is on this process's filesystem.
pub(crate) fn host_path(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The enclave process's environment: the manifest's `env.default` entries, in order, then the
/// given entries whose name is in `env.host_allowed`.
///
/// Precedence: for a name in `host_allowed`, a value given by the host (the container's
/// config, rune exec) replaces the manifest default of that name, in place; the last given
/// entry of a name wins. Names not in `host_allowed` always keep the manifest's value, or are
/// absent; entries without `=` are dropped. Allowed names the manifest has no default for
/// follow the defaults, in the order they were first given.
pub(crate) fn compose_env(policy: &EnvPolicy, given: &[String]) -> Vec<String> {
    let mut from_host: Vec<(&str, &str)> = Vec::new();
    for entry in given {
        let Some((name, value)) = entry.split_once('=') else {
            continue;
        };
        if !policy.host_allowed.iter().any(|allowed| allowed == name) {
            continue;
        }
        match from_host.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => from_host.push((name, value)),
        }
    }
    let host_value = |name: &str| from_host.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let mut env = Vec::with_capacity(policy.default.len() + from_host.len());
    let mut default_names = Vec::new();
    for entry in &policy.default {
        let name = entry.split_once('=').map_or(entry.as_str(), |(n, _)| n);
        default_names.push(name);
        match host_value(name) {
            Some(value) => env.push(format!("{name}={value}")),
            None => env.push(entry.clone()),
        }
    }
    for (name, value) in &from_host {
        if !default_names.contains(name) {
            env.push(format!("{name}={value}"));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn env_precedence() {
        let policy = EnvPolicy {
            default: strings(&["PATH=/bin", "TZ=UTC", "MODE=prod"]),
            host_allowed: strings(&["TZ", "LANG", "EMPTY"]),
        };
        let given = strings(&[
            "PATH=/evil",
            "LANG=C",
            "TZ=Europe/Paris",
            "SECRET=x",
            "NOEQUALS",
            "LANG=C.UTF-8",
            "EMPTY=",
        ]);
        assert_eq!(
            compose_env(&policy, &given),
            strings(&[
                "PATH=/bin",
                "TZ=Europe/Paris",
                "MODE=prod",
                "LANG=C.UTF-8",
                "EMPTY="
            ])
        );
        assert_eq!(compose_env(&policy, &[]), policy.default);
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
        std::fs::write(root.join("bin/busybox"), b"x").expect("write");
        symlink("busybox", root.join("bin/sh")).expect("symlink");
        symlink("/bin/busybox", root.join("usr/bin/abs")).expect("symlink");
        symlink("../../../../../bin/sh", root.join("usr/bin/up")).expect("symlink");
        symlink("/bin", root.join("usr/bin/dir")).expect("symlink");
        symlink("loop", root.join("bin/loop")).expect("symlink");
        let r = |p: &str| resolve_in_root(root, p);
        assert_eq!(r("/bin/busybox").expect("plain"), "/bin/busybox");
        assert_eq!(r("/bin/sh").expect("relative link"), "/bin/busybox");
        assert_eq!(r("/usr/bin/abs").expect("absolute link"), "/bin/busybox");
        assert_eq!(r("/usr/bin/up").expect(".. clamped"), "/bin/busybox");
        assert_eq!(r("/usr/bin/dir/sh").expect("dir link"), "/bin/busybox");
        assert_eq!(r("//bin/./sh").expect("odd spelling"), "/bin/busybox");
        assert_eq!(
            r("/bin/loop").expect_err("loop").raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(
            r("/bin/nothing").expect_err("missing").kind(),
            io::ErrorKind::NotFound
        );
        assert!(r("/bin/busybox/x").is_err());
        assert!(r("bin/sh").is_err());
    }

    #[test]
    fn beneath() {
        assert!(is_at_or_beneath("/app/bin/x", "/app"));
        assert!(is_at_or_beneath("/app", "/app"));
        assert!(is_at_or_beneath("/anything", "/"));
        assert!(!is_at_or_beneath("/application", "/app"));
        assert!(!is_at_or_beneath("/bin/x", "/tmp"));
    }
}
