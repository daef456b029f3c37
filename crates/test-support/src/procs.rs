//! Processes, read from /proc.

use std::fs;

pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Fields of /proc/PID/stat after the command name (which may hold spaces and parentheses),
/// so index 0 is the state.
fn proc_stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// Start time in clock ticks since boot: with the pid, it names one process for good.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    proc_stat_fields(pid)?.get(19)?.parse().ok()
}

pub fn proc_ppid(pid: i32) -> Option<i32> {
    proc_stat_fields(pid)?.get(1)?.parse().ok()
}

/// Single-letter state (R, S, Z...) of `pid`, None when it is gone.
pub fn proc_state(pid: i32) -> Option<String> {
    proc_stat_fields(pid)?.first().cloned()
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(proc_state(pid).as_deref(), Some(s) if s != "Z" && s != "X")
}

pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// SIGKILL to `pid` only if it is still the process that started at `start` (pids are reused).
pub fn kill_exact(pid: i32, start: u64) {
    if pid > 1 && proc_start_time(pid) == Some(start) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// VmRSS and Pss (from smaps_rollup) of `pid`, in KiB.
pub fn memory_kib(pid: i32) -> (u64, u64) {
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&status, "VmRSS:"), field(&rollup, "Pss:"))
}
