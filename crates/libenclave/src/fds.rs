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

/// Runs `f` with fd 2 going into a buffer, and returns what was written there (its last 4 KiB).
/// A thread drains the pipe, so a chatty `f` cannot block on a full pipe.
pub fn capture_stderr<T>(f: impl FnOnce() -> T) -> (T, String) {
    let Ok((read, write)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return (f(), String::new());
    };
    let Ok(saved) = nix::unistd::dup(2) else {
        return (f(), String::new());
    };
    let drain = std::thread::spawn(move || {
        let mut file = std::fs::File::from(read);
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut file, &mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 4096 {
                kept.drain(..kept.len() - 4096);
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    });
    let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&write), 2);
    drop(write);
    let result = f();
    // Restoring fd 2 closes the pipe's last writer, which ends the drain.
    let _ = nix::unistd::dup2(saved, 2);
    let _ = nix::unistd::close(saved);
    let said = drain.join().unwrap_or_default();
    (result, said)
}
