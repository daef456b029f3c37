use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;

use crate::bundle::{self, Bundle};
use crate::cli::GlobalOpts;
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

pub fn create(global: &GlobalOpts, args: &liboci_cli::Create) -> Result<u8> {
    let bundle = prepare(global, &args.container_id, &args.bundle)?;
    let opts = LaunchOpts {
        id: &args.container_id,
        pid_file: args.pid_file.as_ref(),
        console_socket: absolute(args.console_socket.as_ref())?,
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
        detach: true,
    };
    launch(global, &opts, &bundle)?;
    Ok(0)
}

/// Everything checked before anything is created: the id, the bundle, `--root`, and that the id
/// is free.
pub fn prepare(global: &GlobalOpts, id: &str, bundle: &Path) -> Result<Bundle> {
    state::validate_id(id)?;
    let bundle = bundle::load(bundle)?;
    state::ensure_root(&global.root)?;
    if state::container_dir(&global.root, id).exists() {
        bail!("container {id:?} already exists");
    }
    Ok(bundle)
}

/// Creates the container and leaves its init waiting for `start`. On failure nothing is left:
/// no state directory, cgroup or process.
pub fn launch(global: &GlobalOpts, opts: &LaunchOpts, bundle: &Bundle) -> Result<Container> {
    match build(global, opts, &bundle.dir) {
        Ok(container) => {
            tracing::info!(
                id = opts.id,
                pid = container.pid().map(|p| p.as_raw()),
                "created"
            );
            Ok(container)
        }
        Err(err) => {
            remove_partial(&state::container_dir(&global.root, opts.id));
            Err(err.context(format!("cannot create container {:?}", opts.id)))
        }
    }
}

fn build(global: &GlobalOpts, opts: &LaunchOpts, bundle: &Path) -> Result<Container> {
    let container = ContainerBuilder::new(opts.id.to_string(), SyscallType::default())
        .with_executor(DefaultExecutor {})
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

/// libcontainer links the console socket from inside the state directory, so a relative path
/// would resolve against the wrong directory.
pub fn absolute(path: Option<&PathBuf>) -> Result<Option<PathBuf>> {
    path.map(|p| {
        std::path::absolute(p).with_context(|| format!("--console-socket {}", p.display()))
    })
    .transpose()
}

/// libcontainer removes what it made when the init process fails, but not when an earlier step
/// does (the console socket, the rootfs path, the pid file); finish the job.
fn remove_partial(dir: &Path) {
    if let Ok(mut container) = Container::load(dir.to_path_buf()) {
        if let Err(err) = container.delete(true) {
            tracing::warn!(dir = %dir.display(), "cleanup after failed create: {err}");
        }
    }
    if dir.exists() {
        if let Err(err) = fs::remove_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), "cleanup after failed create: {err}");
        }
    }
}
