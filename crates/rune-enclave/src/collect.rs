//! Which files an image trusts: each entrypoint and everything starting it opens (`#!`
//! interpreters, the ELF interpreter, `DT_NEEDED` libraries found the way `ld.so` finds them),
//! plus the `--trust` paths.
//!
//! Every path is looked up inside the rootfs ([`Rootfs::resolve`]). A file reached through a
//! symlink is listed twice, under the path it was asked for (what the program will open) and
//! under its canonical path, both with the digest of the file itself.
//!
//! Anything an entrypoint needs that is missing is an error (the program could not start).
//! For `--trust` paths, ELF files (shared objects and executables) have their libraries
//! followed too, but a missing one is only a warning: a Python extension module whose library
//! is absent breaks one `import`, not the image.

use std::collections::{BTreeMap, HashSet, VecDeque};

use anyhow::{anyhow, bail, Context, Result};

use crate::elf::{self, ElfInfo, Probe};
use crate::rootfs::{self, Kind, Resolved, Rootfs, IMAGE_DIR_NAME};

/// `#!` interpreters may themselves be scripts this many times (the kernel allows a few).
const MAX_INTERPRETER_DEPTH: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Needed by an entrypoint: missing is an error.
    Strict,
    /// Needed by a `--trust` file: missing is a warning.
    Lenient,
}

/// The result: manifest keys and the canonical file each one is.
#[derive(Debug, Default)]
pub struct Collected {
    /// Manifest key (absolute path) → canonical path inside the rootfs.
    pub files: BTreeMap<String, String>,
    /// Canonical path → size in bytes.
    pub sizes: BTreeMap<String, u64>,
    pub warnings: Vec<String>,
}

pub struct Collector<'a> {
    rootfs: &'a Rootfs,
    out: Collected,
    /// Canonical paths of ELF files whose libraries were already followed.
    analysed: HashSet<String>,
}

/// An ELF object being loaded, with what its library search depends on.
struct Object {
    /// The path it is opened by.
    lookup: String,
    info: ElfInfo,
    /// `$ORIGIN`: the directory of the executable's canonical path (the kernel's
    /// `/proc/self/exe`), or of the path a library was found by.
    origin: String,
    /// Effective `DT_RPATH` directories of the objects that loaded this one, nearest first,
    /// the executable's last.
    inherited_rpath: Vec<String>,
}

impl<'a> Collector<'a> {
    pub fn new(rootfs: &'a Rootfs) -> Self {
        Collector {
            rootfs,
            out: Collected::default(),
            analysed: HashSet::new(),
        }
    }

    pub fn finish(self) -> Collected {
        self.out
    }

    /// An entrypoint and everything it needs to start.
    pub fn entrypoint(&mut self, path: &str) -> Result<()> {
        self.exec(path, 0, Mode::Strict)
            .with_context(|| format!("--entrypoint {path}"))
    }

    /// A `--trust` path: a file, or a directory taken recursively.
    pub fn trust(&mut self, given: &str) -> Result<()> {
        let resolved = self
            .rootfs
            .resolve(given)
            .with_context(|| format!("--trust {given}"))?;
        match resolved.kind {
            Kind::File => {
                self.add(given, &resolved)
                    .with_context(|| format!("--trust {given}"))?;
                self.follow_trusted(given, &resolved, true)
            }
            Kind::Dir => self
                .walk(given, &resolved.path)
                .with_context(|| format!("--trust {given}")),
            kind => bail!(
                "--trust {given}: {} is {}, not a regular file or directory",
                resolved.path,
                kind.describe()
            ),
        }
    }

    /// Lists `given` (when it is a usable key) and the canonical path of `resolved`.
    fn add(&mut self, given: &str, resolved: &Resolved) -> Result<()> {
        for path in [given, resolved.path.as_str()] {
            if path.contains(['\n', '\0']) {
                bail!(
                    "{path:?}: a file name with a newline cannot be listed in a manifest; rename it"
                );
            }
            let top = path.trim_start_matches('/');
            let in_image_dir = top
                .strip_prefix(IMAGE_DIR_NAME)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if in_image_dir {
                bail!("{path}: the image directory /{IMAGE_DIR_NAME} cannot hold trusted files");
            }
        }
        self.out
            .files
            .insert(resolved.path.clone(), resolved.path.clone());
        if rootfs::is_normal(given) && given != resolved.path {
            self.out
                .files
                .insert(given.to_string(), resolved.path.clone());
        }
        self.out.sizes.insert(resolved.path.clone(), resolved.size);
        Ok(())
    }

