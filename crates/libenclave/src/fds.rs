//! Closing the fds a process that stays rune inherited but must not keep.

use std::os::fd::RawFd;

use nix::sys::stat::{fstat, SFlag};

/// The fds open in this process.
pub fn open_fds() -> Vec<RawFd> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // One of them was the directory listing's own fd, closed by now.
    fds.into_iter().filter(|&fd| fstat(fd).is_ok()).collect()
}

pub fn close_all_except(keep: &[RawFd]) {
    for fd in open_fds() {
        if !keep.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// Closes every fd above 2 that is neither a socket nor a pipe, except `keep`.
pub fn close_files_except(keep: &[RawFd]) {
    for fd in open_fds() {
        if fd <= 2 || keep.contains(&fd) {
            continue;
        }
        let Ok(stat) = fstat(fd) else { continue };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind != SFlag::S_IFSOCK && kind != SFlag::S_IFIFO {
            let _ = nix::unistd::close(fd);
        }
    }
}
