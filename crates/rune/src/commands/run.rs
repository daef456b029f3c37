use anyhow::{Context, Result};

use super::create::{launch, prepare, LaunchOpts};
use crate::cli::GlobalOpts;
use crate::foreground::Foreground;
use crate::tty::{console_for, Proxy};

/// `create` then `start`; in the foreground rune forwards signals to the container, waits for it,
/// removes it (unless `--keep`) and exits with its status.
pub fn run(global: &GlobalOpts, args: &liboci_cli::Run) -> Result<u8> {
    let id = args.container_id.as_str();
    let prepared = prepare(global, id, &args.bundle)?;

    let wants_terminal = prepared
        .bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let (own_console, console_socket) = console_for(
        wants_terminal,
        args.detach,
        args.console_socket.as_ref(),
        &global.root,
        id,
    )?;

    let opts = LaunchOpts {
        id,
        pid_file: args.pid_file.as_ref(),
        // libcontainer only accepts a console socket for a detached init; rune's own socket
        // stands in for the caller's terminal, so the init is "detached" from rune's stdio.
        detach: args.detach || own_console.is_some(),
        console_socket,
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
    };
    let mut container = launch(global, &opts, &prepared)?;

    // Signals are blocked only now: the container's init already exists, so it does not inherit
    // the blocked mask, and from here on no signal can slip by between start and wait.
    let foreground = if args.detach {
        None
    } else {
        Some(Foreground::new(!args.no_subreaper)?)
    };
    let proxy = match own_console {
        Some(console) => {
            let master = console.into_master();
            match master.and_then(Proxy::start) {
                Ok(proxy) => Some(proxy),
                Err(err) => {
                    let _ = container.delete(true);
                    libenclave::remove_state(&global.root, id);
                    return Err(err);
                }
            }
        }
        None => None,
    };

    if let Err(err) = container.start() {
        let _ = container.delete(true);
        libenclave::remove_state(&global.root, id);
        return Err(err).with_context(|| format!("cannot start container {id:?}"));
    }
    tracing::info!(id, "started");

    let Some(foreground) = foreground else {
        return Ok(0);
    };
    let pid = container.pid().context("the container has no init pid")?;
    let status = foreground.wait(pid, proxy.as_ref().map(Proxy::master))?;
    if let Some(proxy) = proxy {
        proxy.finish();
    }
    tracing::info!(id, status, "exited");

    if !args.keep {
        container
            .delete(true)
            .with_context(|| format!("cannot delete container {id:?} after it exited"))?;
        libenclave::remove_state(&global.root, id);
    }
    Ok(status)
}
