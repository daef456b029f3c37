use std::fs;
use std::io::Read;

use anyhow::{anyhow, Context, Result};
use libcgroups::common::{CgroupManager, ControllerOpt};
use oci_spec::runtime::{LinuxPids, LinuxResources};

use super::cgroup_of;
use crate::cli::GlobalOpts;
use crate::state;

pub fn update(global: &GlobalOpts, args: &liboci_cli::Update) -> Result<u8> {
    let id = args.container_id.as_str();
    let container = state::load(&global.root, id)?;
    let mut resources = match &args.resources {
        Some(path) => read_resources(path)?,
        None => LinuxResources::default(),
    };
    apply_flags(args, &mut resources);

    cgroup_of(&container)?
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .with_context(|| format!("cannot update the resources of container {id:?}"))?;
    tracing::info!(id, "resources updated");
    Ok(0)
}

fn read_resources(path: &std::path::Path) -> Result<LinuxResources> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read resources from stdin")?;
        ("stdin".to_string(), text)
    } else {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read --resources {}", path.display()))?;
        (path.display().to_string(), text)
    };
    serde_json::from_str(&text)
        .map_err(|err| anyhow!("--resources {name}: not an OCI linux.resources object: {err}"))
}

/// The single-value flags win over the file, as in runc.
fn apply_flags(args: &liboci_cli::Update, resources: &mut LinuxResources) {
    if args.memory.is_some() || args.memory_reservation.is_some() || args.memory_swap.is_some() {
        let mut memory = resources.memory().unwrap_or_default();
        if let Some(limit) = args.memory {
            memory.set_limit(Some(limit as i64));
        }
        if let Some(reservation) = args.memory_reservation {
            memory.set_reservation(Some(reservation as i64));
        }
        if let Some(swap) = args.memory_swap {
            memory.set_swap(Some(swap));
        }
        resources.set_memory(Some(memory));
    }

    let cpu_flags = [
        args.cpu_period,
        args.cpu_quota,
        args.cpu_share,
        args.cpu_rt_period,
    ];
    if cpu_flags.iter().any(Option::is_some)
        || args.cpu_rt_runtime.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some()
    {
        let mut cpu = resources.cpu().clone().unwrap_or_default();
        if let Some(period) = args.cpu_period {
            cpu.set_period(Some(period));
        }
        if let Some(quota) = args.cpu_quota {
            cpu.set_quota(Some(quota as i64));
        }
        if let Some(shares) = args.cpu_share {
            cpu.set_shares(Some(shares));
        }
        if let Some(period) = args.cpu_rt_period {
            cpu.set_realtime_period(Some(period));
        }
        if let Some(runtime) = args.cpu_rt_runtime {
            cpu.set_realtime_runtime(Some(runtime as i64));
        }
        if let Some(cpus) = &args.cpuset_cpus {
            cpu.set_cpus(Some(cpus.clone()));
        }
        if let Some(mems) = &args.cpuset_mems {
            cpu.set_mems(Some(mems.clone()));
        }
        resources.set_cpu(Some(cpu));
    }

    if let Some(limit) = args.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
    if let Some(weight) = args.blkio_weight {
        let mut blkio = resources.block_io().clone().unwrap_or_default();
        blkio.set_weight(Some(weight as u16));
        resources.set_block_io(Some(blkio));
    }
}
