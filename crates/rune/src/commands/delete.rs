use std::fs;

use anyhow::{bail, Context, Result};
use libcontainer::container::ContainerStatus;

use crate::cli::GlobalOpts;
use crate::state;

pub fn delete(global: &GlobalOpts, args: &liboci_cli::Delete) -> Result<u8> {
    let id = args.container_id.as_str();
    state::validate_id(id)?;
    let dir = state::container_dir(&global.root, id);
    if !dir.join("state.json").is_file() {
        // As runc: a directory without state is the remnant of an aborted create, and
        // `--force` on a container that is already gone succeeds.
        if dir.is_dir() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        if args.force {
            return Ok(0);
        }
        bail!("container {id:?} does not exist");
    }

    let mut container = state::load(&global.root, id)?;
    let status = container.status();
    if matches!(status, ContainerStatus::Running | ContainerStatus::Paused) && !args.force {
        bail!(
            "cannot delete container {id:?}: it is {}; stop it first or use --force",
            state::status_name(status)
        );
    }
    container
        .delete(args.force)
        .with_context(|| format!("cannot delete container {id:?}"))?;
    tracing::info!(id, "deleted");
    Ok(0)
}
