use anyhow::Result;

use crate::cli::GlobalOpts;
use crate::state::{self, RuncState};

pub fn state(global: &GlobalOpts, args: &liboci_cli::State) -> Result<u8> {
    let container = state::load(&global.root, &args.container_id)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&RuncState::of(&container))?
    );
    Ok(0)
}
