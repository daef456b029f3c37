use std::process::Command;

use anyhow::{bail, Context, Result};
use libcgroups::common::CgroupManager;

use super::cgroup_of;
use crate::cli::GlobalOpts;
use crate::state;

pub fn ps(global: &GlobalOpts, args: &liboci_cli::Ps) -> Result<u8> {
    let id = args.container_id.as_str();
    let container = state::load(&global.root, id)?;
    let pids: Vec<i32> = cgroup_of(&container)?
        .get_all_pids()
        .with_context(|| format!("cannot list the processes of container {id:?}"))?
        .into_iter()
        .map(|p| p.as_raw())
        .collect();

    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => print_table(&pids, &args.ps_options)?,
        other => bail!("invalid --format {other:?}: use table or json"),
    }
    Ok(0)
}

/// Runs the host's `ps` and keeps the header and the container's rows, as runc does.
fn print_table(pids: &[i32], ps_options: &[String]) -> Result<()> {
    let options = if ps_options.is_empty() {
        vec!["-ef".to_string()]
    } else {
        ps_options.to_vec()
    };
    let output = Command::new("ps")
        .args(&options)
        .output()
        .context("cannot run ps")?;
    if !output.status.success() {
        bail!(
            "ps {}: {}",
            options.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(column) = header.split_whitespace().position(|h| h == "PID") else {
        bail!("ps {} printed no PID column", options.join(" "));
    };
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p: i32| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}
