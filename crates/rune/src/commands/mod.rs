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

use anyhow::{Context, Result};
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
