//! One module per runc command. Each returns the exit status rune should end with.

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod run;
mod spec;
mod start;
mod state;
mod update;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libcgroups::common::CgroupManager;
use libcgroups::common::{AnyCgroupManager, CgroupConfig};
use libcontainer::container::Container;

use crate::cli::{Cli, Command};

pub fn dispatch(cli: Cli) -> Result<u8> {
    let global = &cli.global;
    match &cli.command {
        Command::Create(args) => create::create(global, args),
        Command::Start(args) => start::start(global, args),
        Command::Run(args) => run::run(global, args),
        Command::State(args) => state::state(global, args),
        Command::Kill(args) => kill::kill(global, args),
        Command::Delete(args) => delete::delete(global, args),
        Command::List(args) => list::list(global, args),
        Command::Ps(args) => ps::ps(global, args),
        Command::Exec(args) => exec::exec(global, args),
        Command::Pause(args) => pause::pause(global, args),
        Command::Resume(args) => pause::resume(global, args),
        Command::Events(args) => events::events(global, args),
        Command::Update(args) => update::update(global, args),
        Command::Spec(args) => spec::spec(args),
        Command::Features(_) => features::features(),
    }
}

/// The cgroup of a container, for the commands that read or change it directly.
fn cgroup_of(container: &Container) -> Result<AnyCgroupManager> {
    let config = container
        .spec()
        .with_context(|| format!("cannot read the config of container {:?}", container.id()))?;
    libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: container.id().to_string(),
    })
    .with_context(|| format!("cannot open the cgroup of container {:?}", container.id()))
}

/// Removes a cgroup whose processes were just killed, giving them time to go: under load the
/// kernel can take longer than libcgroups' own short retry before the directory is empty.
fn remove_cgroup(cgroup_path: PathBuf, systemd: bool, id: &str) -> Result<()> {
    let manager = libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path,
        systemd_cgroup: systemd,
        container_name: id.to_string(),
    })?;
    retry(|| manager.remove().map_err(anyhow::Error::from))
}

/// Runs `step` until it succeeds, for up to about three seconds.
fn retry<T>(mut step: impl FnMut() -> Result<T>) -> Result<T> {
    let mut delay = Duration::from_millis(20);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match step() {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => {
                thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(250));
            }
        }
    }
}
