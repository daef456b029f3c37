//! Property-based fuzzing of what `rune-enclave` reads from a hostile rootfs: programs (the ELF
//! and `#!` probe in `elf.rs`) and paths (resolution inside the rootfs and manifest-key
//! normalisation in `rootfs.rs`). Nothing may panic, and no resolution may leave the rootfs.
//!
//! `PROPTEST_CASES=100000 cargo test -p rune-enclave --bins fuzz` runs more cases.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;

use crate::elf::{probe, Probe};
use crate::rootfs::{is_normal, join, normalise, parent, Kind, Rootfs};

/// `cases` unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// Real programs of the host: a dynamic one with `PT_INTERP`, `DT_NEEDED` and a string table
/// (`/bin/true`) and a larger one (`/bin/ls`).
fn programs() -> &'static [Vec<u8>] {
    static PROGRAMS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        ["/bin/true", "/bin/ls"]
            .iter()
            .map(|p| fs::read(p).expect("a host program"))
            .collect()
    })
}

fn probe_bytes(dir: &Path, bytes: &[u8]) -> anyhow::Result<Probe> {
    let path = dir.join("program");
    fs::write(&path, bytes).expect("write");
    probe(&path)
}

fn check_probe(result: anyhow::Result<Probe>) -> Result<(), TestCaseError> {
    match result {
        Ok(Probe::Elf(info)) => {
            prop_assert!(info.needed.len() + info.rpath.len() + info.runpath.len() <= 4096);
            if let Some(interpreter) = &info.interpreter {
                prop_assert!(interpreter.len() <= 4096);
            }
            prop_assert!(!info.default_dirs().is_empty());
        }
        Ok(Probe::Script(interpreter)) => {
            prop_assert!(!interpreter.is_empty());
            prop_assert!(!interpreter.contains([' ', '\t', '\n']));
        }
        Ok(Probe::Other) => {}
        Err(err) => {
            let message = format!("{err:#}");
            prop_assert!(!message.trim().is_empty());
        }
    }
    Ok(())
}

/// A little-endian field of an edited file, if the file still has it.
fn field_at(bytes: &[u8], at: usize, width: usize) -> Option<usize> {
    let slot = bytes.get(at..at.checked_add(width)?)?;
    let mut word = [0u8; 8];
    word[..width].copy_from_slice(slot);
    usize::try_from(u64::from_le_bytes(word)).ok()
}

/// Values an attacker writes into a header field.
fn field_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 7),
        Just(u64::from(u32::MAX)),
        Just(1 << 40),
        Just(1 << 63),
        0..0x1_0000u64,
        any::<u64>(),
    ]
}

/// Where an edit lands in a 64-bit little-endian ELF file: the file header, a program header,
/// or a `PT_DYNAMIC` entry (tag or value).
#[derive(Clone, Debug)]
enum Target {
    Header(usize),
    ProgramHeader(usize, usize),
    Dynamic(usize, usize),
    Anywhere(usize),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (16..64usize).prop_map(Target::Header),
        (any::<usize>(), 0..56usize).prop_map(|(i, f)| Target::ProgramHeader(i, f)),
        (any::<usize>(), 0..16usize).prop_map(|(i, f)| Target::Dynamic(i, f)),
        any::<usize>().prop_map(Target::Anywhere),
    ]
}

