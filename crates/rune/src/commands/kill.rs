use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::ContainerStatus;
use libcontainer::signal::Signal;

use crate::cli::{GlobalOpts, Kill};
use crate::state;

pub fn kill(global: &GlobalOpts, args: &Kill) -> Result<u8> {
    let signal = parse_signal(&args.signal)?;
    let id = args.container_id.as_str();
    let mut container = state::load(&global.root, id)?;

    let before = container.status();
    if before == ContainerStatus::Stopped && !args.all {
        // containerd's shim matches "container not running" to treat the kill as done.
        bail!("cannot signal container {id:?}: container not running");
    }

    container
        .kill(signal, args.all)
        .with_context(|| format!("cannot signal container {id:?}"))?;

    // libcontainer records every signalled container as stopped, even one that caught the
    // signal; runc does not, so put the status back while the process lives.
    container.refresh_status()?;
    if container.status() != ContainerStatus::Stopped && before != ContainerStatus::Stopped {
        container.set_status(before).save()?;
    }
    tracing::info!(id, signal = %args.signal, all = args.all, "signalled");
    Ok(0)
}

/// runc's signal syntax: a name with or without SIG, any case, or a number.
pub fn parse_signal(text: &str) -> Result<Signal> {
    Signal::try_from(text.trim()).map_err(|_| {
        anyhow!("unknown signal {text:?}: use a name such as TERM or SIGKILL, or a number 1-31")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        use nix::sys::signal::Signal as Nix;
        for (text, want) in [
            ("9", Nix::SIGKILL),
            ("KILL", Nix::SIGKILL),
            ("sigterm", Nix::SIGTERM),
            ("SIGUSR1", Nix::SIGUSR1),
            ("hup", Nix::SIGHUP),
        ] {
            let signal = parse_signal(text).expect(text);
            assert_eq!(format!("{signal:?}"), format!("Signal({want:?})"), "{text}");
        }
        for bad in ["", "0", "999", "NOSUCHSIG", "-9", "SIG"] {
            assert!(parse_signal(bad).is_err(), "{bad:?}");
        }
    }
}
