//! Reading and writing a container's rootfs from the host, where its content is hostile.
//!
//! An image may hold a symlink named like anything the shim writes (`.rune-enclave -> /etc`),
//! or absolute and `..` links meant to lead a host-side path walk out of the rootfs. So every
//! path is walked one component at a time from a descriptor of the rootfs, with `O_NOFOLLOW`:
//! a symlink on the way is an error, never followed. Only the paths the shim itself names are
//! walked, and none of them contains `..`. Where the container's own paths must be honoured
//! (its working directory), [`resolve`] follows the image's symlinks the way the kernel will
//! inside the container, never past the rootfs, and yields a path without symlinks to walk.
//!
//! The content digest ([`tree_digest`]) is what the conversion cache is keyed by: it covers
//! every name, type, mode, owner, symlink target and file content in the rootfs.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};
use sha2::{Digest, Sha256};

/// The components of a path the shim names inside a rootfs: relative, no `.`/`..`.
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a plain relative path", rel.display()),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty path inside the rootfs",
        ));
    }
    Ok(out)
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn open_dir_at(dir: RawFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    let fd = openat(
        Some(dir),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        // O_DIRECTORY wins over O_NOFOLLOW: a symlink reports ENOTDIR. Say what it is.
        let symlink = e == Errno::ENOTDIR
            && nix::sys::stat::fstatat(Some(dir), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits());
        if symlink {
            Errno::ELOOP
        } else {
            e
        }
    })?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_root(rootfs: &Path) -> io::Result<OwnedFd> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(rootfs)?;
    Ok(f.into())
}

/// Explains a failed step of a walk inside the rootfs in the words an operator needs.
fn walk_error(rel: &Path, e: Errno) -> io::Error {
    let why = match e {
        Errno::ELOOP => "is a symlink in the image; refusing to follow it".to_string(),
        Errno::ENOTDIR => "is not a directory in the image".to_string(),
        other => other.desc().to_string(),
    };
    io::Error::other(format!("/{}: {why}", rel.display()))
}

/// Opens (creating as needed, mode 0755) the directories `parts` below `root`.
fn make_dirs(root: &OwnedFd, parts: &[&OsStr]) -> io::Result<OwnedFd> {
    let mut dir = root.try_clone()?;
    let mut walked = PathBuf::new();
    for part in parts {
        walked.push(part);
        dir = match open_dir_at(dir.as_raw_fd(), part) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(
                    Some(dir.as_raw_fd()),
                    *part,
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(walk_error(&walked, e)),
                }
                open_dir_at(dir.as_raw_fd(), part).map_err(|e| walk_error(&walked, e))?
            }
            Err(e) => return Err(walk_error(&walked, e)),
        };
    }
    Ok(dir)
}

/// Removes what is at `name` in `dir` when it is not a directory (a file or symlink is
/// replaced, never written through).
fn remove_non_dir(dir: &OwnedFd, name: &OsStr, rel: &Path) -> io::Result<()> {
    match unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(walk_error(rel, e)),
    }
}

/// Copies the host file or directory tree `src` (the shim's own output: regular files,
/// directories and symlinks) to `rel` inside `rootfs`, replacing files and symlinks there.
pub fn copy_in(src: &Path, rootfs: &Path, rel: &Path) -> io::Result<()> {
    let parts = components(rel)?;
    let root = open_root(rootfs)?;
    let (name, parents) = parts.split_last().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "empty path inside the rootfs")
    })?;
    let parent = make_dirs(&root, parents)?;
    copy_entry_in(src, &parent, name, rel)
}

fn copy_entry_in(src: &Path, dir: &OwnedFd, name: &OsStr, rel: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        let sub = open_dir_at(dir.as_raw_fd(), name)
            .or_else(|e| match e {
                Errno::ENOENT => {
                    mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755))?;
                    open_dir_at(dir.as_raw_fd(), name)
                }
                other => Err(other),
            })
            .map_err(|e| walk_error(rel, e))?;
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            let child = entry.file_name();
            copy_entry_in(&entry.path(), &sub, &child, &rel.join(&child))?;
        }
        Ok(())
    } else if ft.is_symlink() {
        let target = fs::read_link(src)?;
        remove_non_dir(dir, name, rel)?;
        symlinkat(target.as_os_str(), Some(dir.as_raw_fd()), name).map_err(|e| walk_error(rel, e))
    } else if ft.is_file() {
        remove_non_dir(dir, name, rel)?;
        let fd = openat(
            Some(dir.as_raw_fd()),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(meta.mode() & 0o7777),
        )
        .map_err(|e| walk_error(rel, e))?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let mut out = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        io::copy(&mut File::open(src)?, &mut out)?;
        // The umask may have narrowed the mode.
        out.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file, directory or symlink", src.display()),
        ))
    }
}

