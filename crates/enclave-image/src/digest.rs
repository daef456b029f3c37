//! Hashing trusted files, in parallel: a large image must still start quickly.

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::ImageError;
use crate::manifest::Manifest;

/// Lowercase hex SHA-256 of a file's content.
pub fn digest_file(path: &Path) -> Result<String, ImageError> {
    // Non-blocking open and a type check: a FIFO or device planted where a trusted file was
    // must fail verification, not hang it.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| ImageError::io(path, e))?;
    let meta = file.metadata().map_err(|e| ImageError::io(path, e))?;
    if !meta.is_file() {
        return Err(ImageError::Invalid {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    let mut hasher = Sha256::new();
    // One buffer per thread: zeroing a fresh megabyte for each small file cost as much as
    // hashing it.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 1 << 20]);
    }
    BUF.with_borrow_mut(|buf| loop {
        let n = match file.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::io(path, e)),
        };
        hasher.update(&buf[..n]);
    })?;
    Ok(hex::encode(hasher.finalize()))
}

/// Checks every trusted file under `root` (the container's `/` once inside it) against the
/// manifest; the first mismatch is the error. Uses every CPU.
pub fn verify_files(root: &Path, manifest: &Manifest) -> Result<(), ImageError> {
    let files: Vec<(&String, &String)> = manifest.trusted_files.iter().collect();
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<ImageError>> = Mutex::new(None);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);

    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((path, expected)) = files.get(i) else {
                    return;
                };
                let local = root.join(path.trim_start_matches('/'));
                let result = match digest_file(&local) {
                    Ok(actual) if &actual == *expected => continue,
                    Ok(_) => ImageError::TrustedFile {
                        path: (*path).clone(),
                        reason: "content differs from the signed digest (changed after signing)"
                            .into(),
                    },
                    Err(e) => ImageError::TrustedFile {
                        path: (*path).clone(),
                        reason: e.to_string(),
                    },
                };
                let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(result);
                next.store(files.len(), Ordering::Relaxed);
                return;
            });
        }
    });
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest::tests::sample;

    #[test]
    fn detects_changed_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("bin")).expect("mkdir");
        std::fs::write(dir.path().join("bin/app"), b"hello").expect("write");
        let mut manifest = sample();
        manifest.entrypoints = vec!["/bin/app".into()];
        manifest.trusted_files = BTreeMap::from([(
            "/bin/app".to_string(),
            digest_file(&dir.path().join("bin/app")).expect("digest"),
        )]);
        verify_files(dir.path(), &manifest).expect("intact");

        std::fs::write(dir.path().join("bin/app"), b"hellO").expect("write");
        let err = verify_files(dir.path(), &manifest).expect_err("changed");
        assert!(err.to_string().contains("/bin/app"), "{err}");

        std::fs::remove_file(dir.path().join("bin/app")).expect("rm");
        assert!(verify_files(dir.path(), &manifest).is_err());
    }
}
