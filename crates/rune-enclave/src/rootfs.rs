//! Paths inside a container rootfs, resolved as if the rootfs were `/`.
//!
//! The rootfs is hostile content: a symlink may be absolute (`/etc/shadow`), a chain of `..`,
//! a loop, or lead to a FIFO or device. Every lookup here walks the path one component at a
//! time with `lstat`, expands symlinks itself (absolute targets restart at the rootfs, `..`
//! never climbs above it) and gives up after [`MAX_SYMLINK_HOPS`] expansions, like the kernel's
//! `RESOLVE_IN_ROOT`. What comes back is the *canonical* path: every directory in it is a real
//! directory of the rootfs and the last component is not a symlink, so joining it to the host
//! path of the rootfs names the same file without following anything.
//!
//! The rootfs is assumed not to change while rune-enclave reads it (the content is hostile,
//! not a concurrent process).

use std::fmt;
use std::fs::{self, FileType, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The kernel's limit (`MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// The image directory at the rootfs's top, which trusted-file walks never enter.
pub const IMAGE_DIR_NAME: &str = enclave_image::IMAGE_DIR;

#[derive(Debug)]
pub struct Rootfs {
    host: PathBuf,
}

/// A path resolved inside the rootfs.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Canonical absolute path inside the rootfs (`/` for the rootfs itself).
    pub path: String,
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    /// Last status change (`st_ctim`): seconds and nanoseconds.
    pub ctime: (i64, i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Kind {
    fn of(file_type: FileType) -> Kind {
        if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_fifo() {
            Kind::Fifo
        } else if file_type.is_socket() {
            Kind::Socket
        } else if file_type.is_char_device() {
            Kind::CharDevice
        } else if file_type.is_block_device() {
            Kind::BlockDevice
        } else {
            Kind::File
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
        }
    }
}

/// "a FIFO", "a socket", ... for a file type from `lstat`.
pub fn describe_file_type(file_type: FileType) -> &'static str {
    if file_type.is_symlink() {
        "a symlink"
    } else {
        Kind::of(file_type).describe()
    }
}

/// Why a path could not be resolved; `path` is the path asked for, `at` the component (inside
/// the rootfs) where resolution stopped.
#[derive(Debug)]
pub enum ResolveError {
    NotFound {
        path: String,
        at: String,
    },
    NotDir {
        path: String,
        at: String,
    },
    Loop {
        path: String,
    },
    NotUtf8 {
        path: String,
        at: String,
    },
    Io {
        path: String,
        at: String,
        source: io::Error,
    },
}

impl ResolveError {
    /// Missing, or a file where a directory was needed: what a search path skips over.
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            ResolveError::NotFound { .. } | ResolveError::NotDir { .. }
        )
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NotFound { path, at } if path == at => {
                write!(f, "{path} does not exist in the rootfs")
            }
            ResolveError::NotFound { path, at } => {
                write!(f, "{path}: {at} does not exist in the rootfs")
            }
            ResolveError::NotDir { path, at } => {
                write!(f, "{path}: {at} is not a directory")
            }
            ResolveError::Loop { path } => write!(
                f,
                "{path}: more than {MAX_SYMLINK_HOPS} symlinks to follow (a symlink loop?)"
            ),
            ResolveError::NotUtf8 { path, at } => write!(
                f,
                "{path}: {at} has a name or symlink target that is not UTF-8, which a manifest \
                 cannot hold"
            ),
            ResolveError::Io { path, at, source } => write!(f, "{path}: {at}: {source}"),
        }
    }
}

impl std::error::Error for ResolveError {}

impl Rootfs {
    pub fn open(dir: &Path) -> Result<Self> {
        let host = fs::canonicalize(dir)
            .with_context(|| format!("--rootfs {}: cannot open it", dir.display()))?;
        let meta = fs::metadata(&host)
            .with_context(|| format!("--rootfs {}: cannot open it", dir.display()))?;
        if !meta.is_dir() {
            bail!(
                "--rootfs {}: not a directory; give the container's root filesystem",
                dir.display()
            );
        }
        Ok(Rootfs { host })
    }

    pub fn host(&self) -> &Path {
        &self.host
    }

    /// The host path of a canonical path inside the rootfs.
    pub fn host_path(&self, canonical: &str) -> PathBuf {
        self.host.join(canonical.trim_start_matches('/'))
    }

    /// Resolves `path` (absolute or not, it is taken from the rootfs's `/`) inside the rootfs.
    pub fn resolve(&self, path: &str) -> Result<Resolved, ResolveError> {
        self.resolve_from(path, "/", path)
    }