fn with_context(e: io::Error, rel: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("/{}: {e}", rel.display()))
}

/// Copies `rel` inside `rootfs` (a file, symlink or directory tree) to the host path `dest`,
/// which must not exist. Device nodes, fifos and sockets are refused.
pub fn copy_out(rootfs: &Path, rel: &Path, dest: &Path) -> io::Result<()> {
    let parts = components(rel)?;
    let root = open_root(rootfs)?;
    let (name, parents) = parts.split_last().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "empty path inside the rootfs")
    })?;
    let dir = open_parents(&root, parents)?;
    copy_entry_out(&dir, name, rel, dest, &mut None)
}

/// Opens the directories `parents` below `root`, refusing symlinks on the way.
fn open_parents(root: &OwnedFd, parents: &[&OsStr]) -> io::Result<OwnedFd> {
    let mut dir = root.try_clone()?;
    let mut walked = PathBuf::new();
    for part in parents {
        walked.push(part);
        dir = open_dir_at(dir.as_raw_fd(), part).map_err(|e| walk_error(&walked, e))?;
    }
    Ok(dir)
}

/// What [`copy_image_out`] left out of the copy.
#[derive(Debug, Default)]
pub struct ImageCopy {
    /// Device nodes, fifos and sockets (paths relative to the rootfs).
    pub special: Vec<PathBuf>,
    /// Symlinks whose target was rewritten to stay inside the copy.
    pub rewritten_links: usize,
    skip: PathBuf,
}

/// Copies the whole `rootfs` into the new host directory `dest` (an enclave image another
/// host tool will read), except `skip` (relative to the rootfs) and device nodes, fifos and
/// sockets, which an enclave image cannot hold (listed in the result).
///
/// Symlinks are copied as symlinks and never followed. A target that would lead out of
/// `dest` when a host tool follows it (an absolute target, or `..` climbing above the copy) is
/// rewritten to the relative path that means the same inside the container, where `/` is the
/// rootfs and `..` stops there: `/etc -> /` becomes `etc -> .`. Targets that stay inside are
/// copied verbatim.
pub fn copy_image_out(rootfs: &Path, dest: &Path, skip: &Path) -> io::Result<ImageCopy> {
    let root = open_root(rootfs)?;
    let mut report = Some(ImageCopy {
        skip: skip.to_path_buf(),
        ..ImageCopy::default()
    });
    fs::DirBuilder::new().mode(0o700).create(dest)?;
    copy_children_out(&root, Path::new(""), dest, &mut report)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))?;
    report.ok_or_else(|| io::Error::other("image copy report lost"))
}

fn copy_children_out(
    dir: &OwnedFd,
    rel: &Path,
    dest: &Path,
    image: &mut Option<ImageCopy>,
) -> io::Result<()> {
    let mut names = Vec::new();
    let mut listing = Dir::from_fd(dir.try_clone()?.into_raw_fd()).map_err(errno_io)?;
    for entry in listing.iter() {
        let entry = entry.map_err(errno_io)?;
        let child = OsStr::from_bytes(entry.file_name().to_bytes());
        if child != "." && child != ".." {
            names.push(child.to_os_string());
        }
    }
    for child in names {
        copy_entry_out(dir, &child, &rel.join(&child), &dest.join(&child), image)?;
    }
    Ok(())
}