    fn missing(&mut self, mode: Mode, message: String) -> Result<()> {
        match mode {
            Mode::Strict => Err(anyhow!(message)),
            Mode::Lenient => {
                if !self.out.warnings.contains(&message) {
                    self.out.warnings.push(message);
                }
                Ok(())
            }
        }
    }

    /// A program the kernel will `execve`: an ELF executable or a `#!` script.
    fn exec(&mut self, path: &str, depth: u32, mode: Mode) -> Result<()> {
        let resolved = self.rootfs.resolve_file(path)?;
        if resolved.mode & 0o111 == 0 {
            bail!(
                "{path} is not executable (mode {:o}); chmod +x it in the rootfs",
                resolved.mode & 0o7777
            );
        }
        self.add(path, &resolved)?;
        let host = self.rootfs.host_path(&resolved.path);
        match elf::probe(&host).with_context(|| path.to_string())? {
            Probe::Elf(info) => {
                if !info.loadable {
                    bail!("{path} is an ELF file but not an executable (ET_EXEC or ET_DYN)");
                }
                self.program(path, &resolved, info, mode)
            }
            Probe::Script(interpreter) => {
                if depth >= MAX_INTERPRETER_DEPTH {
                    bail!("{path}: #! interpreters nested more than {MAX_INTERPRETER_DEPTH} deep");
                }
                if !interpreter.starts_with('/') {
                    bail!("{path}: the #! interpreter {interpreter:?} is not an absolute path");
                }
                self.exec(&interpreter, depth + 1, mode)
                    .with_context(|| format!("#! interpreter of {path}"))
            }
            Probe::Other => {
                bail!("{path} is neither an ELF program nor a #! script, so it cannot be started")
            }
        }
    }

    /// An ELF program: its interpreter and its libraries.
    fn program(
        &mut self,
        path: &str,
        resolved: &Resolved,
        info: ElfInfo,
        mode: Mode,
    ) -> Result<()> {
        if let Some(interpreter) = info.interpreter.clone() {
            match self.rootfs.resolve_file(&interpreter) {
                Ok(found) => {
                    self.add(&interpreter, &found)?;
                    let host = self.rootfs.host_path(&found.path);
                    if let Probe::Elf(interp_info) = elf::probe(&host)
                        .with_context(|| format!("ELF interpreter {interpreter} of {path}"))?
                    {
                        self.object(
                            &found.path,
                            Object {
                                origin: rootfs::parent(&interpreter).to_string(),
                                lookup: interpreter,
                                info: interp_info,
                                inherited_rpath: Vec::new(),
                            },
                            mode,
                        )?;
                    }
                }
                Err(e) => self.missing(
                    mode,
                    format!(
                        "{path} needs its ELF interpreter {interpreter}: {e:#}; copy it into the \
                         rootfs"
                    ),
                )?,
            }
        }
        self.object(
            &resolved.path,
            Object {
                lookup: path.to_string(),
                origin: rootfs::parent(&resolved.path).to_string(),
                info,
                inherited_rpath: Vec::new(),
            },
            mode,
        )
    }

