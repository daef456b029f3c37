//! Cgroup statistics of a process, as containerd's metrics protos: `io.containerd.cgroups.v1.Metrics`
//! on cgroup v1 (and hybrid) hosts, `io.containerd.cgroups.v2.Metrics` on unified hosts.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};

pub const V1_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";
pub const V2_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";

/// `/proc/<pid>/cgroup`: controller -> path (v2 under the key "").
pub fn proc_cgroups(pid: u32) -> io::Result<HashMap<String, String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let mut map = HashMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            map.insert(String::new(), path.to_string());
        } else {
            for c in ctrls.split(',') {
                map.insert(c.trim_start_matches("name=").to_string(), path.to_string());
            }
        }
    }
    Ok(map)
}

struct CgroupMount {
    root: String,
    point: PathBuf,
    options: Vec<String>,
    v2: bool,
}

fn cgroup_mounts() -> io::Result<Vec<CgroupMount>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let v2 = r[0] == "cgroup2";
        if r[0] != "cgroup" && !v2 {
            continue;
        }
        out.push(CgroupMount {
            root: l[3].to_string(),
            point: PathBuf::from(l[4]),
            options: r[2].split(',').map(str::to_string).collect(),
            v2,
        });
    }
    Ok(out)
}

/// True when the host has no v1 hierarchy with controllers (pure cgroup v2).
pub fn unified() -> bool {
    cgroup_mounts()
        .map(|ms| {
            !ms.iter().any(|m| {
                !m.v2
                    && m.options
                        .iter()
                        .any(|o| ["memory", "cpu", "pids", "cpuacct"].contains(&o.as_str()))
            })
        })
        .unwrap_or(false)
}

fn join_cgroup(mount: &CgroupMount, path: &str) -> PathBuf {
    let rel = path.strip_prefix(mount.root.as_str()).unwrap_or(path);
    mount.point.join(rel.trim_start_matches('/'))
}

/// The v1 directory of `controller` for `pid`.
pub fn v1_dir(pid: u32, controller: &str) -> io::Result<PathBuf> {
    let cgroups = proc_cgroups(pid)?;
    let path = cgroups
        .get(controller)
        .ok_or_else(|| io::Error::other(format!("process {pid} has no {controller} cgroup")))?;
    let mounts = cgroup_mounts()?;
    let mount = mounts
        .iter()
        .find(|m| !m.v2 && m.options.iter().any(|o| o == controller))
        .ok_or_else(|| io::Error::other(format!("no {controller} cgroup hierarchy mounted")))?;
    Ok(join_cgroup(mount, path))
}

fn v2_dir(pid: u32) -> io::Result<PathBuf> {
    let cgroups = proc_cgroups(pid)?;
    let path = cgroups
        .get("")
        .ok_or_else(|| io::Error::other(format!("process {pid} has no unified cgroup")))?;
    let mounts = cgroup_mounts()?;
    let mount = mounts
        .iter()
        .find(|m| m.v2)
        .ok_or_else(|| io::Error::other("no cgroup2 mounted"))?;
    Ok(join_cgroup(mount, path))
}

fn read_u64(path: &Path) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    if s == "max" {
        return Some(0);
    }
    s.parse().ok()
}

fn read_kv(path: &Path) -> HashMap<String, u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