/// `image`: copying a whole image (see [`copy_image_out`]) rather than the shim's own output.
fn copy_entry_out(
    dir: &OwnedFd,
    name: &OsStr,
    rel: &Path,
    dest: &Path,
    image: &mut Option<ImageCopy>,
) -> io::Result<()> {
    if image.as_ref().is_some_and(|i| i.skip == rel) {
        return Ok(());
    }
    let fd = openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| walk_error(rel, e))?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let handle = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = fstat(handle.as_raw_fd()).map_err(errno_io)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let mode = st.st_mode & 0o7777;
    if kind == SFlag::S_IFDIR {
        let sub = open_dir_at(dir.as_raw_fd(), name).map_err(|e| walk_error(rel, e))?;
        fs::DirBuilder::new().mode(0o700).create(dest)?;
        copy_children_out(&sub, rel, dest, image)?;
        fs::set_permissions(dest, fs::Permissions::from_mode(mode))
    } else if kind == SFlag::S_IFLNK {
        let target = readlinkat(Some(dir.as_raw_fd()), name).map_err(|e| walk_error(rel, e))?;
        let target = match image {
            Some(report) => {
                let contained = contained_target(rel, Path::new(&target));
                if contained.as_os_str() != target.as_os_str() {
                    report.rewritten_links += 1;
                }
                contained.into_os_string()
            }
            None => target,
        };
        std::os::unix::fs::symlink(target, dest)
    } else if kind == SFlag::S_IFREG {
        let fd = openat(
            Some(dir.as_raw_fd()),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| walk_error(rel, e))?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let mut src = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if !src.metadata()?.is_file() {
            return Err(walk_error(rel, Errno::EINVAL));
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)?;
        io::copy(&mut src, &mut out)?;
        out.set_permissions(fs::Permissions::from_mode(mode))
    } else if let Some(report) = image {
        report.special.push(rel.to_path_buf());
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("/{}: not a file, directory or symlink", rel.display()),
        ))
    }
}

/// The target to give the copy of the symlink at `link` (relative to the image root) so that
/// following it on the host never leaves the copy, while it means what `target` means in the
/// container. A relative target whose `..` all come first and climb no higher than the root is
/// already contained: each `..` steps up through a real directory of the copy and each later
/// name is an entry of the copy, or a symlink contained in turn. Anything else is rewritten
/// from its lexical meaning in the container (`..` stops at `/`); that differs from the kernel's
/// only for a `..` right after a component that is itself a symlink, which images rarely have.
fn contained_target(link: &Path, target: &Path) -> PathBuf {
    let depth = link.components().count().saturating_sub(1);
    let mut leading_ups = 0;
    let mut named = false;
    let mut later_up = false;
    for c in target.components() {
        match c {
            Component::ParentDir if named => later_up = true,
            Component::ParentDir => leading_ups += 1,
            Component::Normal(_) => named = true,
            _ => {}
        }
    }
    if !target.has_root() && !later_up && leading_ups <= depth {
        return target.to_path_buf();
    }
    let mut parts: Vec<&OsStr> = Vec::new();
    if !target.has_root() {
        if let Some(parent) = link.parent() {
            parts.extend(parent.components().map(Component::as_os_str));
        }
    }
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let mut out = PathBuf::new();
    for _ in 0..depth {
        out.push("..");
    }
    out.extend(parts);
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The most symlinks [`resolve`] follows, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// Where the container's path `path` leads inside `rootfs` once the rootfs is the container's
/// root: symlinks are followed as the kernel would follow them there, absolute targets from
/// the rootfs and `..` stopping at it, so the result never names anything outside. The result
/// is relative to `rootfs` (empty for the root itself) and has no symlink on the way as far as
/// it exists; components that do not exist are kept as named, for the caller to create.
pub fn resolve(rootfs: &Path, path: &Path) -> io::Result<PathBuf> {
    let root = open_root(rootfs)?;
    let mut todo: std::collections::VecDeque<OsString> = std::collections::VecDeque::new();
    push_parts(&mut todo, path);
    let mut done: Vec<OsString> = Vec::new();
    // dirs[i] is open on done[..i]; shorter once a component is missing or not a directory.
    let mut dirs: Vec<OwnedFd> = vec![root];
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            done.pop();
            dirs.truncate(done.len() + 1);
            continue;
        }
        if dirs.len() == done.len() + 1 {
            let parent = dirs
                .last()
                .map(AsRawFd::as_raw_fd)
                .ok_or_else(|| io::Error::other("lost the rootfs descriptor"))?;
            let walked = || done.iter().collect::<PathBuf>().join(&part);
            match nix::sys::stat::fstatat(
                Some(parent),
                part.as_os_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => {
                    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
                    if kind == SFlag::S_IFLNK {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(walk_error(&walked(), Errno::ELOOP));
                        }
                        let target = readlinkat(Some(parent), part.as_os_str())
                            .map_err(|e| walk_error(&walked(), e))?;
                        let target = PathBuf::from(target);
                        if target.has_root() {
                            done.clear();
                            dirs.truncate(1);
                        }
                        let mut rest = std::collections::VecDeque::new();
                        push_parts(&mut rest, &target);
                        rest.extend(todo.drain(..));
                        todo = rest;
                        continue;
                    }
                    if kind == SFlag::S_IFDIR {
                        let fd = open_dir_at(parent, part.as_os_str())
                            .map_err(|e| walk_error(&walked(), e))?;
                        dirs.push(fd);
                    }
                }
                // Missing: the rest is named, not walked.
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(walk_error(&walked(), e)),
            }
        }
        done.push(part);
    }
    Ok(done.iter().collect())
}

