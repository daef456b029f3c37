use anyhow::{anyhow, bail, Context, Result};
use libcgroups::common::{CgroupManager, FreezerState};
use libcontainer::container::ContainerStatus;
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::cgroup_of;
use crate::cli::{GlobalOpts, Kill};
use crate::state;

/// Signals the init process, or with `--all` every process in the container's cgroup. Like runc
/// it writes no state: the status follows from the processes, and a state file written here
/// would race with a `delete` of the container that is exiting.
pub fn kill(global: &GlobalOpts, args: &Kill) -> Result<u8> {
    let signal = parse_signal(&args.signal)?;
    let id = args.container_id.as_str();
    let container = state::load(&global.root, id)?;
    let status = container.status();
    if status == ContainerStatus::Stopped && !args.all {
        // containerd's shim matches "container not running" to treat the kill as done.
        bail!("cannot signal container {id:?}: container not running");
    }

    let pids = if args.all {
        cgroup_of(&container)?
            .get_all_pids()
            .with_context(|| format!("cannot list the processes of container {id:?}"))?
    } else {
        vec![container.pid().context("the container has no init pid")?]
    };
    for pid in pids {
        send(pid, signal).with_context(|| format!("cannot signal container {id:?}"))?;
    }
    // A frozen process cannot act on SIGKILL until its cgroup is thawed.
    if signal == Signal::SIGKILL && status == ContainerStatus::Paused {
        cgroup_of(&container)?
            .freeze(FreezerState::Thawed)
            .with_context(|| format!("cannot thaw container {id:?} to kill it"))?;
    }
    tracing::info!(id, signal = %signal, all = args.all, "signalled");
    Ok(0)
}

fn send(pid: Pid, signal: Signal) -> Result<()> {
    match signal::kill(pid, signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// runc's signal syntax: a name with or without SIG, any case, or a number.
pub fn parse_signal(text: &str) -> Result<Signal> {
    let text = text.trim();
    let parsed = match text.parse::<i32>() {
        Ok(number) => Signal::try_from(number).ok(),
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            name.parse::<Signal>().ok()
        }
    };
    parsed.ok_or_else(|| {
        anyhow!("unknown signal {text:?}: use a name such as TERM or SIGKILL, or a number 1-31")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        for (text, want) in [
            ("9", Signal::SIGKILL),
            ("KILL", Signal::SIGKILL),
            ("sigterm", Signal::SIGTERM),
            ("SIGUSR1", Signal::SIGUSR1),
            ("hup", Signal::SIGHUP),
            ("Winch", Signal::SIGWINCH),
        ] {
            assert_eq!(parse_signal(text).expect(text), want, "{text}");
        }
        for bad in ["", "0", "999", "NOSUCHSIG", "-9", "SIG", "SIGSIGTERM"] {
            assert!(parse_signal(bad).is_err(), "{bad:?}");
        }
    }
}
