use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use libcgroups::common::CgroupManager;
use libcontainer::container::ContainerStatus;
use serde_json::json;

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
        println!("{}", json!({"type": "stats", "id": id, "data": stats}));
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