/// The file offset `target` names in `elf`, if the file (edited so far) still has that part.
fn offset(elf: &[u8], target: &Target) -> Option<usize> {
    let phoff = field_at(elf, 32, 8)?;
    let phnum = field_at(elf, 56, 2)?;
    let phdr = |i: usize| phoff.checked_add(i.checked_mul(56)?);
    match *target {
        Target::Header(at) => Some(at),
        Target::Anywhere(at) => Some(at % elf.len()),
        Target::ProgramHeader(i, field) => phdr(i % phnum.max(1))?.checked_add(field),
        Target::Dynamic(i, field) => {
            let dynamic = (0..phnum)
                .filter_map(phdr)
                .find(|&at| field_at(elf, at, 4) == Some(2))?; // PT_DYNAMIC
            let start = field_at(elf, dynamic.checked_add(8)?, 8)?;
            let entries = field_at(elf, dynamic.checked_add(32)?, 8)? / 16;
            start.checked_add((i % entries.max(1)).checked_mul(16)?.checked_add(field)?)
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn probe_arbitrary_bytes(
        head in prop_oneof![Just(b"\x7fELF\x02\x01\x01".to_vec()), Just(b"\x7fELF\x01\x02".to_vec()),
            Just(b"#!".to_vec()), Just(Vec::new())],
        rest in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = head;
        bytes.extend(rest);
        check_probe(probe_bytes(dir.path(), &bytes))?;
    }

    #[test]
    fn probe_scripts(line in any::<String>(), newline in any::<bool>(), pad in 0..300usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = format!("#!{}{line}", " ".repeat(pad)).into_bytes();
        if newline {
            bytes.push(b'\n');
        }
        check_probe(probe_bytes(dir.path(), &bytes))?;
    }

    #[test]
    fn probe_real_programs_with_edited_fields(
        which in 0..2usize,
        edits in prop::collection::vec((target(), field_value(), 1..=8usize), 1..4),
    ) {
        let mut elf = programs()[which].clone();
        for (target, value, width) in &edits {
            let Some(at) = offset(&elf, target) else { continue };
            let Some(slot) = elf.get_mut(at..at.saturating_add(*width)) else { continue };
            let width = slot.len();
            slot.copy_from_slice(&value.to_le_bytes()[..width]);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        check_probe(probe_bytes(dir.path(), &elf))?;
    }

    #[test]
    fn probe_real_programs_truncated_or_spliced(
        which in 0..2usize,
        cut in any::<usize>(),
        at in any::<usize>(),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut elf = programs()[which].clone();
        let at = at % elf.len();
        elf.splice(at..at, bytes);
        // Mostly cut within the headers and the dynamic section, where the reads are.
        elf.truncate(cut % elf.len().clamp(1, 16 << 10));
        let dir = tempfile::tempdir().expect("tempdir");
        check_probe(probe_bytes(dir.path(), &elf))?;
    }
}

/// A rootfs with the symlinks a hostile image plants: relative, absolute, climbing above the
/// root, loops, to the root itself, and one (`planted`) to an arbitrary target. Made anew for
/// each case (a few dozen syscalls), so that nothing is left behind.
fn fixture(planted: &str) -> (tempfile::TempDir, Rootfs) {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    for d in ["usr/lib", "usr/bin", "etc", "lib64", "var/empty"] {
        fs::create_dir_all(r.join(d)).expect("mkdir");
    }
    fs::write(r.join("usr/bin/busybox"), b"bb").expect("write");
    fs::write(r.join("etc/passwd"), b"root").expect("write");
    for (target, link) in [
        ("usr/lib", "lib"),
        ("usr/bin", "bin"),
        ("busybox", "usr/bin/sh"),
        ("/etc/passwd", "usr/bin/abs"),
        ("../../../../../../../../etc/passwd", "usr/bin/up"),
        ("loop2", "usr/bin/loop1"),
        ("loop1", "usr/bin/loop2"),
        ("/", "usr/bin/root"),
        ("..", "usr/bin/dotdot"),
        ("/nonexistent/x", "usr/bin/dangling"),
    ] {
        symlink(target, r.join(link)).expect("symlink");
    }
    // Targets the kernel refuses (empty, NUL, longer than PATH_MAX) leave no link.
    let _ = symlink(planted, r.join("planted"));
    let rootfs = Rootfs::open(r).expect("open");
    (dir, rootfs)
}

/// Paths built from the fixture's names, `.`, `..`, empty components and hostile names.
fn rootfs_path() -> impl Strategy<Value = String> {
    let component = prop_oneof![
        6 => prop::sample::select(vec![
            "usr", "bin", "lib", "etc", "passwd", "busybox", "sh", "abs", "up", "loop1", "root",
            "dotdot", "dangling", "planted", "var", "empty", ".", "..", "", "missing",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
        1 => Just("\0".to_string()),
        1 => (200usize..5000).prop_map(|n| "x".repeat(n)),
    ];
    (any::<bool>(), prop::collection::vec(component, 0..10)).prop_map(|(absolute, parts)| {
        let path = parts.join("/");
        if absolute {
            format!("/{path}")
        } else {
            path
        }
    })
}

/// Each component of a canonical path is a real directory (the last one anything but a
/// symlink) of the rootfs, so joining it to the rootfs's host path follows nothing.
fn check_canonical(rootfs: &Rootfs, canonical: &str) -> Result<(), TestCaseError> {
    prop_assert!(canonical.starts_with('/'), "{:?}", canonical);
    prop_assert!(
        !canonical.split('/').any(|c| c == ".." || c == "."),
        "{:?}",
        canonical
    );
    let mut at = String::new();
    let components: Vec<&str> = canonical.split('/').filter(|c| !c.is_empty()).collect();
    for (i, component) in components.iter().enumerate() {
        at.push('/');
        at.push_str(component);
        let meta = fs::symlink_metadata(rootfs.host_path(&at)).expect("a canonical path exists");
        prop_assert!(
            !meta.file_type().is_symlink(),
            "{:?} in {:?}",
            at,
            canonical
        );
        if i + 1 < components.len() {
            prop_assert!(meta.is_dir(), "{:?} in {:?}", at, canonical);
        }
    }
    prop_assert!(rootfs.host_path(canonical).starts_with(rootfs.host()));
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn resolution_stays_inside_the_rootfs(path in rootfs_path(), planted in rootfs_path()) {
        let (_dir, rootfs) = fixture(&planted);
        let rootfs = &rootfs;
        match rootfs.resolve(&path) {
            Ok(resolved) => {
                check_canonical(rootfs, &resolved.path)?;
                // Resolving the canonical path again gives itself.
                let again = rootfs.resolve(&resolved.path).expect("canonical resolves");
                prop_assert_eq!(again.path, resolved.path);
            }
            Err(err) => prop_assert!(!err.to_string().trim().is_empty()),
        }
        if let Ok(file) = rootfs.resolve_file(&path) {
            prop_assert_eq!(file.kind, Kind::File);
        }
    }

    #[test]
    fn manifest_keys_are_normal(path in rootfs_path()) {
        match normalise(&path, "--trust") {
            Ok(normal) => {
                prop_assert!(is_normal(&normal), "{:?} -> {:?}", path, normal);
                prop_assert_eq!(normalise(&normal, "x").expect("idempotent"), normal.clone());
                prop_assert!(!normal.contains(['\n', '\0']));
                prop_assert_eq!(is_normal(&path), path == normal);
                let parent_dir = parent(&normal);
                prop_assert!(parent_dir.starts_with('/'));
                if normal != "/" {
                    let name = &normal[parent_dir.len()..].trim_start_matches('/');
                    prop_assert_eq!(join(parent_dir, name), normal);
                }
            }
            Err(err) => {
                prop_assert!(err.to_string().contains("--trust"), "{}", err);
                prop_assert!(!is_normal(&path));
            }
        }
    }
}