    /// Follows `DT_NEEDED` from `root`, breadth first, each object once.
    fn object(&mut self, canonical: &str, root: Object, mode: Mode) -> Result<()> {
        let mut queue = VecDeque::from([(canonical.to_string(), root)]);
        while let Some((canonical, object)) = queue.pop_front() {
            if !self.analysed.insert(canonical) {
                continue;
            }
            let own_rpath = if object.info.runpath.is_empty() {
                self.expand(&object.info.rpath, &object)
            } else {
                // With DT_RUNPATH, glibc ignores DT_RPATH (the object's and its loaders').
                Vec::new()
            };
            let mut dirs: Vec<String> = Vec::new();
            if object.info.runpath.is_empty() {
                dirs.extend(own_rpath.iter().cloned());
                dirs.extend(object.inherited_rpath.iter().cloned());
            }
            dirs.extend(self.expand(&object.info.runpath, &object));
            dirs.extend(object.info.default_dirs().iter().map(|d| d.to_string()));
            let mut child_rpath = own_rpath;
            child_rpath.extend(object.inherited_rpath.iter().cloned());

            for name in &object.info.needed {
                match self.find_library(name, &object, &dirs)? {
                    Some((lookup, found, info)) => {
                        self.add(&lookup, &found)?;
                        queue.push_back((
                            found.path.clone(),
                            Object {
                                origin: rootfs::parent(&lookup).to_string(),
                                lookup,
                                info,
                                inherited_rpath: child_rpath.clone(),
                            },
                        ));
                    }
                    None => {
                        let message = match mode {
                            Mode::Strict => format!(
                                "{} needs {name}, which is not in the rootfs (searched {}); \
                                 copy it in",
                                object.lookup,
                                dirs.join(":")
                            ),
                            Mode::Lenient => format!(
                                "{} needs {name}, which is not in the rootfs; loading it will \
                                 fail",
                                object.lookup
                            ),
                        };
                        self.missing(mode, message)?
                    }
                }
            }
        }
        Ok(())
    }

    /// The first `dir/name` that is a compatible ELF object, as `ld.so` picks it.
    fn find_library(
        &mut self,
        name: &str,
        object: &Object,
        dirs: &[String],
    ) -> Result<Option<(String, Resolved, ElfInfo)>> {
        let candidates: Vec<String> = if name.contains('/') {
            // A path, not a name: used as it is (a relative one depends on the working
            // directory, which is not known here).
            if name.starts_with('/') {
                vec![name.to_string()]
            } else {
                Vec::new()
            }
        } else {
            dirs.iter().map(|dir| rootfs::join(dir, name)).collect()
        };
        for candidate in candidates {
            let found = match self.rootfs.resolve(&candidate) {
                Ok(found) => found,
                Err(e) if e.is_absent() => continue,
                Err(e) => {
                    return Err(anyhow!(e)).with_context(|| {
                        format!("looking for {name} (needed by {})", object.lookup)
                    })
                }
            };
            match found.kind {
                Kind::Dir => continue,
                Kind::File => {}
                kind => bail!(
                    "looking for {name} (needed by {}): {candidate} is {}, not a regular file",
                    object.lookup,
                    kind.describe()
                ),
            }
            // The loader skips files of another class or machine (a 32-bit library in
            // /usr/lib, a linker script named libc.so) and tries the next directory.
            let host = self.rootfs.host_path(&found.path);
            if let Ok(Probe::Elf(info)) = elf::probe(&host) {
                if object.info.compatible(&info) {
                    return Ok(Some((candidate, found, info)));
                }
            }
        }
        Ok(None)
    }