fn memory_entry(dir: &Path, prefix: &str) -> Option<v1::MemoryEntry> {
    let f = |name: &str| read_u64(&dir.join(format!("{prefix}.{name}")));
    let usage = f("usage_in_bytes")?;
    Some(v1::MemoryEntry {
        usage,
        limit: f("limit_in_bytes").unwrap_or(0),
        max: f("max_usage_in_bytes").unwrap_or(0),
        failcnt: f("failcnt").unwrap_or(0),
        ..Default::default()
    })
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// cgroup v1 metrics of `pid`'s cgroups.
pub fn v1_metrics(pid: u32) -> io::Result<v1::Metrics> {
    let mut m = v1::Metrics::new();
    let mut found = false;
    if let Ok(dir) = v1_dir(pid, "pids") {
        if let Some(current) = read_u64(&dir.join("pids.current")) {
            found = true;
            m.pids = MessageField::some(v1::PidsStat {
                current,
                limit: read_u64(&dir.join("pids.max")).unwrap_or(0),
                ..Default::default()
            });
        }
    }
    let mut cpu = v1::CPUStat::new();
    let mut have_cpu = false;
    if let Ok(dir) = v1_dir(pid, "cpuacct") {
        if let Some(total) = read_u64(&dir.join("cpuacct.usage")) {
            have_cpu = true;
            let per_cpu = fs::read_to_string(dir.join("cpuacct.usage_percpu"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            let stat = read_kv(&dir.join("cpuacct.stat"));
            let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000) / clock_ticks();
            cpu.usage = MessageField::some(v1::CPUUsage {
                total,
                user: ns(stat.get("user").copied().unwrap_or(0)),
                kernel: ns(stat.get("system").copied().unwrap_or(0)),
                per_cpu,
                ..Default::default()
            });
        }
    }
    if let Ok(dir) = v1_dir(pid, "cpu") {
        let stat = read_kv(&dir.join("cpu.stat"));
        if !stat.is_empty() {
            have_cpu = true;
            cpu.throttling = MessageField::some(v1::Throttle {
                periods: stat.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: stat.get("throttled_time").copied().unwrap_or(0),
                ..Default::default()
            });
        }
    }
    if have_cpu {
        found = true;
        m.cpu = MessageField::some(cpu);
    }
    if let Ok(dir) = v1_dir(pid, "memory") {
        if let Some(usage) = memory_entry(&dir, "memory") {
            found = true;
            let s = read_kv(&dir.join("memory.stat"));
            let g = |k: &str| s.get(k).copied().unwrap_or(0);
            let mem = v1::MemoryStat {
                cache: g("cache"),
                rss: g("rss"),
                rss_huge: g("rss_huge"),
                mapped_file: g("mapped_file"),
                dirty: g("dirty"),
                writeback: g("writeback"),
                pg_pg_in: g("pgpgin"),
                pg_pg_out: g("pgpgout"),
                pg_fault: g("pgfault"),
                pg_maj_fault: g("pgmajfault"),
                inactive_anon: g("inactive_anon"),
                active_anon: g("active_anon"),
                inactive_file: g("inactive_file"),
                active_file: g("active_file"),
                unevictable: g("unevictable"),
                hierarchical_memory_limit: g("hierarchical_memory_limit"),
                hierarchical_swap_limit: g("hierarchical_memsw_limit"),
                total_cache: g("total_cache"),
                total_rss: g("total_rss"),
                total_rss_huge: g("total_rss_huge"),
                total_mapped_file: g("total_mapped_file"),
                total_dirty: g("total_dirty"),
                total_writeback: g("total_writeback"),
                total_pg_pg_in: g("total_pgpgin"),
                total_pg_pg_out: g("total_pgpgout"),
                total_pg_fault: g("total_pgfault"),
                total_pg_maj_fault: g("total_pgmajfault"),
                total_inactive_anon: g("total_inactive_anon"),
                total_active_anon: g("total_active_anon"),
                total_inactive_file: g("total_inactive_file"),
                total_active_file: g("total_active_file"),
                total_unevictable: g("total_unevictable"),
                usage: MessageField::some(usage),
                swap: memory_entry(&dir, "memory.memsw").into(),
                kernel: memory_entry(&dir, "memory.kmem").into(),
                kernel_tcp: memory_entry(&dir, "memory.kmem.tcp").into(),
                ..Default::default()
            };
            m.memory = MessageField::some(mem);
            let oom = read_kv(&dir.join("memory.oom_control"));
            if !oom.is_empty() {
                m.memory_oom_control = MessageField::some(v1::MemoryOomControl {
                    oom_kill_disable: oom.get("oom_kill_disable").copied().unwrap_or(0),
                    under_oom: oom.get("under_oom").copied().unwrap_or(0),
                    oom_kill: oom.get("oom_kill").copied().unwrap_or(0),
                    ..Default::default()
                });
            }
        }
    }
    if !found {
        return Err(io::Error::other(format!(
            "no cgroup statistics for process {pid}"
        )));
    }
    Ok(m)
}

/// cgroup v2 metrics of `pid`'s cgroup (pids, cpu, memory).
pub fn v2_metrics(pid: u32) -> io::Result<v2::Metrics> {
    let dir = v2_dir(pid)?;
    if !dir.is_dir() {
        return Err(io::Error::other(format!(
            "cgroup {} is gone",
            dir.display()
        )));
    }
    let mut m = v2::Metrics::new();
    if let Some(current) = read_u64(&dir.join("pids.current")) {
        m.pids = MessageField::some(v2::PidsStat {
            current,
            limit: read_u64(&dir.join("pids.max")).unwrap_or(0),
            ..Default::default()
        });
    }
    let cpu = read_kv(&dir.join("cpu.stat"));
    if !cpu.is_empty() {
        let g = |k: &str| cpu.get(k).copied().unwrap_or(0);
        m.cpu = MessageField::some(v2::CPUStat {
            usage_usec: g("usage_usec"),
            user_usec: g("user_usec"),
            system_usec: g("system_usec"),
            nr_periods: g("nr_periods"),
            nr_throttled: g("nr_throttled"),
            throttled_usec: g("throttled_usec"),
            ..Default::default()
        });
    }
    if let Some(usage) = read_u64(&dir.join("memory.current")) {
        let s = read_kv(&dir.join("memory.stat"));
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        m.memory = MessageField::some(v2::MemoryStat {
            usage,
            usage_limit: read_u64(&dir.join("memory.max")).unwrap_or(0),
            swap_usage: read_u64(&dir.join("memory.swap.current")).unwrap_or(0),
            swap_limit: read_u64(&dir.join("memory.swap.max")).unwrap_or(0),
            anon: g("anon"),
            file: g("file"),
            kernel_stack: g("kernel_stack"),
            slab: g("slab"),
            sock: g("sock"),
            shmem: g("shmem"),
            file_mapped: g("file_mapped"),
            file_dirty: g("file_dirty"),
            file_writeback: g("file_writeback"),
            pgfault: g("pgfault"),
            pgmajfault: g("pgmajfault"),
            inactive_anon: g("inactive_anon"),
            active_anon: g("active_anon"),
            inactive_file: g("inactive_file"),
            active_file: g("active_file"),
            unevictable: g("unevictable"),
            ..Default::default()
        });
    }
    Ok(m)
}

/// Metrics of `pid` packed for `StatsResponse`.
pub fn stats_any(pid: u32) -> io::Result<Any> {
    let (url, value) = if unified() {
        (V2_TYPE_URL, v2_metrics(pid)?.write_to_bytes())
    } else {
        (V1_TYPE_URL, v1_metrics(pid)?.write_to_bytes())
    };
    let value = value.map_err(|e| io::Error::other(e.to_string()))?;
    Ok(Any {
        type_url: url.to_string(),
        value,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroups_parse() {
        let me = std::process::id();
        let map = proc_cgroups(me).unwrap();
        assert!(!map.is_empty());
        // Whatever the host, collecting our own stats does not panic.
        let _ = stats_any(me);
    }
}