    /// Resolves `rest` from `base`, a canonical directory (as [`Resolved::path`] gives for a
    /// directory): the directories of `base` are not looked at again. Errors name `shown`.
    pub fn resolve_from(
        &self,
        shown: &str,
        base: &str,
        rest: &str,
    ) -> Result<Resolved, ResolveError> {
        let path = shown;
        // Components still to walk, last one first; `done` holds the canonical directories.
        let mut pending: Vec<String> = rest.split('/').rev().map(str::to_string).collect();
        let mut done: Vec<String> = base
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        let mut hops = 0;
        let mut last: Option<Metadata> = None;
        let at = |done: &[String], name: &str| -> String {
            let mut p = String::new();
            for c in done.iter().map(String::as_str).chain([name]) {
                p.push('/');
                p.push_str(c);
            }
            p
        };

        while let Some(component) = pending.pop() {
            match component.as_str() {
                "" | "." => continue,
                ".." => {
                    done.pop();
                    last = None;
                    continue;
                }
                _ => {}
            }
            let inside = at(&done, &component);
            let host = self.host_path(&inside);
            let meta = match fs::symlink_metadata(&host) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Name what was being looked for: the missing component and the rest.
                    let mut wanted = inside;
                    for rest in pending.iter().rev().filter(|c| !c.is_empty()) {
                        wanted.push('/');
                        wanted.push_str(rest);
                    }
                    return Err(ResolveError::NotFound {
                        path: path.to_string(),
                        at: wanted,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Err(ResolveError::NotDir {
                        path: path.to_string(),
                        at: inside,
                    })
                }
                Err(source) => {
                    return Err(ResolveError::Io {
                        path: path.to_string(),
                        at: inside,
                        source,
                    })
                }
            };
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(ResolveError::Loop {
                        path: path.to_string(),
                    });
                }
                let target = fs::read_link(&host).map_err(|source| ResolveError::Io {
                    path: path.to_string(),
                    at: inside.clone(),
                    source,
                })?;
                let Some(target) = target.to_str() else {
                    return Err(ResolveError::NotUtf8 {
                        path: path.to_string(),
                        at: inside,
                    });
                };
                if target.starts_with('/') {
                    done.clear();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
                last = None;
                continue;
            }
            if meta.is_dir() {
                done.push(component);
                last = Some(meta);
                continue;
            }
            // Not a directory: it must be the last component (`file/`, `file/x` and
            // `file/..` are all ENOTDIR to the kernel).
            if !pending.is_empty() {
                return Err(ResolveError::NotDir {
                    path: path.to_string(),
                    at: inside,
                });
            }
            done.push(component);
            last = Some(meta);
        }

