//! Hashing trusted files in parallel with [`enclave_image::digest_file`], and checking a
//! manifest's files against the rootfs.
//!
//! Checking resolves every manifest path inside the rootfs (as [`Rootfs::resolve`] does),
//! rather than joining it to the rootfs's host path: from outside the container an absolute
//! symlink such as Debian's `/lib64/ld-linux-x86-64.so.2` would otherwise be followed to the
//! *host's* file.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use enclave_image::Manifest;

use crate::rootfs::{DirCache, Rootfs};

/// Digest (lowercase hex) of each canonical path, or why it could not be taken.
pub type Digests = HashMap<String, Result<String, String>>;

/// Hashes each of `files` (canonical path, size) once, largest first, on every CPU.
pub fn hash_all(rootfs: &Rootfs, files: &BTreeMap<String, u64>) -> Digests {
    let mut order: Vec<(&String, u64)> = files.iter().map(|(p, s)| (p, *s)).collect();
    // Largest first, so that no thread is left with a big file at the end.
    order.sort_by_key(|file| std::cmp::Reverse(file.1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Digests> = Mutex::new(HashMap::with_capacity(order.len()));
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16)
        .min(order.len().max(1));

    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, _)) = order.get(i) else {
                        break;
                    };
                    let digest = enclave_image::digest_file(&rootfs.host_path(path))
                        .map_err(|e| e.to_string());
                    local.push(((*path).clone(), digest));
                }
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(local);
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// A trusted file that does not match the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub path: String,
    pub problem: String,
    /// The digest it has now, if it could be taken.
    pub actual: Option<String>,
}

/// Which trusted files [`check`] hashes again.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    /// All of them.
    All,
    /// Only those whose status changed at or after this time (`st_ctim`, seconds and
    /// nanoseconds; nobody can set a ctime back): a quick test that the manifest is not stale,
    /// for signing. Every path is still resolved, so a missing file is always found.
    ChangedSince((i64, i64)),
}

/// Checks the trusted files of `manifest` in the rootfs; returns those that differ, in path
/// order, and the digests of the files that were hashed.
pub fn check(
    rootfs: &Rootfs,
    manifest: &Manifest,
    scope: Scope,
) -> (Vec<Mismatch>, BTreeMap<String, String>) {
    let mut canonical: BTreeMap<&String, String> = BTreeMap::new();
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut mismatches = Vec::new();
    let mut resolver = DirCache::new(rootfs);
    for path in manifest.trusted_files.keys() {
        match resolver.resolve_file(path) {
            Ok(resolved) => {
                if let Scope::ChangedSince(since) = scope {
                    if resolved.ctime < since {
                        continue;
                    }
                }
                sizes.insert(resolved.path.clone(), resolved.size);
                canonical.insert(path, resolved.path);
            }
            Err(e) => mismatches.push(Mismatch {
                path: path.clone(),
                problem: format!("{e:#}"),
                actual: None,
            }),
        }
    }
    let digests = hash_all(rootfs, &sizes);
    let mut now = BTreeMap::new();
    for (path, expected) in &manifest.trusted_files {
        let Some(file) = canonical.get(path) else {
            continue;
        };
        match digests.get(file) {
            Some(Ok(actual)) if actual == expected => {
                now.insert(path.clone(), actual.clone());
            }
            Some(Ok(actual)) => {
                now.insert(path.clone(), actual.clone());
                mismatches.push(Mismatch {
                    path: path.clone(),
                    problem: "content differs from the digest in the manifest (changed after \
                              build)"
                        .into(),
                    actual: Some(actual.clone()),
                });
            }
            Some(Err(e)) => mismatches.push(Mismatch {
                path: path.clone(),
                problem: e.clone(),
                actual: None,
            }),
            None => mismatches.push(Mismatch {
                path: path.clone(),
                problem: "was not hashed".into(),
                actual: None,
            }),
        }
    }
    mismatches.sort_by(|a, b| a.path.cmp(&b.path));
    (mismatches, now)
}

/// One line naming the first mismatch and counting the others.
pub fn summary(mismatches: &[Mismatch]) -> String {
    match mismatches {
        [] => String::new(),
        [only] => format!("trusted file {}: {}", only.path, only.problem),
        [first, rest @ ..] => {
            let mut others: Vec<&str> = rest.iter().take(5).map(|m| m.path.as_str()).collect();
            if rest.len() > others.len() {
                others.push("...");
            }
            format!(
                "trusted file {}: {} ({} more failing: {})",
                first.path,
                first.problem,
                rest.len(),
                others.join(", ")
            )
        }
    }
}
