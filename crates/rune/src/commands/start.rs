use anyhow::{bail, Context, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::GlobalOpts;
use crate::state;

pub fn start(global: &GlobalOpts, args: &liboci_cli::Start) -> Result<u8> {
    let mut container = state::load(&global.root, &args.container_id)?;
    if container.status() != ContainerStatus::Created {
        bail!(
            "cannot start container {:?}: it is {}, not created",
            args.container_id,
            state::status_name(container.status())
        );
    }
    container
        .start()
        .with_context(|| format!("cannot start container {:?}", args.container_id))?;
    tracing::info!(id = %args.container_id, "started");
    Ok(0)
}
