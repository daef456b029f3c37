use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use oci_spec::runtime::{Process, Spec};

use crate::cli::GlobalOpts;
use crate::executor::RuncParity;
use crate::foreground::Foreground;
use crate::state;
use crate::tty::{console_for, Proxy};

pub fn exec(global: &GlobalOpts, args: &liboci_cli::Exec) -> Result<u8> {
    let id = args.container_id.as_str();
    let container = state::load(&global.root, id)?;
    if container.status() == ContainerStatus::Stopped {
        bail!("cannot exec in container {id:?}: container not running");
    }

    // In an enclave container the process runs in the enclave: the runelet libcontainer starts
    // hands it to the init-runelet over the agent socket.
    let enclave = libenclave::EnclaveState::load(&global.root, id);
    let agent = match &enclave {
        Some(_) if container.status() == ContainerStatus::Created => bail!(
            "cannot exec in enclave container {id:?}: it is created but not started; \
             run `rune start {id}` first"
        ),
        Some(_) => {
            libenclave::ensure_sealed_exe()?;
            Some(libenclave::connect_agent(&global.root, id)?)
        }
        None => None,
    };
    let mut process = match &args.process {
        Some(path) => read_process(path)?,
        None => process_from_flags(&container, args)?,
    };
    if enclave.is_some() {
        let own = container_process(&container)?;
        libenclave::adapt_exec_process(&own, &mut process)
            .with_context(|| format!("cannot exec in container {id:?}"))?;
    }
    let terminal = process.terminal().unwrap_or(false);
    let process_file = ProcessFile::write(&container, &process)?;

    let (own_console, console_socket) = console_for(
        terminal,
        args.detach,
        args.console_socket.as_ref(),
        &global.root,
        id,
    )?;

    let builder = ContainerBuilder::new(id.to_string(), SyscallType::default());
    let builder = match &agent {
        Some(agent) => {
            builder.with_executor(RuncParity(libenclave::Runelet::new(agent.as_raw_fd())))
        }
        None => builder.with_executor(RuncParity(DefaultExecutor {})),
    };
    // The process runs as soon as it is built, so a signal meant for it can arrive before
    // `build` returns: block signals first and forward them afterwards. The process inherits
    // the blocked mask; `RuncParity` unblocks them in it.
    let foreground = if args.detach {
        None
    } else {
        Some(Foreground::new(false)?)
    };
    let pid = builder
        .with_root_path(&global.root)?
        .with_console_socket(console_socket.as_ref())
        .with_pid_file(args.pid_file.as_ref())?
        .with_preserved_fds(args.preserve_fds)
        .as_tenant()
        // libcontainer takes a console socket only for a detached process; see `run`.
        .with_detach(args.detach || own_console.is_some())
        .with_process(Some(&process_file.0))
        .with_ignore_paused(args.ignore_paused)
        .with_sub_cgroup(args.cgroup.clone())
        .build()
        .with_context(|| format!("cannot exec in container {id:?}"))?;
    drop(process_file);
    drop(agent);
    tracing::info!(id, %pid, "exec started");

    let Some(foreground) = foreground else {
        return Ok(0);
    };
    let proxy = own_console
        .map(|console| console.into_master().and_then(Proxy::start))
        .transpose()?;
    let status = foreground.wait(pid, proxy.as_ref().map(Proxy::master))?;
    if let Some(proxy) = proxy {
        proxy.finish();
    }
    tracing::debug!(id, %pid, status, "exec exited");
    Ok(status)
}

fn read_process(path: &Path) -> Result<Process> {
    let bytes =
        fs::read(path).with_context(|| format!("cannot read --process {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("--process {}: not an OCI process object", path.display()))
}

/// As runc: the new process starts from the container's own process (user, capabilities,
/// rlimits, env, no_new_privileges) and the flags change it.
fn process_from_flags(container: &Container, args: &liboci_cli::Exec) -> Result<Process> {
    if args.command.is_empty() {
        bail!("nothing to exec: give a command or --process FILE");
    }
    let mut process = container_process(container)?;

    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    process.set_console_size(None);
    let mut env = process.env().clone().unwrap_or_default();
    for (key, value) in &args.env {
        env.retain(|entry| entry.split_once('=').map_or(entry.as_str(), |(k, _)| k) != key);
        env.push(format!("{key}={value}"));
    }
    process.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some((uid, gid)) = args.user {
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid.unwrap_or(0));
        process.set_user(user);
    }
    if !args.additional_gids.is_empty() {
        let mut user = process.user().clone();
        user.set_additional_gids(Some(args.additional_gids.clone()));
        process.set_user(user);
    }
    if args.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &args.apparmor {
        process.set_apparmor_profile(Some(profile.clone()));
    }
    if !args.cap.is_empty() {
        add_capabilities(&mut process, &args.cap)?;
    }
    Ok(process)
}

/// The container's own process, from the config it runs.
fn container_process(container: &Container) -> Result<Process> {
    let config = container.bundle().join("config.json");
    let spec = Spec::load(&config)
        .with_context(|| format!("cannot read the container's config {}", config.display()))?;
    Ok(spec.process().clone().unwrap_or_default())
}

fn add_capabilities(process: &mut Process, names: &[String]) -> Result<()> {
    let mut caps = process.capabilities().clone().unwrap_or_default();
    for name in names {
        // runc takes CAP_SYS_ADMIN; oci-spec parses SYS_ADMIN.
        let upper = name.to_ascii_uppercase();
        let cap = upper
            .strip_prefix("CAP_")
            .unwrap_or(&upper)
            .parse::<oci_spec::runtime::Capability>()
            .map_err(|_| anyhow::anyhow!("--cap {name:?}: unknown capability"))?;
        let add = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(cap);
            Some(set)
        };
        let (b, e, p) = (
            add(caps.bounding()),
            add(caps.effective()),
            add(caps.permitted()),
        );
        caps.set_bounding(b).set_effective(e).set_permitted(p);
    }
    process.set_capabilities(Some(caps));
    Ok(())
}

/// The process description handed to libcontainer, kept in the container's private state
/// directory and removed once the process exists.
struct ProcessFile(PathBuf);

impl ProcessFile {
    fn write(container: &Container, process: &Process) -> Result<Self> {
        let path = container
            .root
            .join(format!("exec-process-{}.json", std::process::id()));
        fs::write(&path, serde_json::to_vec(process)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for ProcessFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