    /// `DT_RPATH`/`DT_RUNPATH` entries as absolute directories, `$ORIGIN` expanded.
    fn expand(&mut self, entries: &[String], object: &Object) -> Vec<String> {
        let mut dirs = Vec::new();
        for dir in entries.iter().flat_map(|e| e.split(':')) {
            let dir = dir
                .replace("${ORIGIN}", &object.origin)
                .replace("$ORIGIN", &object.origin);
            if dir.contains('$') {
                let warning = format!(
                    "{}: search path {dir:?} uses a token other than $ORIGIN; it was not searched",
                    object.lookup
                );
                if !self.out.warnings.contains(&warning) {
                    self.out.warnings.push(warning);
                }
                continue;
            }
            // Empty or relative entries are relative to the working directory: not knowable.
            if dir.starts_with('/') {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// A file from `--trust`: if it is an ELF object (explicitly named, executable, or named
    /// like a shared object), its interpreter and libraries are trusted too.
    fn follow_trusted(&mut self, given: &str, resolved: &Resolved, explicit: bool) -> Result<()> {
        let name = given.rsplit('/').next().unwrap_or_default();
        let looks_elf = explicit
            || resolved.mode & 0o111 != 0
            || name.ends_with(".so")
            || name.contains(".so.");
        if !looks_elf || self.analysed.contains(&resolved.path) {
            return Ok(());
        }
        let host = self.rootfs.host_path(&resolved.path);
        match elf::probe(&host) {
            Ok(Probe::Elf(info)) if info.loadable => {
                if info.interpreter.is_some() && resolved.mode & 0o111 != 0 {
                    self.program(given, resolved, info, Mode::Lenient)
                } else {
                    self.object(
                        &resolved.path,
                        Object {
                            lookup: given.to_string(),
                            origin: rootfs::parent(given).to_string(),
                            info,
                            inherited_rpath: Vec::new(),
                        },
                        Mode::Lenient,
                    )
                }
            }
            Ok(_) => Ok(()),
            Err(e) => {
                self.out
                    .warnings
                    .push(format!("{e:#}; the libraries it needs were not looked for"));
                Ok(())
            }
        }
    }

    /// Every regular file under a trusted directory. Symlinks to files are resolved (inside
    /// the rootfs); symlinks to directories are not followed (they could lead anywhere in the
    /// rootfs, or in circles).
    fn walk(&mut self, given: &str, canonical: &str) -> Result<()> {
        if canonical.trim_start_matches('/') == IMAGE_DIR_NAME {
            bail!("{canonical} is the image directory; it cannot be trusted");
        }
        let mut stack = vec![(given.to_string(), canonical.to_string())];
        while let Some((given_dir, dir)) = stack.pop() {
            let host = self.rootfs.host_path(&dir);
            let mut entries = std::fs::read_dir(&host)
                .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("reading the directory {dir}"))?;
            // Sorted, so that warnings come out the same way every time.
            entries.sort_by_key(|entry| entry.file_name());
            for entry in entries {
                let name = entry.file_name().into_string().map_err(|name| {
                    anyhow!(
                        "{}: the name is not UTF-8, which a manifest cannot hold; rename it",
                        rootfs::join(&dir, &name.to_string_lossy())
                    )
                })?;
                let path = rootfs::join(&dir, &name);
                if path.trim_start_matches('/') == IMAGE_DIR_NAME {
                    continue;
                }
                let key = rootfs::join(&given_dir, &name);
                // fstatat relative to the directory, without following a symlink.
                let meta = entry
                    .metadata()
                    .with_context(|| format!("reading {path}"))?;
                let file_type = meta.file_type();
                if file_type.is_dir() {
                    stack.push((key, path));
                } else if file_type.is_file() {
                    use std::os::unix::fs::MetadataExt;
                    let resolved = Resolved {
                        path,
                        kind: Kind::File,
                        size: meta.len(),
                        mode: meta.mode(),
                        ctime: (meta.ctime(), meta.ctime_nsec()),
                    };
                    self.add(&key, &resolved)?;
                    self.follow_trusted(&key, &resolved, false)?;
                } else if file_type.is_symlink() {
                    match self.rootfs.resolve(&path) {
                        Ok(found) if found.kind == Kind::File => {
                            self.add(&key, &found)?;
                            self.follow_trusted(&key, &found, false)?;
                        }
                        Ok(found) if found.kind == Kind::Dir => self.out.warnings.push(format!(
                            "{key} is a symlink to the directory {}, not followed; add --trust {} \
                             if the enclave needs it",
                            found.path, found.path
                        )),
                        Ok(found) => bail!(
                            "{key} leads to {}, which is {}; only regular files can be trusted",
                            found.path,
                            found.kind.describe()
                        ),
                        Err(e) if e.is_absent() => self
                            .out
                            .warnings
                            .push(format!("{key} is a dangling symlink ({e}), skipped")),
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    let kind = crate::rootfs::describe_file_type(file_type);
                    bail!(
                        "{key} is {kind}, not a regular file; remove it from the rootfs or trust \
                         the files beside it one by one"
                    );
                }
            }
        }
        Ok(())
    }
}
