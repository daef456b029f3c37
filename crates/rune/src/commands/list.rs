use std::fs;
use std::io::ErrorKind;

use anyhow::{bail, Context, Result};
use libcontainer::container::Container;

use crate::cli::GlobalOpts;
use crate::state::RuncState;

pub fn list(global: &GlobalOpts, args: &liboci_cli::List) -> Result<u8> {
    let containers = load_all(global)?;
    if args.quiet {
        for state in &containers {
            println!("{}", state.id);
        }
        return Ok(0);
    }
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&containers)?),
        "table" => print_table(&containers),
        other => bail!("invalid --format {other:?}: use table or json"),
    }
    Ok(0)
}

fn load_all(global: &GlobalOpts) -> Result<Vec<RuncState>> {
    let entries = match fs::read_dir(&global.root) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot read --root {}", global.root.display()))
        }
    };
    let mut states = Vec::new();
    for entry in entries {
        let path = entry?.path();
        // A directory without readable state is a create in progress or its remnant.
        if let Ok(container) = Container::load(path) {
            states.push(RuncState::of(&container));
        }
    }
    states.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(states)
}

fn print_table(states: &[RuncState]) {
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    let rows: Vec<[String; 6]> = states
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.pid.to_string(),
                s.status.to_string(),
                s.bundle.display().to_string(),
                s.created.clone(),
                s.owner.clone(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", cells.join("   ").trim_end());
    }
}