fn push_parts(out: &mut std::collections::VecDeque<OsString>, path: &Path) {
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push_back(n.to_os_string()),
            Component::ParentDir => out.push_back("..".into()),
            _ => {}
        }
    }
}

/// Creates (as needed, mode 0755) the directory `rel` inside `rootfs` and its parents,
/// refusing symlinks on the way.
pub fn create_dir_all(rootfs: &Path, rel: &Path) -> io::Result<()> {
    let parts = components(rel)?;
    make_dirs(&open_root(rootfs)?, &parts).map(drop)
}

/// The status of `rel` inside `rootfs` (a symlink is reported, not followed), or None when it
/// does not exist. A symlink on the way is an error.
pub fn stat(rootfs: &Path, rel: &Path) -> io::Result<Option<nix::sys::stat::FileStat>> {
    let parts = components(rel)?;
    let (name, parents) = parts.split_last().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "empty path inside the rootfs")
    })?;
    let mut dir = open_root(rootfs)?;
    let mut walked = PathBuf::new();
    for part in parents {
        walked.push(part);
        dir = match open_dir_at(dir.as_raw_fd(), part) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(walk_error(&walked, e)),
        };
    }
    match nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        *name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(walk_error(rel, e)),
    }
}

/// Whether `st` is a regular file.
pub fn is_regular(st: &nix::sys::stat::FileStat) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()
}

/// Opens the regular file `rel` inside `rootfs` for reading, refusing symlinks anywhere on
/// the way and anything but a regular file.
pub fn open_file(rootfs: &Path, rel: &Path) -> io::Result<File> {
    let parts = components(rel)?;
    let (name, parents) = parts.split_last().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "empty path inside the rootfs")
    })?;
    let dir = open_parents(&open_root(rootfs)?, parents)?;
    // O_NONBLOCK: a fifo in its place must not hang the shim.
    let fd = openat(
        Some(dir.as_raw_fd()),
        *name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| walk_error(rel, e))?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("/{}: not a regular file", rel.display()),
        ));
    }
    Ok(file)
}

/// One entry of the tree listing the digest is taken over.
struct Entry {
    path: Vec<u8>,
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Symlink target, device number, or (for files) the content digest, filled in later.
    extra: Vec<u8>,
    /// For regular files: where to read the content.
    file: Option<PathBuf>,
}

