//! Temporary and cached directories, and mount points.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{cache_dir, unique};

/// A directory under the system's temp dir, unmounted below and removed on drop (kept when
/// `RUNE_TEST_KEEP` is set, for a post-mortem).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(&format!("rs-{name}")));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join<P: AsRef<Path>>(&self, p: P) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RUNE_TEST_KEEP").is_some() {
            eprintln!("RUNE_TEST_KEEP: keeping {}", self.path.display());
            return;
        }
        unmount_below(&self.path);
        let _ = fs::remove_dir_all(&self.path);
    }
}

pub fn mount_points() -> Vec<PathBuf> {
    mount_points_of("self")
}

/// Mount points seen by process `pid` ("self" for this one).
pub fn mount_points_of(pid: &str) -> Vec<PathBuf> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

/// Lazily unmounts everything at or below `dir` in this mount namespace, deepest first.
pub fn unmount_below(dir: &Path) {
    for _ in 0..3 {
        let mut points: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(dir))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in points {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&p)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `<cache>/<name>`, built by `build` into a fresh directory the first time and renamed into
/// place, so that concurrent tests (and test crates) never see a half-built entry.
pub fn cached_dir(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let final_path = cache_dir().join(name);
    if final_path.exists() {
        return final_path;
    }
    let tmp = cache_dir().join(format!(".{name}.tmp-{}", unique("b")));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).expect("create cache temp dir");
    build(&tmp);
    if fs::rename(&tmp, &final_path).is_err() {
        let _ = fs::remove_dir_all(&tmp);
        assert!(
            final_path.exists(),
            "cannot install {}",
            final_path.display()
        );
    }
    final_path
}
