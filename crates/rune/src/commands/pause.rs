use anyhow::{bail, Context, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::GlobalOpts;
use crate::state;

pub fn pause(global: &GlobalOpts, args: &liboci_cli::Pause) -> Result<u8> {
    let id = args.container_id.as_str();
    let mut container = state::load(&global.root, id)?;
    if container.status() != ContainerStatus::Running {
        bail!("cannot pause container {id:?}: container not running");
    }
    container
        .pause()
        .with_context(|| format!("cannot pause container {id:?}"))?;
    tracing::info!(id, "paused");
    Ok(0)
}

pub fn resume(global: &GlobalOpts, args: &liboci_cli::Resume) -> Result<u8> {
    let id = args.container_id.as_str();
    let mut container = state::load(&global.root, id)?;
    if container.status() != ContainerStatus::Paused {
        bail!("cannot resume container {id:?}: container not paused");
    }
    container
        .resume()
        .with_context(|| format!("cannot resume container {id:?}"))?;
    tracing::info!(id, "resumed");
    Ok(0)
}
