use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use libcgroups::common::CgroupManager;
use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};
use libcontainer::container::ContainerStatus;
use serde_json::{json, Value};

use super::cgroup_of;
use crate::cli::GlobalOpts;
use crate::state;

/// One JSON line per interval, `{"type":"stats","id":...,"data":...}` as runc prints.
pub fn events(global: &GlobalOpts, args: &liboci_cli::Events) -> Result<u8> {
    let id = args.container_id.as_str();
    let mut container = state::load(&global.root, id)?;
    if container.status() == ContainerStatus::Stopped {
        bail!("cannot read events of container {id:?}: container not running");
    }
    let cgroup = cgroup_of(&container)?;
    loop {
        let stats = cgroup
            .stats()
            .with_context(|| format!("cannot read the statistics of container {id:?}"))?;
        println!(
            "{}",
            json!({"type": "stats", "id": id, "data": runc_stats(&stats)})
        );
        if args.stats {
            return Ok(0);
        }
        thread::sleep(Duration::from_secs(u64::from(args.interval.max(1))));
        container.refresh_status()?;
        if container.status() == ContainerStatus::Stopped {
            return Ok(0);
        }
    }
}

/// libcgroups' statistics in the layout of runc's `events` types, which tools parse.
fn runc_stats(stats: &Stats) -> Value {
    let entry = |m: &MemoryData| json!({"limit": m.limit, "usage": m.usage, "max": m.max_usage, "failcnt": m.fail_count});
    let blkio = |entries: &[BlkioDeviceStat]| -> Vec<Value> {
        entries
            .iter()
            .map(|e| {
                json!({
                    "major": e.major,
                    "minor": e.minor,
                    "op": e.op_type.clone().unwrap_or_default(),
                    "value": e.value,
                })
            })
            .collect()
    };
    let cpu = &stats.cpu;
    let memory = &stats.memory;
    let hugetlb: serde_json::Map<String, Value> = stats
        .hugetlb
        .iter()
        .map(|(size, h)| {
            (
                size.clone(),
                json!({"usage": h.usage, "max": h.max_usage, "failcnt": h.fail_count}),
            )
        })
        .collect();
    json!({
        "cpu": {
            "usage": {
                "total": cpu.usage.usage_total,
                "percpu": cpu.usage.per_core_usage_total,
                "percpu_kernel": cpu.usage.per_core_usage_kernel,
                "percpu_user": cpu.usage.per_core_usage_user,
                "kernel": cpu.usage.usage_kernel,
                "user": cpu.usage.usage_user,
            },
            "throttling": {
                "periods": cpu.throttling.periods,
                "throttledPeriods": cpu.throttling.throttled_periods,
                "throttledTime": cpu.throttling.throttled_time,
            },
        },
        "memory": {
            "cache": memory.cache,
            "usage": entry(&memory.memory),
            "swap": entry(&memory.memswap),
            "kernel": entry(&memory.kernel),
            "kernelTCP": entry(&memory.kernel_tcp),
            "raw": memory.stats,
        },
        "pids": {"current": stats.pids.current, "limit": stats.pids.limit},
        "blkio": {
            "ioServiceBytesRecursive": blkio(&stats.blkio.service_bytes),
            "ioServicedRecursive": blkio(&stats.blkio.serviced),
            "ioQueuedRecursive": blkio(&stats.blkio.queued),
            "ioServiceTimeRecursive": blkio(&stats.blkio.service_time),
            "ioWaitTimeRecursive": blkio(&stats.blkio.wait_time),
            "ioMergedRecursive": blkio(&stats.blkio.merged),
            "ioTimeRecursive": blkio(&stats.blkio.time),
            "sectorsRecursive": blkio(&stats.blkio.sectors),
        },
        "hugetlb": hugetlb,
    })
}