/// SHA-256 over a canonical listing of everything in `rootfs`: for each entry in path order,
/// its path, type, mode, owner and group, and its symlink target, device number or content
/// digest. Symlinks are recorded, never followed. File contents are hashed on all cores.
pub fn tree_digest(rootfs: &Path) -> io::Result<[u8; 32]> {
    let mut entries = Vec::new();
    list(rootfs, &mut PathBuf::new(), &mut entries)?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));

    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<io::Error>> = Mutex::new(None);
    let files: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].file.is_some())
        .collect();
    let digests: Vec<Mutex<Option<[u8; 32]>>> = files.iter().map(|_| Mutex::new(None)).collect();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(&index) = files.get(n) else {
                    break;
                };
                let Some(path) = &entries[index].file else {
                    continue;
                };
                match hash_file(path) {
                    Ok(d) => *lock(&digests[n]) = Some(d),
                    Err(e) => {
                        let mut slot = lock(&failure);
                        if slot.is_none() {
                            *slot = Some(with_context(
                                e,
                                Path::new(OsStr::from_bytes(&entries[index].path)),
                            ));
                        }
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = lock(&failure).take() {
        return Err(e);
    }
    for (n, &index) in files.iter().enumerate() {
        let digest = lock(&digests[n])
            .take()
            .ok_or_else(|| io::Error::other("a file of the rootfs was not hashed"))?;
        entries[index].extra = digest.to_vec();
    }

    let mut hasher = Sha256::new();
    hasher.update(b"rune-rootfs-tree-v1\0");
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for e in &entries {
        field(&e.path);
        field(&[e.kind]);
        field(&e.mode.to_le_bytes());
        field(&e.uid.to_le_bytes());
        field(&e.gid.to_le_bytes());
        field(&e.extra);
    }
    Ok(hasher.finalize().into())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn list(root: &Path, rel: &mut PathBuf, out: &mut Vec<Entry>) -> io::Result<()> {
    let dir = root.join(&*rel);
    let mut names: Vec<OsString> = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| with_context(e, rel))? {
        names.push(entry?.file_name());
    }
    for name in names {
        rel.push(&name);
        let host = root.join(&*rel);
        let meta = fs::symlink_metadata(&host).map_err(|e| with_context(e, rel))?;
        let ft = meta.file_type();
        let (kind, extra, file) = if ft.is_dir() {
            (b'd', Vec::new(), None)
        } else if ft.is_symlink() {
            let target = fs::read_link(&host)?;
            (b'l', target.as_os_str().as_bytes().to_vec(), None)
        } else if ft.is_file() {
            (b'f', Vec::new(), Some(host))
        } else if ft.is_block_device() || ft.is_char_device() {
            let kind = if ft.is_block_device() { b'b' } else { b'c' };
            (kind, meta.rdev().to_le_bytes().to_vec(), None)
        } else if ft.is_fifo() {
            (b'p', Vec::new(), None)
        } else {
            (b's', Vec::new(), None)
        };
        out.push(Entry {
            path: rel.as_os_str().as_bytes().to_vec(),
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            extra,
            file,
        });
        if kind == b'd' {
            list(root, rel, out)?;
        }
        rel.pop();
    }
    Ok(())
}

fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    // O_NONBLOCK: a fifo put in place of a listed file must not hang the shim.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("changed into a non-file while hashing"));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "shim-rootfs-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn digest_covers_content_names_modes_and_links() {
        let root = tmp("digest");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/busybox"), b"ELF...").unwrap();
        symlink("busybox", root.join("bin/sh")).unwrap();
        let first = tree_digest(&root).unwrap();
        assert_eq!(first, tree_digest(&root).unwrap());

        fs::write(root.join("bin/busybox"), b"ELF..!").unwrap();
        let content = tree_digest(&root).unwrap();
        assert_ne!(first, content);

        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o4755)).unwrap();
        let mode = tree_digest(&root).unwrap();
        assert_ne!(content, mode);

        fs::remove_file(root.join("bin/sh")).unwrap();
        symlink("/etc/passwd", root.join("bin/sh")).unwrap();
        assert_ne!(mode, tree_digest(&root).unwrap());

        // A symlink to a directory outside is recorded, not followed.
        symlink("/", root.join("escape")).unwrap();
        tree_digest(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn copy_in_refuses_symlinks_on_the_way() {
        let root = tmp("in-root");
        let outside = tmp("in-outside");
        let src = tmp("in-src");
        fs::write(src.join("manifest.json"), b"{}").unwrap();

        symlink(&outside, root.join(".rune-enclave")).unwrap();
        let err = copy_in(&src, &root, Path::new(".rune-enclave")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.join("manifest.json").exists());

        fs::remove_file(root.join(".rune-enclave")).unwrap();
        fs::create_dir(root.join(".rune-enclave")).unwrap();
        // A symlink where a file goes is replaced, not written through.
        symlink(
            outside.join("target"),
            root.join(".rune-enclave/manifest.json"),
        )
        .unwrap();
        copy_in(&src, &root, Path::new(".rune-enclave")).unwrap();
        assert!(!outside.join("target").exists());
        assert_eq!(
            fs::read(root.join(".rune-enclave/manifest.json")).unwrap(),
            b"{}"
        );

        assert!(copy_in(&src, &root, Path::new("../x")).is_err());
        assert!(copy_in(&src, &root, Path::new("/x")).is_err());
        for d in [root, outside, src] {
            fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn copy_out_round_trips_and_refuses_symlinks() {
        let root = tmp("out-root");
        let outside = tmp("out-outside");
        fs::create_dir_all(root.join("run/inst/build")).unwrap();
        fs::write(root.join("run/inst/build/lib.so"), b"lib").unwrap();
        symlink("lib.so", root.join("run/inst/build/lib.so.0")).unwrap();
        let dest = outside.join("copy");
        copy_out(&root, Path::new("run/inst"), &dest).unwrap();
        assert_eq!(fs::read(dest.join("build/lib.so")).unwrap(), b"lib");
        assert_eq!(
            fs::read_link(dest.join("build/lib.so.0")).unwrap(),
            PathBuf::from("lib.so")
        );

        symlink(&outside, root.join("link")).unwrap();
        let err = copy_out(&root, Path::new("link/copy"), &outside.join("again")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        // A symlink itself is copied as a symlink, not followed.
        copy_out(&root, Path::new("link"), &outside.join("again")).unwrap();
        assert!(outside.join("again").is_symlink());
        for d in [root, outside] {
            fs::remove_dir_all(d).unwrap();
        }
    }
}
