use anyhow::{Context, Result};

use super::create::{launch, LaunchOpts};
use crate::cli::GlobalOpts;
use crate::foreground::Foreground;

/// `create` then `start`; in the foreground rune forwards signals to the container, waits for it,
/// removes it (unless `--keep`) and exits with its status.
pub fn run(global: &GlobalOpts, args: &liboci_cli::Run) -> Result<u8> {
    let id = args.container_id.as_str();
    let mut container = launch(
        global,
        &LaunchOpts {
            id,
            bundle: &args.bundle,
            pid_file: args.pid_file.as_ref(),
            console_socket: args.console_socket.as_ref(),
            no_pivot: args.no_pivot,
            preserve_fds: args.preserve_fds,
            detach: args.detach,
        },
    )?;

    // Signals are blocked only now: the container's init already exists, so it does not inherit
    // the blocked mask, and from here on no signal can slip by between start and wait.
    let foreground = if args.detach {
        None
    } else {
        Some(Foreground::new(!args.no_subreaper)?)
    };

    if let Err(err) = container.start() {
        let _ = container.delete(true);
        return Err(err).with_context(|| format!("cannot start container {id:?}"));
    }
    tracing::info!(id, "started");

    let Some(foreground) = foreground else {
        return Ok(0);
    };
    let pid = container.pid().context("the container has no init pid")?;
    let status = foreground.wait(pid)?;
    tracing::info!(id, status, "exited");

    if !args.keep {
        container
            .delete(true)
            .with_context(|| format!("cannot delete container {id:?} after it exited"))?;
    }
    Ok(status)
}
