//! Cgroups a test's containers leave behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

/// Removes every cgroup directory called `name` (with its children) in every hierarchy,
/// retrying for a second while the kernel still counts exiting tasks in them.
pub fn remove_cgroups_named(name: &str) {
    fn walk(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
        if depth == 0 {
            return;
        }
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let p = e.path();
                    if e.file_name().to_string_lossy() == name {
                        out.push(p.clone());
                    }
                    walk(&p, name, depth - 1, out);
                }
            }
        }
    }
    fn rm_tree(p: &Path) {
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    rm_tree(&e.path());
                }
            }
        }
        let _ = fs::remove_dir(p);
    }
    for _ in 0..20 {
        let mut dirs = Vec::new();
        walk(Path::new("/sys/fs/cgroup"), name, 7, &mut dirs);
        if dirs.is_empty() {
            return;
        }
        for d in dirs {
            rm_tree(&d);
        }
        thread::sleep(Duration::from_millis(50));
    }
}
