//! The conversion cache: what a carrier wrote into a rootfs, kept under a key derived from the
//! rootfs content and every other input of the conversion, so that the next container of the
//! same image with the same settings gets a copy instead of a conversion.
//!
//! The key is computed by the shim (the rootfs tree digest plus the carrier's inputs), never
//! taken from the container: upstream keyed by an `IMAGE_DIGEST` the user set, so any image
//! could be handed another's enclave. Nothing is locked: two first conversions of one image
//! both convert, in their own private directories, and the first to rename its result into
//! place wins; the other's copy is dropped. Entries are never modified after the rename.
//!
//! Layout: `<dir>/<carrier>/<key>/{files/…, description}`, scratch in `<dir>/tmp/`. The whole
//! tree is root's, mode 0700.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::rootfs;

/// Scratch directories older than this are left over from a shim that died mid-conversion.
const STALE_SCRATCH: Duration = Duration::from_secs(3600);

pub struct Cache {
    dir: PathBuf,
}

/// A private scratch directory, removed when dropped.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

/// Creates a new directory only root can enter, under `parent`.
pub fn private_dir(parent: &Path, prefix: &str) -> io::Result<Scratch> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)?;
    for attempt in 0..100u32 {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = parent.join(format!(
            "{prefix}{}-{nanos:08x}-{attempt}",
            std::process::id()
        ));
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(Scratch { path }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "cannot create a private directory in {}",
        parent.display()
    )))
}

impl Cache {
    /// Opens (creating) the cache in `dir` and sweeps scratch left by dead shims.
    pub fn open(dir: &Path) -> io::Result<Cache> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // The cache holds signed enclave images; nobody but root may plant one.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let cache = Cache {
            dir: dir.to_path_buf(),
        };
        cache.sweep_scratch();
        Ok(cache)
    }

    fn scratch_root(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn sweep_scratch(&self) {
        let Ok(entries) = fs::read_dir(self.scratch_root()) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_SCRATCH);
            if old {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    /// The key of a conversion by `carrier` with `inputs` of a rootfs whose tree digest is
    /// `tree`.
    pub fn key(carrier: &str, inputs: &[(String, String)], tree: &[u8; 32]) -> String {
        let mut h = Sha256::new();
        h.update(b"rune-carrier-cache-v1\0");
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(carrier.as_bytes());
        let mut sorted: Vec<&(String, String)> = inputs.iter().collect();
        sorted.sort();
        for (name, value) in sorted {
            field(name.as_bytes());
            field(value.as_bytes());
        }
        field(tree);
        hex::encode(h.finalize())
    }

    fn entry(&self, carrier: &str, key: &str) -> PathBuf {
        self.dir.join(carrier).join(key)
    }

    /// Copies a cached conversion into `rootfs`; its description, or None on a miss.
    pub fn restore(
        &self,
        carrier: &str,
        key: &str,
        rootfs: &Path,
        outputs: &[PathBuf],
    ) -> io::Result<Option<String>> {
        let entry = self.entry(carrier, key);
        let description = match fs::read_to_string(entry.join("description")) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        for rel in outputs {
            let src = entry.join("files").join(rel);
            if fs::symlink_metadata(&src).is_ok() {
                rootfs::copy_in(&src, rootfs, rel)?;
            }
        }
        Ok(Some(description))
    }

    /// Saves `outputs` of `rootfs` under the key. Losing a race to an identical conversion is
    /// not an error.
    pub fn store(
        &self,
        carrier: &str,
        key: &str,
        rootfs: &Path,
        outputs: &[PathBuf],
        description: &str,
    ) -> io::Result<()> {
        let scratch = private_dir(&self.scratch_root(), "entry-")?;
        let files = scratch.path().join("files");
        fs::DirBuilder::new().mode(0o700).create(&files)?;
        for rel in outputs {
            let dest = files.join(rel);
            if let Some(parent) = dest.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)?;
            }
            rootfs::copy_out(rootfs, rel, &dest)?;
        }
        fs::write(scratch.path().join("description"), description)?;
        let carrier_dir = self.dir.join(carrier);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&carrier_dir)?;
        match fs::rename(scratch.path(), self.entry(carrier, key)) {
            Ok(()) => Ok(()),
            // ENOTEMPTY/EEXIST: another conversion of the same content got there first.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_input_but_not_their_order() {
        let tree = [7u8; 32];
        let a = vec![
            ("x".to_string(), "1".to_string()),
            ("y".to_string(), "2".to_string()),
        ];
        let b = vec![
            ("y".to_string(), "2".to_string()),
            ("x".to_string(), "1".to_string()),
        ];
        assert_eq!(
            Cache::key("software", &a, &tree),
            Cache::key("software", &b, &tree)
        );
        assert_ne!(
            Cache::key("software", &a, &tree),
            Cache::key("occlum", &a, &tree)
        );
        assert_ne!(
            Cache::key("software", &a, &tree),
            Cache::key("software", &a, &[8u8; 32])
        );
        let c = vec![("x".to_string(), "12".to_string())];
        let d = vec![
            ("x".to_string(), "1".to_string()),
            ("2".to_string(), String::new()),
        ];
        assert_ne!(Cache::key("s", &c, &tree), Cache::key("s", &d, &tree));
    }

    #[test]
    fn store_restore_and_lost_race() {
        let base = std::env::temp_dir().join(format!("shim-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let cache = Cache::open(&base.join("cache")).unwrap();
        let rootfs = base.join("rootfs");
        fs::create_dir_all(rootfs.join(".rune-enclave")).unwrap();
        fs::write(rootfs.join(".rune-enclave/manifest.json"), b"m").unwrap();
        let outputs = vec![PathBuf::from(".rune-enclave")];

        assert!(cache
            .restore("software", "k", &rootfs, &outputs)
            .unwrap()
            .is_none());
        cache
            .store("software", "k", &rootfs, &outputs, "measurement m")
            .unwrap();
        // Same key again (a concurrent conversion finishing second): fine, first one kept.
        fs::write(rootfs.join(".rune-enclave/manifest.json"), b"other").unwrap();
        cache
            .store("software", "k", &rootfs, &outputs, "second")
            .unwrap();

        let fresh = base.join("fresh");
        fs::create_dir_all(&fresh).unwrap();
        let got = cache.restore("software", "k", &fresh, &outputs).unwrap();
        assert_eq!(got.as_deref(), Some("measurement m"));
        assert_eq!(
            fs::read(fresh.join(".rune-enclave/manifest.json")).unwrap(),
            b"m"
        );
        let mode = fs::metadata(base.join("cache"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(fs::read_dir(base.join("cache/tmp")).unwrap().count(), 0);
        fs::remove_dir_all(&base).unwrap();
    }
}