        let meta = match last {
            Some(meta) => meta,
            // Ended on `..` or a symlink to a directory: look at what the path names.
            None => {
                let canonical = at(&done, "");
                let canonical = canonical.trim_end_matches('/');
                let host = self.host_path(canonical);
                fs::symlink_metadata(&host).map_err(|source| ResolveError::Io {
                    path: path.to_string(),
                    at: if canonical.is_empty() { "/" } else { canonical }.to_string(),
                    source,
                })?
            }
        };
        let mut canonical = String::new();
        for c in &done {
            canonical.push('/');
            canonical.push_str(c);
        }
        if canonical.is_empty() {
            canonical.push('/');
        }
        use std::os::unix::fs::MetadataExt;
        Ok(Resolved {
            path: canonical,
            kind: Kind::of(meta.file_type()),
            size: meta.len(),
            mode: meta.mode(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Resolves `path` and insists on a regular file.
    pub fn resolve_file(&self, path: &str) -> Result<Resolved> {
        let resolved = self.resolve(path)?;
        Self::require_file(path, resolved)
    }

    /// Insists that what `path` resolved to is a regular file.
    pub fn require_file(path: &str, resolved: Resolved) -> Result<Resolved> {
        if resolved.kind != Kind::File {
            let via = if resolved.path == path {
                String::new()
            } else {
                format!(" (resolved to {})", resolved.path)
            };
            bail!(
                "{path}{via} is {}, not a regular file; only regular files can be trusted",
                resolved.kind.describe()
            );
        }
        Ok(resolved)
    }

    /// The program rune will start for the bare name `name` with `PATH=search_path`: the first
    /// `dir/name`, over the non-empty entries of the colon-separated list, that resolves inside
    /// the rootfs to an executable regular file. Returned exactly as rune passes it to the PAL
    /// (libenclave's `resolve_argv0` joins the entry and the name the same way), since the PAL
    /// admits only entrypoints spelled as the manifest lists them.
    pub fn search(&self, name: &str, search_path: &str) -> Result<String> {
        let mut passed_over = Vec::new();
        for dir in search_path.split(':').filter(|dir| !dir.is_empty()) {
            if !dir.starts_with('/') {
                bail!(
                    "--entrypoint {name}: --search-path entry {dir:?} is relative, and rune \
                     would look there (from the workload's working directory, which build cannot \
                     know) before any later entry; make the entries absolute, or give the \
                     entrypoint's absolute path"
                );
            }
            let candidate = Path::new(dir).join(name);
            let Some(candidate) = candidate.to_str() else {
                continue;
            };
            match self.resolve(candidate) {
                Ok(found) if found.kind == Kind::File && found.mode & 0o111 != 0 => {
                    let normal = normalise(candidate, "--entrypoint").with_context(|| {
                        format!("--entrypoint {name} (found through --search-path)")
                    })?;
                    if normal != candidate {
                        bail!(
                            "--entrypoint {name}: found as {candidate}, the path rune will start, \
                             but a manifest lists only normalised paths (no `//` or `.`); write \
                             the --search-path entry {dir:?} as {:?}",
                            parent(&normal)
                        );
                    }
                    return Ok(normal);
                }
                Ok(found) if found.kind == Kind::File => {
                    passed_over.push(format!("{candidate} is not executable"));
                }
                Ok(found) => {
                    passed_over.push(format!("{candidate} is {}", found.kind.describe()));
                }
                Err(e) if e.is_absent() => {}
                // rune's run-time lookup skips what it cannot stat; so does this one.
                Err(e) => passed_over.push(e.to_string()),
            }
        }
        let passed_over = if passed_over.is_empty() {
            String::new()
        } else {
            format!(" (passed over: {})", passed_over.join("; "))
        };
        bail!(
            "--entrypoint {name}: no executable regular file {name} in any directory of \
             --search-path {search_path:?} inside the rootfs{passed_over}; give its absolute \
             path, or add its directory to --search-path"
        )
    }

    /// The image directory (`/.rune-enclave`), which must be a real directory of the rootfs:
    /// a symlink planted there would send the manifest or signature anywhere on the host.
    pub fn image_dir(&self, create: bool) -> Result<PathBuf> {
        let dir = self.host.join(IMAGE_DIR_NAME);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => Ok(dir),
            Ok(_) => bail!(
                "{}: not a directory (a symlink or file in the rootfs?); remove it and build again",
                dir.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                Ok(dir)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
                "{}: no enclave image in this rootfs; run `rune-enclave build --rootfs {} \
                 --entrypoint PROGRAM` first",
                dir.display(),
                self.host.display()
            ),
            Err(e) => Err(e).with_context(|| dir.display().to_string()),
        }
    }

    /// The host path of `name` in the image directory, checked to be a regular file (not a
    /// symlink) when it exists.
    pub fn image_file(&self, name: &str) -> Result<PathBuf> {
        let path = self.image_dir(false)?.join(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(path),
            Ok(_) => bail!(
                "{}: not a regular file (a symlink planted in the rootfs?); remove it",
                path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path),
            Err(e) => Err(e).with_context(|| path.display().to_string()),
        }
    }

    /// Replaces `name` in the image directory atomically; never writes through a symlink.
    pub fn write_image_file(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let dir = self.image_dir(true)?;
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        remove_if_present(&tmp)?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(file);
        fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(path)
    }

    /// Removes `name` from the image directory (a symlink is removed, not followed); true if
    /// there was one.
    pub fn remove_image_file(&self, name: &str) -> Result<bool> {
        let path = self.image_dir(true)?.join(name);
        remove_if_present(&path)
    }
}

/// Resolves many paths that share directories: each directory is resolved once.
pub struct DirCache<'a> {
    rootfs: &'a Rootfs,
    dirs: std::collections::HashMap<String, Result<String, String>>,
}

impl<'a> DirCache<'a> {
    pub fn new(rootfs: &'a Rootfs) -> Self {
        DirCache {
            rootfs,
            dirs: std::collections::HashMap::new(),
        }
    }

