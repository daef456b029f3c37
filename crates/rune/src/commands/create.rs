use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::Executor;
use libenclave::EnclaveConfig;

use crate::bundle::{self, Bundle};
use crate::cli::GlobalOpts;
use crate::executor::RuncParity;
use crate::state;

/// What `create` and `run` share.
pub struct LaunchOpts<'a> {
    pub id: &'a str,
    pub pid_file: Option<&'a PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    pub detach: bool,
}

/// A bundle that passed every check, and its enclave settings when it asks for an enclave.
pub struct Prepared {
    pub bundle: Bundle,
    pub enclave: Option<EnclaveConfig>,
}

pub fn create(global: &GlobalOpts, args: &liboci_cli::Create) -> Result<u8> {
    let prepared = prepare(global, &args.container_id, &args.bundle)?;
    let opts = LaunchOpts {
        id: &args.container_id,
        pid_file: args.pid_file.as_ref(),
        console_socket: crate::tty::absolute_socket(args.console_socket.as_ref())?,
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
        detach: true,
    };
    launch(global, &opts, &prepared)?;
    Ok(0)
}

/// Everything checked before anything is created: the id, the bundle, the enclave settings,
/// `--root`, and that the id is free.
pub fn prepare(global: &GlobalOpts, id: &str, bundle: &Path) -> Result<Prepared> {
    state::validate_id(id)?;
    let mut bundle = bundle::load(bundle)?;
    let enclave = EnclaveConfig::from_spec(&mut bundle.spec)
        .with_context(|| format!("{}", bundle.dir.join("config.json").display()))?;
    if let Some(config) = &enclave {
        libenclave::launch::check(config)?;
        // From here on this process may end up inside the container: run from a sealed copy.
        libenclave::ensure_sealed_exe()?;
    }
    state::ensure_root(&global.root)?;
    if state::container_dir(&global.root, id).exists() {
        bail!("container {id:?} already exists");
    }
    Ok(Prepared { bundle, enclave })
}

/// Creates the container and leaves its init waiting for `start`. On failure nothing is left:
/// no state directory, cgroup or process.
pub fn launch(global: &GlobalOpts, opts: &LaunchOpts, prepared: &Prepared) -> Result<Container> {
    let built = match &prepared.enclave {
        None => build(global, opts, &prepared.bundle.dir, DefaultExecutor {}),
        Some(config) => libenclave::launch::prepare(
            &global.root,
            opts.id,
            &prepared.bundle.dir,
            &prepared.bundle.spec,
            config,
        )
        .map_err(anyhow::Error::from)
        .and_then(|launch| build(global, opts, &launch.bundle, launch.executor.clone())),
    };
    match built {
        Ok(container) => {
            match &prepared.enclave {
                Some(config) => tracing::info!(
                    id = opts.id,
                    pid = container.pid().map(|p| p.as_raw()),
                    enclave = %config.enclave_type,
                    protection = config.enclave_type.protection(),
                    pal = %config.runtime_path.display(),
                    "created enclave container"
                ),
                None => tracing::info!(
                    id = opts.id,
                    pid = container.pid().map(|p| p.as_raw()),
                    "created"
                ),
            }
            Ok(container)
        }
        Err(err) => {
            remove_partial(global, opts.id, &prepared.bundle.spec);
            Err(err.context(format!("cannot create container {:?}", opts.id)))
        }
    }
}

fn build<E: Executor + Clone + 'static>(
    global: &GlobalOpts,
    opts: &LaunchOpts,
    bundle: &Path,
    executor: E,
) -> Result<Container> {
    let container = ContainerBuilder::new(opts.id.to_string(), SyscallType::default())
        .with_executor(RuncParity(executor))
        .with_root_path(&global.root)?
        .with_pid_file(opts.pid_file)?
        .with_console_socket(opts.console_socket.as_ref())
        .with_preserved_fds(opts.preserve_fds)
        .as_init(bundle)
        .with_systemd(global.systemd_cgroup)
        .with_detach(opts.detach)
        .with_no_pivot(opts.no_pivot)
        .build()?;
    Ok(container)
}

/// libcontainer removes what it made when the init process fails, but not when an earlier step
/// does (the console socket, the rootfs path, the pid file), and its cgroup removal gives up
/// quickly under load; finish the job.
fn remove_partial(global: &GlobalOpts, id: &str, spec: &oci_spec::runtime::Spec) {
    let root = &global.root;
    let dir = state::container_dir(root, id);
    if let Ok(mut container) = Container::load(dir.clone()) {
        if let Err(err) = container.delete(true) {
            tracing::warn!(dir = %dir.display(), "cleanup after failed create: {err}");
        }
    }
    if dir.exists() {
        if let Err(err) = fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), "cleanup after failed create: {err}");
        }
    }
    libenclave::remove_state(root, id);

    let cgroup_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        // libcontainer's name for a container whose config names no cgroup.
        .unwrap_or_else(|| PathBuf::from(format!(":youki:{id}")));
    if let Err(err) = super::remove_cgroup(cgroup_path, global.systemd_cgroup, id) {
        tracing::warn!(id, "cleanup after failed create: cgroup: {err}");
    }
}
