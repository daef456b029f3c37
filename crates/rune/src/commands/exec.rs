use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;

use crate::cli::GlobalOpts;
use crate::foreground::Foreground;
use crate::state;

pub fn exec(global: &GlobalOpts, args: &liboci_cli::Exec) -> Result<u8> {
    let id = args.container_id.as_str();
    let container = state::load(&global.root, id)?;
    if container.status() == ContainerStatus::Stopped {
        bail!("cannot exec in container {id:?}: container not running");
    }
    if args.process.is_none() && args.command.is_empty() {
        bail!("nothing to exec: give a command or --process FILE");
    }
    if let Some(process) = &args.process {
        if !process.is_file() {
            bail!("--process {}: no such file", process.display());
        }
    }

    let env: HashMap<String, String> = args.env.iter().cloned().collect();
    let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(&global.root)?
        .with_console_socket(args.console_socket.as_ref())
        .with_pid_file(args.pid_file.as_ref())?
        .with_preserved_fds(args.preserve_fds)
        .as_tenant()
        .with_detach(args.detach)
        .with_cwd(args.cwd.as_ref())
        .with_env(env)
        .with_process(args.process.as_ref())
        .with_no_new_privs(args.no_new_privs)
        .with_container_args(args.command.clone())
        .with_capabilities(args.cap.clone())
        .with_additional_gids(args.additional_gids.clone())
        .with_user(args.user.map(|(uid, _)| uid))
        .with_group(args.user.and_then(|(_, gid)| gid))
        .with_ignore_paused(args.ignore_paused)
        .with_sub_cgroup(args.cgroup.clone())
        .with_apparmor(args.apparmor.clone())
        .build()
        .with_context(|| format!("cannot exec in container {id:?}"))?;
    tracing::info!(id, %pid, "exec started");

    if args.detach {
        return Ok(0);
    }
    let status = Foreground::new(false)?.wait(pid)?;
    tracing::debug!(id, %pid, status, "exec exited");
    Ok(status)
}