    /// Like [`Rootfs::resolve_file`].
    pub fn resolve_file(&mut self, path: &str) -> Result<Resolved> {
        let (dir, name) = match path.rfind('/') {
            Some(i) if !path[i + 1..].is_empty() && !matches!(&path[i + 1..], "." | "..") => {
                (&path[..i], &path[i + 1..])
            }
            _ => return self.rootfs.resolve_file(path),
        };
        let rootfs = self.rootfs;
        let canonical = self
            .dirs
            .entry(dir.to_string())
            .or_insert_with(|| match rootfs.resolve(dir) {
                Ok(r) if r.kind == Kind::Dir => Ok(r.path),
                Ok(r) => Err(format!("{path}: {} is not a directory", r.path)),
                Err(e) => Err(format!("{path}: {e}")),
            })
            .clone()
            .map_err(anyhow::Error::msg)?;
        let resolved = rootfs.resolve_from(path, &canonical, name)?;
        Rootfs::require_file(path, resolved)
    }
}

fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// `path` as a manifest key: absolute, without empty or `.` components. `..` is refused, as
/// its meaning depends on symlinks.
pub fn normalise(path: &str, what: &str) -> Result<String> {
    if !path.starts_with('/') {
        bail!("{what} {path:?}: must be an absolute path inside the rootfs (start it with /)");
    }
    if path.contains(['\n', '\0']) {
        bail!("{what} {path:?}: a path may not contain a newline or NUL");
    }
    let mut out = String::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => bail!("{what} {path:?}: write the path without `..`"),
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// True if `path` is already a valid manifest key (what [`normalise`] would return unchanged).
pub fn is_normal(path: &str) -> bool {
    normalise(path, "").is_ok_and(|n| n == path)
}

/// `parent` joined with `name` as an in-rootfs path string.
pub fn join(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The directory part of an in-rootfs path (`/` for top-level names).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn tree() -> (tempfile::TempDir, Rootfs) {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).expect("mkdir");
        fs::create_dir_all(r.join("usr/bin")).expect("mkdir");
        fs::create_dir_all(r.join("lib64")).expect("mkdir");
        fs::create_dir_all(r.join("etc")).expect("mkdir");
        fs::write(r.join("usr/lib/x86_64-linux-gnu/ld.so"), b"ld").expect("write");
        fs::write(r.join("usr/bin/busybox"), b"bb").expect("write");
        fs::write(r.join("etc/shadow"), b"inside").expect("write");
        symlink("usr/lib", r.join("lib")).expect("symlink");
        symlink("usr/bin", r.join("bin")).expect("symlink");
        symlink("/lib/x86_64-linux-gnu/ld.so", r.join("lib64/ld.so")).expect("symlink");
        symlink("busybox", r.join("usr/bin/sh")).expect("symlink");
        symlink("/etc/shadow", r.join("usr/bin/abs")).expect("symlink");
        symlink("../../../../../../../../etc/shadow", r.join("usr/bin/up")).expect("symlink");
        symlink("loop2", r.join("usr/bin/loop1")).expect("symlink");
        symlink("loop1", r.join("usr/bin/loop2")).expect("symlink");
        symlink("self", r.join("usr/bin/self")).expect("symlink");
        symlink("/", r.join("usr/bin/root")).expect("symlink");
        let rootfs = Rootfs::open(r).expect("open");
        (dir, rootfs)
    }

    #[test]
    fn symlinks_resolve_inside_the_rootfs() {
        let (_dir, rootfs) = tree();
        let r = rootfs.resolve("/lib64/ld.so").expect("ld.so");
        assert_eq!(r.path, "/usr/lib/x86_64-linux-gnu/ld.so");
        assert_eq!(r.kind, Kind::File);
        assert_eq!(
            rootfs.resolve("/bin/sh").expect("sh").path,
            "/usr/bin/busybox"
        );
        assert_eq!(rootfs.resolve("/bin/abs").expect("abs").path, "/etc/shadow");
        assert_eq!(rootfs.resolve("/bin/up").expect("up").path, "/etc/shadow");
        assert_eq!(
            rootfs.resolve("/../../../etc/shadow").expect("dots").path,
            "/etc/shadow"
        );
        let root = rootfs.resolve("/bin/root/..").expect("root");
        assert_eq!((root.path.as_str(), root.kind), ("/", Kind::Dir));
        assert_eq!(
            rootfs.resolve("/bin/root/bin/sh").expect("via root").path,
            "/usr/bin/busybox"
        );
    }

    #[test]
    fn loops_missing_and_not_dirs_are_errors() {
        let (_dir, rootfs) = tree();
        assert!(matches!(
            rootfs.resolve("/bin/loop1"),
            Err(ResolveError::Loop { .. })
        ));
        assert!(matches!(
            rootfs.resolve("/bin/self"),
            Err(ResolveError::Loop { .. })
        ));
        let err = rootfs.resolve("/bin/nothing").expect_err("missing");
        assert!(err.is_absent());
        assert!(err.to_string().contains("/usr/bin/nothing"), "{err}");
        let err = rootfs.resolve("/bin/busybox/x").expect_err("not a dir");
        assert!(matches!(err, ResolveError::NotDir { .. }), "{err}");
        assert!(rootfs.resolve("/bin/busybox/").is_err());
    }

    #[test]
    fn the_directory_cache_agrees_with_resolve() {
        let (_dir, rootfs) = tree();
        let mut cache = DirCache::new(&rootfs);
        for path in [
            "/lib64/ld.so",
            "/bin/sh",
            "/bin/abs",
            "/bin/up",
            "/bin/root/bin/sh",
            "/usr/bin/busybox",
        ] {
            let direct = rootfs.resolve_file(path).expect(path);
            let cached = cache.resolve_file(path).expect(path);
            assert_eq!(direct.path, cached.path, "{path}");
        }
        for path in [
            "/bin/loop1",
            "/bin/nothing",
            "/nothing/x",
            "/bin/busybox/x",
            "/bin/root",
        ] {
            assert!(rootfs.resolve_file(path).is_err(), "{path}");
            assert!(cache.resolve_file(path).is_err(), "{path}");
        }
    }

    #[test]
    fn search_path_finds_what_rune_will_run() {
        let (dir, rootfs) = tree();
        let r = dir.path();
        fs::set_permissions(
            r.join("usr/bin/busybox"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        fs::write(r.join("etc/plain"), b"x").expect("write");
        fs::create_dir(r.join("etc/adir")).expect("mkdir");
        fs::write(r.join("usr/bin/plain"), b"x").expect("write");
        fs::set_permissions(
            r.join("usr/bin/plain"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");

        // Empty and missing entries are skipped; the first match wins, spelled as joined.
        assert_eq!(
            rootfs.search("sh", "::/nothing:/bin:/usr/bin").expect("sh"),
            "/bin/sh"
        );
        assert_eq!(rootfs.search("sh", "/bin/").expect("sh"), "/bin/sh");
        assert_eq!(
            rootfs.search("sh", "/usr/bin:/bin").expect("sh"),
            "/usr/bin/sh"
        );
        // Not executable, a directory, a loop: passed over, as at run time.
        assert_eq!(
            rootfs.search("plain", "/etc:/usr/bin").expect("plain"),
            "/usr/bin/plain"
        );
        assert_eq!(
            rootfs
                .search("loop1", "/bin:/usr/bin")
                .err()
                .map(|e| e.to_string().contains("passed over")),
            Some(true)
        );
        let err = rootfs.search("adir", "/etc").expect_err("directory");
        assert!(err.to_string().contains("a directory"), "{err}");
        // A symlink to a directory outside /usr/bin still resolves inside the rootfs only.
        let err = rootfs
            .search("shadow", "/bin/root/etc")
            .expect_err("not executable");
        assert!(err.to_string().contains("not executable"), "{err}");

        let err = rootfs
            .search("missing", "/bin:/usr/bin")
            .expect_err("missing");
        let err = err.to_string();
        assert!(
            err.contains("missing") && err.contains("/bin:/usr/bin"),
            "{err}"
        );
        let err = rootfs.search("sh", "bin:/bin").expect_err("relative");
        assert!(err.to_string().contains("relative"), "{err}");
        // A relative entry after the match is never reached, at run time either.
        assert_eq!(rootfs.search("sh", "/bin:bin").expect("sh"), "/bin/sh");
        let err = rootfs.search("sh", "/usr//bin").expect_err("not normal");
        assert!(err.to_string().contains("/usr//bin/sh"), "{err}");
    }

    #[test]
    fn normalising() {
        assert_eq!(normalise("//bin/./sh", "x").expect("ok"), "/bin/sh");
        assert_eq!(normalise("/", "x").expect("ok"), "/");
        assert!(normalise("bin/sh", "x").is_err());
        assert!(normalise("/bin/../sh", "x").is_err());
        assert!(is_normal("/bin/sh"));
        assert!(!is_normal("/usr/bin/../lib/x"));
        assert_eq!(parent("/bin/sh"), "/bin");
        assert_eq!(parent("/sh"), "/");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
